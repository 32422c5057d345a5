"""Fine-tuning and transfer: start from a checkpoint, adapt head and resolution, choose what trains.

Modes: 'full' (everything; optionally unfrozen in stages, head first), 'linear' (frozen body, head only) and
'prompt' (visual prompt tuning: frozen body, prompt tokens and head only). vitkit.representation.linear_probe is the
fast variant of 'linear' that runs the frozen body once and trains the head on cached features.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from ..checkpoints import (CheckpointError, ConflictError, MissingFieldsError, load_checkpoint, resolve_checkpoint,
                           saved_family)
from ..checkpoints.sources import convert_source
from ..models import ModelConfig, SegmentationModel, SwinConfig, ViTConfig, get_preset, inflate
from ..models.inflate import SHARED_FIELDS, TUBELET_INITS, inflation_notes

MODES = ("full", "linear", "prompt")
# Model fields that are this run's choice, not the checkpoint's: size (positions resampled) and regularisation.
RUN_CHOICES = ("img_size", "drop_rate", "pos_drop_rate", "proj_drop_rate", "attn_drop_rate", "drop_path_rate",
               "drop_path_schedule", "patch_drop_rate")
HEADS = ("head.", "head_dist.")
SEGMENTATION_HEAD = ("head", "pyramid_dim", "decoder_dim")  # what a segmentation recipe adds to a classifier


@dataclass
class FinetuneConfig:
    """`init_from`: a checkpoint (any format from_pretrained reads) or a run folder; None trains from scratch. An
    image checkpoint under a video model section is inflated, its patch filters filling each tubelet as
    `tubelet_init` says ('central' frame or 'average')."""

    init_from: str | None = None
    use_ema: bool = False
    mode: str = "full"
    prompt_tokens: int = 8
    prompt_deep: bool = False
    unfreeze_every: float | None = None
    freeze: list[str] = field(default_factory=list)
    tubelet_init: str = "central"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"finetune.mode={self.mode!r} is not one of {MODES}")
        if self.tubelet_init not in TUBELET_INITS:
            raise ValueError(f"finetune.tubelet_init={self.tubelet_init!r} is not one of {TUBELET_INITS}")
        if self.mode == "prompt" and self.prompt_tokens < 1:
            raise ValueError(f"finetune.mode=prompt needs finetune.prompt_tokens >= 1, got {self.prompt_tokens}")
        if self.unfreeze_every is not None and (self.mode != "full" or self.unfreeze_every <= 0):
            raise ValueError("finetune.unfreeze_every (staged unfreezing) needs finetune.mode=full and a positive "
                             f"number of epochs per stage, got mode={self.mode!r}, unfreeze_every={self.unfreeze_every}")


def load_for_finetuning(ft: FinetuneConfig, section: ModelConfig, stated: set[str], num_classes: int,
                        in_chans: int) -> tuple[nn.Module, list[str]]:
    """The checkpoint with its own architecture, this run's classes (a new zero-initialised head), input size and
    channels, and the run's regularisation; log lines say what the checkpoint replaced and adapted.

    `stated` names the model fields the user chose (command line or --config recipe): those that contradict the
    checkpoint are errors; the built-in recipe's other fields give way to the checkpoint's.
    """
    fields = dict(section.fields)
    choices = {k: v for k, v in fields.items() if k in RUN_CHOICES and (k != "img_size" or k in stated)}
    given = {k: v for k, v in fields.items() if k in stated and k not in RUN_CHOICES}
    given.setdefault("in_chans", in_chans)
    source = resolve_checkpoint(ft.init_from)
    where = f"finetune.init_from={ft.init_from}"
    if section.family == "video" and saved_family(source) != "video":
        return inflate_for_finetuning(ft, source, where, section, stated, num_classes, given["in_chans"])
    # a model.name the user chose describes the checkpoint together with the fields given beside it
    described = get_preset(section.name).config.replace(**given) if "name" in stated else None
    try:
        model, report = load_checkpoint(source, model=described, use_ema=ft.use_ema, num_classes=num_classes,
                                        **given, **choices)
    except MissingFieldsError as error:
        needed = " ".join(f"model.{name}=..." for name in error.fields)
        why = "; ".join(f"{name}: {reason}" for name, reason in error.reasons.items())
        raise ValueError(f"{where}: the checkpoint does not say {' or '.join(error.fields)} and no preset with its "
                         f"shapes does; pass {needed} (why: {why})") from None
    except ConflictError as error:
        prefix = "" if error.preset else "model."
        named = ", ".join(f"{prefix}{name}={given!r} (the checkpoint has {found!r})"
                          for name, (found, given) in error.values.items())
        if error.preset:
            raise ValueError(f"{where}: model.name={section.name} (with the model fields given) describes another "
                             f"architecture: {named}; drop model.name and those fields: with --init-from the "
                             "architecture is the checkpoint's") from None
        raise ValueError(f"{where}: {named}: with --init-from the architecture is "
                         f"the checkpoint's; drop {'this field' if len(error.values) == 1 else 'these fields'} or "
                         "fine-tune another checkpoint") from None
    except CheckpointError as error:
        raise ValueError(f"{where}: {error}") from None
    trained = model.cfg.to_dict()
    replaced = {k: v for k, v in fields.items() if k not in stated and k not in RUN_CHOICES and k != "in_chans"
                and (list(v) if isinstance(v, tuple) else v) != trained[k]}
    notes = [f"fine-tuning from {source} ({report.format}{', EMA weights' if ft.use_ema else ''}), with its "
             f"architecture: {_architecture(model.cfg)}"]
    if replaced:
        notes.append("the recipe's model fields give way to the checkpoint's: " + ", ".join(
            f"{k} {v!r} -> {trained[k]!r}" for k, v in replaced.items()))
    pre = model.preprocess
    notes.append(f"normalising with the checkpoint's preprocessing: mean {list(pre.mean)}, std {list(pre.std)} "
                 f"({report.preprocess_origin})")
    return model, notes + report.adapted


def inflate_for_finetuning(ft: FinetuneConfig, source: Path, where: str, section: ModelConfig, stated: set[str],
                           num_classes: int, in_chans: int) -> tuple[nn.Module, list[str]]:
    """An image checkpoint as this run's video model: the section's video fields (frames, tubelets, attention, size)
    on the checkpoint's architecture; stated fields that contradict it are errors, unstated ones give way."""
    fields = {k: v for k, v in section.fields.items()
              if k not in ("in_chans", "num_classes") and (k in stated or k not in SHARED_FIELDS)}
    try:
        image, report = load_checkpoint(source, use_ema=ft.use_ema, in_chans=in_chans)
        model = inflate(image, ft.tubelet_init, num_classes=num_classes, **fields)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    pre = model.preprocess
    notes = [f"inflating {source} ({report.format}{', EMA weights' if ft.use_ema else ''}) into a video model with "
             f"its architecture: {_architecture(image.cfg)}", *inflation_notes(image.cfg, model.cfg, ft.tubelet_init),
             f"normalising with the checkpoint's preprocessing: mean {list(pre.mean)}, std {list(pre.std)} "
             f"({report.preprocess_origin})"]
    return model, notes + report.adapted


def load_segmentation_start(ft: FinetuneConfig, section: ModelConfig, num_classes: int,
                            in_chans: int) -> tuple[nn.Module, list[str]]:
    """A segmentation run's start: a segmentation checkpoint as it is (with this run's classes), or a classifier
    (e.g. a CIFAR-10 run) as the backbone under the recipe's head: its own architecture, its head removed, its
    positions resampled to the recipe's input size, every patch kept (patch dropout off)."""
    source = resolve_checkpoint(ft.init_from)
    try:  # vitkit's files say their family without their weights; other formats are converted to tell
        family = saved_family(source) or convert_source(source, use_ema=ft.use_ema).family
    except CheckpointError as error:
        raise ValueError(f"finetune.init_from={ft.init_from}: {error}") from None
    if family == "segment":
        return load_for_finetuning(ft, ModelConfig(family), set(), num_classes, in_chans)
    if family not in ("vit", "swin"):
        raise ValueError(f"finetune.init_from={ft.init_from} holds a {family} model; a segmentation backbone starts "
                         "from a plain ViT or a Swin classifier")
    given = section.fields.get("backbone")  # the recipe's own backbone fields; the checkpoint's replace them
    choices = {k: v for k, v in (given.fields if given else {}).items()
               if k in RUN_CHOICES and k not in ("img_size", "patch_drop_rate")}
    if section.fields.get("img_size") is not None:
        choices["img_size"] = section.fields["img_size"]
    if family == "vit":
        choices["patch_drop_rate"] = 0.0
    backbone, notes = load_for_finetuning(ft, ModelConfig(family, None, choices), {"img_size"}, 0, in_chans)
    head = {k: v for k, v in section.fields.items() if k in SEGMENTATION_HEAD}
    model = SegmentationModel.on_backbone(backbone, num_classes, **head)
    replaced = f" (in place of model.backbone {given.name or given.family})" if given else ""
    notes.append(f"the checkpoint is the backbone{replaced} under a new {model.cfg.head} head for {num_classes} "
                 "classes")
    return model, notes


def _architecture(cfg: ViTConfig | SwinConfig) -> str:
    sizes = [f"{name} {getattr(cfg, name)}" for name in ("embed_dim", "depth", "depths", "num_heads", "window_size",
                                                         "patch_size") if hasattr(cfg, name)]
    return ", ".join(sizes + [f"img_size {cfg.img_size[0]}x{cfg.img_size[1]}", f"in_chans {cfg.in_chans}"])


def apply_mode(model: nn.Module, ft: FinetuneConfig) -> list[str]:
    """Freezes what the mode keeps fixed (adding prompt tokens for 'prompt'); errors if nothing is left to train."""
    if ft.mode == "prompt":
        model.set_prompt_tokens(ft.prompt_tokens, ft.prompt_deep)
    trainable = {"full": lambda name: True, "linear": is_head,
                 "prompt": lambda name: is_head(name) or name.startswith("prompt.")}[ft.mode]
    for name, param in model.named_parameters():
        param.requires_grad_(trainable(name) and not name.startswith(tuple(ft.freeze)))
    if ft.mode == "full" and not ft.freeze:
        return []
    count, total = trainable_count(model)
    if count == 0:
        raise ValueError(f"nothing left to train: finetune.mode={ft.mode!r} with finetune.freeze={ft.freeze} "
                         "freezes every parameter; unfreeze the head (drop it from finetune.freeze) or use mode=full")
    return [f"finetune.mode={ft.mode}: {count:,} of {total:,} parameters train"]


def is_head(name: str) -> bool:
    return name.startswith(HEADS)


def trainable_count(model: nn.Module) -> tuple[int, int]:
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def unfreeze_stage(model: nn.Module, epoch: int, ft: FinetuneConfig) -> str | None:
    """Staged unfreezing: stage s = epoch // unfreeze_every trains the head plus the top s blocks (s > depth: all).

    Returns a line to log when the stage changes. The optimiser holds every parameter; frozen ones get no gradient,
    so AdamW/SGD leave them (and their weight decay) untouched.
    """
    if ft.unfreeze_every is None:
        return None
    depth = len(model.blocks)
    stage = min(math.floor(epoch / ft.unfreeze_every), depth + 1)
    lowest = depth + 1 - stage  # layer_id: 0 embeddings, i+1 block i, depth+1 norm and head
    changed = False
    for name, param in model.named_parameters():
        wanted = model.layer_id(name) >= lowest and not name.startswith(tuple(ft.freeze))
        changed |= param.requires_grad != wanted
        param.requires_grad_(wanted)
    if not changed and epoch > 0:
        return None
    what = "head only" if stage == 0 else "everything" if stage > depth else f"head + top {stage} block(s)"
    return f"epoch {epoch + 1}: unfreeze stage {stage} ({what}), {trainable_count(model)[0]:,} parameters train"
