"""Building blocks of the Vision Transformers (plain, Swin and video), each small and single-purpose."""
from .attention import Attention
from .block import Block
from .conv_stem import ConvStem
from .divided_block import DividedBlock
from .drop_path import DropPath, drop_path_rates
from .gate import SigmoidGate
from .layer_scale import LayerScale
from .linear_attention import EluFeatureMap, FavorFeatureMap, kernel_probabilities, linear_attention
from .mlp import GluMlp, Mlp, make_mlp
from .norm import LayerNorm2d, RMSNorm, TokenGroupNorm, make_norm
from .patch_dropout import PatchDropout
from .patch_embed import PatchEmbed, check_image, resize_patch_kernel
from .patch_merging import PatchMerging
from .pooling import TokenPool
from .prompt import PromptTokens
from .pos_embed import alibi_2d_bias, resample_pos_embed, sincos_2d
from .rope import apply_rope, rope_angles, rope_frequencies, rope_tables
from .space_time import from_frames, from_tubes, to_frames, to_tubes
from .swin_block import SwinBlock
from .token_merging import TokenMerger, bipartite_soft_matching, merge_weighted
from .tubelet_embed import TubeletEmbed, check_clip
from .window import (pad_to_windows, relative_position_index, resize_relative_position_table, shifted_window_mask,
                     window_partition, window_reverse, window_shift)
from .window_attention import WindowAttention, windowed_attention

__all__ = [
    "Attention", "Block", "ConvStem", "DropPath", "drop_path_rates", "SigmoidGate", "LayerScale", "GluMlp", "Mlp",
    "make_mlp", "LayerNorm2d", "RMSNorm", "TokenGroupNorm", "make_norm", "PatchDropout", "PatchEmbed", "check_image", "PromptTokens",
    "TokenPool", "alibi_2d_bias", "resample_pos_embed", "sincos_2d", "apply_rope", "rope_angles", "rope_frequencies",
    "rope_tables", "PatchMerging", "SwinBlock", "WindowAttention", "relative_position_index",
    "resize_relative_position_table", "shifted_window_mask", "window_partition", "window_reverse", "window_shift",
    "DividedBlock", "TubeletEmbed", "check_clip", "resize_patch_kernel", "from_frames", "from_tubes", "to_frames",
    "to_tubes", "EluFeatureMap", "FavorFeatureMap", "kernel_probabilities", "linear_attention", "TokenMerger",
    "bipartite_soft_matching", "merge_weighted", "pad_to_windows", "windowed_attention",
]
