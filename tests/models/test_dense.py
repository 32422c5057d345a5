"""Dense prediction: the feature pyramid's shapes and strides on a plain ViT and a Swin."""
import pytest
import torch

from vitkit.models import SwinTransformer, VisionTransformer
from vitkit.models.dense import FeaturePyramid, backbone_features


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
