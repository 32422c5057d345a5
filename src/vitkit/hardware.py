"""What the hardware computes natively, for the defaults that depend on it (training precision, int8 attention)."""
from __future__ import annotations

import torch


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX tiles); torch exposes it only privately."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def has_native_bf16(device: torch.device) -> bool:
    """bf16 matmuls run natively here (not emulated, which is slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_bf16()
