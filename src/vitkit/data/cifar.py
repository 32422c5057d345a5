"""CIFAR-10 / CIFAR-100 from the standard Python pickle layout (cifar-10-batches-py, cifar-100-python)."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from .base import TensorImageDataset

LAYOUTS = {
    "cifar10": dict(folder="cifar-10-batches-py", train=[f"data_batch_{i}" for i in range(1, 6)], test=["test_batch"],
                    meta="batches.meta", names="label_names", labels="labels",
                    mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)),
    "cifar100": dict(folder="cifar-100-python", train=["train"], test=["test"], meta="meta",
                     names="fine_label_names", labels="fine_labels",
                     mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762)),
}
_ALLOWED_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                    ("numpy", "ndarray"), ("numpy", "dtype")}


class _ArrayUnpickler(pickle.Unpickler):
    """Reads CIFAR batches without letting the pickle import anything but numpy's array rebuilding."""

    def find_class(self, module: str, name: str) -> type:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"{module}.{name} has no business in a CIFAR batch; is this file CIFAR?")
        return super().find_class(module, name)


def load_cifar(kind: str, root: str | Path, split: str) -> TensorImageDataset:
    """`root` is the extracted folder or its parent; the mean/std are the training set's published values."""
    layout = LAYOUTS[kind]
    folder = find_folder(Path(root), layout["folder"], layout["train"] + layout["test"] + [layout["meta"]], kind)
    images, labels = [], []
    for name in layout[split]:
        batch = read_pickle(folder / name)
        images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[layout["labels"]], dtype=np.int64))
    classes = [str(c) for c in read_pickle(folder / layout["meta"])[layout["names"]]]
    return TensorImageDataset(torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels)),
                              classes, layout["mean"], layout["std"], name=f"{kind}/{split}")


def find_folder(root: Path, folder: str, files: list[str], kind: str) -> Path:
    """root itself or root/folder, whichever holds all the expected files."""
    for candidate in (root, root / folder):
        if all((candidate / f).is_file() for f in files):
            return candidate
    if not root.exists():
        raise ValueError(f"{kind}:{root}: {root} does not exist; pass the folder holding {folder}/")
    missing = [f for f in files if not (root / folder / f).is_file() and not (root / f).is_file()]
    raise ValueError(f"{kind}:{root}: missing {', '.join(missing)}; extract the official Python archive so that "
                     f"{root / folder} holds {', '.join(files)}")


def read_pickle(path: Path) -> dict:
    """One CIFAR pickle (Python 2 era, so latin1 strings), with a re-download hint when it is not one."""
    with open(path, "rb") as handle:
        try:
            return _ArrayUnpickler(handle, encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError, ValueError) as error:
            raise ValueError(f"{path} is not a readable CIFAR pickle ({error}); re-download the dataset") from None
