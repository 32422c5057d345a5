"""Train and eval transforms of whole uint8 batches on their device: parameters are drawn per sample on the CPU
from one generator per batch (so a batch is a pure function of seed, epoch and position), pixels never leave
the device."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..preprocess import Preprocess
from . import ops
from .config import AugmentConfig
from .randaugment import parse_rand_augment, rand_augment

ERASE_AREA = (0.02, 1 / 3)
ERASE_LOG_RATIO = (math.log(0.3), math.log(1 / 0.3))
BLUR_SIGMA = (0.1, 2.0)
ATTEMPTS = 10


def to_float(images: torch.Tensor, in_chans: int) -> torch.Tensor:
    """uint8 [B, C, H, W] -> float in [0, 1], grayscale repeated to 3 channels when the model wants them."""
    x = images.float().div_(255)
    if x.shape[1] == 1 and in_chans == 3:
        x = x.repeat(1, 3, 1, 1)
    elif x.shape[1] != in_chans:
        raise ValueError(f"the model takes in_chans={in_chans} but the images have {x.shape[1]} channels; "
                         f"set model.in_chans={x.shape[1]} (grayscale data can feed in_chans=3, not the reverse)")
    return x


def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """(x - mean) / std per channel: the model sees data centred the way it was trained."""
    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean_t) / std_t


def sample_rrc_boxes(rng: np.random.Generator, count: int, height: int, width: int, scale: tuple[float, float],
                     ratio: tuple[float, float]) -> np.ndarray:
    """Random-resized-crop boxes (top, left, h, w): area fraction in `scale`, log-uniform aspect in `ratio`,
    the first of ten draws that fits, else the centre crop at the nearest allowed aspect."""
    area = rng.uniform(*scale, (count, ATTEMPTS)) * height * width
    aspect = np.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1]), (count, ATTEMPTS)))
    box_w = np.round(np.sqrt(area * aspect)).astype(np.int64)
    box_h = np.round(np.sqrt(area / aspect)).astype(np.int64)
    fits = (box_w > 0) & (box_h > 0) & (box_w <= width) & (box_h <= height)
    first = fits.argmax(1)
    found = fits.any(1)
    fallback_w, fallback_h = width, height
    if width / height < ratio[0]:
        fallback_h = int(round(width / ratio[0]))
    elif width / height > ratio[1]:
        fallback_w = int(round(height * ratio[1]))
    box_h = np.where(found, box_h[np.arange(count), first], fallback_h)
    box_w = np.where(found, box_w[np.arange(count), first], fallback_w)
    top = np.where(found, rng.integers(0, height - box_h + 1), (height - box_h) // 2)
    left = np.where(found, rng.integers(0, width - box_w + 1), (width - box_w) // 2)
    return np.stack([top, left, box_h, box_w], 1)


def sample_erase_boxes(rng: np.random.Generator, count: int, height: int, width: int,
                       area_share: float) -> tuple[np.ndarray, np.ndarray]:
    """Random-erasing boxes: 2-33% of the area (split over `re_count` boxes), aspect 0.3-3.3; first fit of ten."""
    area = rng.uniform(*ERASE_AREA, (count, ATTEMPTS)) * height * width * area_share
    aspect = np.exp(rng.uniform(*ERASE_LOG_RATIO, (count, ATTEMPTS)))
    box_h = np.round(np.sqrt(area * aspect)).astype(np.int64)
    box_w = np.round(np.sqrt(area / aspect)).astype(np.int64)
    fits = (box_h < height) & (box_w < width) & (box_h > 0) & (box_w > 0)
    first = fits.argmax(1)
    box_h, box_w = box_h[np.arange(count), first], box_w[np.arange(count), first]
    top = rng.integers(0, np.maximum(height - box_h, 0) + 1)
    left = rng.integers(0, np.maximum(width - box_w, 0) + 1)
    return np.stack([top, left, box_h, box_w], 1), fits.any(1)


def pad_offsets(rng: np.random.Generator, count: int, padding: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample (top, left) offsets of a crop of the original size out of a map padded by `padding`."""
    top, left = (rng.integers(0, 2 * padding + 1, count) for _ in range(2))
    return top, left


def pad_crop(x: torch.Tensor, padding: int, mode: str, rng: np.random.Generator) -> torch.Tensor:
    """Pads every side by `padding` and crops back to the original size at a per-sample random offset."""
    if padding == 0:
        return x
    padded = F.pad(x, (padding,) * 4, mode=mode)
    return ops.crop(padded, *pad_offsets(rng, x.shape[0], padding), tuple(x.shape[-2:]))


def three_augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """DeiT III's 3-Augment: each image gets one of grayscale, solarize (threshold 128) or Gaussian blur."""
    choice = rng.integers(3, size=x.shape[0])
    sigma = rng.uniform(*BLUR_SIGMA, x.shape[0])
    x = x.clone()
    for kind in range(3):
        where = ops.to_index(choice == kind, x.device)
        if where is None:
            continue
        picked = x[where]
        if kind == 0:
            x[where] = ops.grayscale(picked)
        elif kind == 1:
            x[where] = ops.solarize(picked, torch.full((len(where),), 128.0, device=x.device))
        else:
            x[where] = ops.gaussian_blur(picked, ops.as_tensor(sigma[choice == kind], picked))
    return x


def color_jitter(x: torch.Tensor, strength: float, rng: np.random.Generator) -> torch.Tensor:
    """Brightness, contrast and saturation, each by a per-sample factor in [1 - s, 1 + s] (in that order)."""
    factors = ops.as_tensor(rng.uniform(max(0.0, 1 - strength), 1 + strength, (3, x.shape[0])), x)
    return ops.color(ops.contrast(ops.brightness(x, factors[0]), factors[1]), factors[2])


def random_erase(x: torch.Tensor, prob: float, mode: str, count: int, rng: np.random.Generator) -> torch.Tensor:
    """Random erasing on a normalised batch: with probability `prob` an image gets `count` boxes filled with
    per-pixel normal noise ('pixel'), one normal value per channel ('rand') or zeros ('const')."""
    height, width = x.shape[-2:]
    erase = rng.random(x.shape[0]) < prob
    generator = torch.Generator(device=x.device).manual_seed(int(rng.integers(2**62)))
    x = x.clone()
    for _ in range(count):
        boxes, found = sample_erase_boxes(rng, x.shape[0], height, width, 1 / count)
        picked = erase & found
        where = ops.to_index(picked, x.device)
        if where is None:
            continue
        shape = (len(where), x.shape[1]) + ((height, width) if mode == "pixel" else (1, 1))
        fill = (torch.zeros(shape, device=x.device, dtype=x.dtype) if mode == "const" else
                torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype))
        x[where] = torch.where(ops.box_mask(boxes[picked], (height, width), x.device), fill, x[where])
    return x


class TrainTransform:
    """A training batch's journey on its device: crop, flip, RandAugment or 3-Augment, jitter, normalise, erase."""

    def __init__(self, cfg: AugmentConfig, img_size: tuple[int, int], source_size: tuple[int, int] | None,
                 preprocess: Preprocess, in_chans: int, cropped: bool = False) -> None:
        self.cfg, self.img_size, self.in_chans = cfg, tuple(img_size), in_chans
        self.mean, self.std = preprocess.mean, preprocess.std
        self.crop = cfg.crop_mode(source_size)
        self.cropped = cropped  # image-folder workers already did the per-image crop (rrc) or resize
        self.rand_augment = parse_rand_augment(cfg.auto_augment) if cfg.auto_augment else None

    def __call__(self, images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        x = self._geometry(to_float(images, self.in_chans), rng)
        if self.cfg.hflip > 0:
            x = ops.hflip(x, rng.random(x.shape[0]) < self.cfg.hflip)
        return self.photometric(x, rng)

    def photometric(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """The steps after crop and flip, which change pixel values but move none (segmentation masks skip them)."""
        cfg = self.cfg
        if self.rand_augment is not None:
            x = rand_augment(x, self.rand_augment, rng, torch.tensor(self.mean, device=x.device).expand(x.shape[1]))
        if cfg.three_augment:
            x = three_augment(x, rng)
        if cfg.jitter > 0:
            x = color_jitter(x, cfg.jitter, rng)
        x = normalize(x, self.mean, self.std)
        if cfg.re_prob > 0:
            x = random_erase(x, cfg.re_prob, cfg.re_mode, cfg.re_count, rng)
        return x

    def _geometry(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        if self.crop == "rrc" and not self.cropped:
            boxes = sample_rrc_boxes(rng, x.shape[0], x.shape[-2], x.shape[-1], self.cfg.scale, self.cfg.ratio)
            return ops.resized_crop(x, boxes, self.img_size, self.cfg.interpolation)
        x = ops.resize(x, self.img_size, self.cfg.interpolation)
        if self.crop == "pad":
            x = pad_crop(x, self.cfg.padding, self.cfg.padding_mode, rng)
        return x


class EvalTransform:
    """Eval batches as the model's preprocessing says: resize to img_size / crop_pct, centre crop, normalise
    (timm's eval recipe); `cropped` batches were already resized and cropped image by image (folders, files)."""

    def __init__(self, img_size: tuple[int, int], preprocess: Preprocess, in_chans: int, cropped: bool = False) -> None:
        self.img_size, self.preprocess, self.in_chans, self.cropped = tuple(img_size), preprocess, in_chans, cropped

    def __call__(self, images: torch.Tensor, rng: np.random.Generator | None = None) -> torch.Tensor:
        x, prep = to_float(images, self.in_chans), self.preprocess
        if not self.cropped:
            x = ops.center_crop(ops.resize(x, scale_size(self.img_size, prep.crop_pct), prep.interpolation),
                                self.img_size)
        return normalize(x, prep.mean, prep.std)


def scale_size(img_size: tuple[int, int], crop_pct: float) -> tuple[int, int]:
    """The size resized to before the centre crop: floor(img_size / crop_pct), as timm."""
    return math.floor(img_size[0] / crop_pct), math.floor(img_size[1] / crop_pct)
