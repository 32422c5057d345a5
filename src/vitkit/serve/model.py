"""The served model: the backend that classifies (as `vitkit predict` runs it), the float torch model that explains,
and what /v1/model says about both."""
from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..export import InferenceBackend, onnx_backend
from ..inference import backend_for, class_names, eval_pixels, load_model, model_input
from ..models.vision_transformer import VisionTransformer, apply_token_merging
from .config import ServeConfig
from .explain import explain_maps, overlay_png


@dataclass
class ServedModel:
    """A backend ready to serve, with the float model beside it (None for an ONNX file: nothing to explain with)."""

    name: str
    source: str
    backend: InferenceBackend
    explainer: torch.nn.Module | None
    parameters: int | None
    labels: list[str] = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.labels = class_names(self.backend)

    @classmethod
    def load(cls, config: ServeConfig) -> ServedModel:
        """An ONNX file from `vitkit export` under onnxruntime, else anything from_pretrained reads behind
        --backend (auto: optimize_for_inference's pick)."""
        from ..checkpoints import resolve_checkpoint

        if config.is_onnx:
            if config.backend != "auto" or config.int8 or config.token_merging:
                raise ValueError("an ONNX file runs as it is under onnxruntime; --backend, --int8 and --tome apply "
                                 "to checkpoints (serve the checkpoint to choose, or export an int8 file yourself)")
            return cls(config.model_name, config.source, onnx_backend(config.source, spin_wait=False), None,
                       onnx_parameters(Path(config.source)))
        checkpoint = resolve_checkpoint(config.source)
        model = load_model(checkpoint)
        # the merged copy serves; the unmerged model explains (its attention covers every patch): one file read
        served = apply_token_merging(copy.deepcopy(model), config.token_merging) if config.token_merging else model
        # onnxruntime's threads sleep between batches: HTTP and decoding need the same cores then
        backend = backend_for(served, checkpoint, config.backend, config.int8, spin_wait=False)
        return cls(config.model_name, config.source, backend, model, sum(p.numel() for p in model.parameters()))

    def pixels(self, image: Image.Image) -> np.ndarray:
        """uint8 [H, W, C] of a decoded upload, resized and centre-cropped as predict and eval do."""
        cfg = self.backend.cfg
        return eval_pixels(image, cfg.img_size, cfg.in_chans, self.backend.preprocess)

    def classify(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Class probabilities, one row per image: one forward of the whole batch (the batcher's forward)."""
        with torch.inference_mode():
            probs = self.backend(model_input(arrays, self.backend)).float().softmax(-1)
        return list(probs.numpy())

    def warm_up(self, max_batch_size: int) -> float:
        """Runs a full batch and a single image (compiling backends compile here), so the first request is not the
        slow one; returns the seconds it took."""
        start = time.perf_counter()
        blank = np.zeros((*self.backend.cfg.img_size, self.backend.cfg.in_chans), dtype=np.uint8)
        for size in dict.fromkeys((max_batch_size, 1)):
            self.classify([blank] * size)
        return time.perf_counter() - start

    def why_no_explain(self) -> str | None:
        """Why `explain` cannot be answered for this model, or None when it can."""
        if self.explainer is None:
            return ("explain needs the torch model, and an ONNX file holds only the exported graph; serve the "
                    "checkpoint the file was exported from to get overlays")
        if not isinstance(self.explainer, VisionTransformer):
            return f"explain draws ViT attention and token maps; {type(self.explainer).__name__} has none"
        return None

    def explain(self, pixels: np.ndarray, method: str, target: int) -> bytes:
        """The PNG overlay of one image's map; Grad-CAM explains `target` (the class the backend answered)."""
        images = model_input([pixels], self.explainer)
        heat = explain_maps(self.explainer, images, method, torch.tensor([target]))
        return overlay_png(pixels, heat[0].detach().numpy())

    def describe(self, config: ServeConfig) -> dict[str, Any]:
        """GET /v1/model: what the model is, how it is fed, and how it runs."""
        cfg, backend = self.backend.cfg, self.backend
        return {"name": self.name, "source": self.source, "classes": self.labels,
                "image_size": list(cfg.img_size), "in_chans": cfg.in_chans,
                "preprocessing": dataclasses.asdict(backend.preprocess),
                "backend": backend.name, "backend_reason": backend.reason, "parameters": self.parameters,
                "token_merging": config.token_merging,
                "explain": self.why_no_explain() is None,
                "batching": {"max_batch_size": config.max_batch_size, "max_wait_ms": config.max_wait_ms,
                             "max_queue": config.max_queue, "timeout_s": config.timeout_s},
                "threads": torch.get_num_threads()}


def onnx_parameters(path: Path) -> int | None:
    """The parameter count `vitkit export` records (the graph's initializers miss what the exporter folded into
    constants); None for files from elsewhere."""
    import onnx  # the export extra, which onnxruntime serving needs anyway

    metadata = {entry.key: entry.value for entry in onnx.load(str(path), load_external_data=False).metadata_props}
    return int(metadata["vitkit_parameters"]) if "vitkit_parameters" in metadata else None
