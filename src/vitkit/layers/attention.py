"""Multi-head self-attention: fused SDPA by default, an explicit path that also returns the probabilities."""
from __future__ import annotations

import contextlib

import torch
from torch import nn
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from .gate import SigmoidGate
from .norm import make_norm
from .rope import apply_rope


class Attention(nn.Module):
    """qkv projection -> optional per-head QK-norm -> optional RoPE on q, k -> softmax attention -> output projection."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, proj_bias: bool = True,
                 qk_norm: str | None = None, norm_eps: float = 1e-6, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, gate: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.q_norm = make_norm(qk_norm, self.head_dim, norm_eps) if qk_norm else nn.Identity()
        self.k_norm = make_norm(qk_norm, self.head_dim, norm_eps) if qk_norm else nn.Identity()
        self.attn_drop = attn_drop
        self.gate = SigmoidGate(dim) if gate else None
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                attn_bias: torch.Tensor | None = None, return_attn: bool = False):
        """x [B, N, D]; rope: cos/sin [N, head_dim]; attn_bias: additive [H, N, N]. Returns out (and probs [B, H, N, N])."""
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if attn_bias is not None:
            attn_bias = attn_bias.to(q.dtype)
        drop = self.attn_drop if self.training else 0.0
        if return_attn:
            scores = (q * self.scale) @ k.transpose(-2, -1)
            if attn_bias is not None:
                scores = scores + attn_bias
            probs = scores.softmax(dim=-1)
            out = F.dropout(probs, drop) @ v
        else:
            with _cpu_bf16_training_backend(q):
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias, dropout_p=drop)
        out = out.transpose(1, 2).reshape(batch, tokens, dim)
        if self.gate is not None:
            out = self.gate(x, out)
        out = self.proj_drop(self.proj(out))
        return (out, probs) if return_attn else out


def _cpu_bf16_training_backend(q: torch.Tensor) -> contextlib.AbstractContextManager:
    """SDPA's math backend when training in bf16 on a CPU: there the flash kernel's backward took 36 % of a tiny
    CIFAR ViT's step (6x its forward) and the math backend trained 1.33x faster (ViT-S/16: level); elsewhere as is."""
    if q.device.type == "cpu" and q.dtype == torch.bfloat16 and torch.is_grad_enabled():
        return sdpa_kernel(SDPBackend.MATH)
    return contextlib.nullcontext()
