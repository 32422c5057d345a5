"""Evaluating a model on a loader: what training's evaluations and `vitkit eval` both report, computed one way."""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: Iterable, num_classes: int, device: torch.device,
             autocast_dtype: torch.dtype | None = None,
             reduce: Callable[[torch.Tensor], torch.Tensor] | None = None, pad_batches: int = 0) -> dict[str, Any]:
    """Top-1/top-5, loss, per-class accuracy and confusion in one pass in eval mode (integer labels only).

    `reduce` sums the counts over processes in place (data parallel); `pad_batches` extra forwards on a dummy image
    keep a sharded model's collective forwards in step with ranks that have more batches.
    """
    was_training = model.training
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.float64, device=device)
    sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss sum, top-5 hits
    autocast = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext())
    for images, labels in loader:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with autocast:
            logits = model(images)
        logits = logits.float()
        sums[0] += F.cross_entropy(logits, labels, reduction="sum")
        top5 = logits.topk(min(5, num_classes), dim=-1).indices
        sums[1] += (top5 == labels[:, None]).any(dim=1).sum()
        confusion.index_put_((labels, logits.argmax(-1)), torch.ones_like(labels, dtype=torch.float64),
                             accumulate=True)
    for _ in range(pad_batches):
        with autocast:
            model(torch.zeros(1, model.cfg.in_chans, *model.cfg.img_size, device=device))
    if reduce is not None:
        reduce(confusion)
        reduce(sums)
    model.train(was_training)
    total = confusion.sum().clamp(min=1)
    per_class = (confusion.diag() / confusion.sum(1).clamp(min=1)).tolist()
    return {"top1": (confusion.diag().sum() / total).item() * 100, "top5": (sums[1] / total).item() * 100,
            "loss": (sums[0] / total).item(), "per_class": [100 * a for a in per_class],
            "confusion": confusion.long().cpu().tolist(), "count": int(total.item())}
