"""One VisionTransformer, wired from layers/ by a ViTConfig; every stage of the forward pass is visible here.

images -> [ResNet or conv stem] -> patch_embed -> prefix tokens + abs pos -> [patch dropout, training only]
       -> blocks (RoPE / ALiBi inside attention; [token merging between attention and MLP]) -> norm
       -> [unmerge] -> pool -> fc_norm -> pre_logits -> head
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..layers import (Block, ConvStem, PatchDropout, PatchEmbed, PromptTokens, TokenMerger, TokenPool, alibi_2d_bias,
                      drop_path_rates, make_norm, resample_pos_embed, rope_angles, rope_tables, sincos_2d)
from ..preprocess import Preprocess
from .config import ViTConfig
from .param_groups import param_groups
from .resnet import ResNetStem


class PreLogits(nn.Module):
    """The paper's pre-training representation layer: Linear + tanh before the classifier."""

    def __init__(self, dim: int, representation_size: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, representation_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(x))


class VisionTransformer(nn.Module):
    """A Vision Transformer configured entirely by a ViTConfig (keyword overrides use the same field names)."""

    def __init__(self, cfg: ViTConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        cfg = cfg or ViTConfig()
        self.cfg = cfg = cfg.replace(**overrides) if overrides else cfg
        dim = cfg.embed_dim
        self.num_features = dim
        self.grad_checkpointing = False
        self.distilled_training = False
        self.preset_name: str | None = None
        self.preprocess = Preprocess()
        self.class_names: list[str] | None = None

        self.backbone = (ResNetStem(cfg.in_chans, cfg.backbone_layers) if cfg.backbone
                         else ConvStem(cfg.in_chans, cfg.conv_stem) if cfg.conv_stem else None)
        embed_chans = self.backbone.out_chans if self.backbone else cfg.in_chans
        self.patch_embed = PatchEmbed(cfg.patch_size, embed_chans, dim)

        self.cls_token = nn.Parameter(torch.zeros(1, cfg.num_class_tokens, dim)) if cfg.class_token else None
        self.dist_token = nn.Parameter(torch.zeros(1, 1, dim)) if cfg.dist_token else None
        self.reg_token = nn.Parameter(torch.zeros(1, cfg.reg_tokens, dim)) if cfg.reg_tokens else None
        if cfg.pos_embed == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, self._pos_embed_prefix + cfg.num_patches, dim))
        else:
            self.pos_embed = None
        self.pos_drop = nn.Dropout(cfg.pos_drop_rate)
        self.patch_drop = PatchDropout(cfg.patch_drop_rate, cfg.num_prefix_tokens, cfg.num_suffix_tokens)
        self._build_position_buffers()

        rates = drop_path_rates(cfg.depth, cfg.drop_path_rate, cfg.drop_path_schedule)
        self.blocks = nn.ModuleList([
            Block(dim, *cfg.block_width(i), mlp=cfg.mlp, norm=cfg.norm, norm_eps=cfg.norm_eps,
                  qkv_bias=cfg.qkv_bias, proj_bias=cfg.proj_bias, qk_norm=cfg.qk_norm, init_values=cfg.init_values,
                  drop_path=rate, proj_drop=cfg.proj_drop_rate, attn_drop=cfg.attn_drop_rate,
                  attn_gate=cfg.attn_gate, ffn_gate=cfg.ffn_gate, mlp_norm=cfg.mlp_norm, mlp_bias=cfg.mlp_bias,
                  attention=cfg.attention, num_features=cfg.performer_features, head_dim=cfg.head_dim,
                  window_size=0 if i in cfg.global_attn_indexes else cfg.window_size)
            for i, rate in enumerate(rates)])
        self.norm = nn.Identity() if cfg.fc_norm else make_norm(cfg.norm, dim, cfg.norm_eps)
        self.prompt = self._new_prompt()

        self.pool = TokenPool(cfg.global_pool, cfg.num_class_tokens * cfg.class_token,
                              cfg.num_prefix_tokens, cfg.num_suffix_tokens)
        self.fc_norm = make_norm(cfg.norm, dim, cfg.norm_eps) if cfg.fc_norm else nn.Identity()
        self.head_drop = nn.Dropout(cfg.drop_rate)
        self.pre_logits = PreLogits(dim, cfg.representation_size) if cfg.representation_size else nn.Identity()
        if cfg.representation_size:
            self.num_features = cfg.representation_size
        self._build_heads(cfg.num_classes)
        self.init_weights()

    # ----- construction helpers -------------------------------------------------------------------------------
    @property
    def _pos_embed_prefix(self) -> int:
        """Prefix tokens that the learned position table covers (timm's no_embed_class=False covers them all)."""
        covers_prefix = self.cfg.pos_embed == "learned" and not self.cfg.no_embed_class
        return self.cfg.num_prefix_tokens if covers_prefix else 0

    def _build_heads(self, num_classes: int) -> None:
        self.head = self._new_head(num_classes)
        self.head_dist = self._new_head(num_classes) if self.cfg.dist_token else None

    def _new_prompt(self) -> PromptTokens | None:
        cfg = self.cfg
        return (PromptTokens(cfg.prompt_tokens, cfg.embed_dim, cfg.depth, cfg.prompt_deep, cfg.num_prefix_tokens)
                if cfg.prompt_tokens else None)

    def _new_head(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def _build_position_buffers(self) -> None:
        """Fixed tables for the native grid (sin-cos, RoPE cos/sin, ALiBi bias); other grids compute them on the fly."""
        grid = self.cfg.grid_size
        sincos, rope, bias = self._fixed_positions(grid)
        self.register_buffer("pos_embed_sincos", sincos, persistent=False)
        self.register_buffer("rope_cos", rope[0] if rope else None, persistent=False)
        self.register_buffer("rope_sin", rope[1] if rope else None, persistent=False)
        self.register_buffer("attn_bias", bias, persistent=False)

    def _fixed_positions(self, grid: tuple[int, int]):
        cfg = self.cfg
        sincos = sincos_2d(cfg.embed_dim, grid)[None] if cfg.pos_embed == "sincos" else None
        rope = rope_tables(self._rope_angles(grid)) if cfg.rope else None
        bias = (alibi_2d_bias(cfg.num_heads, grid, cfg.num_prefix_tokens, cfg.num_suffix_tokens)
                if cfg.alibi else None)
        return sincos, rope, bias

    def _rope_angles(self, grid: tuple[int, int]) -> torch.Tensor:
        """RoPE angles [N, head_dim / 2] of every token on this grid: zero (unrotated) for prefix tokens, the
        register grid's for registers under reg_rope_theta, else zero too."""
        cfg = self.cfg
        patch = rope_angles(cfg.head_dim, cfg.rope_theta, grid, ref_grid=cfg.grid_size)
        if cfg.reg_rope_theta is not None:
            side = math.isqrt(cfg.reg_tokens)
            regs = rope_angles(cfg.head_dim, cfg.reg_rope_theta, (side, side))
        else:
            regs = patch.new_zeros(cfg.reg_tokens, patch.shape[1])
        before = patch.new_zeros(cfg.num_prefix_tokens - (cfg.reg_tokens if cfg.reg_position == "prefix" else 0),
                                 patch.shape[1])
        if cfg.reg_position == "prefix":
            return torch.cat([before, regs, patch])
        return torch.cat([before, patch, regs])

    @torch.no_grad()
    def init_weights(self) -> None:
        """Initialises as timm, big_vision ("jax") or the official ViT-5 code does, as cfg.weight_init names."""
        scheme = self.cfg.weight_init
        if self.pos_embed is not None:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for token in (self.cls_token, self.reg_token):
            if token is None:
                continue
            if scheme == "timm":
                nn.init.normal_(token, std=1e-6)
            elif scheme == "vit5":
                nn.init.trunc_normal_(token, std=0.02)
            else:
                nn.init.zeros_(token)
        if self.dist_token is not None:
            nn.init.trunc_normal_(self.dist_token, std=0.02)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                if scheme == "jax":
                    nn.init.xavier_uniform_(module.weight)
                    if module.bias is not None:
                        nn.init.normal_(module.bias, std=1e-6 if ".mlp." in f".{name}." else 0.0)
                else:
                    nn.init.trunc_normal_(module.weight, std=0.02)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
        if scheme == "jax":
            fan_in = self.patch_embed.proj.weight[0].numel()
            nn.init.trunc_normal_(self.patch_embed.proj.weight, std=math.sqrt(1.0 / fan_in) / 0.87962566103423978)
            nn.init.zeros_(self.patch_embed.proj.bias)
        if self.cfg.head_zero_init or scheme == "jax":
            self._zero_heads()

    def _zero_heads(self) -> None:
        for head in (self.head, self.head_dist):
            if isinstance(head, nn.Linear):
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)

    # ----- forward ----------------------------------------------------------------------------------------------
    def _positions(self, grid: tuple[int, int]):
        """Absolute table, RoPE tables and attention bias for this grid (cached for the native grid)."""
        if grid == self.cfg.grid_size:
            rope = (self.rope_cos, self.rope_sin) if self.rope_cos is not None else None
            pos = self.pos_embed if self.pos_embed is not None else self.pos_embed_sincos
            return pos, rope, self.attn_bias
        sincos, rope, bias = self._fixed_positions(grid)
        device = self.patch_embed.proj.weight.device
        if self.pos_embed is not None:
            pos = resample_pos_embed(self.pos_embed, grid, self.cfg.grid_size, self._pos_embed_prefix,
                                     antialias=self.cfg.pos_embed_antialias)
        else:
            pos = sincos.to(device) if sincos is not None else None
        rope = tuple(t.to(device) for t in rope) if rope else None
        return pos, rope, bias.to(device) if bias is not None else None

    def _add_tokens(self, x: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
        """[class token(s), dist, prefix registers] + patches + [suffix registers], with the absolute positions added."""
        batch = x.shape[0]
        prefix = [t.expand(batch, -1, -1) for t in (self.cls_token, self.dist_token) if t is not None]
        suffix = []
        if self.reg_token is not None:
            (prefix if self.cfg.reg_position == "prefix" else suffix).append(self.reg_token.expand(batch, -1, -1))
        if pos is not None and self._pos_embed_prefix:
            x = torch.cat(prefix + [x], dim=1) + pos
        else:
            x = torch.cat(prefix + [x if pos is None else x + pos], dim=1)
        return torch.cat([x] + suffix, dim=1) if suffix else x

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple | None, torch.Tensor | None]:
        """Images -> the token sequence entering block 0, plus that grid's RoPE tables and attention bias."""
        return self.add_positions(*self.embed_patches(x))

    def embed_patches(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Images -> patch embeddings [B, N, D] and their grid, before any token or position is added (the place
        masked patch prediction corrupts)."""
        if self.backbone is not None:
            x = self.backbone(x)
        return self.patch_embed(x)

    def add_positions(self, x: torch.Tensor, grid: tuple[int, int]):
        """Patch embeddings -> prefix/suffix tokens added and absolute positions applied, with the grid's RoPE
        tables and attention bias."""
        pos, rope, bias = self._positions(grid)
        return self.pos_drop(self._add_tokens(x, pos)), rope, bias

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, C, H, W] -> normalised tokens [B, N, D] (with token merging: spread back to every token)."""
        if any(self.cfg.merge_schedule):
            return self._forward_merging(x)[0]
        return self.forward_blocks(*self.patch_drop(*self.embed(x)), grid=self._grid_of(x))

    def forward_blocks(self, x: torch.Tensor, rope: tuple | None = None, bias: torch.Tensor | None = None,
                       grid: tuple[int, int] | None = None):
        """A token sequence (all patches or a kept subset, with its RoPE tables and bias) -> normalised tokens; grid:
        the patch grid, which windowed blocks cut into windows."""
        if self.prompt is not None:
            x, rope, bias = self.prompt.insert(x, rope, bias)
        for i, block in enumerate(self.blocks):
            if self.prompt is not None:
                x = self.prompt.refresh(x, i)
            x = self._run_block(block, x, rope, bias, grid=grid)
        if self.prompt is not None:
            x = self.prompt.remove(x)
        return self.norm(x)

    def _run_block(self, block: nn.Module, *args, **kwargs) -> torch.Tensor:
        """block(*args, **kwargs), its activations recomputed in backward under grad checkpointing."""
        if self.grad_checkpointing and self.training:
            return checkpoint(block, *args, use_reentrant=False, **kwargs)
        return block(*args, **kwargs)

    def _forward_merging(self, images: torch.Tensor, indices=()) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """forward_features with token merging (cfg.token_merging), and the outputs of the blocks in `indices`. The
        merging carries RoPE as angles, which patch dropout gathers and prompts widen as they do the tables; every
        output is unmerged, so pooling, heads and dense maps see one token per patch (avg pooling: size-weighted)."""
        x, rope, bias = self.embed(images)
        angles = (self._rope_angles(self._grid_of(images)).to(x.device),) if rope is not None else None
        x, angles, bias = self.patch_drop(x, angles, bias)
        num_protected = self.cfg.num_prefix_tokens
        if self.prompt is not None:
            x = self.prompt.insert(x, None, None)[0]
            angles = (self.prompt.widen_rows(angles[0], 0.0),) if angles is not None else None
            num_protected += self.prompt.num_tokens
        merger = TokenMerger(x, num_protected, self.cfg.num_suffix_tokens, angles[0] if angles is not None else None)
        outputs = []
        for i, (block, r) in enumerate(zip(self.blocks, self.cfg.merge_schedule)):
            if self.prompt is not None:
                x = self.prompt.refresh(x, i)
            rope, merge = merger.rope(), merger.step(r) if r else None
            x = self._run_block(block, x, rope, merger.attention_bias(), merge=merge)
            if i in indices:
                outputs.append(self._without_prompts(merger.unmerge(x)))
        return self._without_prompts(merger.unmerge(self.norm(x))), outputs

    def _without_prompts(self, x: torch.Tensor) -> torch.Tensor:
        return self.prompt.remove(x) if self.prompt is not None else x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False):
        """Tokens -> pooled features (pre_logits=True) or class logits."""
        if self.dist_token is not None:
            cls, dist = x[:, 0], x[:, 1]
            if pre_logits:
                return (cls + dist) / 2
            cls, dist = self.head(self.head_drop(cls)), self.head_dist(self.head_drop(dist))
            if self.training and self.distilled_training:
                return cls, dist
            return (cls + dist) / 2
        x = self.head_drop(self.fc_norm(self.pool(x)))
        x = self.pre_logits(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor):
        return self.forward_head(self.forward_features(x))

    # ----- inspection -------------------------------------------------------------------------------------------
    def forward_intermediates(self, x: torch.Tensor, indices: list[int] | None = None, norm: bool = False,
                              output_fmt: str = "NCHW") -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Final normalised tokens, and the chosen blocks' outputs: patch maps [B, D, H, W] ('NCHW') or tokens ('NLC');
        trained through (dense prediction), it honours grad checkpointing as forward_features does."""
        if output_fmt not in ("NCHW", "NLC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NLC', got {output_fmt!r}")
        indices = range(len(self.blocks)) if indices is None else [i % len(self.blocks) for i in indices]
        grid = self._grid_of(x)
        if any(self.cfg.merge_schedule):
            final, outputs = self._forward_merging(x, indices)
        else:
            x, rope, bias = self.embed(x)
            outputs = []
            for i, block in enumerate(self.blocks):
                x = self._run_block(block, x, rope, bias, grid=grid)
                if i in indices:
                    outputs.append(x)
            final = self.norm(x)
        outputs = [self.norm(out) if norm else out for out in outputs]
        if output_fmt == "NCHW":
            outputs = [self.patch_tokens(out).transpose(1, 2).reshape(out.shape[0], -1, *grid) for out in outputs]
        return final, outputs

    def get_attention_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Attention probabilities [B, heads, N, N] of every block, through the explicit (non-fused) path."""
        if any(self.cfg.merge_schedule):
            raise ValueError("with token merging every block attends over a different set of tokens; call "
                             "set_token_merging(0) before asking for attention maps")
        grid = self._grid_of(x)
        x, rope, bias = self.embed(x)
        maps = []
        for block in self.blocks:
            x, probs = block(x, rope, bias, return_attn=True, grid=grid)
            maps.append(probs)
        return maps

    def patch_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The patch tokens of a sequence, without prefix or suffix tokens."""
        return x[:, self.cfg.num_prefix_tokens:x.shape[1] - self.cfg.num_suffix_tokens]

    def _grid_of(self, x: torch.Tensor) -> tuple[int, int]:
        stride = self.cfg.feature_stride
        return x.shape[-2] // stride, x.shape[-1] // stride

    # ----- training and adaptation ------------------------------------------------------------------------------
    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new zero-initialised head (the paper's fine-tuning recipe, section 3.3)."""
        overrides = {"num_classes": num_classes}
        if global_pool is not None:
            overrides["global_pool"] = global_pool
            self.pool.kind = global_pool
        self.cfg = self.cfg.replace(**overrides)
        device = self.patch_embed.proj.weight.device
        self._build_heads(num_classes)
        self.head.to(device)
        if self.head_dist is not None:
            self.head_dist.to(device)
        self._zero_heads()

    def set_input_size(self, img_size: int | tuple[int, int]) -> None:
        """Rebuilds the model for a new native resolution: learned positions resampled in 2D, RoPE grids rebuilt."""
        old_grid = self.cfg.grid_size
        self.cfg = self.cfg.replace(img_size=img_size)
        if self.pos_embed is not None:
            resized = resample_pos_embed(self.pos_embed.data, self.cfg.grid_size, old_grid, self._pos_embed_prefix,
                                         antialias=self.cfg.pos_embed_antialias)
            self.pos_embed = nn.Parameter(resized)
        device = self.patch_embed.proj.weight.device
        self._build_position_buffers()
        self.to(device)

    def set_patch_projection(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        """A new patch projection, possibly for another number of input channels (weight [D, C, p, p])."""
        if self.backbone is not None:
            raise ValueError("the input channels of a model with a ResNet or convolutional stem cannot be changed "
                             "here: its first layer is not the patch projection")
        proj = self.patch_embed.proj
        if weight.shape[0] != proj.out_channels or tuple(weight.shape[2:]) != tuple(proj.kernel_size):
            raise ValueError(f"patch projection weight {list(weight.shape)} does not fit [{proj.out_channels}, C, "
                             f"{proj.kernel_size[0]}, {proj.kernel_size[1]}]")
        new = nn.Conv2d(weight.shape[1], proj.out_channels, proj.kernel_size, proj.stride, bias=bias is not None)
        with torch.no_grad():
            new.weight.copy_(weight)
            if bias is not None:
                new.bias.copy_(bias)
        self.patch_embed.proj = new.to(proj.weight.device, proj.weight.dtype)
        self.patch_embed.in_chans = weight.shape[1]
        self.cfg = self.cfg.replace(in_chans=weight.shape[1])

    def set_prompt_tokens(self, num_tokens: int, deep: bool = False) -> None:
        """Visual prompt tuning: adds fresh learnable prompt tokens (deep: one set per block); 0 removes them."""
        self.cfg = self.cfg.replace(prompt_tokens=num_tokens, prompt_deep=deep and num_tokens > 0)
        self.prompt = self._new_prompt()
        if self.prompt is not None:
            self.prompt.to(self.patch_embed.proj.weight.device)

    def set_token_merging(self, r: int | tuple[int, ...] | list[int]) -> None:
        """Token merging (ToMe) from now on: r tokens merged in every block, or one r per block; 0 switches it off
        (the plain forward pass, bit for bit). Faster, and it changes the answers: it is never switched on for you."""
        self.cfg = self.cfg.replace(token_merging=r if isinstance(r, int) else tuple(r))

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute block activations in backward: less memory for a little more compute."""
        self.grad_checkpointing = enable

    def set_distilled_training(self, enable: bool = True) -> None:
        """In training, return the class and distillation heads' logits apart (DeiT), for a distillation loss."""
        if enable and self.dist_token is None:
            raise ValueError("distilled training needs a distillation token: build the model with dist_token=True")
        self.distilled_training = enable

    def set_patch_drop_rate(self, rate: float) -> None:
        """Patch dropout's rate from now on (staged schedules); cfg.patch_drop_rate keeps the starting rate."""
        self.patch_drop.set_rate(rate)

    def set_attention_dtype(self, dtype: torch.dtype | None) -> None:
        """The dtype every block's attention computes q, k, v in (None: as they come), e.g. bf16 around int8 layers."""
        if dtype is not None and not dtype.is_floating_point:
            raise ValueError(f"attention dtype must be a floating-point dtype or None, got {dtype}")
        for block in self.blocks:
            block.attn.compute_dtype = dtype

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token", "dist_token", "reg_token"}

    def layer_id(self, param_name: str) -> int:
        """Depth of a parameter for layer-wise lr decay: 0 for the embedding, i+1 for block i, depth+1 after."""
        if param_name.startswith(("backbone.", "patch_embed.")) or param_name in self.no_weight_decay():
            return 0
        if param_name.startswith("blocks."):
            return int(param_name.split(".")[1]) + 1
        return len(self.blocks) + 1

    def param_groups(self, weight_decay: float = 0.05, layer_decay: float | None = None) -> list[dict[str, Any]]:
        """Optimizer groups: no decay on 1-D params, tokens and positions; lr_scale = layer_decay^(depth+1-layer)."""
        return param_groups(self, self.layer_id, len(self.blocks) + 1, weight_decay, layer_decay)


def apply_token_merging(model: nn.Module, r: int | tuple[int, ...] | list[int]) -> nn.Module:
    """model.set_token_merging(r) for a model loaded by name or from a file, which may be of a family that has no
    token merging (Swin's windows, the video models): that is an error saying so, not an AttributeError."""
    if not isinstance(model, VisionTransformer):
        raise ValueError(f"token merging is built into the plain VisionTransformer; a {type(model).__name__} does not "
                         "merge tokens (drop --tome)")
    model.set_token_merging(r)
    return model
