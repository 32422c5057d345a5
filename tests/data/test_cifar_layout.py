"""CIFAR-10/100 loading checked in CI: tiny files written in the official Python-2 pickle layout into tmp_path."""
from __future__ import annotations

import pickle
import struct

import numpy as np
import pytest

from vitkit.data import build_dataset

# the official files name numpy's array rebuilder by its numpy 1.x path and hold Python 2 strings
OFFICIAL_GLOBALS = {np.ndarray: ("numpy", "ndarray"), np.dtype: ("numpy", "dtype")}


class Py2Pickler(pickle._Pickler):
    """Protocol 2 as Python 2 wrote it: every string a py2 `str` (BINSTRING, no unicode), numpy under numpy.core."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    def save_ascii_str(self, obj):
        self.save_py2_str(obj.encode("latin1"))

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_ascii_str  # numpy's dtype state ('u1', '|') was a py2 str too

    def save_global(self, obj, name=None):
        module, name = OFFICIAL_GLOBALS.get(obj, ("numpy.core.multiarray", getattr(obj, "__name__", "")))
        assert module != "numpy.core.multiarray" or name == "_reconstruct", obj
        self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode("ascii"))
        self.memoize(obj)


def write_py2_pickle(path, obj):
    with open(path, "wb") as handle:
        Py2Pickler(handle, protocol=2).dump(obj)
    with open(path, "rb") as handle:  # what the official files give with encoding="bytes": bytes keys
        assert set(pickle.load(handle, encoding="bytes")) == set(obj)


def random_images(rng, count):
    """count HWC uint8 images 32x32x3 with every pixel drawn at random."""
    return rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)


def rows_of(images_hwc):
    """The official row layout: 1024 red values (row-major), then 1024 green, then 1024 blue."""
    return np.concatenate([images_hwc[:, :, :, channel].reshape(len(images_hwc), 1024) for channel in range(3)],
                          axis=1)


def write_cifar10(root, rng):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    write_py2_pickle(folder / "batches.meta", {b"num_cases_per_batch": 10000, b"label_names": names,
                                               b"num_vis": 3072})
    written = {"train": ([], []), "test": ([], [])}
    files = [(f"data_batch_{i}", "train", f"training batch {i} of 5") for i in range(1, 6)]
    for name, split, label in files + [("test_batch", "test", "testing batch 1 of 1")]:
        count = int(rng.integers(2, 5))
        images, labels = random_images(rng, count), rng.integers(0, 10, count).tolist()
        write_py2_pickle(folder / name, {
            b"batch_label": label.encode(), b"labels": labels, b"data": rows_of(images),
            b"filenames": [f"{name}_{i}_{names[t].decode()}.png".encode() for i, t in enumerate(labels)]})
        written[split][0].append(images)
        written[split][1].extend(labels)
    return folder, [n.decode() for n in names], {k: (np.concatenate(v[0]), v[1]) for k, v in written.items()}


def write_cifar100(root, rng):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    fine_names = [f"fine_{i:02d}".encode() for i in range(100)]
    write_py2_pickle(folder / "meta", {b"fine_label_names": fine_names,
                                       b"coarse_label_names": [f"coarse_{i:02d}".encode() for i in range(20)]})
    written = {}
    for split, count in (("train", 5), ("test", 3)):
        images, fine = random_images(rng, count), rng.integers(20, 100, count).tolist()
        coarse = [t % 20 for t in fine]  # never equal to the fine label, so reading the wrong key shows
        write_py2_pickle(folder / split, {
            b"filenames": [f"{split}_{i}.png".encode() for i in range(count)], b"batch_label": split.encode(),
            b"fine_labels": fine, b"coarse_labels": coarse, b"data": rows_of(images)})
        written[split] = (images, fine)
    return folder, [n.decode() for n in fine_names], written


@pytest.mark.parametrize("kind, writer", [("cifar10", write_cifar10), ("cifar100", write_cifar100)])
@pytest.mark.parametrize("point_at", ["parent", "folder"])
def test_cifar_pixels_labels_and_names_match_the_official_layout(tmp_path, kind, writer, point_at):
    """CI has no real CIFAR: files in the official layout must load with every pixel, label and name in place."""
    folder, names, written = writer(tmp_path / "data", np.random.default_rng(7))
    path = folder.parent if point_at == "parent" else folder
    for split in ("train", "test"):
        dataset = build_dataset(f"{kind}:{path}", split)
        images, labels = written[split]
        assert dataset.images.shape == (len(images), 3, 32, 32) and dataset.image_size == (32, 32)
        assert np.array_equal(dataset.images.permute(0, 2, 3, 1).numpy(), images)  # NCHW back to what was written
        assert dataset.labels.tolist() == labels
        assert dataset.classes == names and dataset.num_channels == 3
        image, label = dataset[len(dataset) - 1]
        assert np.array_equal(image.numpy(), images[-1].transpose(2, 0, 1)) and label == labels[-1]
        # one pixel by hand: row 5, column 17, green is value 1024 + 5 * 32 + 17 of the file's row
        assert dataset.images[0, 1, 5, 17].item() == rows_of(images[:1])[0, 1024 + 5 * 32 + 17] == images[0, 5, 17, 1]
