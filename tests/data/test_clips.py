"""Clip data: clipfolder:PATH (frames as files, with clear errors) and the clip loader's temporal crops and flips,
whose relabelling is checked against the motion measured in the flipped pixels."""
import pytest
import torch
from PIL import Image

from vitkit.cli import main
from vitkit.data import TensorImageDataset, build_dataset, build_loader
from vitkit.data.clips import ClipDataset
from vitkit.data.moving_fashion import MIRROR, MovingFashionParams, make_moving_fashion

from test_moving_fashion import SMALL, centres, compass  # tests/data on sys.path


def write_clip(folder, frames: int, size=(12, 10), mode="L", start=0):
    """Frames f1.png .. fN.png whose pixels hold their frame number (+ start), so order is visible."""
    folder.mkdir(parents=True)
    for t in range(frames):
        value = (start + t) * 10
        Image.new(mode, size, value if mode == "L" else (value, 0, 255 - value)).save(folder / f"f{t + 1}.png")


@pytest.fixture
def clip_root(tmp_path):
    root = tmp_path / "clips"
    for split, count in (("train", 3), ("val", 2)):
        for label, name in enumerate(("left", "right")):
            for i in range(count):
                write_clip(root / split / name / f"clip{i}", 12, start=label)
    return root


def test_clip_folders_read_frames_in_natural_order_and_keep_gray_frames_gray(clip_root):
    train, test = (build_dataset(f"clipfolder:{clip_root}", split) for split in ("train", "test"))
    assert train.clips.shape == (6, 12, 1, 10, 12) and len(test) == 4 and train.classes == ["left", "right"]
    assert train.clips[0, :, 0, 0, 0].tolist() == [10 * t for t in range(12)]  # f2 before f10
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_data_check_counts_the_clips_of_each_split(clip_root, capsys):
    assert main(["data", "check", f"clipfolder:{clip_root}"]) == 0
    out = capsys.readouterr().out
    assert "[train]: 6 images in 2 classes" in out and "12x10 (6)" in out and "modes: L (6)" in out


def test_colour_frames_give_three_channels_and_one_folder_splits_by_ratio(tmp_path):
    for label, name in enumerate(("a", "b")):
        for i in range(5):
            write_clip(tmp_path / name / f"c{i}", 4, mode="RGB")
    train = build_dataset(f"clipfolder:{tmp_path}", "train")
    test = build_dataset(f"clipfolder:{tmp_path}", "test")
    assert train.num_channels == 3 and len(train) == 8 and len(test) == 2


@pytest.mark.parametrize("damage,message", [
    (lambda root: write_clip(root / "train" / "left" / "short", 7), r"clips must all hold the same number of frames.*"
                                                                     r"short \(7 frames of 12x10\)"),
    (lambda root: (root / "train" / "left" / "clip0" / "f3.png").write_bytes(b"not a png"),
     r"frame f3.png of clip .*clip0 cannot be read"),
    (lambda root: Image.new("L", (8, 8)).save(root / "train" / "left" / "clip1" / "f5.png"),
     r"frames of clip .*clip1 differ in size \(8x8, 12x10\)"),
    (lambda root: (root / "train" / "left" / "empty").mkdir(), r"clip .*empty holds no frame images"),
])
def test_bad_clips_are_named_with_the_fix(clip_root, damage, message):
    damage(clip_root)
    with pytest.raises(ValueError, match=message):
        build_dataset(f"clipfolder:{clip_root}", "train")


def test_a_class_folder_without_clip_folders_is_explained(tmp_path):
    (tmp_path / "a").mkdir()
    Image.new("L", (4, 4)).save(tmp_path / "a" / "frame.png")
    with pytest.raises(ValueError, match=r"hold no clip folders; put each clip's frames in a folder of its own"):
        build_dataset(f"clipfolder:{tmp_path}", "train")


@pytest.fixture(scope="module")
def moving(stand_in_fashion):
    return make_moving_fashion(stand_in_fashion, "train", MovingFashionParams(**SMALL))[0]


def test_flipped_clips_carry_the_mirrored_direction_that_their_pixels_show(moving):
    loader = build_loader(moving, 8, train=True, augment={"crop": "none", "hflip": 1.0}, num_frames=6, seed=1)
    clips, labels = next(iter(loader))
    assert clips.shape == (8, 1, 6, 48, 48)
    for clip, label, original in zip(clips, labels.tolist(), moving.labels[loader.schedule.order()[:8]].tolist()):
        path = centres(clip.transpose(0, 1) - clip.min())  # [T, C, H, W], black back at zero
        assert compass(path[-1] - path[0]) == label == MIRROR[original]


def test_training_clips_start_anywhere_and_test_clips_in_the_middle(moving):
    augment = {"crop": "none", "hflip": 0.0}
    starts = set()
    for epoch in range(3):
        loader = build_loader(moving, 24, train=True, augment=augment, num_frames=6, seed=0)
        loader.set_epoch(epoch)
        clips, _ = next(iter(loader))
        for clip, index in zip(clips, loader.schedule.order()):
            starts.update(s for s in range(5) if torch.allclose(clip[0, 0], _normalised(moving, index, s)))
    assert starts == set(range(5))  # 10 frames hold windows of 6 starting at 0..4
    test = build_loader(moving, 4, train=False, num_frames=6)
    clips, _ = next(iter(test))
    assert torch.allclose(clips[1, 0, 0], _normalised(moving, 1, 2))  # (10 - 6) // 2


def _normalised(dataset: ClipDataset, index: int, frame: int) -> torch.Tensor:
    return (dataset.clips[index, frame, 0].float() / 255 - dataset.mean[0]) / dataset.std[0]


@pytest.mark.parametrize("kwargs,message", [
    ({"num_frames": 12}, "its clips hold 10 frames, fewer than the model's num_frames=12"),
    ({}, "holds clips: train a video model on it"),
    ({"num_frames": 4, "augment": {"crop": "rrc"}}, "augment.crop=rrc: clip batches take"),
    ({"num_frames": 4, "augment": {"re_prob": 0.25}}, "augment.re_prob: clip batches take"),
])
def test_loader_mismatches_say_what_to_change(moving, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_loader(moving, 4, train=True, **kwargs)


def test_an_image_dataset_is_no_input_for_a_video_model():
    images = TensorImageDataset(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.zeros(4), ["a"], (0.5,), (0.5,))
    with pytest.raises(ValueError, match="a video model takes clips"):
        build_loader(images, 4, train=True, num_frames=4)
