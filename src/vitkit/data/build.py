"""`build_loader`: the one call the training engine makes to turn a dataset into device-ready batches."""
from __future__ import annotations

from typing import Any

import torch

from ..preprocess import Preprocess
from .base import TensorImageDataset
from .clip_loader import ClipLoader, build_clip_loader
from .clips import ClipDataset
from .config import AugmentConfig
from .folder import ImageFolderDataset
from .loader import FolderLoader, TensorLoader
from .transforms import EvalTransform, TrainTransform


def build_loader(dataset: TensorImageDataset | ImageFolderDataset | ClipDataset, batch_size: int, train: bool,
                 augment: AugmentConfig | dict[str, Any] | None = None,
                 img_size: int | tuple[int, int] | None = None, device: str | torch.device = "cpu", seed: int = 0,
                 drop_last: bool | None = None, num_workers: int = 2, world_size: int = 1, rank: int = 0,
                 in_chans: int | None = None, preprocess: Preprocess | None = None,
                 num_frames: int | None = None) -> TensorLoader | FolderLoader | ClipLoader:
    """Batches of (float normalised images [B, C, H, W] on `device`, int64 labels or soft targets when mixing);
    for a video model (num_frames set) and a clip dataset, clips [B, C, T, H, W] (data/clip_loader.py).

    img_size defaults to the dataset's own size; in_chans=3 repeats grayscale data to three channels;
    drop_last defaults to `train`. `preprocess` is how the model takes images (a checkpoint's own, to evaluate it):
    its mean/std normalise every batch and its crop_pct/interpolation make the eval resize and centre crop; by
    default the dataset's mean/std with the augment config's crop_pct and interpolation.
    Mixup/CutMix, repeated augmentation and all random transforms apply only when train=True."""
    if (num_frames is not None) != isinstance(dataset, ClipDataset):
        raise ValueError(f"{dataset.name} holds clips: train a video model on it (model.family: video)"
                         if num_frames is None else f"a video model takes clips, and {dataset.name} holds images; "
                         "use a clip dataset (clipfolder:PATH or moving-fashion:PATH)")
    if augment is None:
        augment = AugmentConfig()
    elif isinstance(augment, dict):
        augment = AugmentConfig.from_dict(augment)
    folder = isinstance(dataset, ImageFolderDataset)
    if img_size is None:
        if folder:
            raise ValueError("image folders hold images of many sizes: pass img_size (e.g. the model's 224)")
        img_size = dataset.image_size
    size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    in_chans = dataset.num_channels if in_chans is None else in_chans
    if preprocess is None:
        preprocess = Preprocess(tuple(dataset.mean), tuple(dataset.std), augment.interpolation, augment.crop_pct)
    if len(preprocess.mean) == 1:  # gray statistics serve any channel count; an RGB set's must match (checked later)
        preprocess = preprocess.for_channels(in_chans)
    epoch = dict(batch_size=batch_size, train=train, seed=seed, drop_last=train if drop_last is None else drop_last,
                 world_size=world_size, rank=rank, repeats=augment.repeated_aug)
    device = torch.device(device)
    mix = train and augment.mixes
    if num_frames is not None:
        return build_clip_loader(dataset, augment, size, num_frames, device, in_chans, preprocess, mix, **epoch)
    if train:
        transform = TrainTransform(augment, size, dataset.image_size, preprocess, in_chans, cropped=folder)
    else:
        transform = EvalTransform(size, preprocess, in_chans, cropped=folder)
    if folder:
        return FolderLoader(dataset, transform, augment, device, mix, size, num_workers, **epoch)
    return TensorLoader(dataset, transform, augment, device, mix, **epoch)
