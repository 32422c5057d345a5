"""Window attention (Swin's W-MSA / SW-MSA): attention within each window, plus a learned bias per head for every
relative offset between two tokens of a window."""
from __future__ import annotations

import torch
from torch import nn

from .attention import Attention
from .window import relative_position_index, resize_relative_position_table


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
