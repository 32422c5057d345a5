"""The in-memory dataset every small source (digits, CIFAR, MNIST) becomes: one uint8 tensor plus its labels."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class TensorImageDataset:
    """Images uint8 [N, C, H, W], labels int64 [N], class names and the per-channel normalisation."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str = ""

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"{self.name}: images must be uint8 [N, C, H, W], got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if len(self.labels) != len(self.images):
            raise ValueError(f"{self.name}: {len(self.images)} images but {len(self.labels)} labels")
        if len(self.images) == 0:
            raise ValueError(f"{self.name}: the split holds no images")
        self.labels = self.labels.to(torch.int64)

    @property
    def num_channels(self) -> int:
        """1 for grayscale sources (digits, MNIST), 3 for colour; build_loader(in_chans=3) can repeat gray."""
        return self.images.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) shared by every image of an in-memory dataset."""
        return tuple(self.images.shape[-2:])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images, in [0, 1] units, from exact 256-bin histograms."""
    levels = torch.arange(256, dtype=torch.float64) / 255
    means, stds = [], []
    for channel in images.transpose(0, 1):
        counts = torch.bincount(channel.flatten().to(torch.int64), minlength=256).to(torch.float64)
        total = counts.sum()
        mean = (counts * levels).sum() / total
        means.append(mean.item())
        stds.append(((counts * (levels - mean) ** 2).sum() / (total - 1)).sqrt().item())
    return tuple(means), tuple(stds)
