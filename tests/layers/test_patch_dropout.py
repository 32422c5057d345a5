import pytest
import torch

from vitkit import create_model
from vitkit.layers import PatchDropout

SMALL = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=5)


def kept_positions(full: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """For each kept token, the index of the identical token in the full sequence (tokens are all distinct)."""
    match = (kept[:, :, None, :] == full[:, None, :, :]).all(-1)
    assert (match.sum(-1) == 1).all(), "every kept token must be exactly one of the input tokens"
    return match.int().argmax(-1)


def test_keeps_prefix_suffix_and_a_random_subset_of_patches():
    torch.manual_seed(0)
    drop = PatchDropout(0.5, num_prefix_tokens=2, num_suffix_tokens=3)
    x = torch.randn(6, 2 + 16 + 3, 4)
    kept, _, _ = drop(x)
    where = kept_positions(x, kept)
    assert kept.shape == (6, 2 + 8 + 3, 4)
    assert (where[:, :2] == torch.arange(2)).all() and (where[:, -3:] == torch.arange(18, 21)).all()
    patches = where[:, 2:-3]
    assert ((patches >= 2) & (patches < 18)).all()
    assert all(len(set(row.tolist())) == 8 for row in patches), "a patch was kept twice"
    assert len({tuple(sorted(row.tolist())) for row in patches}) > 1, "every image kept the same patches"
    drop.eval()
    assert drop(x)[0] is x


def test_rejects_a_rate_of_one():
    with pytest.raises(ValueError, match=r"patch_drop_rate must be in \[0, 1\)"):
        PatchDropout(1.0, 1, 0)


@pytest.mark.parametrize("extra", [dict(rope=True, reg_tokens=4, reg_position="suffix"),
                                   dict(alibi=True, reg_tokens=2, class_token=True)])
def test_model_equals_full_sequence_with_dropped_keys_masked(extra):
    """Gathering the kept tokens must equal attending over the full sequence with the dropped keys masked out."""
    torch.manual_seed(0)
    model = create_model("vit_cifar_patch4_32", **SMALL, patch_drop_rate=0.5, global_pool="token", **extra).train()
    images = torch.randn(3, 3, 32, 32)
    captured = {}
    model.patch_drop.register_forward_hook(lambda module, args, out: captured.update(full=args[0], kept=out[0]))
    logits = model(images)
    where = kept_positions(captured["full"], captured["kept"])

    x, rope, bias = model.embed(images)
    keep = torch.zeros(x.shape[:2], dtype=torch.bool).scatter_(1, where, True)
    mask = torch.zeros(x.shape[0], 1, x.shape[1], x.shape[1]).masked_fill(~keep[:, None, None, :], float("-inf"))
    bias = mask if bias is None else mask + bias
    for block in model.blocks:
        x = block(x, rope, bias)
    reference = model.head(model.norm(x)[:, 0])
    torch.testing.assert_close(logits, reference, rtol=1e-5, atol=1e-5)


def test_eval_sees_every_patch():
    torch.manual_seed(0)
    plain = create_model("vit_cifar_patch4_32", **SMALL).eval()
    dropping = create_model("vit_cifar_patch4_32", **SMALL, patch_drop_rate=0.75).eval()
    dropping.load_state_dict(plain.state_dict())
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(dropping(images), plain(images))


def test_set_patch_drop_rate_changes_how_many_patches_training_keeps():
    torch.manual_seed(0)
    model = create_model("vit_cifar_patch4_32", **SMALL).train()  # 16 patches and a class token
    kept = []
    model.patch_drop.register_forward_hook(lambda module, args, out: kept.append(out[0].shape[1]))
    images = torch.randn(2, 3, 32, 32)
    for rate in (0.75, 0.5, 0.0):
        model.set_patch_drop_rate(rate)
        model(images)
    assert kept == [1 + 4, 1 + 8, 1 + 16]
    assert model.cfg.patch_drop_rate == 0.0  # the config keeps the rate the model was built with


@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5])
def test_set_patch_drop_rate_refuses_a_rate_outside_0_1_and_keeps_the_old_one(rate):
    model = create_model("vit_cifar_patch4_32", **SMALL, patch_drop_rate=0.5)
    with pytest.raises(ValueError, match=rf"patch_drop_rate must be in \[0, 1\), got {rate}"):
        model.set_patch_drop_rate(rate)
    assert model.patch_drop.rate == 0.5
