"""Tiny models and configs shared by the analysis tests."""
import torch

from vitkit import ViTConfig, VisionTransformer


def tiny_config(**overrides) -> ViTConfig:
    """A 4x4-patch, 2-block model: big enough to have structure, small enough to run in milliseconds."""
    base = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=3)
    base.update(overrides)
    return ViTConfig(**base)


def tiny_model(**overrides) -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(tiny_config(**overrides)).eval()
