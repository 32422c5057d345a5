"""Shared drawing helpers: figures are built without pyplot (the Agg canvas), so no global backend state changes."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from matplotlib.figure import Figure


def save_figure(fig: Figure, path: Path, dpi: int = 110) -> Path:
    """Writes a figure as PNG, creating the folder; returns the path for the report."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path


def upsample(heat: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A [rows, cols] patch map resized bilinearly to the image size, so it lines up with the pixels."""
    tensor = torch.as_tensor(np.asarray(heat, dtype=np.float32))[None, None]
    return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def normalise(heat: np.ndarray, top: float | None = None) -> np.ndarray:
    """Scales a map to [0, 1] by its maximum, or by `top` to share one scale among maps (all-zero maps stay zero
    rather than dividing by zero)."""
    heat = np.asarray(heat, dtype=np.float64)
    top = heat.max() if top is None else top
    return heat / top if top > 0 else np.zeros_like(heat)


def as_rgb(pixels: np.ndarray) -> np.ndarray:
    """[H, W, 1 or 3] in [0, 1] -> [H, W, 3], so grey and colour images tile together."""
    pixels = np.clip(np.asarray(pixels, dtype=np.float64), 0, 1)
    return np.repeat(pixels, 3, axis=-1) if pixels.shape[-1] == 1 else pixels


def overlay(pixels: np.ndarray, heat: np.ndarray, alpha: float = 0.6, top: float | None = None) -> np.ndarray:
    """A patch map, max-normalised (or divided by `top`) and upsampled, blended over a grey copy of the image
    (colours cannot mislead)."""
    grey = as_rgb(pixels).mean(-1, keepdims=True)
    colours = colormaps["inferno"](upsample(normalise(heat, top), pixels.shape[:2]))[..., :3]
    return (1 - alpha) * grey + alpha * colours


def panel_grid(cells: Sequence[Sequence[np.ndarray]], titles: Sequence[Sequence[str]], heading: str, path: Path,
               cell_inches: float = 1.3) -> Path:
    """Equal-sized RGB panels in rows, each with a small title, drawn as one image on one axes (fast to render)."""
    rows, cols = len(cells), max(len(row) for row in cells)
    height, width = cells[0][0].shape[:2]
    gap_x, gap_y = max(1, width // 12), max(2, round(height * 0.22))
    mosaic = np.ones((rows * (height + gap_y), cols * (width + gap_x) - gap_x, 3))
    fig = Figure(figsize=(cell_inches * cols, cell_inches * rows * (1 + 0.22) + 0.3))
    ax = fig.subplots()
    for r, (row, row_titles) in enumerate(zip(cells, titles)):
        for c, (panel, title) in enumerate(zip(row, row_titles)):
            top, left = r * (height + gap_y) + gap_y, c * (width + gap_x)
            mosaic[top:top + height, left:left + width] = panel
            ax.text(left + width / 2, top - 0.5, title, ha="center", va="bottom", fontsize=6)
    ax.imshow(mosaic, interpolation="nearest")
    ax.axis("off")
    ax.set_title(heading, fontsize=8)
    return save_figure(fig, path)


def tile_mosaic(tiles: Sequence[np.ndarray], cols: int, pad_value: float = np.nan) -> np.ndarray:
    """Tiles of equal shape [h, w] or [h, w, c] laid out in rows of `cols`, one pad pixel between them."""
    tiles = [np.asarray(t, dtype=np.float64) for t in tiles]
    height, width = tiles[0].shape[:2]
    rows = -(-len(tiles) // cols)
    shape = (rows * (height + 1) - 1, cols * (width + 1) - 1) + tiles[0].shape[2:]
    mosaic = np.full(shape, pad_value)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        mosaic[r * (height + 1):r * (height + 1) + height, c * (width + 1):c * (width + 1) + width] = tile
    return mosaic
