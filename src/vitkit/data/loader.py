"""Loaders that yield (images, targets) ready for the model on its device, resumable mid-epoch.

In-memory datasets are indexed and augmented in whole batches on the device (no per-image Python); image
folders decode and crop each file in DataLoader workers, then get the same batched augmentation on the device.
"""
from __future__ import annotations

import math
import random
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image

from .base import TensorImageDataset
from .config import AugmentConfig
from .decode import BadImageError
from .folder import ImageFolderDataset
from .mixup import mix_batch
from .sampler import batch_rng, epoch_order, sample_seeds
from .transforms import EvalTransform, TrainTransform, sample_rrc_boxes, scale_size

Batch = tuple[torch.Tensor, torch.Tensor]


class EpochSchedule:
    """Which batches an epoch holds and where the current pass is: a pure function of (seed, epoch, rank)."""

    def __init__(self, num_samples: int, batch_size: int, train: bool, seed: int, drop_last: bool,
                 world_size: int, rank: int, repeats: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1")
        if seed < 0:
            raise ValueError(f"seed={seed} must be >= 0")
        self.num_samples, self.batch_size, self.train, self.seed = num_samples, batch_size, train, seed
        self.drop_last, self.world_size, self.rank, self.repeats = drop_last, world_size, rank, repeats
        self.epoch, self.position, self.resume_at = 0, 0, 0
        self.per_rank = len(self.order())

    def order(self) -> np.ndarray:
        """This rank's sample indices for the current epoch."""
        return epoch_order(self.num_samples, seed=self.seed, epoch=self.epoch, shuffle=self.train,
                           world_size=self.world_size, rank=self.rank, repeats=self.repeats if self.train else 1)

    def __len__(self) -> int:
        if self.drop_last:
            return self.per_rank // self.batch_size
        return math.ceil(self.per_rank / self.batch_size)

    def start_pass(self) -> int:
        """A new pass over the epoch starts at batch 0, or where load_state_dict said to resume."""
        self.position, self.resume_at = self.resume_at, 0
        return self.position

    def batch_slices(self) -> Iterator[tuple[int, np.ndarray]]:
        """(batch number, sample indices) from the pass's start to the end of the epoch."""
        self.start_pass()
        order = self.order()
        for batch in range(self.position, len(self)):
            yield batch, order[batch * self.batch_size:(batch + 1) * self.batch_size]

    def rng(self, batch: int) -> np.random.Generator:
        """The generator for every random choice in one batch, so a resumed batch is drawn identically."""
        return batch_rng(self.seed, self.epoch, self.rank, batch)


class EpochLoader:
    """set_epoch, len and a resumable position, shared by both loaders through their EpochSchedule, and the batch
    augmentation both run on the device."""

    schedule: EpochSchedule
    transform: TrainTransform | EvalTransform
    augment: AugmentConfig
    mix: bool
    num_classes: int

    def augment_batch(self, images: torch.Tensor, targets: torch.Tensor, rng: np.random.Generator) -> Batch:
        """uint8 images and their labels -> the model's input and targets (mixed, when mixing)."""
        images = self.transform(images, rng)
        if self.mix:
            images, targets = mix_batch(images, targets, self.num_classes, self.augment, rng)
        return images, targets

    def __len__(self) -> int:
        return len(self.schedule)

    def set_epoch(self, epoch: int) -> None:
        """Starts `epoch` from its first batch; the order is a pure function of (seed, epoch)."""
        self.schedule.epoch, self.schedule.position, self.schedule.resume_at = epoch, 0, 0

    def state_dict(self) -> dict[str, int]:
        """Where the loader is: the epoch and how many of its batches were handed out."""
        s = self.schedule
        return {"epoch": s.epoch, "batch": s.position, "batch_size": s.batch_size, "world_size": s.world_size,
                "num_samples": s.num_samples}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The next pass continues at the saved batch of the saved epoch; refuses a different batch layout."""
        s = self.schedule
        for key in ("batch_size", "world_size", "num_samples"):
            if key in state and state[key] != getattr(s, key):
                raise ValueError(f"loader state was saved with {key}={state[key]} but this loader has "
                                 f"{getattr(s, key)}; resume with the same dataset, batch size and world size")
        if not 0 <= state["batch"] <= len(s):
            raise ValueError(f"loader state is at batch {state['batch']} but an epoch has {len(s)} batches")
        s.epoch, s.position, s.resume_at = int(state["epoch"]), int(state["batch"]), int(state["batch"])


class TensorLoader(EpochLoader):
    """Batches of an in-memory dataset, gathered and augmented on `device` from one uint8 tensor."""

    def __init__(self, dataset: TensorImageDataset, transform: TrainTransform | EvalTransform,
                 augment: AugmentConfig, device: torch.device, mix: bool, **epoch: Any) -> None:
        self.schedule = EpochSchedule(len(dataset), **epoch)
        self.dataset, self.transform, self.augment, self.device, self.mix = dataset, transform, augment, device, mix
        self.images = dataset.images.to(device)
        self.labels = dataset.labels.to(device)
        self.num_classes = len(dataset.classes)

    def __iter__(self) -> Iterator[Batch]:
        schedule = self.schedule
        for batch, indices in schedule.batch_slices():
            where = torch.from_numpy(indices).to(self.device, non_blocking=True)
            images, targets = self.augment_batch(self.images[where], self.labels[where], schedule.rng(batch))
            schedule.position = batch + 1
            yield images, targets
        schedule.position = 0


class FolderItems(torch.utils.data.Dataset):
    """Worker-side work for one image: decode, then the per-image crop that needs the original size."""

    def __init__(self, dataset: ImageFolderDataset, img_size: tuple[int, int], crop: str, augment: AugmentConfig,
                 train: bool) -> None:
        self.dataset, self.img_size, self.crop, self.augment, self.train = dataset, img_size, crop, augment, train
        self.resample = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}[
            augment.interpolation]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor | None, int, tuple[str, str] | None]:
        index, sample_seed = item
        label = self.dataset.samples[index][1]
        try:
            image = self.dataset[index][0]
        except BadImageError as error:
            if not self.dataset.skip_bad_images:
                raise
            return None, label, (error.path, error.reason)
        height, width = self.img_size
        if self.train and self.crop == "rrc":
            rng = np.random.default_rng(sample_seed)
            top, left, box_h, box_w = sample_rrc_boxes(rng, 1, image.height, image.width, self.augment.scale,
                                                       self.augment.ratio)[0].tolist()
            image = image.resize((width, height), self.resample, box=(left, top, left + box_w, top + box_h))
        else:
            image = cover_and_center(image, scale_size(self.img_size, 1.0 if self.train else self.augment.crop_pct),
                                     self.img_size, self.resample)
        return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1), label, None


def cover_and_center(image: Image.Image, cover: tuple[int, int], size: tuple[int, int], resample: int) -> Image.Image:
    """Resizes (aspect kept) until `cover` fits inside, then cuts the centre `size` (timm's eval resize)."""
    scale = max(cover[0] / image.height, cover[1] / image.width)
    new_w, new_h = max(size[1], round(image.width * scale)), max(size[0], round(image.height * scale))
    left, top = (new_w - size[1]) // 2, (new_h - size[0]) // 2
    image = image.resize((new_w, new_h), resample)
    return image.crop((left, top, left + size[1], top + size[0]))


def collate(items: list) -> tuple[torch.Tensor, torch.Tensor, list[tuple[str, str]]]:
    """Stacks the decodable images and their targets (class labels, or masks); the unreadable ones
    (skip_bad_images) come back as (path, reason)."""
    good = [(image, target) for image, target, _ in items if image is not None]
    bad = [problem for image, _, problem in items if image is None]
    if not good:
        return torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.int64), bad
    targets = [g[1] for g in good]
    stacked = torch.stack(targets) if torch.is_tensor(targets[0]) else torch.tensor(targets, dtype=torch.int64)
    return torch.stack([g[0] for g in good]), stacked, bad


class EpochSampler(torch.utils.data.Sampler):
    """Feeds the DataLoader (index, per-sample seed) pairs of the schedule's epoch from its current position."""

    def __init__(self, schedule: EpochSchedule) -> None:
        self.schedule = schedule

    def _span(self) -> tuple[int, int]:
        s = self.schedule
        stop = len(s) * s.batch_size if s.drop_last else s.per_rank
        return s.position * s.batch_size, min(stop, s.per_rank)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        s = self.schedule
        order = s.order()
        seeds = sample_seeds(len(order), seed=s.seed, epoch=s.epoch, rank=s.rank)
        start, stop = self._span()
        return iter(zip(order[start:stop].tolist(), seeds[start:stop].tolist()))

    def __len__(self) -> int:
        start, stop = self._span()
        return max(0, stop - start)


def seed_worker(worker_id: int) -> None:
    """Seeds Python's and NumPy's generators in each worker from the seed torch gave it (seed + worker id)."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


class FolderLoader(EpochLoader):
    """Image-folder batches: workers decode and crop, the device does the rest; unreadable files are counted."""

    def __init__(self, dataset: ImageFolderDataset, transform: TrainTransform | EvalTransform,
                 augment: AugmentConfig, device: torch.device, mix: bool, img_size: tuple[int, int],
                 num_workers: int, items: type[torch.utils.data.Dataset] = FolderItems, **epoch: Any) -> None:
        """`items` is the worker-side work per file: FolderItems (an image and its label) or a class taking the
        same arguments that returns (image, target, problem) likewise (segmentation: the image and its mask)."""
        self.schedule = EpochSchedule(len(dataset), **epoch)
        self.dataset, self.transform, self.augment, self.device, self.mix = dataset, transform, augment, device, mix
        self.num_classes = len(dataset.classes)
        self.bad_images: dict[str, str] = {}
        crop = augment.crop_mode(None)
        # the sampler shares the schedule, not the loader: a reference cycle would stall worker shutdown
        self.loader = torch.utils.data.DataLoader(
            items(dataset, img_size, crop, augment, self.schedule.train), batch_size=self.schedule.batch_size,
            sampler=EpochSampler(self.schedule), num_workers=num_workers, collate_fn=collate,
            pin_memory=device.type == "cuda", persistent_workers=num_workers > 0, worker_init_fn=seed_worker,
            generator=torch.Generator().manual_seed(self.schedule.seed))

    def __iter__(self) -> Iterator[Batch]:
        schedule = self.schedule
        for batch, (images, labels, bad) in enumerate(self.loader, start=schedule.start_pass()):
            self.bad_images.update(bad)
            schedule.position = batch + 1
            if len(images) == 0:
                continue
            images, targets = self.augment_batch(images.to(self.device, non_blocking=True),
                                                 labels.to(self.device, non_blocking=True), schedule.rng(batch))
            yield images, targets
        schedule.position = 0

