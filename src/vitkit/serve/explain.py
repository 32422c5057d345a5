"""The `explain` option: one image's rollout, Grad-CAM or EigenCAM map from the code `vitkit analyze` draws with,
as a PNG overlay."""
from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from ..analysis.attention import attention_rollout, collect_attention, rollout_map
from ..analysis.eigencam import eigen_cam
from ..analysis.gradcam import grad_cam
from ..analysis.plots import overlay
from ..analysis.tokens import token_layout
from ..models.vision_transformer import VisionTransformer

EXPLAIN_METHODS = ("rollout", "gradcam", "eigencam")
MIN_OVERLAY_SIZE = 224  # small inputs (CIFAR's 32 px) are enlarged so the overlay is visible beside the upload


def explain_maps(model: VisionTransformer, images: torch.Tensor, method: str, targets: torch.Tensor) -> torch.Tensor:
    """Patch maps [B, rows, cols]: attention rollout, Grad-CAM of the target classes, or EigenCAM."""
    if method == "rollout":
        maps = collect_attention(model, images)
        return rollout_map(attention_rollout(maps), token_layout(model.cfg, maps[0].shape[-1]))
    if method == "gradcam":
        return grad_cam(model, images, targets)[0]
    if method == "eigencam":
        return eigen_cam(model, images)
    raise ValueError(f"unknown explain method {method!r}; choose one of {', '.join(EXPLAIN_METHODS)}")


def overlay_png(pixels: np.ndarray, heat: np.ndarray) -> bytes:
    """The map over a grey copy of the model's input pixels (uint8 [H, W, C]), as analysis draws it, as PNG bytes;
    inputs smaller than MIN_OVERLAY_SIZE are enlarged by whole pixels first."""
    scale = max(1, -(-MIN_OVERLAY_SIZE // max(pixels.shape[:2])))
    enlarged = pixels.repeat(scale, axis=0).repeat(scale, axis=1).astype(np.float32) / 255.0
    rgb = np.clip(np.round(overlay(enlarged, heat) * 255), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()
