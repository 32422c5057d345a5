"""Evaluation during training: vitkit.evaluation's passes (classification, segmentation), with counts summed over
ranks."""
from __future__ import annotations

import functools
from typing import Any, Callable, Iterable

import torch

from ..evaluation import evaluate as evaluate_model
from .distributed import DistContext, all_reduce_sum, is_sharded


def evaluate(model: torch.nn.Module, loader: Iterable, num_classes: int, device: torch.device,
             autocast_dtype: torch.dtype | None = None, ctx: DistContext = DistContext(),
             score: Callable[..., dict[str, Any]] = evaluate_model, **options: Any) -> dict[str, Any]:
    """The whole test set's scores on every rank, as one process with all the data would measure them; `score` is
    the single-process pass (vitkit.evaluation's evaluate or evaluate_segmentation, with its `options`)."""
    behind = batches_behind(len(loader), device) if is_sharded(model) else 0
    return score(model, loader, num_classes, device, autocast_dtype, functools.partial(all_reduce_sum, ctx=ctx),
                 behind, **options)


def batches_behind(batches: int, device: torch.device) -> int:
    """How many batches fewer this rank has than the rank with the most (FSDP2 forwards are collective)."""
    most = torch.tensor([batches], device=device)
    torch.distributed.all_reduce(most, op=torch.distributed.ReduceOp.MAX)
    return int(most.item()) - batches
