"""Which samples each rank sees in an epoch: a pure function of (seed, epoch, world size, rank), so resuming
and re-running give the same order, and ranks never overlap within an epoch."""
from __future__ import annotations

import math

import numpy as np


def epoch_order(num_samples: int, *, seed: int, epoch: int, shuffle: bool, world_size: int = 1, rank: int = 0,
                repeats: int = 1) -> np.ndarray:
    """This rank's sample indices for one epoch.

    Training (shuffle=True) pads the permutation by wrapping so every rank gets ceil(N / world_size) samples,
    as DistributedSampler does. With repeats > 1 (repeated augmentation, DeiT) each index appears `repeats`
    times in a row before the ranks deal it out, so its copies land on different ranks; the epoch keeps its
    length of ceil(N / world_size) per rank. Evaluation (shuffle=False) deals indices out without padding.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world size {world_size}")
    if not shuffle:
        return np.arange(rank, num_samples, world_size)
    order = np.random.default_rng([seed, epoch]).permutation(num_samples)
    per_rank = math.ceil(num_samples / world_size)
    order = np.repeat(order, repeats)
    total = per_rank * world_size
    if len(order) < total:
        order = np.resize(order, total)
    return order[rank:total:world_size][:per_rank]


def sample_seeds(count: int, *, seed: int, epoch: int, rank: int) -> np.ndarray:
    """One seed per position in the epoch, for per-image randomness that does not depend on worker count."""
    return np.random.default_rng([seed, epoch, rank, 1]).integers(0, 2**62, count)


def batch_rng(seed: int, epoch: int, rank: int, batch: int) -> np.random.Generator:
    """The generator behind every random choice made for one batch."""
    return np.random.default_rng([seed, epoch, rank, batch, 2])
