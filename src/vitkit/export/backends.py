"""One entry to the fastest inference path: optimize_for_inference picks a backend (PyTorch or ONNX Runtime, fp32,
bf16 or int8) from a table of what was measured on each CPU class, lossless unless int8 is allowed."""
from __future__ import annotations

import copy
import functools
import json
import os
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Sequence

import torch
from torch import nn

from ..hardware import CpuKernels, cpu_kernels, user_cache_dir
from ..models.family import DEFAULT_FAMILY, get_family
from ..preprocess import Preprocess
from .int4 import quantize_int4
from .ort import INSTALL_HINT, onnx_file, ort_available, ort_runner, ort_session, require_ort, session_runner
from .quantize import compile_int8, quantize_int8

BACKENDS = ("torch-fp32", "torch-bf16", "torch-int8", "torch-int4", "ort-fp32", "ort-int8")
LOSSLESS = ("torch-fp32", "ort-fp32")  # the logits of the fp32 model to float rounding; the others round weights


# Images/s as a multiple of torch-fp32's, ViT-S/16 at batch 8 on 2 threads, alternating repeats (`vitkit bench
# vit_small_patch16_224 --batch 8 --threads 2 --backend ...`); auto picks the fastest allowed. A backend a row leaves
# out was not timed there. The runs are in docs/export.md.
RANKINGS: dict[str, tuple[dict[str, float], str]] = {
    "x86 AVX-512 + VNNI + BF16": (
        {"torch-int8": 2.65, "ort-int8": 2.28, "torch-bf16": 1.94, "ort-fp32": 1.21, "torch-fp32": 1.0},
        "measured on AMD EPYC with avx512_vnni and avx512_bf16, no AMX"),
    "x86 AVX2": (
        {"ort-int8": 2.0, "ort-fp32": 1.39, "torch-fp32": 1.0, "torch-int8": 0.05},  # torch-fp32 7.8-8.8 img/s: 8.3
        "measured on AMD EPYC with AVX2, no VNNI or bf16"),
}
UNMEASURED = ({"torch-fp32": 1.0}, "not measured, so the conservative default")
_warned: set[str] = set()


def pick_backend(candidates: Sequence[str], kernels: CpuKernels) -> tuple[str, str]:
    """The candidate measured fastest on this CPU's class (torch-fp32 where none was timed), and why in words."""
    kind = kernels.cpu_class
    speedups, measured = RANKINGS.get(kind, UNMEASURED)
    chosen = max((name for name in speedups if name in candidates), key=speedups.__getitem__, default="torch-fp32")
    return chosen, f"{speedups.get(chosen, 1.0):.2f}x torch-fp32 on CPU class {kind}, {measured}"


class InferenceBackend:
    """A model behind one backend: normalised images in, logits out (float32), with the model's cfg, preprocess and
    class names, so vitkit's predict and evaluation take it as they take the model."""

    training = False

    def __init__(self, name: str, reason: str, run: Callable[[torch.Tensor], torch.Tensor], model: nn.Module) -> None:
        self.name, self.reason, self._run = name, reason, run
        self.cfg, self.preprocess, self.class_names = model.cfg, model.preprocess, model.class_names

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self._run(images)

    def describe(self) -> str:
        """One line: which backend runs the model, and why."""
        return f"{self.name} ({self.reason})"

    def eval(self) -> InferenceBackend:
        """A no-op: vitkit.evaluation switches a model to eval mode and back around its pass."""
        return self

    def train(self, mode: bool = True) -> InferenceBackend:
        """Refuses training mode: a backend's weights are exported, quantized or compiled copies."""
        if mode:
            raise ValueError(f"the {self.name} backend only runs inference; train the model itself")
        return self

    def __repr__(self) -> str:
        return f"InferenceBackend({self.describe()})"


def optimize_for_inference(model: nn.Module, example_batch: torch.Tensor, allow_int8: bool = False,
                           backend: str = "auto", cache_dir: str | os.PathLike | None = None,
                           spin_wait: bool = True) -> InferenceBackend:
    """The fastest measured way to run a float model here, called like the model (one warm-up call on
    example_batch; the model is put in eval mode); lossless (torch-fp32, ort-fp32) unless allow_int8. ONNX files are
    kept in cache_dir (default: the user's cache), keyed by the model's content. spin_wait=False for a server: see
    ort_session."""
    kernels = cpu_kernels()
    if backend == "auto":
        name, reason = _auto(allow_int8, example_batch.device, kernels)
    elif backend in BACKENDS:
        name, reason = backend, "asked for by name"
        _warn_if_slow(name, example_batch.device, kernels)
    else:
        raise ValueError(f"unknown backend {backend!r}; choose auto or one of {', '.join(BACKENDS)}")
    model.eval()
    build = functools.partial(BUILDERS[name], spin_wait=spin_wait) if name.startswith("ort-") else BUILDERS[name]
    run = build(model, Path(cache_dir) if cache_dir is not None else user_cache_dir() / "onnx", kernels)
    inference = InferenceBackend(name, reason, run, model)
    if name == "torch-int8" and example_batch.shape[0] > 1:
        example_batch = example_batch.clone()
        torch._dynamo.mark_dynamic(example_batch, 0)  # compiled once for every batch size, not again per new size
    inference(example_batch)
    return inference


def onnx_backend(path: str | os.PathLike, threads: int | None = None, spin_wait: bool = True) -> InferenceBackend:
    """A file written by export_onnx (`vitkit export`) under onnxruntime, described by the config, preprocessing and
    class names in its metadata: inference with no torch model behind it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such ONNX file; write one with `vitkit export CHECKPOINT {path}`")
    require_ort("ort-file")
    session = ort_session(path, threads or torch.get_num_threads(), spin_wait)
    metadata = session.get_modelmeta().custom_metadata_map
    if "vitkit_config" not in metadata:
        raise ValueError(f"{path} carries no vitkit metadata (config, preprocessing, class names): give a file written "
                         "by `vitkit export`, or the checkpoint itself")
    family = get_family(metadata.get("vitkit_family", DEFAULT_FAMILY))  # files exported before it was recorded: ViTs
    described = SimpleNamespace(cfg=family.config_class.from_dict(json.loads(metadata["vitkit_config"])),
                                preprocess=Preprocess.from_dict(json.loads(metadata["vitkit_preprocess"])),
                                class_names=json.loads(metadata.get("vitkit_class_names", "[]")) or None)
    return InferenceBackend("ort-file", f"the ONNX file {path.name} under onnxruntime", session_runner(session),
                            described)


def _auto(allow_int8: bool, device: torch.device, kernels: CpuKernels) -> tuple[str, str]:
    """pick_backend over what may run: lossless unless int8 is allowed, ORT only on the CPU and when installed."""
    if device.type != "cpu":
        return "torch-fp32", f"auto on {device.type}: the backend table covers CPUs only"
    candidates = BACKENDS if allow_int8 else LOSSLESS
    installed = ort_available()
    if not installed:
        candidates = tuple(name for name in candidates if not name.startswith("ort-"))
    name, reason = pick_backend(candidates, kernels)
    note = "" if installed else f"; no ort-* backend without onnxruntime: {INSTALL_HINT}"
    return name, f"auto, {'int8 allowed' if allow_int8 else 'lossless'}: {reason}{note}"


def _warn_if_slow(name: str, device: torch.device, kernels: CpuKernels) -> None:
    """Warns once per backend forced onto a CPU without the instructions it needs."""
    missing = kernels.missing_for(name.split("-")[1]) if name.startswith("torch-") else None
    if device.type == "cpu" and missing and name not in _warned:
        _warned.add(name)
        warnings.warn(f"{name} forced on a CPU without {missing} ({kernels.cpu_class}): it runs, but emulated or on "
                      "slow kernels (often slower than torch-fp32); backend='auto' picks the measured fastest",
                      stacklevel=3)


def _torch_runner(model: nn.Module, dtype: torch.dtype) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(images.to(dtype)).float()
    return run


def _torch_fp32(model: nn.Module, cache_dir: Path, kernels: CpuKernels) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model as it is (a copy only when it is not fp32)."""
    fp32 = all(p.dtype == torch.float32 for p in model.parameters())
    return _torch_runner(model if fp32 else copy.deepcopy(model).float(), torch.float32)


def _torch_bf16(model: nn.Module, cache_dir: Path, kernels: CpuKernels) -> Callable[[torch.Tensor], torch.Tensor]:
    """A copy cast to bf16: no per-call weight casts, as benchmarks/inference.py measured against autocast."""
    return _torch_runner(copy.deepcopy(model).to(torch.bfloat16), torch.bfloat16)


def _torch_int8(model: nn.Module, cache_dir: Path, kernels: CpuKernels) -> Callable[[torch.Tensor], torch.Tensor]:
    """vitkit's int8 linear layers on a float copy, compiled (eager int8 runs its rounding as separate operators)."""
    return _torch_runner(compile_int8(quantize_int8(copy.deepcopy(model).float())), torch.float32)


def _torch_int4(model: nn.Module, cache_dir: Path, kernels: CpuKernels) -> Callable[[torch.Tensor], torch.Tensor]:
    """4-bit weights on a float copy, eager (compiling did not speed up the int4 matmul, measured). Never chosen by
    auto: it is timed beside the others in benchmarks/efficiency.py, not yet ranked."""
    return _torch_runner(quantize_int4(copy.deepcopy(model).float()), torch.float32)


def _ort(name: str) -> Callable[[nn.Module, Path, CpuKernels], Callable[[torch.Tensor], torch.Tensor]]:
    def build(model: nn.Module, cache_dir: Path, kernels: CpuKernels,
              spin_wait: bool = True) -> Callable[[torch.Tensor], torch.Tensor]:
        reduce_range = kernels.x86 and not kernels.fast_int8
        return ort_runner(onnx_file(model, name, cache_dir, reduce_range), torch.get_num_threads(), spin_wait)
    return build


BUILDERS = {"torch-fp32": _torch_fp32, "torch-bf16": _torch_bf16, "torch-int8": _torch_int8, "torch-int4": _torch_int4,
            "ort-fp32": _ort("ort-fp32"), "ort-int8": _ort("ort-int8")}
