"""--tome on eval, predict and bench, and `vitkit prune`, end to end on a tiny saved model."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from vitkit import ViTConfig, create_model
from vitkit.checkpoints import from_pretrained, save_pretrained
from vitkit.cli import main
from vitkit.inference import load_model, predict
from vitkit.models import VisionTransformer
from vitkit.models.profile import count_flops


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = VisionTransformer(ViTConfig(img_size=8, patch_size=1, embed_dim=32, depth=2, num_heads=2,
                                        num_classes=10))
    with torch.no_grad():  # weights large enough that merging moves the probabilities visibly
        for parameter in model.parameters():
            parameter.normal_(0, 0.3)
    model.class_names = [str(i) for i in range(10)]
    return save_pretrained(model, tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), "L").save(folder / f"{i}.png")
    return folder


def test_predict_with_tome_gives_the_merging_models_probabilities(checkpoint, images, capsys):
    assert main(["predict", str(checkpoint), str(images), "--format", "json", "--backend", "torch-fp32",
                 "--tome", "12"]) == 0
    merged = json.loads(capsys.readouterr().out)
    expected = predict(load_model(checkpoint, token_merging=12), [images], topk=5)
    plain = predict(load_model(checkpoint), [images], topk=5)
    for got, want, without in zip(merged, expected, plain):
        assert [t["probability"] for t in got["top"]] == pytest.approx([v for _, v in want.top], abs=1e-6)
        assert [t["probability"] for t in got["top"]] != pytest.approx([v for _, v in without.top], abs=2e-5)


def test_eval_records_the_merging_and_bad_values_are_refused(checkpoint, tmp_path, capsys):
    assert main(["eval", str(checkpoint), "--data", "digits", "--tome", "4,4", "--backend", "torch-fp32",
                 "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "eval.json").read_text())["token_merging"] == [4, 4]
    assert main(["eval", str(checkpoint), "--data", "digits", "--tome", "4,4,4", "--backend", "torch-fp32"]) == 2
    assert "token_merging lists r for each block" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", str(checkpoint), "--data", "digits", "--tome", "many"])


def test_bench_with_tome_times_fewer_flops_and_refuses_the_unmerging_twins(tmp_path, capsys):
    timing = ["--batch", "2", "--threads", "1", "--min-time", "0.01", "--repeats", "1", "--warmup", "0"]
    assert main(["bench", "vit_cifar_patch4_32", "--tome", "8", "--json", str(tmp_path / "tome.json"), *timing]) == 0
    record = json.loads((tmp_path / "tome.json").read_text())[0]
    plain = create_model("vit_cifar_patch4_32")
    plain_gflops = count_flops(plain, plain.cfg.img_size) / 1e9
    assert record["token_merging"] == 8 and record["gflop_s"] / record["img_s"] < 0.8 * plain_gflops
    assert main(["bench", "vit_cifar_patch4_32", "--tome", "8", "--baseline", *timing]) == 2
    assert "token_merging=8" in capsys.readouterr().err


def test_prune_command_saves_a_smaller_model_that_loads(checkpoint, tmp_path, capsys):
    pytest.importorskip("torch_pruning")
    assert main(["prune", str(checkpoint), str(tmp_path / "pruned"), "--flops", "0.4"]) == 0
    out = capsys.readouterr().out
    assert "heads/MLP width per block" in out and "--init-from" in out
    pruned = from_pretrained(tmp_path / "pruned")
    assert pruned.cfg.block_widths is not None and pruned.class_names == [str(i) for i in range(10)]


def test_tome_on_a_family_without_token_merging_says_so():
    from vitkit.models.vision_transformer import apply_token_merging

    with torch.device("meta"):
        swin = create_model("swin_tiny_patch4_window7_224")
    with pytest.raises(ValueError, match="a SwinTransformer does not merge tokens"):
        apply_token_merging(swin, 4)
