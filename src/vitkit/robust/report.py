"""robustness.json and one self-contained report.html: accuracy-vs-eps curves, adversarial examples with their
magnified perturbations, the corruption heat map, and OOD score histograms and ROC curves per detector."""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from matplotlib.figure import Figure

from ..analysis.plots import as_rgb, panel_grid, save_figure
from ..analysis.report import Section, write_report
from ..report import write_json
from .corruptions import corrupt

if TYPE_CHECKING:
    from .pipeline import Measured


def write_robustness_report(measured: Measured, out: Path) -> dict[str, Path]:
    """Writes robustness.json, the PNGs and report.html to `out`; returns them by name."""
    out.mkdir(parents=True, exist_ok=True)
    record, sections = measured.record, []
    files = {"robustness.json": write_json(out / "robustness.json", record)}
    if "attacks" in record:
        sections.append(attack_section(measured, out, files))
    if "corruptions" in record:
        sections.append(corruption_section(measured, out, files))
    if "ood" in record:
        sections.append(ood_section(measured, out, files))
    title = f"vitkit robustness {record['checkpoint']}"
    files["report.html"] = write_report(sections, out / "report.html", title, summary_lines(record))
    return files


def summary_lines(record: dict[str, Any]) -> list[str]:
    """The report's headline numbers, also what the command prints."""
    lines = [f"data: {record['data']} test split, {record['images']} images"
             + (f" (--limit {record['limit']})" if record["limit"] else ""),
             f"clean accuracy: {record['clean_accuracy']:.2f}%"]
    if "attacks" in record:
        attacks = record["attacks"]
        worst = attacks["eps_255"][-1]
        lines.append(f"accuracy at eps {worst:g}/255: " + ", ".join(
            f"{name} {acc[-1]:.2f}%" for name, acc in attacks["accuracy"].items()))
    if "corruptions" in record:
        corruptions = record["corruptions"]
        lines.append(f"mean corruption accuracy: {corruptions['mean_corruption_accuracy']:.2f}% (relative "
                     f"corruption error {corruptions['mean_relative_corruption_error']:.2f} points)")
    for name, result in (record.get("ood") or {}).get("sets", {}).items():
        best = max(result["metrics"].items(), key=lambda item: item[1]["auroc"])
        lines.append(f"OOD {name}: best AUROC {best[1]['auroc']:.2f}% ({best[0]}, FPR95 {best[1]['fpr95']:.2f}%)")
    return lines + list(record["notes"])


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:60]


def attack_section(measured: Measured, out: Path, files: dict[str, Path]) -> Section:
    attacks, clean = measured.record["attacks"], measured.record["clean_accuracy"]
    eps = attacks["eps_255"]
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for name, accuracy in attacks["accuracy"].items():
        ax.plot([0] + eps, [clean] + accuracy, marker="o", label=name)
    ax.set(xlabel="eps (x 1/255, L-inf)", ylabel="accuracy (%)", ylim=(0, 100), title="accuracy under attack")
    ax.grid(alpha=0.3)
    ax.legend()
    files["accuracy_vs_eps.png"] = save_figure(fig, out / "accuracy_vs_eps.png")
    images = [files["accuracy_vs_eps.png"]]
    shown, largest = measured.examples["attacks"]
    if "clean" in shown:
        files["adversarial_examples.png"] = draw_adversarial(shown, largest, measured.record["classes"],
                                                             out / "adversarial_examples.png")
        images.append(files["adversarial_examples.png"])
    settings = attacks["settings"]
    text = (f"Accuracy on the test images under L-inf attacks in [0, 1] pixel space (the checkpoint's normalisation "
            f"inside the model call), fp32, eval mode. PGD: {settings['pgd_steps']} steps of 2.5 eps / steps from a "
            f"random start; APGD-CE: {settings['apgd_steps']} iterations; FGSM: one step of eps. Examples: the "
            f"largest eps ({largest:g}/255); perturbations magnified to fill the grey range.")
    rows = [[name] + [round(a, 2) for a in accuracy] for name, accuracy in attacks["accuracy"].items()]
    return Section("Adversarial attacks", text, images,
                   table=(["attack"] + [f"eps {e:g}/255" for e in eps], rows))


def draw_adversarial(shown: dict[str, Any], largest: float, classes: list[str], path: Path) -> Path:
    """Rows of images: the original, then per attack its adversarial image and perturbation, magnified so eps
    spans the grey range (mid-grey is no change)."""
    pixels, clean_pred, labels = shown["clean"]
    cells, titles = [], []
    scale = 0.5 / max(largest / 255, 1e-12)
    for i in range(len(pixels)):
        row = [as_rgb(pixels[i].permute(1, 2, 0).numpy())]
        title = [f"{classes[labels[i]]} -> {classes[clean_pred[i]]}"]
        for name, (adv, pred) in ((k, v) for k, v in shown.items() if k != "clean"):
            delta = (adv[i] - pixels[i]).permute(1, 2, 0).numpy()
            row += [as_rgb(adv[i].permute(1, 2, 0).numpy()), as_rgb(0.5 + scale * delta)]
            title += [f"{name}: {classes[pred[i]]}", f"{name} perturbation"]
        cells.append(row)
        titles.append(title)
    return panel_grid(cells, titles, f"originals (true -> predicted), adversarial images at eps {largest:g}/255 "
                                     "and their perturbations (magnified)", path)


def corruption_section(measured: Measured, out: Path, files: dict[str, Path]) -> Section:
    result = measured.record["corruptions"]
    names, severities = list(result["accuracy"]), result["severities"]
    grid = np.array([result["accuracy"][name] for name in names])
    fig = Figure(figsize=(1.2 * len(severities) + 3.5, 0.38 * len(names) + 1.6))
    ax = fig.subplots()
    image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    ax.set(xticks=range(len(severities)), xticklabels=severities, yticks=range(len(names)), yticklabels=names,
           xlabel="severity", title=f"accuracy (%) per corruption (clean {measured.record['clean_accuracy']:.1f}%)")
    for i in range(len(names)):
        for j in range(len(severities)):
            ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", fontsize=7,
                    color="white" if grid[i, j] < 55 else "black")
    fig.colorbar(image, ax=ax)
    files["corruption_heatmap.png"] = save_figure(fig, out / "corruption_heatmap.png")
    images = [files["corruption_heatmap.png"]]
    example, _, _ = measured.examples["corruptions"]
    files["corruption_examples.png"] = draw_corruptions(example, names, severities, out / "corruption_examples.png")
    images.append(files["corruption_examples.png"])
    text = ("Accuracy on the test images under the 15 corruptions of CIFAR-10-C at each severity, generated on the fly "
            "with the constants of the authors' CIFAR script; the mean corruption accuracy averages every cell, the "
            f"relative corruption error is the clean accuracy minus a corruption's mean accuracy. {result['note']}.")
    rows = [[name] + [round(a, 2) for a in result["accuracy"][name]] +
            [round(float(np.mean(result["accuracy"][name])), 2), round(result["relative_corruption_error"][name], 2)]
            for name in names]
    rows.append(["mean"] + [round(float(v), 2) for v in grid.mean(0)] +
                [round(result["mean_corruption_accuracy"], 2), round(result["mean_relative_corruption_error"], 2)])
    notes = [n for n in measured.record["notes"] if n.startswith("frost")]
    return Section("Common corruptions", text, images, notes=notes,
                   table=(["corruption"] + [f"severity {s}" for s in severities] + ["mean", "relative error"], rows))


def draw_corruptions(example: torch.Tensor, names: list[str], severities: list[int], path: Path) -> Path:
    """One test image under every corruption (rows) and severity (columns)."""
    cells, titles = [], []
    for name in names:
        row = []
        for severity in severities:
            generator = torch.Generator().manual_seed(0)
            row.append(as_rgb(corrupt(example, name, severity, generator)[0].permute(1, 2, 0).numpy()))
        cells.append(row)
        titles.append([f"{name} {s}" for s in severities])
    return panel_grid(cells, titles, "one test image at every corruption and severity", path, cell_inches=1.1)


def ood_section(measured: Measured, out: Path, files: dict[str, Path]) -> Section:
    from sklearn.metrics import roc_curve

    result, inside = measured.record["ood"], measured.scores["in-distribution"]
    images, rows = [], []
    detectors = result["detectors"]
    for name, found in result["sets"].items():
        outside = measured.scores[name]
        cols = min(3, len(detectors))
        fig = Figure(figsize=(4 * cols, 2.8 * -(-len(detectors) // cols)))
        axes = np.atleast_1d(fig.subplots(-(-len(detectors) // cols), cols)).ravel()
        for ax, detector in zip(axes, detectors):
            both = np.concatenate([inside[detector], outside[detector]])
            bins = np.linspace(both.min(), both.max() + 1e-12, 40)
            ax.hist(inside[detector], bins=bins, alpha=0.6, density=True, label="in-distribution")
            ax.hist(outside[detector], bins=bins, alpha=0.6, density=True, label=name)
            ax.set_title(f"{detector} (AUROC {found['metrics'][detector]['auroc']:.1f}%)", fontsize=9)
        for ax in axes[len(detectors):]:
            ax.axis("off")
        axes[0].legend(fontsize=7)
        key = f"ood_{slug(name)}_histograms.png"
        files[key] = save_figure(fig, out / key)
        fig = Figure(figsize=(4.5, 4.5))
        ax = fig.subplots()
        truth = np.concatenate([np.ones(len(inside[detectors[0]])), np.zeros(len(outside[detectors[0]]))])
        for detector in detectors:
            fpr, tpr, _ = roc_curve(truth, np.concatenate([inside[detector], outside[detector]]))
            ax.plot(100 * fpr, 100 * tpr, label=f"{detector} ({found['metrics'][detector]['auroc']:.1f})")
        ax.plot([0, 100], [0, 100], color="grey", lw=0.5)
        ax.set(xlabel="OOD accepted (%)", ylabel="in-distribution accepted (%)", title=f"ROC: test vs {name}")
        ax.legend(fontsize=7)
        key_roc = f"ood_{slug(name)}_roc.png"
        files[key_roc] = save_figure(fig, out / key_roc)
        images += [files[key], files[key_roc]]
        for detector in detectors:
            metrics = found["metrics"][detector]
            rows.append([name, detector, round(metrics["auroc"], 2), round(metrics["fpr95"], 2),
                         round(metrics["aupr_in"], 2), round(metrics["aupr_out"], 2)])
    notes = [f"{name}: {len(found['unreadable'])} unreadable file(s) skipped: {'; '.join(found['unreadable'][:5])}"
             for name, found in result["sets"].items() if found["unreadable"]]
    text = ("Each detector scores how in-distribution an image looks (higher: more); the test images are the "
            "positives. Mahalanobis, relative Mahalanobis and kNN use the pooled pre-logit features, fitted on "
            f"{result['fit_images']} training images (kNN: k = {result['knn_k']} on L2-normalised features). "
            "FPR95: the share of OOD images accepted when 95 % of the test images are.")
    return Section("Out-of-distribution detection", text, images, notes=notes,
                   table=(["OOD set", "detector", "AUROC", "FPR95", "AUPR in", "AUPR out"], rows))
