"""Tubelet embedding (ViViT): a clip cut into t x p x p space-time patches, each projected to embed_dim by one
strided Conv3d. With t = 1 it is the image patch embedding applied to every frame."""
from __future__ import annotations

import torch
from torch import nn


class TubeletEmbed(nn.Module):
    """Clips [B, C, T, H, W] -> tokens [B, T/t * H/p * W/p, D], time-major (all patches of tubelet 0 first)."""

    def __init__(self, patch_size: int, tubelet_size: int, in_chans: int, embed_dim: int, bias: bool = True) -> None:
        super().__init__()
        self.patch_size, self.tubelet_size, self.in_chans = patch_size, tubelet_size, in_chans
        kernel = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=kernel, stride=kernel, bias=bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """Returns the tokens and the space-time grid (tubelets, rows, cols)."""
        check_clip(x, self.in_chans, self.tubelet_size, self.patch_size)
        x = self.proj(x)
        grid = (x.shape[-3], x.shape[-2], x.shape[-1])
        return x.flatten(2).transpose(1, 2), grid


def check_clip(x: torch.Tensor, in_chans: int, tubelet_size: int, patch_size: int) -> None:
    """Raises a ValueError that says what is wrong with a batch of clips and how to fix it."""
    if x.ndim != 5:
        hint = (" (a batch of images: add the time axis with x.unsqueeze(2) for one-frame clips)" if x.ndim == 4
                else "")
        raise ValueError(f"a video model expects clips [B, C, T, H, W], got a tensor of shape {tuple(x.shape)}{hint}")
    if x.shape[1] != in_chans:
        raise ValueError(f"the video model expects {in_chans} input channels but got {x.shape[1]} (clip shape "
                         f"{tuple(x.shape)}, laid out [B, C, T, H, W]); build it with in_chans={x.shape[1]} or "
                         "move the channel axis before the time axis")
    frames, height, width = x.shape[2:]
    if frames % tubelet_size:
        raise ValueError(f"{frames} frames do not split into tubelets of {tubelet_size}; give clips of a multiple of "
                         f"{tubelet_size} frames (e.g. {max(tubelet_size, frames // tubelet_size * tubelet_size)})")
    if height % patch_size or width % patch_size:
        fit = [max(patch_size, round(s / patch_size) * patch_size) for s in (height, width)]
        raise ValueError(f"frame size {height}x{width} is not divisible by the patch size {patch_size}; resize the "
                         f"frames to {fit[0]}x{fit[1]}, or choose a patch size that divides it")
