"""Exponential moving average of the weights, evaluated next to the raw model."""
from __future__ import annotations

import copy

import torch
from torch import nn

from .distributed import full_state_dict, local


class ModelEma:
    """Keeps ema = d * ema + (1 - d) * weights; with warmup, d = min(decay, (1 + n) / (10 + n)) early in training."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True) -> None:
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self.warmup = warmup
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates)) if self.warmup else self.decay
        ema_state = {k: local(v) for k, v in self.module.state_dict().items()}  # FSDP2: each rank its shards
        state = {k: local(v) for k, v in model.state_dict().items()}
        floats = [(ema_state[k], v) for k, v in state.items() if v.dtype.is_floating_point]
        ints = [(ema_state[k], v) for k, v in state.items() if not v.dtype.is_floating_point]
        torch._foreach_lerp_([e for e, _ in floats], [v.detach() for _, v in floats], 1.0 - decay)
        for ema_value, value in ints:
            ema_value.copy_(value)

    def state_dict(self) -> dict:
        return {"module": full_state_dict(self.module), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = state["updates"]
