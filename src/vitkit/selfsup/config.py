"""The self-supervised objectives' settings as data: a training config's `selfsup:` section."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

# What a corrupted patch of masked patch prediction is trained to give back (the ViT paper's three variants).
TARGETS = ("mean_color", "mean_color_4x4", "pixels")


@dataclass
class MAEConfig:
    """He et al. 2022; names as in the MAE code. The defaults are the paper's ViT-B settings."""

    mask_ratio: float = 0.75
    norm_pix_loss: bool = True
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    decoder_mlp_ratio: float = 4.0

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mae.mask_ratio={self.mask_ratio} must lie in (0, 1): the share of patches hidden "
                             "from the encoder (0.75 in the paper)")
        if min(self.decoder_embed_dim, self.decoder_depth, self.decoder_num_heads) < 1:
            raise ValueError("mae.decoder_embed_dim, decoder_depth and decoder_num_heads must be at least 1")
        if self.decoder_embed_dim % self.decoder_num_heads or self.decoder_embed_dim % 4:
            raise ValueError(f"mae.decoder_embed_dim={self.decoder_embed_dim} must divide by "
                             f"mae.decoder_num_heads={self.decoder_num_heads} and by 4 (its fixed 2D sin-cos "
                             "positions give a quarter of the channels to each of row-sin, row-cos, col-sin, col-cos)")


@dataclass
class MaskedPatchConfig:
    """The ViT paper's masked patch prediction (appendix B.1.2): corrupt `corrupt_rate` of the patch embeddings,
    split (mask token, random other patch, unchanged), and predict `target` for every corrupted patch."""

    corrupt_rate: float = 0.5
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    target: str = "mean_color"
    color_bits: int = 3

    def __post_init__(self) -> None:
        self.split = tuple(float(s) for s in self.split)
        if self.target not in TARGETS:
            raise ValueError(f"masked_patch.target={self.target!r} is not one of {TARGETS}")
        if not 0.0 < self.corrupt_rate <= 1.0:
            raise ValueError(f"masked_patch.corrupt_rate={self.corrupt_rate} must lie in (0, 1] (0.5 in the paper)")
        if len(self.split) != 3 or min(self.split) < 0 or not math.isclose(sum(self.split), 1.0, abs_tol=1e-6):
            raise ValueError(f"masked_patch.split={list(self.split)} must be three shares (mask token, random other "
                             "patch, unchanged) that are >= 0 and sum to 1, e.g. [0.8, 0.1, 0.1]")
        if not 1 <= self.color_bits <= 8:
            raise ValueError(f"masked_patch.color_bits={self.color_bits} must lie in 1..8 (3 in the paper)")

    @property
    def cells(self) -> int:
        """Colour predictions per patch side: 4 for the 4 x 4 downsized patch, else 1."""
        return 4 if self.target == "mean_color_4x4" else 1


@dataclass
class SelfSupConfig:
    """A training config's `selfsup:` section: each objective's settings, and the kNN monitor each evaluation runs
    (k=20 over the features of `knn_images` class-balanced training images; 0 turns it off)."""

    mae: MAEConfig = field(default_factory=MAEConfig)
    masked_patch: MaskedPatchConfig = field(default_factory=MaskedPatchConfig)
    knn_images: int = 5000

    def __post_init__(self) -> None:
        if self.knn_images < 0 or 0 < self.knn_images < 20:
            raise ValueError(f"selfsup.knn_images={self.knn_images}: the kNN-20 monitor needs at least 20 training "
                             "images (0 turns it off)")
