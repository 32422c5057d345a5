"""Batched ops against Pillow, the reference timm's RandAugment and DeiT's 3-Augment are written with."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from vitkit.data import ops
from vitkit.data.randaugment import GEOMETRIC, affine_matrices
from vitkit.data.transforms import EvalTransform, pad_crop, sample_erase_boxes, sample_rrc_boxes
from vitkit.preprocess import Preprocess

RNG = np.random.default_rng(0)
IMAGES = [Image.fromarray(RNG.integers(0, 256, (24, 20, 3), dtype=np.uint8)) for _ in range(4)]
IMAGES.append(Image.fromarray(RNG.integers(60, 180, (24, 20, 3)).astype(np.uint8)))  # low contrast
BATCH = torch.stack([torch.from_numpy(np.asarray(i).copy()).permute(2, 0, 1) for i in IMAGES]).float() / 255
N = len(IMAGES)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy().astype(int)


def reference(fn) -> np.ndarray:
    return np.stack([np.asarray(fn(image)) for image in IMAGES]).astype(int)


def full(value: float) -> torch.Tensor:
    return torch.full((N,), float(value))


@pytest.mark.parametrize("ours, pil", [
    (ops.auto_contrast, ImageOps.autocontrast),
    (ops.equalize, ImageOps.equalize),
    (ops.invert, ImageOps.invert),
    (ops.grayscale, lambda i: i.convert("L").convert("RGB")),
    (lambda x: ops.posterize(x, full(3)), lambda i: ImageOps.posterize(i, 3)),
    (lambda x: ops.posterize(x, full(1)), lambda i: ImageOps.posterize(i, 1)),
    (lambda x: ops.solarize(x, full(100)), lambda i: ImageOps.solarize(i, 100)),
    (lambda x: ops.solarize(x, full(256)), lambda i: i),
    (lambda x: ops.solarize_add(x, full(50)), lambda i: i.point(lambda p: min(255, p + 50) if p < 128 else p)),
] + [(lambda x, f=f, op=op: op(x, full(f)), lambda i, f=f, enhancer=enhancer: enhancer(i).enhance(f))
     for f in (0.1, 0.6, 1.9)
     for op, enhancer in ((ops.brightness, ImageEnhance.Brightness), (ops.contrast, ImageEnhance.Contrast),
                          (ops.color, ImageEnhance.Color), (ops.sharpness, ImageEnhance.Sharpness))])
def test_photometric_ops_match_pillow_within_one_level(ours, pil):
    assert np.abs(to_uint8(ours(BATCH)) - reference(pil)).max() <= 1


def test_posterize_to_zero_bits_is_black():
    assert ops.posterize(BATCH, full(0)).abs().max() == 0


def test_gaussian_blur_matches_pillow():
    ours = to_uint8(ops.gaussian_blur(BATCH, full(1.5)))[:, 5:-5, 5:-5]
    theirs = reference(lambda i: i.filter(ImageFilter.GaussianBlur(1.5)))[:, 5:-5, 5:-5]
    assert np.abs(ours - theirs).max() <= 5 and np.abs(ours - theirs).mean() < 1


def test_translate_and_rotate_match_pillow():
    shift = torch.tensor([[1, 0, -3.0], [0, 1, 0]]).expand(N, 2, 3)
    ours = to_uint8(ops.affine(BATCH, shift, torch.zeros(3)))
    assert np.abs(ours - reference(lambda i: i.transform(i.size, Image.AFFINE, (1, 0, 3, 0, 1, 0)))).max() == 0
    kinds = np.full(N, GEOMETRIC.index("rotate"))
    matrices = torch.tensor(affine_matrices(kinds, np.full(N, 1 / 3), np.ones(N), (24, 20)), dtype=torch.float32)
    ours = to_uint8(ops.affine(BATCH, matrices, torch.zeros(3)))[:, 4:-4, 4:-4]
    theirs = reference(lambda i: i.rotate(10, resample=Image.BILINEAR))[:, 4:-4, 4:-4]
    assert np.abs(ours - theirs).max() <= 1


def test_shear_and_translate_matrices_move_points_as_timm_describes():
    kinds = np.array([GEOMETRIC.index(k) for k in ("shear_x", "shear_y", "translate_x", "translate_y")])
    m = affine_matrices(kinds, np.full(4, 1.0), np.ones(4), (10, 20))
    point = np.array([4.0, 6.0, 1.0])  # (x, y) in the source
    moved = m @ point
    assert np.allclose(moved[0], [4 - 0.3 * 6, 6]) and np.allclose(moved[1], [4, 6 - 0.3 * 4])
    assert np.allclose(moved[2], [4 - 0.45 * 20, 6]) and np.allclose(moved[3], [4, 6 - 0.45 * 10])


def test_pad_crop_takes_a_window_of_the_padded_image():
    x = torch.rand(6, 3, 8, 8)
    rng = np.random.default_rng(3)
    out = pad_crop(x, 2, "constant", np.random.default_rng(3))
    top, left = rng.integers(0, 5, 6), rng.integers(0, 5, 6)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(6):
        assert torch.equal(out[i], padded[i, :, top[i]:top[i] + 8, left[i]:left[i] + 8])


def test_rrc_boxes_respect_scale_ratio_and_bounds():
    boxes = sample_rrc_boxes(np.random.default_rng(0), 5000, 60, 90, (0.2, 0.6), (0.5, 2.0))
    top, left, h, w = boxes.T
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 60).all() and (left + w <= 90).all()
    area = h * w / (60 * 90)
    assert area.min() > 0.18 and area.max() < 0.62 and (w / h).min() > 0.45 and (w / h).max() < 2.2
    squeezed = sample_rrc_boxes(np.random.default_rng(0), 3, 100, 10, (1.0, 1.0), (0.9, 1.1))  # never fits
    assert (squeezed == [44, 0, 11, 10]).all()  # centre crop at the nearest allowed aspect


def test_resized_crop_of_the_whole_image_is_the_identity_and_a_half_is_an_upscale():
    x = torch.rand(2, 3, 8, 8)
    whole = np.array([[0, 0, 8, 8]] * 2)
    assert torch.allclose(ops.resized_crop(x, whole, (8, 8), "bilinear"), x, atol=1e-6)
    left_half = np.array([[0, 0, 8, 4]] * 2)
    out = ops.resized_crop(x, left_half, (8, 8), "bilinear")
    expected = torch.nn.functional.interpolate(x[..., :4], size=(8, 8), mode="bilinear", align_corners=False)
    assert torch.allclose(out, expected, atol=1e-5)


def test_erase_boxes_fit_the_image():
    boxes, found = sample_erase_boxes(np.random.default_rng(0), 2000, 32, 32, 1.0)
    top, left, h, w = boxes[found].T
    assert found.mean() > 0.95 and (top + h <= 32).all() and (left + w <= 32).all()
    assert 0.015 < (h * w / 1024).min() and (h * w / 1024).max() < 0.36  # 2-33%, rounded to pixels


def test_eval_transform_identity_and_centre_crop():
    images = torch.from_numpy(np.stack([np.asarray(i) for i in IMAGES])).permute(0, 3, 1, 2)[:, :, :20, :20]
    same = EvalTransform((20, 20), Preprocess((0.5, 0.4, 0.3), (0.2, 0.25, 0.3), "bicubic", 1.0), 3)(images)
    expected = (images.float() / 255 - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) / torch.tensor(
        [0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    assert torch.allclose(same, expected, atol=1e-6)
    cropped = EvalTransform((16, 16), Preprocess((0, 0, 0), (1, 1, 1), "bicubic", 0.8), 3)(images)  # resize to 20: no-op
    assert torch.allclose(cropped, images[:, :, 2:18, 2:18].float() / 255, atol=1e-6)
