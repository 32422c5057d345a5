"""Which patches the objectives hide: the ViT paper's corruption split and MAE's visible subset."""
import math

import torch

from vitkit import create_model
from vitkit.layers import PatchDropout
from vitkit.selfsup import MAEConfig, MaskedAutoencoder, corrupt_patches, masked_places, unshuffle
from vitkit.selfsup.masking import KEPT, MASKED, RANDOM

TINY = dict(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2, num_classes=0)
TINY_DECODER = MAEConfig(decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)


def within_binomial(count: int, trials: int, p: float, sigmas: float = 5.0) -> bool:
    return abs(count - trials * p) <= sigmas * math.sqrt(trials * p * (1 - p))


def test_corruption_split_counts_lie_within_binomial_bounds():
    torch.manual_seed(0)
    tokens, mask_token = torch.randn(64, 49, 8), torch.randn(1, 1, 8)
    kinds = torch.cat([corrupt_patches(tokens, mask_token, 0.5, (0.8, 0.1, 0.1))[1].kind.flatten()
                       for _ in range(20)])
    trials, corrupted = kinds.numel(), int((kinds > 0).sum())
    assert within_binomial(corrupted, trials, 0.5)
    for kind, share in ((MASKED, 0.8), (RANDOM, 0.1), (KEPT, 0.1)):
        assert within_binomial(int((kinds == kind).sum()), corrupted, share), kind
    # the rate and split are settings: 15 % corrupted, half of them masked, none swapped
    kinds = corrupt_patches(tokens, mask_token, 0.15, (0.5, 0.0, 0.5))[1].kind
    assert within_binomial(int((kinds > 0).sum()), kinds.numel(), 0.15)
    assert not (kinds == RANDOM).any() and within_binomial(int((kinds == MASKED).sum()), int((kinds > 0).sum()), 0.5)


def test_each_kind_of_corruption_does_exactly_what_it_says():
    torch.manual_seed(1)
    tokens, mask_token = torch.randn(6, 16, 8), torch.randn(1, 1, 8)
    out, corruption = corrupt_patches(tokens, mask_token, 0.6, (0.4, 0.3, 0.3))
    kind = corruption.kind
    unchanged = (kind == 0) | (kind == KEPT)
    assert torch.equal(out[unchanged], tokens[unchanged])  # untouched and "left as they are" really are
    assert torch.equal(out[kind == MASKED], mask_token[0].expand(int((kind == MASKED).sum()), -1))
    # a swapped patch holds another patch's embedding from anywhere in the batch, never its own
    flat = tokens.reshape(-1, 8)
    places = (kind == RANDOM).flatten().nonzero().flatten()
    assert len(places) > 5
    for place, swapped in zip(places, out.reshape(-1, 8)[places]):
        sources = (flat == swapped).all(-1).nonzero().flatten()
        assert len(sources) == 1 and sources.item() != place
    assert corruption.corrupted.equal(kind > 0)


def test_keep_random_returns_where_each_kept_token_came_from_and_unshuffle_puts_it_back():
    torch.manual_seed(2)
    drop = PatchDropout(0.0, num_prefix_tokens=1, num_suffix_tokens=2).eval()  # masks whatever the mode and rate
    x = torch.randn(4, 1 + 16 + 2, 8)
    kept_tokens, _, _, kept = drop.keep_random(x, None, None, 0.75)
    assert kept.shape == (4, 4) and kept_tokens.shape == (4, 1 + 4 + 2, 8)
    patches = x[:, 1:17]
    assert torch.equal(kept_tokens[:, 1:5], patches.gather(1, kept[..., None].expand(-1, -1, 8)))
    fill = torch.full((8,), 7.0)
    restored = unshuffle(kept_tokens[:, 1:5], kept, fill, 16)
    hidden = masked_places(kept, 16)
    assert torch.equal(restored[~hidden], patches[~hidden])
    assert (restored[hidden] == 7.0).all() and hidden.sum(1).tolist() == [12] * 4


def test_mae_encoder_sees_exactly_the_visible_patches_of_each_image():
    torch.manual_seed(3)
    encoder = create_model("vit_cifar_patch4_32", **TINY, reg_tokens=2)
    objective = MaskedAutoencoder(encoder, MAEConfig(**{**vars(TINY_DECODER), "mask_ratio": 0.75}))
    seen = []
    encoder.blocks[0].register_forward_hook(lambda module, args, out: seen.append(args[0].shape))
    output = objective(torch.randn(5, 3, 16, 16))
    assert seen == [torch.Size([5, 1 + 2 + 4, 32])]  # class token, 2 registers, 4 of 16 patches
    assert output.masked.sum(1).tolist() == [12] * 5 and output.pred.shape == (5, 16, 4 * 4 * 3)
    assert len({tuple(row.tolist()) for row in output.masked}) > 1, "every image hid the same patches"
