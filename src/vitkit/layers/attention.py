"""Multi-head self-attention: fused SDPA by default, an explicit path that also returns the probabilities, and the
linear kinds (elu + 1, Performer's FAVOR+) that never form the N x N matrix."""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .gate import SigmoidGate
from .linear_attention import kernel_probabilities, linear_attention, make_feature_map
from .norm import make_norm
from .rope import apply_rope

ATTENTIONS = ("softmax", "linear", "performer")


class Attention(nn.Module):
    """qkv projection -> optional per-head QK-norm -> optional RoPE on q, k -> attention -> output projection.

    `kind`: 'softmax' (the paper's), 'linear' (elu + 1 features) or 'performer' (FAVOR+ random features, `num_features`
    of them). `head_dim` apart from dim / num_heads: a pruned block keeps the head width but fewer heads.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, proj_bias: bool = True,
                 qk_norm: str | None = None, norm_eps: float = 1e-6, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, gate: bool = False, head_dim: int | None = None, kind: str = "softmax",
                 num_features: int | None = None) -> None:
        super().__init__()
        if head_dim is None and dim % num_heads:
            raise ValueError(f"embed_dim ({dim}) must be divisible by num_heads ({num_heads})")
        if kind not in ATTENTIONS:
            raise ValueError(f"unknown attention {kind!r}; choose one of {ATTENTIONS}")
        self.num_heads = num_heads
        self.head_dim = head_dim or dim // num_heads
        inner = num_heads * self.head_dim
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, inner * 3, bias=qkv_bias)
        self.q_norm = make_norm(qk_norm, self.head_dim, norm_eps) if qk_norm else nn.Identity()
        self.k_norm = make_norm(qk_norm, self.head_dim, norm_eps) if qk_norm else nn.Identity()
        self.attn_drop = attn_drop
        self.feature_map = None if kind == "softmax" else make_feature_map(kind, self.head_dim, num_features)
        self.gate = SigmoidGate(dim, inner) if gate else None
        self.proj = nn.Linear(inner, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop)
        self.compute_dtype: torch.dtype | None = None  # q, k, v cast to it (the model's set_attention_dtype)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                attn_bias: torch.Tensor | None = None, return_attn: bool = False, return_keys: bool = False):
        """x [B, N, D]; rope: cos/sin [N, head_dim]; attn_bias: additive [H, N, N] (per image after patch dropout:
        [B, 1, N, head_dim] and [B, H, N, N]; token merging's per-key [B, 1, 1, N]). Returns out, and with
        return_attn the probabilities [B, H, N, N], with return_keys the keys averaged over heads [B, N, head_dim]
        (before RoPE: token merging's similarity is of content)."""
        batch, tokens, _ = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        keys = k.mean(dim=1) if return_keys else None
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        out_dtype = v.dtype  # what the projection expects back (bf16 under autocast, fp32 around int8 layers)
        if self.compute_dtype is not None:
            q, k, v = q.to(self.compute_dtype), k.to(self.compute_dtype), v.to(self.compute_dtype)
        if attn_bias is not None:
            attn_bias = attn_bias.to(q.dtype)
        drop = self.attn_drop if self.training else 0.0
        if self.feature_map is not None:
            out, probs = self._linear(q, k, v, attn_bias, return_attn)
        elif return_attn or _explicit_is_faster(q):
            scores = (q * self.scale) @ k.contiguous().transpose(-2, -1)  # k^T as a view: 1.03-1.04x (below)
            if attn_bias is not None:
                scores = scores + attn_bias
            probs = scores.softmax(dim=-1, dtype=torch.promote_types(q.dtype, torch.float32)).to(q.dtype)
            out = F.dropout(probs, drop) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias, dropout_p=drop)
        out = out.transpose(1, 2).reshape(batch, tokens, -1)
        if out.dtype != out_dtype:  # a no-op .to() is still a dispatched call per block (train_profile.py)
            out = out.to(out_dtype)
        if self.gate is not None:
            out = self.gate(x, out)
        out = self.proj_drop(self.proj(out))
        extras = ((probs,) if return_attn else ()) + ((keys,) if return_keys else ())
        return (out, *extras) if extras else out

    def _linear(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_bias: torch.Tensor | None,
                return_attn: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Linear attention; a per-key bias b_j (token merging's log-sizes) weighs key j by exp(b_j), as it does inside
        a softmax."""
        if attn_bias is not None and attn_bias.shape[-2] != 1:
            raise ValueError(f"linear attention takes a per-key bias [..., 1, N] only (token merging's sizes), not "
                             f"{list(attn_bias.shape)}: an N x N bias such as ALiBi needs attention='softmax'")
        weight = attn_bias.exp() if attn_bias is not None else None
        q_features, k_features = self.feature_map(q, is_query=True), self.feature_map(k, is_query=False)
        if return_attn:
            probs = kernel_probabilities(q_features, k_features, weight)
            return probs @ v, probs
        return linear_attention(q_features, k_features, v, weight), None


def _explicit_is_faster(q: torch.Tensor) -> bool:
    """On a CPU in bf16 the explicit matmul-softmax-matmul beats every SDPA backend (training 1.2-1.4x SDPA's math
    backend, whose flash backward is slower still; inference 1.1-1.2x flash, measured); elsewhere SDPA wins. Its k is
    made contiguous first so that the matmul reads k^T through strides: otherwise both eager and inductor write k^T
    out transposed; the explicit copy measured 1.03-1.04x (compiled int8 and bf16 ViT-S/16 inference, tiny CIFAR
    ViT training eager and compiled; 1.00x on the Fashion-MNIST budget model's 12-token steps)."""
    return q.device.type == "cpu" and q.dtype == torch.bfloat16
