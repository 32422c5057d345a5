"""Judging a representation: kNN against scikit-learn and a hand computation, the probe against LogisticRegression."""
import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from torch import nn

from vitkit.representation import fold_batch_norm, knn_accuracy, knn_predict, probe_head


def blobs(train, test, dim=16, classes=4, scales=None):
    """Train and test features of overlapping Gaussian classes; `scales` stretches each feature as an unnormalised
    encoder's might."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(classes, dim))
    labels = rng.integers(0, classes, size=train + test)
    x = (centres[labels] + rng.normal(scale=1.2, size=(train + test, dim))) * (1.0 if scales is None else scales)
    x, labels = torch.from_numpy(x).float(), torch.from_numpy(labels)
    return x[:train], labels[:train], x[train:], labels[train:]


@pytest.mark.parametrize("k", [1, 5, 20])
def test_uniform_knn_equals_scikit_learn(k):
    train_x, train_y, test_x, test_y = blobs(400, 150)
    reference = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute").fit(train_x, train_y)
    ours = knn_predict(train_x, train_y, test_x, k, num_classes=4, temperature=None, chunk_size=64)
    assert ours.tolist() == reference.predict(test_x).tolist()


def test_weighted_votes_by_hand():
    # query along x; neighbours at 0, 60 and 70 degrees: similarities 1, 0.5 and cos(70°)
    angles = torch.tensor([0.0, 60.0, 70.0, 180.0]) * math.pi / 180
    train_x = torch.stack([angles.cos(), angles.sin()], 1) * torch.tensor([[2.0], [1.0], [3.0], [1.0]])
    train_y = torch.tensor([1, 0, 0, 0])
    query = torch.tensor([[5.0, 0.0]])
    # uniform: class 0 has two of the three nearest votes
    assert knn_predict(train_x, train_y, query, 3, 2, temperature=None).item() == 0
    # weighted: exp(1/T) against exp(0.5/T) + exp(cos70/T); at T=0.07 class 1 wins, at T=10 class 0 does
    for temperature in (0.07, 10.0):
        one, zero = math.exp(1 / temperature), math.exp(0.5 / temperature) + math.exp(math.cos(angles[2]) / temperature)
        assert knn_predict(train_x, train_y, query, 3, 2, temperature).item() == int(one > zero)
    assert knn_accuracy(train_x, train_y, query, torch.tensor([1]), ks=(1, 3)) == {"knn1_top1": 100.0,
                                                                               "knn3_top1": 100.0}
    with pytest.raises(ValueError, match="k=5 needs at least k training features"):
        knn_predict(train_x, train_y, query, 5, 2)


def test_folding_the_batch_norm_into_the_head_changes_nothing():
    torch.manual_seed(0)
    norm, head = nn.BatchNorm1d(6, affine=False, eps=1e-6), nn.Linear(6, 3)
    norm.running_mean.normal_()
    norm.running_var.uniform_(0.5, 4.0)
    x = torch.randn(10, 6)
    expected = head(norm.eval()(x))
    fold_batch_norm(norm, head)
    torch.testing.assert_close(head(x), expected)


def test_probe_with_batch_norm_is_within_two_points_of_logistic_regression():
    scales = np.geomspace(0.01, 100, 16)  # wildly different feature scales: what the BatchNorm is for
    train_x, train_y, test_x, test_y = blobs(2000, 1000, scales=scales)
    scaler = StandardScaler().fit(train_x)
    reference = LogisticRegression(max_iter=5000).fit(scaler.transform(train_x), train_y)
    sklearn_top1 = 100 * reference.score(scaler.transform(test_x), test_y)
    torch.manual_seed(0)
    head = nn.Linear(16, 4)
    scores = probe_head(head, train_x, train_y, test_x, test_y, epochs=30, lr=1e-2, batch_norm=True)
    assert abs(scores["test_top1"] - sklearn_top1) <= 2.0, (scores, sklearn_top1)
    # the returned head works on raw features: the BatchNorm is folded into it
    assert 100 * (head(test_x).argmax(1) == test_y).float().mean().item() == pytest.approx(scores["test_top1"])
