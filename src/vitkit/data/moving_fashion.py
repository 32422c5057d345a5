"""Moving Fashion-MNIST, the clip task that needs time: one Fashion-MNIST item moving in a straight line at constant
speed in one of 8 compass directions, inside the frame from the first frame to the last (no bounces), optionally
beside a second item that stays still; the label is the direction. Every clip follows from the seed.

Why it needs time: the frames as an unordered set show the line the item moves along but not which way, so a model
that averages frames can at best name the axis and guess the sign (about 50 %); telling east from west needs the
order. The item's class (and the distractor's) is recorded per clip for a second label."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import coerce_fields, parse_overrides
from .base import channel_stats
from .clips import ClipDataset
from .idx import load_idx_dataset

DIRECTIONS = ("E", "NE", "N", "NW", "W", "SW", "S", "SE")  # direction k moves at 45k degrees, counter-clockwise
MIRROR = [(4 - k) % 8 for k in range(8)]  # left-right flip: 180 - 45k degrees
ITEM = 28
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class MovingFashionParams:
    """How the splits are made: `frames` per generated sequence (a loader cuts the model's clip from them: random
    starts when training), frames of `size` pixels, speeds uniform in `speed` pixels per frame, the clips in each
    split, a still distractor item or not, and which label the clips carry."""

    seed: int = 0
    frames: int = 18
    size: int = 64
    speed: tuple[float, float] = (1.0, 2.0)
    train_clips: int = 10_000
    test_clips: int = 2_000
    distractor: bool = False
    label: str = "direction"

    def __post_init__(self) -> None:
        object.__setattr__(self, "speed", tuple(float(s) for s in self.speed))
        if self.label not in ("direction", "item"):
            raise ValueError(f"label={self.label!r} is not one of ('direction', 'item')")
        if len(self.speed) != 2 or not 0 < self.speed[0] <= self.speed[1]:
            raise ValueError(f"speed={self.speed}: give (slowest, fastest) pixels per frame, 0 < slowest <= fastest")
        room = self.size - ITEM
        if self.frames < 2 or room < 1 or self.speed[1] * (self.frames - 1) > room:
            raise ValueError(f"an item ({ITEM} px) moving up to {self.speed[1]} px per frame for {self.frames} frames "
                             f"travels {self.speed[1] * (self.frames - 1):g} px, more than the {room} px a {self.size} "
                             "px frame leaves it; lower speed or frames, or raise size")
        if min(self.train_clips, self.test_clips) < 1:
            raise ValueError(f"train_clips={self.train_clips} and test_clips={self.test_clips} must be at least 1")

    def clips_in(self, split: str) -> int:
        return self.train_clips if split == "train" else self.test_clips


@dataclass
class Tracks:
    """What each clip shows: direction, speed (px/frame), the item's first top-left corner (x, y), the item's and the
    distractor's index into the Fashion-MNIST split and their classes, the distractor's corner (-1: none)."""

    direction: np.ndarray
    speed: np.ndarray
    start: np.ndarray
    item: np.ndarray
    item_class: np.ndarray
    distractor: np.ndarray
    distractor_class: np.ndarray
    distractor_at: np.ndarray


def velocity(direction: np.ndarray, speed: np.ndarray) -> np.ndarray:
    """(dx, dy) per frame in image coordinates (y grows downwards, so north is -y)."""
    angle = np.deg2rad(45.0 * direction)
    return np.stack([speed * np.cos(angle), -speed * np.sin(angle)], axis=-1)


def draw_tracks(params: MovingFashionParams, split: str, items: int, labels: np.ndarray) -> Tracks:
    """Draws every clip's motion and items from the seed (the test split from its own stream)."""
    rng = np.random.default_rng([params.seed, ("train", "test").index(split)])
    count, room = params.clips_in(split), params.size - ITEM
    direction = rng.integers(0, 8, count)
    speed = rng.uniform(*params.speed, count)
    travel = velocity(direction, speed) * (params.frames - 1)
    low, high = np.maximum(0.0, -travel), np.minimum(room, room - travel)  # both ends of the track inside
    start = low + rng.random((count, 2)) * (high - low)
    item = rng.integers(0, items, count)
    distractor = rng.integers(0, items, count) if params.distractor else np.full(count, -1)
    at = rng.integers(0, room + 1, (count, 2)) if params.distractor else np.full((count, 2), -1)
    return Tracks(direction, speed, start, item, labels[item], distractor,
                  np.where(distractor >= 0, labels[np.maximum(distractor, 0)], -1), at)


def render(items: np.ndarray, tracks: Tracks, frames: int, size: int, chunk: int = 64) -> np.ndarray:
    """uint8 clips [N, frames, size, size]: each item bilinearly placed at its sub-pixel position in every frame
    (its mass kept), the still distractor combined by the brighter pixel."""
    count = len(tracks.direction)
    clips = np.empty((count, frames, size, size), dtype=np.uint8)
    steps, span, side = np.arange(frames), np.arange(ITEM + 1), size + 1  # one spare row and column for the spill
    for first in range(0, count, chunk):
        picked = slice(first, min(first + chunk, count))
        place = tracks.start[picked, None] + steps[:, None] * velocity(tracks.direction[picked],
                                                                      tracks.speed[picked])[:, None]  # [n, T, (x, y)]
        place = place.reshape(-1, 2)
        corner = np.floor(place).astype(np.int64)
        fraction = place - corner
        item = np.repeat(items[tracks.item[picked]].astype(np.float32), frames, axis=0)  # [n*T, 28, 28]
        box = np.zeros((len(place), ITEM + 1, ITEM + 1), dtype=np.float32)  # the item shifted by its fraction
        for dy in (0, 1):
            for dx in (0, 1):
                weight = (fraction[:, 0] if dx else 1 - fraction[:, 0]) * (fraction[:, 1] if dy else 1 - fraction[:, 1])
                box[:, dy:dy + ITEM, dx:dx + ITEM] += weight[:, None, None].astype(np.float32) * item
        where = ((corner[:, 1, None] + span)[:, :, None] * side + (corner[:, 0, None] + span)[:, None, :])
        canvas = np.zeros((len(place), side * side), dtype=np.float32)
        canvas[np.arange(len(place))[:, None], where.reshape(len(place), -1)] = box.reshape(len(place), -1)
        frame = canvas.reshape(-1, frames, side, side)[:, :, :size, :size]
        if tracks.distractor[first] >= 0:
            still = np.zeros((frame.shape[0], size, size), dtype=np.float32)
            for n, (index, (x, y)) in enumerate(zip(tracks.distractor[picked], tracks.distractor_at[picked])):
                still[n, y:y + ITEM, x:x + ITEM] = items[index]
            frame = np.maximum(frame, still[:, None])
        clips[picked] = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
    return clips


def make_moving_fashion(fashion_root: str | Path, split: str = "train",
                        params: MovingFashionParams = MovingFashionParams()) -> tuple[ClipDataset, Tracks]:
    """A split of clips made from the same split of Fashion-MNIST (the 'fashion-mnist:' idx layout); the same
    params and source give the same clips."""
    fashion = load_idx_dataset("fashion-mnist", fashion_root, split)
    items = fashion.images[:, 0].numpy()
    if fashion.image_size != (ITEM, ITEM):
        raise ValueError(f"fashion-mnist:{fashion_root} holds {fashion.image_size} images; the generator moves "
                         f"{ITEM}x{ITEM} items")
    tracks = draw_tracks(params, split, len(items), fashion.labels.numpy())
    clips = torch.from_numpy(render(items, tracks, params.frames, params.size))[:, :, None]
    if params.label == "direction":
        labels, classes, mirror = tracks.direction, list(DIRECTIONS), MIRROR
    else:
        labels, classes, mirror = tracks.item_class, list(fashion.classes), None
    mean, std = channel_stats(clips.flatten(0, 1))
    recorded = {"generator": "moving-fashion", "version": GENERATOR_VERSION, "source": str(fashion_root),
                "split": split, **dataclasses.asdict(params)}
    dataset = ClipDataset(clips, torch.from_numpy(labels), classes, mean, std,
                          f"moving-fashion:{fashion_root}/{split}", mirror, recorded)
    return dataset, tracks


def parse_moving_fashion(spec_path: str) -> tuple[str, MovingFashionParams]:
    """'PATH' or 'PATH?seed=1&distractor=true&speed=[1,3]' -> the Fashion-MNIST folder and the parameters (values
    read as in key=value overrides)."""
    path, _, query = spec_path.partition("?")
    values = parse_overrides(query.split("&")) if query else {}
    return path, MovingFashionParams(**coerce_fields(MovingFashionParams, values, "moving-fashion:PATH?"))
