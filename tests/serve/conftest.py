"""Fixtures of the server tests: a tiny checkpoint with class names, a few image files, `vitkit predict`'s answers
for them as the reference, and one live server on a real socket shared by the tests that need one."""
import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import ImageFile

from vitkit import ViTConfig, VisionTransformer, save_pretrained
from vitkit.cli import main

from serve_helpers import LABELS, TINY, image_bytes, smooth_image

from vitkit.serve.process import ServerProcess


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny random ViT saved as vitkit saves models, with class names; its outputs are deterministic."""
    torch.manual_seed(0)
    model = VisionTransformer(ViTConfig(**TINY))
    model.class_names = list(LABELS)
    return save_pretrained(model, tmp_path_factory.mktemp("serve") / "tiny")


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> list[Path]:
    """Image files of several sizes, formats and modes (RGB PNG, JPEG, RGBA PNG, grey PNG, a wide JPEG)."""
    folder = tmp_path_factory.mktemp("photos")
    made = [("rgb.png", smooth_image(1), "PNG", {}), ("photo.jpg", smooth_image(2), "JPEG", {"quality": 90}),
            ("rgba.png", np.dstack([smooth_image(3), smooth_image(4, channels=1)]), "PNG", {}),
            ("grey.png", smooth_image(5, channels=1), "PNG", {}),
            ("wide.jpg", smooth_image(6, 30, 90), "JPEG", {"quality": 85})]
    paths = []
    for name, array, fmt, options in made:
        (folder / name).write_bytes(image_bytes(array, fmt, **options))
        paths.append(folder / name)
    return paths


@pytest.fixture(scope="session")
def predicted(checkpoint, photos) -> dict[str, dict]:
    """What `vitkit predict --format json` says for each photo (by file name): the reference answers."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["predict", str(checkpoint), *map(str, photos), "--format", "json", "--backend", "torch-fp32"]) == 0
    return {Path(entry["path"]).name: entry for entry in json.loads(out.getvalue())}


@pytest.fixture
def decoded_pixels(monkeypatch):
    """Counts calls of Pillow's pixel decoding (ImageFile.load): a refusal from the header leaves it at 0."""
    calls = []
    original = ImageFile.ImageFile.load

    def spy(self):
        calls.append(self.size)
        return original(self)
    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    return calls


@pytest.fixture(scope="session")
def live_server(checkpoint):
    """One server for every test that needs a real socket: loopback, a free port, a 1 MB body limit."""
    with ServerProcess([str(checkpoint), "--backend", "torch-fp32", "--threads", "1", "--max-body-mb", "1"]) as server:
        yield server
