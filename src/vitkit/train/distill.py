"""DeiT distillation (Touvron et al. 2021): the student's distillation token learns from a frozen teacher.

loss = (1 - alpha) * task_loss(class head, labels) + alpha * distill_loss(distillation head, teacher)
  soft: KL(softmax(teacher / tau) || softmax(student / tau)) * tau^2, summed and divided by B * K as DeiT does
  hard: cross-entropy against the teacher's argmax
At inference the model averages its two heads (VisionTransformer.forward_head in eval mode).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

DISTILL_KINDS = ("soft", "hard")


@dataclass
class DistillConfig:
    """`teacher`: a checkpoint or run folder (or a preset name: random weights, for smoke tests); None: no teacher."""

    teacher: str | None = None
    kind: str = "hard"
    alpha: float = 0.5
    tau: float = 1.0
    teacher_use_ema: bool = False

    def __post_init__(self) -> None:
        if self.kind not in DISTILL_KINDS:
            raise ValueError(f"distill.kind={self.kind!r} is not one of {DISTILL_KINDS}")
        if not 0.0 <= self.alpha <= 1.0 or self.tau <= 0:
            raise ValueError(f"distill.alpha must lie in [0, 1] and distill.tau be positive, got alpha={self.alpha}, "
                             f"tau={self.tau}")


def soft_distillation_loss(student: torch.Tensor, teacher: torch.Tensor, tau: float) -> torch.Tensor:
    """DeiT's soft loss: KL between temperature-softened distributions, times tau^2, over B * K elements."""
    kl = F.kl_div(F.log_softmax(student.float() / tau, dim=-1), F.log_softmax(teacher.float() / tau, dim=-1),
                  reduction="sum", log_target=True)
    return kl * tau * tau / student.numel()


def hard_distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """DeiT's hard loss: cross-entropy against the teacher's top class."""
    return F.cross_entropy(student.float(), teacher.argmax(dim=-1))


class DistillationLoss:
    """Task loss on the class head, plus distillation on the dist head when a teacher is set."""

    def __init__(self, task_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 teacher: nn.Module | None = None, kind: str = "hard", alpha: float = 0.5, tau: float = 1.0) -> None:
        self.task_loss, self.teacher, self.kind, self.alpha, self.tau = task_loss, teacher, kind, alpha, tau

    def __call__(self, outputs, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.teacher is None:
            return self.task_loss(outputs, targets)
        if not isinstance(outputs, tuple):
            raise ValueError("distillation needs the student's (class, distillation) logits: set model.dist_token=true "
                             "and call model.set_distilled_training()")
        cls_logits, dist_logits = outputs
        teacher_logits = self.teacher_logits(images)
        distill = (soft_distillation_loss(dist_logits, teacher_logits, self.tau) if self.kind == "soft"
                   else hard_distillation_loss(dist_logits, teacher_logits))
        return (1 - self.alpha) * self.task_loss(cls_logits, targets) + self.alpha * distill

    @torch.no_grad()
    def teacher_logits(self, images: torch.Tensor) -> torch.Tensor:
        """The teacher's logits (eval mode, no gradients), the batch resized to the teacher's input size if needed."""
        size = tuple(self.teacher.cfg.img_size)
        if tuple(images.shape[-2:]) != size:
            images = F.interpolate(images, size=size, mode="bicubic", align_corners=False)
        return self.teacher(images).float()


def load_teacher(dc: DistillConfig, num_classes: int, in_chans: int, device: torch.device) -> nn.Module:
    """The teacher in eval mode with gradients off; its classes and input channels must be the student's."""
    from ..checkpoints import from_pretrained, resolve_checkpoint
    from ..models import create_model, is_preset

    if is_preset(dc.teacher):
        teacher = create_model(dc.teacher, num_classes=num_classes, in_chans=in_chans)
    else:
        teacher = from_pretrained(resolve_checkpoint(dc.teacher), use_ema=dc.teacher_use_ema)
    if teacher.cfg.num_classes != num_classes:
        raise ValueError(f"distill.teacher={dc.teacher} predicts {teacher.cfg.num_classes} classes but the dataset "
                         f"has {num_classes}; fine-tune the teacher on this dataset first")
    if teacher.cfg.in_chans != in_chans:
        raise ValueError(f"distill.teacher={dc.teacher} takes {teacher.cfg.in_chans}-channel images but the student "
                         f"gets {in_chans}; set model.in_chans={teacher.cfg.in_chans} so both see the same batch")
    teacher.requires_grad_(False)
    return teacher.to(device).eval()


def build_criterion(dc: DistillConfig, model: nn.Module, task_loss: Callable, num_classes: int,
                    device: torch.device) -> DistillationLoss:
    """The run's loss: the task loss alone, or DeiT distillation (which switches the student to two-head training)."""
    if dc.teacher is None:
        return DistillationLoss(task_loss)
    if getattr(model, "dist_token", None) is None:
        raise ValueError(f"distill.teacher={dc.teacher} needs a student with a distillation token: set "
                         "model.dist_token=true (DeiT presets such as deit_tiny_distilled_patch16_224 have one)")
    model.set_distilled_training()
    return DistillationLoss(task_loss, load_teacher(dc, num_classes, model.cfg.in_chans, device), dc.kind, dc.alpha, dc.tau)
