"""Fine-tuning and transfer: start from a checkpoint, adapt head and resolution, choose what trains.

Modes: 'full' (everything; optionally unfrozen in stages, head first), 'linear' (frozen body, head only) and
'prompt' (visual prompt tuning: frozen body, prompt tokens and head only). `linear_probe` is the fast variant of
'linear' that runs the frozen body once and trains the head on cached features.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoints import load_checkpoint
from ..checkpoints.io import CheckpointError
from ..checkpoints.load import STRUCTURAL
from ..models import get_preset

MODES = ("full", "linear", "prompt")
HEADS = ("head.", "head_dist.")


@dataclass
class FinetuneConfig:
    """`init_from`: a checkpoint (any format from_pretrained reads) or a run folder; None trains from scratch."""

    init_from: str | None = None
    use_ema: bool = False
    mode: str = "full"
    prompt_tokens: int = 8
    prompt_deep: bool = False
    unfreeze_every: float | None = None
    freeze: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"finetune.mode={self.mode!r} is not one of {MODES}")
        if self.mode == "prompt" and self.prompt_tokens < 1:
            raise ValueError(f"finetune.mode=prompt needs finetune.prompt_tokens >= 1, got {self.prompt_tokens}")
        if self.unfreeze_every is not None and (self.mode != "full" or self.unfreeze_every <= 0):
            raise ValueError("finetune.unfreeze_every (staged unfreezing) needs finetune.mode=full and a positive "
                             f"number of epochs per stage, got mode={self.mode!r}, unfreeze_every={self.unfreeze_every}")


def load_for_finetuning(ft: FinetuneConfig, model_section: dict[str, Any], num_classes: int,
                        in_chans: int) -> tuple[nn.Module, list[str]]:
    """The checkpoint as the requested model: architecture checked, new zero-initialised head, resampled positions."""
    from ..inference import resolve_checkpoint

    fields = {k: v for k, v in model_section.items() if k != "name"}
    fields.setdefault("in_chans", in_chans)
    requested = get_preset(model_section["name"]).config.replace(**fields)  # checks img_size against the patch
    settings = {k: v for k, v in fields.items() if k not in STRUCTURAL}  # e.g. drop_path_rate: the run's choice
    settings.update(num_classes=num_classes, img_size=requested.img_size)
    source = resolve_checkpoint(ft.init_from)
    try:
        model, report = load_checkpoint(source, model=requested.replace(num_classes=num_classes),
                                        use_ema=ft.use_ema, **settings)
    except CheckpointError as error:
        raise ValueError(f"finetune.init_from={ft.init_from}: {error}. The model section (model.name plus its "
                         "fields) must describe the checkpoint's architecture; set model.name to the preset it was "
                         "trained as and model.<field>=... for what differs") from None
    notes = [f"fine-tuning from {source} ({report.format}{', EMA weights' if ft.use_ema else ''})"]
    return model, notes + report.adapted


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


@torch.no_grad()
def cache_features(model: nn.Module, loader) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled pre-logit features of every image, computed once by the frozen body (eval mode)."""
    model.eval()
    feats, labels = [], []
    for images, targets in loader:
        feats.append(model.forward_head(model.forward_features(images), pre_logits=True).float().cpu())
        labels.append(targets.cpu())
    return torch.cat(feats), torch.cat(labels)


def linear_probe(model: nn.Module, train_loader, test_loader, epochs: int = 100, lr: float = 1e-2,
                 weight_decay: float = 0.0, batch_size: int = 256, seed: int = 0) -> dict[str, float]:
    """Trains only model.head on cached features (the body runs once per image); returns train/test top-1 (%)."""
    if not isinstance(model.head, nn.Linear):
        raise ValueError("linear_probe needs a linear head (num_classes > 0); reset_classifier(num_classes) first")
    train_x, train_y = cache_features(model, train_loader)
    test_x, test_y = cache_features(model, test_loader)
    head = model.head
    device = head.weight.device
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    steps = epochs * math.ceil(len(train_x) / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for _ in range(epochs):
        for idx in torch.randperm(len(train_x), generator=generator).split(batch_size):
            loss = F.cross_entropy(head(train_x[idx].to(device)), train_y[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    if model.head_dist is not None:  # a distilled model averages both heads: give them the same probe
        model.head_dist.load_state_dict(head.state_dict())
    with torch.no_grad():
        return {"train_top1": _top1(head(train_x.to(device)), train_y), "test_top1": _top1(head(test_x.to(device)), test_y)}


def _top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return 100.0 * (logits.argmax(-1).cpu() == labels).float().mean().item()
