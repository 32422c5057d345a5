"""A Swin checkpoint saved by timm 1.0 loads in one call and reproduces timm's stored logits and features (1e-5 in
float32); vitkit's own format records the family and round-trips a Swin, while ViT saves without a family still
load."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from vitkit import create_model, from_pretrained, save_pretrained
from vitkit.checkpoints import CheckpointError, ConflictError, load_checkpoint
from vitkit.models import SwinTransformer, VisionTransformer

SWIN = Path(__file__).resolve().parents[1] / "fixtures" / "interop" / "swin"
MANIFEST = json.loads((SWIN / "manifest.json").read_text())
CASE = MANIFEST["cases"][0]
CHECKPOINT = SWIN / CASE["file"]


@pytest.fixture(scope="module")
def reference() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    stored = load_file(str(SWIN / CASE["input_file"]))
    return stored.pop("x"), stored


def assert_reproduces(model: torch.nn.Module, reference) -> None:
    x, stored = reference
    tolerance = MANIFEST["tolerance"]
    with torch.no_grad():
        features = model.eval().forward_features(x)
        ours = {"features": features, "logits": model.forward_head(features)}
    assert set(stored) == set(CASE["outputs"]) == set(ours)
    for name, expected in stored.items():
        torch.testing.assert_close(ours[name], expected, **tolerance, msg=lambda m, name=name: f"{name}: {m}")


def test_reproduces_timms_logits_and_features(reference):
    model, report = load_checkpoint(CHECKPOINT)
    assert isinstance(model, SwinTransformer) and report.format == "timm"
    kwargs = CASE["peer_kwargs"]
    cfg = model.cfg
    assert (cfg.patch_size, cfg.window_size, cfg.embed_dim, cfg.depths, cfg.num_heads, cfg.num_classes) == \
        (kwargs["patch_size"], (kwargs["window_size"],) * 2, kwargs["embed_dim"], tuple(kwargs["depths"]),
         tuple(kwargs["num_heads"]), kwargs["num_classes"])
    assert any("img_size is not recorded" in note for note in report.notes)
    assert_reproduces(model, reference)
    _, maps = model.forward_intermediates(reference[0], norm=True)
    torch.testing.assert_close(maps[-1].permute(0, 2, 3, 1), reference[1]["features"], **MANIFEST["tolerance"])


def test_vitkits_format_records_the_family_and_round_trips_a_swin(tmp_path, reference):
    model = from_pretrained(CHECKPOINT, img_size=32)
    model.class_names = [f"c{i}" for i in range(10)]
    save_pretrained(model, tmp_path / "swin")
    assert json.loads((tmp_path / "swin" / "config.json").read_text())["family"] == "swin"
    for source in (tmp_path / "swin", tmp_path / "swin" / "model.safetensors"):
        again = from_pretrained(source)
        assert isinstance(again, SwinTransformer) and again.cfg == model.cfg
        assert again.class_names == model.class_names and again.preprocess == model.preprocess
        assert_reproduces(again, reference)


def test_a_preset_round_trips(tmp_path):
    small = create_model("swin_tiny_patch4_window7_224", depths=(1, 1, 1, 1), embed_dim=24, num_classes=3)
    save_pretrained(small, tmp_path)
    again = from_pretrained(tmp_path)
    assert again.preset_name == "swin_tiny_patch4_window7_224" and again.preprocess.crop_pct == 0.9
    assert again.cfg == small.cfg


def test_a_vit_saved_without_a_family_still_loads(tmp_path):
    vit = create_model("vit_cifar_patch4_32", depth=1, embed_dim=32, num_heads=2)
    save_pretrained(vit, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config.pop("family") == "vit"
    (tmp_path / "config.json").write_text(json.dumps(config))
    again = from_pretrained(tmp_path)
    assert isinstance(again, VisionTransformer) and again.cfg == vit.cfg


def test_a_new_window_and_size_adapt_after_loading():
    model, report = load_checkpoint(CHECKPOINT, img_size=64, window_size=8, num_classes=3)
    assert model.cfg.img_size == (64, 64) and model.cfg.window_size == (8, 8) and model.cfg.num_classes == 3
    assert model.layers[1].blocks[0].attn.relative_position_bias_table.shape == (15 * 15, 4)
    assert any("window changed from 4x4 to 8x8" in line for line in report.adapted)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)


def test_wrong_family_and_unreadable_layouts_are_refused(tmp_path):
    with pytest.raises(ConflictError, match="holds a swin model, but preset 'vit_cifar_patch4_32' is a vit one"):
        from_pretrained(CHECKPOINT, model="vit_cifar_patch4_32")
    with pytest.raises(ValueError, match="unknown SwinConfig field"):
        from_pretrained(CHECKPOINT, depth=2)
    state = load_file(str(CHECKPOINT))
    state["head.weight"] = state.pop("head.fc.weight")
    save_file(state, str(tmp_path / "microsoft.safetensors"))
    with pytest.raises(CheckpointError, match="original Microsoft layout"):
        from_pretrained(tmp_path / "microsoft.safetensors")
    state = load_file(str(CHECKPOINT))
    state["layers.1.blocks.1.attn.relative_position_bias_table"] = torch.zeros(9, 4)
    state["layers.1.blocks.0.attn.relative_position_bias_table"] = torch.zeros(9, 4)
    save_file(state, str(tmp_path / "clamped.safetensors"))
    with pytest.raises(CheckpointError, match=r"tables have \[49, 9\] rows"):
        from_pretrained(tmp_path / "clamped.safetensors")
