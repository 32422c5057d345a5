"""The Swin Transformer: preset sizes (timm's counts), input sizes, stage outputs, adaptation, and its family."""
import pytest
import torch

from vitkit import create_model
from vitkit.models import ModelConfig, SwinConfig, SwinTransformer, get_preset
from vitkit.models.profile import count_params

TINY = SwinConfig(img_size=32, patch_size=2, window_size=4, embed_dim=16, depths=(2, 2), num_heads=(2, 4),
                  num_classes=5)


@pytest.mark.parametrize("name,expected", [
    ("swin_tiny_patch4_window7_224", 28_288_354),
    ("swin_small_patch4_window7_224", 49_606_258),
    ("swin_base_patch4_window7_224", 87_768_224),
])
def test_parameter_count_to_the_parameter(name, expected):
    with torch.device("meta"):
        model = create_model(name)
    assert isinstance(model, SwinTransformer) and count_params(model) == expected
    assert model.preset_name == name and model.preprocess.crop_pct == 0.9
    assert model.preprocess.mean == (0.485, 0.456, 0.406) and model.preprocess.std == (0.229, 0.224, 0.225)
    assert get_preset(name).family == "swin"


def test_timm_names_and_shapes():
    names = dict((k, tuple(v.shape)) for k, v in SwinTransformer(TINY).state_dict().items())
    assert names["patch_embed.proj.weight"] == (16, 3, 2, 2) and names["patch_embed.norm.weight"] == (16,)
    assert names["layers.0.blocks.1.attn.relative_position_bias_table"] == (49, 2)
    assert names["layers.1.downsample.reduction.weight"] == (32, 64)
    assert "layers.0.downsample.norm.weight" not in names
    assert names["norm.weight"] == (32,) and names["head.fc.weight"] == (5, 32)
    assert not any(k.endswith(("relative_position_index", "attn_mask")) for k in names)


def test_every_multiple_of_patch_window_and_merges_runs():
    model = SwinTransformer(TINY).eval()
    assert TINY.input_multiple == (16, 16)
    with torch.no_grad():
        for size in [(16, 16), (16, 48), (48, 32)]:
            features = model.forward_features(torch.randn(1, 3, *size))
            assert features.shape == (1, size[0] // 4, size[1] // 4, 32)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_other_sizes_are_refused_with_the_sizes_that_work():
    model = SwinTransformer(TINY)
    with pytest.raises(ValueError, match=r"Swin input 40x32 does not fit: every stage's map must tile into 4x4 "
                                         r"windows, so height and width must be multiples of 16 .*e\.g\. 32x32 or 48x32"):
        model(torch.randn(1, 3, 40, 32))
    with pytest.raises(ValueError, match="Swin img_size 100x100 does not fit.*multiples of 224"):
        SwinConfig(img_size=100)
    with pytest.raises(ValueError, match="expects 3 input channels but got 1"):
        model(torch.randn(1, 1, 32, 32))


def test_config_is_checked():
    with pytest.raises(ValueError, match="must name the same number of stages"):
        SwinConfig(depths=(2, 2), num_heads=(3,))
    with pytest.raises(ValueError, match="stage 1 is 192 wide.*5 heads"):
        SwinConfig(num_heads=(3, 5, 12, 24))
    with pytest.raises(ValueError, match="global_pool='token' is not one of"):
        SwinConfig(global_pool="token")
    with pytest.raises(ValueError, match="unknown SwinConfig field"):
        TINY.replace(depth=3)
    assert SwinConfig.from_dict(TINY.to_dict()) == TINY


def test_forward_intermediates_are_the_stage_maps():
    model = SwinTransformer(TINY).eval()
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        final, maps = model.forward_intermediates(x)
        _, normed = model.forward_intermediates(x, indices=[-1], norm=True, output_fmt="NHWC")
        features = model.forward_features(x)
    assert [tuple(m.shape) for m in maps] == [(1, 16, 16, 24), (1, 32, 8, 12)]
    torch.testing.assert_close(final, features)
    torch.testing.assert_close(normed[0], features)
    torch.testing.assert_close(model.norm(maps[1].permute(0, 2, 3, 1)), features)
    with pytest.raises(ValueError, match="output_fmt"):
        model.forward_intermediates(x, output_fmt="NLC")


def test_pooled_features_and_a_new_head():
    model = SwinTransformer(TINY).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = model.forward_features(x)
        torch.testing.assert_close(model.forward_head(features, pre_logits=True), features.mean(dim=(1, 2)))
        model.reset_classifier(3)
        assert model.cfg.num_classes == 3 and not model(x).any()  # zero-initialised


def test_a_new_window_resizes_every_bias_table():
    model = SwinTransformer(TINY)
    model.set_input_size(img_size=64, window_size=8)
    assert model.cfg.window_size == (8, 8) and model.cfg.img_size == (64, 64)
    tables = [p for n, p in model.named_parameters() if n.endswith("relative_position_bias_table")]
    assert len(tables) == 4 and all(t.shape[0] == 15 * 15 for t in tables)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)
    with pytest.raises(ValueError, match="multiples of 32"):
        model.set_input_size(img_size=48)


def test_optimizer_groups_exempt_the_bias_tables_and_decay_by_depth():
    model = SwinTransformer(TINY)
    assert model.layer_id("patch_embed.proj.weight") == 0
    assert model.layer_id("layers.0.blocks.1.mlp.fc1.weight") == 2
    assert model.layer_id("layers.1.downsample.reduction.weight") == 3
    assert model.layer_id("layers.1.blocks.1.attn.qkv.weight") == 4 and model.layer_id("head.fc.weight") == 5
    groups = model.param_groups(weight_decay=0.05, layer_decay=0.5)
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
    assert all(id(p) in no_decay for n, p in model.named_parameters() if "relative_position_bias_table" in n)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_grad_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = SwinTransformer(TINY.replace(drop_path_rate=0.0))
    x = torch.randn(1, 3, 16, 16)
    model(x).sum().backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_grad_checkpointing()
    model(x).sum().backward()
    for a, b in zip(plain, (p.grad for p in model.parameters())):
        torch.testing.assert_close(a, b)


def test_the_swin_family_builds_from_a_model_section():
    section = ModelConfig.from_config({"family": "swin", "name": "swin_tiny_patch4_window7_224", "img_size": 32,
                                       "patch_size": 2, "window_size": 4, "depths": [1, 1], "num_heads": [1, 2],
                                       "embed_dim": 8})
    assert section.fields["depths"] == (1, 1)
    model = section.build(num_classes=4)
    assert isinstance(model, SwinTransformer) and model.cfg.num_classes == 4 and model.cfg.depths == (1, 1)
    with pytest.raises(ValueError, match="model.name=vit_cifar_patch4_32 is a vit preset, not a swin one"):
        ModelConfig.from_config({"family": "swin", "name": "vit_cifar_patch4_32"}).build()
    with pytest.raises(ValueError, match="unknown config key 'model.depth'; did you mean"):
        ModelConfig.from_config({"family": "swin", "depth": 2})


def test_the_trainer_records_a_swins_section_and_leaves_patch_dropout_out():
    from vitkit.train.trainer import model_section, start_patch_drop_rate

    model = create_model("swin_tiny_patch4_window7_224", img_size=32, patch_size=2, window_size=4, embed_dim=8,
                         depths=(1, 1), num_heads=(1, 2))
    section = model_section(model, "vit_cifar_patch4_32")  # a recipe's ViT name does not describe a Swin
    assert section.family == "swin" and section.name == "swin_tiny_patch4_window7_224"
    assert section.fields["depths"] == (1, 1) and "drop_path_rate" not in section.fields
    assert isinstance(section.build(num_classes=5), SwinTransformer)
    assert start_patch_drop_rate(model) is None
    assert start_patch_drop_rate(create_model("vit_cifar_patch4_32", patch_drop_rate=0.5)) == 0.5
