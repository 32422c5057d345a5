"""Moving Fashion-MNIST from a stand-in Fashion-MNIST in the idx format (tests/conftest.py): the labels are checked
against the motion measured in the pixels drawn (the item's centre of brightness), not against the generator's own
numbers."""
import numpy as np
import pytest
import torch

from vitkit.data import build_dataset
from vitkit.data.moving_fashion import DIRECTIONS, MIRROR, MovingFashionParams, make_moving_fashion

SMALL = dict(frames=10, size=48, speed=(1.0, 2.0), train_clips=24, test_clips=24)


def centres(clip: torch.Tensor) -> np.ndarray:
    """Centre of brightness (x, y) of every frame of a [T, 1, H, W] clip."""
    frames = clip[:, 0].double().numpy()
    rows, cols = np.indices(frames.shape[1:])
    mass = frames.sum((1, 2))
    return np.stack([(frames * cols).sum((1, 2)) / mass, (frames * rows).sum((1, 2)) / mass], 1)


def compass(vector: np.ndarray) -> int:
    """The nearest of the 8 directions to a displacement (x, y) in image coordinates (y grows downwards)."""
    return int(np.round(np.degrees(np.arctan2(-vector[1], vector[0])) / 45)) % 8


def test_labels_are_the_direction_the_item_moves_in_steady_steps_inside_the_frame(stand_in_fashion):
    clips, tracks = make_moving_fashion(stand_in_fashion, "train", MovingFashionParams(**SMALL))
    for clip, label in zip(clips.clips, clips.labels.tolist()):
        path = centres(clip)
        assert compass(path[-1] - path[0]) == label
        steps = np.diff(path, axis=0)
        np.testing.assert_allclose(steps, steps.mean(0, keepdims=True).repeat(len(steps), 0), atol=0.05)  # constant
        speed = np.linalg.norm(steps.mean(0))
        assert 1.0 - 0.05 <= speed <= 2.0 + 0.05
        # nothing leaves the frame: every frame holds the whole item's brightness (up to rounding each pixel)
        mass = clip.double().sum((1, 2, 3)).numpy()
        assert np.all(np.abs(mass - mass[0]) <= 0.5 * 29 * 29) and mass.min() > 0
    assert set(clips.labels.tolist()) > {0, 4}  # both ways along an axis occur


def test_a_still_distractor_does_not_change_the_motion_the_label_names(stand_in_fashion):
    clips, tracks = make_moving_fashion(stand_in_fashion, "test", MovingFashionParams(**SMALL, distractor=True))
    for clip, label in zip(clips.clips, clips.labels.tolist()):
        change = (clip[-1, 0].double() - clip[0, 0].double()).numpy()  # the still item cancels where uncovered
        arrived, left = np.clip(change, 0, None), np.clip(-change, 0, None)
        rows, cols = np.indices(change.shape)
        ends = [np.array([(part * cols).sum(), (part * rows).sum()]) / part.sum() for part in (arrived, left)]
        assert compass(ends[0] - ends[1]) == label
    assert np.all(tracks.distractor >= 0) and np.array_equal(tracks.distractor_class, tracks.distractor)  # labels 0-9


def test_the_same_parameters_make_the_same_clips_and_are_recorded(stand_in_fashion):
    params = MovingFashionParams(**SMALL, seed=5)
    first, again = (make_moving_fashion(stand_in_fashion, "train", params)[0] for _ in range(2))
    assert torch.equal(first.clips, again.clips) and torch.equal(first.labels, again.labels)
    other = make_moving_fashion(stand_in_fashion, "train", MovingFashionParams(**SMALL))[0]
    assert not torch.equal(first.clips, other.clips)
    assert first.params["seed"] == 5 and first.params["frames"] == 10 and first.params["train_clips"] == 24
    assert first.classes == list(DIRECTIONS) and first.mirror == MIRROR


def test_the_item_class_can_be_the_label(stand_in_fashion):
    clips, tracks = make_moving_fashion(stand_in_fashion, "train", MovingFashionParams(**SMALL, label="item"))
    assert clips.labels.tolist() == tracks.item.tolist() and clips.mirror is None  # stand-in item i has class i


def test_the_spec_takes_parameters_and_names_unknown_ones(stand_in_fashion):
    clips = build_dataset(f"moving-fashion:{stand_in_fashion}?test_clips=3&frames=6&size=48&speed=[1,3]", "test")
    assert clips.clips.shape == (3, 6, 1, 48, 48) and clips.params["speed"] == (1.0, 3.0)
    with pytest.raises(ValueError, match="unknown config key 'moving-fashion:PATH[?]sped'"):
        build_dataset(f"moving-fashion:{stand_in_fashion}?sped=2", "test")


def test_tracks_that_cannot_stay_inside_are_refused():
    with pytest.raises(ValueError, match=r"travels 34 px, more than the 4 px a 32 px frame leaves it"):
        MovingFashionParams(size=32)
