"""Judging a representation without training the body: kNN votes and a linear probe on a frozen model's pooled
features, for any checkpoint, supervised or not. Training, `vitkit eval` and the benchmarks all use these."""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

KNN_K = (20, 200)
KNN_TEMPERATURE = 0.07  # InstDisc / DINO


@torch.no_grad()
def cache_features(model: nn.Module, loader: Iterable) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled pre-logit features of every image, computed once by the frozen body (eval mode)."""
    was_training = model.training
    model.eval()
    feats, labels = [], []
    for images, targets in loader:
        feats.append(model.forward_head(model.forward_features(images), pre_logits=True).float().cpu())
        labels.append(targets.cpu())
    model.train(was_training)
    return torch.cat(feats), torch.cat(labels)


@torch.no_grad()
def knn_predict(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, k: int, num_classes: int,
                temperature: float | None = KNN_TEMPERATURE, chunk_size: int = 1024) -> torch.Tensor:
    """The class of each test feature by its k nearest training features in cosine similarity; each neighbour
    votes exp(similarity / temperature) for its class (the InstDisc/DINO protocol), or 1 with temperature=None.
    A tie goes to the lowest class index."""
    if not 1 <= k <= len(train_x):
        raise ValueError(f"kNN with k={k} needs at least k training features, got {len(train_x)}; lower k or "
                         "give more training images")
    train = F.normalize(train_x.float(), dim=1)
    labels = train_y.to(train.device)
    predictions = []
    for chunk in F.normalize(test_x.float(), dim=1).split(chunk_size):
        sims, index = (chunk @ train.T).topk(k, dim=1)
        weights = torch.ones_like(sims) if temperature is None else (sims / temperature).exp()
        votes = torch.zeros(len(chunk), num_classes, dtype=weights.dtype, device=weights.device)
        predictions.append(votes.scatter_add_(1, labels[index], weights).argmax(dim=1))
    return torch.cat(predictions) if predictions else torch.zeros(0, dtype=torch.long)


def knn_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 ks: Sequence[int] = KNN_K, temperature: float | None = KNN_TEMPERATURE,
                 num_classes: int | None = None) -> dict[str, float]:
    """Top-1 (%) of the weighted kNN classifier for each k, as {"knn20_top1": ..., "knn200_top1": ...}."""
    num_classes = num_classes or int(max(train_y.max(), test_y.max())) + 1
    return {f"knn{k}_top1": top1_percent(knn_predict(train_x, train_y, test_x, k, num_classes, temperature), test_y)
            for k in ks}


def linear_probe(model: nn.Module, train_loader: Iterable, test_loader: Iterable, epochs: int = 100,
                 lr: float = 1e-2, weight_decay: float = 0.0, batch_size: int = 256, seed: int = 0,
                 batch_norm: bool = False) -> dict[str, float]:
    """Trains only model.head on cached features (the body runs once per image); returns train/test top-1 (%).

    batch_norm puts MAE's BatchNorm without affine parameters before the head (features of a self-supervised
    encoder differ widely in scale) and folds it into the head afterwards, so the model then classifies as probed.
    """
    if not isinstance(model.head, nn.Linear):
        raise ValueError("linear_probe needs a linear head (num_classes > 0); reset_classifier(num_classes) first")
    train_x, train_y = cache_features(model, train_loader)
    test_x, test_y = cache_features(model, test_loader)
    scores = probe_head(model.head, train_x, train_y, test_x, test_y, epochs, lr, weight_decay, batch_size, seed,
                        batch_norm)
    if getattr(model, "head_dist", None) is not None:  # a distilled model averages both heads: give them the same probe
        model.head_dist.load_state_dict(model.head.state_dict())
    return scores


def probe_head(head: nn.Linear, train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
               test_y: torch.Tensor, epochs: int = 100, lr: float = 1e-2, weight_decay: float = 0.0,
               batch_size: int = 256, seed: int = 0, batch_norm: bool = False) -> dict[str, float]:
    """AdamW on a linear head over fixed features, cosine-annealed; the head is left trained (BatchNorm folded in)."""
    device = head.weight.device
    norm = nn.BatchNorm1d(head.in_features, affine=False, eps=1e-6).to(device) if batch_norm else nn.Identity()
    probe = nn.Sequential(norm, head).train()
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    steps = epochs * math.ceil(len(train_x) / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for _ in range(epochs):
        for idx in torch.randperm(len(train_x), generator=generator).split(batch_size):
            if batch_norm and len(idx) == 1:  # batch statistics of one feature are undefined
                continue
            loss = F.cross_entropy(probe(train_x[idx].to(device)), train_y[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    if batch_norm:
        fold_batch_norm(norm, head)
    with torch.no_grad():
        return {"train_top1": top1_percent(head(train_x.to(device)).argmax(-1), train_y),
                "test_top1": top1_percent(head(test_x.to(device)).argmax(-1), test_y)}


@torch.no_grad()
def fold_batch_norm(norm: nn.BatchNorm1d, head: nn.Linear) -> None:
    """head(norm(x)) with norm's running statistics becomes head(x): W / sigma and b - W mu / sigma."""
    scale = (norm.running_var + norm.eps).rsqrt()
    head.bias.sub_(head.weight @ (norm.running_mean * scale))
    head.weight.mul_(scale)


def top1_percent(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    return 100.0 * (predictions.cpu() == labels.cpu()).float().mean().item()
