"""VideoConfig: every choice that shapes a VideoTransformer. The block and token fields carry ViTConfig's names and
meanings, so an image checkpoint's architecture reads straight across (models/inflate.py)."""
from __future__ import annotations

from dataclasses import dataclass

from ..layers.mlp import MLPS
from ..layers.norm import NORMS
from .config import PlainConfig, check_block_fields

ATTENTIONS = ("frames", "joint", "divided", "factorised")
VIDEO_POS_EMBEDS = ("learned", "none")
VIDEO_POOLS = ("token", "avg")


@dataclass
class VideoConfig(PlainConfig):
    """attention: 'frames' (the image model on each frame, its features averaged over time: blind to order, the
    floor), 'joint' (every token attends to every token, ViViT model 1), 'divided' (temporal then spatial attention
    in each block, TimeSformer) or 'factorised' (a spatial encoder per frame, then `temporal_depth` blocks over the
    frames' pooled tokens, ViViT model 2). tubelet_size=1 embeds each frame on its own."""

    img_size: int | tuple[int, int] = 64
    num_frames: int = 16
    patch_size: int = 8
    tubelet_size: int = 2
    in_chans: int = 3
    num_classes: int = 400
    attention: str = "divided"
    temporal_depth: int = 0
    embed_dim: int = 192
    depth: int = 4
    num_heads: int = 3
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
    no_embed_class: bool = False
    pos_embed: str = "learned"
    rope: bool = False
    rope_theta: float = 10000.0
    global_pool: str = "token"
    fc_norm: bool = False
    drop_rate: float = 0.0
    pos_drop_rate: float = 0.0
    proj_drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0

    def __post_init__(self) -> None:
        size = (self.img_size, self.img_size) if isinstance(self.img_size, int) else self.img_size
        self.img_size = tuple(int(s) for s in size)
        self._validate()

    def _validate(self) -> None:
        choices = {"attention": ATTENTIONS, "pos_embed": VIDEO_POS_EMBEDS, "global_pool": VIDEO_POOLS, "mlp": MLPS,
                   "norm": NORMS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is not one of {allowed}")
        if len(self.img_size) != 2:
            raise ValueError(f"img_size must be an int or (height, width), got {self.img_size}")
        if min(self.patch_size, self.tubelet_size, self.num_frames, self.depth) < 1:
            raise ValueError("patch_size, tubelet_size, num_frames and depth must be at least 1")
        if self.img_size[0] % self.patch_size or self.img_size[1] % self.patch_size:
            raise ValueError(f"img_size {self.img_size[0]}x{self.img_size[1]} is not divisible by the patch size "
                             f"{self.patch_size}; choose an img_size that is a multiple of {self.patch_size}")
        if self.num_frames % self.tubelet_size:
            raise ValueError(f"num_frames={self.num_frames} does not split into tubelets of {self.tubelet_size}; "
                             f"choose a multiple of {self.tubelet_size}")
        check_block_fields(self)
        if self.attention == "factorised" and self.temporal_depth < 1:
            raise ValueError("attention='factorised' needs temporal_depth >= 1: the blocks over the frames' tokens")
        if self.attention != "factorised" and self.temporal_depth:
            raise ValueError(f"temporal_depth={self.temporal_depth} only applies to attention='factorised'; set "
                             "temporal_depth=0 for the other patterns")

    @property
    def input_size(self) -> tuple[int, ...]:
        """The shape of one input: a clip (C, T, H, W)."""
        return (self.in_chans, self.num_frames, *self.img_size)

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def mlp_hidden_dim(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patches per frame: (rows, cols)."""
        return self.img_size[0] // self.patch_size, self.img_size[1] // self.patch_size

    @property
    def num_patches(self) -> int:
        """Patches of one frame (or tubelet)."""
        return self.grid_size[0] * self.grid_size[1]

    @property
    def num_tubelets(self) -> int:
        """Positions along time after the tubelet embedding."""
        return self.num_frames // self.tubelet_size

    @property
    def num_prefix_tokens(self) -> int:
        return int(self.class_token)

    @property
    def num_tokens(self) -> int:
        """Patch tokens of a whole clip: what joint attention attends over (plus the class token)."""
        return self.num_tubelets * self.num_patches
