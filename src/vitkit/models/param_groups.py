"""Optimizer parameter groups shared by every model family: weight decay and layer-wise learning-rate decay."""
from __future__ import annotations

from typing import Any, Callable

from torch import nn


def param_groups(model: nn.Module, layer_id: Callable[[str], int], num_layers: int, weight_decay: float = 0.05,
                 layer_decay: float | None = None) -> list[dict[str, Any]]:
    """No decay on 1-D params and model.no_weight_decay(); lr_scale = layer_decay^(num_layers - layer_id(name))."""
    skip = model.no_weight_decay()
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim <= 1 or name in skip
        layer = layer_id(name) if layer_decay is not None else num_layers
        key = (layer, no_decay)
        if key not in groups:
            scale = layer_decay ** (num_layers - layer) if layer_decay is not None else 1.0
            groups[key] = {"params": [], "weight_decay": 0.0 if no_decay else weight_decay, "lr_scale": scale}
        groups[key]["params"].append(param)
    return list(groups.values())
