"""Structured pruning of a ViT with Torch-Pruning: whole attention heads and MLP hidden channels go, by the L2
magnitude of the weights each one owns, until the model needs a given share fewer FLOPs; the residual width stays.

Torch-Pruning traces the model to find what must shrink together (a head's q, k and v rows and its columns of the
output projection; an MLP channel's row of fc1, its column of fc2), removes the least important groups step by step,
and leaves a smaller model of the same kind. The pruned widths are recorded per block in the model's config
(`block_widths`), so save_pretrained / from_pretrained rebuild it; a short fine-tune recovers most of the accuracy
(configs/cifar10_prune_finetune.yaml).
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import warnings

import torch
from torch import nn

from ..layers.mlp import Mlp
from ..models.profile import count_flops
from ..models.vision_transformer import VisionTransformer

INSTALL_HINT = "pip install 'vitkit[efficiency]' (torch-pruning)"
SEARCH_STEPS = 8  # bisection over the pruning ratio: FLOPs land within ~0.5 % of the target


def prune(model: VisionTransformer, flops_reduction: float, round_to: int | None = None,
          global_pruning: bool = False) -> VisionTransformer:
    """A new model with heads and MLP channels removed until its forward pass needs at most (1 - flops_reduction) of
    the original's FLOPs. Heads go in the share asked for (round(flops_reduction * heads) per block, one more while
    that cannot reach the target); then the smallest share of MLP channels that reaches it is found by bisection
    (with magnitude importance, one cut to a share is what pruning step by step to it would give). `round_to` keeps
    every MLP width a multiple of it (32 keeps int4 possible); `global_pruning` ranks heads and channels across
    blocks (blocks end at different widths) instead of cutting each block alike. The caller's model stays as it was."""
    _check_prunable(model, flops_reduction)
    cfg = model.cfg
    target = (1 - flops_reduction) * count_flops(model, cfg.img_size, cfg.in_chans)
    heads = min(block.attn.num_heads for block in model.blocks)
    for heads_removed in range(round(flops_reduction * heads), heads):
        low, high, best = 0.0, 1.0, None
        for _ in range(SEARCH_STEPS):
            ratio = (low + high) / 2
            candidate = _pruned_at(model, ratio, heads_removed / heads, round_to, global_pruning)
            if count_flops(candidate, cfg.img_size, cfg.in_chans) <= target:
                high, best = ratio, candidate
            else:
                low = ratio
        if best is not None:
            return _rebuilt(best, model)
    raise ValueError(f"could not remove {flops_reduction:.0%} of the FLOPs by pruning heads and MLP channels (the "
                     "embedding, norms and head stay); ask for less")


def _pruned_at(model: VisionTransformer, ratio: float, head_ratio: float, round_to: int | None,
               global_pruning: bool) -> VisionTransformer:
    """A copy with `ratio` of every block's MLP channels and `head_ratio` of its heads removed (or, global, those
    shares of all of them), the least important first."""
    tp = _torch_pruning()
    model = copy.deepcopy(model).eval()
    cfg = model.cfg
    example = torch.zeros(1, cfg.in_chans, *cfg.img_size, device=next(model.parameters()).device)
    kept = {block.attn.qkv for block in model.blocks} | {block.mlp.fc1 for block in model.blocks}
    kept |= {block.attn.gate.proj for block in model.blocks if block.attn.gate is not None}  # gates follow heads
    with _traceable(model), warnings.catch_warnings():
        # tokens, positions, LayerScale: it would cut their last axis, the residual width, which no group here cuts
        warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
        pruner = tp.pruner.BasePruner(
            model, example, importance=tp.importance.GroupMagnitudeImportance(p=2), global_pruning=global_pruning,
            pruning_ratio=ratio, head_pruning_ratio=max(head_ratio - 1e-6, 0.0),  # it cuts ceil(share * heads)
            round_to=round_to, num_heads={block.attn.qkv: block.attn.num_heads for block in model.blocks},
            prune_num_heads=True, prune_head_dims=False,
            ignored_layers=[m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)) and m not in kept])
        with torch.no_grad():
            pruner.step()
    for block in model.blocks:
        block.attn.num_heads = pruner.num_heads[block.attn.qkv]
    return model


@contextlib.contextmanager
def _traceable(model: VisionTransformer):
    """Plain softmax attention on the whole grid while Torch-Pruning traces the model: it follows channels through
    qkv's reshape to heads, but not through per-head norms, RoPE's rotation, feature maps, windows or token merging.
    None of those has weights tied to a head's channels, so the groups it finds are the same."""
    saved = [(b.attn.q_norm, b.attn.k_norm, b.attn.feature_map, b.window_size) for b in model.blocks]
    rope, cfg = (model.rope_cos, model.rope_sin), model.cfg
    for block in model.blocks:
        block.attn.q_norm = block.attn.k_norm = nn.Identity()
        block.attn.feature_map, block.window_size = None, 0
    model.rope_cos = model.rope_sin = None
    model.cfg = cfg.replace(token_merging=0)
    try:
        yield
    finally:
        for block, (q_norm, k_norm, feature_map, window) in zip(model.blocks, saved):
            block.attn.q_norm, block.attn.k_norm, block.attn.feature_map, block.window_size = (q_norm, k_norm,
                                                                                               feature_map, window)
        model.rope_cos, model.rope_sin = rope
        model.cfg = cfg


def _torch_pruning():
    try:
        return importlib.import_module("torch_pruning")
    except ImportError:
        raise ImportError(f"pruning needs Torch-Pruning: {INSTALL_HINT}") from None


def _check_prunable(model: nn.Module, flops_reduction: float) -> None:
    if not isinstance(model, VisionTransformer):
        raise TypeError(f"prune expects a vitkit VisionTransformer, got {type(model).__name__}")
    if not 0 < flops_reduction < 1:
        raise ValueError(f"flops_reduction is the share of FLOPs to remove, in (0, 1), got {flops_reduction}")
    if not all(isinstance(block.mlp, Mlp) for block in model.blocks):
        raise ValueError(f"pruning covers plain MLPs (fc1 -> activation -> fc2); mlp={model.cfg.mlp!r} is gated")
    _torch_pruning()


def _rebuilt(pruned: VisionTransformer, original: VisionTransformer) -> VisionTransformer:
    """The pruned model built afresh from a config with its per-block widths, its weights loaded strictly: proof
    that from_pretrained will rebuild the same model. It keeps the original's preprocessing and class names, and no
    preset name: its widths are its own."""
    widths = [[block.attn.num_heads, block.mlp.fc1.out_features] for block in pruned.blocks]
    model = VisionTransformer(original.cfg.replace(block_widths=widths)).to(next(pruned.parameters()).device)
    model.load_state_dict(pruned.state_dict())
    model.preprocess, model.class_names = original.preprocess, original.class_names
    return model.eval()
