"""ONNX Runtime as an inference backend: the model's ONNX file (fp32, or int8 by onnxruntime's own dynamic
quantizer), built once from export_onnx and cached by the model's content, run in an onnxruntime session."""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..hardware import user_cache_dir
from .onnx import export_onnx

PACKAGES = ("onnx", "onnxscript", "onnxruntime")
INSTALL_HINT = "pip install 'vitkit[export]' (onnx, onnxscript, onnxruntime)"


def ort_available() -> bool:
    """Whether the export extra is installed, without importing it (onnxruntime alone takes a second to import)."""
    return not _missing_packages()


def require_ort(backend: str) -> None:
    """Fails with what to install when an ORT backend is asked for without the export extra."""
    if missing := _missing_packages():
        raise ImportError(f"the {backend} backend needs {', '.join(missing)}: {INSTALL_HINT}")


def _missing_packages() -> list[str]:
    return [name for name in PACKAGES if importlib.util.find_spec(name) is None]


def cache_dir_for(checkpoint: str | os.PathLike | None) -> Path:
    """Where built ONNX files are kept: an `onnx` folder beside the checkpoint when that folder is writable (they
    travel with it), else the user's cache ($XDG_CACHE_HOME or ~/.cache, then vitkit/onnx)."""
    if checkpoint is not None and Path(checkpoint).exists():
        folder = Path(checkpoint) if Path(checkpoint).is_dir() else Path(checkpoint).parent
        target = folder / "onnx"
        if os.access(target if target.is_dir() else folder, os.W_OK):
            return target
    return user_cache_dir() / "onnx"


def model_digest(model: nn.Module) -> str:
    """sha256 of what the ONNX file is built from: weights, config, preprocessing, class names, and the torch and
    onnxruntime versions that export and quantize it; equal digests mean a cached file is this model's."""
    import onnxruntime

    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    facts = [model.cfg.to_dict(), dataclasses.asdict(model.preprocess), model.class_names, torch.__version__,
             onnxruntime.__version__]
    digest.update(json.dumps(facts, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def onnx_file(model: nn.Module, backend: str, cache_dir: str | os.PathLike, reduce_range: bool = False) -> Path:
    """The model's file for ort-fp32 or ort-int8 in cache_dir, built on first use (int8 from the fp32 file)."""
    require_ort(backend)
    stem = model_digest(model)[:16]
    fp32 = _cached(Path(cache_dir) / f"ort-fp32-{stem}.onnx", lambda tmp: export_onnx(model, tmp))
    if backend == "ort-fp32":
        return fp32
    name = f"ort-int8-{stem}{'-7bit' if reduce_range else ''}.onnx"
    return _cached(Path(cache_dir) / name, lambda tmp: quantize_onnx(fp32, tmp, reduce_range))


def _cached(path: Path, build: Callable[[Path], Any]) -> Path:
    """Builds path once, through a temporary name, so a concurrent or interrupted build never leaves half a file."""
    if not path.is_file():
        print(f"vitkit: building {path.name} once (cached for later runs in {path.parent})", file=sys.stderr,
              flush=True)  # a large model takes tens of seconds to export
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.stem}.{os.getpid()}.partial.onnx")
        try:
            build(partial)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
    return path


def quantize_onnx(source: Path, target: Path, reduce_range: bool = False) -> None:
    """onnxruntime's dynamic quantization of the blocks' linear layers (MatMul with constant weights): int8 weights
    per output channel, uint8 activations per tensor at run time. The patch embedding (Conv) and the head (Gemm)
    stay float, as in vitkit's own quantize_int8. reduce_range (7-bit weights) is what onnxruntime advises on x86
    without VNNI, whose u8 x s8 kernel can saturate."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared))  # shape inference + graph clean-up, as the quantizer asks
        quantize_dynamic(prepared, target, op_types_to_quantize=["MatMul"], per_channel=True,
                         reduce_range=reduce_range, weight_type=QuantType.QInt8)


def ort_session(path: Path, threads: int, spin_wait: bool = True) -> Any:
    """An onnxruntime CPU session with `threads` intra-op threads (torch's count, so both backends get the same
    cores). spin_wait=False: the threads sleep between runs instead of spinning, for a process that has other work
    on the same cores between forwards (the server's HTTP and decoding; the load test in docs/serve.md)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if not spin_wait:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: the quantized graph's initializer notices are not the user's business
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_runner(path: Path, threads: int, spin_wait: bool = True) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function from images to logits over ort_session(path, threads, spin_wait)."""
    return session_runner(ort_session(path, threads, spin_wait))


def session_runner(session: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """Images [B, C, H, W] -> logits through an onnxruntime session of an export_onnx file."""
    def run(images: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(images.detach().float().cpu().numpy())
        (logits,) = session.run(["logits"], {"images": array})
        return torch.from_numpy(logits).to(images.device)
    return run
