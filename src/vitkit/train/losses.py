"""Classification losses for hard labels and for the soft targets that mixup/cutmix produce."""
from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("ce", "bce")


def classification_loss(logits: torch.Tensor, targets: torch.Tensor, kind: str = "ce",
                        label_smoothing: float = 0.0) -> torch.Tensor:
    """'ce': cross-entropy; 'bce': DeiT III / ViT-5 binary cross-entropy. Hard labels and mixup's soft targets are
    smoothed alike, (1 - s) * target + s / classes: smoothing is affine, so smoothing mixed targets equals mixing
    smoothed ones."""
    num_classes = logits.shape[-1]
    logits = logits.float()
    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r}; choose one of {LOSSES}")
    if kind == "ce" and not targets.dtype.is_floating_point:
        return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
    if not targets.dtype.is_floating_point:
        targets = F.one_hot(targets, num_classes).float()
    if label_smoothing:
        targets = targets.float() * (1.0 - label_smoothing) + label_smoothing / num_classes
    if kind == "ce":
        return torch.sum(-targets * F.log_softmax(logits, dim=-1), dim=-1).mean()
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / logits.shape[0]
