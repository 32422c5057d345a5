"""Mean attention distance (paper Fig. 7, right): how far in pixels each head looks, layer by layer."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from .plots import save_figure
from .tokens import TokenLayout


def patch_distances(grid: tuple[int, int], stride: int) -> torch.Tensor:
    """Pixel distance [N, N] between the centres of every pair of patches of a grid (row-major order)."""
    rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    centres = torch.stack([rows.reshape(-1), cols.reshape(-1)], dim=1).double() * stride
    return torch.cdist(centres, centres)


def uniform_attention_distance(grid: tuple[int, int], stride: int) -> float:
    """The distance a head that spreads attention evenly over all patches would have: the reference line."""
    return patch_distances(grid, stride).mean().item()


def mean_attention_distance(probs: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """Per image and head [B, H]: attention-weighted query-key pixel distance, averaged over patch queries.

    Only patch-to-patch attention has a location; each query's patch weights are renormalised to sum to one, so
    attention parked on class or register tokens does not masquerade as short-range attention.
    """
    patch_attn = probs[..., layout.patches, layout.patches].double()
    patch_attn = patch_attn / patch_attn.sum(-1, keepdim=True).clamp_min(1e-12)
    distances = patch_distances(layout.grid, layout.stride).to(patch_attn.device)
    return (patch_attn * distances).sum(-1).mean(-1)


def distance_table(distances: np.ndarray, layout: TokenLayout, num_images: int) -> dict[str, Any]:
    """The JSON form of a [layers, heads] distance array: per head, per layer mean, and the uniform reference."""
    return {
        "units": "pixels of the model input",
        "image_size": [layout.grid[0] * layout.stride, layout.grid[1] * layout.stride],
        "patch_stride": layout.stride,
        "num_images": num_images,
        "uniform_attention_reference": round(uniform_attention_distance(layout.grid, layout.stride), 4),
        "layers": [{"layer": i, "mean": round(float(row.mean()), 4), "heads": [round(float(d), 4) for d in row]}
                   for i, row in enumerate(distances)],
    }


def plot_attention_distance(distances: np.ndarray, layout: TokenLayout, path: Path) -> Path:
    """Scatter of every head's mean distance against depth, like the paper, with the uniform-attention line."""
    layers, heads = distances.shape
    fig = Figure(figsize=(5.2, 4.0))
    ax = fig.subplots()
    for head in range(heads):
        label = f"head {head}" if heads <= 16 else None
        ax.scatter(np.arange(layers), distances[:, head], s=18, alpha=0.8, label=label)
    ax.plot(np.arange(layers), distances.mean(1), color="black", linewidth=1, label="mean over heads")
    ax.axhline(uniform_attention_distance(layout.grid, layout.stride), color="grey", linestyle="--", linewidth=1,
               label="uniform attention")
    ax.set(xlabel="network depth (layer)", ylabel="mean attention distance (pixels)",
           xticks=range(layers), title="mean attention distance")
    ax.set_ylim(bottom=0)
    if heads <= 16:
        ax.legend(fontsize=6, ncol=2, loc="lower right")
    return save_figure(fig, path)
