"""Dense prediction: the feature pyramid's shapes and strides, and the segmentation heads, on a plain ViT and a Swin."""
import pytest
import torch
import torch.nn.functional as F

from vitkit.models import SwinTransformer, VisionTransformer
from vitkit.models.dense import FeaturePyramid, SegmentationModel, backbone_features


def tiny_vit(img_size, patch_size):
    return VisionTransformer(img_size=img_size, patch_size=patch_size, embed_dim=32, depth=2, num_heads=2,
                             num_classes=0)


def tiny_swin():
    return SwinTransformer(img_size=64, patch_size=4, window_size=2, embed_dim=16, depths=(1, 1, 1, 1),
                           num_heads=(1, 2, 2, 4), num_classes=0)


@pytest.mark.parametrize("img_size, patch_size, strides", [(224, 16, [4, 8, 16, 32]), (32, 4, [1, 2, 4, 8])])
def test_vit_pyramid_levels_and_strides(img_size, patch_size, strides):
    backbone = tiny_vit(img_size, patch_size)
    pyramid = FeaturePyramid(backbone, dim=24)
    assert pyramid.strides == strides
    images = torch.randn(2, 3, img_size, img_size)
    levels = pyramid(backbone_features(backbone, images, pyramid.indices))
    assert [tuple(m.shape) for m in levels] == [(2, 24, img_size // s, img_size // s) for s in strides]


def test_swin_pyramid_takes_the_four_stages():
    backbone = tiny_swin()
    pyramid = FeaturePyramid(backbone, dim=24)
    assert pyramid.indices == [0, 1, 2, 3] and pyramid.strides == [4, 8, 16, 32]
    levels = pyramid(backbone_features(backbone, torch.randn(1, 3, 64, 64), pyramid.indices))
    assert [tuple(m.shape) for m in levels] == [(1, 24, 64 // s, 64 // s) for s in [4, 8, 16, 32]]


def test_vit_pyramid_resamples_as_vitdet():
    """4x is two stride-2 transposed convolutions with norm + GELU between, 2x one, 1x none, 1/2x a max-pool."""
    pyramid = FeaturePyramid(tiny_vit(32, 4), dim=12)
    kinds = [[type(m).__name__ for m in level] for level in pyramid.levels]
    project = ["Conv2d", "LayerNorm2d", "Conv2d", "LayerNorm2d"]
    assert kinds == [["ConvTranspose2d", "LayerNorm2d", "GELU", "ConvTranspose2d"] + project,
                     ["ConvTranspose2d"] + project, project, ["MaxPool2d"] + project]
    assert [level[0].in_channels for level in pyramid.levels[:2]] == [32, 32]
    assert pyramid.levels[0][3].out_channels == 32 // 4 and pyramid.levels[1][0].out_channels == 16


def build(backbone_name, head_name, classes=5):
    backbone = tiny_vit(32, 4) if backbone_name == "vit" else tiny_swin()
    return SegmentationModel.on_backbone(backbone, classes, head=head_name, pyramid_dim=16, decoder_dim=8)


@pytest.mark.parametrize("backbone_name", ["vit", "swin"])
@pytest.mark.parametrize("head_name", ["linear", "fpn"])
def test_logits_cover_the_image_and_gradients_reach_the_backbone(backbone_name, head_name):
    model = build(backbone_name, head_name)
    size = 32 if backbone_name == "vit" else 64
    images = torch.randn(2, 3, size, size)
    logits = model(images)
    assert logits.shape == (2, 5, size, size)
    logits.square().mean().backward()
    grad = model.backbone.patch_embed.proj.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_linear_head_on_a_vit_is_a_linear_map_of_the_patch_tokens():
    """Segmenter's baseline by hand: normalised patch tokens @ W + b, laid out on the grid, bilinearly upsampled."""
    model = build("vit", "linear").eval()
    images = torch.randn(2, 3, 32, 32)
    tokens = model.backbone.patch_tokens(model.backbone.forward_features(images))  # [B, 64, D], row-major grid
    weight, bias = model.head.proj.weight[:, :, 0, 0], model.head.proj.bias
    per_patch = tokens @ weight.T + bias  # [B, 64, K]
    grid = per_patch.reshape(2, 8, 8, 5).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(model(images), expected, atol=1e-6, rtol=0)
