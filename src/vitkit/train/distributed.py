"""torchrun integration: one process per device, DDP (gloo on CPU, NCCL on GPU) or FSDP2, rank 0 does the I/O."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_type: str) -> DistContext:
    """Joins the process group when launched by torchrun; a plain run is a world of one."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistContext()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    return DistContext(world_size, dist.get_rank(), local_rank)


def wrap_model(model: nn.Module, ctx: DistContext, mode: str, device: torch.device) -> nn.Module:
    """DDP replicates the model; FSDP2 (fully_shard) shards each block and the root for models too big for one device."""
    if not ctx.enabled:
        return model
    if mode == "ddp":
        return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if mode == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in model.blocks:
            fully_shard(block)
        return fully_shard(model)
    raise ValueError(f"unknown distributed mode {mode!r}; choose 'ddp' or 'fsdp'")


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sums a tensor over ranks in place (no-op for a single process)."""
    if ctx.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor
