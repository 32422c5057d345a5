"""The issue's synthetic segmentation set: 2-4 Fashion-MNIST items pasted on upscaled CIFAR-10 photographs, with a
class per pixel (0 background, 1..10 the Fashion-MNIST classes), reproducible from its seed.

The paste: an item's 28x28 pixels, bilinearly resized to a random side, are its alpha (pixel / 255) and, times a
random colour, its appearance; image = alpha * colour + (1 - alpha) * image. Its mask pixels are those with
alpha > 0.5, labelled 1 + its class; later items cover earlier ones, in the image and in the mask."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .base import channel_stats
from .datasets import build_dataset
from .segfolder import IGNORE_INDEX

BACKGROUND = 0
ITEMS = (2, 4)
MASK_ALPHA = 0.5


@dataclass
class SyntheticSegmentation:
    """images uint8 [N, 3, size, size], masks int64 [N, size, size], each image's items as (class, source index,
    top, left, side) in paste order, and what rebuilds it: seed, size, split."""

    images: torch.Tensor
    masks: torch.Tensor
    items: list[list[tuple[int, int, int, int, int]]]
    seed: int
    size: int
    split: str
    classes: list[str] = field(default_factory=list)
    spec: str = "synthseg"  # the dataset spec that rebuilds it (build_segmentation_dataset)
    ignore_index = IGNORE_INDEX  # never in a generated mask: every pixel is background or an item
    num_channels = 3

    def __post_init__(self) -> None:
        self.mean, self.std = channel_stats(self.images)

    @property
    def image_size(self) -> tuple[int, int]:
        return (self.size, self.size)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.masks[index]


def item_alpha(pixels: torch.Tensor, side: int) -> torch.Tensor:
    """An item's uint8 [h, w] pixels -> its alpha [side, side] in [0, 1] (bilinear, as the module docstring says)."""
    alpha = F.interpolate(pixels[None, None].double() / 255, size=(side, side), mode="bilinear", align_corners=False)
    return alpha[0, 0].clamp(0, 1)


def make_synthetic_segmentation(fashion_root: str | Path, cifar_root: str | Path, count: int, seed: int = 0,
                                split: str = "train", size: int = 64) -> SyntheticSegmentation:
    """`count` images from the two official sources (build_dataset's 'fashion-mnist:' and 'cifar10:' layouts);
    the same seed, count, size and sources give the same images, masks and items."""
    if count < 1 or size < 16:
        raise ValueError(f"count={count} must be positive and size={size} at least 16 (items are size/4 or more)")
    fashion = build_dataset(f"fashion-mnist:{fashion_root}", split)
    cifar = build_dataset(f"cifar10:{cifar_root}", split)
    rng = np.random.default_rng(seed)
    images = torch.empty(count, 3, size, size, dtype=torch.uint8)
    masks = torch.zeros(count, size, size, dtype=torch.int64)
    items = []
    for n in range(count):
        background = cifar.images[int(rng.integers(len(cifar)))][None].double()
        canvas = F.interpolate(background, size=(size, size), mode="bilinear", align_corners=False)[0]
        placed = []
        for _ in range(int(rng.integers(ITEMS[0], ITEMS[1] + 1))):
            source = int(rng.integers(len(fashion)))
            side = int(rng.integers(size // 4, size * 5 // 8 + 1))
            top, left = (int(v) for v in rng.integers(0, size - side + 1, 2))
            colour = torch.from_numpy(rng.integers(96, 256, 3)).double()[:, None, None]
            alpha = item_alpha(fashion.images[source, 0], side)
            region = canvas[:, top:top + side, left:left + side]
            canvas[:, top:top + side, left:left + side] = alpha * colour + (1 - alpha) * region
            label = int(fashion.labels[source])
            masks[n, top:top + side, left:left + side][alpha > MASK_ALPHA] = label + 1
            placed.append((label, source, top, left, side))
        images[n] = canvas.round().clamp(0, 255).to(torch.uint8)
        items.append(placed)
    return SyntheticSegmentation(images, masks, items, seed, size, split, ["background"] + list(fashion.classes))
