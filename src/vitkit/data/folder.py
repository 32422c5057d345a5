"""Image folders: PATH/<class>/<image>, either with train/ and val/ (or test/) subfolders or one folder split by
a seeded per-class ratio. Files are listed once at build time; pixels are decoded lazily by loader workers.
Where labels are not needed (self-supervised pre-training), a folder holding its images directly is accepted too:
one group with no class names."""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..preprocess import IMAGENET_MEAN, IMAGENET_STD
from .decode import IMAGE_EXTENSIONS, is_image_file, load_rgb

EVAL_FOLDERS = ("val", "test", "validation")


class ImageFolderDataset(torch.utils.data.Dataset):
    """(path, label) pairs of one split; items decode to upright RGB PIL images."""

    num_channels = 3
    image_size = None
    mean, std = IMAGENET_MEAN, IMAGENET_STD

    def __init__(self, root: Path, classes: list[str], samples: list[tuple[str, int]], name: str,
                 skip_bad_images: bool = False) -> None:
        self.root, self.classes, self.samples, self.name = root, classes, samples, name
        self.skip_bad_images = skip_bad_images
        self.labels = torch.tensor([label for _, label in samples], dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        path, label = self.samples[index]
        return load_rgb(path), label


def load_image_folder(root: str | Path, split: str, seed: int = 0, val_fraction: float = 0.2,
                      skip_bad_images: bool = False, labels: bool = True) -> ImageFolderDataset:
    """Finds the split's class folders and files; every problem is an error that names the folder and the fix.
    labels=False also takes a folder of images without class folders (classes [], every label 0)."""
    root = Path(root).expanduser()
    spec = f"imagefolder:{root}"
    scan = functools.partial(scan_classes, labels=labels)
    classes, samples = split_samples(root, spec, split, seed, val_fraction, scan, "images", "PATH/<class>/<image>")
    return ImageFolderDataset(root, classes, samples, f"{spec}/{split}", skip_bad_images)


def split_samples(root: Path, spec: str, split: str, seed: int, val_fraction: float,
                  scan: Callable[[Path, str], tuple[list[str], list[list[Path]]]], what: str,
                  layout: str) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names and (path, label) samples of one split: train/ and val/ (or test/) folders when root has them,
    else `scan`'s items of root split by a seeded per-class ratio; `what` and `layout` describe them in errors."""
    if not root.is_dir():
        raise ValueError(f"{spec}: {root} {'is not a folder' if root.exists() else 'does not exist'}; "
                         f"pass a folder laid out as {layout} (optionally under train/ and val/)")
    split_root = split_folders(root, spec)
    if split_root is not None:
        train_dir, eval_dir = split_root
        check_same_classes(spec, train_dir, eval_dir)
        classes, files = scan(train_dir if split == "train" else eval_dir, spec)
        samples = [(str(path), label) for label, paths in enumerate(files) for path in paths]
    else:
        if not 0 < val_fraction < 1:
            raise ValueError(f"{spec}: val_fraction={val_fraction} must be in (0, 1) to split one folder")
        classes, files = scan(root, spec)
        samples = ratio_split(files, split, seed, val_fraction)
    if not samples:
        raise ValueError(f"{spec}: the {split} split holds no {what}; add {what}"
                         + ("" if split_root else f" or change val_fraction ({val_fraction})"))
    return classes, samples


def load_whole_folder(root: str | Path) -> ImageFolderDataset:
    """Every image of a folder that has no train/ and val/ layer, unsplit (what `vitkit data check` scans)."""
    root = Path(root).expanduser()
    classes, files = scan_classes(root, f"imagefolder:{root}")
    samples = [(str(path), label) for label, paths in enumerate(files) for path in paths]
    return ImageFolderDataset(root, classes, samples, f"imagefolder:{root}/all")


def split_folders(root: Path, spec: str | None = None,
                  unsplit: str = "move the class folders up one level to split them by ratio"
                  ) -> tuple[Path, Path] | None:
    """(train, eval) folders when root has train/; None when root itself holds the data. `unsplit` tells a user with
    train/ but no eval folder how to lay out one folder instead."""
    if not (root / "train").is_dir():
        return None
    for name in EVAL_FOLDERS:
        if (root / name).is_dir():
            return root / "train", root / name
    raise ValueError(f"{spec or f'imagefolder:{root}'}: has train/ but no {'/, '.join(EVAL_FOLDERS)}/ beside it; "
                     f"add the evaluation split, or {unsplit}")


def class_names(folder: Path) -> list[str]:
    """Sorted subfolder names; hidden folders (.git, .ipynb_checkpoints) are not classes."""
    return sorted(entry.name for entry in folder.iterdir() if entry.is_dir() and not entry.name.startswith("."))


def check_same_classes(spec: str, train_dir: Path, eval_dir: Path) -> None:
    """Label i must mean the same class in both splits, so their class folders must match exactly."""
    train, evaluation = set(class_names(train_dir)), set(class_names(eval_dir))
    if train != evaluation:
        only_train, only_eval = sorted(train - evaluation), sorted(evaluation - train)
        raise ValueError(f"{spec}: {train_dir.name}/ and {eval_dir.name}/ have different classes "
                         f"(only in {train_dir.name}/: {only_train or 'none'}; only in {eval_dir.name}/: "
                         f"{only_eval or 'none'}); give both splits the same class folders")


def scan_classes(folder: Path, spec: str, labels: bool = True) -> tuple[list[str], list[list[Path]]]:
    """Sorted class names and, for each, its image files (recursively, symlinks followed, sorted); with
    labels=False, a folder holding images directly is one group of all its images, with no class names."""
    loose = sum(1 for entry in folder.iterdir() if is_image_file(entry))
    if loose and not labels:
        return [], [list_images(folder)]
    classes = class_names(folder)
    if not classes:
        hint = (f"it holds {loose} images directly: move them into {folder}/<class>/ (pre-training tasks such as "
                "task=mae take it as it is)" if loose
                else f"expected {folder}/<class>/<image>")
        raise ValueError(f"{spec}: {folder} has no class folders; {hint}")
    files = [list_images(folder / name) for name in tqdm(classes, desc=f"scanning {folder}", leave=False,
                                                         disable=len(classes) < 100)]
    empty = [str(folder / name) for name, paths in zip(classes, files) if not paths]
    if empty:
        raise ValueError(f"{spec}: class folder(s) {', '.join(empty)} hold no images "
                         f"({' '.join(IMAGE_EXTENSIONS)}); add images or remove the folder(s)")
    return classes, files


def list_images(folder: Path) -> list[Path]:
    """Image files anywhere under folder, sorted so labels and splits never depend on directory order."""
    found = []
    for parent, dirs, names in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(Path(parent) / name for name in names if is_image_file(Path(name)))
    return sorted(found)


def ratio_split(files: list[list[Path]], split: str, seed: int, val_fraction: float) -> list[tuple[str, int]]:
    """Per class, a seeded shuffle; the first round(n * val_fraction) files are the test split."""
    samples = []
    for label, paths in enumerate(files):
        order = np.random.default_rng([seed, label]).permutation(len(paths))
        cut = int(round(len(paths) * val_fraction))
        picked = order[:cut] if split == "test" else order[cut:]
        samples.extend((str(paths[i]), label) for i in sorted(picked))
    return samples
