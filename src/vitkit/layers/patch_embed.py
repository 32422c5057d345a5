"""Patch embedding: the paper's linear projection of flattened P x P x C patches, as a strided conv; and FlexiViT's
resize of its filters to another patch size."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchEmbed(nn.Module):
    """Cuts an image (or a CNN feature map, with patch_size=1) into patches and projects each to embed_dim."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int, bias: bool = True,
                 norm: nn.Module | None = None) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, bias=bias)
        self.norm = norm if norm is not None else nn.Identity()  # Swin normalises the patch tokens

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Returns tokens [B, N, D] in row-major patch order and the patch grid (rows, cols)."""
        check_image(x, self.in_chans, self.patch_size, what="patch embedding")
        x = self.proj(x)
        grid = (x.shape[-2], x.shape[-1])
        return self.norm(x.flatten(2).transpose(1, 2)), grid


def check_image(x: torch.Tensor, in_chans: int, stride: int, what: str) -> None:
    """Raises a ValueError that says what is wrong with an input batch and how to fix it."""
    if x.ndim != 4:
        raise ValueError(f"{what} expects a batch of images [B, C, H, W], got a tensor of shape {tuple(x.shape)}; "
                         "add a batch dimension with x.unsqueeze(0) for a single image")
    if x.shape[1] != in_chans:
        hint = ("repeat a grayscale channel with x.expand(-1, 3, -1, -1)" if x.shape[1] == 1 and in_chans == 3
                else f"build the model with in_chans={x.shape[1]}")
        raise ValueError(f"{what} expects {in_chans} input channels but got {x.shape[1]} "
                         f"(input shape {tuple(x.shape)}); {hint}")
    h, w = x.shape[-2:]
    if h % stride or w % stride:
        fit_h, fit_w = max(stride, round(h / stride) * stride), max(stride, round(w / stride) * stride)
        raise ValueError(f"image size {h}x{w} is not divisible by the patch size {stride}; "
                         f"resize or crop the images to {fit_h}x{fit_w}, or choose a patch size that divides it")


def resize_patch_kernel(weight: torch.Tensor, new_size: tuple[int, int]) -> torch.Tensor:
    """FlexiViT's pseudo-inverse resize of patch filters [D, C, p, p] to [D, C, p', p']: on a patch resized to
    p' x p' (bilinear, antialiased when shrinking, as PIL) the new filters give what the old ones gave on the patch,
    exactly when p' >= p and as the least-squares fit otherwise, so a checkpoint's patches may change size."""
    old_size = tuple(weight.shape[-2:])
    if old_size == tuple(new_size):
        return weight
    # resize(x) = matrix @ x for a flattened patch x: the columns are the resized basis patches
    basis = torch.eye(old_size[0] * old_size[1], dtype=torch.float64).reshape(-1, 1, *old_size)
    resized = F.interpolate(basis, size=tuple(new_size), mode="bilinear", align_corners=False, antialias=True)
    matrix = resized.reshape(basis.shape[0], -1).T
    # <matrix x, w'> = <x, w> for every x  <=>  matrix^T w' = w: w' = pinv(matrix^T) w
    flat = weight.detach().double().reshape(-1, basis.shape[0]).T
    new = torch.linalg.pinv(matrix.T) @ flat
    return new.T.reshape(*weight.shape[:-2], *new_size).to(weight.dtype)
