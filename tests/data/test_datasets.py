"""Built-in sources against independent readings of the same files."""
from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from vitkit.data import build_dataset
from vitkit.data.base import channel_stats


def test_digits_split_is_stratified_disjoint_and_seeded():
    train, test = build_dataset("digits", "train"), build_dataset("digits", "test")
    assert (len(train), len(test)) == (1437, 360)
    assert train.images.shape == (1437, 1, 8, 8) and train.images.dtype == torch.uint8
    reference = load_digits()
    flat = {tuple(np.rint(img * 255 / 16).astype(np.uint8).ravel()): int(t)
            for img, t in zip(reference.images, reference.target)}
    seen = [tuple(img.ravel().tolist()) for img in torch.cat([train.images, test.images])]
    assert len(set(seen)) == len(set(flat))  # every distinct digit image appears, none invented
    assert all(flat[key] == int(label) for key, label in zip(seen, torch.cat([train.labels, test.labels]), strict=True))
    assert np.abs(np.bincount(test.labels.numpy()) - 36).max() <= 1  # stratified: 20% of each class
    again = build_dataset("digits", "test", seed=0)
    assert torch.equal(again.images, test.images)
    other = build_dataset("digits", "test", seed=1)
    assert not torch.equal(other.images, test.images)
    assert train.classes == [str(i) for i in range(10)] and train.num_channels == 1


def test_digits_mean_std_are_the_train_split_statistics():
    train = build_dataset("digits")
    pixels = train.images.double() / 255
    assert train.mean[0] == pytest.approx(pixels.mean().item()) and train.std[0] == pytest.approx(pixels.std().item())


def test_cifar10_pixels_match_the_pickle_read_directly(cifar10_root):
    test = build_dataset(f"cifar10:{cifar10_root}", "test")
    with open(cifar10_root / "cifar-10-batches-py" / "test_batch", "rb") as handle:
        raw = pickle.load(handle, encoding="bytes")
    expected = np.asarray(raw[b"data"]).reshape(-1, 3, 32, 32)
    assert test.images.shape == (10000, 3, 32, 32)
    assert np.array_equal(test.images.numpy(), expected)
    assert test.labels.tolist() == list(raw[b"labels"])
    assert test.classes[0] == "airplane" and test.classes[9] == "truck" and test.image_size == (32, 32)
    # the folder itself works as the path too
    assert len(build_dataset(f"cifar10:{cifar10_root / 'cifar-10-batches-py'}", "test")) == 10000


def test_cifar10_published_mean_std_match_the_training_images(cifar10_root):
    train = build_dataset(f"cifar10:{cifar10_root}", "train")
    assert len(train) == 50000 and np.bincount(train.labels.numpy()).tolist() == [5000] * 10
    mean, std = channel_stats(train.images)
    assert np.allclose(mean, train.mean, atol=1e-3) and np.allclose(std, train.std, atol=1e-3)


def test_fashion_mnist_matches_the_idx_bytes(fashion_root):
    test = build_dataset(f"fashion-mnist:{fashion_root}", "test")
    with gzip.open(fashion_root / "t10k-images-idx3-ubyte.gz") as handle:
        images = np.frombuffer(handle.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(fashion_root / "t10k-labels-idx1-ubyte.gz") as handle:
        labels = np.frombuffer(handle.read(), np.uint8, offset=8)
    assert np.array_equal(test.images[:, 0].numpy(), images) and test.labels.tolist() == labels.tolist()
    assert test.classes[9] == "Ankle boot" and test.num_channels == 1
    train = build_dataset(f"fashion-mnist:{fashion_root}", "train")
    mean, std = channel_stats(train.images)
    assert len(train) == 60000 and np.allclose(mean, train.mean, atol=1e-3) and np.allclose(std, train.std, atol=1e-3)


def write_idx(path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if compress else open)(path, "wb").write(data)


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_reads_plain_and_gzipped_idx(tmp_path, compress):
    images = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = np.arange(7) % 10
    suffix = ".gz" if compress else ""
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", images, compress)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", labels, compress)
    test = build_dataset(f"mnist:{tmp_path}", "test")
    assert np.array_equal(test.images[:, 0].numpy(), images) and test.labels.tolist() == labels.tolist()


def test_truncated_idx_is_a_clear_error(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((4, 28, 28)), False)
    data = (tmp_path / "t10k-images-idx3-ubyte").read_bytes()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(data[:-100])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(4), False)
    with pytest.raises(ValueError, match="truncated.*re-download"):
        build_dataset(f"mnist:{tmp_path}", "test")


@pytest.mark.parametrize("spec, message", [
    ("cifar11:/x", "did you mean 'cifar10'"),
    ("cifar10", "needs the folder"),
    ("digits:/x", "takes no path"),
    ("mnist:/does/not/exist", "does not exist"),
    ("cifar100:/does/not/exist", "does not exist"),
])
def test_bad_specs_name_the_problem(spec, message):
    with pytest.raises(ValueError, match=message):
        build_dataset(spec, "train")


def test_missing_cifar_files_are_listed(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(ValueError, match="missing data_batch_1.*extract"):
        build_dataset(f"cifar10:{tmp_path}", "train")


def test_a_pickle_that_imports_code_is_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (folder / name).write_bytes(pickle.dumps({"data": print}))
    with pytest.raises(ValueError, match="not a readable CIFAR pickle"):
        build_dataset(f"cifar10:{tmp_path}", "test")


def test_unknown_split_is_an_error():
    with pytest.raises(ValueError, match="split='val'"):
        build_dataset("digits", "val")
