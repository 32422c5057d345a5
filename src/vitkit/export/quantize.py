"""Int8 inference: the transformer's linear layers multiply int8 activations by int8 weights into int32.

Weights are quantized once, symmetrically per output channel; activations per token at run time (dynamic
quantization). The patch embedding, norms, attention's softmax and the classifier head stay in floating point: the
head is a small share of the work, and quantizing it would put its rounding straight into the logits. The rest runs
in fp32, except attention's two matmuls, which run in bf16 where the hardware computes bf16 natively.
"""
from __future__ import annotations

import torch
from torch import nn

from ..hardware import has_native_bf16

INT8_MAX = 127


class Int8Linear(nn.Module):
    """A frozen nn.Linear whose matmul runs in int8 (torch._int_mm: VNNI / AMX on x86, int8 tensor cores on GPU)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / INT8_MAX
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight", (weight / scale[:, None]).round().to(torch.int8))  # [out, in]: faster for _int_mm
        self.register_buffer("weight_scale", scale)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        x_scale = rows.abs().amax(dim=1, keepdim=True).float().clamp_(min=1e-12).div_(INT8_MAX)
        x_int8 = torch.div(rows, x_scale).round_().to(torch.int8)
        out = torch.mul(torch._int_mm(x_int8, self.weight.t()), x_scale)  # int32 accumulators -> fp32
        out = out.mul_(self.weight_scale) if self.bias is None else torch.addcmul(self.bias, out, self.weight_scale)
        return out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def is_int8(model: nn.Module) -> bool:
    """Whether quantize_int8 has rewritten this model (its state dict no longer fits a float model)."""
    return any(isinstance(module, Int8Linear) for module in model.modules())


def quantize_int8(model: nn.Module) -> nn.Module:
    """Swaps every linear layer inside the transformer blocks for an Int8Linear, in place, for inference only; on
    hardware with native bf16 (judged where the model is now) attention computes in bf16."""
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise TypeError(f"quantize_int8 expects a vitkit VisionTransformer (with .blocks), got {type(model).__name__}")
    model.eval()
    attn_dtype = torch.bfloat16 if has_native_bf16(next(model.parameters()).device) else None
    for block in blocks:
        block.attn.compute_dtype = attn_dtype  # ViT-S/16: 1.07x with bf16 attention, logit error unchanged
        for name, child in list(block.named_modules()):
            if isinstance(child, nn.Linear):
                parent_name, _, attr = name.rpartition(".")
                setattr(block.get_submodule(parent_name) if parent_name else block, attr, Int8Linear(child))
    return model


def compile_int8(model: nn.Module) -> nn.Module:
    """torch.compile for int8 inference on CPU: frozen weights (inductor fuses the per-token rounding and the rescale
    around each matmul) and max-autotune (ViT-S/16: 0.92-1.10x the frozen compile over five runs, ~20 s more
    compiling; in bf16 it found nothing)."""
    return torch.compile(model, options={"freezing": True, "max_autotune": True})
