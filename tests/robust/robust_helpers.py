"""A tiny float64 ViT behind its normalisation, and images it mostly classifies one way: what the robust tests share."""
import torch

from vitkit import ViTConfig, VisionTransformer
from vitkit.preprocess import CIFAR10_MEAN, CIFAR10_STD, Preprocess
from vitkit.robust import PixelModel


def tiny_pixel_model(dtype=torch.float64, preprocess=Preprocess(CIFAR10_MEAN, CIFAR10_STD), **overrides) -> PixelModel:
    """Two blocks on 16 x 16 RGB in 4 x 4 patches, CIFAR normalisation inside the call, eval mode."""
    torch.manual_seed(0)
    config = dict(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2, num_classes=5, class_token=False,
                  global_pool="avg")
    config.update(overrides)
    model = VisionTransformer(ViTConfig(**config)).to(dtype).eval()
    model.preprocess = preprocess
    return PixelModel(model).eval()


def smooth_images(count: int, size: int = 16, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """Bicubic-smoothed random colour fields in [0, 1] with a sharp square: natural enough to have edges."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, 4, 4, generator=generator, dtype=torch.float64)
    images = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    quarter = size // 4
    images[:, :, quarter:2 * quarter + 1, quarter:3 * quarter] = torch.rand(count, 3, 1, 1, generator=generator,
                                                                            dtype=torch.float64)
    return ((images.clamp(0, 1) * 255).round() / 255).to(dtype)
