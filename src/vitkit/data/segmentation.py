"""Segmentation data for training and evaluation: datasets named by a spec, and loaders that augment each image and
its mask with the same crop and flip (masks resampled by nearest neighbour, padding labelled ignore), the image alone
then getting the photometric steps.

Specs: 'segfolder:PATH' (see segfolder.py) and 'synthseg[:SHARED][?seed=0&size=64&train=10000&test=2000]', the
synthetic set of Fashion-MNIST items on CIFAR-10 photographs built from SHARED/datasets (default ../shared)."""
from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..preprocess import Preprocess
from . import ops
from .config import AugmentConfig
from .loader import Batch, EpochSchedule, FolderItems, FolderLoader, TensorLoader
from .segfolder import IGNORE_INDEX, SegmentationFolderDataset, load_segmentation_folder
from .synthetic_seg import SyntheticSegmentation, make_synthetic_segmentation
from .transforms import EvalTransform, TrainTransform, normalize, pad_offsets, sample_rrc_boxes, to_float

SegmentationDataset = SegmentationFolderDataset | SyntheticSegmentation
SYNTHSEG_ROOT = "../shared"
SYNTHSEG_OPTIONS = {"seed": 0, "size": 64, "train": 10000, "test": 2000}


def build_segmentation_dataset(spec: str, split: str | None = None, seed: int = 0,
                               val_fraction: float = 0.2) -> SegmentationDataset:
    """'segfolder:PATH' (split None: the whole folder) or 'synthseg...' (split None: train)."""
    spec = spec.strip()
    kind = spec.partition(":")[0].partition("?")[0].lower()
    if split not in (None, "train", "test"):
        raise ValueError(f"split={split!r} is not one of ('train', 'test')")
    if kind == "segfolder":
        path = spec.partition(":")[2]
        if not path:
            raise ValueError(f"{spec!r}: a segmentation folder is named 'segfolder:PATH'")
        return load_segmentation_folder(Path(path).expanduser(), split, seed, val_fraction)
    if kind == "synthseg":
        root, options = synthseg_options(spec[len(kind):])
        return synthseg_dataset(root, split or "train", **options)
    raise ValueError(f"unknown segmentation dataset {spec!r}; known: 'segfolder:PATH', "
                     "'synthseg[:SHARED][?seed=0&size=64&train=10000&test=2000]'")


def synthseg_options(rest: str) -> tuple[Path, dict[str, int]]:
    """The shared folder and the generator's options from what follows 'synthseg': ':SHARED?key=value&...'."""
    path, _, query = rest.removeprefix(":").partition("?")
    options = dict(SYNTHSEG_OPTIONS)
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if key not in options:
            raise ValueError(f"synthseg: unknown option {key!r}; options: {', '.join(SYNTHSEG_OPTIONS)}")
        try:
            options[key] = int(value)
        except ValueError:
            raise ValueError(f"synthseg: {key}={value!r} must be a whole number") from None
    return Path(path or SYNTHSEG_ROOT).expanduser(), options


def synthseg_dataset(root: Path, split: str, seed: int, size: int, train: int, test: int) -> SyntheticSegmentation:
    """The split's synthetic set from root/datasets/{fashion-mnist, cifar10}: the train split pastes training
    items on training photographs, the test split test items on test photographs."""
    fashion, cifar = root / "datasets" / "fashion-mnist", root / "datasets" / "cifar10" / "cifar-10-batches-py"
    for folder in (fashion, cifar):
        if not folder.is_dir():
            raise ValueError(f"synthseg: {folder} does not exist; pass the folder holding datasets/fashion-mnist and "
                             "datasets/cifar10/cifar-10-batches-py, e.g. synthseg:/work/shared")
    data = make_synthetic_segmentation(fashion, cifar, train if split == "train" else test, seed=seed, split=split,
                                       size=size)
    data.spec = f"synthseg:{root}?seed={seed}&size={size}&train={train}&test={test}"
    return data


# ----- paired augmentation -----------------------------------------------------------------------------------------
def check_augment(augment: AugmentConfig) -> None:
    """Refuses what would move image pixels away from their labels or blend labels."""
    if augment.mixes:
        raise ValueError("augment.mixup_alpha / cutmix_alpha: mixing images mixes their masks' labels, which pixel "
                         "cross-entropy does not take; set both to 0 for segmentation")
    if augment.auto_augment:
        raise ValueError(f"augment.auto_augment={augment.auto_augment!r}: RandAugment's rotations, shears and "
                         "translations would move the image away from its mask; use crop, hflip, color_jitter or "
                         "three_augment for segmentation")


def resize_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """int64 [B, H, W] -> [B, *size] by nearest neighbour (pixel centres, as PIL's NEAREST)."""
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    return F.interpolate(masks[:, None].float(), size=size, mode="nearest-exact")[:, 0].long()


class PairTrainTransform(TrainTransform):
    """TrainTransform's crop and flip applied to the image and its mask alike, then its photometric steps to the
    image alone. `cropped` batches were cropped file by file (rrc) or resized already (segmentation folders)."""

    def __call__(self, images: torch.Tensor, masks: torch.Tensor, rng: np.random.Generator) -> Batch:
        x, masks = self._paired_geometry(to_float(images, self.in_chans), masks, rng)
        if self.cfg.hflip > 0:
            flip = rng.random(x.shape[0]) < self.cfg.hflip
            x, masks = ops.hflip(x, flip), ops.hflip(masks[:, None], flip)[:, 0]
        return self.photometric(x, rng), masks

    def _paired_geometry(self, x: torch.Tensor, masks: torch.Tensor, rng: np.random.Generator) -> Batch:
        if self.crop == "rrc" and not self.cropped:
            boxes = sample_rrc_boxes(rng, x.shape[0], x.shape[-2], x.shape[-1], self.cfg.scale, self.cfg.ratio)
            labels = ops.resized_crop(masks[:, None].float(), boxes, self.img_size, "nearest")
            return ops.resized_crop(x, boxes, self.img_size, self.cfg.interpolation), labels[:, 0].long()
        x, masks = ops.resize(x, self.img_size, self.cfg.interpolation), resize_masks(masks, self.img_size)
        padding = self.cfg.padding
        if self.crop == "pad" and padding:
            top, left = pad_offsets(rng, x.shape[0], padding)
            x = ops.crop(F.pad(x, (padding,) * 4, mode=self.cfg.padding_mode), top, left, self.img_size)
            padded = F.pad(masks[:, None], (padding,) * 4, value=IGNORE_INDEX)
            masks = ops.crop(padded, top, left, self.img_size)[:, 0]
        return x, masks


class PairEvalTransform(EvalTransform):
    """The whole image resized to the model's input (no centre crop: every pixel is scored), its mask likewise by
    nearest neighbour; normalised as the model's preprocessing says."""

    def __call__(self, images: torch.Tensor, masks: torch.Tensor, rng: np.random.Generator | None = None) -> Batch:
        x = whole_image_input(images, self.img_size, self.preprocess, self.in_chans)
        return x, resize_masks(masks, self.img_size)


def whole_image_input(images: torch.Tensor, img_size: tuple[int, int], preprocess: Preprocess,
                      in_chans: int) -> torch.Tensor:
    """uint8 [B, C, H, W] -> the model's normalised input: the whole image resized to img_size (no crop)."""
    x = ops.resize(to_float(images, in_chans), img_size, preprocess.interpolation)
    return normalize(x, preprocess.mean, preprocess.std)


# ----- loaders -----------------------------------------------------------------------------------------------------
class PairMixin:
    """Both pair loaders hand the images and masks to the paired transform together."""

    def augment_batch(self, images: torch.Tensor, masks: torch.Tensor, rng: np.random.Generator) -> Batch:
        return self.transform(images, masks, rng)


class PairTensorLoader(PairMixin, TensorLoader):
    """Batches of an in-memory segmentation set, gathered and augmented on `device` (the masks are its labels)."""

    def __init__(self, dataset: SyntheticSegmentation, transform: PairTrainTransform | PairEvalTransform,
                 device: torch.device, **epoch: Any) -> None:
        self.schedule = EpochSchedule(len(dataset), **epoch)
        self.transform, self.device = transform, device
        self.images, self.labels = dataset.images.to(device), dataset.masks.to(device)


class PairFolderItems(FolderItems):
    """Worker-side work for one pair: decode both, then the training crop (image resampled as configured, mask by
    nearest neighbour) or the resize to the model's input."""

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, None]:
        index, sample_seed = item
        image, mask = self.dataset.load_pair(index)
        height, width = self.img_size
        box = None
        if self.train and self.crop == "rrc":
            rng = np.random.default_rng(sample_seed)
            top, left, box_h, box_w = sample_rrc_boxes(rng, 1, image.height, image.width, self.augment.scale,
                                                       self.augment.ratio)[0].tolist()
            box = (left, top, left + box_w, top + box_h)
        image = image.resize((width, height), self.resample, box=box)
        mask = mask.resize((width, height), Image.Resampling.NEAREST, box=box)
        return (torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1),
                torch.from_numpy(np.asarray(mask).astype(np.int64)), None)


class PairFolderLoader(PairMixin, FolderLoader):
    """Segmentation-folder batches: workers decode, crop and resize each pair, the device flips and colours."""


def build_segmentation_loader(dataset: SegmentationDataset, batch_size: int, train: bool, augment: AugmentConfig,
                              img_size: tuple[int, int], preprocess: Preprocess, in_chans: int = 3,
                              device: str | torch.device = "cpu", seed: int = 0, drop_last: bool | None = None,
                              num_workers: int = 2, world_size: int = 1,
                              rank: int = 0) -> PairTensorLoader | PairFolderLoader:
    """Batches of (float normalised images [B, C, H, W], int64 masks [B, H, W]) on `device`, both at img_size;
    random crop and flip (train=True) move image and mask alike."""
    check_augment(augment)
    size = tuple(img_size)
    folder = isinstance(dataset, SegmentationFolderDataset)
    if train:
        transform = PairTrainTransform(augment, size, dataset.image_size, preprocess, in_chans, cropped=folder)
    else:
        transform = PairEvalTransform(size, preprocess, in_chans)
    epoch = dict(batch_size=batch_size, train=train, seed=seed, drop_last=train if drop_last is None else drop_last,
                 world_size=world_size, rank=rank, repeats=augment.repeated_aug)
    device = torch.device(device)
    if folder:
        return PairFolderLoader(dataset, transform, augment, device, False, size, num_workers, items=PairFolderItems,
                                **epoch)
    return PairTensorLoader(dataset, transform, device, **epoch)
