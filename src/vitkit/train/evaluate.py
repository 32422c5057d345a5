"""Top-1/top-5, loss, per-class accuracy and the confusion matrix of a model on a loader (summed over ranks)."""
from __future__ import annotations

import contextlib
from typing import Any, Iterable

import torch
import torch.nn.functional as F

from .distributed import DistContext, all_reduce_sum, is_sharded


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: Iterable, num_classes: int, device: torch.device,
             autocast_dtype: torch.dtype | None = None, ctx: DistContext = DistContext()) -> dict[str, Any]:
    """One pass over loader in eval mode; integer labels are required (evaluation never mixes images)."""
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
    if is_sharded(model):  # FSDP2 forwards are collective: a rank with fewer batches joins the others' last ones
        for _ in range(batches_behind(len(loader), device)):
            with autocast:
                model(torch.zeros(1, model.cfg.in_chans, *model.cfg.img_size, device=device))
    all_reduce_sum(confusion, ctx)
    all_reduce_sum(sums, ctx)
    model.train(was_training)
    total = confusion.sum().clamp(min=1)
    per_class = (confusion.diag() / confusion.sum(1).clamp(min=1)).tolist()
    return {"top1": (confusion.diag().sum() / total).item() * 100, "top5": (sums[1] / total).item() * 100,
            "loss": (sums[0] / total).item(), "per_class": [100 * a for a in per_class],
            "confusion": confusion.long().cpu().tolist(), "count": int(total.item())}


def batches_behind(batches: int, device: torch.device) -> int:
    """How many batches fewer this rank has than the rank with the most."""
    most = torch.tensor([batches], device=device)
    torch.distributed.all_reduce(most, op=torch.distributed.ReduceOp.MAX)
    return int(most.item()) - batches
