"""MNIST and Fashion-MNIST from the standard idx files, gzip-compressed or not."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from .base import TensorImageDataset

FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
INFO = {
    "mnist": dict(classes=[str(i) for i in range(10)], mean=(0.1307,), std=(0.3081,)),
    "fashion-mnist": dict(classes=["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                   "Sneaker", "Bag", "Ankle boot"], mean=(0.2860,), std=(0.3530,)),
}
_UBYTE = 0x08


def load_idx_dataset(kind: str, root: str | Path, split: str) -> TensorImageDataset:
    """`root` holds the four idx files (or a raw/ subfolder does); mean/std are the training set's values."""
    image_file, label_file = (find_file(Path(root), name, kind) for name in FILES[split])
    images, labels = read_idx(image_file), read_idx(label_file)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{kind}:{root}: {image_file.name} holds {images.shape} and {label_file.name} holds "
                         f"{labels.shape}; expected [N, H, W] images and [N] labels")
    info = INFO[kind]
    return TensorImageDataset(torch.from_numpy(images[:, None].copy()), torch.from_numpy(labels.astype(np.int64)),
                              list(info["classes"]), info["mean"], info["std"], name=f"{kind}/{split}")


def find_file(root: Path, name: str, kind: str) -> Path:
    """name or name.gz in root or root/raw (torchvision's layout), else an error saying where to put it."""
    for folder in (root, root / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    if not root.exists():
        raise ValueError(f"{kind}:{root}: {root} does not exist; pass the folder holding the idx files")
    raise ValueError(f"{kind}:{root}: no {name} or {name}.gz in {root}; put the four idx files "
                     f"(train/t10k images and labels) there")


def read_idx(path: Path) -> np.ndarray:
    """An idx file: 2 zero bytes, a type code (only unsigned bytes here), the rank, big-endian sizes, the data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:
        raise ValueError(f"{path} cannot be read ({error}); re-download it") from None
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != _UBYTE:
        raise ValueError(f"{path} is not an unsigned-byte idx file (header {data[:4].hex()}); re-download it")
    rank = data[3]
    shape = tuple(int(s) for s in np.frombuffer(data, ">u4", rank, offset=4))
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * rank)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: header says {shape} but holds {body.size} values; re-download it")
    return body.reshape(shape)
