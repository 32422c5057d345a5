"""Position-embedding similarity (paper Fig. 7, centre): has the model learned the 2D layout of the patches?"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from ..models.vision_transformer import VisionTransformer
from .plots import save_figure, tile_mosaic


def position_table(model: VisionTransformer) -> torch.Tensor | None:
    """The absolute position embedding of the patches [N, D] (learned or sin-cos), or None when there is none."""
    if model.pos_embed is not None:
        return model.pos_embed.detach()[0, model._pos_embed_prefix:]
    if model.pos_embed_sincos is not None:
        return model.pos_embed_sincos.detach()[0]
    return None


def position_message(model: VisionTransformer) -> str | None:
    """What the similarity plot cannot show for this model: said in words instead of drawing noise."""
    cfg = model.cfg
    if position_table(model) is None:
        if cfg.rope:
            return ("this model encodes position only with 2D RoPE (rotations of queries and keys inside "
                    "attention): there is no absolute position table, so there is nothing to compare")
        if cfg.alibi:
            return "this model encodes position only with a 2D ALiBi attention bias: there is no position table"
        return "this model has no position encoding at all (pos_embed='none'): there is nothing to compare"
    if cfg.rope:
        return ("this model also rotates queries and keys with 2D RoPE; the plot shows only its absolute table")
    return None


def position_similarity(table: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Cosine similarity [rows, cols, rows, cols] of each patch position's embedding with every other one's."""
    if table.shape[0] != grid[0] * grid[1]:
        raise ValueError(f"position table has {table.shape[0]} entries but the grid is {grid[0]}x{grid[1]}; "
                         "pass the patch entries only (without class or register rows)")
    unit = F.normalize(table.double(), dim=-1)
    return (unit @ unit.T).float().reshape(grid[0], grid[1], grid[0], grid[1])


def plot_position_similarity(similarity: torch.Tensor, path: Path) -> Path:
    """A rows x cols grid of small maps: tile (i, j) is position (i, j)'s similarity with all positions."""
    rows, cols = similarity.shape[:2]
    tiles = [similarity[i, j].numpy() for i in range(rows) for j in range(cols)]
    mosaic = tile_mosaic(tiles, cols)
    side = min(9.0, max(3.5, 0.35 * cols * 1.6))
    fig = Figure(figsize=(side + 1.0, side * rows / cols + 0.6))
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(mosaic), cmap="viridis", vmin=-1, vmax=1, interpolation="nearest")
    step = similarity.shape[3] + 1
    ax.set_xticks(np.arange(cols) * step + (cols - 1) / 2, [str(c + 1) for c in range(cols)], fontsize=6)
    ax.set_yticks(np.arange(rows) * (similarity.shape[2] + 1) + (rows - 1) / 2, [str(r + 1) for r in range(rows)],
                  fontsize=6)
    ax.set(xlabel="input patch column", ylabel="input patch row", title="position embedding similarity")
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.colorbar(image, ax=ax, fraction=0.04, label="cosine similarity")
    return save_figure(fig, path)
