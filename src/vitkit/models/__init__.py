"""The VisionTransformer, its config and the preset registry."""
from . import presets  # noqa: F401  (registers the named models)
from .config import ViTConfig
from .registry import Preset, create_model, get_preset, list_models, register
from .vision_transformer import VisionTransformer

__all__ = ["ViTConfig", "VisionTransformer", "Preprocess", "Preset", "create_model", "get_preset", "list_models",
           "register"]
