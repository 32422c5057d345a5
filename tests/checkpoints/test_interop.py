"""Every checkpoint saved by a peer (timm 1.0, transformers 5, official ViT-5) loads in one call and reproduces
the peer's own stored outputs at the manifest's tolerance (1e-5 in float32)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vitkit import Preprocess, ViTConfig, from_pretrained
from vitkit.layers import resample_pos_embed

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "interop"
CASES = sorted(case["case"] for case in json.loads((FIXTURES / "manifest.json").read_text())["cases"])

# What a user passes: what the file cannot record (timm: heads; Eva: heads and RoPE), or the adaptation the
# peer performed (ViT-5's --finetune at 48px). The *_dynres48 / *_interp48 cases run the 32px model on 48px input.
LOAD_ARGS = {
    "timm_vit_cls": {"num_heads": 4},
    "timm_vit_cls_pth": {"num_heads": 4},
    "timm_vit_cls_dynres48": {"num_heads": 4},
    "timm_vit_gap_noembedcls_reg": {"num_heads": 4},
    "timm_vit_ls_qknorm": {},  # the qk-norm width gives the head dim
    "timm_deit_distilled": {"num_heads": 4},
    "timm_eva_rope_swiglu": {"num_heads": 4, "rope": True},
    "hf_vit_cls": {},
    "hf_vit_cls_interp48": {},
    "hf_vitmodel_pooler": {},
    "vit5_official_tiny": {},
    "vit5_official_tiny_modelonly": {},
    "vit5_official_tiny_ft48": {"img_size": 48},
}


def peer_outputs(model, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every output name the fixtures store, computed through vitkit's public forward pieces."""
    out = {}
    with torch.no_grad():
        tokens, rope, bias = model.embed(x)
        out["embed_out"] = tokens
        for i, block in enumerate(model.blocks):
            tokens = block(tokens, rope, bias)
            out[f"block_{i}_out"] = tokens
        out["hidden_states_last_prenorm"] = tokens
        out["features"] = features = model.norm(tokens)
        out["pre_logits"] = out["pooler_output"] = model.forward_head(features, pre_logits=True)
        out["logits"] = model.forward_head(features)
        if model.head_dist is not None:
            out["logits_head_cls"] = model.head(features[:, 0])
            out["logits_head_dist"] = model.head_dist(features[:, 1])
        grid = (x.shape[-2] // model.cfg.patch_size, x.shape[-1] // model.cfg.patch_size)
        prefix = 0 if model.cfg.no_embed_class else model.cfg.num_prefix_tokens
        out["pos_embed_resampled"] = resample_pos_embed(model.pos_embed, grid, model.cfg.grid_size, prefix,
                                                        antialias=model.cfg.pos_embed_antialias)
        if rope is not None:
            start, patches = model.cfg.num_prefix_tokens, grid[0] * grid[1]
            cos, sin = rope[0][:, ::2], rope[1][:, ::2]  # one column per rotation pair, as the peer stores them
            out["rope_patch_cos"], out["rope_patch_sin"] = cos[start:start + patches], sin[start:start + patches]
            out["rope_reg_cos"], out["rope_reg_sin"] = cos[start + patches:], sin[start + patches:]
    return out


def assert_matches(ours: dict[str, torch.Tensor], stored: dict[str, torch.Tensor], spec: dict) -> None:
    for name, expected in stored.items():
        assert name in ours, f"no vitkit counterpart computed for the stored output {name!r}"
        torch.testing.assert_close(ours[name], expected, atol=spec["atol"], rtol=spec["rtol"],
                                   msg=lambda m, name=name: f"{spec['case']}: {name}: {m}")


def test_every_manifest_case_has_load_arguments():
    assert set(LOAD_ARGS) == set(CASES)


@pytest.mark.parametrize("case", CASES)
def test_reproduces_the_peers_outputs(case, manifest, reference):
    spec = manifest[case]
    x, stored = reference(case)
    assert set(stored) == set(spec["outputs"])
    model = from_pretrained(FIXTURES / spec["file"], **LOAD_ARGS[case]).eval()
    ours = peer_outputs(model, x)
    if "logits_ema" in stored:
        ema = peer_outputs(from_pretrained(FIXTURES / spec["file"], use_ema=True, **LOAD_ARGS[case]).eval(), x)
        ours["logits_ema"], ours["pre_logits_ema"] = ema["logits"], ema["pre_logits"]
    assert_matches(ours, stored, spec)


def test_ema_weights_really_differ_in_the_fixture(reference):
    _, stored = reference("vit5_official_tiny")
    assert (stored["logits"] - stored["logits_ema"]).abs().max() > 1e-2


@pytest.mark.parametrize("case", ["timm_vit_cls_dynres48", "hf_vit_cls_interp48"])
def test_loading_at_the_new_size_matches_the_peers_dynamic_run(case, manifest, reference):
    """img_size=48 at load time resamples once (set_input_size) with the peer's own antialias setting."""
    spec = manifest[case]
    x, stored = reference(case)
    model = from_pretrained(FIXTURES / spec["file"], img_size=48, **LOAD_ARGS[case]).eval()
    assert model.cfg.img_size == (48, 48)
    torch.testing.assert_close(model.pos_embed.data, stored["pos_embed_resampled"], atol=spec["atol"], rtol=0)
    assert_matches(peer_outputs(model, x), stored, spec)


@pytest.mark.parametrize("case,wrong", [("timm_vit_cls_dynres48", False), ("hf_vit_cls_interp48", True),
                                        ("vit5_official_tiny_ft48", True)])
def test_the_other_antialias_setting_does_not_reproduce_the_peer(case, wrong, manifest, reference):
    """Each peer has its own resampling; the fixtures tell the two apart, so the loaders must pick the right one."""
    spec = manifest[case]
    x, stored = reference(case)
    args = {**LOAD_ARGS[case], "pos_embed_antialias": wrong}
    model = from_pretrained(FIXTURES / spec["file"], **args).eval()
    ours = peer_outputs(model, x)
    assert (ours["pos_embed_resampled"] - stored["pos_embed_resampled"]).abs().max() > 1e-3


def test_new_head_is_zero_initialised_and_said(fixtures, reference, caplog):
    x, stored = reference("timm_deit_distilled")
    model = from_pretrained(fixtures / "timm_deit_distilled.safetensors", num_heads=4, num_classes=5).eval()
    assert "head replaced" in caplog.text and "10 classes" in caplog.text
    assert model.cfg.num_classes == 5
    for head in (model.head, model.head_dist):
        assert head.weight.shape == (5, 64) and not head.weight.any() and not head.bias.any()
    torch.testing.assert_close(model.forward_features(x), stored["features"], atol=1e-5, rtol=0)
    assert torch.equal(model(x), torch.zeros(2, 5))


def test_output_invariant_key_biases_are_loaded_not_dropped(fixtures):
    """Softmax cancels key biases (fixture README), so check the tensors themselves reach the model."""
    hf = load_file(str(fixtures / "hf_vit_cls" / "model.safetensors"))
    model = from_pretrained(fixtures / "hf_vit_cls")
    timm = load_file(str(fixtures / "timm_vit_ls_qknorm.safetensors"))
    qknorm = from_pretrained(fixtures / "timm_vit_ls_qknorm.safetensors")
    for i in range(2):
        key_bias = model.blocks[i].attn.qkv.bias[64:128]
        assert torch.equal(key_bias, hf[f"vit.encoder.layer.{i}.attention.attention.key.bias"])
        assert torch.equal(qknorm.blocks[i].attn.k_norm.bias, timm[f"blocks.{i}.attn.k_norm.bias"])


@pytest.mark.parametrize("wrap,suffix", [(lambda sd: {"state_dict": sd}, ".pth"),
                                         (lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}}, ".bin"),
                                         (lambda sd: {f"_orig_mod.{k}": v for k, v in sd.items()}, ".pt")])
def test_training_wrappers_and_prefixes_are_unwrapped(wrap, suffix, reference, tmp_path):
    path = tmp_path / f"wrapped{suffix}"
    torch.save(wrap(load_file(str(FIXTURES / "timm_vit_cls.safetensors"))), path)
    x, stored = reference("timm_vit_cls")
    with torch.no_grad():
        logits = from_pretrained(path, num_heads=4).eval()(x)
    torch.testing.assert_close(logits, stored["logits"], atol=1e-5, rtol=0)


def test_timm_hub_folder_supplies_pooling_and_preprocessing(reference, tmp_path):
    (tmp_path / "model.safetensors").write_bytes((FIXTURES / "timm_vit_cls.safetensors").read_bytes())
    config = {"architecture": "vit_tiny_fixture", "num_classes": 10, "global_pool": "token",
              "pretrained_cfg": {"input_size": [3, 32, 32], "interpolation": "bilinear", "crop_pct": 0.9,
                                 "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    model = from_pretrained(tmp_path, num_heads=4).eval()
    assert model.preprocess == Preprocess(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bilinear",
                                          crop_pct=0.9)
    x, stored = reference("timm_vit_cls")
    with torch.no_grad():
        torch.testing.assert_close(model(x), stored["logits"], atol=1e-5, rtol=0)


def test_a_vitconfig_can_supply_the_missing_fields(reference):
    config = ViTConfig(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_classes=10)
    model = from_pretrained(FIXTURES / "timm_vit_cls.safetensors", model=config).eval()
    x, stored = reference("timm_vit_cls")
    with torch.no_grad():
        torch.testing.assert_close(model(x), stored["logits"], atol=1e-5, rtol=0)
