"""Official ViT-5 checkpoints (wangf3014/ViT-5 training .pth): registers last, 2D RoPE for patches and registers."""
from __future__ import annotations

import re

import torch

from ..layers import rope_frequencies
from ..preprocess import Preprocess
from .io import CheckpointError
from .mapping import Converted, read_layout, read_positions, rename_keys

VIT5_INIT_VALUES = 1e-4
ROPE_BUFFER = re.compile(r"^blocks\.(\d+)\.attn\.(rope|rope_reg)\.freqs$")
LAYER_SCALE_RULES = [(r"\.gamma_1$", ".ls1.gamma"), (r"\.gamma_2$", ".ls2.gamma")]
DEFAULT_THETAS = {"rope": 10000.0, "rope_reg": 100.0}


def is_vit5(sd: dict[str, torch.Tensor]) -> bool:
    """ViT-5 stores its RoPE frequencies as persistent buffers; timm and vitkit do not."""
    return any(ROPE_BUFFER.match(k) for k in sd)


def convert_vit5(sd: dict[str, torch.Tensor]) -> Converted:
    """gamma_1/2 -> ls1/ls2.gamma; RoPE buffers checked against vitkit's frequencies, then dropped."""
    notes: list[str] = []
    sd = rename_keys(sd, LAYER_SCALE_RULES, notes)
    sd, buffers = _take_rope_buffers(sd)
    fields = read_layout(sd, VIT5_INIT_VALUES)
    if "rope" not in buffers:
        raise CheckpointError("the checkpoint has register RoPE buffers (blocks.N.attn.rope_reg.freqs) but no patch "
                              "RoPE buffers (blocks.N.attn.rope.freqs); the file is incomplete")
    head_dim = 4 * buffers["rope"].numel()
    num_heads = fields["embed_dim"] // head_dim
    if fields.get("num_heads", num_heads) != num_heads:
        raise CheckpointError(f"the RoPE buffers imply a head dim of {head_dim}, but q_norm's width implies "
                              f"{fields['embed_dim'] // fields['num_heads']}; the checkpoint is inconsistent")
    thetas = {kind: _theta(freqs, head_dim, kind, notes) for kind, freqs in buffers.items()}
    fields.update(num_heads=num_heads, rope=True, rope_theta=thetas["rope"], reg_rope_theta=thetas.get("rope_reg"),
                  reg_position="suffix", pos_embed_antialias=False)
    fields.update(read_positions(sd, fields.get("num_class_tokens", 0) * fields["class_token"],
                                 fields["patch_size"]))
    if fields.get("no_embed_class") is False and fields["class_token"]:
        raise CheckpointError("pos_embed covers the class token, but ViT-5 adds positions to the patches only; "
                              "this is not an official ViT-5 checkpoint")
    fields["no_embed_class"] = True
    defaults = {"norm_eps": 1e-6, "mlp": "gelu", "global_pool": "token", "drop_path_schedule": "constant",
                "weight_init": "vit5"}
    return Converted("vit5", sd, fields, defaults, (), notes, preprocess=Preprocess(),
                     preprocess_origin="not recorded: ImageNet mean/std, the official ViT-5 training recipe's")


def _take_rope_buffers(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Removes blocks.N.attn.rope{,_reg}.freqs, which must be identical in every block."""
    buffers: dict[str, torch.Tensor] = {}
    rest = {}
    for key, value in sd.items():
        match = ROPE_BUFFER.match(key)
        if match is None:
            rest[key] = value
            continue
        kind = match.group(2)
        first = buffers.setdefault(kind, value)
        if first.shape != value.shape or not torch.equal(first, value):
            raise CheckpointError(f"{key} differs from block 0's RoPE frequencies; vitkit uses one RoPE for every "
                                  "block, so this checkpoint cannot be loaded exactly")
    return rest, buffers


def _theta(freqs: torch.Tensor, head_dim: int, kind: str, notes: list[str]) -> float:
    """The base theta whose frequencies theta^(-j / (head_dim/4)) are exactly the stored ones, or an error."""
    theta = DEFAULT_THETAS[kind]
    if freqs.numel() > 1:
        estimate = float(freqs[1].double()) ** (-head_dim / 4)
        theta = float(round(estimate)) if abs(round(estimate) - estimate) < 1e-3 * estimate else estimate
    expected = rope_frequencies(head_dim, theta)
    if freqs.shape != expected.shape or not torch.allclose(freqs.float(), expected, rtol=1e-6, atol=0):
        raise CheckpointError(f"blocks.N.attn.{kind}.freqs = {freqs.tolist()} are not the 2D RoPE frequencies "
                              f"theta^(-j/(head_dim/4)) that vitkit computes (closest theta {theta:g}: "
                              f"{expected.tolist()}); this RoPE layout is not supported")
    notes.append(f"blocks.N.attn.{kind}.freqs: equal to vitkit's RoPE frequencies for head_dim {head_dim}, "
                 f"theta {theta:g}; dropped (vitkit computes them)")
    return theta
