"""The video Vision Transformer, wired from the image ViT's layers by a VideoConfig; four attention patterns.

clips [B, C, T, H, W] -> tubelet embedding (Conv3d, t x p x p) -> tokens time-major, + spatial and temporal positions
  frames:     per frame [cls] + N tokens -> Blocks -> norm -> pool per frame -> mean over time -> head
  joint:      [cls] + all T'*N tokens -> Blocks over the whole sequence -> norm -> pool -> head
  divided:    [cls] + T'*N tokens -> DividedBlocks (temporal attention per position, then the image Block per frame)
              -> norm -> pool -> head
  factorised: per frame [cls] + N tokens -> Blocks -> norm -> pool per frame -> + temporal positions
              -> temporal Blocks over the T' frame tokens -> mean over time -> head

Each block is the image model's Block (DividedBlock adds a temporal step to it), so VisionTransformer's weights,
names and options carry over (models/inflate.py); with one frame of one tubelet, joint attention is the image model.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..layers import (Block, DividedBlock, TokenPool, TubeletEmbed, drop_path_rates, make_norm, resample_pos_embed,
                      rope_angles, rope_tables, to_frames)
from ..preprocess import Preprocess
from .param_groups import param_groups
from .video_config import VideoConfig


class VideoTransformer(nn.Module):
    """A video ViT configured entirely by a VideoConfig (keyword overrides use the same field names)."""

    def __init__(self, cfg: VideoConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        cfg = cfg or VideoConfig()
        self.cfg = cfg = cfg.replace(**overrides) if overrides else cfg
        dim = self.num_features = cfg.embed_dim
        self.grad_checkpointing = False
        self.preset_name: str | None = None
        self.preprocess = Preprocess()
        self.class_names: list[str] | None = None

        self.patch_embed = TubeletEmbed(cfg.patch_size, cfg.tubelet_size, cfg.in_chans, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if cfg.class_token else None
        self.pos_embed = (nn.Parameter(torch.zeros(1, self._pos_embed_prefix + cfg.num_patches, dim))
                          if cfg.pos_embed == "learned" else None)
        self.time_embed = nn.Parameter(torch.zeros(1, cfg.num_tubelets, dim)) if cfg.attention != "frames" else None
        self.pos_drop = nn.Dropout(cfg.pos_drop_rate)
        self._build_rope_buffers()

        rates = drop_path_rates(cfg.depth + cfg.temporal_depth, cfg.drop_path_rate)
        block = DividedBlock if cfg.attention == "divided" else Block
        self.blocks = nn.ModuleList([
            block(dim, cfg.num_heads, cfg.mlp_hidden_dim, drop_path=rate, **_block_options(cfg))
            for rate in rates[:cfg.depth]])
        self.norm = nn.Identity() if cfg.fc_norm else make_norm(cfg.norm, dim, cfg.norm_eps)
        self.pool = TokenPool(cfg.global_pool, int(cfg.class_token), cfg.num_prefix_tokens, 0)
        self.temporal_blocks = nn.ModuleList([
            Block(dim, cfg.num_heads, cfg.mlp_hidden_dim, drop_path=rate, **_block_options(cfg))
            for rate in rates[cfg.depth:]]) if cfg.attention == "factorised" else None
        self.fc_norm = make_norm(cfg.norm, dim, cfg.norm_eps) if cfg.fc_norm else nn.Identity()
        self.head_drop = nn.Dropout(cfg.drop_rate)
        self.head = nn.Linear(dim, cfg.num_classes) if cfg.num_classes else nn.Identity()
        self.init_weights()

    # ----- construction helpers -------------------------------------------------------------------------------
    @property
    def _pos_embed_prefix(self) -> int:
        """Class tokens the spatial table covers (timm's no_embed_class=False covers them)."""
        return self.cfg.num_prefix_tokens if self.cfg.pos_embed == "learned" and not self.cfg.no_embed_class else 0

    def _build_rope_buffers(self) -> None:
        cos, sin = self._frame_rope(self.cfg.grid_size) or (None, None)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def _frame_rope(self, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """One frame's 2D RoPE tables [prefix + N, head_dim] (the class token unrotated), as the image model's."""
        cfg = self.cfg
        if not cfg.rope:
            return None
        angles = rope_angles(cfg.head_dim, cfg.rope_theta, grid, ref_grid=cfg.grid_size)
        return rope_tables(torch.cat([angles.new_zeros(cfg.num_prefix_tokens, angles.shape[1]), angles]))

    @torch.no_grad()
    def init_weights(self) -> None:
        """timm's ViT initialisation; each divided block's temporal_fc at zero, so it starts as its image block."""
        for table in (self.pos_embed, self.time_embed):
            if table is not None:
                nn.init.trunc_normal_(table, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for block in self.blocks:
            if isinstance(block, DividedBlock):
                nn.init.zeros_(block.temporal_fc.weight)
                nn.init.zeros_(block.temporal_fc.bias)

    # ----- forward ----------------------------------------------------------------------------------------------
    def _space(self, grid: tuple[int, int]) -> tuple[torch.Tensor | None, tuple | None]:
        """The spatial table and one frame's RoPE tables for this grid (the table resampled bicubically when the
        grid is not the config's)."""
        cfg, spatial = self.cfg, self.pos_embed
        rope = (self.rope_cos, self.rope_sin) if self.rope_cos is not None else None
        if grid == cfg.grid_size:
            return spatial, rope
        if spatial is not None:
            spatial = resample_pos_embed(spatial, grid, cfg.grid_size, self._pos_embed_prefix)
        rope = self._frame_rope(grid)
        return spatial, tuple(t.to(self.patch_embed.proj.weight.device) for t in rope) if rope else None

    def _time(self, frames: int) -> torch.Tensor:
        """The temporal table for this many tubelets (resampled linearly when it is not the config's)."""
        return self.time_embed if frames == self.cfg.num_tubelets else resample_time_embed(self.time_embed, frames)

    def _add_tokens(self, x: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
        """[class token] + tokens, with the positions added (to the class token too where the table covers it)."""
        if self.cls_token is None:
            return x if pos is None else x + pos
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        if pos is not None and self._pos_embed_prefix:
            return torch.cat([cls, x], dim=1) + pos
        return torch.cat([cls, x if pos is None else x + pos], dim=1)

    @property
    def per_frame(self) -> bool:
        """Frames (or tubelets) first run through the blocks one by one: 'frames' and 'factorised' attention."""
        return self.cfg.attention in ("frames", "factorised")

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, int, tuple | None]:
        """Clips -> the sequence entering the first block (per frame: one sequence each, [B*T', prefix + N, D]),
        the number of tubelets and one frame's RoPE tables."""
        tokens, (frames, rows, cols) = self.patch_embed(x)
        spatial, rope = self._space((rows, cols))
        if self.per_frame:
            return self.pos_drop(self._add_tokens(to_frames(tokens, frames), spatial)), frames, rope
        prefix = spatial[:, :self._pos_embed_prefix] if spatial is not None else None
        clip_pos = self._time(frames)[:, :, None]
        if spatial is not None:
            clip_pos = clip_pos + spatial[:, None, self._pos_embed_prefix:]
        pos = clip_pos.reshape(1, -1, tokens.shape[-1])
        if prefix is not None and prefix.shape[1]:
            pos = torch.cat([prefix, pos], dim=1)
        return self.pos_drop(self._add_tokens(tokens, pos)), frames, rope

    def _joint_rope(self, rope: tuple | None, frames: int) -> tuple | None:
        """Tables for the whole clip: every frame's patches rotated by their 2D position, the class token not."""
        if rope is None:
            return None
        prefix = self.cfg.num_prefix_tokens
        return tuple(torch.cat([t[:prefix], t[prefix:].repeat(frames, 1)]) for t in rope)

    def _run(self, block: nn.Module, *args) -> torch.Tensor:
        if self.grad_checkpointing and self.training:
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clips -> normalised tokens [B, prefix + T'*N, D]; per frame: the frames' pooled tokens [B, T', D]
        (factorised: after the temporal encoder)."""
        cfg = self.cfg
        x, frames, rope = self.embed(x)
        if cfg.attention == "joint":
            rope = self._joint_rope(rope, frames)
            for block in self.blocks:
                x = self._run(block, x, rope)
            return self.norm(x)
        if cfg.attention == "divided":
            for block in self.blocks:
                x = self._run(block, x, frames, cfg.num_prefix_tokens, rope)
            return self.norm(x)
        for block in self.blocks:
            x = self._run(block, x, rope)
        x = self.pool(self.norm(x))
        x = x.reshape(-1, frames, x.shape[-1])
        if cfg.attention == "frames":
            return x
        x = x + self._time(frames)
        for block in self.temporal_blocks:
            x = self._run(block, x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Tokens -> pooled features (pre_logits=True) or class logits; per frame: the mean over the frames."""
        x = x.mean(1) if self.per_frame else self.pool(x)
        x = self.head_drop(self.fc_norm(x))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    # ----- inspection -------------------------------------------------------------------------------------------
    def get_attention_maps(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Spatial attention [B, T', H, S, S] (S = prefix + N tokens of one frame) and temporal attention
        [B, P, H, T', T'] (P = N positions; factorised: 1, the frame tokens; 'frames' has none) of every block,
        through the explicit softmax path. Joint attention's maps are its rows restricted to the same frame or the
        same position and renormalised."""
        cfg, batch = self.cfg, x.shape[0]
        x, frames, rope = self.embed(x)
        space, time = [], []
        if cfg.attention == "joint":
            for block in self.blocks:
                x, probs = block(x, self._joint_rope(rope, frames), return_attn=True)
                space.append(_within(probs, frames, cfg.num_prefix_tokens, same="frame"))
                time.append(_within(probs, frames, cfg.num_prefix_tokens, same="position"))
        elif cfg.attention == "divided":
            for block in self.blocks:
                x, (time_probs, space_probs) = block(x, frames, cfg.num_prefix_tokens, rope, return_attn=True)
                time.append(time_probs.reshape(batch, -1, *time_probs.shape[1:]))
                space.append(space_probs.reshape(batch, frames, *space_probs.shape[1:]))
        else:
            for block in self.blocks:
                x, probs = block(x, rope, return_attn=True)
                space.append(probs.reshape(batch, frames, *probs.shape[1:]))
            if cfg.attention == "factorised":
                x = self.pool(self.norm(x)).reshape(batch, frames, -1) + self._time(frames)
                for block in self.temporal_blocks:
                    x, probs = block(x, return_attn=True)
                    time.append(probs[:, None])
        return space, time

    # ----- training and adaptation ------------------------------------------------------------------------------
    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new zero-initialised head (fine-tuning on another label set)."""
        self.cfg = self.cfg.replace(num_classes=num_classes, global_pool=global_pool or self.cfg.global_pool)
        self.pool.kind = self.cfg.global_pool
        head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        for param in head.parameters():
            nn.init.zeros_(param)
        self.head = head.to(self.patch_embed.proj.weight.device)

    def set_input_size(self, img_size: int | tuple[int, int] | None = None, num_frames: int | None = None) -> None:
        """A new native frame size and/or clip length: the spatial table resampled in 2D (bicubic), the temporal
        one in 1D (linear), the RoPE tables rebuilt."""
        old_grid, old_frames = self.cfg.grid_size, self.cfg.num_tubelets
        changes = {k: v for k, v in (("img_size", img_size), ("num_frames", num_frames)) if v is not None}
        self.cfg = self.cfg.replace(**changes)
        with torch.no_grad():
            if self.pos_embed is not None:
                self.pos_embed = nn.Parameter(resample_pos_embed(self.pos_embed.data, self.cfg.grid_size, old_grid,
                                                                 self._pos_embed_prefix))
            if self.time_embed is not None and self.cfg.num_tubelets != old_frames:
                self.time_embed = nn.Parameter(resample_time_embed(self.time_embed.data, self.cfg.num_tubelets))
        device = self.patch_embed.proj.weight.device
        self._build_rope_buffers()
        self.to(device)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute block activations in backward: less memory for a little more compute."""
        self.grad_checkpointing = enable

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "time_embed", "cls_token"}

    def layer_id(self, param_name: str) -> int:
        """Depth of a parameter for layer-wise lr decay: 0 for the embeddings, i+1 for block i (the temporal
        encoder's blocks follow the spatial ones), one more for the norm and head."""
        if param_name.startswith("patch_embed.") or param_name in self.no_weight_decay():
            return 0
        if param_name.startswith("blocks."):
            return int(param_name.split(".")[1]) + 1
        if param_name.startswith("temporal_blocks."):
            return len(self.blocks) + int(param_name.split(".")[1]) + 1
        return self._num_layers

    @property
    def _num_layers(self) -> int:
        return len(self.blocks) + (len(self.temporal_blocks) if self.temporal_blocks is not None else 0) + 1

    def param_groups(self, weight_decay: float = 0.05, layer_decay: float | None = None) -> list[dict[str, Any]]:
        """Optimizer groups: no decay on 1-D params, tokens and positions; lr_scale = layer_decay^(depth+1-layer)."""
        return param_groups(self, self.layer_id, self._num_layers, weight_decay, layer_decay)


def _block_options(cfg: VideoConfig) -> dict[str, Any]:
    """The Block arguments a VideoConfig sets, as VisionTransformer sets them from a ViTConfig."""
    return dict(mlp=cfg.mlp, norm=cfg.norm, norm_eps=cfg.norm_eps, qkv_bias=cfg.qkv_bias, proj_bias=cfg.proj_bias,
                qk_norm=cfg.qk_norm, init_values=cfg.init_values, proj_drop=cfg.proj_drop_rate,
                attn_drop=cfg.attn_drop_rate, attn_gate=cfg.attn_gate, ffn_gate=cfg.ffn_gate, mlp_norm=cfg.mlp_norm,
                mlp_bias=cfg.mlp_bias)


def resample_time_embed(table: torch.Tensor, frames: int) -> torch.Tensor:
    """A temporal table [1, T, D] resampled linearly to [1, frames, D] (clips of another length)."""
    resized = F.interpolate(table.transpose(1, 2), size=frames, mode="linear", align_corners=False)
    return resized.transpose(1, 2).contiguous()


def _within(probs: torch.Tensor, frames: int, prefix: int, same: str) -> torch.Tensor:
    """Joint attention [B, H, L, L] restricted to patch pairs in the same frame ([B, T, H, N, N]) or at the same
    position ([B, N, H, T, T]), each row renormalised; class tokens are left out."""
    batch, heads = probs.shape[:2]
    patches = probs[:, :, prefix:, prefix:]
    positions = patches.shape[-1] // frames
    grid = patches.reshape(batch, heads, frames, positions, frames, positions)
    if same == "frame":
        picked = grid.diagonal(dim1=2, dim2=4)            # [B, H, N, N, T]
        picked = picked.permute(0, 4, 1, 2, 3)            # [B, T, H, N, N]
    else:
        picked = grid.diagonal(dim1=3, dim2=5)            # [B, H, T, T, N]
        picked = picked.permute(0, 4, 1, 2, 3)            # [B, N, H, T, T]
    return picked / picked.sum(-1, keepdim=True).clamp_min(1e-12)
