"""Images for analysis: read with PIL, resized and cropped with the model's own eval preprocessing."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from PIL import Image

from ..data import BadImageError, build_dataset
from ..data.folder import ImageFolderDataset
from ..data.transforms import normalize
from ..inference import eval_image, eval_pixels, image_paths
from ..preprocess import Preprocess


@dataclass
class ImageSet:
    """Images ready to show ([B, H, W, C] in [0, 1]) with their names, and the files that could not be read."""

    pixels: np.ndarray
    names: list[str]
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    synthetic: bool = False


def read_image(path: Path, size: tuple[int, int], in_chans: int, prep: Preprocess) -> np.ndarray:
    """One image file as [H, W, C] floats in [0, 1] at the model's input size, preprocessed as at evaluation."""
    if in_chans not in (1, 3):
        raise ValueError(f"images can be read for 1- or 3-channel models; this model takes {in_chans} channels")
    return eval_image(path, size, in_chans, prep).astype(np.float32) / 255.0


def load_images(paths: Sequence[str | Path], size: tuple[int, int], in_chans: int, prep: Preprocess) -> ImageSet:
    """Reads every file it can; unreadable ones are listed by name with the reason instead of stopping the run."""
    pixels, names, unreadable = [], [], []
    for path in image_paths(paths):
        try:
            pixels.append(read_image(path, size, in_chans, prep))
            names.append(path.name)
        except BadImageError as error:
            unreadable.append((str(error.path), error.reason))
    empty = np.zeros((0, *size, in_chans), dtype=np.float32)
    return ImageSet(np.stack(pixels) if pixels else empty, names, unreadable)


def dataset_images(spec: str, count: int, size: tuple[int, int], in_chans: int, prep: Preprocess,
                   split: str = "test") -> ImageSet:
    """The first `count` images of a dataset split, taking the classes in turn so that the first maps show several
    classes; named by class and index."""
    dataset = build_dataset(spec, split=split)
    chosen = round_robin_by_class(dataset.labels.tolist(), count)
    if isinstance(dataset, ImageFolderDataset):  # files: named by file, unreadable ones listed
        return load_images([dataset.samples[i][0] for i in chosen], size, in_chans, prep)
    pixels = [eval_pixels(_as_pil(dataset.images[i]), size, in_chans, prep) for i in chosen]
    names = [f"{dataset.classes[int(dataset.labels[i])]} (#{i})" for i in chosen]
    return ImageSet(np.stack(pixels).astype(np.float32) / 255.0, names)


def round_robin_by_class(labels: list[int], count: int) -> list[int]:
    """Up to `count` indices taking the classes in turn, so that a few samples show several classes."""
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    queues = [iter(indices) for _, indices in sorted(by_class.items())]
    chosen: list[int] = []
    while len(chosen) < min(count, len(labels)):
        for queue in queues:
            index = next(queue, None)
            if index is not None and len(chosen) < count:
                chosen.append(index)
    return chosen


def _as_pil(image: torch.Tensor) -> Image.Image:
    """uint8 [C, H, W] -> a PIL image (L for one channel, RGB for three)."""
    array = image.permute(1, 2, 0).numpy()
    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)


def synthetic_images(count: int, size: tuple[int, int], in_chans: int, seed: int = 0) -> ImageSet:
    """Smooth random colour fields, for when no images are given: enough to measure attention distances."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, in_chans, 4, 4, generator=generator)
    smooth = F.interpolate(coarse, size=size, mode="bicubic", align_corners=False).clamp(0, 1)
    pixels = smooth.permute(0, 2, 3, 1).numpy()
    return ImageSet(pixels, [f"synthetic-{i}" for i in range(count)], synthetic=True)


def to_model_input(pixels: np.ndarray, prep: Preprocess) -> torch.Tensor:
    """[B, H, W, C] pixels in [0, 1] -> the normalised [B, C, H, W] batch the model expects."""
    batch = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float()
    prep = prep.for_channels(batch.shape[1])
    return normalize(batch, prep.mean, prep.std)
