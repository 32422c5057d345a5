"""Adversarial training in the engine: the attacked batch, what the attack sees (the update's random draws, fp32,
batch-norm statistics untouched), patch dropout off unless kept, and composition with bf16 and resume."""
import pytest
import torch
from safetensors.torch import load_file

from vitkit.config import from_dict
from vitkit.layers.patch_dropout import PatchDropout
from vitkit.models import create_model
from vitkit.preprocess import Preprocess
from vitkit.train import resolve_config, train
from vitkit.train.adversarial import AdversarialConfig, adversarial_images
from vitkit.train.losses import classification_loss

FAST = ["model.embed_dim=32", "model.depth=1", "model.num_heads=2", "schedule.epochs=1", "schedule.warmup_epochs=0",
        "logging.progress=false", "data.num_workers=0", "deterministic=true", "precision=fp32"]


def task_loss(model, images, targets):
    return classification_loss(model(images), targets)


@pytest.fixture
def model():
    """A tiny ViT with a batch-normed conv stem, dropout, drop-path and patch dropout: everything an attack could
    disturb or draw differently."""
    torch.manual_seed(0)
    net = create_model("vit_cifar_patch4_32", img_size=16, patch_size=1, conv_stem=[8, 16], embed_dim=16, depth=2,
                       num_heads=2, num_classes=4, drop_rate=0.2, drop_path_rate=0.2, patch_drop_rate=0.5)
    net.preprocess = Preprocess((0.4, 0.5, 0.6), (0.2, 0.25, 0.3))
    return net.train()


def normalised(pixels, prep):
    return (pixels - torch.tensor(prep.mean).view(1, -1, 1, 1)) / torch.tensor(prep.std).view(1, -1, 1, 1)


@pytest.mark.parametrize("kind, eps", [("fgsm_rs", 8.0), ("pgd", 4.0)])
def test_the_attacked_batch_stays_in_the_ball_and_raises_the_loss(model, kind, eps):
    pixels = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    images, targets = normalised(pixels, model.preprocess), torch.arange(8) % 4
    cfg = from_dict(AdversarialConfig, {"kind": kind, "eps": eps, "patch_drop": True})
    attacked = adversarial_images(model, task_loss, images, targets, cfg)
    back = attacked * torch.tensor(model.preprocess.std).view(1, -1, 1, 1) + torch.tensor(model.preprocess.mean).view(
        1, -1, 1, 1)
    assert (back - pixels).abs().max() <= eps / 255 + 1e-5 and back.min() >= -1e-6 and back.max() <= 1 + 1e-6
    with torch.no_grad():
        torch.manual_seed(5)
        clean_loss = task_loss(model, images, targets)
        torch.manual_seed(5)
        attacked_loss = task_loss(model, attacked, targets)
    assert attacked_loss > clean_loss


def test_the_attack_sees_the_updates_draws_in_fp32_and_leaves_batch_norm_alone(model):
    """Every forward (attack steps and the update after them) starts patch dropout from one random state, so all
    keep the same patches and drop the same units; the attack computes in fp32 even inside bf16 autocast; batch-norm
    running statistics move with the update only."""
    states, dtypes = [], []
    model.patch_drop.register_forward_pre_hook(lambda module, args: states.append(torch.get_rng_state()))
    model.head.register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    def statistics():
        return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "batches" in k}

    before = statistics()
    assert before, "the conv stem should have batch norms"
    images, targets = torch.randn(4, 3, 16, 16), torch.arange(4)
    cfg = AdversarialConfig(kind="pgd", eps=4, steps=3, patch_drop=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        attacked = adversarial_images(model, task_loss, images, targets, cfg)
        assert all(torch.equal(v, before[k]) for k, v in statistics().items())
        task_loss(model, attacked, targets)  # the update
    assert len(states) == 4 and all(torch.equal(s, states[0]) for s in states)
    assert dtypes == [torch.float32] * 3 + [torch.bfloat16]
    assert all(v.item() == before[k].item() + 1 for k, v in statistics().items() if "batches" in k)


@pytest.fixture
def kept_patches(monkeypatch):
    """The token count of every training forward (attack steps and updates; not the evaluations)."""
    lengths, forward = [], PatchDropout.forward

    def recording_forward(self, x, rope=None, bias=None):
        out = forward(self, x, rope, bias)
        if torch.is_grad_enabled():
            lengths.append(out[0].shape[1])
        return out

    monkeypatch.setattr(PatchDropout, "forward", recording_forward)
    return lengths


def test_an_adversarial_run_resumes_where_an_uninterrupted_one_goes(tmp_path, kept_patches):
    """Two epochs at a flat learning rate, straight or as one plus a resumed second: the same weights, random starts
    included (they come from the random state the checkpoint saves). Patch dropout is off meanwhile."""
    plain = FAST + [f"output_dir={tmp_path}", "adversarial.kind=pgd", "adversarial.steps=2", "adversarial.eps=4",
                    "schedule.min_lr=2e-3", "data.batch_size=512", "model.patch_drop_rate=0.5"]
    train(overrides=plain + ["name=straight", "schedule.epochs=2"])
    train(overrides=plain + ["name=resumed"])
    summary = train(overrides=plain + ["name=resumed", "schedule.epochs=2"], resume=True).summary
    assert summary["epochs"] == 2
    weights = [load_file(str(tmp_path / name / "checkpoints" / "last" / "model.safetensors"))
               for name in ("straight", "resumed")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert set(kept_patches) == {17}  # a class token and all 16 patches of 8x8 digits in 2x2 patches


def test_bf16_adversarial_training_keeps_patch_dropout_when_asked(tmp_path, kept_patches):
    summary = train(overrides=FAST + [f"output_dir={tmp_path}", "name=bf16", "precision=bf16", "data.batch_size=512",
                                      "adversarial.kind=fgsm_rs", "model.patch_drop_rate=0.5",
                                      "adversarial.patch_drop=true"]).summary
    assert summary["precision"] == "bf16" and summary["steps"] == 2
    assert set(kept_patches) == {9}  # half the patches, in the attack's forwards and the update's alike
    log = (tmp_path / "bf16" / "train.log").read_text()
    assert "adversarial training: fgsm_rs, eps 8/255, 1 step(s) of 10/255" in log and "patch dropout kept" in log


@pytest.mark.parametrize("override, message", [
    ("adversarial.kind=pgd_l2", "adversarial.kind='pgd_l2' is not one of"),
    ("adversarial.eps=0", "must lie in \\(0, 255\\]"),
    ("adversarial.eps=300", "units of 1/255"),
    ("adversarial.steps=3", "fgsm_rs takes one step"),
    ("distributed=fsdp", "adversarial training runs with distributed=ddp")])
def test_bad_adversarial_settings_are_refused(override, message):
    with pytest.raises(ValueError, match=message):
        resolve_config(overrides=["adversarial.kind=fgsm_rs", override])
