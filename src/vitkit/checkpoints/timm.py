"""timm checkpoints: VisionTransformer, DeiT, DeiT-3 (LayerScale as gamma_1), registers, distilled DeiT, and
Eva-style RoPE + SwiGLU models. vitkit uses timm's parameter names, so most tensors keep theirs."""
from __future__ import annotations

from typing import Any

import torch

from ..layers.pooling import POOLS
from ..preprocess import Preprocess
from .io import CheckpointError
from .mapping import (Converted, fuse_linears, key_prefixes, read_layout, read_positions, rename_keys,
                      require)

# timm's LayerScale default for the DeiT-3 family; the file records only that LayerScale is there.
TIMM_INIT_VALUES = 1e-6
LAYER_SCALE_RULES = [(r"\.gamma_1$", ".ls1.gamma"), (r"\.gamma_2$", ".ls2.gamma")]
EVA_QKV = r"^(blocks\.\d+\.attn\.)(?:q_proj|k_proj|v_proj)\.weight$"
EVA_SWIGLU = r"^(blocks\.\d+\.mlp\.)fc1_g\.weight$"


def is_timm(sd: dict[str, torch.Tensor]) -> bool:
    """timm's layout: a Conv2d patch embedding and numbered blocks."""
    return "patch_embed.proj.weight" in sd and any(k.startswith("blocks.") for k in sd)


def convert_timm(sd: dict[str, torch.Tensor]) -> Converted:
    """Renames DeiT-3's gamma_1/2, fuses Eva's q/k/v and SwiGLU halves, and reads the architecture."""
    notes: list[str] = []
    sd = rename_keys(sd, LAYER_SCALE_RULES, notes)
    eva = bool(key_prefixes(sd, EVA_QKV))
    gated = bool(key_prefixes(sd, EVA_SWIGLU))
    if eva:
        sd = _fuse_eva(sd, notes)
    fields = read_layout(sd, TIMM_INIT_VALUES)
    _check_plain_mlp(sd, gated)
    if gated:
        fields["mlp"] = "swiglu"
    prefix = fields.get("num_class_tokens", 0) * fields["class_token"] + fields["dist_token"] + fields["reg_tokens"]
    fields.update(read_positions(sd, prefix, fields["patch_size"]))
    fields["pos_embed_antialias"] = True
    defaults = {"norm_eps": 1e-6, "mlp": "gelu", "global_pool": "token"}
    if fields["fc_norm"] or not fields["class_token"]:
        fields["global_pool"] = "avg"
    else:
        notes.append("assumed global_pool='token' (timm's default for a class token without fc_norm); "
                     "pass global_pool='avg' if the model averaged the patch tokens")
    required = ("num_heads", "rope") if eva else ("num_heads",)
    return Converted("timm", sd, fields, defaults, required, notes)


def _fuse_eva(sd: dict[str, torch.Tensor], notes: list[str]) -> dict[str, torch.Tensor]:
    for prefix in key_prefixes(sd, EVA_QKV):
        sd = fuse_linears(sd, prefix, ("q_proj", "k_proj", "v_proj"), f"{prefix}qkv", zero_bias=("k_proj",))
    notes.append("blocks.N.attn.{q_proj,k_proj,v_proj} -> blocks.N.attn.qkv (fused; Eva's k_proj has no bias, "
                 "so the key bias is zero)")
    swiglu = key_prefixes(sd, EVA_SWIGLU)
    for prefix in swiglu:
        sd = fuse_linears(sd, prefix, ("fc1_x", "fc1_g"), f"{prefix}fc1")
    if swiglu:
        notes.append("blocks.N.mlp.{fc1_x,fc1_g} -> blocks.N.mlp.fc1 (fused as [value; gate]: silu(gate) * value)")
    return sd


def _check_plain_mlp(sd: dict[str, torch.Tensor], gated: bool) -> None:
    """A packed gated fc1 (timm GluMlp / SwiGLUPacked) does not record which half is the gate (timm's gate_last)."""
    rows = require(sd, "blocks.0.mlp.fc1.weight", "the first MLP's input layer").shape[0]
    hidden = sd["blocks.0.mlp.fc2.weight"].shape[1]
    if not gated and rows == 2 * hidden:
        raise CheckpointError("blocks.N.mlp.fc1 is a packed gated MLP (timm GluMlp / SwiGLUPacked, fc1 twice as "
                              "wide as fc2's input); vitkit reads gated MLPs only as Eva's separate fc1_x / fc1_g")


def timm_hub_config(config: dict[str, Any]) -> tuple[dict[str, Any], Preprocess | None, str | None]:
    """Facts from a timm hub config.json: the pooling, the preprocessing, and the architecture name."""
    fields = {}
    if config.get("global_pool") in POOLS:
        fields["global_pool"] = config["global_pool"]
    pretrained = config.get("pretrained_cfg") or {}
    preprocess = None
    if {"mean", "std"} <= set(pretrained):
        preprocess = Preprocess(mean=tuple(pretrained["mean"]), std=tuple(pretrained["std"]),
                                interpolation=pretrained.get("interpolation", "bicubic"),
                                crop_pct=float(pretrained.get("crop_pct", 1.0)))
    return fields, preprocess, config.get("architecture")
