"""What the robustness report measures on: a labelled split (the run's own test split by default, with the run's
data.subset), and out-of-distribution sets (another dataset, any folder of images, noise, or the classes a run held
out), all as batches of [0, 1] pixels at the model's input size, prepared as the checkpoint's eval preprocessing
says; the normalisation itself happens inside the model call (attacks.PixelModel)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import yaml

from ..config import from_dict
from ..data import build_dataset, build_loader
from ..data.datasets import KINDS, Dataset
from ..data.decode import IMAGE_EXTENSIONS
from ..data.folder import list_images
from ..data.subset import SubsetConfig, take_positions, take_subset
from ..preprocess import Preprocess

NOISE_KINDS = ("gaussian", "uniform")
HELD_OUT = "held-out"
OOD_HELP = (f"a dataset spec (e.g. fashion-mnist:PATH, cifar100:PATH: its test split), folder:PATH (every image "
            f"under PATH), noise:gaussian, noise:uniform, or {HELD_OUT} (the classes the run's data.subset left out)")


@dataclass
class RunData:
    """The dataset a run trained on and the subset of it, from its config.yaml."""

    spec: str
    subset: SubsetConfig = field(default_factory=SubsetConfig)


def run_data(source: str | Path) -> RunData | None:
    """data.dataset and data.subset of the run a source is or lies in; None for a checkpoint outside a run."""
    from ..checkpoints import run_dataset, run_folder

    spec, folder = run_dataset(source), run_folder(source)
    if spec is None or folder is None:
        return None
    data = (yaml.safe_load((folder / "config.yaml").read_text()) or {}).get("data") or {}
    return RunData(spec, from_dict(SubsetConfig, data.get("subset") or {}, "data.subset"))


def pixel_preprocess(model: torch.nn.Module) -> Preprocess:
    """The model's eval resize and crop with mean 0 and std 1: loaders then yield [0, 1] pixels."""
    channels = model.cfg.in_chans
    return dataclasses.replace(model.preprocess.for_channels(channels), mean=(0.0,) * channels,
                               std=(1.0,) * channels)


def choose(dataset: Dataset, limit: int | None, seed: int = 0) -> Dataset:
    """`limit` images drawn at random (seeded; kept in their order), so a quick look sees every class."""
    if limit is None or limit >= len(dataset):
        return dataset
    if limit < 1:
        raise ValueError(f"--limit {limit}: give a positive number of images")
    positions = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:limit].sort().values
    return take_positions(dataset, positions)


def labelled_split(spec: str, split: str, subset: SubsetConfig, limit: int | None, seed: int = 0) -> Dataset:
    return choose(take_subset(build_dataset(spec, split=split), subset, split), limit, seed)


def batches(dataset: Dataset, model: torch.nn.Module, batch_size: int,
            device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(pixels in [0, 1], labels) batches of a dataset, resized and cropped as the model's eval preprocessing."""
    loader = build_loader(dataset, batch_size, train=False, img_size=model.cfg.img_size, device=device,
                          in_chans=model.cfg.in_chans, preprocess=pixel_preprocess(model), num_workers=0)
    for pixels, labels in loader:
        yield pixels.clamp(0, 1), labels


@dataclass
class OodSet:
    """An out-of-distribution set: its name, its pixels (in memory) or a dataset streamed by batches, and the files
    that could not be read."""

    name: str
    pixels: torch.Tensor | None = None
    dataset: Dataset | None = None
    unreadable: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.pixels) if self.pixels is not None else len(self.dataset)

    def batches(self, model: torch.nn.Module, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
        if self.dataset is not None:
            yield from (pixels for pixels, _ in batches(self.dataset, model, batch_size, device))
            return
        for start in range(0, len(self.pixels), batch_size):
            yield self.pixels[start:start + batch_size].to(device)


def ood_set(spec: str, model: torch.nn.Module, count: int, limit: int | None, run: RunData | None,
            seed: int = 0) -> OodSet:
    """The OOD set a --ood spec names; noise sets get `count` images (the in-distribution set's size)."""
    kind, _, path = spec.partition(":")
    size, channels = model.cfg.img_size, model.cfg.in_chans
    if kind == "noise":
        if path not in NOISE_KINDS:
            raise ValueError(f"--ood {spec}: noise comes as noise:gaussian or noise:uniform")
        generator = torch.Generator().manual_seed(seed)
        shape = (count, channels, *size)
        pixels = (torch.rand(shape, generator=generator) if path == "uniform"
                  else (0.5 + 0.25 * torch.randn(shape, generator=generator)).clamp(0, 1))
        return OodSet(spec, pixels=pixels)
    if spec == HELD_OUT:
        return OodSet(spec, dataset=choose(held_out_classes(run), limit, seed))
    if kind == "folder":
        return folder_set(spec, Path(path).expanduser(), model, limit, seed)
    if kind in KINDS:
        return OodSet(spec, dataset=choose(build_dataset(spec, split="test"), limit, seed))
    raise ValueError(f"--ood {spec}: not an OOD set; give {OOD_HELP}")


def held_out_classes(run: RunData | None) -> Dataset:
    """The test images of the classes a run's data.subset did not keep: near-OOD for that run."""
    if run is None or run.subset.classes is None:
        raise ValueError(f"--ood {HELD_OUT} needs a training run whose recipe kept some classes (data.subset.classes);"
                         " this source is no such run")
    test = build_dataset(run.spec, split="test")
    kept = set(take_subset(test, SubsetConfig(classes=run.subset.classes), "test").classes)
    others = [name for name in test.classes if name not in kept]
    if not others:
        raise ValueError(f"--ood {HELD_OUT}: the run kept every class of {run.spec}; nothing is held out")
    return take_subset(test, SubsetConfig(classes=others), "test")


def folder_set(spec: str, folder: Path, model: torch.nn.Module, limit: int | None, seed: int) -> OodSet:
    """Every image file under a folder (any layout), read as at evaluation; unreadable files are listed."""
    from ..analysis.images import load_images

    if not folder.is_dir():
        raise ValueError(f"--ood {spec}: {folder} is not a folder; point folder: at a folder of images")
    paths = list_images(folder)
    if not paths:
        raise ValueError(f"--ood {spec}: {folder} holds no images ({' '.join(IMAGE_EXTENSIONS)}); point folder: at a "
                         "folder that does")
    if limit is not None and limit < len(paths):
        order = np.random.default_rng(seed).permutation(len(paths))[:limit]
        paths = [paths[i] for i in sorted(order)]
    images = load_images(paths, model.cfg.img_size, model.cfg.in_chans, model.preprocess)
    if not len(images.pixels):
        raise ValueError(f"--ood {spec}: none of the {len(paths)} images under {folder} could be read "
                         f"(first: {images.unreadable[0][0]}: {images.unreadable[0][1]})")
    pixels = torch.from_numpy(np.ascontiguousarray(images.pixels)).permute(0, 3, 1, 2).float()
    return OodSet(spec, pixels=pixels, unreadable=images.unreadable)
