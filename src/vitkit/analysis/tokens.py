"""Where each kind of token sits in a ViT's sequence (or a Swin's map), so every analysis slices the same way."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..models import SwinTransformer
from ..models.config import ViTConfig


@dataclass(frozen=True)
class TokenLayout:
    """Index ranges of class tokens, registers and patches in the sequence, plus the patch grid in pixels."""

    class_tokens: slice
    registers: slice
    patches: slice
    grid: tuple[int, int]
    stride: int

    @property
    def has_class_token(self) -> bool:
        return self.class_tokens.stop > self.class_tokens.start

    @property
    def num_registers(self) -> int:
        return self.registers.stop - self.registers.start

    @property
    def query_name(self) -> str:
        """How the maps' query is chosen, in words, for titles and messages."""
        if self.has_class_token:
            return "class token"
        return "mean over patch queries (no class token)"


def token_layout(cfg: ViTConfig, sequence_length: int | None = None) -> TokenLayout:
    """The layout of [class tokens, distillation token, prefix registers] + patches + [suffix registers].

    A longer sequence than the config describes (prompt tokens of visual prompt tuning) has the extra tokens right
    after the prefix; passing the observed sequence_length shifts the patches and suffix registers past them.
    """
    base = cfg.num_prefix_tokens + cfg.num_patches + cfg.num_suffix_tokens
    extra = 0 if sequence_length is None else sequence_length - base
    if extra < 0:
        raise ValueError(f"a sequence of {sequence_length} tokens is shorter than this model's {base} "
                         f"(prefix, {cfg.grid_size[0]}x{cfg.grid_size[1]} patches, suffix); analyse images at "
                         f"{cfg.img_size[0]}x{cfg.img_size[1]}")
    num_class = cfg.num_class_tokens if cfg.class_token else 0
    patch_start = cfg.num_prefix_tokens + extra
    patch_stop = patch_start + cfg.num_patches
    if cfg.reg_position == "prefix":
        reg_start = num_class + int(cfg.dist_token)
    else:
        reg_start = patch_stop
    return TokenLayout(class_tokens=slice(0, num_class), registers=slice(reg_start, reg_start + cfg.reg_tokens),
                       patches=slice(patch_start, patch_stop), grid=cfg.grid_size, stride=cfg.feature_stride)


NO_CLASS_TOKEN_MESSAGE = ("this model has no class token: the maps show mean-pooled attention "
                          "(each patch's attention averaged over all patch queries) instead")


def model_blocks(model: nn.Module) -> list[nn.Module]:
    """Every transformer block in order: a ViT's, or a Swin's stage after stage."""
    if isinstance(model, SwinTransformer):
        return [block for stage in model.layers for block in stage.blocks]
    return list(model.blocks)


def block_input_tokens(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, TokenLayout]:
    """A block's input as tokens [B, T, D] and where its patches lie: a ViT's sequence as it is, a Swin's NHWC map
    flattened row-major (every token a patch, no class token)."""
    if x.ndim == 3:
        return x, token_layout(model.cfg, x.shape[1])
    batch, rows, cols, dim = x.shape
    everything = slice(0, rows * cols)
    return x.reshape(batch, rows * cols, dim), TokenLayout(class_tokens=slice(0, 0), registers=slice(0, 0),
                                                           patches=everything, grid=(rows, cols),
                                                           stride=model.cfg.img_size[0] // rows)
