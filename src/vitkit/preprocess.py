"""Preprocess: how images are prepared for a model (eval resize and crop, normalisation), and the usual constants.

The lowest room of the package: models record it, checkpoints read and write it, data and inference apply it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
INCEPTION_MEAN, INCEPTION_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class Preprocess:
    """How images must be prepared for a model: the eval resize/crop and the normalisation."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bicubic"
    crop_pct: float = 0.875

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Preprocess":
        """From JSON (lists for the tuples), keeping only the fields a Preprocess has."""
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in fields})

    def for_channels(self, channels: int) -> "Preprocess":
        """The same preprocessing with one mean/std per input channel: a gray mean/std repeats for RGB input, and
        values equal for every channel serve a gray model."""
        if len(self.mean) == channels and len(self.std) == channels:
            return self
        if len(set(self.mean)) != 1 or len(set(self.std)) != 1:
            raise ValueError(f"a preprocessing with {len(self.mean)} mean and {len(self.std)} std values does not "
                             f"fit {channels} input channels; give one value per channel (or one for all)")
        return dataclasses.replace(self, mean=(self.mean[0],) * channels, std=(self.std[0],) * channels)
