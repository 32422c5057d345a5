"""Classification losses for hard labels and for the soft targets that mixup/cutmix produce."""
from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("ce", "bce")


def classification_loss(logits: torch.Tensor, targets: torch.Tensor, kind: str = "ce",
                        label_smoothing: float = 0.0) -> torch.Tensor:
    """'ce': cross-entropy (soft targets or label-smoothed hard labels); 'bce': DeiT III / ViT-5 binary cross-entropy."""
    num_classes = logits.shape[-1]
    logits = logits.float()
    if kind == "ce":
        if targets.dtype.is_floating_point:
            return torch.sum(-targets * F.log_softmax(logits, dim=-1), dim=-1).mean()
        return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
    if kind == "bce":
        if not targets.dtype.is_floating_point:
            off = label_smoothing / num_classes
            targets = torch.full_like(logits, off).scatter_(1, targets[:, None], 1.0 - label_smoothing + off)
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / logits.shape[0]
    raise ValueError(f"unknown loss {kind!r}; choose one of {LOSSES}")
