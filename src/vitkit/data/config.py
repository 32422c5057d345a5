"""AugmentConfig: one training recipe's augmentations as data, checked when built so a typo fails before training."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import from_dict

CROPS = ("auto", "rrc", "pad", "none")
INTERPOLATIONS = ("bilinear", "bicubic")
PADDING_MODES = ("constant", "reflect")
ERASE_MODES = ("pixel", "rand", "const")
MIXUP_MODES = ("batch", "elem")
SMALL_IMAGE = 64  # crop="auto" pads-and-crops images up to this side, random-resized-crops larger ones


@dataclass
class AugmentConfig:
    """Field names follow timm's create_transform / Mixup where users know them."""

    crop: str = "auto"
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    padding: int = 4
    padding_mode: str = "constant"
    hflip: float = 0.5
    auto_augment: str | None = None
    three_augment: bool = False
    color_jitter: float | None = None
    re_prob: float = 0.0
    re_mode: str = "pixel"
    re_count: int = 1
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    mixup_mode: str = "batch"
    repeated_aug: int = 1
    crop_pct: float = 1.0
    interpolation: str = "bicubic"

    def __post_init__(self) -> None:
        self.scale, self.ratio = tuple(self.scale), tuple(self.ratio)
        _choice("crop", self.crop, CROPS)
        _choice("interpolation", self.interpolation, INTERPOLATIONS)
        _choice("padding_mode", self.padding_mode, PADDING_MODES)
        _choice("re_mode", self.re_mode, ERASE_MODES)
        _choice("mixup_mode", self.mixup_mode, MIXUP_MODES)
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"augment.scale={self.scale}: give (min, max) area fractions with 0 < min <= max <= 1")
        if len(self.ratio) != 2 or not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"augment.ratio={self.ratio}: give (min, max) aspect ratios with 0 < min <= max")
        for name in ("hflip", "re_prob", "mixup_prob", "mixup_switch_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"augment.{name}={getattr(self, name)} is a probability: use a value in [0, 1]")
        for name in ("mixup_alpha", "cutmix_alpha", "padding"):
            if getattr(self, name) < 0:
                raise ValueError(f"augment.{name}={getattr(self, name)} must be >= 0 (0 turns it off)")
        if self.color_jitter is not None and self.color_jitter < 0:
            raise ValueError(f"augment.color_jitter={self.color_jitter} must be >= 0, or null for the default")
        if self.re_count < 1 or self.repeated_aug < 1:
            raise ValueError("augment.re_count and augment.repeated_aug must be at least 1 (1 means no repeats)")
        if not 0 < self.crop_pct <= 1:
            raise ValueError(f"augment.crop_pct={self.crop_pct} must be in (0, 1]: the centre fraction kept at eval")
        if self.auto_augment and self.three_augment:
            raise ValueError("augment.auto_augment and augment.three_augment are alternatives: set only one")
        if self.auto_augment:
            from .randaugment import parse_rand_augment

            parse_rand_augment(self.auto_augment)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AugmentConfig":
        """Builds from a YAML mapping; an unknown key is an error that names it."""
        return from_dict(cls, data, "augment.")

    @property
    def mixes(self) -> bool:
        """True when batches are mixed, i.e. targets are soft label distributions."""
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    @property
    def jitter(self) -> float:
        """The colour-jitter strength in force: 3-Augment's 0.3 unless color_jitter says otherwise."""
        if self.color_jitter is not None:
            return self.color_jitter
        return 0.3 if self.three_augment else 0.0

    def crop_mode(self, image_size: tuple[int, int] | None) -> str:
        """'auto' resolves to pad-and-crop for small fixed-size images, random-resized crop otherwise."""
        if self.crop != "auto":
            return self.crop
        return "pad" if image_size is not None and max(image_size) <= SMALL_IMAGE else "rrc"


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"augment.{name}={value!r} is not one of {allowed}")
