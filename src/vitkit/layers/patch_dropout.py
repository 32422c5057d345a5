"""Patch dropout (Liu et al. 2022): each training image keeps a random subset of its patch tokens.

Attention and MLP cost scale with the token count, so keeping half the patches makes a training step about twice as
fast; at test time every patch is kept. Prefix and suffix tokens are always kept, and the RoPE tables and ALiBi bias
are gathered with the kept patches so every token keeps its own position.
"""
from __future__ import annotations

import torch
from torch import nn


class PatchDropout(nn.Module):
    """Keeps round(num_patches * (1 - rate)) random patches per image in training mode (at least one)."""

    def __init__(self, rate: float, num_prefix_tokens: int, num_suffix_tokens: int) -> None:
        super().__init__()
        self.num_prefix, self.num_suffix = num_prefix_tokens, num_suffix_tokens
        self.set_rate(rate)

    def set_rate(self, rate: float) -> None:
        """The share of patches to drop from now on; a plain attribute, so torch.compile guards on it as before."""
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"patch_drop_rate must be in [0, 1), got {rate}")
        self.rate = rate

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                bias: torch.Tensor | None = None):
        """x [B, N, D], rope cos/sin [N, head_dim], bias [H, N, N] -> the kept tokens [B, K, D] with per-image
        tables: cos/sin [B, 1, K, head_dim], bias [B, H, K, K]."""
        if not self.training or self.rate == 0.0:
            return x, rope, bias
        return self.keep_random(x, rope, bias, self.rate)[:3]

    def keep_random(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None,
                    bias: torch.Tensor | None, rate: float):
        """Drops `rate` of the patches whatever the mode (MAE masks at evaluation too); also returns the kept
        patches' grid indices [B, K] (in drawn order), which put the encoded tokens back in place (unshuffle)."""
        batch, length, dim = x.shape
        num_patches = length - self.num_prefix - self.num_suffix
        keep = self.num_kept(num_patches, rate)
        kept = torch.rand(batch, num_patches, device=x.device).argsort(dim=1)[:, :keep]
        fixed = torch.arange(length, device=x.device)
        index = torch.cat([fixed[:self.num_prefix].expand(batch, -1), kept + self.num_prefix,
                           fixed[length - self.num_suffix:].expand(batch, -1)], dim=1)
        x = x.gather(1, index[..., None].expand(-1, -1, dim))
        if rope is not None:
            rope = tuple(table[index][:, None] for table in rope)
        if bias is not None:
            bias = bias[:, index[:, :, None], index[:, None, :]].transpose(0, 1)
        return x, rope, bias, kept

    def num_kept(self, num_patches: int, rate: float | None = None) -> int:
        rate = self.rate if rate is None else rate
        return max(1, round(num_patches * (1.0 - rate)))

    def extra_repr(self) -> str:
        return f"rate={self.rate}"
