"""The model families (the plain VisionTransformer, the Swin Transformer, segmentation models on either), their
configs and the preset registry."""
from . import presets  # noqa: F401  (registers the named models)
from .dense import SegmentationConfig, SegmentationModel
from .config import ViTConfig
from .family import ModelConfig, family_of, get_family, register_family
from .registry import Preset, create_model, get_preset, is_preset, list_models, register, register_alias
from .swin_config import SwinConfig
from .swin_transformer import SwinTransformer
from .vision_transformer import VisionTransformer

__all__ = ["ModelConfig", "Preset", "ViTConfig", "SwinConfig", "SegmentationConfig", "family_of", "get_family",
           "register_family", "VisionTransformer", "SwinTransformer", "SegmentationModel", "create_model", "get_preset",
           "is_preset", "list_models", "register", "register_alias"]
