"""Attention maps from the explicit softmax path: per-head class-token attention, rollout, register attention."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..models.vision_transformer import VisionTransformer
from .plots import as_rgb, overlay, panel_grid
from .tokens import TokenLayout


def collect_attention(model: VisionTransformer, images: torch.Tensor) -> list[torch.Tensor]:
    """Every block's attention probabilities [B, H, T, T], checked so that no map is silently empty."""
    with torch.no_grad():
        maps = model.get_attention_maps(images)
    check_attention_maps(maps, len(model.blocks), images.shape[0], model.cfg.num_heads)
    return maps


def check_attention_maps(maps: Sequence[torch.Tensor | None], depth: int, batch: int, heads: int) -> None:
    """Raises if a block returned no, misshapen or non-normalised probabilities (e.g. a fused kernel slipped in)."""
    if len(maps) != depth:
        raise RuntimeError(f"expected attention maps from {depth} blocks, got {len(maps)}; the model must return "
                           "probabilities from every block (Block.forward(..., return_attn=True))")
    for i, probs in enumerate(maps):
        if probs is None or probs.ndim != 4 or probs.shape[:2] != (batch, heads) or probs.shape[2] != probs.shape[3]:
            shape = None if probs is None else tuple(probs.shape)
            raise RuntimeError(f"block {i} returned attention of shape {shape}, expected [{batch}, {heads}, T, T]; "
                               "the explicit softmax path must be used for analysis, not the fused kernel")
        row_sums = probs.sum(-1)
        if not torch.allclose(row_sums, torch.ones_like(row_sums), atol=1e-3):
            raise RuntimeError(f"block {i}'s attention rows do not sum to 1 (min {row_sums.min():.3g}, max "
                               f"{row_sums.max():.3g}); these are not softmax probabilities")


def query_rows(probs: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """Attention [..., T] of the query that stands for the image: the class token(s), else the mean of patches."""
    queries = layout.class_tokens if layout.has_class_token else layout.patches
    return probs[..., queries, :].mean(-2)


def patch_map(rows: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """Attention rows [..., T] restricted to the patch keys and laid out on the grid [..., rows, cols]."""
    return rows[..., layout.patches].reshape(*rows.shape[:-1], *layout.grid)


def class_attention(probs: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """Per-head attention of the image's query token onto the patches [B, H, rows, cols] for one layer."""
    return patch_map(query_rows(probs, layout), layout)


def attention_rollout(maps: Sequence[torch.Tensor], residual: float = 0.5) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020) [B, T, T]: head-averaged attention mixed with the identity.

    The identity term stands for the residual connection: A_l = residual * I + (1 - residual) * mean_h(attn_l),
    rows renormalised, multiplied from the first block to the last.
    """
    rollout = None
    for probs in maps:
        mixed = probs.double().mean(1)
        eye = torch.eye(mixed.shape[-1], dtype=mixed.dtype, device=mixed.device)
        mixed = residual * eye + (1 - residual) * mixed
        mixed = mixed / mixed.sum(-1, keepdim=True)
        rollout = mixed if rollout is None else mixed @ rollout
    if rollout is None:
        raise ValueError("attention rollout needs the maps of at least one block")
    return rollout.float()


def rollout_map(rollout: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """The image query's rolled-out attention onto the patches [B, rows, cols]."""
    return patch_map(query_rows(rollout, layout), layout)


def register_attention(probs: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """Head-averaged attention of each register token onto the patches [B, R, rows, cols]."""
    return patch_map(probs[:, :, layout.registers].mean(1), layout)


def register_share(probs: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """Per image [B]: how much of the image query's attention (head-averaged) lands on the register tokens."""
    return query_rows(probs, layout).mean(1)[..., layout.registers].sum(-1)


def plot_head_maps(pixels: np.ndarray, maps: np.ndarray, names: Sequence[str], layer: int, query: str,
                   path: Path) -> Path:
    """Rows of [image, head 0, head 1, ...]: one layer's per-head attention maps overlaid on each image."""
    cells = [[as_rgb(image)] + [overlay(image, heat) for heat in per_head] for image, per_head in zip(pixels, maps)]
    titles = [[name] + [f"head {h}" for h in range(maps.shape[1])] for name in names]
    return panel_grid(cells, titles, f"layer {layer}: per-head attention of the {query}", path)


def plot_overlays(pixels: np.ndarray, maps: np.ndarray, names: Sequence[str], titles: Sequence[str], heading: str,
                  path: Path, per_row: int = 4) -> Path:
    """Pairs of [image, map overlaid on it], several pairs per row: rollout and Grad-CAM pictures."""
    pairs = [([as_rgb(image), overlay(image, heat)], [name, title])
             for image, heat, name, title in zip(pixels, maps, names, titles)]
    rows = [pairs[i:i + per_row] for i in range(0, len(pairs), per_row)]
    cells = [[panel for pair in row for panel in pair[0]] for row in rows]
    labels = [[label for pair in row for label in pair[1]] for row in rows]
    return panel_grid(cells, labels, heading, path, cell_inches=1.6)


def plot_register_maps(pixels: np.ndarray, maps: np.ndarray, names: Sequence[str], layer: int,
                       path: Path) -> Path:
    """Rows of [image, register 0, register 1, ...]: where each register token looks, apart from the class token."""
    cells = [[as_rgb(image)] + [overlay(image, heat) for heat in per_reg] for image, per_reg in zip(pixels, maps)]
    titles = [[name] + [f"register {r}" for r in range(maps.shape[1])] for name in names]
    return panel_grid(cells, titles, f"layer {layer}: head-averaged attention of each register token", path)
