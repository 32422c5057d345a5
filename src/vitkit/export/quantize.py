"""Int8 inference: the transformer's linear layers multiply int8 activations by int8 weights into int32.

Weights are quantized once, symmetrically per output channel; activations per token at run time (dynamic
quantization). The patch embedding, norms, attention's softmax and the classifier head stay in floating point: the
head is a small share of the work, and quantizing it would put its rounding straight into the logits. The rest runs
in fp32, except attention's two matmuls, which run in bf16 where the hardware computes bf16 natively.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..hardware import has_native_bf16
from ..layers.mlp import PLAIN_ACTS, Mlp
from ..models.vision_transformer import VisionTransformer

INT8_MAX = 127
# The largest |act(h)| over h < 0 (float64 search, rounded up). Each activation here increases for h >= 0, so a row's
# largest |act(h)| is at most max(act(max h), this): fc2's input scale comes from fc1's output and the activation
# runs once (compiled, a measured scale made GELU compute its erf twice: once for the scale, once to quantize).
NEGATIVE_PEAK = {"gelu": 0.16998, "gelu_tanh": 0.17005, "silu": 0.27847, "relu": 0.0}


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

    def forward(self, x: torch.Tensor, absmax: torch.Tensor | None = None) -> torch.Tensor:
        """absmax: an upper bound on each row's largest |x| (one per token), when the caller knows a cheaper one."""
        rows = x.reshape(-1, self.in_features)
        absmax = rows.abs().amax(dim=1, keepdim=True) if absmax is None else absmax.reshape(-1, 1)
        x_scale = absmax.float().clamp(min=1e-12).div_(INT8_MAX)
        # clamped: a bound computed in bf16 can land a rounding step below the row's largest |x|
        x_int8 = torch.div(rows, x_scale).round_().clamp_(-INT8_MAX, INT8_MAX).to(torch.int8)
        out = torch.mul(torch._int_mm(x_int8, self.weight.t()), x_scale)  # int32 accumulators -> fp32
        out = out.mul_(self.weight_scale) if self.bias is None else torch.addcmul(self.bias, out, self.weight_scale)
        return out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Int8Mlp(nn.Module):
    """An inference-only Mlp with int8 fc1 and fc2, fc2's input scale bounded from fc1's row maxima (NEGATIVE_PEAK):
    ViT-S/16 1.06x the compiled model that measures the activations, logits as close to fp32."""

    def __init__(self, mlp: Mlp) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = Int8Linear(mlp.fc1), mlp.act, Int8Linear(mlp.fc2)
        self.negative_peak = negative_peak(mlp.act)
        if self.negative_peak is None:
            raise ValueError(f"Int8Mlp bounds fc2's input only for {sorted(NEGATIVE_PEAK)}, not {mlp.act}; "
                             "quantize_int8 gives such an MLP two Int8Linear layers that measure their input")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.fc1(x)
        absmax = self.act(hidden.amax(dim=-1, keepdim=True)).clamp(min=self.negative_peak)
        return self.fc2(self.act(hidden), absmax)


def negative_peak(act: nn.Module) -> float | None:
    """NEGATIVE_PEAK for an activation module, read from the module itself (None when it has no known bound), so a
    model whose activation was swapped after it was built still gets the right bound."""
    return _PEAK_BY_KIND.get(_activation_kind(act))


def _activation_kind(act: nn.Module) -> tuple[type, str | None]:
    return type(act), getattr(act, "approximate", None)


_PEAK_BY_KIND = {_activation_kind(PLAIN_ACTS[name]()): peak for name, peak in NEGATIVE_PEAK.items()}


def _bounded_mlp(module: nn.Module) -> bool:
    """An Mlp whose fc2 input is its activation's output (no norm between), with an activation in NEGATIVE_PEAK."""
    return isinstance(module, Mlp) and isinstance(module.norm, nn.Identity) and negative_peak(module.act) is not None


def is_int8(model: nn.Module) -> bool:
    """Whether quantize_int8 has rewritten this model (its state dict no longer fits a float model)."""
    return any(isinstance(module, Int8Linear) for module in model.modules())


def quantize_int8(model: nn.Module) -> nn.Module:
    """Swaps every linear layer inside the transformer blocks for an Int8Linear (plain MLPs for an Int8Mlp), in place,
    for inference only; on hardware with native bf16 (judged where the model is now) attention computes in bf16."""
    if not isinstance(model, VisionTransformer):
        raise TypeError(f"quantize_int8 expects a vitkit VisionTransformer, got {type(model).__name__}")
    model.eval()
    native = has_native_bf16(next(model.parameters()).device)
    model.set_attention_dtype(torch.bfloat16 if native else None)  # ViT-S/16: 1.07x in bf16, logit error unchanged
    for block in model.blocks:
        if _bounded_mlp(block.mlp):
            block.mlp = Int8Mlp(block.mlp)
    return swap_block_linears(model, Int8Linear)


def swap_block_linears(model: nn.Module, make: Callable[[nn.Linear], nn.Module]) -> nn.Module:
    """Replaces every nn.Linear inside the transformer blocks by make(linear), in place; the patch embedding and the
    heads stay in floating point (the head's rounding would go straight into the logits)."""
    for block in model.blocks:
        for name, child in list(block.named_modules()):
            if isinstance(child, nn.Linear):
                parent_name, _, attr = name.rpartition(".")
                setattr(block.get_submodule(parent_name) if parent_name else block, attr, make(child))
    return model


def compile_int8(model: nn.Module) -> nn.Module:
    """torch.compile for int8 inference: frozen weights, so inductor fuses the per-token rounding and the rescale around
    each matmul (max-autotune measured 0.92-1.10x this over five ViT-S/16 runs, for ~20 s more compiling: dropped)."""
    return torch.compile(model, options={"freezing": True})
