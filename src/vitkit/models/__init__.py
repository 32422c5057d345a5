"""The VisionTransformer, its config and the preset registry."""
from . import presets  # noqa: F401  (registers the named models)
from .config import ViTConfig
from .family import ModelConfig, get_family, register_family
from .registry import Preset, create_model, get_preset, is_preset, list_models, register, register_alias
from .vision_transformer import VisionTransformer

__all__ = ["ModelConfig", "Preset", "ViTConfig", "get_family", "register_family", "VisionTransformer", "create_model", "get_preset", "is_preset", "list_models",
           "register", "register_alias"]
