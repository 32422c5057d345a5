"""Mixup and CutMix on whole batches: each image is mixed with its mirror in the batch (image i with B-1-i),
and targets become class distributions weighted by the share of each image actually kept (the loss smooths them)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from . import ops
from .config import AugmentConfig


def sample_mix(cfg: AugmentConfig, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample mixing weight lam (share of the image kept) and cutmix flag; 'batch' mode shares one draw."""
    draws = 1 if cfg.mixup_mode == "batch" else count
    active = rng.random(draws) < cfg.mixup_prob
    if cfg.mixup_alpha > 0 and cfg.cutmix_alpha > 0:
        cut = rng.random(draws) < cfg.mixup_switch_prob
    else:
        cut = np.full(draws, cfg.cutmix_alpha > 0)
    alpha = np.where(cut, cfg.cutmix_alpha, cfg.mixup_alpha)
    lam = np.where(active, rng.beta(np.maximum(alpha, 1e-12), np.maximum(alpha, 1e-12)), 1.0)
    return np.broadcast_to(lam, count).copy(), np.broadcast_to(cut & active, count).copy()


def cutmix_boxes(lam: np.ndarray, height: int, width: int, rng: np.random.Generator,
                 shared: bool) -> np.ndarray:
    """Boxes (top, left, h, w) of side sqrt(1 - lam) centred uniformly at random, clipped to the image."""
    cut_h = (height * np.sqrt(1 - lam)).astype(np.int64)
    cut_w = (width * np.sqrt(1 - lam)).astype(np.int64)
    draws = 1 if shared else len(lam)
    cy, cx = rng.integers(0, height, draws), rng.integers(0, width, draws)
    top, bottom = np.clip(cy - cut_h // 2, 0, height), np.clip(cy + cut_h // 2, 0, height)
    left, right = np.clip(cx - cut_w // 2, 0, width), np.clip(cx + cut_w // 2, 0, width)
    return np.stack([top, left, bottom - top, right - left], 1)


def mix_batch(images: torch.Tensor, labels: torch.Tensor, num_classes: int, cfg: AugmentConfig,
              rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup/CutMix per cfg; returns mixed images and soft targets [B, num_classes] (rows sum to 1)."""
    count, height, width = images.shape[0], images.shape[-2], images.shape[-1]
    lam, cut = sample_mix(cfg, rng, count)
    partner = images.flip(0)
    if cut.any():
        boxes = cutmix_boxes(lam, height, width, rng, shared=cfg.mixup_mode == "batch")
        boxes[~cut] = 0
        lam = np.where(cut, 1 - boxes[:, 2] * boxes[:, 3] / (height * width), lam)
        pasted = torch.where(ops.box_mask(boxes, (height, width), images.device), partner, images)
    else:
        pasted = images
    weight = ops.as_tensor(np.where(cut, 1.0, lam), images).view(-1, 1, 1, 1)
    mixed = pasted * weight + partner * (1 - weight)
    lam_t = ops.as_tensor(lam, images)[:, None]
    targets = F.one_hot(labels, num_classes).to(images.dtype)  # the loss smooths them, as it smooths hard labels
    return mixed, lam_t * targets + (1 - lam_t) * targets.flip(0)
