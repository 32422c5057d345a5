import numpy as np
import pytest
import torch
from PIL import Image

from vitkit.analysis import analyze, load_images, synthetic_images, to_model_input
from vitkit.analysis.source import load_for_analysis
from vitkit.checkpoints import resolve_checkpoint
from vitkit.preprocess import Preprocess

from analysis_helpers import tiny_model

PREP = Preprocess(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), interpolation="bilinear", crop_pct=1.0)


def write_image(path, size, colour=(255, 0, 0), mode="RGB"):
    Image.new(mode, size, colour if mode == "RGB" else 128).save(path)
    return path


def test_wrong_sized_images_are_resized_and_centre_cropped(tmp_path):
    wide = Image.new("RGB", (90, 30), (0, 0, 255))
    wide.paste((255, 0, 0), (30, 0, 60, 30))
    wide.save(tmp_path / "wide.png")
    images = load_images([tmp_path / "wide.png"], (32, 32), 3, PREP)
    assert images.pixels.shape == (1, 32, 32, 3) and images.names == ["wide.png"]
    assert np.allclose(images.pixels[0, 16, 16], [1, 0, 0], atol=0.02)


def test_crop_pct_scales_up_before_cropping(tmp_path):
    image = Image.new("RGB", (40, 40), (0, 0, 0))
    image.paste((255, 255, 255), (10, 10, 30, 30))
    image.save(tmp_path / "box.png")
    tight = Preprocess(interpolation="nearest", crop_pct=0.5)
    pixels = load_images([tmp_path / "box.png"], (40, 40), 3, tight).pixels[0]
    assert pixels.min() == 1.0


def test_unreadable_images_are_reported_by_name_and_the_rest_are_kept(tmp_path):
    write_image(tmp_path / "good.png", (10, 10))
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    images = load_images([tmp_path], (16, 16), 3, PREP)
    assert images.names == ["good.png"]
    assert [name for name, _ in images.unreadable] == [str(tmp_path / "broken.jpg")]


def test_missing_paths_are_errors(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        load_images([tmp_path / "nope.png"], (16, 16), 3, PREP)


def test_grey_models_get_one_channel_and_normalisation_uses_the_preprocess(tmp_path):
    write_image(tmp_path / "g.png", (20, 20), mode="L")
    images = load_images([tmp_path / "g.png"], (16, 16), 1, PREP)
    assert images.pixels.shape == (1, 16, 16, 1)
    batch = to_model_input(images.pixels, PREP)
    expected = torch.full_like(batch, (128 / 255 - 0.5) / 0.25)
    assert batch.shape == (1, 1, 16, 16) and torch.allclose(batch, expected, atol=1e-6)


def test_synthetic_images_are_marked_and_in_range():
    images = synthetic_images(3, (24, 32), 3)
    assert images.synthetic and images.pixels.shape == (3, 24, 32, 3)
    assert images.pixels.min() >= 0 and images.pixels.max() <= 1


def test_run_folders_resolve_to_their_best_checkpoint(tmp_path):
    (tmp_path / "checkpoints" / "best").mkdir(parents=True)
    assert resolve_checkpoint(tmp_path) == tmp_path / "checkpoints" / "best"
    (tmp_path / "empty" / "checkpoints").mkdir(parents=True)
    with pytest.raises(ValueError, match="no checkpoint yet"):
        resolve_checkpoint(tmp_path / "empty")


def test_unknown_sources_are_a_clear_error():
    with pytest.raises(ValueError, match="neither a file or folder nor a preset"):
        load_for_analysis("no_such_model_or_path")


def test_analyze_refuses_images_of_another_size(tmp_path):
    with pytest.raises(ValueError, match="images are 16x16 but the model takes 32x32"):
        analyze(tiny_model(), synthetic_images(1, (16, 16), 3), tmp_path)
