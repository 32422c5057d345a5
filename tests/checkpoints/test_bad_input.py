"""Bad input fails loudly and says what to do: damaged files, other architectures, missing, unexpected or
misshapen keys, ambiguous files, unsafe pickles; strict=False must be asked for and then reports what it skipped."""
from __future__ import annotations

import argparse
import os
import pickle
import re
import sys
import types

import pytest
import torch
from safetensors.torch import load_file, save_file

from vitkit import create_model, from_pretrained
from vitkit.checkpoints import CheckpointError, ConflictError, MissingFieldsError, load_checkpoint


def truncated_copy(source, tmp_path, keep: float = 0.5):
    data = source.read_bytes()
    path = tmp_path / source.name
    path.write_bytes(data[:int(len(data) * keep)])
    return path


@pytest.mark.parametrize("name", ["timm_vit_cls.safetensors", "timm_vit_cls_pth.pth", "vit5_official_tiny.pth"])
def test_truncated_file_is_reported_as_damaged(name, fixtures, tmp_path):
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        from_pretrained(truncated_copy(fixtures / name, tmp_path), num_heads=4)


def test_empty_and_garbage_files(tmp_path):
    empty, garbage = tmp_path / "empty.pth", tmp_path / "garbage.pth"
    empty.write_bytes(b"")
    garbage.write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(CheckpointError, match="empty"):
        from_pretrained(empty)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        from_pretrained(garbage)


def test_missing_path_names_it(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        from_pretrained(tmp_path / "nowhere.safetensors")


def test_checkpoint_of_another_architecture(tmp_path):
    convnet = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Linear(8, 2))
    path = tmp_path / "convnet.pth"
    torch.save(convnet.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"not a Vision Transformer checkpoint.*0\.weight"):
        from_pretrained(path)


def test_hugging_face_folder_of_another_model_type(edited_hf_folder):
    folder = edited_hf_folder("hf_vit_cls", edit_config=lambda c: c.update(model_type="swin"))
    with pytest.raises(CheckpointError, match="model_type='swin'"):
        from_pretrained(folder)


def test_preset_of_another_architecture_names_the_differences(fixtures):
    with pytest.raises(CheckpointError, match=r"embed_dim: checkpoint 64, preset 'vit_small_patch16_224' 384; "
                                              r"depth: checkpoint 2, preset 'vit_small_patch16_224' 12"):
        from_pretrained(fixtures / "timm_vit_cls.safetensors", model="vit_small_patch16_224")


def test_ambiguous_timm_file_asks_for_num_heads(fixtures):
    with pytest.raises(ValueError, match=r"(?i)pass num_heads=\.\.\."):
        from_pretrained(fixtures / "timm_vit_cls.safetensors")


def test_eva_file_asks_for_num_heads_and_rope(fixtures):
    with pytest.raises(ValueError, match=r"(?i)pass num_heads=\.\.\. and rope=\.\.\."):
        from_pretrained(fixtures / "timm_eva_rope_swiglu.safetensors")
    with pytest.raises(ValueError, match=r"(?i)pass rope=\.\.\."):
        from_pretrained(fixtures / "timm_eva_rope_swiglu.safetensors", num_heads=4)


def test_a_bare_state_dict_takes_num_heads_from_the_preset_with_its_shapes(tmp_path):
    """timm files do not record the head count; a preset with the same tensor shapes supplies it (and its
    preprocessing), as timm users expect from create_model(name, pretrained=True)."""
    torch.manual_seed(0)
    original = create_model("vit_cifar_patch4_32")
    path = tmp_path / "plain_state_dict.pth"
    torch.save(original.state_dict(), path)
    loaded = from_pretrained(path)
    assert loaded.preset_name == "vit_cifar_patch4_32" and loaded.cfg == original.cfg
    assert loaded.preprocess == original.preprocess
    for key, tensor in original.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key


def test_a_preset_name_resolves_the_ambiguity(tmp_path):
    """No preset is 96 wide, so nothing tells the head count: the error asks for it; num_heads= answers."""
    torch.manual_seed(0)
    original = create_model("vit_cifar_patch4_32", embed_dim=96, num_heads=4)
    path = tmp_path / "plain_state_dict.pth"
    torch.save(original.state_dict(), path)
    with pytest.raises(MissingFieldsError, match="num_heads") as error:
        from_pretrained(path)
    assert error.value.fields == ["num_heads"]
    loaded = from_pretrained(path, num_heads=4)
    assert loaded.cfg == original.cfg
    for key, tensor in original.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key


def test_a_field_passed_that_contradicts_the_tensors_is_named(fixtures):
    with pytest.raises(ConflictError, match=r"embed_dim: checkpoint 64, the fields passed 128.*depth") as error:
        from_pretrained(fixtures / "timm_vit_cls.safetensors", num_heads=4, embed_dim=128, depth=3)
    assert error.value.fields == ["embed_dim", "depth"]


@pytest.mark.parametrize("name,key", [("timm_vit_ls_qknorm.safetensors", "blocks.0.attn.k_norm.bias"),
                                      ("timm_vit_cls.safetensors", "head.bias")])
def test_missing_key_is_listed_even_when_outputs_could_not_tell(name, key, edited_safetensors):
    """k_norm.bias cancels out of the outputs (see the fixture README), so only the key check can catch it."""
    path = edited_safetensors(name, lambda sd: sd.pop(key))
    with pytest.raises(CheckpointError, match=rf"missing from the checkpoint \(1\): {key.replace('.', '[.]')}"):
        from_pretrained(path, num_heads=4)


def test_missing_hugging_face_key_bias_is_named(edited_hf_folder):
    key = "vit.encoder.layer.1.attention.attention.key.bias"
    folder = edited_hf_folder("hf_vit_cls", edit_weights=lambda sd: sd.pop(key))
    with pytest.raises(CheckpointError, match=key.replace(".", "[.]")):
        from_pretrained(folder)


def test_missing_eva_projection_is_named(edited_safetensors):
    path = edited_safetensors("timm_eva_rope_swiglu.safetensors", lambda sd: sd.pop("blocks.1.attn.v_proj.weight"))
    with pytest.raises(CheckpointError, match=r"blocks[.]1[.]attn[.]v_proj[.]weight"):
        from_pretrained(path, num_heads=4, rope=True)


def test_unexpected_key_fails_strictly_and_is_reported_when_skipped(edited_safetensors, reference, caplog):
    path = edited_safetensors("timm_vit_cls.safetensors",
                              lambda sd: sd.update({"blocks.0.attn.extra.weight": torch.ones(3)}))
    with pytest.raises(CheckpointError, match=r"not in the model \(1\): blocks[.]0[.]attn[.]extra[.]weight"
                                              r"(.|\n)*strict=False"):
        from_pretrained(path, num_heads=4)
    model, report = load_checkpoint(path, num_heads=4, strict=False)
    assert report.unexpected == ["blocks.0.attn.extra.weight"] and not report.missing
    model = from_pretrained(path, num_heads=4, strict=False).eval()
    assert "strict=False" in caplog.text and "blocks.0.attn.extra.weight" in caplog.text
    x, stored = reference("timm_vit_cls")
    with torch.no_grad():
        torch.testing.assert_close(model(x), stored["logits"], atol=1e-5, rtol=0)


def test_non_strict_load_reports_missing_keys(edited_safetensors, caplog):
    path = edited_safetensors("timm_vit_cls.safetensors", lambda sd: sd.pop("blocks.1.norm2.bias"))
    model, report = load_checkpoint(path, num_heads=4, strict=False)
    assert report.missing == ["blocks.1.norm2.bias"]
    assert "missing from the checkpoint (1): blocks.1.norm2.bias" in report.describe()
    from_pretrained(path, num_heads=4, strict=False)
    assert "blocks.1.norm2.bias" in caplog.text


def test_shape_mismatch_lists_both_shapes(fixtures):
    """strict=False builds the architecture asked for, even one the tensors contradict, and lists what did not fit."""
    _, report = load_checkpoint(fixtures / "timm_vit_cls.safetensors", num_heads=4, mlp_ratio=2.0, strict=False)
    assert re.search(r"blocks[.]0[.]mlp[.]fc1[.]weight: checkpoint \[256, 64\], model \[128, 64\]",
                     report.describe())


def test_unknown_override_suggests_the_field(fixtures):
    with pytest.raises(ValueError, match="num_heads"):
        from_pretrained(fixtures / "timm_vit_cls.safetensors", num_head=4)


class _Payload:
    """Unpickling this would create a folder (any code could run); a safe load must refuse before that."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickled_code_is_never_run(tmp_path):
    marker = tmp_path / "payload_ran"
    torch.save({"model": _Payload(marker)}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="safe load refuses"):
        from_pretrained(tmp_path / "evil.pth")
    assert not marker.exists()


def test_vit5_training_dict_needs_exactly_the_namespace_allowlisted(fixtures):
    """The peer fact behind the loader's allowlist: plain weights_only loading refuses argparse.Namespace."""
    with pytest.raises(pickle.UnpicklingError, match="argparse.Namespace"):
        torch.load(fixtures / "vit5_official_tiny.pth", weights_only=True)
    with torch.serialization.safe_globals([argparse.Namespace]):
        assert "model_ema" in torch.load(fixtures / "vit5_official_tiny.pth", weights_only=True)


def test_vit5_rope_buffers_must_be_the_frequencies_vitkit_computes(fixtures, tmp_path):
    checkpoint = torch.load(fixtures / "vit5_official_tiny_modelonly.pth", weights_only=True)
    weights = checkpoint["model"]
    for block in (0, 1):
        weights[f"blocks.{block}.attn.rope.freqs"] = weights[f"blocks.{block}.attn.rope.freqs"] ** 1.1
    torch.save(checkpoint, tmp_path / "other_rope.pth")
    with pytest.raises(CheckpointError, match="rope.freqs .* not the 2D RoPE frequencies"):
        from_pretrained(tmp_path / "other_rope.pth")
    weights["blocks.1.attn.rope.freqs"] = weights["blocks.1.attn.rope.freqs"] * 2
    torch.save(checkpoint, tmp_path / "uneven_rope.pth")
    with pytest.raises(CheckpointError, match=r"blocks[.]1[.]attn[.]rope[.]freqs differs"):
        from_pretrained(tmp_path / "uneven_rope.pth")


def test_ema_requested_where_there_is_none(fixtures):
    with pytest.raises(CheckpointError, match="no EMA weights"):
        from_pretrained(fixtures / "vit5_official_tiny_modelonly.pth", use_ema=True)
    with pytest.raises(CheckpointError, match="no EMA"):
        from_pretrained(fixtures / "hf_vit_cls", use_ema=True)


def test_hugging_face_weights_without_their_folder(fixtures, tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file(load_file(str(fixtures / "hf_vit_cls" / "model.safetensors")), str(path))
    with pytest.raises(CheckpointError, match="pass the folder"):
        from_pretrained(path)


def test_hub_without_huggingface_hub_says_to_pass_a_local_path(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(CheckpointError, match=r"not installed.*local folder: vitkit.from_pretrained\('/path/to/vit"):
        from_pretrained("hf-hub:google/vit-base-patch16-224")


def test_hub_offline_says_to_pass_a_local_path(monkeypatch):
    def offline(repo_id, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")
    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(snapshot_download=offline))
    with pytest.raises(CheckpointError, match=r"could not download 'google/vit-base-patch16-224'.*offline.*"
                                              r"local folder"):
        from_pretrained("hf-hub:google/vit-base-patch16-224")


def test_hub_download_is_loaded_like_a_local_folder(monkeypatch, fixtures, reference):
    requested = []

    def snapshot(repo_id, **kwargs):
        requested.append(repo_id)
        return str(fixtures / "hf_vit_cls")
    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(snapshot_download=snapshot))
    model = from_pretrained("hf-hub:someone/tiny-vit").eval()
    assert requested == ["someone/tiny-vit"]
    x, stored = reference("hf_vit_cls")
    with torch.no_grad():
        torch.testing.assert_close(model(x), stored["logits"], atol=1e-5, rtol=0)
