"""What every converter shares: its result, key renaming that records what it did, and reading the
architecture from tensor shapes (timm-style names, which vitkit's own names follow)."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import torch

from ..preprocess import Preprocess
from .io import CheckpointError

BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.")


@dataclass
class Converted:
    """A state dict in vitkit's names, plus what the source says and assumes about the architecture.

    fields are facts read from the source and win over a preset; defaults are the source's conventions, which
    a preset or an override replaces; required names the fields the source does not record at all.
    preset is the name to record on the model; base_preset is a preset whose config fills the gaps.
    family names the model family whose config the fields describe.
    """

    format: str
    state_dict: dict[str, torch.Tensor]
    fields: dict[str, Any]
    defaults: dict[str, Any] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)
    preprocess: Preprocess | None = None
    preprocess_origin: str = ""
    preset: str | None = None
    base_preset: str | None = None
    class_names: list[str] | None = None
    family: str = "vit"


def key_pattern(key: str) -> str:
    """A key with layer numbers as N and weight/bias as *, so one line describes a layer in every block."""
    return re.sub(r"\.(weight|bias)$", ".*", re.sub(r"\.\d+(?=\.|$)", ".N", key))


def rename_keys(state_dict: dict[str, torch.Tensor], rules: list[tuple[str, str]],
                notes: list[str]) -> dict[str, torch.Tensor]:
    """Applies regex rules (first match wins) and records each distinct 'old -> new' pattern in notes."""
    compiled = [(re.compile(pattern), replacement) for pattern, replacement in rules]
    out, seen = {}, set(notes)
    for key, value in state_dict.items():
        new = key
        for pattern, replacement in compiled:
            if pattern.search(key):
                new = pattern.sub(replacement, key)
                break
        if new in out:
            raise CheckpointError(f"two checkpoint keys map to {new!r}; the file mixes naming schemes")
        out[new] = value
        line = f"{key_pattern(key)} -> {key_pattern(new)}"
        if new != key and line not in seen:
            seen.add(line)
            notes.append(line)
    return out


def block_indices(state_dict: dict[str, torch.Tensor]) -> list[int]:
    """The block numbers present, checked to run 0..depth-1 without gaps."""
    found = sorted({int(m.group(1)) for k in state_dict if (m := BLOCK_KEY.match(k))})
    if not found:
        raise CheckpointError("the checkpoint has no 'blocks.N.' tensors, so it is not a Vision Transformer")
    if found != list(range(len(found))):
        missing = sorted(set(range(found[-1] + 1)) - set(found))
        raise CheckpointError(f"the checkpoint's blocks are not numbered 0..{found[-1]}: blocks {missing} are "
                              "missing; the file is incomplete")
    return found


def require(state_dict: dict[str, torch.Tensor], key: str, what: str) -> torch.Tensor:
    """A tensor the architecture cannot be read without, or an error naming it."""
    if key not in state_dict:
        raise CheckpointError(f"the checkpoint has no {key!r} ({what}); it is incomplete or not a Vision "
                              "Transformer of a supported layout")
    return state_dict[key]


def mlp_ratio_for(hidden: int, dim: int) -> float:
    """A ratio r with int(dim * r) == hidden, the hidden width ViTConfig computes."""
    ratio = hidden / dim
    if int(dim * ratio) != hidden:
        ratio = (hidden + 0.5) / dim
    return ratio


def read_layout(sd: dict[str, torch.Tensor], init_values: float) -> dict[str, Any]:
    """Every ViTConfig field that timm-style tensor names and shapes determine (positions excepted).

    LayerScale's starting value is not recorded, only its presence: init_values is the source's convention.
    """
    proj = require(sd, "patch_embed.proj.weight", "the patch embedding")
    if proj.ndim != 4 or proj.shape[2] != proj.shape[3]:
        raise CheckpointError(f"patch_embed.proj.weight has shape {list(proj.shape)}; vitkit needs a square "
                              "Conv2d patch embedding [embed_dim, in_chans, p, p]")
    embed_dim = proj.shape[0]
    depth = len(block_indices(sd))
    hidden = require(sd, "blocks.0.mlp.fc2.weight", "the first MLP's output layer").shape[1]
    fields = {
        "embed_dim": embed_dim, "in_chans": proj.shape[1], "patch_size": proj.shape[2], "depth": depth,
        "mlp_ratio": mlp_ratio_for(hidden, embed_dim),
        "norm": "layernorm" if "blocks.0.norm1.bias" in sd else "rmsnorm",
        "qkv_bias": "blocks.0.attn.qkv.bias" in sd,
        "proj_bias": "blocks.0.attn.proj.bias" in sd,
        "mlp_bias": "blocks.0.mlp.fc2.bias" in sd,
        "qk_norm": "blocks.0.attn.q_norm.weight" in sd,
        "mlp_norm": "blocks.0.mlp.norm.weight" in sd,
        "class_token": "cls_token" in sd,
        "dist_token": "dist_token" in sd,
        "reg_tokens": sd["reg_token"].shape[1] if "reg_token" in sd else 0,
        "fc_norm": "fc_norm.weight" in sd,
        "representation_size": sd["pre_logits.fc.weight"].shape[0] if "pre_logits.fc.weight" in sd else None,
        "num_classes": sd["head.weight"].shape[0] if "head.weight" in sd else 0,
        "pos_embed": "learned" if "pos_embed" in sd else "none",
    }
    if "cls_token" in sd:
        fields["num_class_tokens"] = sd["cls_token"].shape[1]
    if "blocks.0.attn.q_norm.weight" in sd:
        fields["num_heads"] = embed_dim // sd["blocks.0.attn.q_norm.weight"].shape[0]
    fields["init_values"] = init_values if "blocks.0.ls1.gamma" in sd else None
    return fields


def read_positions(sd: dict[str, torch.Tensor], num_prefix_tokens: int, patch_size: int) -> dict[str, Any]:
    """img_size and no_embed_class from the learned position table: a square grid, with or without the prefix."""
    if "pos_embed" not in sd:
        return {}
    total = sd["pos_embed"].shape[1]
    layouts = [(no_embed, total - (0 if no_embed else num_prefix_tokens))
               for no_embed in ((False, True) if num_prefix_tokens else (False,))]
    fits = [(no_embed, n) for no_embed, n in layouts if n > 0 and math.isqrt(n) ** 2 == n]
    if not fits:
        raise CheckpointError(f"pos_embed has {total} entries, which is neither a square patch grid nor one plus "
                              f"the {num_prefix_tokens} prefix token(s); vitkit reads only square grids")
    if len(fits) > 1:
        raise CheckpointError(f"pos_embed with {total} entries fits a grid with and without the prefix tokens; "
                              "pass no_embed_class=True or no_embed_class=False")
    no_embed, patches = fits[0]
    return {"img_size": math.isqrt(patches) * patch_size, "no_embed_class": no_embed}


def fuse_linears(sd: dict[str, torch.Tensor], prefix: str, names: tuple[str, ...], target: str,
                 zero_bias: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """Concatenates the output rows of the Linear layers prefix+name into one layer called target (q, k, v -> qkv).

    A bias named in zero_bias may be absent (Eva's k_proj has none) and is then filled with zeros;
    a key bias only shifts every attention row by a constant, so zeros reproduce the source exactly.
    """
    weights = [f"{prefix}{name}.weight" for name in names]
    missing = [k for k in weights if k not in sd]
    if missing:
        raise CheckpointError(f"the checkpoint has {[k for k in weights if k in sd]} but not {missing}; "
                              "the projections are incomplete (a damaged or partial checkpoint)")
    biases = [f"{prefix}{name}.bias" for name in names]
    absent = [k for k, name in zip(biases, names) if k not in sd and name not in zero_bias]
    has_bias = any(k in sd for k in biases)
    if has_bias and absent:
        raise CheckpointError(f"the checkpoint has biases {[k for k in biases if k in sd]} but not {absent}; "
                              "the file is incomplete")
    out = {k: v for k, v in sd.items() if k not in weights and k not in biases}
    out[f"{target}.weight"] = torch.cat([sd[k] for k in weights])
    if has_bias:
        out[f"{target}.bias"] = torch.cat([sd[b] if b in sd else sd[w].new_zeros(sd[w].shape[0])
                                           for w, b in zip(weights, biases)])
    return out


def key_prefixes(sd: dict[str, torch.Tensor], pattern: str) -> list[str]:
    """The distinct prefixes (regex group 1) of the keys matching pattern, e.g. each block's attention."""
    compiled = re.compile(pattern)
    return sorted({m.group(1) for k in sd if (m := compiled.match(k))})
