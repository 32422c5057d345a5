"""timm Swin Transformer checkpoints. vitkit's Swin uses timm's parameter names, so every tensor keeps its name;
the architecture is read from the shapes (each stage's heads and the window from its relative-position tables)."""
from __future__ import annotations

import math
import re

import torch

from .io import CheckpointError
from .mapping import Converted, mlp_ratio_for, require

SWIN_KEY = "layers.0.blocks.0.attn.relative_position_bias_table"
BLOCK_KEY = re.compile(r"^layers\.(\d+)\.blocks\.(\d+)\.")
# Buffers that older timm versions and the original Swin code saved; vitkit rebuilds them.
BUFFERS = re.compile(r"\.(relative_position_index|attn_mask)$")
NATIVE_SIZE = 224  # timm's default input size, the start of the search for a native size that fits


def is_swin(sd: dict[str, torch.Tensor]) -> bool:
    """timm's Swin layout: numbered stages of blocks whose attention carries a relative-position bias table."""
    return SWIN_KEY in sd


def convert_swin(sd: dict[str, torch.Tensor]) -> Converted:
    """Keeps the names, drops saved buffers, and reads every SwinConfig field the tensors determine."""
    notes: list[str] = []
    buffers = [k for k in sd if BUFFERS.search(k)]
    if buffers:
        sd = {k: v for k, v in sd.items() if k not in buffers}
        notes.append(f"dropped {len(buffers)} saved buffers (relative_position_index, attn_mask): vitkit rebuilds "
                     "them")
    if "head.weight" in sd:
        raise CheckpointError("this is a Swin checkpoint in the original Microsoft layout (head.weight, patch "
                              "merging at the end of each stage); vitkit reads timm's layout: load it with timm "
                              "once and save model.state_dict()")
    proj = require(sd, "patch_embed.proj.weight", "the patch embedding")
    embed_dim, in_chans, patch = proj.shape[0], proj.shape[1], proj.shape[2]
    depths = _depths(sd)
    tables = [require(sd, f"layers.{i}.blocks.0.attn.relative_position_bias_table", "a bias table")
              for i in range(len(depths))]
    window = _window(tables)
    for stage in range(len(depths)):
        width = require(sd, f"layers.{stage}.blocks.0.norm1.weight", "a block's first norm").shape[0]
        if width != embed_dim * 2 ** stage:
            raise CheckpointError(f"stage {stage} is {width} wide; vitkit's Swin doubles the width at every stage "
                                  f"({embed_dim} * 2^{stage} = {embed_dim * 2 ** stage})")
    hidden = require(sd, "layers.0.blocks.0.mlp.fc1.weight", "the first MLP's input layer").shape[0]
    fields = {
        "patch_size": patch, "in_chans": in_chans, "embed_dim": embed_dim, "depths": depths,
        "num_heads": tuple(table.shape[1] for table in tables), "window_size": window,
        "mlp_ratio": mlp_ratio_for(hidden, embed_dim), "qkv_bias": "layers.0.blocks.0.attn.qkv.bias" in sd,
        "num_classes": sd["head.fc.weight"].shape[0] if "head.fc.weight" in sd else 0,
    }
    multiple = patch * window * 2 ** (len(depths) - 1)
    size = math.ceil(NATIVE_SIZE / multiple) * multiple
    notes.append(f"img_size is not recorded (Swin has no absolute positions): {size}x{size} assumed, the first "
                 f"multiple of {multiple} from {NATIVE_SIZE}; the model runs on any multiple of {multiple}")
    return Converted("timm", sd, fields, {"img_size": size}, (), notes, family="swin")


def _depths(sd: dict[str, torch.Tensor]) -> tuple[int, ...]:
    """Blocks per stage, checked to be numbered without gaps."""
    found: dict[int, set[int]] = {}
    for key in sd:
        if match := BLOCK_KEY.match(key):
            found.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
    if sorted(found) != list(range(len(found))):
        raise CheckpointError(f"the checkpoint's stages are numbered {sorted(found)}, not 0..{len(found) - 1}; "
                              "the file is incomplete")
    for stage, blocks in found.items():
        if sorted(blocks) != list(range(len(blocks))):
            raise CheckpointError(f"stage {stage}'s blocks are numbered {sorted(blocks)}; the file is incomplete")
    return tuple(len(found[stage]) for stage in range(len(found)))


def _window(tables: list[torch.Tensor]) -> int:
    """The window side from the bias tables: (2w - 1)^2 rows, the same in every stage."""
    sides = {math.isqrt(t.shape[0]) for t in tables}
    side = sides.pop() if len(sides) == 1 else None
    if side is None or side % 2 == 0 or any(t.shape[0] != side * side for t in tables):
        rows = [t.shape[0] for t in tables]
        raise CheckpointError(f"the stages' relative-position tables have {rows} rows; vitkit's Swin needs one "
                              "square window in every stage ((2w - 1)^2 rows each; timm shrinks the window of a "
                              "stage whose map is smaller, which vitkit does not)")
    return (side + 1) // 2
