"""`build_dataset(spec, split)`: one entry point for every source, named by a short spec string."""
from __future__ import annotations

import difflib
from pathlib import Path

from .base import TensorImageDataset
from .clips import ClipDataset
from .folder import ImageFolderDataset

KINDS = ("digits", "cifar10", "cifar100", "mnist", "fashion-mnist", "imagefolder", "clipfolder", "moving-fashion")
SEGMENTATION_KINDS = ("segfolder", "synthseg")  # masks, not class labels: data/segmentation.py builds them
SPLITS = ("train", "test")
Dataset = TensorImageDataset | ImageFolderDataset | ClipDataset


def build_dataset(spec: str, split: str = "train", seed: int = 0, *, val_fraction: float = 0.2,
                  skip_bad_images: bool = False, labels: bool = True) -> Dataset:
    """'digits' | 'cifar10:PATH' | 'cifar100:PATH' | 'mnist:PATH' | 'fashion-mnist:PATH' | 'imagefolder:PATH', and the
    clip datasets 'clipfolder:PATH' | 'moving-fashion:PATH[?key=value&...]' (PATH: the Fashion-MNIST folder; keys:
    data/moving_fashion.py's MovingFashionParams).

    `seed` fixes the split of sources split by ratio (digits, an image or clip folder without train/ and val/);
    `skip_bad_images` lets image-folder loaders skip and count unreadable files instead of stopping;
    labels=False accepts an image folder without class folders (for self-supervised pre-training)."""
    kind, _, path = spec.partition(":")
    kind = kind.strip().lower()
    if kind.partition("?")[0] in SEGMENTATION_KINDS:
        raise ValueError(f"{spec!r} is a segmentation set (a mask per image, not a class): train on it with "
                         "task=segment and a segmentation model (configs/synthseg_*.yaml)")
    if kind not in KINDS:
        close = difflib.get_close_matches(kind, KINDS, n=1)
        raise ValueError(f"unknown dataset {spec!r}" + (f"; did you mean {close[0]!r}?" if close else "") +
                         f" Known: digits, {', '.join(k + ':PATH' for k in KINDS[1:])}")
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not one of {SPLITS}")
    if kind == "digits":
        if path:
            raise ValueError(f"{spec!r}: the digits dataset ships with scikit-learn and takes no path; use 'digits'")
        from .digits import load_digits

        return load_digits(split, seed)
    if not path:
        raise ValueError(f"{spec!r}: {kind} needs the folder it lives in, e.g. '{kind}:/data/{kind}'")
    root = Path(path).expanduser()
    if kind in ("cifar10", "cifar100"):
        from .cifar import load_cifar

        return load_cifar(kind, root, split)
    if kind in ("mnist", "fashion-mnist"):
        from .idx import load_idx_dataset

        return load_idx_dataset(kind, root, split)
    if kind == "moving-fashion":
        from .moving_fashion import make_moving_fashion, parse_moving_fashion

        fashion_root, params = parse_moving_fashion(path)
        return make_moving_fashion(Path(fashion_root).expanduser(), split, params)[0]
    if kind == "clipfolder":
        from .clips import load_clip_folder

        return load_clip_folder(root, split, seed, val_fraction)
    from .folder import load_image_folder

    return load_image_folder(root, split, seed, val_fraction, skip_bad_images, labels)
