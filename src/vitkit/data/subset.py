"""A dataset restricted to some classes and, for training, to a few labels per class: the near-OOD splits (train on
six CIFAR-10 classes, hold out four) and the few-label fine-tunes (10 % of the labels) share this one option."""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .base import TensorImageDataset
from .clips import ClipDataset
from .datasets import Dataset
from .folder import ImageFolderDataset


@dataclass
class SubsetConfig:
    """`classes`: names or indices to keep, renumbered 0..k-1 in the order given (None: all); `per_class`: training
    labels kept per class, a count (>= 1) or a fraction (< 1) drawn with `seed` (None: all). Test splits keep every
    image of the kept classes."""

    classes: list[int | str] | None = None
    per_class: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.classes is not None and len(self.classes) == 0:
            raise ValueError("data.subset.classes is empty; list the classes to keep, or null to keep all")
        if self.per_class is not None and not (0 < self.per_class < 1 or
                                               (self.per_class >= 1 and float(self.per_class).is_integer())):
            raise ValueError(f"data.subset.per_class={self.per_class} must be a fraction in (0, 1) or a whole count "
                             ">= 1 of images per class")

    @property
    def active(self) -> bool:
        return self.classes is not None or self.per_class is not None


def class_indices(classes: list[int | str], names: list[str], dataset_name: str) -> list[int]:
    """Each requested class as an index into `names`; unknown or repeated ones are errors that list the choices."""
    indices = []
    for entry in classes:
        if isinstance(entry, int) and 0 <= entry < len(names):
            indices.append(entry)
        elif isinstance(entry, str) and entry in names:
            indices.append(names.index(entry))
        else:
            raise ValueError(f"data.subset.classes: {entry!r} is not a class of {dataset_name}; choose indices "
                             f"0..{len(names) - 1} or names from {names}")
    if len(set(indices)) != len(indices):
        raise ValueError(f"data.subset.classes={classes} names a class twice")
    return indices


def labels_per_class(labels: torch.Tensor, per_class: float, seed: int) -> torch.Tensor:
    """Sorted positions of a seeded draw of `per_class` items (a count, or a fraction rounded) from each label."""
    generator = torch.Generator().manual_seed(seed)
    kept = []
    for label in labels.unique(sorted=True).tolist():
        members = (labels == label).nonzero().flatten()
        count = int(per_class) if per_class >= 1 else max(1, round(per_class * len(members)))
        if count > len(members):
            raise ValueError(f"data.subset.per_class={per_class}: class {label} has only {len(members)} images")
        kept.append(members[torch.randperm(len(members), generator=generator)[:count]])
    return torch.cat(kept).sort().values


def take_subset(dataset: Dataset, subset: SubsetConfig, split: str) -> Dataset:
    """The dataset as the subset option says; labels renumbered to the kept classes' order."""
    if not subset.active:
        return dataset
    if isinstance(dataset, ClipDataset):
        raise ValueError(f"data.subset selects images, and {dataset.name} holds clips; remove data.subset")
    labels, names = dataset.labels, list(dataset.classes)
    keep_classes = (class_indices(subset.classes, names, dataset.name) if subset.classes is not None
                    else list(range(len(names))))
    relabel = torch.full((len(names),), -1, dtype=torch.int64)
    relabel[keep_classes] = torch.arange(len(keep_classes))
    positions = (relabel[labels] >= 0).nonzero().flatten()
    if split == "train" and subset.per_class is not None:
        positions = positions[labels_per_class(labels[positions], subset.per_class, subset.seed)]
    return take_positions(dataset, positions, relabel[labels[positions]], [names[i] for i in keep_classes])


def take_positions(dataset: Dataset, positions: torch.Tensor, labels: torch.Tensor | None = None,
                   classes: list[str] | None = None) -> Dataset:
    """The images at `positions` as a dataset of the same kind, with new labels and class names if given."""
    labels = dataset.labels[positions] if labels is None else labels
    classes = list(dataset.classes) if classes is None else classes
    if isinstance(dataset, TensorImageDataset):
        return replace(dataset, images=dataset.images[positions], labels=labels, classes=classes)
    samples = [(dataset.samples[i][0], int(label)) for i, label in zip(positions.tolist(), labels.tolist())]
    return ImageFolderDataset(dataset.root, classes, samples, dataset.name, dataset.skip_bad_images)
