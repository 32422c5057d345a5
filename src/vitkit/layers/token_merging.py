"""Token merging (ToMe, Bolya et al. 2023): between attention and MLP, each block merges its r most similar token
pairs, so a trained ViT runs on fewer tokens block by block, without retraining.

Bipartite soft matching: the mergeable tokens alternate into sets A and B; each A token finds its most similar B
token (cosine similarity of the attention keys, averaged over heads); the r best-matched A tokens are averaged into
their B partners. A merged token is the size-weighted mean of the tokens it stands for, and attention adds log(size)
to every key's logits (proportional attention), so a token standing for s patches weighs as the s would have.
Prefix tokens (class, distillation, registers, prompts) and suffix registers are never merged. Every original token
remembers which merged token it went into, so outputs can be spread back to the original layout (unmerge).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .rope import rope_tables


def bipartite_soft_matching(metric: torch.Tensor, r: int, num_prefix: int = 0,
                            num_suffix: int = 0) -> tuple[torch.Tensor, int] | None:
    """Where each of N tokens goes when r pairs merge: dest [B, N] (slot in the merged sequence) and its length
    N - r; None when nothing merges. r is capped at half the mergeable tokens (each A token merges at most once).

    The merged order: prefix tokens, the unmerged A tokens, the B tokens (each holding what merged into it), suffix
    tokens; A and B tokens keep their original order."""
    batch, tokens, _ = metric.shape
    mergeable = tokens - num_prefix - num_suffix
    r = min(r, mergeable // 2)
    if r <= 0:
        return None
    with torch.no_grad():
        body = F.normalize(metric[:, num_prefix:tokens - num_suffix].float(), dim=-1)
        a, b = body[:, ::2], body[:, 1::2]
        best, partner = (a @ b.transpose(1, 2)).max(dim=-1)  # [B, |A|]: each A token's most similar B token
        order = best.argsort(dim=-1, descending=True)
        merged, kept = order[:, :r], order[:, r:].sort(dim=-1).values
        num_a, num_b = a.shape[1], b.shape[1]
        b_slots = num_prefix + num_a - r + torch.arange(num_b, device=metric.device)
        a_dest = torch.empty(batch, num_a, dtype=torch.long, device=metric.device)
        a_dest.scatter_(1, kept, (num_prefix + torch.arange(num_a - r, device=metric.device)).expand(batch, -1))
        a_dest.scatter_(1, merged, b_slots[partner.gather(1, merged)])
        body_dest = torch.empty(batch, mergeable, dtype=torch.long, device=metric.device)
        body_dest[:, ::2], body_dest[:, 1::2] = a_dest, b_slots.expand(batch, -1)
        fixed = torch.arange(tokens, device=metric.device).expand(batch, -1)
        dest = torch.cat([fixed[:, :num_prefix], body_dest, fixed[:, tokens - num_suffix:] - r], dim=1)
    return dest, tokens - r


def merge_weighted(x: torch.Tensor, dest: torch.Tensor, length: int,
                   size: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Size-weighted means of x [B, N, C] per destination slot, and the merged sizes [B, length, 1] in float32 (size
    None: each token stands for one)."""
    batch, _, channels = x.shape
    if size is None:
        size = torch.ones(batch, x.shape[1], 1, device=x.device)
    total = size.new_zeros(batch, length, 1).scatter_add_(1, dest[..., None], size)
    weighted = x.new_zeros(batch, length, channels).scatter_add(1, dest[..., None].expand(-1, -1, channels),
                                                                 x * size.to(x.dtype))
    return weighted / total.to(x.dtype), total


class TokenMerger:
    """One forward pass's merging state, block to block: token sizes, each original token's slot, RoPE angles.

    `angles` [N, head_dim / 2] (or per image [B, 1, N, head_dim / 2] after patch dropout): a merged token's RoPE
    position is the size-weighted mean of the positions it stands for; angles are linear in position, so merging
    the angles as the tokens are merged gives exactly that position's rotation.
    """

    def __init__(self, x: torch.Tensor, num_prefix: int, num_suffix: int, angles: torch.Tensor | None = None) -> None:
        self.num_prefix, self.num_suffix = num_prefix, num_suffix
        self.size: torch.Tensor | None = None  # [B, N, 1] once something merged
        self.source = torch.arange(x.shape[1], device=x.device).expand(x.shape[0], -1)  # [B, N0]: current slot
        self.angles = angles

    def rope(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """cos/sin tables for the current tokens ([N, head_dim], or [B, 1, N, head_dim] once per image)."""
        if self.angles is None:
            return None
        cos, sin = rope_tables(self.angles)
        return (cos[:, None], sin[:, None]) if cos.dim() == 3 else (cos, sin)

    def attention_bias(self) -> torch.Tensor | None:
        """Proportional attention: log(size) added to every key's logits, [B, 1, 1, N] (None before any merge)."""
        return None if self.size is None else self.size.log()[:, None, None, :, 0]

    def step(self, r: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The merge for one block, called by it with (tokens, keys). It starts from the state as it is now, so a
        gradient-checkpointed block that reruns it in the backward pass gets the same result again."""
        size, source, angles = self.size, self.source, self.angles

        def merge(x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
            matched = bipartite_soft_matching(keys, r, self.num_prefix, self.num_suffix)
            if matched is None:
                return x
            dest, length = matched
            x, self.size = merge_weighted(x, dest, length, size)
            self.source = dest.gather(1, source)
            if angles is not None:
                per_image = angles.reshape(-1, *angles.shape[-2:]).expand(x.shape[0], -1, -1)
                self.angles = merge_weighted(per_image, dest, length, size)[0]
            return x
        return merge

    def unmerge(self, x: torch.Tensor) -> torch.Tensor:
        """[B, N, C] merged tokens -> [B, N0, C]: every original token takes the value of the token it went into."""
        return x.gather(1, self.source[..., None].expand(-1, -1, x.shape[-1]))
