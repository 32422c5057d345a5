"""Non-overlapping windows over an NHWC map: partition and its inverse, the shifted-window mask, relative positions.

One implementation for every windowed attention (Swin's and the plain ViT's windowed blocks). Windows are numbered
row-major within each image, and tokens row-major within each window, as timm and the Swin code order them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .pos_embed import resample_pos_embed

# Added to the scores of token pairs that a shifted window joins across the wrap-around: the Swin code's value
# (exp(-100) underflows to 0 in float32, and a finite value keeps a fully masked row impossible to turn into NaN).
MASKED = -100.0


def window_partition(x: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
    """[B, H, W, C] -> [B * windows, wh * ww, C]: each window's tokens as one short sequence."""
    batch, height, width, channels = x.shape
    _check_tiles((height, width), window)
    wh, ww = window
    x = x.reshape(batch, height // wh, wh, width // ww, ww, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, wh * ww, channels)


def window_reverse(windows: torch.Tensor, window: tuple[int, int], grid: tuple[int, int]) -> torch.Tensor:
    """[B * windows, wh * ww, C] -> [B, H, W, C]: the inverse of window_partition for a map of size grid."""
    _check_tiles(grid, window)
    (height, width), (wh, ww) = grid, window
    channels = windows.shape[-1]
    x = windows.reshape(-1, height // wh, width // ww, wh, ww, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, channels)


def pad_to_windows(x: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
    """[B, H, W, C] -> [B, H', W', C] with zeros appended below and to the right, up to the next multiples of the
    window (ViTDet's padding for a grid the windows do not tile); crop [:, :H, :W] to undo it."""
    pad_h, pad_w = (-size % side for size, side in zip(x.shape[1:3], window))
    return F.pad(x, (0, 0, 0, pad_w, 0, pad_h)) if pad_h or pad_w else x


def window_shift(grid: tuple[int, int], window: tuple[int, int]) -> tuple[int, int]:
    """The cyclic shift of a shifted-window block: half a window along each axis, none along an axis one window
    already covers (as timm and the Swin code decide it)."""
    return tuple(0 if size <= side else side // 2 for size, side in zip(grid, window))


def shifted_window_mask(grid: tuple[int, int], window: tuple[int, int], shift: tuple[int, int],
                        device: torch.device | str | None = None) -> torch.Tensor:
    """[windows, N, N] additive mask for a map rolled by -shift: 0 between tokens from one region of the unrolled
    map, MASKED between tokens the roll brought together from opposite edges."""
    _check_tiles(grid, window)
    rows, cols = (_regions(size, side, step, device) for size, side, step in zip(grid, window, shift))
    labels = (rows[:, None] * 3 + cols[None, :]).to(torch.float32)  # one label per region of the rolled map
    labels = window_partition(labels[None, :, :, None], window)[..., 0]  # [windows, N]
    differs = labels[:, :, None] != labels[:, None, :]
    return torch.zeros(differs.shape, device=device).masked_fill(differs, MASKED)


def _regions(size: int, window: int, shift: int, device: torch.device | str | None) -> torch.Tensor:
    """Region of each rolled row (or column): 0 before the last window, 1 in it before the wrap, 2 after the wrap."""
    index = torch.arange(size, device=device)
    if not shift:
        return torch.zeros_like(index)
    return (index >= size - window).long() + (index >= size - shift).long()


def relative_position_index(window: tuple[int, int]) -> torch.Tensor:
    """[N, N] row of the (2 wh - 1) x (2 ww - 1) bias table for each query-key pair: their offset (dy, dx)."""
    wh, ww = window
    ys, xs = torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy = ys[:, None] - ys[None, :] + wh - 1
    dx = xs[:, None] - xs[None, :] + ww - 1
    return dy * (2 * ww - 1) + dx


def resize_relative_position_table(table: torch.Tensor, old: tuple[int, int], new: tuple[int, int]) -> torch.Tensor:
    """A [(2h-1)(2w-1), heads] bias table for another window, resampled bicubically over the offset grid (the Swin
    code's fine-tuning resize)."""
    old_side, new_side = (2 * old[0] - 1, 2 * old[1] - 1), (2 * new[0] - 1, 2 * new[1] - 1)
    if table.shape[0] != old_side[0] * old_side[1]:
        raise ValueError(f"a relative-position table of {table.shape[0]} rows does not fit a {old[0]}x{old[1]} "
                         f"window ({old_side[0]}x{old_side[1]} offsets)")
    if old_side == new_side:
        return table
    return resample_pos_embed(table[None], new_side, old_side, antialias=False)[0]  # the same bicubic 2-D resample


def _check_tiles(grid: tuple[int, int], window: tuple[int, int]) -> None:
    if grid[0] % window[0] or grid[1] % window[1]:
        raise ValueError(f"a {grid[0]}x{grid[1]} map does not tile into {window[0]}x{window[1]} windows; "
                         "its height and width must be multiples of the window's")
