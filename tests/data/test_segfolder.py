"""Segmentation folders written into tmp_path: pixels and class indices come back exactly, problems are named."""
import numpy as np
import pytest
import torch
from PIL import Image

from vitkit.data.segfolder import build_segmentation_dataset


def write_pair(root, stem, size=(5, 4), mode="L", seed=0, mask_size=None):
    rng = np.random.default_rng(seed)
    width, height = size
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    mw, mh = mask_size or size
    mask = rng.choice([0, 1, 2, 255], (mh, mw)).astype(np.uint8)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / "images" / f"{stem}.png")
    saved = Image.frombytes(mode, (mw, mh), mask.tobytes())
    if mode == "P":  # colours that differ from the indices, so reading colours instead of indices shows
        saved.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
    saved.save(root / "masks" / f"{stem}.png")
    return image, mask


@pytest.mark.parametrize("mode", ["L", "P"])
def test_images_and_masks_round_trip(tmp_path, mode):
    written = {stem: write_pair(tmp_path, stem, mode=mode, seed=i) for i, stem in enumerate(["b", "a"])}
    dataset = build_segmentation_dataset(f"segfolder:{tmp_path}")
    assert len(dataset) == 2
    for index, stem in enumerate(["a", "b"]):  # sorted by name
        image, mask = dataset[index]
        assert image.dtype == torch.uint8 and image.shape == (3, 4, 5) and mask.dtype == torch.int64
        assert np.array_equal(image.permute(1, 2, 0).numpy(), written[stem][0])
        assert np.array_equal(mask.numpy(), written[stem][1]) and mask.shape == (4, 5)
    assert Image.open(tmp_path / "masks" / "a.png").mode == mode


def test_missing_masks_folder(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(ValueError, match="no masks/ folder"):
        build_segmentation_dataset(f"segfolder:{tmp_path}")


def test_image_without_a_mask_is_named(tmp_path):
    write_pair(tmp_path, "a")
    Image.new("RGB", (3, 3)).save(tmp_path / "images" / "lonely.png")
    with pytest.raises(ValueError, match="lonely.png has no mask"):
        build_segmentation_dataset(f"segfolder:{tmp_path}")


def test_size_mismatch_names_both_sizes(tmp_path):
    write_pair(tmp_path, "a", size=(5, 4), mask_size=(6, 4))
    with pytest.raises(ValueError, match="a.png is 5x4 but its mask a.png is 6x4"):
        build_segmentation_dataset(f"segfolder:{tmp_path}")


def test_rgb_mask_is_refused(tmp_path):
    write_pair(tmp_path, "a")
    Image.new("RGB", (5, 4)).save(tmp_path / "masks" / "a.png")
    with pytest.raises(ValueError, match="RGB-mode image"):
        build_segmentation_dataset(f"segfolder:{tmp_path}")[0]
