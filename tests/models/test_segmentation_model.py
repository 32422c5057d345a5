"""SegmentationModel as a model family ("segment"): built from its config, saved and loaded exactly, its optimizer
groups, and the config's errors."""
import pytest
import torch

from vitkit.checkpoints import from_pretrained, save_pretrained
from vitkit.models import ModelConfig, SegmentationConfig, SegmentationModel, SwinTransformer, VisionTransformer

VIT = {"family": "vit", "name": "vit_cifar_patch4_32", "embed_dim": 32, "depth": 2, "num_heads": 2}
SWIN = {"family": "swin", "name": "swin_tiny_patch4_window7_224", "patch_size": 2, "window_size": 4, "embed_dim": 16,
        "depths": [1, 2], "num_heads": [1, 2]}


def tiny(backbone, head="fpn", **fields):
    torch.manual_seed(0)
    return SegmentationModel(SegmentationConfig(backbone=backbone, head=head, img_size=32, num_classes=4,
                                                pyramid_dim=8, decoder_dim=8, **fields))


@pytest.mark.parametrize("backbone", [VIT, SWIN], ids=["vit", "swin"])
@pytest.mark.parametrize("head", ["linear", "fpn"])
def test_save_and_load_rebuild_the_model_exactly(tmp_path, backbone, head):
    model = tiny(backbone, head).eval()
    model.class_names = ["a", "b", "c", "d"]
    save_pretrained(model, tmp_path / "seg")
    loaded = from_pretrained(tmp_path / "seg").eval()
    assert isinstance(loaded, SegmentationModel) and loaded.cfg == model.cfg
    assert loaded.class_names == model.class_names and loaded.preset_name == model.preset_name
    images = torch.randn(2, 3, 32, 32)
    assert torch.equal(loaded(images), model(images))


def test_the_config_records_the_whole_backbone():
    cfg = tiny(VIT).cfg
    assert cfg.img_size == (32, 32) and cfg.in_chans == 3
    fields = cfg.to_dict()["backbone"]
    assert fields["family"] == "vit" and fields["name"] == "vit_cifar_patch4_32"
    assert fields["embed_dim"] == 32 and fields["patch_size"] == 4 and "img_size" not in fields  # the preset's too
    backbone = cfg.backbone_config()
    assert backbone.num_classes == 0 and backbone.img_size == (32, 32)
    assert SegmentationConfig.from_dict(cfg.to_dict()) == cfg


def test_on_backbone_keeps_the_weights_and_drops_the_head():
    vit = VisionTransformer(img_size=32, patch_size=4, embed_dim=32, depth=2, num_heads=2, num_classes=10)
    weights = {k: v.clone() for k, v in vit.state_dict().items() if not k.startswith("head")}
    model = SegmentationModel.on_backbone(vit, 5, head="linear")
    assert model.backbone is vit and vit.cfg.num_classes == 0 and model.cfg.num_classes == 5
    assert all(torch.equal(model.backbone.state_dict()[k], v) for k, v in weights.items())
    assert isinstance(SegmentationModel(model.cfg).backbone, VisionTransformer)  # the config alone rebuilds it


def test_reset_classifier_replaces_only_the_class_layer():
    model = tiny(SWIN).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.reset_classifier(7)
    assert model.cfg.num_classes == 7 and model.head.classify.out_channels == 7
    assert not model.head.classify.weight.any()
    changed = {k for k, v in model.state_dict().items() if k not in before or not torch.equal(before[k], v)}
    assert changed == {"head.classify.weight", "head.classify.bias"}


def test_layer_decay_scales_the_backbone_and_leaves_the_decoder_at_full_rate():
    model = tiny(VIT)
    groups = model.param_groups(weight_decay=0.05, layer_decay=0.5)
    scale = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    # ViT layers: 0 embedding, 1..2 blocks, 3 final norm; the pyramid and head sit at the top (3)
    assert scale[id(model.backbone.patch_embed.proj.weight)] == 0.5 ** 3
    assert scale[id(model.backbone.blocks[1].mlp.fc1.weight)] == 0.5 ** 1
    assert scale[id(model.head.classify.weight)] == scale[id(model.pyramid.levels[0][0].weight)] == 1.0
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    assert id(model.backbone.pos_embed) in no_decay and id(model.head.classify.bias) in no_decay


def test_a_swin_backbone_feeds_its_stages():
    model = tiny(SWIN)
    assert isinstance(model.backbone, SwinTransformer) and model.pyramid.strides == [2, 4]
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 4, 32, 32)


@pytest.mark.parametrize("change, message", [
    (dict(head="unet"), "model.head='unet' is not one of"),
    (dict(backbone={**VIT, "patch_drop_rate": 0.5}), "dense prediction needs every patch token"),
    (dict(backbone={"family": "segment"}), "a classifier family"),
    (dict(backbone={**SWIN, "name": "vit_cifar_patch4_32"}), "is a vit preset, not a swin one"),
    (dict(backbone={**VIT, "embed_dims": 3}), "embed_dims"),
    (dict(backbone=SWIN, img_size=24), "does not fit"),
])
def test_bad_configs_name_the_problem(change, message):
    fields = dict(backbone=VIT, img_size=32, num_classes=4)
    fields.update(change)
    with pytest.raises(ValueError, match=message):
        SegmentationConfig(**fields)


def test_a_training_config_section_builds_it():
    section = ModelConfig.from_config({"family": "segment", "head": "linear", "img_size": 32, "backbone": VIT})
    model = section.build(num_classes=3, in_chans=3)
    assert isinstance(model, SegmentationModel) and model.cfg.num_classes == 3
    with pytest.raises(ValueError, match="segmentation models have no presets"):
        ModelConfig.from_config({"family": "segment", "name": "vit_cifar_patch4_32"}).build(num_classes=3)


def test_grad_checkpointing_reaches_a_vit_backbone(monkeypatch):
    import vitkit.models.vision_transformer as vit_module

    model = tiny(VIT).train()
    images = torch.randn(2, 3, 32, 32)
    model(images).square().mean().backward()
    expected = model.backbone.patch_embed.proj.weight.grad.clone()
    model.zero_grad()
    calls = []
    monkeypatch.setattr(vit_module, "checkpoint", lambda fn, *args, **kw: calls.append(fn) or fn(*args))
    model.set_grad_checkpointing(True)
    model(images).square().mean().backward()
    assert len(calls) == 2  # both blocks, through forward_intermediates
    torch.testing.assert_close(model.backbone.patch_embed.proj.weight.grad, expected)
