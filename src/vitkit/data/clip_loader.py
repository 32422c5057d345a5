"""Batches of clips [B, C, T, H, W] for video models: the model's T frames cut from each clip (a random start when
training, the centre at evaluation), the same crop and flip for every frame of a clip (a flip relabels the clip as
its dataset's mirror map says), normalised per channel. Runs on the device like TensorLoader."""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch

from ..preprocess import Preprocess
from . import ops
from .clips import ClipDataset
from .config import AugmentConfig
from .loader import EpochLoader, EpochSchedule
from .mixup import mix_batch
from .transforms import normalize, pad_crop, to_float

IMAGE_ONLY = ("auto_augment", "three_augment", "color_jitter", "re_prob")


class ClipTransform:
    """uint8 clips [B, L, C, H, W] and labels -> normalised float clips [B, T, C, H, W] and labels."""

    def __init__(self, cfg: AugmentConfig, num_frames: int, img_size: tuple[int, int], preprocess: Preprocess,
                 in_chans: int, train: bool, mirror: list[int] | None, source_size: tuple[int, int]) -> None:
        used = [name for name in IMAGE_ONLY if getattr(cfg, name) not in (None, False, 0, 0.0)]
        if train and (used or cfg.crop == "rrc"):
            raise ValueError(f"augment.{', augment.'.join(used or ['crop=rrc'])}: clip batches take temporal crops, "
                             "pad-and-crop, flips and mixup/cutmix only; turn these off for a video model")
        self.cfg, self.num_frames, self.img_size, self.in_chans, self.train = cfg, num_frames, img_size, in_chans, train
        self.preprocess = preprocess
        # 'auto' pads and crops small frames; larger ones are only resized (no random-resized crop of clips)
        self.crop = "none" if cfg.crop_mode(source_size) == "rrc" else cfg.crop_mode(source_size)
        self.mirror = torch.tensor(mirror) if mirror is not None else None

    def starts(self, count: int, length: int, rng: np.random.Generator) -> np.ndarray:
        """Each clip's first frame: uniform over the clip when training, the centred window otherwise."""
        if self.train:
            return rng.integers(0, length - self.num_frames + 1, count)
        return np.full(count, (length - self.num_frames) // 2)

    def __call__(self, clips: torch.Tensor, labels: torch.Tensor,
                 rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        batch, length = clips.shape[:2]
        frames = torch.from_numpy(self.starts(batch, length, rng)[:, None] + np.arange(self.num_frames))
        clips = clips[torch.arange(batch)[:, None], frames.to(clips.device)]  # [B, T, C, H, W]
        x = to_float(clips.flatten(0, 1), self.in_chans)
        x = ops.resize(x, self.img_size, self.preprocess.interpolation)
        x = x.reshape(batch, -1, *x.shape[-2:])  # [B, T*C, H, W]: one crop and one flip per clip
        if self.train and self.crop == "pad":
            x = pad_crop(x, self.cfg.padding, self.cfg.padding_mode, rng)
        if self.train and self.cfg.hflip > 0:
            flip = rng.random(batch) < self.cfg.hflip
            x = ops.hflip(x, flip)
            if self.mirror is not None:
                flipped = torch.from_numpy(flip).to(labels.device)
                labels = torch.where(flipped, self.mirror.to(labels.device)[labels], labels)
        x = normalize(x.reshape(batch * self.num_frames, -1, *x.shape[-2:]), self.preprocess.mean, self.preprocess.std)
        return x.reshape(batch, self.num_frames, -1, *x.shape[-2:]), labels


class ClipLoader(EpochLoader):
    """Batches of an in-memory clip dataset, gathered and transformed on `device`; mixup/cutmix mix whole clips."""

    def __init__(self, dataset: ClipDataset, transform: ClipTransform, augment: AugmentConfig,
                 device: torch.device, mix: bool, **epoch: Any) -> None:
        self.schedule = EpochSchedule(len(dataset), **epoch)
        self.dataset, self.transform, self.augment, self.device, self.mix = dataset, transform, augment, device, mix
        self.clips = dataset.clips.to(device)
        self.labels = dataset.labels.to(device)
        self.num_classes = len(dataset.classes)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        schedule = self.schedule
        for batch, indices in schedule.batch_slices():
            where = torch.from_numpy(indices).to(self.device, non_blocking=True)
            rng = schedule.rng(batch)
            clips, targets = self.transform(self.clips[where], self.labels[where], rng)
            if self.mix:
                mixed, targets = mix_batch(clips.flatten(1, 2), targets, self.num_classes, self.augment, rng)
                clips = mixed.reshape(clips.shape)
            schedule.position = batch + 1
            yield clips.transpose(1, 2), targets  # [B, C, T, H, W]
        schedule.position = 0


def build_clip_loader(dataset: ClipDataset, augment: AugmentConfig, img_size: tuple[int, int], num_frames: int,
                      device: torch.device, in_chans: int, preprocess: Preprocess, mix: bool, train: bool,
                      **epoch: Any) -> ClipLoader:
    """The loader of a clip dataset for a video model of `num_frames` frames of `img_size`."""
    if num_frames > dataset.num_frames:
        raise ValueError(f"{dataset.name}: its clips hold {dataset.num_frames} frames, fewer than the model's "
                         f"num_frames={num_frames}; set model.num_frames to at most {dataset.num_frames} or use "
                         "longer clips")
    transform = ClipTransform(augment, num_frames, img_size, preprocess, in_chans, train, dataset.mirror,
                              dataset.image_size)
    return ClipLoader(dataset, transform, augment, device, mix, train=train, **epoch)
