"""The objectives' losses count only the hidden or corrupted patches, and refuse encoders they cannot train."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vitkit import create_model
from vitkit.selfsup import (MAEConfig, MaskedAutoencoder, MaskedPatchConfig, MaskedPatchPredictor, mae_loss,
                            mae_pictures, masked_patch_pictures)
from vitkit.selfsup.masking import Corruption
from vitkit.selfsup.masked_patch import MaskedPatchOutput

TINY = dict(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2, num_classes=0)
TINY_DECODER = dict(decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)


@pytest.mark.parametrize("norm_pix_loss", [False, True])
def test_mae_loss_counts_the_hidden_patches_only(norm_pix_loss):
    torch.manual_seed(0)
    pred, target = torch.randn(3, 10, 12, dtype=torch.float64), torch.randn(3, 10, 12, dtype=torch.float64)
    masked = torch.rand(3, 10) < 0.7
    loss = mae_loss(pred, target, masked, norm_pix_loss)
    t = target.numpy()
    if norm_pix_loss:
        t = (t - t.mean(-1, keepdims=True)) / np.sqrt(t.var(-1, ddof=1, keepdims=True) + 1e-6)
    expected = ((pred.numpy() - t) ** 2).mean(-1)[masked.numpy()].mean()
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    visible_changed = torch.where(masked[..., None], pred, pred + 5.0)
    assert mae_loss(visible_changed, target, masked, norm_pix_loss).item() == pytest.approx(loss.item(), rel=1e-12)
    hidden_changed = torch.where(masked[..., None], pred + 5.0, pred)
    assert mae_loss(hidden_changed, target, masked, norm_pix_loss).item() > loss.item() + 1.0


def test_mae_gradient_reaches_encoder_and_decoder_through_the_hidden_patches_only():
    torch.manual_seed(1)
    objective = MaskedAutoencoder(create_model("vit_cifar_patch4_32", **TINY, rope=True, reg_tokens=2,
                                               reg_position="suffix", class_token=False, global_pool="avg",
                                               pos_embed="none"), MAEConfig(**TINY_DECODER))
    images = torch.randn(2, 3, 16, 16)
    output = objective(images)
    grad = torch.autograd.grad(objective.loss(images, output), output.pred, retain_graph=True)[0]
    assert (grad[~output.masked] == 0).all() and (grad[output.masked] != 0).any()
    objective.loss(images, output).backward()
    assert objective.encoder.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert objective.decoder.mask_token.grad.abs().sum() > 0


def test_masked_patch_loss_is_cross_entropy_over_corrupted_patches_only():
    torch.manual_seed(2)
    objective = MaskedPatchPredictor(create_model("vit_cifar_patch4_32", **TINY))
    images = torch.randn(2, 3, 16, 16)
    kind = torch.zeros(2, 16, dtype=torch.long)
    kind[0, [1, 5]], kind[1, [0]] = 1, 3
    logits = torch.randn(2, 16, 512)
    loss = objective.loss(images, MaskedPatchOutput(logits, Corruption(kind)))
    targets = objective.targets(images)[..., 0]
    expected = np.mean([F.cross_entropy(logits[b, p], targets[b, p]).item() for b, p in ((0, 1), (0, 5), (1, 0))])
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    untouched = logits.clone()
    untouched[kind == 0] += torch.randn_like(untouched[kind == 0])
    assert objective.loss(images, MaskedPatchOutput(untouched, Corruption(kind))).item() == pytest.approx(loss.item())


def test_the_paper_s_other_two_targets():
    torch.manual_seed(3)
    images = torch.randn(2, 3, 16, 16)
    four = MaskedPatchPredictor(create_model("vit_cifar_patch4_32", **{**TINY, "patch_size": 8}),
                                MaskedPatchConfig(target="mean_color_4x4"))
    output = four(images)
    assert output.pred.shape == (2, 4, 16 * 512) and four.targets(images).shape == (2, 4, 16)
    assert torch.isfinite(four.loss(images, output))
    pixels = MaskedPatchPredictor(create_model("vit_cifar_patch4_32", **TINY), MaskedPatchConfig(target="pixels"))
    output = pixels(images)
    chosen = output.corruption.corrupted
    expected = ((output.pred - pixels.targets(images)) ** 2).mean(-1)[chosen].mean()
    assert pixels.loss(images, output).item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="needs patches of 8 px or more"):
        MaskedPatchPredictor(create_model("vit_cifar_patch4_32", **TINY), MaskedPatchConfig(target="mean_color_4x4"))


@pytest.mark.parametrize("objective", [MaskedAutoencoder, MaskedPatchPredictor])
def test_a_convolutional_stem_is_refused_with_the_reason(objective):
    encoder = create_model("vit_cifar_patch4_32", **{**TINY, "patch_size": 1}, conv_stem=(16, 32))
    with pytest.raises(ValueError, match="overlapping receptive fields leak masked pixels"):
        objective(encoder)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="must be three shares"):
        MaskedPatchConfig(split=(0.8, 0.1, 0.2))
    with pytest.raises(ValueError, match="mask_ratio=1.0 must lie in"):
        MAEConfig(mask_ratio=1.0)
    with pytest.raises(ValueError, match="divide by mae.decoder_num_heads"):
        MAEConfig(decoder_embed_dim=30, decoder_num_heads=4)


def test_pictures_are_drawn(tmp_path):
    encoder = create_model("vit_cifar_patch4_32", **TINY)
    images = torch.randn(2, 3, 16, 16)
    assert mae_pictures(MaskedAutoencoder(encoder, MAEConfig(**TINY_DECODER)), images, tmp_path).is_file()
    assert masked_patch_pictures(MaskedPatchPredictor(encoder), images, tmp_path).is_file()
