"""Patch merging (Swin's downsampling between stages): each 2 x 2 neighbourhood of an NHWC map becomes one token."""
from __future__ import annotations

import torch
from torch import nn


class PatchMerging(nn.Module):
    """[B, H, W, C] -> [B, H/2, W/2, out_dim]: the 2 x 2 tokens' 4C channels concatenated, normalised, projected."""

    def __init__(self, dim: int, out_dim: int | None = None, norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.out_dim = out_dim or 2 * dim
        self.norm = nn.LayerNorm(4 * dim, eps=norm_eps)
        self.reduction = nn.Linear(4 * dim, self.out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, channels = x.shape
        if height % 2 or width % 2:
            raise ValueError(f"patch merging halves the map, so it needs an even height and width, got "
                             f"{height}x{width}")
        # channel blocks in the Swin code's order: (row 0, col 0), (row 1, col 0), (row 0, col 1), (row 1, col 1)
        x = x.reshape(batch, height // 2, 2, width // 2, 2, channels).permute(0, 1, 3, 4, 2, 5).flatten(3)
        return self.reduction(self.norm(x))
