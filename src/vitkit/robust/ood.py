"""Out-of-distribution detection from a classifier's logits and pooled features: six scores and three metrics.

Every score is a confidence, higher meaning "looks like the training data": maximum softmax probability (Hendrycks &
Gimpel 2017), maximum logit, energy (Liu et al. 2020, as -E = T logsumexp(logits / T)), Mahalanobis distance to the
nearest class mean under one shared covariance (Lee et al. 2018), relative Mahalanobis (Ren et al. 2021: minus the
distance under one Gaussian of all training features) and the distance to the k-th nearest training feature after
L2 normalisation (Sun et al. 2022), each negated. Metrics treat the in-distribution set as positive.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SCORES = ("msp", "max_logit", "energy", "mahalanobis", "relative_mahalanobis", "knn")
LOGIT_SCORES = SCORES[:3]
TPR_LEVEL = 0.95


def pooled_features(model: torch.nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, pooled pre-logit features [B, D]) in one forward; models whose head gives no pooled vector (a
    segmentation model, global_pool='none') are refused with the fix."""
    if not (hasattr(model, "forward_features") and hasattr(model, "forward_head")):
        raise ValueError(f"{type(model).__name__} has no forward_features / forward_head, so it has no pooled "
                         "features for Mahalanobis or kNN; use a classifier (ViT, Swin) or only the logit scores")
    tokens = model.forward_features(images)
    features = model.forward_head(tokens, pre_logits=True)
    if features.ndim != 2:
        raise ValueError(f"the model's pre-logit output is {tuple(features.shape)}, not one pooled vector per image "
                         "(global_pool='none'?), so Mahalanobis and kNN have no features; use a model with "
                         "global_pool 'token' or 'avg'")
    return model.forward_head(tokens), features


def max_softmax(logits: torch.Tensor) -> torch.Tensor:
    return logits.double().softmax(-1).amax(-1)


def max_logit(logits: torch.Tensor) -> torch.Tensor:
    return logits.double().amax(-1)


def energy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Negative free energy T logsumexp(logits / T): large for inputs the classifier has seen the like of."""
    return temperature * torch.logsumexp(logits.double() / temperature, dim=-1)


@dataclass
class GaussianFit:
    """Class means with one shared precision (Lee et al.), and one Gaussian of all features (Ren et al.'s
    background), fitted on training features."""

    means: torch.Tensor  # [K, D]
    precision: torch.Tensor  # [D, D], pseudo-inverse of the pooled within-class covariance
    mean: torch.Tensor  # [D]
    background_precision: torch.Tensor  # [D, D]

    @classmethod
    def fit(cls, features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> "GaussianFit":
        features = features.double()
        counts = torch.bincount(labels, minlength=num_classes)
        if (counts == 0).any():
            missing = (counts == 0).nonzero().flatten().tolist()
            raise ValueError(f"class(es) {missing} have no training images to fit the Mahalanobis means on; fit on "
                             "more training images (--fit-images)")
        means = torch.zeros(num_classes, features.shape[1], dtype=torch.float64).index_add_(0, labels, features)
        means /= counts[:, None]
        centred = features - means[labels]
        mean = features.mean(0)
        return cls(means, _precision(centred), mean, _precision(features - mean))

    def distances(self, features: torch.Tensor) -> torch.Tensor:
        """Squared Mahalanobis distance of each feature to each class mean [N, K]."""
        features = features.double()
        return torch.stack([_squared(features - mu, self.precision) for mu in self.means], dim=1)

    def background_distance(self, features: torch.Tensor) -> torch.Tensor:
        return _squared(features.double() - self.mean, self.background_precision)


def _precision(centred: torch.Tensor) -> torch.Tensor:
    """Pseudo-inverse of the maximum-likelihood covariance of already centred rows (as scikit-learn's
    EmpiricalCovariance: singular directions, e.g. from few images, do not blow up)."""
    covariance = centred.T @ centred / len(centred)
    return torch.linalg.pinv(covariance, hermitian=True)


def _squared(diff: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    return ((diff @ precision) * diff).sum(-1)


def mahalanobis(features: torch.Tensor, fit: GaussianFit) -> torch.Tensor:
    return -fit.distances(features).amin(-1)


def relative_mahalanobis(features: torch.Tensor, fit: GaussianFit) -> torch.Tensor:
    return -(fit.distances(features) - fit.background_distance(features)[:, None]).amin(-1)


def normalise(features: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(features.double(), dim=-1)


def knn(features: torch.Tensor, bank: torch.Tensor, k: int = 50, chunk: int = 1024) -> torch.Tensor:
    """Minus the Euclidean distance from each L2-normalised feature to its k-th nearest in `bank` (training
    features, already normalised); k is capped at the bank's size."""
    k = min(k, len(bank))
    queries = normalise(features)
    kth = []
    for start in range(0, len(queries), chunk):
        similarity = queries[start:start + chunk] @ bank.T
        kth.append(similarity.topk(k, dim=1).values[:, -1])
    return -(2 - 2 * torch.cat(kth)).clamp(min=0).sqrt()


def all_scores(logits: torch.Tensor, features: torch.Tensor | None, fit: GaussianFit | None,
               bank: torch.Tensor | None, k: int = 50) -> dict[str, torch.Tensor]:
    """Every score the inputs allow: the logit scores always, the feature scores with a fit and a bank."""
    scores = {"msp": max_softmax(logits), "max_logit": max_logit(logits), "energy": energy(logits)}
    if features is not None and fit is not None:
        scores["mahalanobis"] = mahalanobis(features, fit)
        scores["relative_mahalanobis"] = relative_mahalanobis(features, fit)
    if features is not None and bank is not None:
        scores["knn"] = knn(features, bank, k)
    return scores


def ood_metrics(inside: np.ndarray, outside: np.ndarray) -> dict[str, float]:
    """AUROC, AUPR with the in-distribution set positive (aupr_in) and with the OOD set positive (aupr_out), and
    the share of OOD inputs accepted when 95 % of in-distribution ones are (fpr95), all in %."""
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

    inside, outside = np.asarray(inside, dtype=np.float64), np.asarray(outside, dtype=np.float64)
    if not len(inside) or not len(outside):
        raise ValueError(f"OOD metrics need scores of both sets (got {len(inside)} in-distribution, {len(outside)} "
                         "out-of-distribution)")
    truth = np.concatenate([np.ones(len(inside)), np.zeros(len(outside))])
    scores = np.concatenate([inside, outside])
    fpr, tpr, _ = roc_curve(truth, scores, drop_intermediate=False)
    return {"auroc": 100 * roc_auc_score(truth, scores), "aupr_in": 100 * average_precision_score(truth, scores),
            "aupr_out": 100 * average_precision_score(1 - truth, -scores),
            "fpr95": 100 * float(fpr[np.searchsorted(tpr, TPR_LEVEL, side="left")])}
