"""task: segment through the one training loop: run folder, checkpoints that load back, resume, scores; a classifier
checkpoint as the backbone; the evaluation pass against a hand computation."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from vitkit.checkpoints import from_pretrained, save_pretrained
from vitkit.evaluation import evaluate_segmentation
from vitkit.models import SegmentationModel, SwinTransformer, VisionTransformer
from vitkit.train import train
from vitkit.train.finetune import FinetuneConfig, load_segmentation_start
from vitkit.models import ModelConfig

BACKBONE = {"family": "vit", "name": "vit_cifar_patch4_32", "embed_dim": 16, "depth": 1, "num_heads": 2,
            "patch_size": 4}


def square_folder(root, count=12, side=16):
    """Noise images with a bright square (class 1) on background (class 0); a border row is unlabelled (255)."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(count):
        image = rng.integers(0, 80, (side, side, 3), dtype=np.uint8)
        mask = np.zeros((side, side), np.uint8)
        top, left = rng.integers(0, side - 6, 2)
        image[top:top + 6, left:left + 6] = 230
        mask[top:top + 6, left:left + 6] = 1
        mask[0] = 255
        Image.fromarray(image).save(root / "images" / f"{i:02d}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i:02d}.png")
    (root / "classes.txt").write_text("background\nsquare\n")
    return root


def recipe(data_root, output_dir, name, **more):
    config = {"task": "segment", "name": name, "output_dir": str(output_dir), "precision": "fp32",
              "model": {"family": "segment", "head": "fpn", "img_size": 16, "pyramid_dim": 8, "decoder_dim": 8,
                        "backbone": BACKBONE},
              "data": {"dataset": f"segfolder:{data_root}", "batch_size": 4, "eval_batch_size": 8, "num_workers": 0,
                       "augment": {"crop": "rrc", "scale": [0.6, 1.0]}},
              "optim": {"lr": 3e-3}, "schedule": {"epochs": 2, "warmup_epochs": 0}, "loss": {"label_smoothing": 0.0},
              "logging": {"progress": False}}
    for key, value in more.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg")
    data = square_folder(root / "data")
    result = train(recipe(data, root / "runs", "squares"))
    return data, root / "runs" / "squares", result


def test_a_run_scores_miou_and_saves_checkpoints_that_load_back(trained):
    _, run_dir, result = trained
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["task"] == "segment" and summary["best_metric"] == "val_miou"
    assert 0 <= summary["final_miou"] <= 100 and 0 <= summary["final_pixel_accuracy"] <= 100
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r.get("kind") == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2] and all("val_miou" in r and "val_loss" in r for r in epochs)
    last = from_pretrained(run_dir / "checkpoints" / "last").eval()
    assert isinstance(last, SegmentationModel) and last.class_names == ["background", "square"]
    images = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(last(images), result.model.eval()(images))
    assert (run_dir / "curves.png").is_file()


def test_resume_continues_the_run(trained, tmp_path):
    data, run_dir, _ = trained
    copy = tmp_path / "squares"
    import shutil

    shutil.copytree(run_dir, copy, symlinks=True)
    train(copy / "config.yaml", [f"output_dir={tmp_path}", "name=squares", "schedule.epochs=3"], resume=True)
    records = [json.loads(line) for line in (copy / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r.get("kind") == "epoch"] == [1, 2, 3]


def test_a_classifier_becomes_the_backbone(tmp_path):
    torch.manual_seed(0)
    classifier = VisionTransformer(img_size=8, patch_size=4, embed_dim=16, depth=1, num_heads=2, num_classes=10)
    save_pretrained(classifier, tmp_path / "classifier")
    data = square_folder(tmp_path / "data")
    train(recipe(data, tmp_path / "runs", "init", finetune={"init_from": str(tmp_path / "classifier")},
                 schedule={"epochs": 1}))
    log = (tmp_path / "runs" / "init" / "train.log").read_text()
    assert "the checkpoint is the backbone" in log and "position embedding resampled from a 2x2 to a 4x4 grid" in log
    saved = yaml.safe_load((tmp_path / "runs" / "init" / "config.yaml").read_text())["model"]
    assert saved["family"] == "segment" and saved["backbone"]["embed_dim"] == 16 and saved["img_size"] == [16, 16]


@pytest.mark.parametrize("family", ["vit", "swin"])
def test_the_backbone_starts_from_the_classifiers_weights(tmp_path, family):
    torch.manual_seed(0)
    if family == "vit":
        classifier = VisionTransformer(img_size=16, patch_size=4, embed_dim=16, depth=1, num_heads=2, num_classes=3,
                                       patch_drop_rate=0.5)
    else:
        classifier = SwinTransformer(img_size=16, patch_size=2, window_size=4, embed_dim=8, depths=(1, 1),
                                     num_heads=(1, 2), num_classes=3)
    save_pretrained(classifier, tmp_path / "c")
    section = ModelConfig.from_config({"family": "segment", "head": "linear", "img_size": 16,
                                       "backbone": BACKBONE if family == "vit" else {
                                           "family": "swin", "name": "swin_tiny_patch4_window7_224"}})
    model, notes = load_segmentation_start(FinetuneConfig(init_from=str(tmp_path / "c")), section, 5, 3)
    assert isinstance(model.backbone, type(classifier)) and model.cfg.num_classes == 5 and model.cfg.head == "linear"
    assert getattr(model.backbone.cfg, "patch_drop_rate", 0.0) == 0.0  # every patch is labelled
    expected = {k: v for k, v in classifier.state_dict().items() if not k.startswith("head")}
    got = model.backbone.state_dict()
    assert all(torch.equal(got[k], v) for k, v in expected.items())


class Constant(torch.nn.Module):
    """Logits that do not depend on the image: what the hand computation below uses."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, images):
        return self.logits.expand(images.shape[0], -1, -1, -1)


def test_the_evaluation_pass_against_a_hand_computation():
    logits = torch.randn(1, 3, 4, 5)
    masks = torch.randint(0, 3, (6, 4, 5))
    masks[:, 0, 0] = 255
    loader = [(torch.zeros(3, 3, 4, 5), masks[:3]), (torch.zeros(3, 3, 4, 5), masks[3:])]
    scores = evaluate_segmentation(Constant(logits), loader, 3, torch.device("cpu"))
    pred = logits.argmax(1).expand(6, -1, -1)
    keep = masks != 255
    log_probs = F.log_softmax(logits, 1).expand(6, -1, -1, -1)
    loss = -log_probs.gather(1, masks.clamp(max=2)[:, None])[:, 0][keep].mean()
    truth, guess = masks[keep].numpy(), pred[keep].numpy()
    ious = [((truth == k) & (guess == k)).sum() / ((truth == k) | (guess == k)).sum() for k in range(3)
            if ((truth == k) | (guess == k)).any()]
    assert scores["loss"] == pytest.approx(loss.item(), rel=1e-5)
    assert scores["pixel_accuracy"] == pytest.approx(100 * (truth == guess).mean())
    assert scores["miou"] == pytest.approx(100 * np.mean(ious))
    assert scores["count"] == keep.sum() and np.array(scores["confusion"]).sum() == keep.sum()


def test_a_classification_model_or_dataset_is_refused(tmp_path):
    data = square_folder(tmp_path / "data", count=4)
    with pytest.raises(ValueError, match="task=segment trains a segmentation model"):
        train({"task": "segment", "data": {"dataset": f"segfolder:{data}"}, "output_dir": str(tmp_path)})
    with pytest.raises(ValueError, match="unknown segmentation dataset 'digits'"):
        train(recipe("x", tmp_path, "bad", data={"dataset": "digits"}))
