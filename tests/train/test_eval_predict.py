import json

import numpy as np
import pytest
import torch
from PIL import Image

from vitkit.cli import main
from vitkit.data import build_dataset
from vitkit.inference import load_model, predict
from vitkit.train import train

FAST = ["model.embed_dim=32", "model.depth=1", "model.num_heads=2", "schedule.epochs=3", "logging.progress=false",
        "data.num_workers=0"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    train(overrides=FAST + [f"output_dir={root}", "name=digits"])
    return root / "digits"


def test_eval_writes_report_and_confusion_matrix(run_dir, capsys):
    assert main(["eval", str(run_dir), "--data", "digits"]) == 0
    report = json.loads((run_dir / "eval" / "eval.json").read_text())
    confusion = np.array(report["confusion"])
    assert confusion.sum() == report["count"] == 360
    assert report["top1"] == pytest.approx(100 * np.trace(confusion) / confusion.sum())
    per_class = 100 * np.diag(confusion) / confusion.sum(1)
    assert report["per_class"] == pytest.approx(per_class.tolist())
    assert report["top5"] >= report["top1"]
    assert (run_dir / "eval" / "confusion.png").stat().st_size > 1000
    assert "top-1" in capsys.readouterr().out


def test_predict_on_image_files_matches_the_model_on_the_dataset_tensor(run_dir, tmp_path, capsys):
    test_set = build_dataset("digits", split="test")
    for i in range(4):
        Image.fromarray(test_set.images[i, 0].numpy(), "L").save(tmp_path / f"digit{i}.png")
    model = load_model(run_dir)
    predictions = predict(model, [tmp_path], topk=3)
    assert [p.path.endswith(f"digit{i}.png") for i, p in enumerate(predictions)] == [True] * 4
    mean, std = model.preprocess.mean[0], model.preprocess.std[0]
    with torch.no_grad():
        probs = model((test_set.images[:4].float() / 255 - mean) / std).softmax(-1)
    for p, row in zip(predictions, probs):
        values, indices = row.topk(3)
        assert [name for name, _ in p.top] == [model.class_names[i] for i in indices]
        assert [v for _, v in p.top] == pytest.approx(values.tolist(), abs=1e-5)
    assert main(["predict", str(run_dir), str(tmp_path / "digit0.png"), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["top"][0]["class"] == predictions[0].top[0][0]


def test_predict_names_an_unreadable_image(run_dir, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match="broken.png"):
        predict(load_model(run_dir), [bad])
