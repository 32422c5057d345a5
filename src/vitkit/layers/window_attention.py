"""Window attention (Swin's W-MSA / SW-MSA): attention within each window, plus a learned bias per head for every
relative offset between two tokens of a window; and ViTDet's windowed blocks of a plain ViT, which run the block's
own attention within non-overlapping windows of the patch grid, padded where the windows do not tile it."""
from __future__ import annotations

import torch
from torch import nn

from .attention import Attention
from .window import (pad_to_windows, relative_position_index, resize_relative_position_table, window_partition,
                     window_reverse)


class WindowAttention(Attention):
    """Attention over [B * windows, N, D] with a (2 wh - 1)(2 ww - 1) x heads relative-position bias table."""

    def __init__(self, dim: int, num_heads: int, window: tuple[int, int], qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0) -> None:
        super().__init__(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop)
        self.window = tuple(window)
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window[0] - 1) * (2 * window[1] - 1), num_heads))
        self.register_buffer("relative_position_index", relative_position_index(self.window), persistent=False)

    def relative_position_bias(self) -> torch.Tensor:
        """[heads, N, N]: each query-key pair's bias, looked up by their offset."""
        tokens = self.window[0] * self.window[1]
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        return bias.reshape(tokens, tokens, -1).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, return_attn: bool = False):
        """x [B * windows, N, D] from window_partition; mask [windows, N, N] (shifted windows) or None. Returns out
        (and, with return_attn, the probabilities [B * windows, heads, N, N] through the explicit path)."""
        bias = self.relative_position_bias()
        if mask is not None:
            windows = mask.shape[0]
            bias = (bias[None] + mask[:, None]).expand(x.shape[0] // windows, -1, -1, -1, -1)
            bias = bias.reshape(x.shape[0], *bias.shape[2:])  # [B * windows, heads, N, N], windows vary fastest
        return super().forward(x, attn_bias=bias, return_attn=return_attn)

    @torch.no_grad()
    def set_window(self, window: tuple[int, int]) -> None:
        """Another window size: the bias table is resampled to the new offsets (fine-tuning at a new resolution)."""
        window = tuple(window)
        old = self.relative_position_bias_table
        table = resize_relative_position_table(old, self.window, window)
        self.relative_position_bias_table = nn.Parameter(table, requires_grad=old.requires_grad)
        self.window = window
        index = relative_position_index(window).to(self.relative_position_index.device)
        self.register_buffer("relative_position_index", index, persistent=False)

    def extra_repr(self) -> str:
        return f"window={self.window[0]}x{self.window[1]}, heads={self.num_heads}"


def windowed_attention(attn: Attention, x: torch.Tensor, grid: tuple[int, int], window: int,
                       rope: tuple[torch.Tensor, torch.Tensor] | None = None, return_attn: bool = False):
    """attn within each window x window tile of the grid: x [B, H * W, D] (patch tokens only, row-major); rope: cos/sin
    [H * W, head_dim]. Padding tokens are masked out as keys. With return_attn, also the probabilities as the full
    [B, heads, N, N] matrix (zero between windows), so attention maps look as a global block's do."""
    batch, tokens, dim = x.shape
    if tokens != grid[0] * grid[1]:
        raise ValueError(f"windowed attention needs the full {grid[0]}x{grid[1]} patch grid ({grid[0] * grid[1]} "
                         f"tokens), got {tokens} tokens")
    side = (window, window)
    padded = pad_to_windows(x.reshape(batch, *grid, dim), side)
    padded_grid = (padded.shape[1], padded.shape[2])
    # each token's 1-based index in the grid, 0 for padding: where each window position came from
    index = pad_to_windows(torch.arange(1, tokens + 1, device=x.device).reshape(1, *grid, 1), side)
    index = window_partition(index, side)[..., 0]  # [windows, window * window]
    bias = None
    if padded_grid != tuple(grid):
        bias = torch.zeros(index.shape, dtype=x.dtype, device=x.device).masked_fill(index == 0, float("-inf"))
        bias = bias[:, None, None].repeat(batch, 1, 1, 1)  # [B * windows, 1, 1, n]: windows vary fastest
    if rope is not None:  # each window's rows of the tables, the same for every image
        rope = tuple(window_partition(pad_to_windows(table.reshape(1, *grid, -1), side), side)
                     .repeat(batch, 1, 1)[:, None] for table in rope)
    out = attn(window_partition(padded, side), rope, bias, return_attn=return_attn)
    if return_attn:
        out, probs = out
    out = window_reverse(out, side, padded_grid)[:, :grid[0], :grid[1]].reshape(batch, tokens, dim)
    return (out, _full_matrix(probs, index, tokens)) if return_attn else out


def _full_matrix(probs: torch.Tensor, index: torch.Tensor, tokens: int) -> torch.Tensor:
    """[B * windows, heads, n, n] per-window probabilities -> [B, heads, N, N], each pair at its tokens' places."""
    windows, n = index.shape
    per_image = probs.reshape(-1, windows, probs.shape[1], n, n).transpose(1, 2)  # [B, heads, windows, n, n]
    full = probs.new_zeros(per_image.shape[0], probs.shape[1], tokens + 1, tokens + 1)  # row/column 0: padding
    full[:, :, index[:, :, None], index[:, None, :]] = per_image
    return full[:, :, 1:, 1:]
