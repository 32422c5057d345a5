"""Reading checkpoint files without executing code: safetensors, or torch.load(weights_only=True)."""
from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

STATE_DICT_ENTRIES = ("model", "state_dict", "module")
EMA_ENTRIES = ("model_ema", "state_dict_ema", "ema")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# The one class a safe load may build besides tensors and containers: the `args` of training dicts (ViT-5, timm).
SAFE_GLOBALS = [argparse.Namespace]


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded as asked; the message says what is wrong and what to do."""


class MissingFieldsError(CheckpointError):
    """The file does not record these config fields, and nothing else supplied them; `reasons` says why, per field."""

    def __init__(self, reasons: dict[str, str], message: str) -> None:
        super().__init__(message)
        self.reasons = reasons

    @property
    def fields(self) -> list[str]:
        return list(self.reasons)


class ConflictError(CheckpointError):
    """A preset or a field passed contradicts the checkpoint's tensors: `values` maps each field to (file, other);
    `preset` names the preset that disagrees (None: the fields passed do)."""

    def __init__(self, values: dict[str, tuple[Any, Any]], message: str, preset: str | None = None) -> None:
        super().__init__(message)
        self.values, self.preset = values, preset

    @property
    def fields(self) -> list[str]:
        return list(self.values)


def read_tensors(path: Path) -> Any:
    """The object stored in a checkpoint file (safetensors or torch.save), built without running its code."""
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; pass the path of a checkpoint file or folder")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty: the download or copy did not finish; fetch the file again")
    if is_safetensors(path):
        return _read_safetensors(path)
    return _torch_load(path)


def is_safetensors(path: Path) -> bool:
    """True for a .safetensors name or a file starting with safetensors' 8-byte length and a JSON header."""
    if path.suffix == ".safetensors":
        return True
    with open(path, "rb") as handle:
        head = handle.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def safetensors_metadata(path: Path) -> dict[str, str]:
    """The string metadata stored in a safetensors header (empty when there is none)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}
    except SafetensorError as error:
        raise _corrupt(path, "safetensors", error) from None


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except SafetensorError as error:
        raise _corrupt(path, "safetensors", error) from None


def _torch_load(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "global" in str(error).lower():
            raise CheckpointError(
                f"{path} holds Python objects that a safe load refuses to build ({_unsupported_global(error)}). "
                "vitkit never runs code from a checkpoint: if you trust the file, load it yourself and re-save "
                "only the weights, e.g. torch.save(checkpoint['model'], 'weights.pth')") from None
        raise _corrupt(path, "PyTorch", error) from None
    except Exception as error:  # torch reports damaged files with many exception types
        raise _corrupt(path, "PyTorch", error) from None


def _unsupported_global(error: Exception) -> str:
    """The line of torch's message that names the refused class or function."""
    lines = [line.strip() for line in str(error).splitlines() if "global" in line.lower()]
    return lines[0] if lines else str(error).splitlines()[0]


def _corrupt(path: Path, kind: str, error: Exception) -> CheckpointError:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return CheckpointError(f"{path} is not a readable {kind} checkpoint ({first_line}); the file is truncated or "
                           f"corrupt ({path.stat().st_size:,} bytes): download or copy it again")


def pick_state_dict(obj: Any, path: Path, use_ema: bool) -> tuple[dict[str, torch.Tensor], str | None]:
    """The weights inside a file: the dict itself, or the entry of a training dict ('model', 'model_ema', ...)."""
    if not use_ema and is_state_dict(obj):
        return obj, None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict of tensors; save "
                              "model.state_dict() (or vitkit's save_pretrained) instead")
    entries = EMA_ENTRIES if use_ema else STATE_DICT_ENTRIES
    for entry in entries:
        if is_state_dict(obj.get(entry)):
            return obj[entry], entry
    if use_ema:
        raise CheckpointError(f"{path} holds no EMA weights (looked for {list(EMA_ENTRIES)}; it has "
                              f"{sorted(map(str, obj))}); drop use_ema=True to load the regular weights")
    raise CheckpointError(f"{path} holds no state dict: its top-level keys are {sorted(map(str, obj))[:12]}; "
                          f"expected tensors, or one of {list(STATE_DICT_ENTRIES)} holding them")


def is_state_dict(obj: Any) -> bool:
    """A non-empty mapping of names to tensors."""
    return (isinstance(obj, dict) and bool(obj)
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()))


def strip_wrapper_prefixes(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Removes 'module.' (DDP) and '_orig_mod.' (torch.compile) when every key carries them."""
    stripped = []
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state_dict):
                state_dict = {k[len(prefix):]: v for k, v in state_dict.items()}
                stripped.append(prefix)
                changed = True
    return state_dict, stripped


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file, or an error naming the file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON ({error}); the file is truncated or corrupt") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data
