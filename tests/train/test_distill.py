"""DeiT distillation: the losses against hand-written formulas, the teacher's handling, a run, and errors."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vitkit.checkpoints import save_pretrained
from vitkit.models import create_model
from vitkit.train import train
from vitkit.train.distill import (DistillationLoss, DistillConfig, build_criterion, hard_distillation_loss,
                                  load_teacher, soft_distillation_loss)

TINY = dict(img_size=8, patch_size=2, embed_dim=32, depth=1, num_heads=2, in_chans=1)


def test_soft_loss_matches_the_hand_formula():
    torch.manual_seed(0)
    student, teacher, tau = torch.randn(4, 5), torch.randn(4, 5), 3.0
    s, t = student.numpy() / tau, teacher.numpy() / tau
    log_p_s = s - np.log(np.exp(s).sum(1, keepdims=True))
    log_p_t = t - np.log(np.exp(t).sum(1, keepdims=True))
    expected = (np.exp(log_p_t) * (log_p_t - log_p_s)).sum() * tau ** 2 / student.numel()
    assert math.isclose(soft_distillation_loss(student, teacher, tau).item(), expected, rel_tol=1e-5)


def test_hard_loss_is_cross_entropy_against_the_teacher_argmax():
    student = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    teacher = torch.tensor([[0.0, 9.0, 1.0], [5.0, 0.0, 0.0]])  # teacher says: class 1, class 0
    expected = -(math.log(math.exp(0.0) / sum(map(math.exp, (2.0, 0.0, -1.0))))
                 + math.log(math.exp(0.5) / sum(map(math.exp, (0.5, 0.5, 3.0))))) / 2
    assert math.isclose(hard_distillation_loss(student, teacher).item(), expected, rel_tol=1e-6)


def test_total_loss_weights_task_and_distillation_by_alpha():
    torch.manual_seed(0)
    teacher = create_model("vit_cifar_patch4_32", **TINY, num_classes=3)
    criterion = DistillationLoss(F.cross_entropy, teacher.eval(), kind="soft", alpha=0.3, tau=2.0)
    images, targets = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    cls, dist = torch.randn(4, 3), torch.randn(4, 3)
    expected = 0.7 * F.cross_entropy(cls, targets) + 0.3 * soft_distillation_loss(dist, teacher(images), 2.0)
    torch.testing.assert_close(criterion((cls, dist), images, targets), expected)
    assert torch.equal(DistillationLoss(F.cross_entropy)(cls, images, targets), F.cross_entropy(cls, targets))


def test_teacher_is_frozen_in_eval_mode_and_resized_to_its_input(tmp_path):
    """A hybrid (ResNet stem) teacher at 32x32 teaching an 8x8 student: images are resized for it, no grads flow."""
    hybrid = create_model("vit_base_r50_s16_224", img_size=32, embed_dim=32, depth=1, num_heads=2, in_chans=1,
                          backbone_layers=(1, 1, 1), num_classes=3, drop_rate=0.5)
    save_pretrained(hybrid, tmp_path / "teacher")
    teacher = load_teacher(DistillConfig(teacher=str(tmp_path / "teacher")), 3, 1, torch.device("cpu"))
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    student = create_model("vit_cifar_patch4_32", **TINY, num_classes=3, dist_token=True).train()
    criterion = build_criterion(DistillConfig(teacher=str(tmp_path / "teacher")), student, F.cross_entropy, 3,
                                torch.device("cpu"))
    images = torch.randn(4, 1, 8, 8)
    logits = criterion.teacher_logits(images)
    resized = F.interpolate(images, size=(32, 32), mode="bicubic", align_corners=False)
    torch.testing.assert_close(logits, teacher(resized))  # deterministic: dropout is off in eval mode
    loss = criterion(student(images), images, torch.tensor([0, 1, 2, 0]))
    loss.backward()
    assert all(p.grad is None for p in criterion.teacher.parameters())
    assert student.dist_token.grad is not None and student.head_dist.weight.grad.abs().sum() > 0


def test_distilled_run_trains_and_averages_heads_at_inference(tmp_path):
    teacher = create_model("vit_cifar_patch4_32", **TINY, num_classes=10)
    save_pretrained(teacher, tmp_path / "teacher")
    result = train({"output_dir": str(tmp_path), "name": "student", "logging": {"progress": False},
                    "model": {"name": "vit_cifar_patch4_32", **TINY, "dist_token": True},
                    "schedule": {"epochs": 1, "warmup_epochs": 0}, "data": {"num_workers": 0},
                    "distill": {"teacher": str(tmp_path / "teacher"), "kind": "hard"}})
    model = result.model.eval()
    x = torch.randn(2, 1, 8, 8)
    tokens = model.forward_features(x)
    expected = (model.head(tokens[:, 0]) + model.head_dist(tokens[:, 1])) / 2
    torch.testing.assert_close(model(x), expected)
    log = (tmp_path / "student" / "metrics.jsonl").read_text()
    assert '"train_loss"' in log and math.isfinite(result.summary["final_top1"])


def test_student_without_distillation_token_is_a_clear_error(tmp_path):
    student = create_model("vit_cifar_patch4_32", **TINY, num_classes=3)
    with pytest.raises(ValueError, match="model.dist_token=true"):
        build_criterion(DistillConfig(teacher="vit_cifar_patch4_32"), student, F.cross_entropy, 3, torch.device("cpu"))


def test_teacher_with_other_classes_is_a_clear_error(tmp_path):
    save_pretrained(create_model("vit_cifar_patch4_32", **TINY, num_classes=5), tmp_path / "t")
    with pytest.raises(ValueError, match="predicts 5 classes but the dataset has 3"):
        load_teacher(DistillConfig(teacher=str(tmp_path / "t")), 3, 1, torch.device("cpu"))
    with pytest.raises(ValueError, match="distill.kind"):
        DistillConfig(kind="medium")
