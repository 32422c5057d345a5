"""Absolute position encodings (learned or fixed 2D sin-cos), their resampling, and 2D ALiBi biases."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

POS_EMBEDS = ("learned", "sincos", "none")


def sincos_2d(embed_dim: int, grid: tuple[int, int], temperature: float = 10000.0) -> torch.Tensor:
    """Fixed 2D sin-cos table [rows*cols, D]: the first half of the channels encodes the row, the second the column."""
    if embed_dim % 4:
        raise ValueError(f"sincos position embedding needs embed_dim divisible by 4, got {embed_dim}")
    quarter = embed_dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(torch.arange(grid[0], dtype=torch.float64),
                                torch.arange(grid[1], dtype=torch.float64), indexing="ij")
    row_angles = rows.reshape(-1, 1) * omega
    col_angles = cols.reshape(-1, 1) * omega
    table = torch.cat([row_angles.sin(), row_angles.cos(), col_angles.sin(), col_angles.cos()], dim=1)
    return table.float()


def resample_pos_embed(pos_embed: torch.Tensor, new_grid: tuple[int, int], old_grid: tuple[int, int],
                       num_prefix_tokens: int = 0, antialias: bool = True) -> torch.Tensor:
    """Resizes a learned [1, prefix + rows*cols, D] table bicubically in 2D, keeping prefix entries apart.

    timm resamples with antialias=True; Hugging Face and the official ViT-5 code use antialias=False.
    """
    if tuple(new_grid) == tuple(old_grid):
        return pos_embed
    prefix, patches = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    if patches.shape[1] != old_grid[0] * old_grid[1]:
        raise ValueError(f"position embedding has {patches.shape[1]} patch entries, which does not match "
                         f"the grid {old_grid[0]}x{old_grid[1]}; check num_prefix_tokens ({num_prefix_tokens})")
    dim = patches.shape[-1]
    image = patches.float().reshape(1, old_grid[0], old_grid[1], dim).permute(0, 3, 1, 2)
    image = F.interpolate(image, size=tuple(new_grid), mode="bicubic", align_corners=False, antialias=antialias)
    patches = image.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], dim).to(pos_embed.dtype)
    return torch.cat([prefix, patches], dim=1)


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """The ALiBi paper's geometric head slopes 2^(-8 i / H), i = 1..H."""
    return torch.tensor([2.0 ** (-8.0 * (i + 1) / num_heads) for i in range(num_heads)])


def alibi_2d_bias(num_heads: int, grid: tuple[int, int], num_prefix_tokens: int = 0,
                  num_suffix_tokens: int = 0) -> torch.Tensor:
    """Additive attention bias [H, N, N]: minus slope times the Euclidean patch distance; extra tokens get 0."""
    rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    coords = torch.stack([rows.reshape(-1), cols.reshape(-1)], dim=1).float()
    distance = torch.cdist(coords, coords)
    patch_bias = -alibi_slopes(num_heads).view(-1, 1, 1) * distance
    total = num_prefix_tokens + coords.shape[0] + num_suffix_tokens
    bias = torch.zeros(num_heads, total, total)
    end = num_prefix_tokens + coords.shape[0]
    bias[:, num_prefix_tokens:end, num_prefix_tokens:end] = patch_bias
    return bias


def grid_side(num_tokens: int, what: str) -> int:
    """The side of a square grid holding num_tokens, or a clear error."""
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(f"{what} needs a square number of tokens, got {num_tokens}")
    return side
