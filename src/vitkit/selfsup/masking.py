"""Which patches masked pre-training hides: MAE's visible subset put back in place, and the ViT paper's BERT-style
corruption of patch embeddings."""
from __future__ import annotations

from dataclasses import dataclass

import torch

# the ViT paper's corruption kinds, in the order of a split (mask, random, keep)
MASKED, RANDOM, KEPT = 1, 2, 3


def unshuffle(visible: torch.Tensor, kept: torch.Tensor, fill: torch.Tensor, num_patches: int) -> torch.Tensor:
    """Visible tokens [B, K, D] (kept[b, i] is the grid place of visible[b, i]) back in grid order [B, N, D], every
    other place holding `fill` [D] (MAE's mask token)."""
    batch, _, dim = visible.shape
    full = fill.to(visible.dtype).expand(batch, num_patches, dim)
    return full.scatter(1, kept[..., None].expand(-1, -1, dim), visible)


def masked_places(kept: torch.Tensor, num_patches: int) -> torch.Tensor:
    """[B, N] booleans, True where a patch was hidden from the encoder."""
    hidden = torch.ones(kept.shape[0], num_patches, dtype=torch.bool, device=kept.device)
    return hidden.scatter(1, kept, False)


def masked_mean(per_patch: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """The mean of a per-patch loss [B, N] over the chosen patches only (0 when none is chosen)."""
    weight = chosen.to(per_patch.dtype)
    return (per_patch * weight).sum() / weight.sum().clamp(min=1.0)


@dataclass(frozen=True)
class Corruption:
    """Per patch [B, N]: 0 untouched, else MASKED, RANDOM or KEPT (corrupted but left as it was)."""

    kind: torch.Tensor

    @property
    def corrupted(self) -> torch.Tensor:
        """The patches the loss is computed on: all three kinds."""
        return self.kind > 0


def corrupt_patches(tokens: torch.Tensor, mask_token: torch.Tensor, rate: float,
                    split: tuple[float, float, float]) -> tuple[torch.Tensor, Corruption]:
    """The ViT paper's masked patch prediction input (appendix B.1.2): each patch embedding is corrupted with
    probability `rate`; a corrupted one becomes the learnable [mask] embedding, the embedding of another patch drawn
    at random from the whole batch, or stays as it is, with the probabilities of `split` (0.8, 0.1, 0.1)."""
    batch, length, dim = tokens.shape
    corrupted = torch.rand(batch, length, device=tokens.device) < rate
    draw = torch.rand(batch, length, device=tokens.device)
    kind = torch.where(draw < split[0], MASKED, torch.where(draw < split[0] + split[1], RANDOM, KEPT))
    kind = torch.where(corrupted, kind, 0)
    swapped = tokens.reshape(batch * length, dim)[other_patches(batch * length, tokens.device)].view_as(tokens)
    out = torch.where((kind == MASKED)[..., None], mask_token.to(tokens.dtype).expand_as(tokens), tokens)
    out = torch.where((kind == RANDOM)[..., None], swapped, out)
    return out, Corruption(kind)


def other_patches(count: int, device: torch.device) -> torch.Tensor:
    """For each of `count` patches, a uniformly drawn index of another one (itself only when it is alone)."""
    if count == 1:
        return torch.zeros(1, dtype=torch.long, device=device)
    other = torch.randint(0, count - 1, (count,), device=device)
    return other + (other >= torch.arange(count, device=device))
