"""Attention inside a Swin's windows: for every block, where each window's queries look among the window's keys,
laid back on the map (a shifted block's windows rolled back to where their tokens came from)."""
from __future__ import annotations

import torch

from ..layers import window_reverse
from ..models import SwinTransformer

NOT_DEFINED_MESSAGE = ("attention rollout and class-token attention are not defined for a Swin Transformer: it has "
                       "no class token, and its shifted windows attend over different groups of tokens from block to "
                       "block, so the blocks' attention does not compose into one token-to-token map; the "
                       "per-window maps show where each window's queries look instead")


def collect_window_attention(model: SwinTransformer, images: torch.Tensor) -> list[torch.Tensor]:
    """Every block's window attention [B * windows, heads, N, N], checked to be softmax probabilities."""
    with torch.no_grad():
        maps = model.get_attention_maps(images)
    for i, probs in enumerate(maps):
        row_sums = probs.sum(-1)
        if not torch.allclose(row_sums, torch.ones_like(row_sums), atol=1e-3):
            raise RuntimeError(f"block {i}'s window attention rows do not sum to 1; these are not probabilities")
    return maps


def window_maps(probs: torch.Tensor, grid: tuple[int, int], window: tuple[int, int],
                shift: tuple[int, int]) -> torch.Tensor:
    """[B * windows, heads, N, N] -> [B, heads, rows, cols]: each key's attention averaged over its window's queries
    (so each window's map sums to 1), at the key's place on the unshifted map."""
    keys = probs.mean(-2).transpose(1, 2)  # [B * windows, N, heads]
    laid = window_reverse(keys, window, grid)  # [B, rows, cols, heads] on the rolled map
    if any(shift):
        laid = torch.roll(laid, shifts=shift, dims=(1, 2))
    return laid.permute(0, 3, 1, 2)
