"""scikit-learn's 1,797 real 8x8 handwritten digits: the dataset that needs no download."""
from __future__ import annotations

import numpy as np
import torch

from .base import TensorImageDataset, channel_stats

TEST_FRACTION = 0.2


def load_digits(split: str, seed: int = 0) -> TensorImageDataset:
    """A stratified 80/20 train/test split fixed by `seed`; 0-16 intensities scaled to 0-255."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_digits()
    pixels = np.rint(bunch.images * (255 / 16)).astype(np.uint8)[:, None]
    train_idx, test_idx = train_test_split(np.arange(len(pixels)), test_size=TEST_FRACTION, random_state=seed,
                                           stratify=bunch.target)
    train_images = torch.from_numpy(pixels[np.sort(train_idx)])
    mean, std = channel_stats(train_images)
    picked = np.sort(train_idx if split == "train" else test_idx)
    return TensorImageDataset(torch.from_numpy(pixels[picked]), torch.from_numpy(bunch.target[picked]),
                              [str(c) for c in bunch.target_names], mean, std, name=f"digits/{split}")
