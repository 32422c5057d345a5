"""`vitkit convert SRC DST`: any supported checkpoint into vitkit's format, printing what was mapped; the
converted folder still reproduces the peer's outputs."""
from __future__ import annotations

import torch

from vitkit import from_pretrained
from vitkit.cli import main


def test_convert_timm_then_load_reproduces_timm(fixtures, reference, tmp_path, capsys):
    assert main(["convert", str(fixtures / "timm_eva_rope_swiglu.safetensors"), str(tmp_path / "eva"),
                 "num_heads=4", "rope=true"]) == 0
    printed = capsys.readouterr().out
    assert "format: timm" in printed
    assert "blocks.N.attn.{q_proj,k_proj,v_proj} -> blocks.N.attn.qkv" in printed
    assert "blocks.N.mlp.{fc1_x,fc1_g} -> blocks.N.mlp.fc1" in printed
    x, stored = reference("timm_eva_rope_swiglu")
    with torch.no_grad():
        torch.testing.assert_close(from_pretrained(tmp_path / "eva").eval()(x), stored["logits"], atol=1e-5, rtol=0)


def test_convert_vit5_ema(fixtures, reference, tmp_path, capsys):
    assert main(["convert", str(fixtures / "vit5_official_tiny.pth"), str(tmp_path / "ema"), "--ema"]) == 0
    printed = capsys.readouterr().out
    assert "['model_ema']" in printed and "blocks.N.gamma_1 -> blocks.N.ls1.gamma" in printed
    x, stored = reference("vit5_official_tiny")
    with torch.no_grad():
        torch.testing.assert_close(from_pretrained(tmp_path / "ema").eval()(x), stored["logits_ema"],
                                   atol=1e-5, rtol=0)


def test_convert_hugging_face_folder(fixtures, tmp_path, capsys):
    assert main(["convert", str(fixtures / "hf_vitmodel_pooler"), str(tmp_path / "hf")]) == 0
    printed = capsys.readouterr().out
    assert "encoder.layer.N.attention.attention.{query,key,value} -> blocks.N.attn.qkv" in printed
    assert "pooler.dense.* -> pre_logits.fc.*" in printed
    assert from_pretrained(tmp_path / "hf").cfg.representation_size == 64


def test_convert_without_num_heads_fails_with_the_field_to_pass(fixtures, tmp_path, capsys):
    assert main(["convert", str(fixtures / "timm_vit_cls.safetensors"), str(tmp_path / "out")]) == 2
    assert "num_heads=" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
