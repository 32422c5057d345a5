"""RandAugment: timm strings, per-sample operation choice, and each op's level against Pillow."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from vitkit.data import AugmentConfig
from vitkit.data.randaugment import OPS, RandAugmentSpec, parse_rand_augment, rand_augment, sample_magnitudes


def test_parse_timm_strings():
    assert parse_rand_augment("rand-m9-mstd0.5-inc1") == RandAugmentSpec(9.0, 2, 0.5, 10.0, True, 0.5)
    assert parse_rand_augment("rand") == RandAugmentSpec()
    spec = parse_rand_augment("rand-n3-m7-mmax20-p0.8-mstdinf")
    assert (spec.num_layers, spec.magnitude, spec.magnitude_max, spec.prob) == (3, 7.0, 20.0, 0.8)
    assert spec.magnitude_std == math.inf


@pytest.mark.parametrize("text, message", [
    ("augmix-m5", "only RandAugment"), ("rand-m9-foo1", "cannot read 'foo1'"), ("rand-n2.5", "whole number"),
    ("rand-m9-p1.5", "p in"), ("rand-m1.2.3", "needs a number"),
])
def test_bad_strings_name_the_part(text, message):
    with pytest.raises(ValueError, match=message):
        parse_rand_augment(text)
    with pytest.raises(ValueError, match="augment.auto_augment"):
        AugmentConfig(auto_augment=text)


def test_magnitude_noise_and_clipping():
    rng = np.random.default_rng(0)
    assert (sample_magnitudes(RandAugmentSpec(9, magnitude_std=0), rng, 10) == 9).all()
    noisy = sample_magnitudes(RandAugmentSpec(9, magnitude_std=0.5), rng, 20000)
    assert noisy.max() == 10 and abs(noisy.mean() - 8.97) < 0.05  # N(9, 0.5) clipped at mmax=10
    uniform = sample_magnitudes(RandAugmentSpec(9, magnitude_std=math.inf), rng, 20000)
    assert uniform.min() >= 0 and uniform.max() <= 9 and abs(uniform.mean() - 4.5) < 0.1


def test_operations_are_chosen_per_sample():
    x = torch.rand(1, 3, 16, 16).expand(64, 3, 16, 16).contiguous()
    out = rand_augment(x, RandAugmentSpec(9, num_layers=1, prob=1.0), np.random.default_rng(0), torch.zeros(3))
    distinct = {tuple(img.flatten()[:50].round(decimals=4).tolist()) for img in out}
    assert len(distinct) >= 12  # one batch-wide choice would give at most 2 (a sign) per op


def _pil_op(name: str, level: float, sign: float):
    """timm's increasing-severity RandAugment ops written directly with Pillow."""
    factor = 1 + sign * level * 0.9
    return {
        "auto_contrast": ImageOps.autocontrast, "equalize": ImageOps.equalize, "invert": ImageOps.invert,
        "posterize": lambda i: (ImageOps.posterize(i, 4 - int(level * 4)) if int(level * 4) < 4
                                else Image.new("RGB", i.size)),
        "solarize": lambda i: ImageOps.solarize(i, 256 - int(level * 256)),
        "solarize_add": lambda i: i.point(lambda p: min(255, p + int(level * 110)) if p < 128 else p),
        "color": lambda i: ImageEnhance.Color(i).enhance(factor),
        "contrast": lambda i: ImageEnhance.Contrast(i).enhance(factor),
        "brightness": lambda i: ImageEnhance.Brightness(i).enhance(factor),
        "sharpness": lambda i: ImageEnhance.Sharpness(i).enhance(factor),
    }.get(name)


def test_each_sample_gets_its_drawn_op_at_timms_level():
    spec = parse_rand_augment("rand-m9-mstd0.5-inc1-n1-p1.0")
    pixels = np.random.default_rng(1).integers(0, 256, (96, 12, 12, 3), dtype=np.uint8)
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
    out = rand_augment(x, spec, np.random.default_rng(7), torch.zeros(3))
    replay = np.random.default_rng(7)  # the same draws, in the order rand_augment makes them
    chosen, _ = replay.integers(len(OPS), size=96), replay.random(96)
    level = sample_magnitudes(spec, replay, 96) / 10
    sign = np.where(replay.random(96) < 0.5, -1.0, 1.0)
    checked = 0
    for i in range(96):
        pil = _pil_op(OPS[chosen[i]], level[i], sign[i])
        if pil is None:
            continue
        expected = np.asarray(pil(Image.fromarray(pixels[i]))).astype(int)
        ours = (out[i] * 255).round().permute(1, 2, 0).numpy().astype(int)
        assert np.abs(ours - expected).max() <= 1, OPS[chosen[i]]
        checked += 1
    assert checked > 50
