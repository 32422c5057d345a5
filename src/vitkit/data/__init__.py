"""Datasets, augmentation recipes and input pipelines that keep the model fed."""
from .base import TensorImageDataset
from .build import build_loader
from .clips import ClipDataset
from .config import AugmentConfig
from .datasets import build_dataset
from .decode import BadImageError
from .folder import ImageFolderDataset
from .loader import FolderLoader, TensorLoader

__all__ = ["AugmentConfig", "BadImageError", "ClipDataset", "FolderLoader", "ImageFolderDataset", "TensorImageDataset",
           "TensorLoader", "build_dataset", "build_loader"]
