"""ONNX export: the model with its preprocessing recorded, checked against PyTorch with onnxruntime."""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import warnings
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from ..models.family import family_of
from .quantize import is_int8


def export_onnx(model: nn.Module, path: str | Path, opset: int = 18, check: bool = True,
                atol: float = 1e-4) -> dict[str, Any]:
    """Writes images [batch, C, H, W] -> logits [batch, classes] with a dynamic batch, the preprocessing and class
    names as metadata, and (when check) the largest logit difference from PyTorch under onnxruntime."""
    try:
        import onnx
    except ImportError as error:
        raise ImportError("ONNX export needs the onnx and onnxscript packages: pip install 'vitkit[export]'") from error
    if is_int8(model):
        raise ValueError("export the float model: vitkit's int8 layers have no ONNX form; onnxruntime quantizes an "
                         "ONNX file itself (onnxruntime.quantization.quantize_dynamic)")
    model = _fp32_cpu_eval(model)
    images = torch.randn(2, *model.cfg.input_size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad(), _quiet_exporter():
        program = torch.onnx.export(model, (images,), input_names=["images"], output_names=["logits"],
                                    dynamic_shapes=({0: batch},), opset_version=opset, dynamo=True, verbose=False)
    proto = program.model_proto
    metadata = {"vitkit_preprocess": json.dumps(dataclasses.asdict(model.preprocess)),
                "vitkit_class_names": json.dumps(list(model.class_names or [])),
                "vitkit_config": json.dumps(model.cfg.to_dict()), "vitkit_family": family_of(model.cfg).name,
                "vitkit_parameters": str(sum(p.numel() for p in model.parameters()))}  # the graph folds some away
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    report: dict[str, Any] = {"path": str(path), "opset": opset}
    if check:
        report["max_abs_error"] = _compare(model, path, atol)
    return report


def check_onnx(model: nn.Module, path: str | Path, atol: float = 1e-4) -> float:
    """Runs the exported file under onnxruntime on a batch of a size not used at export; raises if it disagrees."""
    return _compare(_fp32_cpu_eval(model), path, atol)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter warns about torchvision ops it cannot register and about its own deprecated internals: noise for
    a ViT, which uses neither."""
    registry = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry.level
    registry.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        registry.setLevel(level)


def _fp32_cpu_eval(model: nn.Module) -> nn.Module:
    """Export traces an fp32 CPU model in eval mode. Any other model is copied, so the caller's keeps its dtype, device
    and mode; one already in that state is used as is, sparing a second copy of its weights."""
    evaluating = not any(module.training for module in model.modules())
    fp32_cpu = all(t.device.type == "cpu" and (t.dtype == torch.float32 or not t.is_floating_point())
                   for t in [*model.parameters(), *model.buffers()])
    return model if evaluating and fp32_cpu else copy.deepcopy(model).float().cpu().eval()


def _compare(model: nn.Module, path: str | Path, atol: float) -> float:
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError("checking an ONNX export needs onnxruntime: pip install 'vitkit[export]'") from error
    images = torch.randn(3, *model.cfg.input_size)
    with torch.no_grad():
        expected = model(images)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"images": images.numpy()})
    error = float((torch.from_numpy(logits) - expected).abs().max())
    scale = float(expected.abs().max())
    if error > atol * max(1.0, scale):
        raise ValueError(f"{path}: onnxruntime's logits differ from PyTorch's by {error:.2e} (logits up to "
                         f"{scale:.2f}); the export is wrong, please report it with the model's config")
    return error
