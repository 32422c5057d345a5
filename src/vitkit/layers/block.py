"""The pre-norm transformer block: x += DropPath(LayerScale(attn(norm(x)))); x += DropPath(LayerScale(mlp(norm(x))))."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .attention import Attention
from .drop_path import DropPath
from .gate import SigmoidGate
from .layer_scale import LayerScale
from .mlp import make_mlp
from .norm import make_norm
from .window_attention import windowed_attention


class Block(nn.Module):
    """One encoder layer (the paper's Eq. 2-3) with the optional modern parts: LayerScale, QK-norm, RoPE, gates; and
    the faster ones: linear attention (`attention`), attention within windows of the patch grid (`window_size`, as
    ViTDet's windowed blocks), fewer heads than dim / head_dim (`head_dim` given: a pruned block)."""

    def __init__(self, dim: int, num_heads: int, mlp_hidden_dim: int, mlp: str = "gelu", norm: str = "layernorm",
                 norm_eps: float = 1e-6, qkv_bias: bool = True, proj_bias: bool = True, qk_norm: bool = False,
                 init_values: float | None = None, drop_path: float = 0.0, proj_drop: float = 0.0,
                 attn_drop: float = 0.0, attn_gate: bool = False, ffn_gate: bool = False,
                 mlp_norm: bool = False, mlp_bias: bool = True, attention: str = "softmax",
                 num_features: int | None = None, window_size: int = 0, head_dim: int | None = None) -> None:
        super().__init__()
        self.window_size = window_size
        self.norm1 = make_norm(norm, dim, norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, proj_bias=proj_bias,
                              qk_norm=norm if qk_norm else None, norm_eps=norm_eps,
                              attn_drop=attn_drop, proj_drop=proj_drop, gate=attn_gate, head_dim=head_dim,
                              kind=attention, num_features=num_features)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = make_norm(norm, dim, norm_eps)
        self.mlp = make_mlp(mlp, dim, mlp_hidden_dim, bias=mlp_bias, drop=proj_drop,
                            norm=norm if mlp_norm else None, norm_eps=norm_eps)
        self.ffn_gate = SigmoidGate(dim) if ffn_gate else None
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path2 = DropPath(drop_path)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                attn_bias: torch.Tensor | None = None, return_attn: bool = False,
                grid: tuple[int, int] | None = None,
                merge: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None):
        """Returns the block output, and the attention probabilities when return_attn is set. grid: the patch grid
        (windowed blocks cut it into windows); merge: token merging between attention and MLP, called with the
        tokens and the attention keys averaged over heads, returning fewer tokens."""
        if merge is not None and (return_attn or self.window_size):
            raise ValueError("a block merging tokens returns no attention maps and cannot be windowed")
        if self.window_size:
            if grid is None:
                raise ValueError("a windowed block needs the patch grid: pass grid=(rows, cols)")
            attn_out = windowed_attention(self.attn, self.norm1(x), grid, self.window_size, rope, return_attn)
        else:
            attn_out = self.attn(self.norm1(x), rope, attn_bias, return_attn=return_attn,
                                 return_keys=merge is not None)
        if return_attn:
            attn_out, probs = attn_out
        elif merge is not None:
            attn_out, keys = attn_out
        x = x + self.drop_path1(self.ls1(attn_out))
        if merge is not None:
            x = merge(x, keys)
        h = self.norm2(x)
        ffn_out = self.mlp(h)
        if self.ffn_gate is not None:
            ffn_out = self.ffn_gate(h, ffn_out)
        x = x + self.drop_path2(self.ls2(ffn_out))
        return (x, probs) if return_attn else x
