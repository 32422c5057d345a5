"""Batched image operations on float [B, C, H, W] tensors in [0, 1], each with per-sample strengths.

Photometric and affine operations come from kornia (one library, CPU and GPU); flips, integer crops, box masks
and random-resized crops are a line or two of torch indexing or `grid_sample`, measured faster (docs/data.md).
"""
from __future__ import annotations

import kornia
import numpy as np
import torch
import torch.nn.functional as F

_BLUR_KERNEL = 13  # widest Gaussian kernel 3-Augment's blur needs (sigma <= 2)


def as_tensor(values: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """Per-sample parameters drawn on the CPU, sent to the images' device and dtype."""
    return torch.as_tensor(values, dtype=like.dtype).to(like.device, non_blocking=True)


def to_index(mask: np.ndarray, device: torch.device) -> torch.Tensor | None:
    """Positions where a per-sample CPU mask is true, on the images' device (None when there are none)."""
    where = np.flatnonzero(mask)
    return torch.from_numpy(where).to(device, non_blocking=True) if where.size else None


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma, kept at the input's channel count (as PIL's convert('L') then back to RGB)."""
    if x.shape[1] == 1:
        return x
    return kornia.color.rgb_to_grayscale(x).expand_as(x)


def brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL ImageEnhance.Brightness: a blend with black (kornia's brightness is additive, a different operation)."""
    return (x * factor.view(-1, 1, 1, 1)).clamp(0, 1)


def contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL ImageEnhance.Contrast: a blend with the image's mean grey."""
    return kornia.enhance.adjust_contrast_with_mean_subtraction(x, factor)


def color(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL ImageEnhance.Color: a blend with the grayscale image."""
    return kornia.enhance.adjust_saturation_with_gray_subtraction(x, factor)


def sharpness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL ImageEnhance.Sharpness: a blend with the 3x3 smoothed image, borders untouched."""
    return kornia.enhance.sharpness(x, factor).clamp(0, 1)


def auto_contrast(x: torch.Tensor) -> torch.Tensor:
    """PIL ImageOps.autocontrast: stretch each channel to [0, 1]; a flat channel stays as it is."""
    flat = x.flatten(2)
    low, high = flat.amin(-1)[..., None, None], flat.amax(-1)[..., None, None]
    return torch.where(high > low, kornia.enhance.normalize_min_max(x, 0.0, 1.0).clamp(0, 1), x)


def equalize(x: torch.Tensor) -> torch.Tensor:
    """PIL ImageOps.equalize: per-channel histogram equalisation."""
    return kornia.enhance.equalize(x)


def invert(x: torch.Tensor) -> torch.Tensor:
    """PIL ImageOps.invert: 1 - x."""
    return kornia.enhance.invert(x)


def posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Keeps the top `bits` bits of each 8-bit value (0 bits: black)."""
    return kornia.enhance.posterize(x, bits.to(torch.int64))


def solarize(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """PIL ImageOps.solarize: inverts values at or above the threshold (given in 8-bit levels)."""
    return kornia.enhance.solarize(x, threshold / 255.0)


def solarize_add(x: torch.Tensor, addition: torch.Tensor, threshold: float = 128) -> torch.Tensor:
    """Adds `addition` (8-bit levels) to values below the threshold, as timm's SolarizeAdd."""
    raised = (x + addition.view(-1, 1, 1, 1) / 255.0).clamp(max=1)
    return torch.where(x < threshold / 255.0, raised, x)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """A Gaussian blur of per-sample sigma (pixels), as PIL's GaussianBlur(radius=sigma)."""
    size = min(_BLUR_KERNEL, 2 * ((min(x.shape[-2:]) - 1) // 2) + 1)
    return kornia.filters.gaussian_blur2d(x, size, sigma[:, None].expand(-1, 2).contiguous(), border_type="reflect")


def affine(x: torch.Tensor, matrices: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Warps each image by its own 2x3 pixel-space matrix (source to destination); uncovered pixels get `fill`."""
    return kornia.geometry.transform.warp_affine(x, matrices, tuple(x.shape[-2:]), padding_mode="fill",
                                                 fill_value=fill).clamp(0, 1)


def resize(x: torch.Tensor, size: tuple[int, int], interpolation: str) -> torch.Tensor:
    """Resizes a batch, antialiased when shrinking (as PIL does)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return kornia.geometry.transform.resize(x, size, interpolation=interpolation, antialias=True).clamp(0, 1)


def center_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The centre `size` window (an odd margin leaves the extra pixel at the bottom/right)."""
    top, left = (x.shape[-2] - size[0]) // 2, (x.shape[-1] - size[1]) // 2
    return x[..., top:top + size[0], left:left + size[1]]


def hflip(x: torch.Tensor, flip: np.ndarray) -> torch.Tensor:
    """Mirrors the samples whose `flip` flag is set."""
    mask = as_tensor(flip, x).view(-1, 1, 1, 1) > 0
    return torch.where(mask, x.flip(-1), x)


def crop(x: torch.Tensor, top: np.ndarray, left: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Per-sample integer crops of one size, gathered in a single indexing operation."""
    rows = torch.from_numpy(top[:, None] + np.arange(size[0])).to(x.device, non_blocking=True)
    cols = torch.from_numpy(left[:, None] + np.arange(size[1])).to(x.device, non_blocking=True)
    batch = torch.arange(x.shape[0], device=x.device)
    return x[batch[:, None, None], :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


def resized_crop(x: torch.Tensor, boxes: np.ndarray, size: tuple[int, int], interpolation: str) -> torch.Tensor:
    """Crops per-sample boxes (top, left, height, width) and resizes each to `size`, in one grid_sample
    ('nearest' leaves values as they are, so it also crops label maps)."""
    height, width = x.shape[-2:]
    top, left, box_h, box_w = (boxes[:, i].astype(np.float64) for i in range(4))
    theta = np.zeros((len(boxes), 2, 3))
    theta[:, 0, 0], theta[:, 1, 1] = box_w / width, box_h / height
    theta[:, 0, 2] = (2 * left + box_w) / width - 1
    theta[:, 1, 2] = (2 * top + box_h) / height - 1
    grid = F.affine_grid(as_tensor(theta, x), [x.shape[0], x.shape[1], *size], align_corners=False)
    # keep sample points on the box's own pixel centres, as cropping first and resizing second would
    low = as_tensor(np.stack([(2 * left + 1) / width - 1, (2 * top + 1) / height - 1], 1), x)[:, None, None]
    high = as_tensor(np.stack([(2 * (left + box_w) - 1) / width - 1, (2 * (top + box_h) - 1) / height - 1], 1),
                     x)[:, None, None]
    grid = torch.maximum(torch.minimum(grid, high), low)
    out = F.grid_sample(x, grid, mode=interpolation, padding_mode="border", align_corners=False)
    return out if interpolation == "nearest" else out.clamp(0, 1)  # nearest copies values (masks: class indices)


def box_mask(boxes: np.ndarray, size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """Boolean [B, 1, H, W] masks of per-sample boxes (top, left, height, width)."""
    rows, cols = np.arange(size[0]), np.arange(size[1])
    inside_rows = (rows >= boxes[:, :1]) & (rows < boxes[:, :1] + boxes[:, 2:3])
    inside_cols = (cols >= boxes[:, 1:2]) & (cols < boxes[:, 1:2] + boxes[:, 3:4])
    mask = inside_rows[:, :, None] & inside_cols[:, None, :]
    return torch.from_numpy(mask[:, None]).to(device, non_blocking=True)
