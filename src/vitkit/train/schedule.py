"""Schedules as pure functions of how far training has come, so resuming needs no state: the learning rate (linear
warmup, then cosine to a floor) and the patch dropout rate (stages)."""
from __future__ import annotations

import math


def warmup_cosine(step: int, base_lr: float, total_steps: int, warmup_steps: int, min_lr: float = 0.0,
                  warmup_lr: float = 0.0) -> float:
    """The lr for optimizer step `step` (0-based); a pure function of the step, so resuming needs no state."""
    if step < warmup_steps:
        return warmup_lr + (base_lr - warmup_lr) * step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def staged_value(epoch: float, initial: float, stages: list[tuple[float, float]]) -> float:
    """The value of a piecewise-constant schedule at `epoch`: `initial`, replaced by each stage from its start on."""
    value = initial
    for start, stage_value in stages:
        if epoch >= start:
            value = stage_value
    return value
