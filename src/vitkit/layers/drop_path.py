"""Stochastic depth: drop a whole residual branch per sample during training."""
from __future__ import annotations

import torch
from torch import nn

DROP_PATH_SCHEDULES = ("linear", "constant")


class DropPath(nn.Module):
    """Per-sample residual-branch dropout, rescaled so the expectation is unchanged."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.3f}"


def drop_path_rates(depth: int, rate: float, schedule: str = "linear") -> list[float]:
    """Per-block rates: linear ramps 0 -> rate over depth (DeiT), constant uses rate everywhere (ViT-5)."""
    if schedule == "linear":
        return [rate * i / max(depth - 1, 1) for i in range(depth)]
    if schedule == "constant":
        return [rate] * depth
    raise ValueError(f"unknown drop_path_schedule {schedule!r}; choose one of {DROP_PATH_SCHEDULES}")
