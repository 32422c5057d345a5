"""Evaluating a model on a loader: what training's evaluations and `vitkit eval` both report, computed one way
(classification: top-1/top-5 and confusion; segmentation: mIoU, pixel accuracy and pixel confusion)."""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterable, Iterator

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
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.float64, device=device)
    sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss sum, top-5 hits
    for logits, labels in eval_batches(model, loader, device, autocast_dtype, pad_batches):
        sums[0] += F.cross_entropy(logits, labels, reduction="sum")
        top5 = logits.topk(min(5, num_classes), dim=-1).indices
        sums[1] += (top5 == labels[:, None]).any(dim=1).sum()
        confusion.index_put_((labels, logits.argmax(-1)), torch.ones_like(labels, dtype=torch.float64),
                             accumulate=True)
    if reduce is not None:
        reduce(confusion)
        reduce(sums)
    total = confusion.sum().clamp(min=1)
    per_class = (confusion.diag() / confusion.sum(1).clamp(min=1)).tolist()
    return {"top1": (confusion.diag().sum() / total).item() * 100, "top5": (sums[1] / total).item() * 100,
            "loss": (sums[0] / total).item(), "per_class": [100 * a for a in per_class],
            "confusion": confusion.long().cpu().tolist(), "count": int(total.item())}


def eval_batches(model: torch.nn.Module, loader: Iterable, device: torch.device, autocast_dtype: torch.dtype | None,
                 pad_batches: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Each batch's float32 logits and targets on `device`, the model in eval mode (its mode restored after), then
    the `pad_batches` dummy forwards."""
    was_training = model.training
    model.eval()
    autocast = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext())
    try:
        for images, targets in loader:
            images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            with autocast:
                logits = model(images)
            yield logits.float(), targets
        for _ in range(pad_batches):
            with autocast:
                model(torch.zeros(1, *model.cfg.input_size, device=device))
    finally:
        model.train(was_training)


def pixel_confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                    ignore_index: int = 255) -> torch.Tensor:
    """[truth, prediction] pixel counts (int64) of label maps of any shape; pixels whose truth is `ignore_index`
    do not count, so the counts of many batches simply add up."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and truth {tuple(target.shape)} must be the same shape")
    keep = target != ignore_index
    pred, target = pred[keep].long(), target[keep].long()
    bad = (target < 0) | (target >= num_classes) | (pred < 0) | (pred >= num_classes)
    if bad.any():
        raise ValueError(f"labels outside 0..{num_classes - 1} (and not ignore_index={ignore_index}): "
                         f"{sorted(set(torch.cat([target[bad], pred[bad]]).tolist()))[:10]}")
    return torch.bincount(target * num_classes + pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def iou_per_class(confusion: torch.Tensor) -> torch.Tensor:
    """Intersection over union of each class; NaN for a class absent from both truth and prediction."""
    confusion = confusion.double()
    union = confusion.sum(0) + confusion.sum(1) - confusion.diag()
    return torch.where(union > 0, confusion.diag() / union.clamp(min=1), torch.full_like(union, float("nan")))


def mean_iou(confusion: torch.Tensor) -> float:
    """Mean IoU over the classes present in truth or prediction: classes absent from both are excluded from the
    mean (NaN IoU, as mmseg's nanmean), so a small evaluation set is not penalised for classes it never shows."""
    ious = iou_per_class(confusion)
    present = ~ious.isnan()
    return ious[present].mean().item() if present.any() else float("nan")


def pixel_accuracy(confusion: torch.Tensor) -> float:
    """Share of counted (non-ignored) pixels labelled correctly."""
    total = confusion.sum()
    return (confusion.diag().sum().double() / total).item() if total > 0 else float("nan")


@torch.no_grad()
def evaluate_segmentation(model: torch.nn.Module, loader: Iterable, num_classes: int, device: torch.device,
                          autocast_dtype: torch.dtype | None = None,
                          reduce: Callable[[torch.Tensor], torch.Tensor] | None = None, pad_batches: int = 0,
                          ignore_index: int = 255) -> dict[str, Any]:
    """mIoU, per-class IoU (None for a class absent from truth and prediction) and pixel accuracy, in %, the mean
    pixel cross-entropy and the [truth, prediction] pixel confusion over (images, masks) batches, in one pass in eval
    mode; `reduce` and `pad_batches` as in evaluate."""
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.float64, device=device)
    loss_sum = torch.zeros(1, dtype=torch.float64, device=device)
    for logits, masks in eval_batches(model, loader, device, autocast_dtype, pad_batches):
        loss_sum += F.cross_entropy(logits, masks, ignore_index=ignore_index, reduction="sum")
        confusion += pixel_confusion(logits.argmax(1), masks, num_classes, ignore_index).to(confusion)
    if reduce is not None:
        reduce(confusion)
        reduce(loss_sum)
    pixels = confusion.sum().clamp(min=1)
    return {"miou": 100 * mean_iou(confusion), "pixel_accuracy": 100 * pixel_accuracy(confusion),
            "loss": (loss_sum / pixels).item(),
            "per_class_iou": [None if iou != iou else iou for iou in (100 * iou_per_class(confusion)).tolist()],
            "confusion": confusion.long().cpu().tolist(), "count": int(pixels.item())}
