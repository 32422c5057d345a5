"""vitkit's own format: save_pretrained + from_pretrained with no other argument rebuild the model bit for bit."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from vitkit import Preprocess, ViTConfig, VisionTransformer, create_model, from_pretrained
from vitkit.checkpoints import CheckpointError, save_pretrained

TINY = dict(embed_dim=32, depth=2, num_heads=4, num_classes=3)
MODELS = {
    "vit5": ("vit5_small_patch16_224", dict(img_size=32)),
    "deit_distilled": ("deit_tiny_distilled_patch16_224", dict(img_size=32)),
    "swiglu_rope_avg": ("vit_small_patch16_224", dict(img_size=32, mlp="swiglu", mlp_norm=True, rope=True,
                                                      global_pool="avg", fc_norm=True, norm="rmsnorm",
                                                      representation_size=16)),
    "hybrid_r50": ("vit_base_r50_s16_224", dict(img_size=32, depth=1, backbone_layers=(1, 1))),
    "conv_stem": ("vit_cifar_patch4_32", dict(patch_size=1, conv_stem=(8, 16))),
}


def randomised(name: str, overrides: dict) -> VisionTransformer:
    """A preset with every tensor random, so zero-initialised or default values cannot hide a lost tensor."""
    torch.manual_seed(0)
    model = create_model(name, **{**TINY, **overrides}).eval()
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if not tensor.dtype.is_floating_point:  # BatchNorm's batch counter
                tensor.random_(1, 1000)
            else:
                tensor.copy_(torch.randn_like(tensor).abs() if key.endswith("running_var") else torch.randn_like(tensor))
    model.preprocess = Preprocess(mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6), interpolation="bilinear", crop_pct=0.95)
    model.class_names = ["cat", "dog", "fox"]
    return model


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_round_trip_is_bit_exact(kind, tmp_path):
    name, overrides = MODELS[kind]
    model = randomised(name, overrides)
    save_pretrained(model, tmp_path / "saved")
    loaded = from_pretrained(tmp_path / "saved").eval()
    assert loaded.cfg == model.cfg
    assert loaded.preset_name == name
    assert loaded.preprocess == model.preprocess
    assert loaded.class_names == ["cat", "dog", "fox"]
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for key, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key
    x = torch.randn(2, 3, *model.cfg.img_size)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_config_json_records_what_the_issue_asks(tmp_path):
    model = randomised(*MODELS["vit5"])
    save_pretrained(model, tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["format"] == "vitkit" and saved["preset"] == "vit5_small_patch16_224"
    assert saved["config"] == model.cfg.to_dict()
    assert saved["preprocess"] == {"input_size": [3, 32, 32], "mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6],
                                   "interpolation": "bilinear", "crop_pct": 0.95}
    assert saved["class_names"] == ["cat", "dog", "fox"]


def test_the_weights_file_alone_is_enough(tmp_path):
    model = randomised(*MODELS["vit5"])
    save_pretrained(model, tmp_path / "saved")
    shutil.copy(tmp_path / "saved" / "model.safetensors", tmp_path / "alone.safetensors")
    loaded = from_pretrained(tmp_path / "alone.safetensors")
    assert loaded.cfg == model.cfg and loaded.class_names == model.class_names


def test_a_model_without_preset_or_class_names(tmp_path):
    model = VisionTransformer(ViTConfig(img_size=16, patch_size=8, **TINY))
    save_pretrained(model, tmp_path)
    loaded = from_pretrained(tmp_path)
    assert loaded.preset_name is None and loaded.class_names is None
    assert loaded.cfg == model.cfg


def test_overrides_adapt_a_saved_model(tmp_path, caplog):
    model = randomised(*MODELS["vit5"])
    save_pretrained(model, tmp_path)
    loaded = from_pretrained(tmp_path, num_classes=7, img_size=48)
    assert loaded.cfg.num_classes == 7 and loaded.cfg.img_size == (48, 48)
    assert loaded.class_names is None
    assert "head replaced" in caplog.text and "resampled from a 2x2 to a 3x3 grid" in caplog.text


def test_damaged_config_and_newer_format(tmp_path):
    save_pretrained(randomised(*MODELS["vit5"]), tmp_path)
    config = tmp_path / "config.json"
    saved = json.loads(config.read_text())
    config.write_text(json.dumps({**saved, "format_version": 99}))
    with pytest.raises(CheckpointError, match="upgrade vitkit"):
        from_pretrained(tmp_path)
    config.write_text(json.dumps(saved)[:100])
    with pytest.raises(CheckpointError, match="config.json is not valid JSON"):
        from_pretrained(tmp_path)


def test_saving_something_else_is_refused(tmp_path):
    with pytest.raises(ValueError, match="save_pretrained saves a vitkit VisionTransformer"):
        save_pretrained(torch.nn.Linear(2, 2), tmp_path)
