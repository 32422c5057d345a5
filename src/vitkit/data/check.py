"""`vitkit data check SPEC`: what a dataset holds and what in it cannot be read, before a run depends on it."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ..report import format_table
from .base import TensorImageDataset
from .clips import ClipDataset
from .datasets import SPLITS, build_dataset
from .decode import BadImageError, open_image
from .folder import load_whole_folder, split_folders

MODE_OF_CHANNELS = {1: "L", 3: "RGB"}


@dataclass
class SplitReport:
    """What one split holds: class names and counts, image sizes and modes, files that failed to decode."""

    split: str
    classes: list[str]
    counts: list[int]
    sizes: Counter = field(default_factory=Counter)
    modes: Counter = field(default_factory=Counter)
    unreadable: list[tuple[str, str]] = field(default_factory=list)


def check_split(spec: str, split: str, seed: int = 0, val_fraction: float = 0.2) -> SplitReport:
    """Counts per class; for image folders also opens every file to collect sizes, modes and failures."""
    dataset = load_whole_folder(spec.partition(":")[2]) if split == "all" else build_dataset(
        spec, split, seed, val_fraction=val_fraction)
    counts = dataset.labels.bincount(minlength=len(dataset.classes)).tolist()
    report = SplitReport(split, list(dataset.classes), counts)
    if isinstance(dataset, (TensorImageDataset, ClipDataset)):  # decoded already: one size and mode throughout
        height, width = dataset.image_size
        report.sizes[f"{width}x{height}"] = len(dataset)
        report.modes[MODE_OF_CHANNELS.get(dataset.num_channels, f"{dataset.num_channels}-channel")] = len(dataset)
        return report
    for path, _ in tqdm(dataset.samples, desc=f"reading {split} images", leave=False, disable=len(dataset) < 500):
        try:
            image = open_image(path)
        except BadImageError as error:
            report.unreadable.append((error.path, error.reason))
            continue
        report.sizes[f"{image.width}x{image.height}"] += 1
        report.modes[image.mode] += 1
    return report


def format_report(spec: str, report: SplitReport, top: int = 8) -> str:
    """A class-count table, the most common sizes and modes, and every unreadable file."""
    total = sum(report.counts)
    lines = [f"{spec} [{report.split}]: {total:,} images in {len(report.classes)} classes",
             format_table([[name, count] for name, count in zip(report.classes, report.counts)], ["class", "images"]),
             "sizes (WxH): " + _common(report.sizes, top), "modes: " + _common(report.modes, top)]
    if report.unreadable:
        lines.append(f"unreadable files ({len(report.unreadable)}):")
        lines.extend(f"  {path}: {reason}" for path, reason in report.unreadable)
    else:
        lines.append("unreadable files: none")
    return "\n".join(lines)


def check_dataset(spec: str, seed: int = 0, val_fraction: float = 0.2) -> list[SplitReport]:
    """Each split of the dataset; a single image folder (split by ratio at training time) as one 'all' split."""
    kind, _, path = spec.partition(":")
    if kind.strip().lower() == "imagefolder" and Path(path).expanduser().is_dir() and \
            split_folders(Path(path).expanduser()) is None:
        return [check_split(spec, "all")]
    return [check_split(spec, split, seed, val_fraction) for split in SPLITS]


def _common(counter: Counter, top: int) -> str:
    parts = [f"{key} ({count:,})" for key, count in counter.most_common(top)]
    if len(counter) > top:
        parts.append(f"... {len(counter) - top} more")
    return ", ".join(parts) or "none"
