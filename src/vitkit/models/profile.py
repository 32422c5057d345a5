"""Parameter and FLOP counts, measured with torch.utils.flop_counter on the meta device (no memory, no compute)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .registry import create_model


def _sdpa_flops(q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
    """q @ k^T plus probs @ v: 2*B*H*N*M*(d_qk + d_v). CPU's fused kernel has no formula of its own in PyTorch."""
    batch, heads, queries, head_dim = q_shape
    keys, value_dim = k_shape[-2], v_shape[-1]
    return 2 * batch * heads * queries * keys * (head_dim + value_dim)


_CUSTOM_FLOPS = {}
if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
    _CUSTOM_FLOPS[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = _sdpa_flops


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, img_size: tuple[int, int], in_chans: int = 3, batch: int = 1) -> int:
    """FLOPs (2 per multiply-add) of one forward pass at img_size, attention matmuls included on every device."""
    device = next(model.parameters()).device
    x = torch.zeros(batch, in_chans, *img_size, device=device)
    with FlopCounterMode(display=False, custom_mapping=_CUSTOM_FLOPS) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()


@dataclass(frozen=True)
class ModelStats:
    name: str
    params: int
    gflops: float
    img_size: tuple[int, int]
    num_tokens: int


def model_stats(name: str, **overrides) -> ModelStats:
    """Params and GFLOPs of a preset at its native resolution, built on the meta device."""
    with torch.device("meta"):
        model = create_model(name, **overrides).eval()
    cfg = model.cfg
    flops = count_flops(model, cfg.img_size, cfg.in_chans)
    return ModelStats(name, count_params(model), flops / 1e9, cfg.img_size, cfg.num_tokens)
