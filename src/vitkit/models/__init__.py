"""The model families (the plain VisionTransformer, the Swin Transformer, the video VideoTransformer, segmentation
models on a ViT or Swin), their configs and the preset registry."""
from . import presets  # noqa: F401  (registers the named models)
from .dense import SegmentationConfig, SegmentationModel
from .config import ViTConfig
from .family import ModelConfig, family_of, get_family, register_family
from .registry import Preset, create_model, get_preset, is_preset, list_models, register, register_alias
from .swin_config import SwinConfig
from .swin_transformer import SwinTransformer
from .inflate import inflate, inflated_config  # noqa: I001  (after registry: the families are registered)
from .video_config import VideoConfig
from .video_transformer import VideoTransformer
from .vision_transformer import VisionTransformer

__all__ = ["ModelConfig", "Preset", "ViTConfig", "SwinConfig", "VideoConfig", "SegmentationConfig", "family_of",
           "get_family", "register_family", "VisionTransformer", "SwinTransformer", "VideoTransformer",
           "SegmentationModel", "create_model", "get_preset", "is_preset", "inflate", "inflated_config", "list_models",
           "register", "register_alias"]
