import pytest
import torch

from vitkit import ViTConfig, create_model

TINY = dict(embed_dim=32, depth=2, num_heads=4, num_classes=5)


def tiny(name, **overrides):
    torch.manual_seed(0)
    return create_model(name, **{**TINY, **overrides}).eval()


@pytest.mark.parametrize("name,img", [("vit_base_patch16_224", 64), ("deit_base_distilled_patch16_224", 64),
                                      ("vit5_base_patch16_224", 64), ("vit5gated_small_patch16_224", 64),
                                      ("vit_cifar_seed_patch8_32", 32), ("vit_base_r50_s16_224", 64)])
def test_every_family_runs_forward_and_backward(name, img):
    model = tiny(name, img_size=img)
    x = torch.randn(2, 3, img, img)
    logits = model(x)
    assert logits.shape == (2, 5)
    model.train()
    model.set_distilled_training(False)
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_token_order_and_counts():
    model = tiny("vit5_base_patch16_224", img_size=32)
    tokens, _, _ = model.embed(torch.randn(1, 3, 32, 32))
    assert tokens.shape == (1, 1 + 4 + 4, 32)
    # ViT-5 puts the registers last and never adds the absolute position to class or register tokens
    torch.testing.assert_close(tokens[0, -4:], model.reg_token[0])
    torch.testing.assert_close(tokens[0, 0], model.cls_token[0, 0])


def test_timm_register_layout_puts_registers_after_the_class_token():
    model = tiny("vit_base_patch16_224", img_size=32, reg_tokens=2, no_embed_class=True)
    tokens, _, _ = model.embed(torch.randn(1, 3, 32, 32))
    torch.testing.assert_close(tokens[0, 1:3], model.reg_token[0])


def test_distilled_model_averages_heads_in_eval_and_returns_both_when_training():
    model = tiny("deit_base_distilled_patch16_224", img_size=32)
    x = torch.randn(2, 3, 32, 32)
    feats = model.forward_features(x)
    expected = (model.head(feats[:, 0]) + model.head_dist(feats[:, 1])) / 2
    torch.testing.assert_close(model(x), expected)
    model.train()
    model.set_distilled_training()
    cls, dist = model(x)
    assert cls.shape == dist.shape == (2, 5)
    with pytest.raises(ValueError, match="dist_token=True"):
        tiny("deit_base_patch16_224", img_size=32).set_distilled_training()


def test_several_class_tokens_are_averaged():
    model = tiny("vit5gated_small_patch16_224", img_size=32)
    feats = model.forward_features(torch.randn(2, 3, 32, 32))
    torch.testing.assert_close(model.forward_head(feats, pre_logits=True), feats[:, :4].mean(1))


def test_set_attention_dtype_makes_every_block_attend_in_that_dtype():
    model = tiny("vit_base_patch16_224", img_size=32)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        reference = model(x)
        model.set_attention_dtype(torch.bfloat16)
        maps, out = model.get_attention_maps(x), model(x)
        assert all(m.dtype == torch.bfloat16 for m in maps) and out.dtype == torch.float32
        torch.testing.assert_close(out, reference, rtol=0, atol=0.05 * reference.abs().max().item())
        model.set_attention_dtype(None)
        torch.testing.assert_close(model(x), reference, rtol=0, atol=0)


def test_set_attention_dtype_refuses_a_non_float_dtype():
    with pytest.raises(ValueError, match="floating-point dtype or None, got torch.int8"):
        tiny("vit_base_patch16_224", img_size=32).set_attention_dtype(torch.int8)


def test_rectangular_images():
    model = tiny("vit_base_patch16_224", img_size=(32, 64))
    assert model.cfg.grid_size == (2, 4)
    assert model(torch.randn(1, 3, 32, 64)).shape == (1, 5)


@pytest.mark.parametrize("pos", ["learned", "sincos", "none"])
def test_dynamic_size_runs_and_matches_set_input_size_for_absolute_positions(pos):
    model = tiny("vit_base_patch16_224", img_size=32, pos_embed=pos)
    x = torch.randn(1, 3, 48, 64)
    dynamic = model(x)
    model.set_input_size((48, 64))
    assert model.cfg.grid_size == (3, 4)
    torch.testing.assert_close(model(x), dynamic, rtol=0, atol=1e-6)


def test_set_input_size_rebuilds_rope_on_the_new_grid():
    model = tiny("vit5_base_patch16_224", img_size=32)
    model.set_input_size(64)
    assert model.pos_embed.shape == (1, 16, 32)
    assert model.rope_cos.shape == (1 + 16 + 4, 8)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)


def test_alibi_model_runs_at_two_sizes():
    model = tiny("vit_base_patch16_224", img_size=32, alibi=True, pos_embed="none")
    assert model.attn_bias.shape == (4, 5, 5)
    assert model(torch.randn(1, 3, 48, 48)).shape == (1, 5)


def test_forward_intermediates():
    model = tiny("vit_base_patch16_224", img_size=32, reg_tokens=1)
    x = torch.randn(2, 3, 32, 32)
    final, maps = model.forward_intermediates(x)
    torch.testing.assert_close(final, model.forward_features(x))
    assert [m.shape for m in maps] == [(2, 32, 2, 2)] * 2
    _, tokens = model.forward_intermediates(x, indices=[-1], output_fmt="NLC")
    assert len(tokens) == 1 and tokens[0].shape == (2, 6, 32)


def test_attention_maps_come_from_the_same_computation_as_forward():
    model = tiny("vit5_base_patch16_224", img_size=32)
    x = torch.randn(2, 3, 32, 32)
    maps = model.get_attention_maps(x)
    assert len(maps) == 2 and maps[0].shape == (2, 4, 9, 9)
    torch.testing.assert_close(maps[1].sum(-1), torch.ones(2, 4, 9))
    # recompute block 0's attention by hand from the embedding
    tokens, rope, bias = model.embed(x)
    block = model.blocks[0]
    q, k, _ = block.attn.qkv(block.norm1(tokens)).reshape(2, 9, 3, 4, 8).permute(2, 0, 3, 1, 4)
    from vitkit.layers import apply_rope
    q, k = apply_rope(block.attn.q_norm(q), *rope), apply_rope(block.attn.k_norm(k), *rope)
    torch.testing.assert_close(maps[0], ((q @ k.transpose(-2, -1)) / 8 ** 0.5).softmax(-1), rtol=0, atol=1e-6)


def test_reset_classifier_is_zero_initialised():
    model = tiny("vit_base_patch16_224", img_size=32)
    model.reset_classifier(3)
    assert torch.equal(model(torch.randn(2, 3, 32, 32)), torch.zeros(2, 3))
    assert model.cfg.num_classes == 3


def test_pre_logits_representation_layer():
    model = tiny("vit_base_patch16_224", img_size=32, representation_size=16)
    feats = model.forward_features(torch.randn(2, 3, 32, 32))
    pooled = model.forward_head(feats, pre_logits=True)
    torch.testing.assert_close(pooled, torch.tanh(model.pre_logits.fc(feats[:, 0])))
    assert model.head.in_features == 16


def test_weight_decay_groups_and_layer_decay():
    model = tiny("vit_base_patch16_224", img_size=32)
    groups = model.param_groups(weight_decay=0.05, layer_decay=0.5)
    by_param = {id(p): g for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert by_param[id(named["pos_embed"])]["weight_decay"] == 0.0
    assert by_param[id(named["blocks.0.norm1.weight"])]["weight_decay"] == 0.0
    assert by_param[id(named["blocks.0.attn.qkv.weight"])]["weight_decay"] == 0.05
    assert by_param[id(named["head.weight"])]["lr_scale"] == 1.0
    assert by_param[id(named["blocks.1.mlp.fc1.weight"])]["lr_scale"] == 0.5
    assert by_param[id(named["patch_embed.proj.weight"])]["lr_scale"] == 0.125
    assert sum(len(g["params"]) for g in groups) == len(named)


def test_gradient_checkpointing_gives_the_same_gradients():
    model = tiny("vit5_base_patch16_224", img_size=32).train()
    x = torch.randn(2, 3, 32, 32)
    model(x).sum().backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model(x).sum().backward()
    for grad, ref in zip((p.grad for p in model.parameters()), expected):
        torch.testing.assert_close(grad, ref)


def test_bf16_autocast_keeps_dtypes_consistent():
    model = tiny("vit5_base_patch16_224", img_size=32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 3, 32, 32))
    assert torch.isfinite(out).all()


def test_timm_init_statistics():
    model = create_model("vit_base_patch16_224", depth=2)
    weight = model.blocks[0].mlp.fc1.weight
    assert abs(weight.std().item() - 0.0188) < 0.002  # trunc-normal(0.02) clipped at +-2 has std 0.0176..0.02
    assert weight.abs().max().item() <= 2.0
    assert torch.all(model.blocks[0].mlp.fc1.bias == 0)
    assert model.cls_token.std().item() < 1e-5
    assert torch.all(create_model("vit_base_patch16_224", depth=1, head_zero_init=True).head.weight == 0)


@pytest.mark.parametrize("overrides,message", [
    (dict(img_size=30, patch_size=8), "not divisible by the patch size 8"),
    (dict(rope=True, embed_dim=36, num_heads=6), "divisible by 4"),
    (dict(global_pool="token", class_token=False), "needs a class token"),
    (dict(reg_tokens=3, rope=True, reg_rope_theta=100.0), "square"),
    (dict(norm="batchnorm"), "norm='batchnorm' is not one of"),
])
def test_invalid_configs_raise_clear_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        ViTConfig(**overrides)


def test_wrong_input_channels_at_forward():
    model = tiny("vit_base_patch16_224", img_size=32)
    with pytest.raises(ValueError, match="expects 3 input channels but got 4"):
        model(torch.randn(1, 4, 32, 32))
    with pytest.raises(ValueError, match="not divisible"):
        tiny("vit_base_r50_s16_224", img_size=32)(torch.randn(1, 3, 40, 40))


def test_config_round_trips_through_a_dict():
    cfg = ViTConfig(img_size=(32, 48), reg_tokens=4, rope=True, reg_rope_theta=100.0, backbone_layers=(2, 2))
    assert ViTConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown ViTConfig field"):
        ViTConfig.from_dict({"embeddim": 3})
