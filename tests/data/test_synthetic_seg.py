"""The synthetic segmentation set from tiny fake sources in the official formats (idx gz, CIFAR pickles)."""
import gzip
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vitkit.data import build_dataset
from vitkit.data.synthetic_seg import make_synthetic_segmentation

from test_cifar_layout import write_cifar10  # the official Python-2 pickle layout (tests/data on sys.path)


def write_idx_gz(path, array):
    """The idx layout: two zero bytes, 0x08 (unsigned bytes), the rank, big-endian sizes, the data."""
    header = b"\0\0\x08" + bytes([array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def write_fashion(root, rng, solid):
    """8 items per split; solid items are 255 everywhere, so their alpha is 1 over their whole square."""
    root.mkdir(parents=True)
    for prefix in ("train", "t10k"):
        items = (np.full((8, 28, 28), 255, np.uint8) if solid else rng.integers(0, 256, (8, 28, 28), dtype=np.uint8))
        write_idx_gz(root / f"{prefix}-images-idx3-ubyte.gz", items)
        write_idx_gz(root / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, 8))


@pytest.fixture
def sources(tmp_path):
    def make(solid):
        rng = np.random.default_rng(3)
        root = tmp_path / ("solid" if solid else "random")
        write_fashion(root / "fashion", rng, solid)
        write_cifar10(root / "cifar", rng)
        return root / "fashion", root / "cifar"
    return make


def test_same_seed_same_set_and_seed_size_recorded(sources):
    fashion, cifar = sources(False)
    a = make_synthetic_segmentation(fashion, cifar, 4, seed=5)
    b = make_synthetic_segmentation(fashion, cifar, 4, seed=5)
    c = make_synthetic_segmentation(fashion, cifar, 4, seed=6)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks) and a.items == b.items
    assert not torch.equal(a.images, c.images)
    assert (a.seed, a.size, a.split) == (5, 64, "train") and a.images.shape == (4, 3, 64, 64)
    assert a.masks.dtype == torch.int64 and a.classes[0] == "background" and len(a.classes) == 11
    assert all(2 <= len(items) <= 4 for items in a.items)


def test_solid_items_label_exactly_their_squares_last_on_top(sources):
    """Independent of any resizing: a solid item's alpha is 1 on its square, so the mask is the squares painted in
    paste order, each with 1 + its class, and the image there is the item's flat colour."""
    fashion, cifar = sources(True)
    data = make_synthetic_segmentation(fashion, cifar, 6, seed=1)
    for mask, items in zip(data.masks, data.items):
        expected = torch.zeros(64, 64, dtype=torch.int64)
        for label, _, top, left, side in items:
            expected[top:top + side, left:left + side] = label + 1
        assert torch.equal(mask, expected)
    top, left, side = data.items[0][-1][2:]
    square = data.images[0][:, top:top + side, left:left + side]
    assert torch.equal(square, square[:, :1, :1].expand_as(square))


def test_mask_is_where_an_item_alpha_exceeds_one_half(sources):
    fashion, cifar = sources(False)
    data = make_synthetic_segmentation(fashion, cifar, 5, seed=2)
    source = build_dataset(f"fashion-mnist:{fashion}", "train")
    for mask, items in zip(data.masks, data.items):
        expected = torch.zeros(64, 64, dtype=torch.int64)
        for label, index, top, left, side in items:
            assert label == int(source.labels[index])
            alpha = F.interpolate(source.images[index][None].double() / 255, size=(side, side), mode="bilinear")
            window = expected[top:top + side, left:left + side]
            window[alpha[0, 0] > 0.5] = label + 1
        assert torch.equal(mask, expected)
        assert set(mask.unique().tolist()) - {0} <= {label + 1 for label, *_ in items}
