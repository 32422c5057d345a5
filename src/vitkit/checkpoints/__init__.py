"""Checkpoints: vitkit's own format, and loading timm, Hugging Face and official ViT-5 weights exactly."""
from .io import CheckpointError
from .load import LoadReport, from_pretrained, load_checkpoint
from .own import save_pretrained

__all__ = ["CheckpointError", "LoadReport", "from_pretrained", "load_checkpoint", "save_pretrained"]
