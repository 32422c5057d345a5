"""Principal components of the patch-embedding filters (paper Fig. 7, left): what the first layer looks for."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from ..models.vision_transformer import VisionTransformer
from .plots import save_figure, tile_mosaic


def filters_message(model: VisionTransformer) -> str | None:
    """Why a model has no pixel filters to show, or None when it has them."""
    if getattr(model, "backbone", None) is not None:  # a Swin has none: its patch embedding reads pixels
        stem = "a ResNet" if model.cfg.backbone else "a convolutional stem"
        return (f"this model embeds the feature maps of {stem}, not pixels: its patch embedding has no pixel "
                "filters to show")
    if model.cfg.in_chans not in (1, 3):
        return f"filters are drawn for 1- or 3-channel inputs; this model takes {model.cfg.in_chans} channels"
    return None


def filter_components(weight: torch.Tensor, num_components: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """Top principal components [k, C, P, P] of the D filters [D, C, P, P], and each one's share of the variance.

    Each of the D filters is one sample in C*P*P dimensions; the components are the leading right singular vectors
    of the centred filter matrix, ordered by explained variance.
    """
    flat = weight.detach().double().reshape(weight.shape[0], -1)
    flat = flat - flat.mean(0, keepdim=True)
    _, singular, directions = torch.linalg.svd(flat, full_matrices=False)
    variance = singular ** 2
    k = min(num_components, directions.shape[0])
    ratio = variance[:k] / variance.sum().clamp_min(1e-30)
    return directions[:k].reshape(k, *weight.shape[1:]).float(), ratio.float()


def plot_filter_components(components: torch.Tensor, ratio: torch.Tensor, path: Path, cols: int = 7) -> Path:
    """The components as tiles (RGB for 3 channels, grey for 1), each stretched to its own min..max."""
    tiles = []
    for component in components.numpy():
        tile = np.moveaxis(component, 0, -1)
        span = tile.max() - tile.min()
        tiles.append((tile - tile.min()) / span if span > 0 else np.zeros_like(tile))
    cols = min(cols, len(tiles))
    grey = tiles[0].shape[-1] == 1
    mosaic = tile_mosaic([t[..., 0] for t in tiles] if grey else tiles, cols, pad_value=1.0)
    rows = -(-len(tiles) // cols)
    fig = Figure(figsize=(1.0 * cols + 0.4, 1.0 * rows + 0.7))
    ax = fig.subplots()
    ax.imshow(mosaic, cmap="gray" if grey else None, interpolation="nearest", vmin=0, vmax=1)
    ax.axis("off")
    shown = ratio.sum().item()
    ax.set_title(f"RGB embedding filters: first {len(tiles)} principal components "
                 f"({100 * shown:.0f}% of the variance)", fontsize=8)
    return save_figure(fig, path)
