"""vitkit's own format: config.json (the model family and its full config, preset, preprocessing, class names) +
model.safetensors. A description without a family (written before Swin) is a ViT's.

The same description also sits in the safetensors header, so model.safetensors alone is enough to rebuild.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from ..models import family_of, get_family
from ..models.family import DEFAULT_FAMILY
from ..preprocess import Preprocess
from ..report import write_json
from .io import CheckpointError
from .mapping import Converted

FORMAT = "vitkit"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
METADATA_KEY = "vitkit"


def save_pretrained(model: nn.Module, directory: str | os.PathLike,
                    state_dict: dict[str, torch.Tensor] | None = None) -> Path:
    """Writes config.json + model.safetensors so that from_pretrained(directory) rebuilds the model exactly.

    `state_dict` stands in for the model's own weights, e.g. the gathered whole tensors of an FSDP2 model.
    """
    model = _unwrap(model)
    weights = model.state_dict() if state_dict is None else state_dict
    if any(tensor.dtype in (torch.int8, torch.uint8) for tensor in weights.values()):  # quantize_int8/int4's weights
        raise ValueError("save_pretrained keeps float weights: save the model before quantize_int8 / quantize_int4 "
                         "and quantize after loading: vitkit.inference.load_model(path, int8=True)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    description = describe(model)
    tensors = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
    save_file(tensors, str(directory / WEIGHTS_FILE),
              metadata={"format": "pt", METADATA_KEY: json.dumps(description)})
    write_json(directory / CONFIG_FILE, description)
    return directory


def _unwrap(model: nn.Module) -> nn.Module:
    """The vitkit model (a registered family's model class) inside DDP (.module) or torch.compile (._orig_mod)."""
    for attribute in ("module", "_orig_mod"):
        model = getattr(model, attribute, model)
    try:
        family = family_of(getattr(model, "cfg", None))
    except ValueError:
        family = None
    if family is None or family.model_class is None or not isinstance(model, family.model_class):
        raise ValueError(f"save_pretrained saves a vitkit VisionTransformer or SwinTransformer, got "
                         f"{type(model).__name__}; for other modules use torch.save(module.state_dict(), path)")
    return model


def describe(model: nn.Module) -> dict[str, Any]:
    """Everything but the weights: family and architecture, preset name, preprocessing and class names, as JSON."""
    cfg, pre = model.cfg, model.preprocess
    class_names = getattr(model, "class_names", None)
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "family": family_of(cfg).name,
        "preset": model.preset_name, "config": cfg.to_dict(),
        "preprocess": {"input_size": [cfg.in_chans, *cfg.img_size], "mean": list(pre.mean), "std": list(pre.std),
                       "interpolation": pre.interpolation, "crop_pct": pre.crop_pct},
        "class_names": list(class_names) if class_names is not None else None,
    }


def is_own(description: dict[str, Any]) -> bool:
    """True for a config.json (or safetensors header) written by save_pretrained."""
    return description.get("format") == FORMAT


def convert_own(description: dict[str, Any], state_dict: dict[str, torch.Tensor], where: Path) -> Converted:
    """The saved config as facts: nothing is inferred, nothing is renamed."""
    version = description.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{where} has vitkit format_version {version!r}; this vitkit reads version "
                              f"{FORMAT_VERSION}: upgrade vitkit to load it")
    family = description.get("family", DEFAULT_FAMILY)
    try:
        config = get_family(family).config_class.from_dict(dict(description["config"]))
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{where} holds an invalid vitkit config ({error}); the file is damaged or was "
                              "written by another vitkit version") from None
    pre = description.get("preprocess") or {}
    preprocess = Preprocess.from_dict(pre)
    notes = [f"vitkit format v{version}" + (f", preset {description['preset']}" if description.get("preset") else "")]
    return Converted("vitkit", state_dict, config.to_dict(), notes=notes, preprocess=preprocess,
                     preprocess_origin=f"recorded in {where.name}",
                     preset=description.get("preset"), class_names=description.get("class_names"), family=family)
