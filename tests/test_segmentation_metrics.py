"""Pixel confusion, mean IoU and pixel accuracy against a hand computation and scikit-learn."""
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix, jaccard_score

from vitkit.evaluation import iou_per_class, mean_iou, pixel_accuracy, pixel_confusion


def test_a_hand_computed_map():
    """3 classes, class 2 absent from truth and prediction; one ignored pixel that would otherwise be wrong."""
    truth = torch.tensor([[0, 0, 1], [1, 1, 255]])
    pred = torch.tensor([[0, 1, 1], [1, 0, 2]])
    confusion = pixel_confusion(pred, truth, 3)
    assert confusion.tolist() == [[1, 1, 0], [1, 2, 0], [0, 0, 0]]
    # class 0: tp 1, union 1 + 1 + 1 = 3; class 1: tp 2, union 2 + 1 + 1 = 4; class 2 excluded
    assert iou_per_class(confusion)[:2].tolist() == pytest.approx([1 / 3, 2 / 4])
    assert math.isnan(iou_per_class(confusion)[2].item())
    assert mean_iou(confusion) == pytest.approx((1 / 3 + 2 / 4) / 2)
    assert pixel_accuracy(confusion) == pytest.approx(3 / 5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_maps_match_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    classes = 6
    truth = rng.integers(0, classes - 1, (2, 17, 23))  # the last class occurs in neither map: it leaves the mean
    pred = np.where(rng.random(truth.shape) < 0.6, truth, rng.integers(0, classes - 1, truth.shape))
    truth[rng.random(truth.shape) < 0.1] = 255
    confusion = torch.zeros(classes, classes, dtype=torch.int64)
    for t, p in zip(truth, pred):  # batches add up
        confusion += pixel_confusion(torch.from_numpy(p), torch.from_numpy(t), classes)
    keep = truth != 255
    t, p = truth[keep], pred[keep]
    assert np.array_equal(confusion.numpy(), confusion_matrix(t, p, labels=range(classes)))
    present = np.unique(np.concatenate([t, p]))
    assert mean_iou(confusion) == pytest.approx(jaccard_score(t, p, labels=present, average="macro"), abs=1e-12)
    assert pixel_accuracy(confusion) == pytest.approx((t == p).mean(), abs=1e-12)


def test_labels_out_of_range_are_an_error():
    with pytest.raises(ValueError, match="outside 0..2"):
        pixel_confusion(torch.tensor([3]), torch.tensor([0]), 3)
    with pytest.raises(ValueError, match="same shape"):
        pixel_confusion(torch.tensor([0, 1]), torch.tensor([0]), 3)
