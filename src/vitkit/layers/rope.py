"""2D rotary position embedding (RoPE) for q/k, with the layout of the official ViT-5 code and timm's Eva.

Within each head the first half of the channels encodes the row and the second half the column; channel
pairs (2j, 2j+1) rotate together by angle position * theta^(-j / (head_dim / 4)).
"""
from __future__ import annotations

import torch


def rope_frequencies(head_dim: int, theta: float) -> torch.Tensor:
    """Per-axis frequencies theta^(-j / (head_dim/4)), computed in float32 as the references do."""
    if head_dim % 4:
        raise ValueError(f"2D RoPE needs head_dim divisible by 4, got {head_dim}; "
                         "change embed_dim or num_heads so that embed_dim / num_heads is a multiple of 4")
    half = head_dim // 2
    return 1.0 / theta ** (torch.arange(0, half, 2).float() / half)


def rope_angles(head_dim: int, theta: float, grid: tuple[int, int],
                ref_grid: tuple[int, int] | None = None) -> torch.Tensor:
    """Angles [rows*cols, head_dim/2], one per rotation pair; positions are scaled onto ref_grid.

    Running at another resolution keeps the positions in the reference range (arange(g) / g * ref),
    as timm's RotaryEmbeddingCat and ViT-5 do.
    """
    ref_grid = ref_grid or grid
    freqs = rope_frequencies(head_dim, theta)
    pos_r = torch.arange(grid[0], dtype=torch.float32) / grid[0] * ref_grid[0]
    pos_c = torch.arange(grid[1], dtype=torch.float32) / grid[1] * ref_grid[1]
    rows, cols = torch.meshgrid(pos_r, pos_c, indexing="ij")
    return torch.cat([rows.reshape(-1, 1) * freqs, cols.reshape(-1, 1) * freqs], dim=1)


def rope_tables(angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables [N, head_dim] with each pair's value repeated; a zero angle leaves a token unrotated."""
    return angles.cos().repeat_interleave(2, dim=-1), angles.sin().repeat_interleave(2, dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotates interleaved channel pairs of x [..., N, head_dim]: (a, b) -> (a cos - b sin, b cos + a sin)."""
    pairs = x.float().unflatten(-1, (-1, 2))
    rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    return (x.float() * cos + rotated * sin).to(x.dtype)
