"""Seeing inside a ViT: the paper's Fig. 7 analyses, attention maps, rollout, Grad-CAM and EigenCAM, as numbers and
pictures; and a video model's spatial and temporal attention on clips."""
from .attention import (attention_rollout, class_attention, collect_attention, register_attention, register_share,
                        rollout_map)
from .distance import mean_attention_distance, patch_distances, uniform_attention_distance
from .eigencam import eigen_cam
from .filters import filter_components
from .gradcam import grad_cam
from .images import ImageSet, dataset_images, load_images, synthetic_images, to_model_input
from .pipeline import AnalysisResult, analyze
from .position import position_similarity, position_table
from .source import load_for_analysis, run_pictures
from .tokens import TokenLayout, token_layout
from .video import ClipAttention, ClipSet, analyze_clips, clip_attention, dataset_clips, folder_clips

__all__ = ["AnalysisResult", "ClipAttention", "ClipSet", "ImageSet", "TokenLayout", "analyze", "analyze_clips",
           "clip_attention", "dataset_clips", "folder_clips", "attention_rollout", "class_attention",
           "collect_attention", "dataset_images", "eigen_cam", "filter_components", "grad_cam", "load_for_analysis",
           "load_images",
           "mean_attention_distance", "patch_distances", "position_similarity", "position_table", "register_attention",
           "register_share", "rollout_map", "run_pictures", "synthetic_images", "to_model_input", "token_layout",
           "uniform_attention_distance"]
