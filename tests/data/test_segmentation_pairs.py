"""Segmentation data: specs and splits, and augmentation that moves each image and its mask alike (checked through
coordinate ramps: a crop resamples a linear ramp to the source coordinate it came from, which nearest neighbour
rounds), masks resized as Pillow's NEAREST does."""
import numpy as np
import pytest
import torch
from PIL import Image

from vitkit.data import AugmentConfig, build_dataset
from vitkit.data.segmentation import (PairTrainTransform, build_segmentation_dataset, build_segmentation_loader,
                                      resize_masks, synthseg_options)
from vitkit.preprocess import Preprocess

SIDE = 15  # mask = row * 15 + column stays below the ignore index 255
PLAIN = Preprocess(mean=(0.0,) * 3, std=(1.0,) * 3, interpolation="bilinear")


def ramps(batch=6):
    """Images whose channels 0 and 1 are the row and column in [0, 1]; masks that name each pixel's place."""
    rows, cols = torch.meshgrid(torch.arange(SIDE), torch.arange(SIDE), indexing="ij")
    image = torch.stack([rows, cols, torch.zeros_like(rows)]).float() / (SIDE - 1)
    images = (image * 255).round().to(torch.uint8)[None].repeat(batch, 1, 1, 1)
    return images, (rows * SIDE + cols)[None].repeat(batch, 1, 1)


@pytest.mark.parametrize("hflip", [0.0, 1.0])
def test_random_resized_crops_and_flips_move_image_and_mask_alike(hflip):
    images, masks = ramps()
    augment = AugmentConfig(crop="rrc", scale=(0.2, 0.6), hflip=hflip, interpolation="bilinear")
    x, y = PairTrainTransform(augment, (12, 12), (SIDE, SIDE), PLAIN, 3)(images, masks, np.random.default_rng(0))
    assert x.shape == (6, 3, 12, 12) and y.shape == (6, 12, 12) and y.dtype == torch.int64
    source_row, source_col = x[:, 0] * (SIDE - 1), x[:, 1] * (SIDE - 1)  # where each output pixel was sampled
    assert (y // SIDE - source_row).abs().max() <= 0.5 + 1e-3  # the mask holds the nearest source pixel's label
    assert (y % SIDE - source_col).abs().max() <= 0.5 + 1e-3
    assert len({tuple(m.flatten().tolist()) for m in y}) > 1  # the samples got different crops
    if hflip:  # columns now decrease along each row, in image and mask alike
        assert (y[:, :, 1:] % SIDE <= y[:, :, :-1] % SIDE).all()


def test_folder_crops_move_image_and_mask_alike(tmp_path):
    """The same check where workers crop each file with Pillow (image bilinear, mask NEAREST) and the device flips."""
    images, masks = ramps(4)
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    for i, (image, mask) in enumerate(zip(images, masks)):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(tmp_path / "images" / f"{i}.png")
        Image.fromarray(mask.numpy().astype(np.uint8)).save(tmp_path / "masks" / f"{i}.png")
    augment = AugmentConfig(crop="rrc", scale=(0.2, 0.6), hflip=0.5, interpolation="bilinear")
    loader = build_segmentation_loader(build_segmentation_dataset(f"segfolder:{tmp_path}"), 4, True, augment, (12, 12),
                                       PLAIN, num_workers=0)
    x, y = next(iter(loader))
    assert (y // SIDE - x[:, 0] * (SIDE - 1)).abs().max() <= 0.55  # 0.5, plus the ramps' rounding to 8 bits
    assert (y % SIDE - x[:, 1] * (SIDE - 1)).abs().max() <= 0.55


def test_pad_and_crop_labels_the_padding_ignore():
    images, masks = ramps(8)
    augment = AugmentConfig(crop="pad", padding=3, hflip=0.0)
    x, y = PairTrainTransform(augment, (SIDE, SIDE), (SIDE, SIDE), PLAIN, 3)(images, masks,
                                                                             np.random.default_rng(1))
    padded = y == 255
    assert padded.any() and (x[:, 0][padded] == 0).all() and (x[:, 1][padded] == 0).all()
    inside = ~padded
    assert torch.equal((x[:, 0][inside] * (SIDE - 1)).round().long(), y[inside] // SIDE)
    assert torch.equal((x[:, 1][inside] * (SIDE - 1)).round().long(), y[inside] % SIDE)


def test_masks_resize_as_pillows_nearest():
    mask = np.random.default_rng(0).integers(0, 11, (13, 17)).astype(np.uint8)
    for size in [(32, 24), (7, 9)]:
        expected = np.asarray(Image.fromarray(mask).resize(size[::-1], Image.Resampling.NEAREST))
        resized = resize_masks(torch.from_numpy(mask.astype(np.int64))[None], size)[0].numpy()
        assert np.array_equal(resized, expected)


def test_mixing_and_randaugment_are_refused():
    images, masks = ramps(2)
    data = type("Pairs", (), {"images": images, "masks": masks, "image_size": (SIDE, SIDE), "__len__": lambda s: 2})()
    with pytest.raises(ValueError, match="mixup_alpha / cutmix_alpha"):
        build_segmentation_loader(data, 2, True, AugmentConfig(mixup_alpha=0.8), (SIDE, SIDE), PLAIN)
    with pytest.raises(ValueError, match="move the image away from its mask"):
        build_segmentation_loader(data, 2, True, AugmentConfig(auto_augment="rand-m9-mstd0.5"), (SIDE, SIDE), PLAIN)


def write_folder(root, count, size=(12, 10), classes=3):
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(rng.integers(0, classes, size[::-1]).astype(np.uint8)).save(root / "masks" / f"{i}.png")


def test_one_folder_splits_by_a_seeded_ratio_and_the_classes_come_from_the_masks(tmp_path):
    write_folder(tmp_path, 10)
    train, test = (build_segmentation_dataset(f"segfolder:{tmp_path}", split) for split in ("train", "test"))
    names = lambda data: {path.name for path, _ in data.pairs}  # noqa: E731
    assert len(test) == 2 and len(train) == 8 and not names(train) & names(test)
    assert train.classes == ["0", "1", "2"] and train.spec == f"segfolder:{tmp_path}"
    (tmp_path / "classes.txt").write_text("sky\nroad\ncar\n")
    assert build_segmentation_dataset(f"segfolder:{tmp_path}", "train").classes == ["sky", "road", "car"]


def test_train_and_val_folders_are_the_splits(tmp_path):
    write_folder(tmp_path / "train", 3)
    write_folder(tmp_path / "val", 2, classes=5)
    assert len(build_segmentation_dataset(f"segfolder:{tmp_path}", "train")) == 3
    test = build_segmentation_dataset(f"segfolder:{tmp_path}", "test")
    assert len(test) == 2 and test.classes == [str(i) for i in range(5)]  # both splits' masks are read


def test_folder_batches_are_resized_pairs_on_the_device(tmp_path):
    write_folder(tmp_path, 4, size=(20, 12))
    data = build_segmentation_dataset(f"segfolder:{tmp_path}")
    loader = build_segmentation_loader(data, 4, False, AugmentConfig(), (8, 8), PLAIN, num_workers=0)
    images, masks = next(iter(loader))
    assert images.shape == (4, 3, 8, 8) and masks.shape == (4, 8, 8)
    expected = np.asarray(Image.open(data.pairs[0][1]).resize((8, 8), Image.Resampling.NEAREST))
    assert np.array_equal(masks[0].numpy(), expected)


def test_synthseg_specs():
    root, options = synthseg_options(":/data/shared?seed=3&size=32")
    assert str(root) == "/data/shared" and options == {"seed": 3, "size": 32, "train": 10000, "test": 2000}
    assert str(synthseg_options("")[0]) == "../shared"
    with pytest.raises(ValueError, match="unknown option 'sizes'"):
        synthseg_options("?sizes=3")
    with pytest.raises(ValueError, match="must be a whole number"):
        synthseg_options("?seed=x")
    with pytest.raises(ValueError, match="datasets/fashion-mnist"):
        build_segmentation_dataset("synthseg:/nowhere?train=2", "train")
    with pytest.raises(ValueError, match="unknown segmentation dataset 'cifar10:/x'"):
        build_segmentation_dataset("cifar10:/x", "train")
    with pytest.raises(ValueError, match="is a segmentation set .* task=segment"):
        build_dataset("synthseg?train=3", "train")


def test_synthseg_from_the_shared_data_records_its_spec(cifar10_root, fashion_root):
    shared = cifar10_root.parent.parent
    data = build_segmentation_dataset(f"synthseg:{shared}?train=3&test=2&size=32&seed=4", "test")
    assert len(data) == 2 and data.size == 32 and data.seed == 4 and data.split == "test"
    assert data.spec == f"synthseg:{shared}?seed=4&size=32&train=3&test=2"
    assert len(data.classes) == 11 and data.images.shape == (2, 3, 32, 32)
