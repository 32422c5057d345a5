"""Loader order, sharding, resume and configuration on a synthetic in-memory dataset whose labels are indices."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vitkit.data import AugmentConfig, TensorImageDataset, build_dataset, build_loader
from vitkit.data.sampler import epoch_order
from vitkit.preprocess import Preprocess

PLAIN = AugmentConfig(crop="none", hflip=0.0)
FULL = AugmentConfig(auto_augment="rand-m9-mstd0.5-inc1", mixup_alpha=0.8, cutmix_alpha=1.0, re_prob=0.25)


def indexed(n: int = 50) -> TensorImageDataset:
    """Image i is filled with the value i and labelled i, so a batch tells which samples it holds."""
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 8, 8).contiguous()
    return TensorImageDataset(images, torch.arange(n), [str(i) for i in range(n)], (0.0,) * 3, (1.0,) * 3, "indexed")


def indices_of(loader) -> list[list[int]]:
    return [targets.tolist() for _, targets in loader]


def test_an_epoch_is_a_permutation_and_set_epoch_reshuffles_deterministically():
    loader = build_loader(indexed(), 8, train=True, augment=PLAIN, seed=3)
    assert len(loader) == 6  # 50 // 8 with drop_last
    first = indices_of(loader)
    flat = sum(first, [])
    assert len(set(flat)) == 48 and flat != sorted(flat)
    images, _ = next(iter(loader))
    assert images.dtype == torch.float32 and images.shape == (8, 3, 8, 8)
    assert indices_of(loader) == first  # no set_epoch: the same epoch again
    loader.set_epoch(1)
    second = indices_of(loader)
    assert second != first
    loader.set_epoch(0)
    assert indices_of(loader) == first
    assert indices_of(build_loader(indexed(), 8, train=True, augment=PLAIN, seed=4)) != first


def test_images_arrive_normalised_and_intact_without_augmentation():
    dataset = indexed()
    dataset.mean, dataset.std = (0.1, 0.2, 0.3), (0.5, 0.5, 0.25)
    images, labels = next(iter(build_loader(dataset, 8, train=True, augment=PLAIN)))
    expected = (labels.float().view(-1, 1, 1, 1) / 255 - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / \
        torch.tensor([0.5, 0.5, 0.25]).view(1, 3, 1, 1)
    assert torch.allclose(images, expected.expand_as(images), atol=1e-6)


def test_a_models_preprocessing_replaces_the_datasets_statistics():
    preprocess = Preprocess((0.5,) * 3, (0.25,) * 3, crop_pct=1.0)
    images, labels = next(iter(build_loader(indexed(), 8, train=False, preprocess=preprocess)))
    expected = (labels.float().view(-1, 1, 1, 1) / 255 - 0.5) / 0.25
    assert torch.allclose(images, expected.expand_as(images), atol=1e-6)


def test_resume_mid_epoch_gives_the_same_remaining_batches_with_the_same_augmentation():
    dataset = build_dataset("digits")
    loader = build_loader(dataset, 64, train=True, augment=FULL, img_size=16, seed=1)
    loader.set_epoch(4)
    reference = [(x.clone(), y.clone()) for x, y in loader]
    assert reference[0][1].shape == (64, 10)  # soft targets
    stream = iter(loader)
    for _ in range(3):
        next(stream)
    state = loader.state_dict()
    assert (state["epoch"], state["batch"]) == (4, 3)
    fresh = build_loader(dataset, 64, train=True, augment=FULL, img_size=16, seed=1)
    fresh.load_state_dict(state)
    resumed = list(fresh)
    assert len(resumed) == len(reference) - 3
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(reference[3:], resumed, strict=True))
    assert fresh.state_dict()["batch"] == 0  # a finished epoch starts over


def test_state_from_another_layout_is_refused():
    loader = build_loader(indexed(), 8, train=True, augment=PLAIN)
    with pytest.raises(ValueError, match="batch_size=16.*same dataset, batch size and world size"):
        loader.load_state_dict({"epoch": 1, "batch": 2, "batch_size": 16, "world_size": 1, "num_samples": 50})
    with pytest.raises(ValueError, match="batch 9 but an epoch has 6"):
        loader.load_state_dict({"epoch": 1, "batch": 9})


def test_ranks_split_each_epoch_without_overlap():
    shards = [sum(indices_of(build_loader(indexed(), 4, train=True, augment=PLAIN, world_size=3, rank=r,
                                          drop_last=False)), []) for r in range(3)]
    assert [len(s) for s in shards] == [17, 17, 17]  # ceil(50 / 3), padded by wrapping
    everything = sum(shards, [])
    assert set(everything) == set(range(50)) and len(everything) - len(set(everything)) == 1
    evals = [sum(indices_of(build_loader(indexed(), 4, train=False, world_size=3, rank=r)), []) for r in range(3)]
    assert sorted(sum(evals, [])) == list(range(50))  # eval: every sample exactly once, no padding


def test_repeated_augmentation_sends_copies_to_different_ranks():
    orders = [epoch_order(40, seed=0, epoch=2, shuffle=True, world_size=3, rank=r, repeats=3) for r in range(3)]
    assert all(len(o) == 14 for o in orders)  # the epoch keeps ceil(40 / 3) samples per rank
    for index in set(np.concatenate(orders).tolist()):
        holders = [r for r in range(3) if index in orders[r]]
        assert len(holders) == len(set(holders)) and all(list(orders[r]).count(index) == 1 for r in holders)
    single = epoch_order(40, seed=0, epoch=2, shuffle=True, repeats=3)
    assert len(single) == 40 and all(len(set(single[i:i + 3])) == 1 for i in range(0, 39, 3))
    loader = build_loader(indexed(), 6, train=True, augment=AugmentConfig(repeated_aug=3), img_size=8)
    x, y = next(iter(loader))
    assert y[0] == y[1] == y[2] and not torch.equal(x[0], x[1])  # same image, different augmentations


def test_grayscale_repeats_to_three_channels_on_request():
    dataset = build_dataset("digits", "test")
    images, labels = next(iter(build_loader(dataset, 32, train=False, img_size=32, in_chans=3)))
    assert images.shape == (32, 3, 32, 32) and labels.dtype == torch.int64
    assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 0], images[:, 2])
    rgb = indexed()
    with pytest.raises(ValueError, match="in_chans=1 but the images have 3 channels"):
        next(iter(build_loader(rgb, 8, train=False, in_chans=1)))


def test_full_recipe_batches_are_finite_and_normalised():
    dataset = build_dataset("digits")
    for augment in (FULL, AugmentConfig(three_augment=True, crop="rrc", re_prob=0.5, re_mode="rand")):
        images, targets = next(iter(build_loader(dataset, 128, train=True, augment=augment, img_size=32)))
        assert images.shape == (128, 1, 32, 32) and torch.isfinite(images).all()
        assert -1.5 < images.mean() < 1.5 and 0.3 < images.std() < 2.0


def test_augment_config_errors_name_the_key():
    with pytest.raises(ValueError, match="unknown config key 'augment.mixup_alfa'.*mixup_alpha"):
        AugmentConfig.from_dict({"mixup_alfa": 0.8})
    assert AugmentConfig.from_dict({"scale": [0.5, 1.0], "hflip": 0}).scale == (0.5, 1.0)
    for bad, message in (({"crop": "random"}, "augment.crop"), ({"hflip": 2}, "augment.hflip"),
                         ({"scale": [0.9, 0.1]}, "augment.scale"), ({"crop_pct": 0}, "augment.crop_pct"),
                         ({"three_augment": True, "auto_augment": "rand"}, "only one")):
        with pytest.raises(ValueError, match=message):
            AugmentConfig.from_dict(bad)
    assert AugmentConfig().crop_mode((32, 32)) == "pad" and AugmentConfig().crop_mode(None) == "rrc"
    assert AugmentConfig(three_augment=True).jitter == 0.3 and AugmentConfig().jitter == 0.0
