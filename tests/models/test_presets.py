"""Preset sizes against the issue's reference counts (timm's implementation) and the paper's Table 1."""
import pytest
import torch

from vitkit import create_model, list_models
from vitkit.models.profile import count_params


def meta_params(name, **overrides):
    with torch.device("meta"):
        return count_params(create_model(name, **overrides))


@pytest.mark.parametrize("name,expected", [
    ("vit_tiny_patch16_224", 5_717_416),
    ("vit_small_patch16_224", 22_050_664),
    ("vit_base_patch16_224", 86_567_656),
    ("vit_base_patch32_224", 88_224_232),
    ("vit_large_patch16_224", 304_326_632),
    ("deit_base_distilled_patch16_224", 87_338_192),
    ("vit5_small_patch16_224", 22_039_144),
    ("vit5_base_patch16_224", 86_543_080),
    ("vit5_large_patch16_224", 304_258_024),
])
def test_parameter_count_to_the_parameter(name, expected):
    assert meta_params(name) == expected


@pytest.mark.parametrize("name,expected", [("vit_huge_patch14_224", 630_764_800), ("vit_base_r50_s16_224", 97_890_112)])
def test_headless_reference_counts(name, expected):
    # These two reference figures are the bodies alone: they differ from the 1000-class model by exactly one head.
    assert meta_params(name, num_classes=0) == expected
    dim = 1280 if "huge" in name else 768
    assert meta_params(name) == expected + dim * 1000 + 1000


@pytest.mark.parametrize("name,millions", [("vit_base_patch16_224", 86), ("vit_large_patch16_224", 307),
                                           ("vit_huge_patch14_224", 632)])
def test_papers_table_1(name, millions):
    assert meta_params(name) / 1e6 == pytest.approx(millions, rel=0.015)


def test_every_preset_builds_on_meta_and_is_listed():
    names = list_models()
    assert {"vit_huge_patch14_224", "vit_large_patch16_384", "deit_small_distilled_patch16_224",
            "vit5_large_patch16_224", "vit5gated_small_patch16_224", "vit_cifar_seed_patch8_32",
            "vit_base_r50_s16_224"} <= set(names)
    for name in names:
        assert meta_params(name) > 0
    assert list_models("vit5_*") == ["vit5_base_patch16_224", "vit5_large_patch16_224", "vit5_small_patch16_224"]


@pytest.mark.parametrize("size", ["small", "base"])
def test_old_vit5seed_names_build_the_gated_preset_and_are_not_listed(size):
    with torch.device("meta"):
        old = create_model(f"vit5seed_{size}_patch16_224", num_classes=10)
        new = create_model(f"vit5gated_{size}_patch16_224", num_classes=10)
    assert old.cfg == new.cfg and old.preprocess == new.preprocess
    assert old.preset_name == new.preset_name == f"vit5gated_{size}_patch16_224"
    assert list_models("vit5seed_*") == []
    assert list_models("vit5gated_*") == ["vit5gated_base_patch16_224", "vit5gated_small_patch16_224"]


def test_an_alias_cannot_shadow_or_dangle():
    from vitkit.models.registry import register_alias

    with pytest.raises(ValueError, match="'vit5seed_small_patch16_224' is already registered"):
        register_alias("vit5seed_small_patch16_224", "vit5gated_base_patch16_224")
    with pytest.raises(ValueError, match="'vit_base_patch16_224' is already registered"):
        register_alias("vit_base_patch16_224", "vit5gated_base_patch16_224")
    with pytest.raises(ValueError, match="points to 'vit_nope', which is not a registered preset"):
        register_alias("vit_old_name", "vit_nope")


def test_cifar_seed_model_is_the_tutorials_architecture():
    with torch.device("meta"):
        cfg = create_model("vit_cifar_seed_patch8_32").cfg
    assert (cfg.img_size, cfg.patch_size, cfg.depth, cfg.embed_dim, cfg.num_heads, cfg.mlp_hidden_dim, cfg.num_classes) == \
        ((32, 32), 8, 4, 256, 4, 1024, 10)
    assert cfg.norm == "layernorm" and cfg.mlp == "gelu" and not cfg.no_embed_class


def test_timm_style_overrides():
    model = create_model("vit_tiny_patch16_224", img_size=32, patch_size=4, num_classes=10)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert model.cfg.num_patches == 64


def test_unknown_preset_lists_closest_names():
    with pytest.raises(ValueError, match="unknown model 'vit_bse_patch16_224'; closest: vit_base_patch16_224"):
        create_model("vit_bse_patch16_224")


def test_unknown_override_suggests_field():
    with pytest.raises(ValueError, match=r"num_head.*did you mean \['num_heads'"):
        create_model("vit_tiny_patch16_224", num_head=4)
