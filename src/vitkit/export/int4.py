"""Weight-only int4: the blocks' linear weights stored as 4-bit integers in groups along the input channels, each
group with its own scale and zero point; activations stay in floating point.

A weight takes an eighth of its fp32 bytes (plus a scale and a zero per group), so this is the smallest vitkit
model; whether it is faster depends on whether moving the weights or multiplying dominates. The matmul is PyTorch's
own CPU kernel for 4-bit packed weights (torch._weight_int4pack_mm_for_cpu, the one torchao builds on); torchao 0.18
itself offers no CPU path for int4 weights (its formats need CUDA or the mslk package), so there is no library to
compare it with here. That kernel is vectorised for bf16 activations: with fp32 activations it measured 50x slower
than an fp32 matmul, so activations are rounded to bf16 for the multiply and the result is returned in the input's
dtype.
"""
from __future__ import annotations

import torch
from torch import nn

from ..models.vision_transformer import VisionTransformer
from .quantize import swap_block_linears

GROUP_SIZES = (32, 64, 128, 256)  # what the kernel accepts
INT4_MAX = 15


class Int4Linear(nn.Module):
    """A frozen nn.Linear with 4-bit weights: w ~ q * scale + low per group of `group_size` input channels, q in
    0..15 (asymmetric min-max rounding, the format of the tinygemm kernels it runs on)."""

    def __init__(self, linear: nn.Linear, group_size: int = 32) -> None:
        super().__init__()
        out_features, in_features = linear.weight.shape
        check_int4_shape(out_features, in_features, group_size)
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        q, scale, low = int4_grid(linear.weight.detach().float(), group_size)
        self.register_buffer("weight", torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1))  # [out, in / 2]
        # the kernel's convention: w = (q - 8) * scale + zero, one (scale, zero) per [group, output channel]
        zero = low + 8 * scale
        self.register_buffer("scale_zero", torch.stack([scale, zero], dim=-1).transpose(0, 1)
                             .contiguous().to(torch.bfloat16))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).to(torch.bfloat16).contiguous()
        out = torch.ops.aten._weight_int4pack_mm_for_cpu(rows, self.weight, self.group_size, self.scale_zero)
        out = out.float() if self.bias is None else torch.add(self.bias, out)
        return out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, group_size={self.group_size}, "
                f"bias={self.bias is not None}")


def int4_grid(weight: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Min-max rounding of [out, in] weights onto 16 levels per group: q [out, in] int32; scale, low [out, groups]."""
    out_features, in_features = weight.shape
    groups = weight.reshape(out_features, in_features // group_size, group_size)
    low, high = groups.amin(dim=-1), groups.amax(dim=-1)
    scale = ((high - low) / INT4_MAX).clamp(min=1e-12)
    q = ((groups - low[..., None]) / scale[..., None]).round().clamp(0, INT4_MAX).to(torch.int32)
    return q.reshape(out_features, in_features), scale, low


def check_int4_shape(out_features: int, in_features: int, group_size: int) -> None:
    """The kernel's limits, as an error that names them (a pruned model may need round_to=32 to meet them)."""
    if group_size not in GROUP_SIZES:
        raise ValueError(f"int4 group_size must be one of {GROUP_SIZES}, got {group_size}")
    if in_features % group_size or out_features % 16:
        raise ValueError(f"a linear layer {in_features} -> {out_features} does not fit int4 weights: the inputs "
                         f"must split into groups of {group_size} and the outputs into multiples of 16; choose "
                         "another group_size, or prune with round_to=32")


def is_int4(model: nn.Module) -> bool:
    """Whether quantize_int4 has rewritten this model."""
    return any(isinstance(module, Int4Linear) for module in model.modules())


def quantize_int4(model: nn.Module, group_size: int = 32) -> nn.Module:
    """Swaps every linear layer inside the transformer blocks for an Int4Linear, in place, for CPU inference only
    (the patch embedding and head stay in float). Every layer's shape is checked before any is swapped."""
    if not isinstance(model, VisionTransformer):
        raise TypeError(f"quantize_int4 expects a vitkit VisionTransformer, got {type(model).__name__}")
    for name, module in model.blocks.named_modules():
        if isinstance(module, nn.Linear):
            try:
                check_int4_shape(module.out_features, module.in_features, group_size)
            except ValueError as error:
                raise ValueError(f"blocks.{name}: {error}") from None
    model.eval()
    return swap_block_linears(model, lambda linear: Int4Linear(linear, group_size))
