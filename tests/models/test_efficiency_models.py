"""The faster-ViT fields of the one VisionTransformer (docs/efficiency.md): token merging, linear and windowed
attention, per-block widths. Each checked against a closed form: merging identical tokens changes nothing, one
window covering the grid is global attention, a saved model comes back identical."""
import pytest
import torch

from vitkit import ViTConfig
from vitkit.checkpoints import from_pretrained, save_pretrained
from vitkit.models import VisionTransformer

TINY = ViTConfig(img_size=32, patch_size=4, embed_dim=32, depth=3, num_heads=2, num_classes=5)


def build(**overrides):
    torch.manual_seed(0)
    return VisionTransformer(TINY.replace(**overrides)).eval()


def tokens_per_block(model, x):
    """The sequence length entering each block, read by hooks."""
    seen = []
    hooks = [block.register_forward_pre_hook(lambda _, args: seen.append(args[0].shape[1])) for block in model.blocks]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return seen


def test_token_merging_off_is_the_plain_model_bit_for_bit():
    model = build(reg_tokens=2)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        plain = model(x)
        model.set_token_merging(6)
        merged = model(x)
        model.set_token_merging(0)
        assert torch.equal(model(x), plain)
        model.set_token_merging([0, 0, 0])
        assert torch.equal(model(x), plain)
    assert not torch.equal(merged, plain)


def test_each_block_merges_r_tokens_until_half_the_mergeable_ones_is_the_cap():
    model = build(reg_tokens=1, reg_position="suffix")  # 64 patches + class token + suffix register
    x = torch.randn(1, 3, 32, 32)
    model.set_token_merging(20)
    assert tokens_per_block(model, x) == [66, 46, 26]
    model.set_token_merging([40, 0, 5])
    assert tokens_per_block(model, x) == [66, 34, 34]  # 40 asked of 64 mergeable: the cap is 32


@pytest.mark.parametrize("overrides", [dict(), dict(dist_token=True, reg_tokens=2),
                                       dict(class_token=False, global_pool="avg")])
def test_merging_identical_tokens_changes_nothing(overrides):
    """Images of two colours in patch-aligned halves, no position embedding: patch tokens come in two identical
    kinds, every merge joins identical tokens, and with size-weighted means, proportional attention and unmerging
    the outputs (logits, features, intermediate maps) are the plain model's."""
    model = build(pos_embed="none", **overrides)
    x = torch.zeros(2, 3, 32, 32)
    x[:, :, :16] = torch.randn(2, 3, 1, 1)
    x[:, :, 16:] = torch.randn(2, 3, 1, 1)
    with torch.no_grad():
        plain, (_, plain_maps) = model(x), model.forward_intermediates(x)
        model.set_token_merging(10)
        merged, (_, merged_maps) = model(x), model.forward_intermediates(x)
    assert tokens_per_block(model, x)[-1] < tokens_per_block(build(pos_embed="none", **overrides), x)[-1]
    torch.testing.assert_close(merged, plain, rtol=1e-4, atol=1e-5)
    for got, expected in zip(merged_maps, plain_maps):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_without_proportional_attention_identical_tokens_would_change_the_class_token():
    """The check above can fail: dropping the log-size bias changes the answer."""
    model = build(pos_embed="none")
    x = torch.zeros(1, 3, 32, 32)
    x[:, :, :16], x[:, :, 16:] = 1.0, -1.0
    with torch.no_grad():
        plain = model(x)
        model.set_token_merging(10)
        from vitkit.layers import TokenMerger
        original = TokenMerger.attention_bias
        TokenMerger.attention_bias = lambda self: None
        try:
            unweighted = model(x)
        finally:
            TokenMerger.attention_bias = original
    assert (unweighted - plain).abs().max() > 1e-4


def test_merging_trains_with_every_kind_of_extra_token_and_checkpointing_gives_the_same_gradients():
    model = build(rope=True, reg_tokens=2, dist_token=True, prompt_tokens=2, prompt_deep=True, token_merging=4,
                  patch_drop_rate=0.25)
    x = torch.randn(2, 3, 32, 32)
    grads = []
    for checkpointing in (False, True):
        model.train()
        model.set_grad_checkpointing(checkpointing)
        model.zero_grad()
        torch.manual_seed(1)  # the same patches dropped
        model(x).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], msg=name)
    final, maps = model.eval().forward_intermediates(x, indices=[-1])  # prompts and merges undone: the full grid
    assert final.shape == (2, 1 + 1 + 2 + 64, 32) and maps[0].shape == (2, 32, 8, 8)


def test_invalid_merging_is_refused():
    model = build()
    for r, message in [(-1, "non-negative"), ([1, 2], "3 values"), ((1, 2, 3, 4), "3 values")]:
        with pytest.raises(ValueError, match=message):
            model.set_token_merging(r)
    with pytest.raises(ValueError, match="ALiBi"):
        build(alibi=True).set_token_merging(2)
    with pytest.raises(ValueError, match="windowed"):
        build(class_token=False, global_pool="avg", window_size=4).set_token_merging(2)
    model.set_token_merging(2)
    with pytest.raises(ValueError, match="set_token_merging"):
        model.get_attention_maps(torch.randn(1, 3, 32, 32))


@pytest.mark.parametrize("img_size,window", [(32, 8), (24, 8)])
def test_one_window_covering_the_grid_is_global_attention(img_size, window):
    """A window of the grid's size (or larger: the padding is masked) sees every token, as global attention does."""
    plain = build(img_size=img_size, class_token=False, global_pool="avg", rope=True)
    windowed = build(img_size=img_size, class_token=False, global_pool="avg", rope=True, window_size=window)
    windowed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, img_size, img_size)
    with torch.no_grad():
        torch.testing.assert_close(windowed(x), plain(x), rtol=1e-5, atol=1e-5)


def test_small_windows_with_a_global_block():
    model = build(img_size=40, class_token=False, global_pool="avg", window_size=4, global_attn_indexes=(1,))
    assert [block.window_size for block in model.blocks] == [4, 0, 4]
    maps = model.get_attention_maps(torch.randn(1, 3, 40, 40))  # 10 x 10 grid in 4 x 4 windows, padded
    assert (maps[0] > 0).sum(-1).max() == 16 and (maps[1] > 0).sum(-1).min() == 100
    _, features = model.forward_intermediates(torch.randn(1, 3, 40, 40), indices=[-1])
    assert features[0].shape == (1, 32, 10, 10)


@pytest.mark.parametrize("overrides,message", [
    (dict(window_size=4), "class/distillation/register tokens"),
    (dict(class_token=False, global_pool="avg", window_size=4, patch_drop_rate=0.5), "patch_drop_rate"),
    (dict(global_attn_indexes=(1,)), "window_size > 0"),
    (dict(class_token=False, global_pool="avg", window_size=4, global_attn_indexes=(3,)), "block indices"),
    (dict(attention="linear", alibi=True), "ALiBi"),
    (dict(attention="performer", attn_drop_rate=0.1), "attn_drop_rate=0"),
    (dict(attention="cosine"), "attention='cosine' is not one of"),
    (dict(performer_features=8), "attention='performer'"),
    (dict(block_widths=[[2, 64]]), "one \\[num_heads, mlp_hidden_dim\\] pair"),
    (dict(block_widths=[[2, 64], [0, 64], [1, 8]]), "positive"),
])
def test_invalid_efficiency_fields_raise_clear_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        TINY.replace(**overrides)


@pytest.mark.parametrize("overrides", [dict(attention="performer", performer_features=24, token_merging=3),
                                       dict(attention="linear", rope=True),
                                       dict(block_widths=[[2, 64], [1, 16], [2, 8]], attn_gate=True),
                                       dict(class_token=False, global_pool="avg", window_size=3,
                                            global_attn_indexes=(0, 2))])
def test_save_and_load_rebuild_the_same_model(tmp_path, overrides):
    model = build(**overrides)
    save_pretrained(model, tmp_path)
    loaded = from_pretrained(tmp_path).eval()
    assert loaded.cfg == model.cfg
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_per_block_widths_shape_each_block():
    model = build(block_widths=[[2, 64], [1, 16], [2, 8]])
    shapes = [(b.attn.num_heads, b.attn.qkv.out_features, b.attn.proj.in_features, b.mlp.fc1.out_features)
              for b in model.blocks]
    assert shapes == [(2, 96, 32, 64), (1, 48, 16, 16), (2, 96, 32, 8)]  # head_dim stays 16


def test_configs_written_before_these_fields_still_load():
    old = {k: v for k, v in TINY.to_dict().items()
           if k not in ("attention", "performer_features", "window_size", "global_attn_indexes", "token_merging",
                        "block_widths")}
    assert ViTConfig.from_dict(old) == TINY
