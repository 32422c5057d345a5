"""Images as patch sequences, and the pixel targets masked pre-training predicts from them."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..preprocess import Preprocess


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, N, p*p*C]: patches in the patch embedding's row-major order, pixels as (row, col,
    channel), as MAE lays them out."""
    batch, chans, height, width = images.shape
    rows, cols = height // patch_size, width // patch_size
    x = images.reshape(batch, chans, rows, patch_size, cols, patch_size)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(batch, rows * cols, patch_size * patch_size * chans)


def unpatchify(patches: torch.Tensor, patch_size: int, grid: tuple[int, int]) -> torch.Tensor:
    """The inverse of patchify: [B, N, p*p*C] -> [B, C, H, W]."""
    batch, _, length = patches.shape
    chans = length // (patch_size * patch_size)
    x = patches.reshape(batch, grid[0], grid[1], patch_size, patch_size, chans)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(batch, chans, grid[0] * patch_size, grid[1] * patch_size)


def norm_pix(patches: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Each patch standardised by its own mean and (unbiased) variance: MAE's norm_pix_loss targets, which make the
    decoder predict local contrast rather than absolute intensity."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + eps).sqrt()


def input_pixels(images: torch.Tensor, preprocess: Preprocess) -> torch.Tensor:
    """The model's normalised input back in [0, 1] pixel units (colour targets and pictures need true colours)."""
    prep = preprocess.for_channels(images.shape[1])
    mean = torch.tensor(prep.mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std = torch.tensor(prep.std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images * std + mean).clamp(0.0, 1.0)


def mean_color_classes(pixels: torch.Tensor, patch_size: int, cells: int = 1, bits: int = 3) -> torch.Tensor:
    """[B, C, H, W] in [0, 1] -> [B, N, cells*cells] colour classes: each patch (or each of its cells x cells
    sub-squares, the paper's "4 x 4 downsized patch") averaged per channel, quantised to 2**bits levels, the channel
    levels read as the digits of one number (first channel most significant): 512 classes for 3-bit RGB."""
    if patch_size % cells:
        raise ValueError(f"a {patch_size}-pixel patch cannot be cut into {cells}x{cells} cells; choose a patch size "
                         f"divisible by {cells}")
    levels = 2 ** bits
    means = F.avg_pool2d(pixels.float(), patch_size // cells)  # [B, C, rows*cells, cols*cells]
    batch, chans, height, width = means.shape
    binned = (means * levels).floor().clamp(0, levels - 1).long()
    binned = binned.reshape(batch, chans, height // cells, cells, width // cells, cells)
    binned = binned.permute(0, 2, 4, 3, 5, 1).reshape(batch, -1, cells * cells, chans)
    place = levels ** torch.arange(chans - 1, -1, -1, device=pixels.device)
    return (binned * place).sum(-1)


def class_colors(classes: torch.Tensor, chans: int, bits: int = 3) -> torch.Tensor:
    """Colour classes -> [..., C] colours in [0, 1] (each level's centre), to draw predicted colours."""
    levels = 2 ** bits
    place = levels ** torch.arange(chans - 1, -1, -1, device=classes.device)
    digits = torch.div(classes[..., None], place, rounding_mode="floor") % levels
    return (digits.float() + 0.5) / levels
