"""Linear attention: softmax(q k^T) v replaced by phi(q) (phi(k)^T v), O(N) in the sequence length.

Two feature maps phi: elu(x) + 1 (Katharopoulos et al. 2020), and Performer's FAVOR+ positive orthogonal random
features (Choromanski et al. 2021), whose kernel phi(q) . phi(k) is an unbiased estimate of exp(q . k / sqrt(d)),
so that attention with them approaches softmax attention as the feature count grows.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class EluFeatureMap(nn.Module):
    """phi(x) = elu(x) + 1: positive, so every kernel value phi(q) . phi(k) is too."""

    def forward(self, x: torch.Tensor, is_query: bool) -> torch.Tensor:
        return F.elu(x) + 1


class FavorFeatureMap(nn.Module):
    """FAVOR+: phi(x) = exp(w_i . x' - |x'|^2 / 2) / sqrt(m) for m fixed orthogonal Gaussian rows w_i, x' = x / d^(1/4).

    The random rows are a buffer saved with the model, so a loaded model computes what the saved one did. Each
    query's features are divided by their largest value, and every key's by the largest over all keys of an image
    and head: constant factors that cancel in the attention's normalisation and keep exp() in range.
    """

    def __init__(self, head_dim: int, num_features: int | None = None) -> None:
        super().__init__()
        self.num_features = num_features or default_feature_count(head_dim)
        self.register_buffer("projection", orthogonal_gaussian(self.num_features, head_dim))

    def forward(self, x: torch.Tensor, is_query: bool) -> torch.Tensor:
        x = x * x.shape[-1] ** -0.25
        logits = x @ self.projection.to(x.dtype).t()  # [..., N, m]
        if is_query:  # |x'|^2 / 2 is a per-query constant too: it cancels with the stabiliser
            logits = logits - logits.amax(dim=-1, keepdim=True)
        else:
            logits = logits - x.square().sum(dim=-1, keepdim=True) / 2
            logits = logits - logits.amax(dim=(-1, -2), keepdim=True)
        return logits.exp() * self.num_features ** -0.5

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}"


def default_feature_count(head_dim: int) -> int:
    """Performer's default: d ln d random features for head dim d."""
    return max(1, round(head_dim * math.log(head_dim)))


def orthogonal_gaussian(rows: int, dim: int) -> torch.Tensor:
    """[rows, dim]: blocks of orthonormal rows (QR of a Gaussian matrix), each row rescaled to the norm of a Gaussian
    vector, so every row is marginally N(0, I) and rows within a block are exactly orthogonal (lower variance). Q's
    columns take the signs of R's diagonal: LAPACK's Q alone is not uniformly distributed, and the kernel estimate
    from it stayed biased (0.013 mean error at any feature count, where sign-fixed rows kept converging). Drawn on
    the CPU (from its generator, also when the model is built on another device) and moved to the default device."""
    q, r = torch.linalg.qr(torch.randn(-(-rows // dim), dim, dim, device="cpu"))
    q = q * r.diagonal(dim1=-2, dim2=-1).sign()[:, None, :]
    norms = torch.randn(rows, dim, device="cpu").norm(dim=1, keepdim=True)
    return (q.transpose(-1, -2).reshape(-1, dim)[:rows] * norms).to(torch.get_default_device())


def linear_attention(q_features: torch.Tensor, k_features: torch.Tensor, v: torch.Tensor,
                     key_weight: torch.Tensor | None = None) -> torch.Tensor:
    """out_i = sum_j w_j phi(q_i).phi(k_j) v_j / sum_j w_j phi(q_i).phi(k_j), computed as phi(q_i) (sum_j w_j
    phi(k_j) v_j^T): features [B, H, N, m], v [B, H, N, d], key_weight [B, 1 or H, 1, N] (token merging's sizes)."""
    if key_weight is not None:
        k_features = k_features * key_weight.transpose(-1, -2)
    context = k_features.transpose(-1, -2) @ v  # [B, H, m, d]
    normaliser = q_features @ k_features.sum(dim=-2, keepdim=True).transpose(-1, -2)  # [B, H, N, 1]
    return (q_features @ context) / normaliser.clamp_min(torch.finfo(normaliser.dtype).tiny)


def kernel_probabilities(q_features: torch.Tensor, k_features: torch.Tensor,
                         key_weight: torch.Tensor | None = None) -> torch.Tensor:
    """The N x N attention weights that linear_attention applies without forming them (for attention maps)."""
    scores = q_features @ k_features.transpose(-1, -2)
    if key_weight is not None:
        scores = scores * key_weight
    return scores / scores.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(scores.dtype).tiny)


def make_feature_map(kind: str, head_dim: int, num_features: int | None = None) -> nn.Module:
    """The feature map of a linear attention kind: 'linear' (elu + 1) or 'performer' (FAVOR+)."""
    if kind == "linear":
        return EluFeatureMap()
    if kind == "performer":
        return FavorFeatureMap(head_dim, num_features)
    raise ValueError(f"attention {kind!r} has no feature map; the linear kinds are 'linear' and 'performer'")
