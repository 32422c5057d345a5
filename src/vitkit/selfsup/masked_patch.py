"""The ViT paper's masked patch prediction (section 4.6, appendix B.1.2): BERT's masked language modelling on patch
embeddings, predicting each corrupted patch's 3-bit mean colour (or its 4 x 4 downsized colours, or its pixels)."""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .config import MaskedPatchConfig
from .masking import Corruption, corrupt_patches, masked_mean
from .objective import Objective, check_plain_patches
from .patches import input_pixels, mean_color_classes, patchify


class MaskedPatchOutput(NamedTuple):
    pred: torch.Tensor  # [B, N, outputs]: colour logits (cells^2 x classes) or pixels (p*p*C) of every patch
    corruption: Corruption


class MaskedPatchHead(nn.Module):
    """What masked patch prediction trains beside the encoder: the learnable [mask] embedding that replaces a
    corrupted patch's, and the linear layer that predicts from each patch's final representation."""

    def __init__(self, embed_dim: int, outputs: int) -> None:
        super().__init__()
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.proj = nn.Linear(embed_dim, outputs)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias)


class MaskedPatchPredictor(Objective):
    """A plain ViT encoder (saved as any vitkit model) with the [mask] embedding and prediction head beside it."""

    name = "masked patch prediction"

    def __init__(self, encoder: nn.Module, cfg: MaskedPatchConfig | None = None,
                 decoder: MaskedPatchHead | None = None) -> None:
        cfg = cfg or MaskedPatchConfig()
        enc = check_plain_patches(encoder, self.name).cfg
        if cfg.target == "mean_color_4x4" and (enc.patch_size < 8 or enc.patch_size % 4):
            raise ValueError(f"masked_patch.target=mean_color_4x4 predicts a 4x4 downsized patch, which needs "
                             f"patches of 8 px or more that divide by 4; this model's are {enc.patch_size} px: use "
                             "target=mean_color")
        num_classes = 2 ** (cfg.color_bits * enc.in_chans)
        outputs = enc.patch_size ** 2 * enc.in_chans if cfg.target == "pixels" else cfg.cells ** 2 * num_classes
        super().__init__(encoder, decoder or MaskedPatchHead(enc.embed_dim, outputs), cfg)
        self.num_classes = num_classes

    def forward(self, images: torch.Tensor) -> MaskedPatchOutput:
        """Corrupts the patch embeddings (before positions are added, so each keeps its place), encodes every token
        and predicts from each patch token."""
        enc = self.encoder
        tokens, grid = enc.embed_patches(images)
        tokens, corruption = corrupt_patches(tokens, self.decoder.mask_token, self.cfg.corrupt_rate, self.cfg.split)
        latent = enc.forward_blocks(*enc.add_positions(tokens, grid))
        return MaskedPatchOutput(self.decoder.proj(enc.patch_tokens(latent)), corruption)

    def targets(self, images: torch.Tensor) -> torch.Tensor:
        """Colour classes [B, N, cells^2] from the true pixels (the model's preprocessing undone), or the input's
        patches [B, N, p*p*C] for the L2 variant."""
        size = self.encoder.cfg.patch_size
        if self.cfg.target == "pixels":
            return patchify(images, size)
        pixels = input_pixels(images.float(), self.encoder.preprocess)
        return mean_color_classes(pixels, size, self.cfg.cells, self.cfg.color_bits)

    def loss(self, images: torch.Tensor, output: MaskedPatchOutput) -> torch.Tensor:
        """Cross-entropy over the colour classes (averaged over a patch's cells), or the squared error over the
        pixels, averaged over the corrupted patches only."""
        target, pred = self.targets(images), output.pred.float()
        if self.cfg.target == "pixels":
            per_patch = (pred - target.float()).pow(2).mean(dim=-1)
        else:
            batch, length, cells = target.shape
            per_cell = F.cross_entropy(pred.reshape(-1, self.num_classes), target.reshape(-1), reduction="none")
            per_patch = per_cell.reshape(batch, length, cells).mean(dim=-1)
        return masked_mean(per_patch, output.corruption.corrupted)

    def predicted_classes(self, output: MaskedPatchOutput) -> torch.Tensor:
        """The most likely colour class of every patch cell [B, N, cells^2]."""
        batch, length, _ = output.pred.shape
        return output.pred.reshape(batch, length, -1, self.num_classes).argmax(-1)
