"""ViTConfig: every choice that shapes a VisionTransformer, as plain validated data (PlainConfig: what every
family's config shares)."""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any, Self

from ..layers.attention import ATTENTIONS
from ..layers.drop_path import DROP_PATH_SCHEDULES
from ..layers.mlp import MLPS
from ..layers.norm import NORMS
from ..layers.pooling import POOLS
from ..layers.pos_embed import POS_EMBEDS

WEIGHT_INITS = ("timm", "jax", "vit5")
BACKBONES = ("resnet50",)
REG_POSITIONS = ("prefix", "suffix")


class PlainConfig:
    """What every model family's config dataclass shares: plain-JSON round trips and checked copies."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Self:
        check_fields(cls, values)
        return cls(**values)

    def replace(self, **overrides: Any) -> Self:
        """A copy with some fields changed; unknown names are errors that suggest the closest field."""
        check_fields(type(self), overrides)
        return dataclasses.replace(self, **overrides)


@dataclass
class ViTConfig(PlainConfig):
    """Field names follow timm where users already know them; new concepts get plain names."""

    img_size: int | tuple[int, int] = 224
    patch_size: int = 16
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    mlp: str = "gelu"
    mlp_norm: bool = False
    mlp_bias: bool = True
    qkv_bias: bool = True
    proj_bias: bool = True
    qk_norm: bool = False
    norm: str = "layernorm"
    norm_eps: float = 1e-6
    init_values: float | None = None
    attn_gate: bool = False
    ffn_gate: bool = False
    class_token: bool = True
    num_class_tokens: int = 1
    dist_token: bool = False
    reg_tokens: int = 0
    reg_position: str = "prefix"
    pos_embed: str = "learned"
    no_embed_class: bool = False
    pos_embed_antialias: bool = True
    rope: bool = False
    rope_theta: float = 10000.0
    reg_rope_theta: float | None = None
    alibi: bool = False
    global_pool: str = "token"
    fc_norm: bool = False
    representation_size: int | None = None
    head_zero_init: bool = False
    drop_rate: float = 0.0
    pos_drop_rate: float = 0.0
    proj_drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    drop_path_schedule: str = "linear"
    patch_drop_rate: float = 0.0
    weight_init: str = "timm"
    backbone: str | None = None
    backbone_layers: tuple[int, ...] = field(default=(3, 4, 9))
    conv_stem: tuple[int, ...] = ()
    prompt_tokens: int = 0
    prompt_deep: bool = False
    attention: str = "softmax"
    performer_features: int | None = None
    window_size: int = 0
    global_attn_indexes: tuple[int, ...] = ()
    token_merging: int | tuple[int, ...] = 0
    block_widths: tuple[tuple[int, int], ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.img_size, int):
            self.img_size = (self.img_size, self.img_size)
        self.img_size = tuple(int(s) for s in self.img_size)
        self.backbone_layers = tuple(int(n) for n in self.backbone_layers)
        self.conv_stem = tuple(int(n) for n in self.conv_stem)
        self.global_attn_indexes = tuple(int(i) for i in self.global_attn_indexes)
        if not isinstance(self.token_merging, int):
            self.token_merging = tuple(int(r) for r in self.token_merging)
        if self.block_widths is not None:
            self.block_widths = tuple(tuple(int(n) for n in pair) for pair in self.block_widths)
        self._validate()
        self._validate_efficiency()

    def _validate(self) -> None:
        choices = {"mlp": MLPS, "norm": NORMS, "pos_embed": POS_EMBEDS, "global_pool": POOLS,
                   "drop_path_schedule": DROP_PATH_SCHEDULES, "weight_init": WEIGHT_INITS,
                   "reg_position": REG_POSITIONS, "attention": ATTENTIONS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is not one of {allowed}")
        if self.backbone is not None and self.backbone not in BACKBONES:
            raise ValueError(f"backbone={self.backbone!r} is not one of {BACKBONES} (or None)")
        if self.backbone is not None and self.conv_stem:
            raise ValueError("a model has one stem: set backbone=None to use conv_stem, or conv_stem=() for the ResNet")
        if len(self.img_size) != 2:
            raise ValueError(f"img_size must be an int or (height, width), got {self.img_size}")
        stride = self.feature_stride
        if self.img_size[0] % stride or self.img_size[1] % stride:
            raise ValueError(f"img_size {self.img_size[0]}x{self.img_size[1]} is not divisible by the patch size "
                             f"{stride}; choose an img_size that is a multiple of {stride}")
        check_block_fields(self)
        if self.reg_rope_theta is not None:
            if not self.rope:
                raise ValueError("reg_rope_theta needs rope=True")
            side = int(round(self.reg_tokens ** 0.5))
            if self.reg_tokens == 0 or side * side != self.reg_tokens:
                raise ValueError(f"register RoPE places registers on a square grid; reg_tokens={self.reg_tokens} "
                                 "is not a positive square (use 1, 4, 9, ...) or set reg_rope_theta=None")
        if self.num_class_tokens < 1:
            raise ValueError("num_class_tokens must be at least 1 (set class_token=False for none)")
        if self.dist_token and (not self.class_token or self.num_class_tokens != 1 or self.global_pool != "token"):
            raise ValueError("dist_token (DeiT distillation) needs one class token and global_pool='token'")
        if self.prompt_tokens < 0 or (self.prompt_deep and not self.prompt_tokens):
            raise ValueError(f"prompt_tokens={self.prompt_tokens}, prompt_deep={self.prompt_deep}: deep prompts "
                             "need prompt_tokens >= 1 (and prompt_tokens cannot be negative)")
        if self.alibi and self.reg_rope_theta is not None:
            raise ValueError("alibi and register RoPE cannot be combined; pick one position scheme for registers")

    def _validate_efficiency(self) -> None:
        """The faster-ViT fields (docs/efficiency.md): each one's limits, and the combinations that cannot work."""
        if self.attention != "softmax":
            if self.alibi:
                raise ValueError(f"attention={self.attention!r} has no N x N score matrix to add ALiBi's bias to; "
                                 "use alibi=False (RoPE works) or attention='softmax'")
            if self.attn_drop_rate:
                raise ValueError(f"attention={self.attention!r} has no attention probabilities to drop; "
                                 "set attn_drop_rate=0")
        if self.performer_features is not None and (self.attention != "performer" or self.performer_features < 1):
            raise ValueError(f"performer_features={self.performer_features} is the random-feature count of "
                             "attention='performer' (a positive integer, or None for head_dim * ln(head_dim))")
        self._validate_windows()
        self._validate_merging()
        if self.block_widths is not None:
            if len(self.block_widths) != self.depth or any(len(pair) != 2 or min(pair) < 1
                                                           for pair in self.block_widths):
                raise ValueError(f"block_widths must list one [num_heads, mlp_hidden_dim] pair of positive integers "
                                 f"per block ({self.depth} pairs), got {[list(p) for p in self.block_widths]}")

    def _validate_windows(self) -> None:
        if self.window_size < 0:
            raise ValueError(f"window_size must be 0 (global attention) or a positive window side, got "
                             f"{self.window_size}")
        if self.global_attn_indexes and not self.window_size:
            raise ValueError("global_attn_indexes names the blocks that stay global among windowed ones; set "
                             "window_size > 0 too, or drop global_attn_indexes")
        if any(not 0 <= i < self.depth for i in self.global_attn_indexes):
            raise ValueError(f"global_attn_indexes {list(self.global_attn_indexes)} must be block indices in "
                             f"0..{self.depth - 1}")
        if not self.window_size:
            return
        clashes = [name for name, on in (("class/distillation/register tokens", self.num_prefix_tokens
                                          + self.num_suffix_tokens), ("patch_drop_rate", self.patch_drop_rate),
                                         ("alibi", self.alibi), ("prompt_tokens", self.prompt_tokens)) if on]
        if clashes:
            raise ValueError(f"windowed attention (window_size={self.window_size}) cuts the full patch grid into "
                             f"windows, which {', '.join(clashes)} would break: use class_token=False, "
                             "global_pool='avg', reg_tokens=0, patch_drop_rate=0, alibi=False and prompt_tokens=0, "
                             "or window_size=0")

    def _validate_merging(self) -> None:
        schedule = self.token_merging
        if isinstance(schedule, tuple) and len(schedule) != self.depth:
            raise ValueError(f"token_merging lists r for each block: {self.depth} values, got {len(schedule)} "
                             f"({list(schedule)}); or give one r for every block")
        if min(schedule if isinstance(schedule, tuple) else (schedule,), default=0) < 0:
            raise ValueError(f"token_merging must be non-negative (tokens merged per block), got {schedule}")
        if not any(self.merge_schedule):
            return
        if self.alibi:
            raise ValueError("token merging moves tokens off the grid that ALiBi's distances are measured on; use "
                             "token_merging=0 with alibi=True")
        if self.window_size and len(self.global_attn_indexes) < self.depth:
            raise ValueError("token merging leaves no grid for windowed attention to cut: use token_merging=0 "
                             "with window_size > 0")

    @property
    def merge_schedule(self) -> tuple[int, ...]:
        """Tokens each block merges (token_merging as one r per block)."""
        merging = self.token_merging
        return merging if isinstance(merging, tuple) else (merging,) * self.depth

    def block_width(self, index: int) -> tuple[int, int]:
        """Block `index`'s attention heads and MLP hidden width: the config's, or the pruned block's own."""
        if self.block_widths is not None:
            return self.block_widths[index]
        return self.num_heads, self.mlp_hidden_dim

    @property
    def input_size(self) -> tuple[int, ...]:
        """The shape of one input: (C, H, W)."""
        return (self.in_chans, *self.img_size)

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def mlp_hidden_dim(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)

    @property
    def feature_stride(self) -> int:
        """Pixels per token side: the patch size, times the output stride of the ResNet or convolutional stem."""
        if self.backbone:
            return self.patch_size * 4 * 2 ** (len(self.backbone_layers) - 1)
        return self.patch_size * 2 ** len(self.conv_stem)

    @property
    def grid_size(self) -> tuple[int, int]:
        return self.img_size[0] // self.feature_stride, self.img_size[1] // self.feature_stride

    @property
    def num_patches(self) -> int:
        return self.grid_size[0] * self.grid_size[1]

    @property
    def num_tokens(self) -> int:
        """The sequence each block sees: patches plus prefix and suffix tokens."""
        return self.num_patches + self.num_prefix_tokens + self.num_suffix_tokens

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the patches: class token(s), distillation token, registers placed first."""
        regs = self.reg_tokens if self.reg_position == "prefix" else 0
        return self.num_class_tokens * self.class_token + self.dist_token + regs

    @property
    def num_suffix_tokens(self) -> int:
        """Tokens after the patches: registers placed last (ViT-5)."""
        return self.reg_tokens if self.reg_position == "suffix" else 0


def check_block_fields(cfg: Any) -> None:
    """The checks every config of ViT blocks and tokens shares (ViTConfig, VideoConfig): heads divide the width,
    2D RoPE's head dim, token pooling needs a class token, class-token positions and GroupNorm's groups."""
    if cfg.embed_dim % cfg.num_heads:
        raise ValueError(f"embed_dim ({cfg.embed_dim}) must be divisible by num_heads ({cfg.num_heads})")
    if cfg.rope and cfg.head_dim % 4:
        raise ValueError(f"2D RoPE needs the head dim (embed_dim / num_heads = {cfg.head_dim}) divisible by 4; "
                         "change embed_dim or num_heads")
    if cfg.global_pool == "token" and not cfg.class_token:
        raise ValueError("global_pool='token' needs a class token; set class_token=True or global_pool='avg'")
    if cfg.no_embed_class and cfg.pos_embed != "learned":
        raise ValueError("no_embed_class only applies to pos_embed='learned'")
    if cfg.norm == "groupnorm" and cfg.embed_dim % 32:
        raise ValueError(f"norm='groupnorm' uses 32 groups; embed_dim ({cfg.embed_dim}) must be divisible by 32")


def as_pair(value: int | tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    """(height, width) of a size given as one int or a pair, for config fields such as img_size."""
    pair = (value, value) if isinstance(value, int) else tuple(int(v) for v in value)
    if len(pair) != 2:
        raise ValueError(f"{name} must be an int or (height, width), got {value}")
    return pair


def check_fields(cls: type, values: dict[str, Any]) -> None:
    """Rejects names that are not fields of the dataclass, naming the closest ones."""
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in known]
    if unknown:
        hints = "; ".join(f"{k!r}: did you mean {difflib.get_close_matches(k, known, n=3) or 'none close'}"
                          for k in unknown)
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown} ({hints})")


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
