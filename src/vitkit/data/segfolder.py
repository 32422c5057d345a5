"""Segmentation folders, 'segfolder:PATH': PATH/images/<stem>.<ext> with PATH/masks/<stem>.png, each mask an L- or
palette-mode PNG of class indices (255 = ignore); either under train/ and val/ (or test/), or one folder split by a
seeded ratio. Class names come from PATH/classes.txt (one per line, index order), else they are the indices found in
the masks. Pairs and sizes are checked once at build time (headers only)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..preprocess import IMAGENET_MEAN, IMAGENET_STD
from .decode import is_image_file, load_rgb, open_image
from .folder import split_folders

IGNORE_INDEX = 255
MASK_MODES = ("L", "P")
CLASSES_FILE = "classes.txt"


class SegmentationFolderDataset(torch.utils.data.Dataset):
    """(image, mask) path pairs; items decode to (uint8 image [3, H, W], int64 mask [H, W])."""

    ignore_index = IGNORE_INDEX
    num_channels = 3
    image_size = None
    mean, std = IMAGENET_MEAN, IMAGENET_STD

    def __init__(self, root: Path, pairs: list[tuple[Path, Path]], classes: list[str] | None = None,
                 name: str | None = None) -> None:
        self.root, self.pairs, self.spec = root, pairs, f"segfolder:{root}"
        self.name = name or self.spec
        self.classes = classes if classes is not None else []

    def __len__(self) -> int:
        return len(self.pairs)

    def load_pair(self, index: int) -> tuple[Image.Image, Image.Image]:
        """The RGB image as stored (the mask labels the stored pixels: no EXIF rotation) and its mask."""
        image_path, mask_path = self.pairs[index]
        image = load_rgb(image_path, upright=False)
        mask = open_image(mask_path)
        if mask.mode not in MASK_MODES:
            raise ValueError(f"{mask_path} is a {mask.mode}-mode image; a mask must be an L- or palette-mode PNG "
                             "whose pixel values are class indices (255 = ignore)")
        return image, mask

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.load_pair(index)
        return (torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1),
                torch.from_numpy(np.asarray(mask).astype(np.int64)))


def load_segmentation_folder(root: str | Path, split: str | None = None, seed: int = 0,
                             val_fraction: float = 0.2) -> SegmentationFolderDataset:
    """One split (None: every pair of a folder without train/ and val/); a missing folder or mask, or a size
    mismatch, is an error that names the file."""
    root = Path(root)
    spec = f"segfolder:{root}"
    splits = split_folders(root, spec, "keep one images/ + masks/ pair of folders to split by ratio")
    if splits is not None and split is not None:
        pairs = _pairs(splits[0] if split == "train" else splits[1], spec)
    elif splits is not None:
        raise ValueError(f"{spec} holds train/ and {splits[1].name}/: name the split to read")
    else:
        pairs = _pairs(root, spec)
        if split is not None:
            pairs = _ratio_split(pairs, split, seed, val_fraction, spec)
    classes = _class_names(root, splits)
    return SegmentationFolderDataset(root, pairs, classes, spec + (f"/{split}" if split else ""))


def _pairs(folder: Path, spec: str) -> list[tuple[Path, Path]]:
    """Every image of folder/images with the mask of its stem in folder/masks, sizes checked."""
    for sub in ("images", "masks"):
        if not (folder / sub).is_dir():
            raise ValueError(f"{spec}: no {sub}/ folder in {folder}; a segmentation folder holds images/ and "
                             "masks/ (a PNG of class indices per image, same file stem), optionally under train/ "
                             "and val/")
    images = sorted(p for p in (folder / "images").iterdir() if is_image_file(p))
    if not images:
        raise ValueError(f"{spec}: {folder / 'images'} holds no images")
    pairs = []
    for image_path in images:
        mask_path = folder / "masks" / f"{image_path.stem}.png"
        if not mask_path.is_file():
            raise ValueError(f"{spec}: image {image_path.name} has no mask; expected {mask_path}")
        with Image.open(image_path) as image, Image.open(mask_path) as mask:
            if image.size != mask.size:
                raise ValueError(f"{spec}: image {image_path.name} is {image.size[0]}x{image.size[1]} but its mask "
                                 f"{mask_path.name} is {mask.size[0]}x{mask.size[1]} (width x height); "
                                 "they must match pixel for pixel")
        pairs.append((image_path, mask_path))
    return pairs


def _ratio_split(pairs: list[tuple[Path, Path]], split: str, seed: int, val_fraction: float,
                 spec: str) -> list[tuple[Path, Path]]:
    """A seeded shuffle of the pairs; the first round(n * val_fraction) are the test split."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"{spec}: val_fraction={val_fraction} must be in (0, 1) to split one folder")
    order = np.random.default_rng(seed).permutation(len(pairs))
    cut = int(round(len(pairs) * val_fraction))
    picked = sorted(order[:cut] if split == "test" else order[cut:])
    if not picked:
        raise ValueError(f"{spec}: the {split} split of {len(pairs)} pairs is empty at val_fraction={val_fraction}; "
                         "add pairs, or give the folder train/ and val/ subfolders")
    return [pairs[i] for i in picked]


def _class_names(root: Path, splits: tuple[Path, Path] | None) -> list[str]:
    """classes.txt's lines, else '0'..'K-1' for the largest index any mask holds (ignore_index aside)."""
    listed = root / CLASSES_FILE
    if listed.is_file():
        names = [line.strip() for line in listed.read_text().splitlines() if line.strip()]
        if not names:
            raise ValueError(f"{listed} is empty; list one class name per line, in index order")
        return names
    folders = list(splits) if splits else [root]
    largest = -1
    for folder in folders:
        for mask_path in sorted((folder / "masks").glob("*.png")):
            values = np.unique(np.asarray(open_image(mask_path)))
            values = values[values != IGNORE_INDEX]
            if values.size:
                largest = max(largest, int(values.max()))
    return [str(i) for i in range(largest + 1)]
