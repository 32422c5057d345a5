"""Mixup/CutMix: soft targets sum to one and weigh each image by the share of it actually kept."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vitkit.data import AugmentConfig
from vitkit.data.mixup import mix_batch, sample_mix

B, C = 8, 10


def batch(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(B, 3, 16, 16, generator=generator), torch.randperm(C, generator=generator)[:B]


def test_without_mixing_the_targets_are_one_hot():
    x, y = batch()
    _, soft = mix_batch(x, y, C, AugmentConfig(mixup_alpha=1.0, mixup_prob=0.0), np.random.default_rng(0))
    assert torch.equal(soft, torch.eye(C)[y])


@pytest.mark.parametrize("mode", ["batch", "elem"])
def test_mixup_images_are_the_weighted_sum_the_targets_state(mode):
    x, y = batch()
    cfg = AugmentConfig(mixup_alpha=0.8, mixup_mode=mode)
    mixed, soft = mix_batch(x, y, C, cfg, np.random.default_rng(1))
    assert torch.allclose(soft.sum(1), torch.ones(B))
    lam = soft[torch.arange(B), y]  # labels are distinct, so this is each image's own weight
    expected = lam.view(-1, 1, 1, 1) * x + (1 - lam.view(-1, 1, 1, 1)) * x.flip(0)
    assert torch.allclose(mixed, expected, atol=1e-6)
    assert torch.allclose(soft[torch.arange(B), y.flip(0)], 1 - lam)
    assert (lam.unique().numel() == 1) == (mode == "batch")


@pytest.mark.parametrize("mode", ["batch", "elem"])
def test_cutmix_weight_is_the_share_of_pixels_kept(mode):
    x, y = batch(2)
    cfg = AugmentConfig(cutmix_alpha=1.0, mixup_mode=mode)
    mixed, soft = mix_batch(x, y, C, cfg, np.random.default_rng(3))
    assert torch.allclose(soft.sum(1), torch.ones(B))
    own = (mixed == x).all(1).float().mean((1, 2))
    partner = (mixed == x.flip(0)).all(1).float().mean((1, 2))
    assert torch.allclose(own + partner, torch.ones(B))  # every pixel is one image's or the other's
    lam = soft[torch.arange(B), y]
    assert torch.allclose(lam, own, atol=1e-5)
    boxes = {tuple(((mixed[i] != x[i]).any(0)).nonzero().min(0).values.tolist()) for i in range(B) if own[i] < 1}
    assert (len(boxes) == 1) == (mode == "batch")


def test_switch_prob_picks_cutmix_or_mixup_per_sample():
    cfg = AugmentConfig(mixup_alpha=0.8, cutmix_alpha=1.0, mixup_switch_prob=0.5, mixup_mode="elem")
    lam, cut = sample_mix(cfg, np.random.default_rng(0), 4000)
    assert 0.45 < cut.mean() < 0.55
    assert abs(lam[cut].mean() - 0.5) < 0.03 and abs(lam[~cut].mean() - 0.5) < 0.03  # Beta(a, a) has mean 1/2
    assert lam[cut].var() == pytest.approx(1 / 12, abs=0.01)  # Beta(1, 1) is uniform
    off = sample_mix(AugmentConfig(mixup_alpha=0.8, mixup_prob=0.3, mixup_mode="elem"),
                     np.random.default_rng(0), 4000)[0]
    assert 0.67 < (off == 1.0).mean() < 0.73
