"""`vitkit robustness` end to end on a tiny digits run trained on 6 of the 10 classes: every part of the report, the
held-out classes as near-OOD, and the bad inputs the issue names."""
import json
import re

import pytest
import torch
from PIL import Image

from vitkit.checkpoints import save_pretrained
from vitkit.cli import main
from vitkit.data import build_dataset
from vitkit.preprocess import Preprocess
from vitkit.train import train

from robust_helpers import tiny_pixel_model

TINY_RUN = ["model.embed_dim=32", "model.depth=1", "model.num_heads=2", "schedule.epochs=2", "schedule.warmup_epochs=0",
            "logging.progress=false", "data.num_workers=0", "precision=fp32", "name=six",
            "data.subset.classes=[0,1,2,3,4,5]"]
QUICK = ["--pgd-steps", "2", "--apgd-steps", "4", "--eps", "2,8", "--fit-images", "120", "--batch-size", "64",
         "--show", "2"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    train(overrides=TINY_RUN + [f"output_dir={out}"])
    return out / "six"


def folder_of_images(path, count=3):
    path.mkdir()
    for i in range(count):
        Image.new("RGB", (20 + 5 * i, 24), (60 * i, 90, 200 - 50 * i)).save(path / f"img{i}.png")
    (path / "broken.jpg").write_bytes(b"not a jpeg")
    return path


def test_one_command_writes_every_part_of_the_report(run, tmp_path):
    out = tmp_path / "report"
    images = folder_of_images(tmp_path / "photos")
    assert main(["robustness", str(run), "--ood", "held-out", "noise:uniform", f"folder:{images}",
                 "--corruptions", "noise,pixelate,frost", "--severities", "1,5", "--out", str(out), *QUICK]) == 0
    record = json.loads((out / "robustness.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    # every test image of the six kept classes, scored as the trainer scored them (a different pipeline: normalised
    # loader and model call there, pixels and PixelModel here)
    labels = build_dataset("digits", split="test").labels
    assert record["classes"] == ["0", "1", "2", "3", "4", "5"] and record["images"] == (labels < 6).sum()
    assert record["clean_accuracy"] == pytest.approx(summary["final_top1"])
    for name, accuracy in record["attacks"]["accuracy"].items():
        assert record["clean_accuracy"] >= accuracy[0] >= accuracy[1], name
    corruptions = record["corruptions"]
    assert list(corruptions["accuracy"]) == ["gaussian_noise", "shot_noise", "impulse_noise", "pixelate", "frost"]
    assert corruptions["mean_corruption_accuracy"] == pytest.approx(
        sum(sum(a) for a in corruptions["accuracy"].values()) / 10)
    assert any(note.startswith("frost") for note in record["notes"])
    sets = record["ood"]["sets"]
    assert sets["held-out"]["images"] == (labels >= 6).sum()  # the test images of classes 6-9
    assert sets[f"folder:{images}"]["images"] == 3 and "broken.jpg" in sets[f"folder:{images}"]["unreadable"][0]
    for result in sets.values():
        assert set(result["metrics"]) == {"msp", "max_logit", "energy", "mahalanobis", "relative_mahalanobis", "knn"}
        assert all(0 <= m["auroc"] <= 100 and 0 <= m["fpr95"] <= 100 for m in result["metrics"].values())
    report = (out / "report.html").read_text()
    pictures = re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+" alt="([^"]+)"', report)
    assert {"accuracy_vs_eps.png", "adversarial_examples.png", "corruption_heatmap.png",
            "corruption_examples.png", "ood_held_out_histograms.png", "ood_held_out_roc.png"} <= set(pictures)
    assert len(pictures) == 4 + 2 * 3 and 'src="ood' not in report and "procedural ice texture" in report


@pytest.mark.parametrize("no_ood", [["--ood", "none"], ["--detectors", "none"]])
def test_limit_draws_a_few_images_of_every_class(run, tmp_path, no_ood):
    assert main(["robustness", str(run), "--limit", "30", "--attacks", "fgsm", "--corruptions", "none", *no_ood,
                 "--out", str(tmp_path), *QUICK]) == 0
    record = json.loads((tmp_path / "robustness.json").read_text())
    assert record["images"] == 30 and "ood" not in record and "corruptions" not in record


@pytest.mark.parametrize("arguments, message", [
    (["--eps", "-1"], "eps -1 is outside 0..255"),
    (["--eps", "2,300"], "eps 300 is outside 0..255"),
    (["--attacks", "cw"], r"unknown attack\(s\) \['cw'\]"),
    (["--ood", "folder:EMPTY"], "holds no images"),
    (["--ood", "imagenet-o"], "not an OOD set"),
    (["--severities", "0-2"], r"severities \[0\] are not in 1..5"),
    (["--data", "digits"], "digits has 10 classes .* the model predicts 6")])
def test_bad_input_is_a_clear_error(run, tmp_path, capsys, arguments, message):
    (tmp_path / "EMPTY").mkdir()
    arguments = [a.replace("EMPTY", str(tmp_path / "EMPTY")) for a in arguments]
    assert main(["robustness", str(run), "--limit", "8", "--corruptions", "none", "--out", str(tmp_path / "out"),
                 *QUICK, *arguments]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_a_model_without_pooled_features_cannot_feed_mahalanobis(tmp_path, capsys):
    model = tiny_pixel_model(torch.float32, Preprocess((0.5,), (0.25,)), global_pool="none", img_size=8,
                             patch_size=2, in_chans=1, num_classes=10).model
    save_pretrained(model, tmp_path / "tokens")
    assert main(["robustness", str(tmp_path / "tokens"), "--data", "digits", "--attacks", "none", "--corruptions",
                 "none", "--detectors", "mahalanobis", "--limit", "8", "--out", str(tmp_path / "out")]) == 2
    assert "not one pooled vector per image" in capsys.readouterr().err


def test_the_readme_example_runs():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = re.search(r"## Robustness\n\n```bash\n.*?```\n\n```python\n(.*?)```", readme, re.S).group(1)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert (namespace["adversarial"] - namespace["images"]).abs().max() <= 8 / 255 + 1e-6
    assert namespace["foggy"].shape == (4, 3, 32, 32) and namespace["scores"].shape == (4,)
