"""Segmentation folders written into tmp_path: pixels and class indices come back exactly, problems are named."""
import numpy as np
import pytest
import torch
from PIL import Image

from vitkit.data.segmentation import build_segmentation_dataset


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


def _lonely_image(root):
    write_pair(root, "a")
    Image.new("RGB", (3, 3)).save(root / "images" / "lonely.png")


def _rgb_mask(root):
    write_pair(root, "a")
    Image.new("RGB", (5, 4)).save(root / "masks" / "a.png")


@pytest.mark.parametrize("make,problem", [
    (_lonely_image, "lonely.png has no mask"),
    (lambda root: write_pair(root, "a", size=(5, 4), mask_size=(6, 4)), "a.png is 5x4 but its mask a.png is 6x4"),
    (_rgb_mask, "RGB-mode image"),
])
def test_a_bad_folder_is_an_error_that_names_the_file(tmp_path, make, problem):
    make(tmp_path)
    with pytest.raises(ValueError, match=problem):
        build_segmentation_dataset(f"segfolder:{tmp_path}")[0]


def test_an_exif_rotated_image_keeps_the_pixels_its_mask_labels(tmp_path):
    """A JPEG tagged 'rotate 90' would be turned upright for classification; its mask labels the stored pixels."""
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    Image.new("RGB", (40, 20), (200, 10, 10)).save(tmp_path / "images" / "a.jpg", exif=exif)
    Image.new("L", (40, 20), 3).save(tmp_path / "masks" / "a.png")
    image, mask = build_segmentation_dataset(f"segfolder:{tmp_path}")[0]
    assert image.shape == (3, 20, 40) and mask.shape == (20, 40)
