"""Training run folders as checkpoint sources: a run stands for its best checkpoint and knows its dataset."""
from __future__ import annotations

import os
from pathlib import Path

import yaml

RUN_CONFIG = "config.yaml"


def resolve_checkpoint(source: str | os.PathLike) -> Path:
    """A run folder stands for its best checkpoint (else its last); anything else is returned as it is."""
    path = Path(source)
    if (path / "checkpoints").is_dir():
        best, last = path / "checkpoints" / "best", path / "checkpoints" / "last"
        if not (best.exists() or last.exists()):
            raise ValueError(f"run {path} has no checkpoint yet (checkpoints/best or checkpoints/last)")
        path = best if best.exists() else last
    return path


def run_folder(source: str | os.PathLike) -> Path | None:
    """The training run a source is (runs/<name>) or lies in (runs/<name>/checkpoints/best); None for other sources."""
    path = Path(source)
    for candidate in (path, path.parent.parent if path.parent.name == "checkpoints" else None):
        if candidate is not None and (candidate / RUN_CONFIG).is_file() and (candidate / "checkpoints").is_dir():
            return candidate
    return None


def run_dataset(source: str | os.PathLike) -> str | None:
    """The dataset spec a run trained on (data.dataset in its config.yaml), or None when the source is no run."""
    run = run_folder(source)
    if run is None:
        return None
    config = yaml.safe_load((run / RUN_CONFIG).read_text()) or {}
    data = config.get("data") if isinstance(config, dict) else None
    dataset = data.get("dataset", "digits") if isinstance(data, dict) else "digits"  # the recipe's default
    return str(dataset)
