"""Clip datasets: every clip a uint8 tensor of frames held in memory, and 'clipfolder:PATH', one folder of frames per
clip under class folders (optionally below train/ and val/), decoded once at build time."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from .base import channel_stats
from .decode import BadImageError, is_image_file, open_image, to_rgb
from .folder import class_names, split_samples

GRAY_MODES = ("1", "L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


@dataclass
class ClipDataset:
    """clips uint8 [N, L, C, H, W] (L frames; a loader cuts the model's num_frames from them), labels int64 [N], class
    names and per-channel normalisation. `mirror[k]` is the label of a class-k clip flipped left to right (None: a
    flip keeps the label); `params` says how the clips were made, so the set can be made again."""

    clips: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str = ""
    mirror: list[int] | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.clips.dtype != torch.uint8 or self.clips.ndim != 5:
            raise ValueError(f"{self.name}: clips must be uint8 [N, L, C, H, W], got {self.clips.dtype} "
                             f"{tuple(self.clips.shape)}")
        if len(self.labels) != len(self.clips):
            raise ValueError(f"{self.name}: {len(self.clips)} clips but {len(self.labels)} labels")
        if len(self.clips) == 0:
            raise ValueError(f"{self.name}: the split holds no clips")
        if self.mirror is not None and sorted(self.mirror) != list(range(len(self.classes))):
            raise ValueError(f"{self.name}: mirror={self.mirror} must map each of the {len(self.classes)} classes "
                             "to one class, each class once")
        self.labels = self.labels.to(torch.int64)

    @property
    def num_channels(self) -> int:
        return self.clips.shape[2]

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of every frame."""
        return tuple(self.clips.shape[-2:])

    @property
    def num_frames(self) -> int:
        """Frames each clip holds (L)."""
        return self.clips.shape[1]

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.clips[index], int(self.labels[index])


def load_clip_folder(root: str | Path, split: str, seed: int = 0, val_fraction: float = 0.2) -> ClipDataset:
    """PATH/<class>/<clip>/<frame files> (frames in natural name order: frame2 before frame10), either below
    train/ and val/ (or test/) or split by a seeded per-class ratio. Every clip must hold the same number of frames
    of one size; an unreadable frame is an error naming it."""
    root = Path(root).expanduser()
    spec = f"clipfolder:{root}"
    classes, samples = split_samples(root, spec, split, seed, val_fraction, _scan_clips, "clips",
                                     "PATH/<class>/<clip>/<frame images>")
    frames = [read_clip(Path(path), spec) for path, _ in tqdm(samples, desc=f"reading {split} clips", leave=False,
                                                               disable=len(samples) < 100)]
    _check_same_shape(spec, [path for path, _ in samples], frames)
    gray = all(gray_clip for _, gray_clip in frames)
    clips_tensor = torch.from_numpy(np.stack([clip for clip, _ in frames])).permute(0, 1, 4, 2, 3)
    if gray:
        clips_tensor = clips_tensor[:, :, :1]
    mean, std = channel_stats(clips_tensor.flatten(0, 1))
    labels = torch.tensor([label for _, label in samples])
    return ClipDataset(clips_tensor.contiguous(), labels, classes, mean, std, f"{spec}/{split}")


def _scan_clips(folder: Path, spec: str) -> tuple[list[str], list[list[Path]]]:
    """Class names and, for each, its clip folders (sorted)."""
    classes = class_names(folder)
    if not classes:
        raise ValueError(f"{spec}: {folder} has no class folders; expected {folder}/<class>/<clip>/<frame images>")
    clips = [sorted(p for p in (folder / name).iterdir() if p.is_dir() and not p.name.startswith("."))
             for name in classes]
    empty = [str(folder / name) for name, paths in zip(classes, clips) if not paths]
    if empty:
        raise ValueError(f"{spec}: class folder(s) {', '.join(empty)} hold no clip folders; put each clip's frames "
                         "in a folder of its own, PATH/<class>/<clip>/<frame images>")
    return classes, clips


def natural_key(path: Path) -> list:
    """Sorts frame2.png before frame10.png: runs of digits compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def read_clip(clip: Path, spec: str) -> tuple[np.ndarray, bool]:
    """One clip folder's frames [L, H, W, 3] (uint8), and whether every frame is stored in a gray mode; `spec` names
    the source in errors."""
    paths = sorted((p for p in clip.iterdir() if is_image_file(p)), key=natural_key)
    if not paths:
        raise ValueError(f"{spec}: clip {clip} holds no frame images; remove the folder or add its frames")
    frames, gray = [], True
    for path in paths:
        try:
            image = open_image(path)
            gray &= image.mode in GRAY_MODES
            frames.append(np.asarray(to_rgb(image)))
        except (BadImageError, OSError, ValueError) as error:
            reason = error.reason if isinstance(error, BadImageError) else str(error)
            raise ValueError(f"{spec}: frame {path.name} of clip {clip} cannot be read ({reason}); fix or replace "
                             "the frame, or remove the clip") from None
    sizes = sorted({frame.shape[:2] for frame in frames})
    if len(sizes) > 1:
        listed = ", ".join(f"{w}x{h}" for h, w in sizes)
        raise ValueError(f"{spec}: the frames of clip {clip} differ in size ({listed}); every frame of a clip must "
                         "have one size")
    return np.stack(frames), gray


def _check_same_shape(spec: str, paths: list[str], frames: list[tuple[np.ndarray, bool]]) -> None:
    """Every clip must hold the same number of frames of the same size: the split is one tensor."""
    shapes = [clip.shape[:3] for clip, _ in frames]
    common = max(set(shapes), key=shapes.count)
    odd = [f"{path} ({shape[0]} frames of {shape[2]}x{shape[1]})" for path, shape in zip(paths, shapes)
           if shape != common]
    if odd:
        listed = ", ".join(odd[:10]) + (f" and {len(odd) - 10} more" if len(odd) > 10 else "")
        raise ValueError(f"{spec}: clips must all hold the same number of frames of one size; {shapes.count(common)} "
                         f"hold {common[0]} frames of {common[2]}x{common[1]}, but: {listed}. Cut or pad them to "
                         f"{common[0]} frames and resize them, or move them out")
