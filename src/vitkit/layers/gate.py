"""Sigmoid gates (the gated ViT-5 presets): a branch output scaled elementwise by sigmoid(Linear(branch input))."""
from __future__ import annotations

import torch
from torch import nn


class SigmoidGate(nn.Module):
    """Lets each token decide how much of a branch's output to keep (gated attention / gated FFN)."""

    def __init__(self, dim: int, out_dim: int | None = None) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, out_dim or dim)  # out_dim: a pruned attention's width (fewer heads)

    def forward(self, branch_input: torch.Tensor, branch_output: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.proj(branch_input)) * branch_output
