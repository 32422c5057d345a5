"""Training checkpoints: written whole in a temporary folder, then published by an atomic symlink swap.

A run killed at any moment leaves `checkpoints/last` pointing at a complete checkpoint: the model in vitkit's
own format (loadable by `vitkit.from_pretrained`) plus `train_state.pt` with everything needed to resume.
"""
from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

TRAIN_STATE = "train_state.pt"
TASK_WEIGHTS = "task.safetensors"  # what a task trains beside the model (MAE's decoder)


def save_checkpoint(folder: Path, link: str, model: torch.nn.Module, train_state: dict[str, Any] | None,
                    weights: dict[str, torch.Tensor] | None = None,
                    task_weights: dict[str, torch.Tensor] | None = None) -> Path:
    """Writes folder/<link>-<stamp>/, then atomically repoints folder/<link> at it and removes the older ones.

    `weights` replaces model.state_dict() when the model is sharded (FSDP2 gathers them on every rank first);
    `task_weights` (a task's own parts) go beside the model as task.safetensors.
    """
    from ..checkpoints import save_pretrained

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{link}-{time.time_ns()}"
    tmp = folder / f".{target.name}.tmp"
    save_pretrained(model, tmp, state_dict=weights)
    if train_state is not None:
        torch.save(train_state, tmp / TRAIN_STATE)
    if task_weights:
        save_file({k: v.detach().cpu().contiguous() for k, v in task_weights.items()}, str(tmp / TASK_WEIGHTS))
    os.replace(tmp, target)
    pointer = folder / f".{link}.link"
    pointer.unlink(missing_ok=True)
    os.symlink(target.name, pointer)
    os.replace(pointer, folder / link)
    for old in folder.glob(f"{link}-*"):
        if old != target:
            shutil.rmtree(old, ignore_errors=True)
    return folder / link


def load_train_state(checkpoint: Path, model: torch.nn.Module) -> dict[str, Any]:
    """Loads the model weights (strictly) and returns the saved training state, the task's weights under "task"."""
    if not (checkpoint / TRAIN_STATE).is_file():
        raise ValueError(f"{checkpoint} holds no {TRAIN_STATE}: it is not a resumable training checkpoint")
    model.load_state_dict(load_file(str(checkpoint / "model.safetensors")), strict=True)
    state = torch.load(checkpoint / TRAIN_STATE, map_location="cpu", weights_only=True)
    task = checkpoint / TASK_WEIGHTS
    state["task"] = load_file(str(task)) if task.is_file() else {}
    return state


def rng_state() -> dict[str, Any]:
    """Every random generator the loop touches, as plain data (safe to load with weights_only=True)."""
    np_state = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuples(state["python"]))
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value: Any) -> Any:
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value
