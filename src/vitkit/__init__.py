"""vitkit: Vision Transformers from the 2020 paper to ViT-5, in one readable library."""
from .preprocess import Preprocess
from .models import SwinConfig, SwinTransformer, ViTConfig, VisionTransformer, create_model, get_preset, list_models
from .checkpoints import from_pretrained, save_pretrained

__version__ = "0.1.0"
__all__ = ["ViTConfig", "VisionTransformer", "SwinConfig", "SwinTransformer", "Preprocess", "create_model",
           "get_preset", "list_models", "from_pretrained", "save_pretrained"]
