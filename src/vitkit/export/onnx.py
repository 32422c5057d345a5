"""ONNX export: the model with its preprocessing recorded, checked against PyTorch with onnxruntime."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn


def export_onnx(model: nn.Module, path: str | Path, opset: int = 18, check: bool = True,
                atol: float = 1e-4) -> dict[str, Any]:
    """Writes images [batch, C, H, W] -> logits [batch, classes] with a dynamic batch, the preprocessing and class
    names as metadata, and (when check) the largest logit difference from PyTorch under onnxruntime."""
    try:
        import onnx
    except ImportError as error:
        raise ImportError("ONNX export needs the onnx and onnxscript packages: pip install 'vitkit[export]'") from error
    model = model.float().eval()
    images = torch.randn(2, model.cfg.in_chans, *model.cfg.img_size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad():
        program = torch.onnx.export(model, (images,), input_names=["images"], output_names=["logits"],
                                    dynamic_shapes=({0: batch},), opset_version=opset, dynamo=True, verbose=False)
    proto = program.model_proto
    metadata = {"vitkit_preprocess": json.dumps(dataclasses.asdict(model.preprocess)),
                "vitkit_class_names": json.dumps(list(model.class_names or [])),
                "vitkit_config": json.dumps(model.cfg.to_dict())}
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    report: dict[str, Any] = {"path": str(path), "opset": opset}
    if check:
        report["max_abs_error"] = check_onnx(model, path, atol)
    return report


def check_onnx(model: nn.Module, path: str | Path, atol: float = 1e-4) -> float:
    """Runs the exported file under onnxruntime on a batch of a size not used at export; raises if it disagrees."""
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError("checking an ONNX export needs onnxruntime: pip install 'vitkit[export]'") from error
    images = torch.randn(3, model.cfg.in_chans, *model.cfg.img_size)
    with torch.no_grad():
        expected = model.float().eval()(images)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"images": images.numpy()})
    error = float((torch.from_numpy(logits) - expected).abs().max())
    scale = float(expected.abs().max())
    if error > atol * max(1.0, scale):
        raise ValueError(f"{path}: onnxruntime's logits differ from PyTorch's by {error:.2e} (logits up to "
                         f"{scale:.2f}); the export is wrong, please report it with the model's config")
    return error
