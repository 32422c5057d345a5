"""What the objectives predict: patches, per-patch normalised pixels, and the paper's 3-bit mean colours."""
import numpy as np
import pytest
import torch

from vitkit.data.transforms import normalize
from vitkit.preprocess import CIFAR10_MEAN, CIFAR10_STD, Preprocess
from vitkit.selfsup import class_colors, input_pixels, mean_color_classes, norm_pix, patchify, unpatchify


def test_patchify_orders_patches_row_major_with_pixels_as_row_col_channel():
    images = torch.randn(2, 3, 8, 12)
    patches = patchify(images, 4)
    array = images.numpy()
    expected = [array[:, :, r * 4:(r + 1) * 4, c * 4:(c + 1) * 4].transpose(0, 2, 3, 1).reshape(2, -1)
                for r in range(2) for c in range(3)]
    np.testing.assert_array_equal(patches.numpy(), np.stack(expected, 1))
    assert torch.equal(unpatchify(patches, 4, (2, 3)), images)


def test_norm_pix_targets_match_the_numpy_formula():
    patches = torch.randn(3, 5, 48, dtype=torch.float64) * 4 + 2
    array = patches.numpy()
    expected = (array - array.mean(-1, keepdims=True)) / np.sqrt(array.var(-1, ddof=1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(norm_pix(patches).numpy(), expected, rtol=1e-12)


def test_three_bit_mean_colours_by_hand():
    pixels = torch.zeros(1, 3, 8, 8)
    pixels[:, :, :4, :4] = torch.tensor([0.9, 0.1, 0.3]).view(3, 1, 1)   # levels 7, 0, 2
    pixels[:, 0, :4, 4:] = torch.tensor([0.2, 1.0]).repeat_interleave(2).repeat(4, 1)  # red mean 0.6: level 4
    pixels[:, 1, :4, 4:], pixels[:, 2, :4, 4:] = 0.3, 0.74  # levels 2 and 5
    pixels[:, :, 4:, :4] = 1.0   # levels 7, 7, 7 (1.0 is the top level, not a ninth)
    # bottom right stays black: levels 0, 0, 0
    expected = [7 * 64 + 0 * 8 + 2, 4 * 64 + 2 * 8 + 5, 511, 0]
    assert mean_color_classes(pixels, 4).flatten().tolist() == expected
    # through the model's normalisation and back, as the objective computes them
    prep = Preprocess(CIFAR10_MEAN, CIFAR10_STD)
    recovered = input_pixels(normalize(pixels, prep.mean, prep.std), prep)
    assert mean_color_classes(recovered, 4).flatten().tolist() == expected


def test_four_by_four_downsized_colours_by_hand():
    rng = np.random.default_rng(0)
    levels = rng.integers(0, 8, size=(2, 3, 8, 4))  # 2 images, a 2x1 grid of 16-px patches, 4x4 cells each
    pixels = torch.from_numpy((levels + 0.5) / 8).float().repeat_interleave(4, 2).repeat_interleave(4, 3)
    classes = mean_color_classes(pixels, 16, cells=4)
    assert classes.shape == (2, 2, 16)
    for b in range(2):
        for patch in range(2):
            cells = levels[b, :, patch * 4:(patch + 1) * 4, :]  # [C, 4, 4]
            expected = (cells[0] * 64 + cells[1] * 8 + cells[2]).flatten()
            assert classes[b, patch].tolist() == expected.tolist()
    # a class drawn back as colour gives each level's centre
    assert torch.allclose(class_colors(torch.tensor([7 * 64 + 2]), 3)[0], torch.tensor([7.5, 0.5, 2.5]) / 8)


def test_cells_must_divide_the_patch():
    with pytest.raises(ValueError, match="cannot be cut into 4x4 cells"):
        mean_color_classes(torch.rand(1, 3, 12, 12), 6, cells=4)
