"""Checkpoints: vitkit's own format, and loading timm, Hugging Face and official ViT-5 weights exactly."""
from .io import CheckpointError, ConflictError, MissingFieldsError
from .load import LoadReport, from_pretrained, load_checkpoint
from .own import save_pretrained
from .runs import resolve_checkpoint, run_dataset, run_folder
from .sources import saved_family

__all__ = ["CheckpointError", "ConflictError", "LoadReport", "MissingFieldsError", "from_pretrained", "load_checkpoint",
           "resolve_checkpoint", "run_dataset", "run_folder", "save_pretrained", "saved_family"]
