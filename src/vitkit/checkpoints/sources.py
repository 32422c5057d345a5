"""From whatever the user points at (file, folder, hf-hub:name) to a Converted state dict: the format is
read from the folder's config.json or, for a bare file, from the tensor names."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..models import list_models
from ..models.family import DEFAULT_FAMILY
from .hf import convert_hf, is_hf_state_dict
from .hub import HUB_PREFIX, download
from .io import (CheckpointError, is_safetensors, pick_state_dict, read_json, read_tensors, safetensors_metadata,
                 strip_wrapper_prefixes)
from .mapping import Converted
from .own import CONFIG_FILE, METADATA_KEY, WEIGHTS_FILE, convert_own, is_own
from .swin import convert_swin, is_swin
from .timm import convert_timm, is_timm, timm_hub_config
from .vit5 import convert_vit5, is_vit5

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def convert_source(source: str | os.PathLike, use_ema: bool = False) -> Converted:
    """Reads a checkpoint of any supported format and converts it to vitkit's names."""
    if str(source).startswith(HUB_PREFIX):
        source = download(str(source))
    path = Path(source).expanduser()
    if path.is_dir():
        return _convert_folder(path, use_ema)
    if path.is_file() and path.name in (WEIGHTS_FILE, "pytorch_model.bin") and (path.parent / CONFIG_FILE).is_file():
        return _convert_folder(path.parent, use_ema)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist; pass a checkpoint file, a folder, or 'hf-hub:org/name'")
    return _convert_file(path, use_ema)


def saved_family(source: str | os.PathLike) -> str | None:
    """The model family a vitkit checkpoint records (config.json or the safetensors header), read without its
    weights; None for every other format (those hold image models)."""
    path = Path(source).expanduser()
    if path.is_file() and path.name == WEIGHTS_FILE and (path.parent / CONFIG_FILE).is_file():
        path = path.parent
    if path.is_dir():
        config = read_json(path / CONFIG_FILE) if (path / CONFIG_FILE).is_file() else {}
        return config.get("family", DEFAULT_FAMILY) if is_own(config) else None
    if path.is_file() and is_safetensors(path):
        header = safetensors_metadata(path)
        if METADATA_KEY in header:
            return _header_description(header[METADATA_KEY], path).get("family", DEFAULT_FAMILY)
    return None


def _convert_folder(folder: Path, use_ema: bool) -> Converted:
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        return _convert_file(_single_weights_file(folder), use_ema)
    config = read_json(config_path)
    if is_own(config):
        _no_ema(use_ema, folder, "a vitkit save_pretrained folder")
        return convert_own(config, _read_plain(folder / WEIGHTS_FILE), folder)
    if "model_type" in config:
        _no_ema(use_ema, folder, "a Hugging Face folder")
        return convert_hf(folder, config)
    if "architecture" in config:
        return _convert_timm_hub(folder, config, use_ema)
    raise CheckpointError(f"{config_path} is neither vitkit's (format: vitkit), Hugging Face's (model_type) nor "
                          "timm's (architecture) config; pass the weights file itself instead")


def _convert_timm_hub(folder: Path, config: dict, use_ema: bool) -> Converted:
    converted = _convert_file(_single_weights_file(folder), use_ema)
    fields, preprocess, architecture = timm_hub_config(config)
    converted.fields.update(fields)
    converted.preprocess = preprocess
    converted.preprocess_origin = f"pretrained_cfg in {folder.name}/config.json"
    if architecture in list_models():
        converted.base_preset = architecture
    converted.notes.append(f"timm hub config: architecture {architecture!r}"
                           + (" (a vitkit preset: it supplies num_heads)" if converted.base_preset else "")
                           + ("; preprocessing from pretrained_cfg" if preprocess else ""))
    return converted


def _convert_file(path: Path, use_ema: bool) -> Converted:
    if is_safetensors(path):
        header = safetensors_metadata(path)
        if METADATA_KEY in header:
            _no_ema(use_ema, path, "a vitkit checkpoint")
            return convert_own(_header_description(header[METADATA_KEY], path), _read_plain(path), path)
    state_dict, entry = pick_state_dict(read_tensors(path), path, use_ema)
    state_dict, prefixes = strip_wrapper_prefixes(state_dict)
    converted = _convert_state_dict(state_dict, path)
    where = [f"weights from {path.name}" + (f"['{entry}']" if entry else "")]
    where += [f"removed the '{prefix}' prefix from every key" for prefix in prefixes]
    converted.notes[:0] = where
    return converted


def _convert_state_dict(state_dict: dict[str, torch.Tensor], path: Path) -> Converted:
    """Chooses the converter from the tensor names."""
    if is_swin(state_dict):
        return convert_swin(state_dict)
    if is_vit5(state_dict):
        return convert_vit5(state_dict)
    if is_hf_state_dict(state_dict):
        raise CheckpointError(f"{path} holds Hugging Face ViT weights; pass the folder that also holds its "
                              "config.json (the weights alone do not record heads or the norm eps)")
    if is_timm(state_dict):
        return convert_timm(state_dict)
    sample = sorted(state_dict)[:8]
    raise CheckpointError(f"{path} is not a Vision Transformer checkpoint vitkit can read (first keys: {sample}); "
                          "supported: vitkit's save_pretrained, timm ViT / DeiT / Eva (patch_embed.proj.weight, "
                          "blocks.N.*), timm Swin (layers.N.blocks.M.*), Hugging Face ViT folders and official "
                          "ViT-5 .pth files")


def _header_description(text: str, path: Path) -> dict:
    """The vitkit description stored in a safetensors header."""
    try:
        description = json.loads(text)
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path} carries a damaged vitkit description in its header ({error}); "
                              "load its folder (with config.json) instead") from None
    if not isinstance(description, dict):
        raise CheckpointError(f"{path} carries a vitkit description that is not a JSON object")
    return description


def _read_plain(path: Path) -> dict[str, torch.Tensor]:
    return pick_state_dict(read_tensors(path), path, use_ema=False)[0]


def _single_weights_file(folder: Path) -> Path:
    files = sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    if len(files) != 1:
        found = [p.name for p in files] or "no weight files"
        raise CheckpointError(f"{folder} holds {found}; pass the one checkpoint file to load")
    return files[0]


def _no_ema(use_ema: bool, where: Path, what: str) -> None:
    if use_ema:
        raise CheckpointError(f"{where} is {what}, which holds one set of weights and no EMA copy; "
                              "drop use_ema=True")
