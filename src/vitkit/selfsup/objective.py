"""What both objectives share: a plain ViT encoder, saved as any vitkit model, and `decoder`, every part the
objective trains beside it (MAE's decoder; masked patch prediction's [mask] embedding and prediction head)."""
from __future__ import annotations

from typing import Any

from torch import nn

from ..models.param_groups import param_groups
from ..models.vision_transformer import VisionTransformer


class Objective(nn.Module):
    """Subclasses build their decoder when none is given, so `with_encoder` can share one between encoders."""

    name = "pre-training"

    def __init__(self, encoder: nn.Module, decoder: nn.Module, cfg: Any) -> None:
        super().__init__()
        self.encoder = check_plain_patches(encoder, self.name)
        self.decoder = decoder
        self.cfg = cfg

    def with_encoder(self, encoder: nn.Module) -> "Objective":
        """The same objective (this decoder, not a copy) around another encoder, e.g. the EMA copy to score it."""
        return self if encoder is self.encoder else type(self)(encoder, self.cfg, self.decoder)

    @property
    def blocks(self) -> list[nn.Module]:
        """The transformer blocks FSDP shards one by one."""
        return [*self.encoder.blocks, *getattr(self.decoder, "blocks", [])]

    def no_weight_decay(self) -> set[str]:
        return {f"encoder.{name}" for name in self.encoder.no_weight_decay()} | {"decoder.mask_token"}

    def layer_id(self, param_name: str) -> int:
        """The encoder's layers as the encoder counts them; the decoder sits on top (layer decay leaves it be)."""
        if param_name.startswith("encoder."):
            return self.encoder.layer_id(param_name.removeprefix("encoder."))
        return len(self.encoder.blocks) + 1

    def param_groups(self, weight_decay: float = 0.05, layer_decay: float | None = None) -> list[dict[str, Any]]:
        return param_groups(self, self.layer_id, len(self.encoder.blocks) + 1, weight_decay, layer_decay)


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
