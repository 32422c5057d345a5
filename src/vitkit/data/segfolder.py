"""Segmentation folders, 'segfolder:PATH': PATH/images/<stem>.<ext> with PATH/masks/<stem>.png, each mask an L- or
palette-mode PNG of class indices (255 = ignore). Pairs and sizes are checked once at build time (headers only)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .decode import is_image_file, load_rgb, open_image

IGNORE_INDEX = 255
MASK_MODES = ("L", "P")


class SegmentationFolderDataset(torch.utils.data.Dataset):
    """(image, mask) path pairs; items decode to (uint8 image [3, H, W], int64 mask [H, W])."""

    ignore_index = IGNORE_INDEX

    def __init__(self, root: Path, pairs: list[tuple[Path, Path]]) -> None:
        self.root, self.pairs, self.name = root, pairs, f"segfolder:{root}"

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, mask_path = self.pairs[index]
        stored = load_rgb(image_path, upright=False)  # the mask labels the stored pixels: no EXIF rotation
        image = torch.from_numpy(np.asarray(stored).copy()).permute(2, 0, 1)
        mask = open_image(mask_path)
        if mask.mode not in MASK_MODES:
            raise ValueError(f"{mask_path} is a {mask.mode}-mode image; a mask must be an L- or palette-mode PNG "
                             "whose pixel values are class indices (255 = ignore)")
        return image, torch.from_numpy(np.asarray(mask).astype(np.int64))


def build_segmentation_dataset(spec: str) -> SegmentationFolderDataset:
    """'segfolder:PATH' -> its dataset; a separate entry from build_dataset, whose datasets yield class labels."""
    kind, _, path = spec.partition(":")
    if kind.strip().lower() != "segfolder" or not path:
        raise ValueError(f"{spec!r}: a segmentation dataset is named 'segfolder:PATH'")
    return load_segmentation_folder(Path(path).expanduser())


def load_segmentation_folder(root: str | Path) -> SegmentationFolderDataset:
    """Pairs every image with the mask of its stem; a missing folder or mask, or a size mismatch, is an error."""
    root = Path(root)
    spec = f"segfolder:{root}"
    for folder in ("images", "masks"):
        if not (root / folder).is_dir():
            raise ValueError(f"{spec}: no {folder}/ folder in {root}; a segmentation folder holds images/ and "
                             "masks/ (a PNG of class indices per image, same file stem)")
    images = sorted(p for p in (root / "images").iterdir() if is_image_file(p))
    if not images:
        raise ValueError(f"{spec}: {root / 'images'} holds no images")
    pairs = []
    for image_path in images:
        mask_path = root / "masks" / f"{image_path.stem}.png"
        if not mask_path.is_file():
            raise ValueError(f"{spec}: image {image_path.name} has no mask; expected {mask_path}")
        with Image.open(image_path) as image, Image.open(mask_path) as mask:
            if image.size != mask.size:
                raise ValueError(f"{spec}: image {image_path.name} is {image.size[0]}x{image.size[1]} but its mask "
                                 f"{mask_path.name} is {mask.size[0]}x{mask.size[1]} (width x height); "
                                 "they must match pixel for pixel")
        pairs.append((image_path, mask_path))
    return SegmentationFolderDataset(root, pairs)
