"""Each OOD score against an independent NumPy / scipy / scikit-learn formulation, the metrics against hand counts."""
import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch
from sklearn.covariance import EmpiricalCovariance
from sklearn.neighbors import NearestNeighbors

from vitkit.robust import GaussianFit, energy, knn, mahalanobis, ood_metrics, relative_mahalanobis
from vitkit.robust.ood import max_logit, max_softmax, normalise, pooled_features

from robust_helpers import smooth_images, tiny_pixel_model


@pytest.fixture(scope="module")
def features():
    """Three classes of 12-d features with distinct means, 40 each; 25 queries, some far away."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    train = rng.normal(size=(120, 12)) @ rng.normal(size=(12, 12)) + 3 * rng.normal(size=(3, 12))[labels]
    queries = np.concatenate([train[:15] + 0.1 * rng.normal(size=(15, 12)), 6 + rng.normal(size=(10, 12))])
    return train, labels, queries


def test_logit_scores_match_scipy():
    logits = np.random.default_rng(1).normal(size=(30, 7)) * 3
    t = torch.from_numpy(logits)
    np.testing.assert_allclose(max_softmax(t).numpy(), scipy.special.softmax(logits, axis=1).max(1))
    np.testing.assert_allclose(max_logit(t).numpy(), logits.max(1))
    np.testing.assert_allclose(energy(t).numpy(), scipy.special.logsumexp(logits, axis=1))
    np.testing.assert_allclose(energy(t, 2.0).numpy(), 2.0 * scipy.special.logsumexp(logits / 2.0, axis=1))


def test_mahalanobis_scores_match_scikit_learn(features):
    train, labels, queries = features
    fit = GaussianFit.fit(torch.from_numpy(train), torch.from_numpy(labels), 3)
    means = np.stack([train[labels == k].mean(0) for k in range(3)])
    shared = EmpiricalCovariance(assume_centered=True).fit(train - means[labels])  # Lee et al.'s tied covariance
    per_class = np.stack([shared.mahalanobis(queries - means[k]) for k in range(3)], axis=1)  # squared distances
    background = EmpiricalCovariance().fit(train).mahalanobis(queries)  # Ren et al.'s one Gaussian of everything
    q = torch.from_numpy(queries)
    np.testing.assert_allclose(mahalanobis(q, fit).numpy(), -per_class.min(1), rtol=1e-8)
    np.testing.assert_allclose(relative_mahalanobis(q, fit).numpy(), -(per_class - background[:, None]).min(1),
                               rtol=1e-8, atol=1e-8)


def test_knn_matches_scikit_learn_neighbours_on_normalised_features(features):
    train, _, queries = features
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    distances, _ = NearestNeighbors(n_neighbors=5).fit(unit(train)).kneighbors(unit(queries))
    bank = normalise(torch.from_numpy(train))
    np.testing.assert_allclose(knn(torch.from_numpy(queries), bank, k=5, chunk=7).numpy(), -distances[:, -1],
                               rtol=1e-7, atol=1e-7)
    assert knn(torch.from_numpy(queries), bank, k=1000).shape == (25,)  # k capped at the bank's size


def test_metrics_match_hand_counts():
    rng = np.random.default_rng(2)
    inside, outside = rng.normal(1.0, 1.0, 400), rng.normal(0.0, 1.0, 300)
    metrics = ood_metrics(inside, outside)
    u = scipy.stats.mannwhitneyu(inside, outside).statistic  # AUROC = P(in > out) = U / (n_in n_out)
    assert metrics["auroc"] == pytest.approx(100 * u / (400 * 300))
    # FPR at 95 % TPR: the highest threshold accepting 95 % of the inside scores, and what it lets through
    threshold = np.sort(inside)[::-1][int(np.ceil(0.95 * 400)) - 1]
    assert metrics["fpr95"] == pytest.approx(100 * (outside >= threshold).mean())

    def average_precision(positive, negative):
        scores = np.concatenate([positive, negative])
        hits = np.concatenate([np.ones(len(positive)), np.zeros(len(negative))])[np.argsort(-scores)]
        precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        return 100 * (precision * hits).sum() / hits.sum()

    assert metrics["aupr_in"] == pytest.approx(average_precision(inside, outside))
    assert metrics["aupr_out"] == pytest.approx(average_precision(-outside, -inside))


def test_pooled_features_are_what_the_head_sees():
    model = tiny_pixel_model()
    pixels = smooth_images(3)
    logits, pooled = pooled_features(model.model, model.normalise(pixels))
    torch.testing.assert_close(logits, model(pixels))
    torch.testing.assert_close(model.model.head(pooled), logits)


def test_no_pooled_features_or_missing_classes_are_clear_errors():
    model = tiny_pixel_model(global_pool="none", num_classes=0)
    with pytest.raises(ValueError, match="not one pooled vector per image.*global_pool"):
        pooled_features(model.model, smooth_images(2))
    with pytest.raises(ValueError, match=r"class\(es\) \[2\] have no training images"):
        GaussianFit.fit(torch.randn(6, 4), torch.tensor([0, 0, 1, 1, 0, 1]), 3)
    with pytest.raises(ValueError, match="need scores of both sets"):
        ood_metrics(np.ones(3), np.array([]))
