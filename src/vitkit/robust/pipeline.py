"""`vitkit robustness`: clean accuracy, accuracy under attack per eps, accuracy per corruption and severity, and OOD
detection per detector, measured on one checkpoint and written as robustness.json plus a self-contained report.html.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from .attacks import PixelModel, apgd_ce, default_step_size, fgsm, pgd
from .corruptions import CORRUPTIONS, FROST_NOTE, SEVERITIES, corrupt
from .images import RunData, batches, labelled_split, ood_set, run_data
from .ood import LOGIT_SCORES, SCORES, GaussianFit, all_scores, normalise, ood_metrics, pooled_features

ATTACKS = ("fgsm", "pgd", "apgd")


@dataclass
class RobustnessSettings:
    """What to measure; eps in units of 1/255 (papers' 8/255 is 8)."""

    attacks: list[str] = field(default_factory=lambda: list(ATTACKS))
    eps: list[float] = field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0])
    pgd_steps: int = 20
    apgd_steps: int = 100
    corruptions: list[str] = field(default_factory=lambda: list(CORRUPTIONS))
    severities: list[int] = field(default_factory=lambda: list(SEVERITIES))
    ood: list[str] = field(default_factory=lambda: ["noise:gaussian", "noise:uniform"])
    detectors: list[str] = field(default_factory=lambda: list(SCORES))
    limit: int | None = None
    fit_images: int | None = None
    knn_k: int = 50
    batch_size: int = 128
    seed: int = 0
    show: int = 6

    def __post_init__(self) -> None:
        for name, allowed in (("attack", ATTACKS), ("corruption", CORRUPTIONS), ("detector", SCORES)):
            chosen = getattr(self, name + "s")
            if unknown := [c for c in chosen if c not in allowed]:
                raise ValueError(f"unknown {name}(s) {unknown}; choose from {', '.join(allowed)}")
        for value in self.eps:
            if not 0 <= value <= 255:
                raise ValueError(f"eps {value:g} is outside 0..255: eps is given in units of 1/255 (8 means 8/255), "
                                 "and no pixel can move by more than 255/255")
        if bad := [s for s in self.severities if s not in SEVERITIES]:
            raise ValueError(f"severities {bad} are not in 1..5")
        if min(self.pgd_steps, self.apgd_steps, self.knn_k, self.batch_size) < 1 or self.show < 0:
            raise ValueError("pgd_steps, apgd_steps, knn_k and batch_size must be at least 1, show at least 0")


def attack_batch(name: str, model: PixelModel, pixels: torch.Tensor, labels: torch.Tensor, eps: float,
                 settings: RobustnessSettings, generator: torch.Generator) -> torch.Tensor:
    """One attack at eps (a pixel-space L-inf radius) on one batch."""
    if eps == 0:
        return pixels
    if name == "fgsm":
        return fgsm(model, pixels, labels, eps)
    if name == "pgd":
        return pgd(model, pixels, labels, eps, settings.pgd_steps, generator=generator)
    return apgd_ce(model, pixels, labels, eps, settings.apgd_steps, generator=generator)


def correct(model: Callable, pixels: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(pixels).argmax(-1) == labels


@dataclass
class Measured:
    """Everything the report draws: the JSON record plus the pictures' raw material."""

    record: dict[str, Any]
    examples: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # set name -> detector -> scores


def measure_robustness(source: str, out: str | Path, data: str | None = None,
                       settings: RobustnessSettings | None = None,
                       device: str = "cpu") -> tuple[dict[str, Any], dict[str, Path]]:
    """Measures a run or checkpoint as `settings` say and writes robustness.json and report.html (plus the PNGs
    the report embeds) to `out`; returns the record (as in the JSON) and the written files."""
    from ..checkpoints import from_pretrained, resolve_checkpoint
    from .report import write_robustness_report

    settings = settings or RobustnessSettings()
    run = run_data(source)
    if data is None and run is None:
        raise ValueError(f"{source} is not a training run, so its dataset is unknown; pass --data SPEC "
                         "(e.g. --data cifar10:/path)")
    run = RunData(data) if data is not None else run
    torch_device = torch.device(device)
    model = from_pretrained(resolve_checkpoint(source)).float().to(torch_device).eval()
    pixel_model = PixelModel(model).eval()
    test = labelled_split(run.spec, "test", run.subset, settings.limit, settings.seed)
    if len(test.classes) != model.cfg.num_classes:
        raise ValueError(f"{run.spec} has {len(test.classes)} classes (after the run's data.subset) but the model "
                         f"predicts {model.cfg.num_classes}; pass the --data it was trained on")
    record: dict[str, Any] = {"checkpoint": str(source), "data": run.spec, "subset": vars(run.subset),
                              "images": len(test), "classes": list(test.classes), "limit": settings.limit,
                              "seed": settings.seed, "notes": []}
    measured = Measured(record)
    batch = functools.partial(batches, test, model, settings.batch_size, torch_device)
    clean_pass(measured, pixel_model, batch, settings)
    if settings.attacks and settings.eps:
        attack_pass(measured, pixel_model, batch, settings)
    if settings.corruptions and settings.severities:
        corruption_pass(measured, pixel_model, batch, settings)
    if settings.ood and settings.detectors:
        ood_pass(measured, pixel_model, run, torch_device, settings)
    return record, write_robustness_report(measured, Path(out))


def clean_pass(measured: Measured, model: PixelModel, batch: Callable, settings: RobustnessSettings) -> None:
    """Clean accuracy, and the in-distribution logits and features the OOD detectors score."""
    hits, logits, features = 0, [], []
    wants_features = bool(settings.ood) and any(d not in LOGIT_SCORES for d in settings.detectors)
    for pixels, labels in tqdm(batch(), desc="clean", leave=False):
        with torch.no_grad():
            out, pooled = forward(model, pixels, wants_features)
        hits += (out.argmax(-1) == labels).sum().item()
        logits.append(out.cpu())
        features.append(pooled)
    measured.record["clean_accuracy"] = 100 * hits / measured.record["images"]
    measured.examples["in_distribution"] = (torch.cat(logits), torch.cat(features) if wants_features else None)


def forward(model: PixelModel, pixels: torch.Tensor, with_features: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits and, if asked, pooled features (CPU)."""
    if not with_features:
        return model(pixels), None
    logits, features = pooled_features(model.model, model.normalise(pixels))
    return logits, features.cpu()


def attack_pass(measured: Measured, model: PixelModel, batch: Callable, settings: RobustnessSettings) -> None:
    """Accuracy under each attack at each eps. Only the images still correct are attacked at the next eps: an
    adversarial image for a smaller eps lies in every larger ball, so what fell stays fallen (AutoAttack likewise
    attacks only the points still robust). The first images are also attacked at the largest eps for the report."""
    eps_list = sorted(set(settings.eps))
    hits = {name: np.zeros(len(eps_list)) for name in settings.attacks}
    generator = torch.Generator().manual_seed(settings.seed)
    steps = sum(1 for _ in range(0, measured.record["images"], settings.batch_size))
    bar = tqdm(total=steps * len(settings.attacks) * len(eps_list), desc="attacks", leave=False)
    shown: dict[str, Any] = {}
    for index, (pixels, labels) in enumerate(batch()):
        standing = correct(model, pixels, labels)
        for name in settings.attacks:
            alive = standing.clone()
            for i, eps in enumerate(eps_list):
                if alive.any():
                    adv = attack_batch(name, model, pixels[alive], labels[alive], eps / 255, settings, generator)
                    check_inside(adv, pixels[alive], eps / 255)
                    alive[alive.clone()] = correct(model, adv, labels[alive])
                hits[name][i] += alive.sum().item()
                bar.update(1)
        if index == 0 and settings.show:
            shown = attack_examples(model, pixels[:settings.show], labels[:settings.show], eps_list[-1], settings,
                                    generator)
    bar.close()
    count = measured.record["images"]
    measured.record["attacks"] = {
        "eps_255": eps_list, "accuracy": {name: (100 * hits[name] / count).tolist() for name in settings.attacks},
        "settings": {"norm": "linf", "pgd_steps": settings.pgd_steps, "pgd_random_start": True,
                     "pgd_step_size": "2.5 eps / steps (Madry et al.)",
                     "pgd_step_size_255": [default_step_size(e, settings.pgd_steps) for e in eps_list],
                     "apgd_steps": settings.apgd_steps, "apgd": "APGD-CE, one run, rho 0.75 (Croce & Hein 2020)",
                     "fgsm": "one signed-gradient step of size eps",
                     "counting": "an image fooled at a smaller eps counts as fooled at every larger one"}}
    measured.examples["attacks"] = (shown, eps_list[-1])


def attack_examples(model: PixelModel, pixels: torch.Tensor, labels: torch.Tensor, eps: float,
                    settings: RobustnessSettings, generator: torch.Generator) -> dict[str, Any]:
    """The first images, their predictions, and each attack's adversarial images at `eps` with theirs."""
    with torch.no_grad():
        shown: dict[str, Any] = {"clean": (pixels.cpu(), model(pixels).argmax(-1).cpu(), labels.cpu())}
    for name in settings.attacks:
        adv = attack_batch(name, model, pixels, labels, eps / 255, settings, generator)
        with torch.no_grad():
            shown[name] = (adv.cpu(), model(adv).argmax(-1).cpu())
    return shown


def check_inside(adv: torch.Tensor, pixels: torch.Tensor, eps: float) -> None:
    """A guard on every attack: its images stay within eps of the originals and inside [0, 1]."""
    if (adv - pixels).abs().max() > eps + 1e-6 or adv.min() < 0 or adv.max() > 1:
        raise RuntimeError("an attack left the eps ball or [0, 1]; this is a bug in vitkit.robust.attacks")


def corruption_pass(measured: Measured, model: PixelModel, batch: Callable, settings: RobustnessSettings) -> None:
    """Accuracy per corruption and severity; each batch's noise seeded by (seed, corruption, severity, batch)."""
    names, severities = settings.corruptions, sorted(set(settings.severities))
    hits = np.zeros((len(names), len(severities)))
    steps = sum(1 for _ in range(0, measured.record["images"], settings.batch_size))
    bar = tqdm(total=steps * hits.size, desc="corruptions", leave=False)
    example = None
    for index, (pixels, labels) in enumerate(batch()):
        if example is None:
            example = pixels[:1].cpu()
        for i, name in enumerate(names):
            for j, severity in enumerate(severities):
                key = [settings.seed, CORRUPTIONS.index(name), severity, index]
                generator = torch.Generator().manual_seed(int(np.random.SeedSequence(key).generate_state(1)[0]))
                hits[i, j] += correct(model, corrupt(pixels, name, severity, generator), labels).sum().item()
                bar.update(1)
    bar.close()
    accuracy = 100 * hits / measured.record["images"]
    clean = measured.record["clean_accuracy"]
    relative = {name: float(clean - accuracy[i].mean()) for i, name in enumerate(names)}
    measured.record["corruptions"] = {
        "severities": severities, "accuracy": {name: accuracy[i].tolist() for i, name in enumerate(names)},
        "mean_corruption_accuracy": float(accuracy.mean()), "relative_corruption_error": relative,
        "mean_relative_corruption_error": float(np.mean(list(relative.values()))),
        "note": "generated on the fly by vitkit (not the published CIFAR-10-C files): compare within vitkit only"}
    if "frost" in names:
        measured.record["notes"].append(FROST_NOTE)
    measured.examples["corruptions"] = (example, names, severities)


def ood_pass(measured: Measured, model: PixelModel, run: RunData, device: torch.device,
             settings: RobustnessSettings) -> None:
    """The detectors fitted on training features, then every OOD set scored against the test set."""
    wants_features = any(d not in LOGIT_SCORES for d in settings.detectors)
    fit, bank = fit_detectors(model, run, device, settings) if wants_features else (None, None)
    logits, features = measured.examples["in_distribution"]
    inside = select_scores(all_scores(logits, features, fit, bank, settings.knn_k), settings)
    measured.scores["in-distribution"] = inside
    sets = {}
    for spec in settings.ood:
        ood = ood_set(spec, model.model, measured.record["images"], settings.limit, run, settings.seed)
        with torch.no_grad():
            parts = [forward(model, pixels, wants_features)
                     for pixels in tqdm(ood.batches(model.model, settings.batch_size, device), desc=f"OOD {spec}",
                                        leave=False)]
        out_logits = torch.cat([p[0].cpu() for p in parts])
        out_features = torch.cat([p[1] for p in parts]) if wants_features else None
        outside = select_scores(all_scores(out_logits, out_features, fit, bank, settings.knn_k), settings)
        measured.scores[spec] = outside
        sets[spec] = {"images": len(ood), "unreadable": [f"{path}: {why}" for path, why in ood.unreadable],
                      "metrics": {d: ood_metrics(inside[d], outside[d]) for d in settings.detectors}}
    measured.record["ood"] = {"detectors": settings.detectors, "fit_images": None if bank is None else len(bank),
                              "knn_k": settings.knn_k, "sets": sets,
                              "in_distribution": "the test images above (positives)"}


def select_scores(scores: dict[str, torch.Tensor], settings: RobustnessSettings) -> dict[str, np.ndarray]:
    return {d: scores[d].numpy() for d in settings.detectors}


@torch.no_grad()
def fit_detectors(model: PixelModel, run: RunData, device: torch.device,
                  settings: RobustnessSettings) -> tuple[GaussianFit, torch.Tensor]:
    """Class means and shared covariance (Mahalanobis), the background Gaussian, and the kNN bank, from the pooled
    features of the training split (fit_images of them, drawn at random, if set)."""
    train = labelled_split(run.spec, "train", run.subset, settings.fit_images, settings.seed)
    features, labels = [], []
    for pixels, batch_labels in tqdm(batches(train, model.model, settings.batch_size, device), desc="OOD fit",
                                     leave=False):
        features.append(forward(model, pixels, True)[1])
        labels.append(batch_labels.cpu())
    features, labels = torch.cat(features), torch.cat(labels)
    return GaussianFit.fit(features, labels, model.model.cfg.num_classes), normalise(features)
