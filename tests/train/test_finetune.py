"""Fine-tuning and transfer on real data (scikit-learn's digits): init_from, new head, new resolution, modes."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression

from vitkit import cli, from_pretrained
from vitkit.checkpoints import save_pretrained
from vitkit.data import AugmentConfig, build_dataset, build_loader
from vitkit.models import create_model
from vitkit.representation import cache_features, linear_probe
from vitkit.train import train
from vitkit.train.finetune import FinetuneConfig, apply_mode, unfreeze_stage

TINY = {"name": "vit_cifar_patch4_32", "img_size": 8, "patch_size": 2, "embed_dim": 32, "depth": 2, "num_heads": 2,
        "in_chans": 3}
# fp32: the accuracy comparisons below must not depend on whether this machine's CPU computes in bf16
QUIET = {"logging": {"progress": False}, "data": {"num_workers": 0, "augment": {"crop": "none", "hflip": 0.0}},
         "precision": "fp32"}


def digits_folder(root: Path, classes: range) -> str:
    """Some of scikit-learn's digits written as an image folder: a dataset of its own, with its own classes."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    for image, label in zip(digits.images, digits.target):
        if label in classes:
            folder = root / f"digit{label}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray((image * 255 / 16).astype(np.uint8)).save(folder / f"{len(list(folder.iterdir()))}.png")
    return f"imagefolder:{root}"


def run(tmp_path, name, dataset, epochs, lr=2e-3, **sections):
    config = {"name": name, "output_dir": str(tmp_path), "seed": 0, "model": dict(TINY), **QUIET,
              "schedule": {"epochs": epochs, "warmup_epochs": 0, "min_lr": 1e-5}, "optim": {"lr": lr}}
    config["data"] = {**config["data"], "dataset": dataset}
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    return train(config)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    """A tiny ViT trained on digits 0-4 at 8x8: the 'large' pre-training of these tests."""
    root = tmp_path_factory.mktemp("pretrain")
    run(root, "pre", digits_folder(root / "data", range(0, 5)), epochs=12)
    return root / "pre"


def test_transfer_beats_scratch_with_new_classes_and_resolution(pretrained, tmp_path):
    target = digits_folder(tmp_path / "data", range(5, 9))  # other digits, 4 classes, fine-tuned at 16x16
    model_16 = {**TINY, "img_size": 16}
    tuned = run(tmp_path, "tuned", target, epochs=2, model=model_16, finetune={"init_from": str(pretrained)})
    scratch = run(tmp_path, "scratch", target, epochs=2, model=model_16)
    assert tuned.model.cfg.num_classes == 4 and tuned.model.cfg.img_size == (16, 16)
    log = (tmp_path / "tuned" / "train.log").read_text()
    assert "new 4-class head is zero-initialised" in log and "resampled from a 4x4 to a 8x8 grid" in log
    assert tuned.summary["final_top1"] > scratch.summary["final_top1"] + 5, (tuned.summary, scratch.summary)


def test_cli_init_from_replaces_the_zero_initialised_head(pretrained, tmp_path):
    args = ["train", "--init-from", str(pretrained), f"output_dir={tmp_path}", "name=cli", "schedule.epochs=1",
            "data.num_workers=0", "logging.progress=false", "optim.lr=0", "schedule.warmup_lr=0", "schedule.min_lr=0"] + [f"model.{k}={v}" for k, v in TINY.items()]
    assert cli.main(args) == 0
    head = from_pretrained(tmp_path / "cli" / "checkpoints" / "last").head
    assert head.weight.shape == (10, 32) and not head.weight.any() and not head.bias.any()


def test_linear_mode_leaves_the_body_bit_identical(pretrained, tmp_path):
    before = from_pretrained(pretrained / "checkpoints" / "best").state_dict()
    after = run(tmp_path, "linear", "digits", epochs=1, finetune={"init_from": str(pretrained), "mode": "linear"})
    state = after.model.state_dict()
    body = [k for k in before if not k.startswith("head.")]
    assert all(torch.equal(state[k], before[k]) for k in body)
    assert after.model.head.weight.abs().sum() > 0


def test_prompt_tuning_trains_only_prompts_and_head_and_reloads(pretrained, tmp_path):
    before = from_pretrained(pretrained / "checkpoints" / "best").state_dict()
    result = run(tmp_path, "prompt", "digits", epochs=1,
                 finetune={"init_from": str(pretrained), "mode": "prompt", "prompt_tokens": 3, "prompt_deep": True})
    model = result.model
    state = model.state_dict()
    assert all(torch.equal(state[k], before[k]) for k in before if not k.startswith("head."))
    assert model.prompt.tokens.shape == (2, 3, 32)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained == {"prompt.tokens", "head.weight", "head.bias"}
    reloaded = from_pretrained(tmp_path / "prompt" / "checkpoints" / "last").eval()
    x = torch.randn(4, 3, 8, 8)
    torch.testing.assert_close(reloaded(x), model.eval()(x))


def manual_forward(model, x, prompts_per_block):
    """Reference VPT forward written out by hand: [cls | prompts | patches] into each block, prompts dropped at the end."""
    tokens, _ = model.patch_embed(x)
    cls = model.cls_token.expand(x.shape[0], -1, -1)
    seq = torch.cat([cls, tokens], dim=1) + model.pos_embed
    n = prompts_per_block[0].shape[0]
    for i, block in enumerate(model.blocks):
        prompts = prompts_per_block[min(i, len(prompts_per_block) - 1)] if i == 0 or len(prompts_per_block) > 1 else None
        if prompts is not None:
            rest = seq[:, 1:] if i == 0 else seq[:, 1 + n:]
            seq = torch.cat([seq[:, :1], prompts.expand(x.shape[0], -1, -1), rest], dim=1)
        seq = block(seq)
    return model.head(model.norm(torch.cat([seq[:, :1], seq[:, 1 + n:]], dim=1))[:, 0])


@pytest.mark.parametrize("deep", [False, True])
def test_prompt_tokens_match_a_hand_written_forward(deep):
    torch.manual_seed(0)
    model = create_model("vit_cifar_patch4_32", **{k: v for k, v in TINY.items() if k != "name"}, num_classes=5).eval()
    model.set_prompt_tokens(4, deep=deep)
    x = torch.randn(2, 3, 8, 8)
    expected = manual_forward(model, x, list(model.prompt.tokens))
    torch.testing.assert_close(model(x), expected)


def test_prompt_tokens_are_not_rotated_by_rope():
    """Prompt rows of the RoPE tables are the identity rotation (cos 1, sin 0); the other rows are unchanged."""
    torch.manual_seed(0)
    model = create_model("vit_cifar_patch4_32", img_size=8, patch_size=2, embed_dim=32, depth=1, num_heads=2,
                         rope=True, pos_embed="none", reg_tokens=1, num_classes=3).eval()
    x = torch.randn(2, 3, 8, 8)
    tokens, rope, _ = model.embed(x)
    model.set_prompt_tokens(2)
    _, wide_rope, _ = model.prompt.insert(tokens, rope, None)
    at = model.cfg.num_prefix_tokens
    assert torch.equal(wide_rope[0][at:at + 2], torch.ones(2, 16)) and not wide_rope[1][at:at + 2].any()
    torch.testing.assert_close(torch.cat([wide_rope[0][:at], wide_rope[0][at + 2:]]), rope[0])
    assert model(x).shape == (2, 3)


def test_prompt_rows_and_columns_of_the_alibi_bias_are_zero():
    model = create_model("vit_cifar_patch4_32", img_size=8, patch_size=2, embed_dim=32, depth=1, num_heads=2,
                         alibi=True, pos_embed="none", num_classes=3).eval()
    tokens, rope, bias = model.embed(torch.randn(2, 3, 8, 8))
    model.set_prompt_tokens(2)
    _, _, wide = model.prompt.insert(tokens, rope, bias)
    keep = [0] + list(range(3, wide.shape[-1]))
    assert torch.equal(wide[:, keep][:, :, keep], bias)
    assert not wide[:, 1:3].any() and not wide[:, :, 1:3].any()


def test_linear_probe_on_cached_features_leaves_the_body_untouched(pretrained):
    model = from_pretrained(pretrained / "checkpoints" / "best")
    model.reset_classifier(10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    augment = AugmentConfig(crop="none", hflip=0.0)
    loaders = [build_loader(build_dataset("digits", split), batch_size=256, train=False, augment=augment, img_size=8,
                            device="cpu", in_chans=3, num_workers=0) for split in ("train", "test")]
    scores = linear_probe(model, *loaders, epochs=100, lr=3e-2)
    assert all(torch.equal(model.state_dict()[k], before[k]) for k in before if not k.startswith("head."))
    (train_x, train_y), (test_x, test_y) = (cache_features(model, loader) for loader in loaders)
    reference = LogisticRegression(max_iter=2000).fit(train_x.numpy(), train_y.numpy())
    sklearn_top1 = 100 * reference.score(test_x.numpy(), test_y.numpy())
    assert scores["test_top1"] > max(sklearn_top1 - 8, 20), (scores, sklearn_top1)  # chance is 10%


def test_staged_unfreezing_follows_the_schedule():
    model = create_model("vit_cifar_patch4_32", **{**{k: v for k, v in TINY.items() if k != "name"}, "depth": 3})
    ft = FinetuneConfig(unfreeze_every=2)
    trainable = lambda: {n.split(".")[0] + ("." + n.split(".")[1] if n.startswith("blocks") else "")  # noqa: E731
                         for n, p in model.named_parameters() if p.requires_grad}
    assert "head only" in unfreeze_stage(model, 0, ft) and trainable() == {"head", "norm"}
    assert unfreeze_stage(model, 1, ft) is None
    unfreeze_stage(model, 2, ft)
    assert trainable() == {"head", "norm", "blocks.2"}
    unfreeze_stage(model, 6, ft)
    assert trainable() == {"head", "norm", "blocks.0", "blocks.1", "blocks.2"}
    assert "everything" in unfreeze_stage(model, 8, ft)
    assert all(p.requires_grad for p in model.parameters())


def test_architecture_mismatch_is_a_clear_error(pretrained, tmp_path):
    with pytest.raises(ValueError, match=r"model.name=vit_cifar_patch4_32 \(with the model fields given\) describes "
                                         r"another architecture: embed_dim=64 \(the checkpoint has 32\)"):
        run(tmp_path, "bad", "digits", epochs=1, model={**TINY, "embed_dim": 64},
            finetune={"init_from": str(pretrained)})


def test_resolution_not_divisible_by_patch_is_a_clear_error(pretrained, tmp_path):
    with pytest.raises(ValueError, match="not divisible by the patch size 2"):
        run(tmp_path, "bad", "digits", epochs=1, model={**TINY, "img_size": 9}, finetune={"init_from": str(pretrained)})


def test_nothing_left_to_train_is_a_clear_error():
    model = create_model("vit_cifar_patch4_32", **{k: v for k, v in TINY.items() if k != "name"})
    with pytest.raises(ValueError, match="nothing left to train"):
        apply_mode(model, FinetuneConfig(mode="linear", freeze=["head"]))
    with pytest.raises(ValueError, match="prompt_tokens >= 1"):
        FinetuneConfig(mode="prompt", prompt_tokens=0)
    with pytest.raises(ValueError, match="unfreeze_every"):
        FinetuneConfig(mode="linear", unfreeze_every=1)


def test_saved_model_without_prompts_loads_as_before(tmp_path):
    model = create_model("vit_cifar_patch4_32", **{k: v for k, v in TINY.items() if k != "name"})
    save_pretrained(model, tmp_path / "m")
    assert from_pretrained(tmp_path / "m").prompt is None
