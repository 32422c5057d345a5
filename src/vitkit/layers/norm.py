"""Token norms: LayerNorm, RMSNorm (in fp32, as ViT-5 computes it), a per-token GroupNorm, and LayerNorm over the
channels of a [B, C, H, W] map (dense heads)."""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

NORMS = ("layernorm", "rmsnorm", "groupnorm")


class RMSNorm(nn.Module):
    """Weight-only RMS norm computed in float32 (or wider) so bf16 activations keep their precision."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.to(torch.promote_types(x.dtype, torch.float32))  # .float() would round float64 down
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (normed * self.weight).to(x.dtype)


class TokenGroupNorm(nn.Module):
    """GroupNorm over each token's channels (split into groups), so tokens never mix."""

    def __init__(self, dim: int, eps: float = 1e-6, num_groups: int = 32) -> None:
        super().__init__()
        if dim % num_groups:
            raise ValueError(f"groupnorm needs embed_dim ({dim}) divisible by num_groups ({num_groups})")
        self.num_groups = num_groups
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        grouped = x.reshape(-1, self.num_groups, shape[-1] // self.num_groups)
        grouped = F.layer_norm(grouped, grouped.shape[-1:], eps=self.eps)
        return grouped.reshape(shape) * self.weight + self.bias


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of each position of a [B, C, H, W] map (ViTDet's "LN" on convolutions)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def make_norm(kind: str, dim: int, eps: float = 1e-6) -> nn.Module:
    """One constructor for every norm the config can name."""
    if kind == "layernorm":
        return nn.LayerNorm(dim, eps=eps)
    if kind == "rmsnorm":
        return RMSNorm(dim, eps=eps)
    if kind == "groupnorm":
        return TokenGroupNorm(dim, eps=eps)
    raise ValueError(f"unknown norm {kind!r}; choose one of {NORMS}")
