"""What both objectives ask of the encoder they pre-train."""
from __future__ import annotations

from torch import nn

from ..models.vision_transformer import VisionTransformer


def check_plain_patches(encoder: nn.Module, objective: str) -> VisionTransformer:
    """The encoder, if it is a plain ViT whose tokens each see only their own patch; else an error that says why."""
    if not isinstance(encoder, VisionTransformer):
        raise ValueError(f"{objective} pre-trains a plain Vision Transformer (model.family=vit), got "
                         f"{type(encoder).__name__}: hiding a patch needs every token to be one patch")
    if encoder.backbone is not None:
        raise ValueError(f"{objective} needs a plain patch embedding, but this model has a "
                         f"{'ResNet' if encoder.cfg.backbone else 'convolutional'} stem whose overlapping receptive "
                         "fields leak masked pixels into the visible tokens; set model.conv_stem=[] and "
                         "model.backbone=null with a patch size such as 4 on 32x32 images (docs/selfsup.md)")
    return encoder
