"""Pictures of what an objective has learnt, drawn at every evaluation: MAE's original | masked | reconstruction
grid, and masked patch prediction's true against predicted mean colours."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from .mae import MaskedAutoencoder  # noqa: E402
from .masked_patch import MaskedPatchPredictor  # noqa: E402
from .patches import class_colors, input_pixels, patchify, unpatchify  # noqa: E402

MAE_PICTURE = "mae_reconstruction.png"
MASKED_PATCH_PICTURE = "masked_patch_colors.png"
HIDDEN_GRAY = 0.5


def image_grid(columns: dict[str, torch.Tensor], path: Path, title: str) -> Path:
    """One row per image, one column per named batch of [B, C, H, W] pictures in [0, 1]."""
    rows = len(next(iter(columns.values())))
    fig, axes = plt.subplots(rows, len(columns), figsize=(1.7 * len(columns), 1.7 * rows), squeeze=False)
    for col, (name, batch) in enumerate(columns.items()):
        axes[0, col].set_title(name, fontsize=9)
        for row in range(rows):
            picture = batch[row].float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
            gray = picture.shape[-1] == 1
            axes[row, col].imshow(picture[..., 0] if gray else picture, cmap="gray" if gray else None,
                                  vmin=0, vmax=1, interpolation="nearest")
            axes[row, col].axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / (1.7 * rows)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def hide_patches(pixels: torch.Tensor, hidden: torch.Tensor, patch_size: int) -> torch.Tensor:
    """[B, C, H, W] pixels with the hidden patches ([B, N] True) painted gray."""
    grid = (pixels.shape[-2] // patch_size, pixels.shape[-1] // patch_size)
    patches = patchify(pixels, patch_size)
    return unpatchify(torch.where(hidden[..., None], torch.full_like(patches, HIDDEN_GRAY), patches), patch_size, grid)


@torch.no_grad()
def mae_pictures(objective: MaskedAutoencoder, images: torch.Tensor, folder: Path) -> Path:
    """original | masked (hidden patches gray) | reconstruction (hidden patches predicted, visible ones kept)."""
    prep, size = objective.encoder.preprocess, objective.encoder.cfg.patch_size
    output = objective(images)
    pixels = input_pixels(images.float(), prep)
    columns = {"original": pixels, "masked": hide_patches(pixels, output.masked, size),
               "reconstruction": input_pixels(objective.reconstruct(images, output), prep)}
    ratio = objective.cfg.mask_ratio
    return image_grid(columns, Path(folder) / MAE_PICTURE, f"MAE, {ratio:.0%} of the patches hidden")


@torch.no_grad()
def masked_patch_pictures(objective: MaskedPatchPredictor, images: torch.Tensor, folder: Path) -> Path:
    """original | corrupted patches (gray) | true mean colours | predicted colours on the corrupted patches
    (pixels for the L2 variant), the others gray."""
    prep, size, cfg = objective.encoder.preprocess, objective.encoder.cfg.patch_size, objective.cfg
    output = objective(images)
    pixels = input_pixels(images.float(), prep)
    corrupted = output.corruption.corrupted
    columns = {"original": pixels, "corrupted": hide_patches(pixels, corrupted, size)}
    if cfg.target == "pixels":
        predicted = unpatchify(output.pred.float(), size, (pixels.shape[-2] // size, pixels.shape[-1] // size))
        columns["predicted"] = hide_patches(input_pixels(predicted, prep), ~corrupted, size)
    else:
        chans, grid = pixels.shape[1], (pixels.shape[-2] // size, pixels.shape[-1] // size)
        true = color_mosaic(objective.targets(images), grid, chans, cfg.color_bits)
        guess = color_mosaic(objective.predicted_classes(output), grid, chans, cfg.color_bits)
        columns["true colours"] = true
        columns["predicted"] = hide_patches(guess, ~corrupted, cfg.cells)
    name = {"mean_color": "3-bit mean colour", "mean_color_4x4": "4x4 downsized 3-bit colours",
            "pixels": "pixels (L2)"}[cfg.target]
    return image_grid(columns, Path(folder) / MASKED_PATCH_PICTURE,
                      f"masked patch prediction ({name}), {cfg.corrupt_rate:.0%} of the patches corrupted")


def color_mosaic(classes: torch.Tensor, grid: tuple[int, int], chans: int, bits: int) -> torch.Tensor:
    """Colour classes [B, N, cells^2] -> a picture [B, C, rows*cells, cols*cells], one pixel per cell."""
    batch, _, count = classes.shape
    cells = int(np.sqrt(count))
    colors = class_colors(classes, chans, bits).reshape(batch, grid[0], grid[1], cells, cells, chans)
    return colors.permute(0, 5, 1, 3, 2, 4).reshape(batch, chans, grid[0] * cells, grid[1] * cells)
