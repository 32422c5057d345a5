"""RandAugment from timm-style strings (`rand-m9-mstd0.5-inc1`), applied per sample to whole batches.

Each of `n` layers draws, for every image on its own, one of 15 operations, whether to apply it (probability p)
and a magnitude (m, plus Gaussian noise of std `mstd`, clipped to [0, mmax]); images that drew the same
operation are processed together. Levels follow timm's RandAugment (magnitude / 10 of each op's range).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch

from . import ops

OPS = ("auto_contrast", "equalize", "invert", "rotate", "posterize", "solarize", "solarize_add", "color",
       "contrast", "brightness", "sharpness", "shear_x", "shear_y", "translate_x", "translate_y")
GEOMETRIC = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
_GEOMETRIC_OPS = np.array(sorted(OPS.index(name) for name in GEOMETRIC))
_GEOMETRIC_KIND = np.array([GEOMETRIC.index(OPS[i]) for i in _GEOMETRIC_OPS])
LEVEL_DENOM = 10.0
_KEYS = ("m", "n", "mstd", "mmax", "inc", "p")


@dataclass(frozen=True)
class RandAugmentSpec:
    """A parsed RandAugment string; defaults are timm's ('rand' alone is m10, n2, p0.5)."""

    magnitude: float = 10.0
    num_layers: int = 2
    magnitude_std: float = 0.0
    magnitude_max: float = 10.0
    increasing: bool = False
    prob: float = 0.5


def parse_rand_augment(text: str) -> RandAugmentSpec:
    """'rand-m9-n2-mstd0.5-mmax10-inc1-p0.5' -> RandAugmentSpec; an unknown or malformed part is named."""
    head, *parts = text.split("-")
    if head != "rand":
        raise ValueError(f"augment.auto_augment={text!r}: only RandAugment strings are supported, "
                         "e.g. 'rand-m9-mstd0.5-inc1' (parts: m, n, mstd, mmax, inc, p)")
    values = {}
    for part in parts:
        match = re.fullmatch(r"([a-z]+)([0-9.]+|inf)", part)
        if not match or match.group(1) not in _KEYS:
            raise ValueError(f"augment.auto_augment={text!r}: cannot read {part!r}; "
                             f"known parts are {', '.join(k + '<number>' for k in _KEYS)}")
        key, raw = match.groups()
        try:
            values[key] = float(raw)
        except ValueError:
            raise ValueError(f"augment.auto_augment={text!r}: {part!r} needs a number after {key!r}") from None
    spec = RandAugmentSpec(magnitude=values.get("m", 10.0), num_layers=int(values.get("n", 2)),
                           magnitude_std=values.get("mstd", 0.0), magnitude_max=values.get("mmax", 10.0),
                           increasing=bool(values.get("inc", 0)), prob=values.get("p", 0.5))
    if spec.num_layers < 1 or spec.num_layers != values.get("n", 2) or not 0 <= spec.prob <= 1 or spec.magnitude < 0:
        raise ValueError(f"augment.auto_augment={text!r}: n must be a whole number >= 1, p in [0, 1] and m >= 0")
    return spec


def sample_magnitudes(spec: RandAugmentSpec, rng: np.random.Generator, count: int) -> np.ndarray:
    """Per-sample magnitudes: m, jittered by mstd (uniform in [0, m] when mstd is inf), clipped to [0, mmax]."""
    if spec.magnitude_std == math.inf:
        magnitude = rng.uniform(0, spec.magnitude, count)
    elif spec.magnitude_std > 0:
        magnitude = rng.normal(spec.magnitude, spec.magnitude_std, count)
    else:
        magnitude = np.full(count, spec.magnitude)
    return np.clip(magnitude, 0, spec.magnitude_max)


def rand_augment(x: torch.Tensor, spec: RandAugmentSpec, rng: np.random.Generator, fill: torch.Tensor) -> torch.Tensor:
    """Applies spec.num_layers layers of per-sample random operations to a float batch in [0, 1]."""
    count = x.shape[0]
    for _ in range(spec.num_layers):
        chosen = rng.integers(len(OPS), size=count)
        active = rng.random(count) < spec.prob
        level = sample_magnitudes(spec, rng, count) / LEVEL_DENOM
        sign = np.where(rng.random(count) < 0.5, -1.0, 1.0)
        x = _apply_layer(x, np.where(active, chosen, -1), level, sign, spec.increasing, fill)
    return x


def _apply_layer(x: torch.Tensor, chosen: np.ndarray, level: np.ndarray, sign: np.ndarray, increasing: bool,
                 fill: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    geometric = np.isin(chosen, _GEOMETRIC_OPS)
    where = ops.to_index(geometric, x.device)
    if where is not None:
        kinds = np.searchsorted(_GEOMETRIC_OPS, chosen[geometric])
        matrices = affine_matrices(_GEOMETRIC_KIND[kinds], level[geometric], sign[geometric], x.shape[-2:])
        x[where] = ops.affine(x[where], ops.as_tensor(matrices, x), fill)
    for index, name in enumerate(OPS):
        if name in GEOMETRIC:
            continue
        selected = chosen == index
        where = ops.to_index(selected, x.device)
        if where is not None:
            x[where] = _photometric(name, x[where], level[selected], sign[selected], increasing)
    return x


def _photometric(name: str, x: torch.Tensor, level: np.ndarray, sign: np.ndarray, increasing: bool) -> torch.Tensor:
    """One photometric op with timm's level-to-argument mapping (increasing variants when inc1)."""
    if name == "auto_contrast":
        return ops.auto_contrast(x)
    if name == "equalize":
        return ops.equalize(x)
    if name == "invert":
        return ops.invert(x)
    if name == "posterize":
        bits = (level * 4).astype(np.int64)
        return ops.posterize(x, torch.from_numpy(4 - bits if increasing else bits).to(x.device))
    if name == "solarize":
        threshold = (level * 256).astype(np.int64)
        return ops.solarize(x, ops.as_tensor(256 - threshold if increasing else threshold, x))
    if name == "solarize_add":
        return ops.solarize_add(x, ops.as_tensor((level * 110).astype(np.int64), x))
    factor = 1.0 + sign * level * 0.9 if increasing else level * 1.8 + 0.1
    blend = {"color": ops.color, "contrast": ops.contrast, "brightness": ops.brightness, "sharpness": ops.sharpness}
    return blend[name](x, ops.as_tensor(factor, x))


def affine_matrices(kinds: np.ndarray, level: np.ndarray, sign: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Source-to-destination 2x3 pixel matrices for GEOMETRIC[kind]: rotate up to 30 degrees about the centre,
    shear up to 0.3, translate up to 45% of the side, each scaled by the level and given a random sign."""
    height, width = size
    amount = level * sign
    matrices = np.tile(np.eye(2, 3), (len(kinds), 1, 1))
    rotate = kinds == GEOMETRIC.index("rotate")
    angle = np.radians(30 * amount[rotate])
    cos, sin = np.cos(angle), np.sin(angle)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    matrices[rotate] = np.stack([np.stack([cos, sin, (1 - cos) * cx - sin * cy], -1),
                                 np.stack([-sin, cos, sin * cx + (1 - cos) * cy], -1)], 1)
    for name, row, col, scale in (("shear_x", 0, 1, 0.3), ("shear_y", 1, 0, 0.3),
                                  ("translate_x", 0, 2, 0.45 * width), ("translate_y", 1, 2, 0.45 * height)):
        picked = kinds == GEOMETRIC.index(name)
        matrices[picked, row, col] = -scale * amount[picked]
    return matrices
