"""data.subset: classes kept and renumbered, a seeded number of labels per class; checked by counting by hand."""
import pytest
import torch

from vitkit.data import TensorImageDataset
from vitkit.data.folder import ImageFolderDataset
from vitkit.data.subset import SubsetConfig, take_subset
from vitkit.train.config import resolve_config


def dataset(per_class=(5, 7, 9, 4)):
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(per_class)])
    images = torch.arange(len(labels), dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).contiguous()
    return TensorImageDataset(images, labels, ["a", "b", "c", "d"], (0.5,), (0.5,), "toy")


def test_classes_are_kept_in_the_order_given_and_renumbered():
    full = dataset()
    part = take_subset(full, SubsetConfig(classes=["c", 0]), "test")
    assert part.classes == ["c", "a"]
    # image i of the toy set holds the value i: the kept images are those of classes c (12..20) then a (0..4)
    values = part.images[:, 0, 0, 0].tolist()
    assert sorted(values) == list(range(0, 5)) + list(range(12, 21))
    assert all(label == (0 if value >= 12 else 1) for value, label in zip(values, part.labels.tolist()))


def test_per_class_count_and_fraction_on_train_only():
    full = dataset()
    counted = take_subset(full, SubsetConfig(per_class=3, seed=1), "train")
    assert torch.bincount(counted.labels).tolist() == [3, 3, 3, 3]
    fraction = take_subset(full, SubsetConfig(per_class=0.5, seed=1), "train")
    assert torch.bincount(fraction.labels).tolist() == [2, 4, 4, 2]  # rounded half to even: 2.5, 3.5, 4.5, 2
    assert len(take_subset(full, SubsetConfig(per_class=3), "test")) == len(full)  # test splits stay whole


def test_draw_is_seeded_and_a_subset_of_the_class():
    full = dataset()
    first = take_subset(full, SubsetConfig(per_class=2, seed=5), "train").images.flatten().tolist()
    again = take_subset(full, SubsetConfig(per_class=2, seed=5), "train").images.flatten().tolist()
    assert first == again
    draws = {tuple(take_subset(full, SubsetConfig(per_class=2, seed=s), "train").images[:, 0, 0, 0].tolist())
             for s in range(20)}
    assert len(draws) > 1  # other seeds, other images


def test_image_folder_subset(tmp_path):
    samples = [(str(tmp_path / f"{i}.png"), i % 3) for i in range(12)]
    folder = ImageFolderDataset(tmp_path, ["x", "y", "z"], samples, "folder")
    part = take_subset(folder, SubsetConfig(classes=[2, 1], per_class=2), "train")
    assert part.classes == ["z", "y"]
    assert torch.bincount(part.labels).tolist() == [2, 2]
    assert all(int(path.split("/")[-1][:-4]) % 3 == {0: 2, 1: 1}[label] for path, label in part.samples)


@pytest.mark.parametrize("subset, message", [
    (dict(classes=["q"]), "not a class of toy"),
    (dict(classes=[0, 0]), "names a class twice"),
    (dict(per_class=10), "has only"),
])
def test_bad_subsets_are_named(subset, message):
    with pytest.raises(ValueError, match=message):
        take_subset(dataset(), SubsetConfig(**subset), "train")


@pytest.mark.parametrize("value", [0, -1, 2.5, 1.0 + 1e-9])
def test_per_class_must_be_a_fraction_or_a_count(value):
    with pytest.raises(ValueError, match="per_class"):
        SubsetConfig(per_class=value)


def test_training_config_reads_the_subset_and_task():
    cfg = resolve_config(overrides=["data.subset.classes=[0,1,2]", "data.subset.per_class=0.1"])
    assert cfg.data.subset.classes == [0, 1, 2] and cfg.data.subset.per_class == 0.1
    assert cfg.task == "classify" and cfg.best_metric == "val_top1"
    with pytest.raises(ValueError, match="task='nope'"):
        resolve_config(overrides=["task=nope"])
    with pytest.raises(ValueError, match="is not a score of task 'classify'"):
        resolve_config(overrides=["best_metric=val_miou"])
