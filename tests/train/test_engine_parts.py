import math

import pytest
import torch
import torch.nn.functional as F

from vitkit.config import from_dict, parse_overrides
from vitkit.train.ema import ModelEma
from vitkit.train.losses import classification_loss
from vitkit.train.optim import Lamb
from vitkit.train.schedule import warmup_cosine


def test_lamb_step_matches_the_papers_update():
    torch.manual_seed(0)
    w = torch.randn(5, requires_grad=True)
    g = torch.randn(5)
    w0 = w.detach().clone()
    opt = Lamb([w], lr=0.1, weight_decay=0.01)
    w.grad = g.clone()
    opt.step()
    m, v = g, g * g  # first step: bias-corrected moments are the gradient and its square
    update = m / (v.sqrt() + 1e-6) + 0.01 * w0
    torch.testing.assert_close(w.detach(), w0 - 0.1 * (w0.norm() / update.norm()) * update)


def test_warmup_then_cosine():
    lrs = [warmup_cosine(s, 1.0, total_steps=110, warmup_steps=10, min_lr=0.1) for s in range(111)]
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(0.5) and lrs[10] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.1 + 0.9 * 0.5)
    assert lrs[110] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_losses_against_torch():
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    torch.testing.assert_close(classification_loss(logits, labels, "ce", 0.1),
                               F.cross_entropy(logits, labels, label_smoothing=0.1))
    soft = F.one_hot(labels, 4).float() * 0.9 + 0.025
    torch.testing.assert_close(classification_loss(logits, soft, "ce"), F.cross_entropy(logits, soft))
    bce = F.binary_cross_entropy_with_logits(logits, F.one_hot(labels, 4).float(), reduction="none").sum(1).mean()
    torch.testing.assert_close(classification_loss(logits, labels, "bce", 0.0), bce)
    mixed = 0.7 * F.one_hot(labels, 4).float() + 0.3 * F.one_hot(labels.flip(0), 4).float()
    smoothed_then_mixed = 0.7 * soft + 0.3 * soft.flip(0)  # soft is the 0.1-smoothed one-hot of the labels
    torch.testing.assert_close(classification_loss(logits, mixed, "ce", 0.1),
                               F.cross_entropy(logits, smoothed_then_mixed))
    smoothed_bce = F.binary_cross_entropy_with_logits(logits, soft, reduction="none").sum(1).mean()
    torch.testing.assert_close(classification_loss(logits, labels, "bce", 0.1), smoothed_bce)


def test_ema_follows_the_formula_with_warmup():
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = ModelEma(model, decay=0.9, warmup=True)
    model.weight.data.fill_(1.0)
    ema.update(model)  # warmup decay: min(0.9, 2/11)
    assert ema.module.weight.item() == pytest.approx(1 - 2 / 11)
    ema.warmup = False
    ema.update(model)
    assert ema.module.weight.item() == pytest.approx(1 - 0.9 * (2 / 11))


def test_overrides_are_typed_like_yaml():
    assert parse_overrides(["optim.lr=1e-3", "model.qkv_bias=false", "model.img_size=[32,48]", "name=run1"]) == {
        "optim": {"lr": 0.001}, "model": {"qkv_bias": False, "img_size": [32, 48]}, "name": "run1"}
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["lr"])


def test_config_errors_name_the_key():
    from vitkit.train.config import TrainConfig, resolve_config

    with pytest.raises(ValueError, match=r"unknown config key 'optim.lrr'; did you mean \['lr'\]"):
        resolve_config(overrides=["optim.lrr=1"])
    with pytest.raises(ValueError, match="schedule.epochs must be an integer"):
        resolve_config(overrides=["schedule.epochs=abc"])
    with pytest.raises(ValueError, match="num_head"):
        resolve_config(overrides=["model.num_head=3"])
    with pytest.raises(ValueError, match="optim.name='adam' is not one of"):
        from_dict(TrainConfig, {"optim": {"name": "adam"}})
    with pytest.raises(ValueError, match="eval_every_epochs must be at least 1"):
        resolve_config(overrides=["eval_every_epochs=0"])
    with pytest.raises(ValueError, match=r"starts \[5.0, 2.0\] must increase and lie in \[0, schedule.epochs=40\)"):
        resolve_config(overrides=["schedule.patch_drop_stages=[[5, 0.5], [2, 0]]"])
    with pytest.raises(ValueError, match="must increase and lie in"):
        resolve_config(overrides=["schedule.patch_drop_stages=[[40, 0]]"])
    with pytest.raises(ValueError, match=r"rates \[1.0\] must lie in \[0, 1\)"):
        resolve_config(overrides=["schedule.patch_drop_stages=[[5, 1]]"])
    with pytest.raises(ValueError, match="must list \\[start_epoch, rate\\] pairs"):
        resolve_config(overrides=["schedule.patch_drop_stages=[[5]]"])
    assert math.isclose(resolve_config(overrides=["optim.lr=5e-4"]).optim.lr, 5e-4)


def test_auto_precision_is_bf16_only_where_the_cpu_computes_in_bf16(monkeypatch):
    from vitkit.train import trainer

    cpu = torch.device("cpu")
    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(trainer, "has_native_bf16", lambda device, native=native: native)
        assert trainer.pick_precision("auto", cpu) == expected
    assert trainer.pick_precision("fp32", cpu) == "fp32"
    with pytest.raises(ValueError, match="fp16 needs a CUDA GPU"):
        trainer.pick_precision("fp16", cpu)
