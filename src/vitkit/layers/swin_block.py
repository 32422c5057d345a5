"""The Swin block on an NHWC map: x += DropPath(window attention(norm(x))), the map cyclically shifted around the
attention in every other block; x += DropPath(MLP(norm(x)))."""
from __future__ import annotations

import torch
from torch import nn

from .drop_path import DropPath
from .mlp import Mlp
from .window import window_partition, window_reverse
from .window_attention import WindowAttention


class SwinBlock(nn.Module):
    """One block of a Swin stage; the stage passes the shift and mask, which depend on the map's size."""

    def __init__(self, dim: int, num_heads: int, window: tuple[int, int], mlp_hidden_dim: int, qkv_bias: bool = True,
                 proj_drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = WindowAttention(dim, num_heads, window, qkv_bias=qkv_bias, attn_drop=attn_drop,
                                    proj_drop=proj_drop)
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, mlp_hidden_dim, act="gelu", drop=proj_drop)
        self.drop_path2 = DropPath(drop_path)

    def forward(self, x: torch.Tensor, shift: tuple[int, int] = (0, 0), mask: torch.Tensor | None = None,
                return_attn: bool = False):
        """x [B, H, W, C]; shift (rows, cols) rolls the map before the windows are cut (and back after); mask is
        shifted_window_mask's for that shift. With return_attn also the windows' attention probabilities
        [B * windows, heads, N, N] (windows of the rolled map, row-major)."""
        grid = (x.shape[1], x.shape[2])
        h = self.norm1(x)
        if any(shift):
            h = torch.roll(h, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        h = self.attn(window_partition(h, self.attn.window), mask, return_attn=return_attn)
        h, probs = h if return_attn else (h, None)
        h = window_reverse(h, self.attn.window, grid)
        if any(shift):
            h = torch.roll(h, shifts=shift, dims=(1, 2))
        x = x + self.drop_path1(h)
        x = x + self.drop_path2(self.mlp(self.norm2(x)))
        return (x, probs) if return_attn else x
