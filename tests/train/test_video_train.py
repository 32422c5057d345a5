"""Training video models through the ordinary loop with the configs/ recipes (shrunk): from scratch on Moving
Fashion-MNIST clips (then `vitkit eval` on the run), and inflated from an image checkpoint named by
finetune.init_from (the recipe's video fields on the checkpoint's architecture)."""
import json
from pathlib import Path

import pytest
import torch
import yaml

from vitkit import cli, create_model, from_pretrained, save_pretrained
from vitkit.models import VideoTransformer
from vitkit.preprocess import Preprocess

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "moving_fashion_divided.yaml"
QUICK = ["schedule.time_budget_minutes=null", "schedule.epochs=1", "schedule.warmup_epochs=0", "eval_every_epochs=1",
         "logging.progress=false", "data.num_workers=0", "precision=fp32", "data.batch_size=8",
         "model.num_frames=4", "model.img_size=40"]


def train(tmp_path, fashion, name, *extra) -> int:
    dataset = f"data.dataset=moving-fashion:{fashion}?train_clips=16&test_clips=8&frames=6&size=40"
    return cli.main(["train", "--config", str(RECIPE), f"output_dir={tmp_path}", f"name={name}", dataset, *QUICK,
                     *extra])


def test_the_divided_recipe_trains_a_video_model_that_saves_as_one(tmp_path, stand_in_fashion):
    assert train(tmp_path, stand_in_fashion, "scratch", "model.embed_dim=32", "model.depth=1") == 0
    run = tmp_path / "scratch"
    summary = json.loads((run / "summary.json").read_text())
    model = from_pretrained(run / "checkpoints" / "last")
    assert isinstance(model, VideoTransformer) and model.cfg.num_classes == 8 and model.cfg.in_chans == 1
    assert model.class_names[0] == "E" and 0 <= summary["final_top1"] <= 100
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["family"] == "video"
    assert cli.main(["eval", str(run), "--out", str(run / "eval"), "--backend", "torch-fp32"]) == 0  # its own clips
    assert json.loads((run / "eval" / "eval.json").read_text())["top1"] == pytest.approx(summary["final_top1"])


@pytest.fixture
def image_checkpoint(tmp_path):
    """An image ViT of the recipe's architecture (the Fashion-MNIST budget model's), with random weights."""
    torch.manual_seed(0)
    model = create_model("vit_cifar_patch4_32", img_size=28, patch_size=4, in_chans=1, num_classes=10, embed_dim=128,
                         depth=4, num_heads=4, class_token=False, global_pool="avg", rope=True)
    model.preprocess = Preprocess(mean=(0.3,), std=(0.35,), crop_pct=1.0)
    return save_pretrained(model, tmp_path / "image")


def test_an_image_checkpoint_is_inflated_into_the_recipes_video_model(tmp_path, stand_in_fashion, image_checkpoint):
    assert train(tmp_path, stand_in_fashion, "inflated", f"finetune.init_from={image_checkpoint}",
                 "finetune.tubelet_init=average") == 0
    run = tmp_path / "inflated"
    log = (run / "train.log").read_text()
    assert "inflating" in log and "averaged over each tubelet" in log and "resized from 4x4 to 8x8" in log
    assert "new zero-initialised 8-class head" in log and "from a 7x7 to a 5x5 grid" in log
    model = from_pretrained(run / "checkpoints" / "last")
    assert model.cfg.attention == "divided" and model.cfg.patch_size == 8 and model.cfg.img_size == (40, 40)
    assert model.preprocess.mean == (0.3,)  # normalised as the image model was trained
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["family"] == "video"


def test_a_stated_field_that_contradicts_the_image_checkpoint_is_an_error(tmp_path, stand_in_fashion,
                                                                          image_checkpoint, capsys):
    assert train(tmp_path, stand_in_fashion, "bad", f"finetune.init_from={image_checkpoint}", "model.depth=2") == 2
    assert "depth=2 (the image model has 4)" in capsys.readouterr().err
