"""`vitkit train --init-from X` with nothing else: the architecture is the checkpoint's, the classes, size and
channels the run's, the normalisation the checkpoint's; stated fields that contradict it are errors."""
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from vitkit import cli, create_model, from_pretrained, save_pretrained
from vitkit.preprocess import Preprocess

ROOT = Path(__file__).resolve().parents[1]
INTEROP = ROOT / "fixtures" / "interop"
OLD_RUNS = ROOT / "fixtures" / "old_runs"
QUICK = ["schedule.epochs=1", "logging.progress=false", "data.num_workers=0", "precision=fp32"]


def train(tmp_path, source, *extra, name="ft"):
    return cli.main(["train", "--init-from", str(source), f"output_dir={tmp_path}", f"name={name}", *QUICK, *extra])


def eval_top1(run: Path) -> float:
    assert cli.main(["eval", str(run), "--out", str(run / "eval")]) == 0  # no --data: the run's own dataset
    return json.loads((run / "eval" / "eval.json").read_text())["top1"]


@pytest.mark.parametrize("source,format_", [
    (INTEROP / "hf_vit_cls", "hf"),                                 # a Hugging Face folder, no preprocessor config
    (INTEROP / "vit5_official_tiny.pth", "vit5"),                   # an official ViT-5 training checkpoint
    (INTEROP / "timm_vit_ls_qknorm.safetensors", "timm"),          # timm: QK-norm's width gives the head count
    (OLD_RUNS / "v0_finetune_hf", "vitkit"),                        # a vitkit run folder (an old one)
])
def test_any_checkpoint_fine_tunes_on_the_digits_with_no_model_fields(tmp_path, source, format_):
    assert train(tmp_path, source) == 0
    run = tmp_path / "ft"
    log = (run / "train.log").read_text()
    checkpoint = from_pretrained(source if format_ != "vitkit" else source / "checkpoints" / "best", **(
        {"num_heads": 4} if format_ == "timm" else {}))
    model = from_pretrained(run / "checkpoints" / "last")
    for field in ("embed_dim", "depth", "num_heads", "patch_size", "qk_norm", "norm", "mlp_ratio", "img_size"):
        assert getattr(model.cfg, field) == getattr(checkpoint.cfg, field), field
    assert model.cfg.num_classes == 10 and model.cfg.in_chans == 1
    recorded = yaml.safe_load((run / "config.yaml").read_text())["model"]  # the model trained, not the recipe's
    assert recorded["embed_dim"] == 64 and recorded["in_chans"] == 1
    if checkpoint.cfg.in_chans == 3:
        assert "input channels adapted from 3 to 1" in log and model.preprocess.mean == (0.0,)
    assert "give way to the checkpoint's: patch_size 2 -> " in log and f"({format_}" in log
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final_top1"] == pytest.approx(eval_top1(run), abs=1e-6)  # trained as it is evaluated


def test_the_run_normalises_with_the_checkpoints_own_preprocessing(tmp_path):
    """A 1-channel checkpoint trained on mean 0.25 / std 0.5 keeps them: the digits' own statistics would differ."""
    torch.manual_seed(0)
    model = create_model("vit_cifar_patch4_32", img_size=8, patch_size=2, embed_dim=32, depth=1, num_heads=2,
                         in_chans=1, num_classes=3)
    model.preprocess = Preprocess(mean=(0.25,), std=(0.5,), crop_pct=1.0)
    save_pretrained(model, tmp_path / "pre")
    assert train(tmp_path, tmp_path / "pre") == 0
    run = tmp_path / "ft"
    tuned = from_pretrained(run / "checkpoints" / "last")
    assert tuned.preprocess.mean == (0.25,) and tuned.preprocess.std == (0.5,)
    assert "normalising with the checkpoint's preprocessing: mean [0.25], std [0.5]" in (run / "train.log").read_text()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final_top1"] == pytest.approx(eval_top1(run), abs=1e-6)


def test_a_head_count_nothing_implies_is_asked_for_by_name(tmp_path, capsys):
    source = INTEROP / "timm_vit_cls.safetensors"
    assert train(tmp_path, source) == 2
    assert "pass model.num_heads=..." in capsys.readouterr().err
    assert train(tmp_path, source, "model.num_heads=4", "model.img_size=16") == 0
    log = (tmp_path / "ft" / "train.log").read_text()
    assert "input size changed from 32x32 to 16x16" in log


def test_stated_fields_that_contradict_the_checkpoint_are_errors_naming_each(tmp_path, capsys):
    assert train(tmp_path, INTEROP / "hf_vit_cls", "model.embed_dim=128", "model.depth=3") == 2
    err = capsys.readouterr().err
    assert "model.embed_dim=128 (the checkpoint has 64), model.depth=3 (the checkpoint has 2)" in err
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"model": {"name": "vit_cifar_patch4_32", "patch_size": 4}}))
    assert cli.main(["train", "--config", str(recipe), "--init-from", str(INTEROP / "hf_vit_cls"),
                     f"output_dir={tmp_path}", *QUICK]) == 2
    assert "model.name=vit_cifar_patch4_32 (with the model fields given) describes another architecture" in \
        capsys.readouterr().err


def test_a_fine_tuned_run_resumes_without_its_source(tmp_path):
    """Resuming rebuilds the model from the run's own checkpoint: the file it started from may be gone."""
    source = shutil.copytree(INTEROP / "hf_vit_cls", tmp_path / "moved_away")
    assert train(tmp_path, source) == 0
    shutil.rmtree(source)
    assert cli.main(["train", "--resume", str(tmp_path / "ft"), "schedule.epochs=2"]) == 0
    records = [json.loads(line) for line in (tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1, 2]


@pytest.mark.parametrize("name", ["v0_scratch", "v0_finetune_hf"])
def test_run_folders_written_before_the_change_load_evaluate_and_resume(tmp_path, name):
    run = shutil.copytree(OLD_RUNS / name, tmp_path / name, symlinks=True)
    recorded = json.loads((run / "summary.json").read_text())["final_top1"]  # measured in bf16 autocast back then
    assert eval_top1(run) == pytest.approx(recorded, abs=2.0)
    assert cli.main(["train", "--resume", str(run), "schedule.epochs=2", "precision=fp32"]) == 0
    epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()
              if json.loads(line)["kind"] == "epoch"]
    assert epochs == [1, 2]


def test_a_key_that_moved_still_reads_from_an_old_run():
    """data.augment.label_smoothing became loss.label_smoothing; the old runs' config.yaml holds the old key."""
    from vitkit.train import resolve_config

    cfg = resolve_config(OLD_RUNS / "v0_scratch" / "config.yaml", ["loss.kind=ce"])
    assert cfg.loss.label_smoothing == 0.1 and not hasattr(cfg.data.augment, "label_smoothing")
    assert resolve_config(None, ["loss.label_smoothing=0.3"]).loss.label_smoothing == 0.3
