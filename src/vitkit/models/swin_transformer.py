"""The Swin Transformer (Liu et al. 2021), wired from layers/ by a SwinConfig, under timm's parameter names.

images -> patch_embed (conv + LayerNorm) -> NHWC map -> stages: [patch merging] -> blocks (windows, cyclically
shifted in every other block) -> norm -> average over the map -> head

The map stays NHWC throughout, as in timm: forward_features returns [B, H, W, C]; forward_intermediates gives NCHW.
Any input whose sides are multiples of cfg.input_multiple runs; the shift of each stage follows its map, so the
model computes what timm's model built for that input size computes.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..layers import (PatchEmbed, PatchMerging, SwinBlock, check_image, drop_path_rates, shifted_window_mask,
                      window_shift)
from ..preprocess import Preprocess
from .param_groups import param_groups
from .swin_config import SwinConfig

LAYERNORM_EPS = 1e-5  # nn.LayerNorm's default, which timm's Swin uses throughout


class SwinStage(nn.Module):
    """Patch merging (in every stage but the first), then blocks alternating plain and shifted windows."""

    def __init__(self, in_dim: int, dim: int, num_heads: int, window: tuple[int, int], mlp_hidden_dim: int,
                 drop_paths: list[float], merge: bool, qkv_bias: bool = True, proj_drop: float = 0.0,
                 attn_drop: float = 0.0) -> None:
        super().__init__()
        self.downsample = PatchMerging(in_dim, dim, LAYERNORM_EPS) if merge else nn.Identity()
        self.blocks = nn.ModuleList([
            SwinBlock(dim, num_heads, window, mlp_hidden_dim, qkv_bias=qkv_bias, proj_drop=proj_drop,
                      attn_drop=attn_drop, drop_path=rate, norm_eps=LAYERNORM_EPS)
            for rate in drop_paths])
        self.grad_checkpointing = False
        self._masks: dict[tuple, torch.Tensor] = {}  # shifted-window masks by (map, window, shift, device)

    @property
    def window(self) -> tuple[int, int]:
        return self.blocks[0].attn.window

    def shift_mask(self, grid: tuple[int, int], shift: tuple[int, int], device: torch.device) -> torch.Tensor:
        """The shifted-window mask for this map, built once per (map, window, shift, device) and kept: it is a
        constant of the input size, rebuilt otherwise on every forward."""
        key = (grid, self.window, shift, device)
        if key not in self._masks:
            self._masks[key] = shifted_window_mask(grid, self.window, shift, device)
        return self._masks[key]

    def forward(self, x: torch.Tensor, attention: list[torch.Tensor] | None = None) -> torch.Tensor:
        """NHWC map in, NHWC map out; a list passed as `attention` receives each block's window attention
        probabilities [B * windows, heads, N, N] (the explicit softmax path)."""
        x = self.downsample(x)
        grid = (x.shape[1], x.shape[2])
        shift = window_shift(grid, self.window)
        mask = self.shift_mask(grid, shift, x.device) if any(shift) else None
        for i, block in enumerate(self.blocks):
            args = (shift, mask) if i % 2 else ((0, 0), None)
            if attention is not None:
                x, probs = block(x, *args, return_attn=True)
                attention.append(probs)
            elif self.grad_checkpointing and self.training:
                x = checkpoint(block, x, *args, use_reentrant=False)
            else:
                x = block(x, *args)
        return x

    def set_window(self, window: tuple[int, int]) -> None:
        for block in self.blocks:
            block.attn.set_window(window)
        self._masks.clear()  # keyed by window too; the old ones would only take memory


class ClassifierHead(nn.Module):
    """Pools the NHWC map ('avg'; 'none' keeps one vector per position), drops out, classifies (timm's head.fc)."""

    def __init__(self, dim: int, num_classes: int, pool: str, drop: float) -> None:
        super().__init__()
        self.pool = pool
        self.drop = nn.Dropout(drop)
        self.fc = nn.Linear(dim, num_classes) if num_classes else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.pool == "avg":
            x = x.mean(dim=(1, 2))
        x = self.drop(x)
        return x if pre_logits else self.fc(x)


class SwinTransformer(nn.Module):
    """A Swin Transformer configured entirely by a SwinConfig (keyword overrides use the same field names)."""

    def __init__(self, cfg: SwinConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        cfg = cfg or SwinConfig()
        self.cfg = cfg = cfg.replace(**overrides) if overrides else cfg
        self.num_features = cfg.num_features
        self.preset_name: str | None = None
        self.preprocess = Preprocess()
        self.class_names: list[str] | None = None

        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.in_chans, cfg.embed_dim,
                                      norm=nn.LayerNorm(cfg.embed_dim, eps=LAYERNORM_EPS))
        rates = drop_path_rates(sum(cfg.depths), cfg.drop_path_rate)  # one linear ramp over all blocks, as timm
        dims, starts = cfg.stage_dims, [sum(cfg.depths[:i]) for i in range(cfg.num_stages)]
        self.layers = nn.ModuleList([
            SwinStage(dims[max(i - 1, 0)], dims[i], cfg.num_heads[i], cfg.window_size, cfg.mlp_hidden_dim(i),
                      rates[starts[i]:starts[i] + cfg.depths[i]], merge=i > 0, qkv_bias=cfg.qkv_bias,
                      proj_drop=cfg.proj_drop_rate, attn_drop=cfg.attn_drop_rate)
            for i in range(cfg.num_stages)])
        self.norm = nn.LayerNorm(self.num_features, eps=LAYERNORM_EPS)
        self.head = ClassifierHead(self.num_features, cfg.num_classes, cfg.global_pool, cfg.drop_rate)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """As timm initialises Swin: trunc-normal 0.02 for linears and bias tables, zero biases."""
        for name, param in self.named_parameters():
            if name.endswith("relative_position_bias_table"):
                nn.init.trunc_normal_(param, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    # ----- forward ----------------------------------------------------------------------------------------------
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, C, H, W] -> the normalised patch map [B, H/p, W/p, D] entering stage 0."""
        check_image(x, self.cfg.in_chans, 1, what="Swin Transformer")
        self.cfg.check_input_size((x.shape[-2], x.shape[-1]))
        tokens, grid = self.patch_embed(x)
        return tokens.reshape(x.shape[0], *grid, -1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, C, H, W] -> the last stage's normalised map [B, H', W', C'] (NHWC, as timm)."""
        x = self.embed(x)
        for stage in self.layers:
            x = stage(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """NHWC map -> pooled features (pre_logits=True) or class logits."""
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: torch.Tensor, indices: list[int] | None = None, norm: bool = False,
                              output_fmt: str = "NCHW") -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The final normalised map (NHWC), and the chosen stages' outputs as maps [B, C, H, W] ('NCHW') or
        [B, H, W, C] ('NHWC') for dense prediction; norm applies the final norm to the last stage's output (the only
        stage of its width), as timm does."""
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        last = len(self.layers) - 1
        indices = range(last + 1) if indices is None else [i % len(self.layers) for i in indices]
        x = self.embed(x)
        outputs = []
        for i, stage in enumerate(self.layers):
            x = stage(x)
            if i in indices:
                out = self.norm(x) if norm and i == last else x
                outputs.append(out.permute(0, 3, 1, 2).contiguous() if output_fmt == "NCHW" else out)
        final = out if norm and last in indices else self.norm(x)  # the final norm runs once
        return final, outputs

    def get_attention_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every block's window attention probabilities [B * windows, heads, N, N], in block order; a shifted
        block's windows are those of its rolled map (block_windows says which)."""
        x = self.embed(x)
        maps: list[torch.Tensor] = []
        for stage in self.layers:
            x = stage(x, attention=maps)
        return maps

    def block_windows(self) -> list[tuple[int, tuple[int, int], tuple[int, int]]]:
        """(stage, map size, cyclic shift) of every block at the native input size, in block order."""
        found = []
        for stage, depth in enumerate(self.cfg.depths):
            grid = (self.cfg.grid_size[0] // 2 ** stage, self.cfg.grid_size[1] // 2 ** stage)
            shift = window_shift(grid, self.cfg.window_size)
            found += [(stage, grid, shift if i % 2 else (0, 0)) for i in range(depth)]
        return found

    # ----- training and adaptation ------------------------------------------------------------------------------
    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new zero-initialised head (fine-tuning on another label set)."""
        self.cfg = self.cfg.replace(num_classes=num_classes, global_pool=global_pool or self.cfg.global_pool)
        device = self.norm.weight.device
        self.head = ClassifierHead(self.num_features, num_classes, self.cfg.global_pool, self.cfg.drop_rate).to(device)
        if isinstance(self.head.fc, nn.Linear):
            nn.init.zeros_(self.head.fc.weight)
            nn.init.zeros_(self.head.fc.bias)

    def set_input_size(self, img_size: int | tuple[int, int] | None = None,
                       window_size: int | tuple[int, int] | None = None) -> None:
        """A new native input size and/or window; a new window resamples every relative-position bias table."""
        changes = {k: v for k, v in (("img_size", img_size), ("window_size", window_size)) if v is not None}
        cfg = self.cfg.replace(**changes)
        if cfg.window_size != self.cfg.window_size:
            for stage in self.layers:
                stage.set_window(cfg.window_size)
        self.cfg = cfg

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute block activations in backward: less memory for a little more compute."""
        for stage in self.layers:
            stage.grad_checkpointing = enable

    def no_weight_decay(self) -> set[str]:
        """The relative-position bias tables, as timm exempts them."""
        return {name for name, _ in self.named_parameters() if name.endswith("relative_position_bias_table")}

    def layer_id(self, param_name: str) -> int:
        """Depth of a parameter for layer-wise lr decay: 0 for the patch embedding, n for the n-th block overall
        (a stage's patch merging goes with its first block), one more for the final norm and head."""
        if param_name.startswith("patch_embed."):
            return 0
        if param_name.startswith("layers."):
            parts = param_name.split(".")
            stage = int(parts[1])
            block = int(parts[3]) if parts[2] == "blocks" else 0
            return sum(self.cfg.depths[:stage]) + block + 1
        return sum(self.cfg.depths) + 1

    def param_groups(self, weight_decay: float = 0.05, layer_decay: float | None = None) -> list[dict[str, Any]]:
        """Optimizer groups: no decay on 1-D params and bias tables; lr_scale = layer_decay^(blocks+1-layer)."""
        return param_groups(self, self.layer_id, sum(self.cfg.depths) + 1, weight_decay, layer_decay)
