"""Hugging Face transformers ViT folders (ViTModel, ViTForImageClassification): config.json + weights.

transformers 5.x renames modules in memory but writes the legacy names to disk, which are the ones read here.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from ..preprocess import INCEPTION_MEAN, INCEPTION_STD, Preprocess
from .io import CheckpointError, pick_state_dict, read_json, read_tensors
from .mapping import Converted, fuse_linears, key_prefixes, mlp_ratio_for, rename_keys

HF_QKV = r"^((?:vit\.)?encoder\.layer\.\d+\.attention\.attention\.)(?:query|key|value)\.weight$"
HF_LAYER = re.compile(r"encoder\.layer\.(\d+)\.")
RULES = [
    (r"^(?:vit\.)?embeddings\.cls_token$", "cls_token"),
    (r"^(?:vit\.)?embeddings\.position_embeddings$", "pos_embed"),
    (r"^(?:vit\.)?embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^(?:vit\.)?encoder\.layer\.(\d+)\.layernorm_before\.", r"blocks.\1.norm1."),
    (r"^(?:vit\.)?encoder\.layer\.(\d+)\.layernorm_after\.", r"blocks.\1.norm2."),
    (r"^(?:vit\.)?encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attn.proj."),
    (r"^(?:vit\.)?encoder\.layer\.(\d+)\.intermediate\.dense\.", r"blocks.\1.mlp.fc1."),
    (r"^(?:vit\.)?encoder\.layer\.(\d+)\.output\.dense\.", r"blocks.\1.mlp.fc2."),
    (r"^(?:vit\.)?layernorm\.", "norm."),
    (r"^(?:vit\.)?pooler\.dense\.", "pre_logits.fc."),
    (r"^classifier\.", "head."),
]
ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu",
               "silu": "silu", "swish": "silu"}
REQUIRED = {"hidden_size": "embed_dim", "num_hidden_layers": "depth", "num_attention_heads": "num_heads",
            "image_size": "img_size", "patch_size": "patch_size"}
PIL_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}
HF_DEFAULT_PREPROCESS = Preprocess(mean=INCEPTION_MEAN, std=INCEPTION_STD, interpolation="bilinear", crop_pct=1.0)
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def is_hf_state_dict(sd: dict[str, torch.Tensor]) -> bool:
    """Legacy transformers ViT names, with or without the 'vit.' prefix."""
    return any(k.startswith(("embeddings.patch_embeddings.", "vit.embeddings.patch_embeddings.")) for k in sd)


def convert_hf(folder: Path, config: dict[str, Any]) -> Converted:
    """Fuses query/key/value into qkv, renames every module, and reads the architecture from config.json."""
    if config.get("model_type") != "vit":
        raise CheckpointError(f"{folder / 'config.json'} describes model_type={config.get('model_type')!r}; vitkit "
                              "loads Hugging Face folders of model_type 'vit' (ViTModel, ViTForImageClassification)")
    notes = [f"config.json: model_type 'vit' ({', '.join(config.get('architectures') or ['architecture unnamed'])})"]
    sd = read_hf_weights(folder)
    if not is_hf_state_dict(sd):
        raise CheckpointError(f"the weights in {folder} do not use transformers' ViT names "
                              "(embeddings.patch_embeddings.*); the folder mixes another model's files")
    for prefix in key_prefixes(sd, HF_QKV):
        layer = HF_LAYER.search(prefix).group(1)
        sd = fuse_linears(sd, prefix, ("query", "key", "value"), f"blocks.{layer}.attn.qkv")
    notes.append("[vit.]encoder.layer.N.attention.attention.{query,key,value} -> blocks.N.attn.qkv (fused)")
    sd = rename_keys(sd, RULES, notes)
    if "head.weight" in sd and "pre_logits.fc.weight" in sd:
        raise CheckpointError("the checkpoint has both a pooler and a classifier; transformers' ViT classifier "
                              "reads the class token, not the pooler, which vitkit cannot express")
    fields = _config_fields(config, sd)
    preprocess, origin = read_preprocessor(folder), f"{folder.name}/preprocessor_config.json"
    if preprocess is None:  # transformers' ViTImageProcessor defaults: mean = std = 0.5, bilinear, no crop
        preprocess, origin = HF_DEFAULT_PREPROCESS, "not recorded: Hugging Face ViT's default, mean = std = 0.5"
    converted = Converted("hf", sd, fields, notes=notes, preprocess=preprocess, preprocess_origin=origin)
    converted.class_names = _class_names(config, fields["num_classes"])
    return converted


def _config_fields(config: dict[str, Any], sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    missing = [name for name in (*REQUIRED, "intermediate_size") if name not in config]
    if missing:
        raise CheckpointError(f"config.json lacks {missing}; it is not a complete transformers ViT config")
    act = config.get("hidden_act", "gelu")
    if act not in ACTIVATIONS:
        raise CheckpointError(f"hidden_act={act!r} is not supported; vitkit maps {sorted(ACTIVATIONS)}")
    if "pre_logits.fc.weight" in sd and config.get("pooler_act", "tanh") != "tanh":
        raise CheckpointError(f"pooler_act={config['pooler_act']!r}: vitkit's pooler (pre_logits) uses tanh only")
    fields = {ours: config[theirs] for theirs, ours in REQUIRED.items()}
    dim = fields["embed_dim"]
    fields.update(
        in_chans=config.get("num_channels", 3), norm="layernorm", norm_eps=config.get("layer_norm_eps", 1e-12),
        qkv_bias=config.get("qkv_bias", True), mlp=ACTIVATIONS[act],
        mlp_ratio=mlp_ratio_for(config["intermediate_size"], dim),
        class_token=True, global_pool="token", no_embed_class=False, reg_tokens=0, init_values=None,
        pos_embed_antialias=False,
        num_classes=sd["head.weight"].shape[0] if "head.weight" in sd else 0,
        representation_size=sd["pre_logits.fc.weight"].shape[0] if "pre_logits.fc.weight" in sd else None)
    return fields


def _class_names(config: dict[str, Any], num_classes: int) -> list[str] | None:
    labels = {str(k): v for k, v in (config.get("id2label") or {}).items()}
    if not num_classes or any(str(i) not in labels for i in range(num_classes)):
        return None
    return [labels[str(i)] for i in range(num_classes)]


def read_hf_weights(folder: Path) -> dict[str, torch.Tensor]:
    """model.safetensors, its sharded index, or pytorch_model.bin, whichever the folder holds."""
    for name in WEIGHT_FILES:
        path = folder / name
        if not path.is_file():
            continue
        if name.endswith(".index.json"):
            shards = sorted(set(read_json(path).get("weight_map", {}).values()))
            if not shards:
                raise CheckpointError(f"{path} lists no weight files in its weight_map")
            return {k: v for shard in shards for k, v in read_tensors(folder / shard).items()}
        return pick_state_dict(read_tensors(path), path, use_ema=False)[0]
    raise CheckpointError(f"{folder} has a config.json but none of {list(WEIGHT_FILES)}; download the weights too")


def read_preprocessor(folder: Path) -> Preprocess | None:
    """Mean, std and resampling from preprocessor_config.json, when the folder has one."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return None
    config = read_json(path)
    if "image_mean" not in config or "image_std" not in config:
        return None
    return Preprocess(mean=tuple(config["image_mean"]), std=tuple(config["image_std"]),
                      interpolation=PIL_RESAMPLE.get(config.get("resample"), "bilinear"), crop_pct=1.0)
