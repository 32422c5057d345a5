"""Self-supervised pre-training through the training loop: a run that resumes to identical weights, a checkpoint
that --init-from fine-tunes as it is, a folder without labels, and recipes that build."""
import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import vitkit.train.trainer as trainer
from vitkit import cli, from_pretrained
from vitkit.train import resolve_config, train
from vitkit.train.tasks import task_class
from vitkit.train.trainer import build_model

RECIPES = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))
PRETRAIN_RECIPES = [p for p in RECIPES if resolve_config(p).task in ("mae", "masked_patch")]
# digits (8x8, one channel) with 2x2 patches; fp32 and deterministic so that runs compare bit for bit
QUICK = ["data.batch_size=128", "schedule.warmup_epochs=0", "logging.progress=false", "data.num_workers=0",
         "deterministic=true", "precision=fp32"]
TINY = ["model.embed_dim=32", "model.depth=1", "model.num_heads=2", "selfsup.mae.decoder_embed_dim=16",
        "selfsup.mae.decoder_depth=1", "selfsup.mae.decoder_num_heads=2", "selfsup.knn_images=100", *QUICK]


class Crash(Exception):
    """A process dying mid-step, as far as the run's files can tell."""


def test_a_pretraining_run_resumes_to_identical_encoder_and_decoder(tmp_path, monkeypatch):
    common = TINY + ["task=mae", "schedule.epochs=2", "eval_every_epochs=2", f"output_dir={tmp_path}"]
    train(overrides=common + ["name=reference"])
    step, steps = trainer.optimizer_step, []

    def crashing_step(*args):
        step(*args)
        steps.append(1)
        if len(steps) == 15:  # in epoch 2 (11 steps each), past the checkpoint at step 10
            raise Crash

    monkeypatch.setattr(trainer, "optimizer_step", crashing_step)
    with pytest.raises(Crash):
        train(overrides=common + ["name=crashed", "checkpoint_every_steps=10"])
    monkeypatch.setattr(trainer, "optimizer_step", step)
    train(overrides=common + ["name=crashed", "checkpoint_every_steps=10"], resume=True)
    for weights in ("model.safetensors", "task.safetensors"):
        expected, resumed = (load_file(str(tmp_path / run / "checkpoints" / "last" / weights))
                             for run in ("reference", "crashed"))
        assert expected.keys() == resumed.keys() and len(expected) > 0
        for key in expected:
            assert torch.equal(expected[key], resumed[key]), (weights, key)
    assert "decoder_embed.weight" in expected  # the decoder, beside the encoder
    records = [json.loads(line) for line in (tmp_path / "crashed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1, 2]
    assert {"val_loss", "val_knn20_top1"} <= set(records[-1])
    assert (tmp_path / "crashed" / "mae_reconstruction.png").is_file()


def test_init_from_a_pretraining_run_fine_tunes_its_encoder_as_it_is(tmp_path):
    pretrained = train(overrides=TINY + ["task=masked_patch", "schedule.epochs=1", f"output_dir={tmp_path}",
                                         "name=pre"]).model
    assert pretrained.cfg.num_classes == 0  # a representation: no head to carry into fine-tuning
    assert (tmp_path / "pre" / "masked_patch_colors.png").is_file()
    # lr 0: the fine-tuning run must hold exactly the pre-trained encoder, and a new zero-initialised head
    assert cli.main(["train", "--init-from", str(tmp_path / "pre"), f"output_dir={tmp_path}", "name=ft",
                     "schedule.epochs=1", "optim.lr=0", "schedule.warmup_lr=0", "schedule.min_lr=0", *QUICK]) == 0
    tuned = from_pretrained(tmp_path / "ft" / "checkpoints" / "last")
    assert tuned.cfg.num_classes == 10
    for key, value in pretrained.state_dict().items():
        assert torch.equal(tuned.state_dict()[key], value), key
    assert not tuned.head.weight.any() and not tuned.head.bias.any()
    assert "head replaced: the checkpoint has 0 classes" in (tmp_path / "ft" / "train.log").read_text()
    # and the headless encoder is judged as it is, on the run's own dataset
    assert cli.main(["eval", str(tmp_path / "pre"), "--knn", "5", "--linear-probe", "--probe-epochs", "2"]) == 0
    judged = json.loads((tmp_path / "pre" / "eval" / "representation.json").read_text())
    assert judged["train_images"] == 1437 and judged["features"] == 32
    assert 0 <= judged["knn5_top1"] <= 100 and 0 <= judged["probe_top1"] <= 100


def test_an_image_folder_without_class_folders_pre_trains(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(20):
        Image.new("RGB", (8, 8), (12 * i, 255 - 12 * i, 7 * i)).save(folder / f"{i}.png")
    summary = train(overrides=TINY + ["task=mae", "schedule.epochs=1", f"data.dataset=imagefolder:{folder}",
                                      "data.batch_size=8", "model.img_size=8", "model.patch_size=2",
                                      f"output_dir={tmp_path}", "name=unlabelled"]).summary
    assert math.isfinite(summary["final_loss"]) and math.isnan(summary["final_knn20_top1"])
    with pytest.raises(ValueError, match="has no class folders; it holds 20 images directly"):
        train(overrides=TINY + [f"data.dataset=imagefolder:{folder}", f"output_dir={tmp_path}", "name=classify"])


def test_the_pretraining_recipes_are_found():
    assert {p.stem for p in PRETRAIN_RECIPES} >= {"cifar10_mae_cpu", "cifar10_masked_patch_cpu",
                                                  "imagenet_mae_vit_base"}


@pytest.mark.parametrize("path", PRETRAIN_RECIPES, ids=lambda p: p.stem)
def test_every_pretraining_recipe_builds_its_objective_on_the_meta_device(path):
    cfg = resolve_config(path)
    with torch.device("meta"):  # shapes only: ViT-B and its decoder cost nothing here
        encoder = build_model(cfg, num_classes=0, in_chans=3)
        objective = task_class(cfg.task).objective_class(encoder, getattr(cfg.selfsup, cfg.task))
        images = torch.empty(2, 3, *encoder.cfg.img_size)
        output = objective(images)
        assert objective.loss(images, output).shape == ()
    assert output.pred.shape[:2] == (2, encoder.cfg.num_patches)
    if path.stem == "imagenet_mae_vit_base":  # timm's ViT-B/16 without a head: 85,798,656 with its position table,
        fixed = (196 + 1) * 768  # which MAE's code keeps as a frozen parameter with a row for the class token
        assert sum(p.numel() for p in encoder.parameters()) + fixed == 85_798_656
        assert output.pred.shape == (2, 196, 16 * 16 * 3)
