"""Building blocks of the Vision Transformers (plain and Swin), each small and single-purpose."""
from .attention import Attention
from .block import Block
from .conv_stem import ConvStem
from .drop_path import DropPath, drop_path_rates
from .gate import SigmoidGate
from .layer_scale import LayerScale
from .mlp import GluMlp, Mlp, make_mlp
from .norm import LayerNorm2d, RMSNorm, TokenGroupNorm, make_norm
from .patch_dropout import PatchDropout
from .patch_embed import PatchEmbed, check_image
from .patch_merging import PatchMerging
from .pooling import TokenPool
from .prompt import PromptTokens
from .pos_embed import alibi_2d_bias, resample_pos_embed, sincos_2d
from .rope import apply_rope, rope_angles, rope_frequencies, rope_tables
from .swin_block import SwinBlock
from .window import (relative_position_index, resize_relative_position_table, shifted_window_mask, window_partition,
                     window_reverse, window_shift)
from .window_attention import WindowAttention

__all__ = [
    "Attention", "Block", "ConvStem", "DropPath", "drop_path_rates", "SigmoidGate", "LayerScale", "GluMlp", "Mlp",
    "make_mlp", "LayerNorm2d", "RMSNorm", "TokenGroupNorm", "make_norm", "PatchDropout", "PatchEmbed", "check_image", "PromptTokens",
    "TokenPool", "alibi_2d_bias", "resample_pos_embed", "sincos_2d", "apply_rope", "rope_angles", "rope_frequencies",
    "rope_tables", "PatchMerging", "SwinBlock", "WindowAttention", "relative_position_index",
    "resize_relative_position_table", "shifted_window_mask", "window_partition", "window_reverse", "window_shift",
]
