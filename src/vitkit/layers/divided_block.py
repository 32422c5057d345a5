"""TimeSformer's divided space-time block: temporal attention among the tokens at one position, then the image
Block (spatial attention and MLP) on every frame."""
from __future__ import annotations

import torch
from torch import nn

from .attention import Attention
from .block import Block
from .drop_path import DropPath
from .norm import make_norm
from .space_time import from_frames, from_tubes, to_frames, to_tubes


class DividedBlock(Block):
    """An image Block (its parameters under the same names) plus a temporal step before it: temporal_norm1 ->
    temporal_attn -> temporal_fc -> residual. temporal_fc starts at zero (VideoTransformer.init_weights), so a fresh
    block is its image block applied frame by frame. Class tokens join every frame's spatial attention and are
    averaged over the frames afterwards; they take no part in temporal attention."""

    def __init__(self, dim: int, num_heads: int, mlp_hidden_dim: int, norm: str = "layernorm", norm_eps: float = 1e-6,
                 qkv_bias: bool = True, proj_bias: bool = True, qk_norm: bool = False, drop_path: float = 0.0,
                 proj_drop: float = 0.0, attn_drop: float = 0.0, attn_gate: bool = False, **block_options) -> None:
        super().__init__(dim, num_heads, mlp_hidden_dim, norm=norm, norm_eps=norm_eps, qkv_bias=qkv_bias,
                         proj_bias=proj_bias, qk_norm=qk_norm, drop_path=drop_path, proj_drop=proj_drop,
                         attn_drop=attn_drop, attn_gate=attn_gate, **block_options)
        self.temporal_norm1 = make_norm(norm, dim, norm_eps)
        self.temporal_attn = Attention(dim, num_heads, qkv_bias=qkv_bias, proj_bias=proj_bias,
                                       qk_norm=norm if qk_norm else None, norm_eps=norm_eps, attn_drop=attn_drop,
                                       proj_drop=proj_drop, gate=attn_gate)
        self.temporal_fc = nn.Linear(dim, dim)
        self.temporal_drop_path = DropPath(drop_path)

    def attend_time(self, patches: torch.Tensor, frames: int, return_attn: bool = False):
        """Temporal attention of patch tokens [B, T*N, D] (each position over its T frames); probabilities
        [B*N, H, T, T] too when asked."""
        out = self.temporal_attn(to_tubes(self.temporal_norm1(patches), frames), return_attn=return_attn)
        out, probs = out if return_attn else (out, None)
        out = from_tubes(out, patches.shape[0])
        return (out, probs) if return_attn else out

    def forward(self, x: torch.Tensor, frames: int, num_prefix: int = 0,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None, return_attn: bool = False):
        """x [B, prefix + T*N, D]; rope: one frame's tables [prefix + N, head_dim]. With return_attn also the
        temporal [B*N, H, T, T] and spatial [B*T, H, prefix + N, prefix + N] probabilities."""
        prefix, patches = x[:, :num_prefix], x[:, num_prefix:]
        temporal = self.attend_time(patches, frames, return_attn)
        temporal, time_probs = temporal if return_attn else (temporal, None)
        patches = patches + self.temporal_drop_path(self.temporal_fc(temporal))
        frame_tokens = to_frames(patches, frames)
        if num_prefix:
            shared = prefix.repeat_interleave(frames, dim=0)
            frame_tokens = torch.cat([shared, frame_tokens], dim=1)
        out = super().forward(frame_tokens, rope, None, return_attn)
        out, space_probs = out if return_attn else (out, None)
        patches = from_frames(out[:, num_prefix:], frames)
        if num_prefix:
            prefix = out[:, :num_prefix].reshape(x.shape[0], frames, num_prefix, -1).mean(1)
            patches = torch.cat([prefix, patches], dim=1)
        return (patches, (time_probs, space_probs)) if return_attn else patches
