"""The model section is one typed thing per family: a family registers its config class and builder, and the
trainer builds whatever the section names without knowing the family."""
from dataclasses import dataclass

import pytest
import yaml

from vitkit.models import ModelConfig, create_model, register_family
from vitkit.train import resolve_config, train


@dataclass
class StripeConfig:
    """A made-up family: a ViT described by one width."""

    width: int = 16
    num_classes: int = 10
    in_chans: int = 1


def build_stripe(name, fields):
    cfg = StripeConfig(**fields)
    return create_model("vit_cifar_patch4_32", img_size=8, patch_size=2, embed_dim=cfg.width, depth=1, num_heads=2,
                        num_classes=cfg.num_classes, in_chans=cfg.in_chans)


register_family("stripe_test", StripeConfig, build_stripe)


def test_fields_are_checked_and_coerced_against_the_familys_config():
    section = ModelConfig.from_config({"name": "vit_cifar_patch4_32", "img_size": [16, 24], "mlp_ratio": 2})
    assert section.family == "vit" and section.fields == {"img_size": (16, 24), "mlp_ratio": 2.0}
    assert section.to_config() == {"family": "vit", "name": "vit_cifar_patch4_32", "img_size": [16, 24],
                                   "mlp_ratio": 2.0}
    with pytest.raises(ValueError, match=r"unknown config key 'model.widht'; did you mean \['width'\]"):
        ModelConfig.from_config({"family": "stripe_test", "widht": 8})
    with pytest.raises(ValueError, match="model.depth must be an integer"):
        resolve_config(None, ["model.depth=two"])
    with pytest.raises(ValueError, match=r"unknown model family 'swin_nope'"):
        resolve_config(None, ["model.family=swin_nope"])


def test_a_registered_family_trains_without_the_trainer_knowing_it(tmp_path):
    result = train({"name": "stripe", "output_dir": str(tmp_path), "model": {"family": "stripe_test", "width": 24},
                    "schedule": {"epochs": 1, "warmup_epochs": 0}, "logging": {"progress": False},
                    "data": {"num_workers": 0}, "precision": "fp32"})
    assert result.model.cfg.embed_dim == 24 and result.model.cfg.num_classes == 10
    saved = yaml.safe_load((tmp_path / "stripe" / "config.yaml").read_text())["model"]
    assert saved == {"family": "stripe_test", "width": 24}
