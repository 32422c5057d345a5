"""How fragile is a model: adversarial attacks, common corruptions and out-of-distribution detection, measured on
any checkpoint vitkit loads and written as one report (vitkit.robust.pipeline.measure_robustness)."""
from .attacks import PixelModel, apgd_ce, fgsm, perturb, pgd
from .corruptions import CORRUPTIONS, SEVERITIES, corrupt, frost_texture
from .ood import SCORES, GaussianFit, all_scores, energy, knn, mahalanobis, ood_metrics, relative_mahalanobis

__all__ = ["CORRUPTIONS", "GaussianFit", "PixelModel", "SCORES", "SEVERITIES", "all_scores", "apgd_ce", "corrupt",
           "energy", "fgsm", "frost_texture", "knn", "mahalanobis", "ood_metrics", "perturb", "pgd",
           "relative_mahalanobis"]
