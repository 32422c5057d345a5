"""Fixtures more than one test folder uses."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def stand_in_fashion(tmp_path_factory) -> Path:
    """A Fashion-MNIST folder in the idx layout with ten items per split, item i of class i: a bright textured block
    of random size and place on black (what the Moving Fashion-MNIST tests can measure the motion of)."""
    root = tmp_path_factory.mktemp("fashion")
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        items = np.zeros((10, 28, 28), np.uint8)
        for item in items:
            top, left = rng.integers(2, 12, 2)
            height, width = rng.integers(8, 15, 2)
            item[top:top + height, left:left + width] = rng.integers(120, 256, (height, width))
        for name, array in (("images-idx3", items), ("labels-idx1", np.arange(10, dtype=np.uint8))):
            header = bytes([0, 0, 8, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
            (root / f"{prefix}-{name}-ubyte").write_bytes(header + array.tobytes())
    return root
