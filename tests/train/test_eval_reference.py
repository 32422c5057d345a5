"""`vitkit eval` against predictions made outside vitkit's data path and scored by scikit-learn."""
import json

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.metrics import accuracy_score, confusion_matrix, precision_score, recall_score, top_k_accuracy_score
from sklearn.model_selection import train_test_split

from vitkit.checkpoints import save_pretrained
from vitkit.cli import main
from vitkit.models import ViTConfig, VisionTransformer
from vitkit.preprocess import Preprocess

# the checkpoint's own normalisation, deliberately not the digits training statistics (eval must use these)
MEAN, STD = 0.3, 0.4


def digits_by_hand():
    """scikit-learn's digits as uint8 (0-16 scaled to 0-255, rounded) and the seeded stratified 80/20 split."""
    bunch = load_digits()
    pixels = np.rint(bunch.images * (255 / 16)).astype(np.uint8)
    train, test = train_test_split(np.arange(len(pixels)), test_size=0.2, random_state=0, stratify=bunch.target)
    return pixels, bunch.target, train, test


def normalised(pixels):
    """uint8 [N, 8, 8] -> float64 [N, 1, 8, 8]: /255, then the checkpoint's mean and std."""
    return torch.from_numpy((pixels.astype(np.float64) / 255 - MEAN) / STD)[:, None]


def fitted_model(pixels, target, train):
    """A tiny random ViT whose head is a ridge fit on its own features: wrong often enough that the scores mean
    something, right often enough that every class has hits."""
    torch.manual_seed(0)
    model = VisionTransformer(ViTConfig(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=64, depth=1,
                                        num_heads=2, global_pool="avg"))
    model.preprocess = Preprocess(mean=(MEAN,), std=(STD,), interpolation="bicubic", crop_pct=1.0)
    model.class_names = [str(i) for i in range(10)]
    model.eval()
    with torch.no_grad():
        feats = model.forward_head(model.forward_features(normalised(pixels[train]).float()), pre_logits=True).double()
        feats = torch.cat([feats, torch.ones(len(feats), 1, dtype=torch.float64)], dim=1)
        onehot = torch.nn.functional.one_hot(torch.from_numpy(target[train]), 10).double()
        solution = torch.linalg.solve(feats.T @ feats + 0.01 * torch.eye(feats.shape[1], dtype=torch.float64),
                                      feats.T @ onehot)
        model.head.weight.copy_(solution[:-1].T)
        model.head.bias.copy_(solution[-1])
    return model


def test_eval_top1_per_class_and_confusion_match_sklearn_on_independent_predictions(tmp_path):
    """eval.json's scores must equal sklearn's on predictions made here, not just agree with its own confusion."""
    pixels, target, train, test = digits_by_hand()
    model = fitted_model(pixels, target, train)
    save_pretrained(model, tmp_path / "ckpt")
    assert main(["eval", str(tmp_path / "ckpt"), "--data", "digits", "--batch-size", "100",
                 "--out", str(tmp_path / "eval")]) == 0
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())

    with torch.no_grad():
        logits = model.double()(normalised(pixels[test])).numpy()
    top2 = np.sort(logits, axis=1)[:, -2:]
    assert (top2[:, 1] - top2[:, 0]).min() > 1e-5  # no near-ties that float32 vs float64 could flip
    y_true, y_pred = target[test], logits.argmax(1)
    labels = list(range(10))
    recall = recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    precision = precision_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    assert 30 < 100 * accuracy_score(y_true, y_pred) < 95  # neither trivial nor perfect
    assert np.abs(recall - precision).max() > 0.05  # per-class recall differs from precision: a swap would show

    assert report["count"] == len(test) == 360
    assert report["top1"] == pytest.approx(100 * accuracy_score(y_true, y_pred), abs=1e-9)
    assert report["per_class"] == pytest.approx((100 * recall).tolist(), abs=1e-9)
    assert report["top5"] == pytest.approx(100 * top_k_accuracy_score(y_true, logits, k=5, labels=labels), abs=1e-9)
    assert report["confusion"] == confusion_matrix(y_true, y_pred, labels=labels).tolist()
    assert report["classes"] == model.class_names
