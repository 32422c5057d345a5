"""LayerScale (CaiT / DeiT III / ViT-5): a learned per-channel gain on each residual branch."""
from __future__ import annotations

import torch
from torch import nn


class LayerScale(nn.Module):
    """Starts the residual branch near zero so deep models train stably."""

    def __init__(self, dim: int, init_values: float = 1e-5) -> None:
        super().__init__()
        self.init_values = init_values
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma
