"""Shared fixtures: the real datasets under ../shared (tests skip when absent) and small real image folders."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def cifar10_root() -> Path:
    root = SHARED / "cifar10"
    if not (root / "cifar-10-batches-py" / "test_batch").is_file():
        pytest.skip(f"CIFAR-10 not found under {root}")
    return root


@pytest.fixture(scope="session")
def fashion_root() -> Path:
    root = SHARED / "fashion-mnist"
    if not (root / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST not found under {root}")
    return root


def noise_image(seed: int, size=(20, 16)) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


@pytest.fixture
def noise():
    """noise(seed, size=(w, h)) -> a random RGB PIL image."""
    return noise_image


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """root/<class>/ with three classes of real PNG/JPEG files and the junk a real folder collects."""
    root = tmp_path / "pets"
    for label, name in enumerate(["cat", "dog", "fox"]):
        (root / name).mkdir(parents=True)
        for i in range(5):
            noise_image(10 * label + i).save(root / name / f"{i}.png")
        noise_image(99 + label).save(root / name / "extra.jpg", quality=95)
        (root / name / ".DS_Store").write_bytes(b"\0\1junk")
        (root / name / "Thumbs.db").write_bytes(b"junk")
        (root / name / "notes.txt").write_text("not an image")
        (root / name / "._0.png").write_bytes(b"macOS resource fork")
    return root
