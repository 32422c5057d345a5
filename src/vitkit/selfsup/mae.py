"""MAE (He et al. 2022): the encoder sees a random quarter of the patches, a light decoder predicts the pixels of
the rest, and the loss is the mean squared error on the hidden patches only."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..layers import Block, make_norm, sincos_2d
from .config import MAEConfig
from .masking import masked_mean, masked_places, unshuffle
from .objective import Objective, check_plain_patches
from .patches import norm_pix, patchify, unpatchify


class MAEOutput(NamedTuple):
    pred: torch.Tensor  # [B, N, p*p*C] predicted pixels of every patch (only the hidden ones are trained)
    masked: torch.Tensor  # [B, N] True where the encoder did not see the patch


class MAEDecoder(nn.Module):
    """Encoder tokens -> pixels of every patch: visible tokens put back in place beside mask tokens, fixed 2D
    sin-cos positions, a few transformer blocks, a linear layer to p*p*C values. Prefix and suffix tokens (class,
    registers) join the sequence without a position, as MAE's class token does."""

    def __init__(self, in_dim: int, grid: tuple[int, int], patch_pixels: int, cfg: MAEConfig) -> None:
        super().__init__()
        dim = cfg.decoder_embed_dim
        self.grid = tuple(grid)
        self.decoder_embed = nn.Linear(in_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos_embed", sincos_2d(dim, self.grid)[None], persistent=False)
        self.blocks = nn.ModuleList([Block(dim, cfg.decoder_num_heads, int(dim * cfg.decoder_mlp_ratio))
                                     for _ in range(cfg.decoder_depth)])
        self.norm = make_norm("layernorm", dim, 1e-6)
        self.pred = nn.Linear(dim, patch_pixels)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """As the MAE code: Xavier-uniform linear layers with zero bias, the mask token drawn with std 0.02."""
        nn.init.normal_(self.mask_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, latent: torch.Tensor, kept: torch.Tensor, grid: tuple[int, int], num_prefix: int,
                num_suffix: int) -> torch.Tensor:
        """latent [B, prefix + K + suffix, D_enc], kept [B, K] grid places -> predicted patches [B, N, p*p*C]."""
        x = self.decoder_embed(latent)
        end = x.shape[1] - num_suffix
        extra = torch.cat([x[:, :num_prefix], x[:, end:]], dim=1)
        pos = self.pos_embed if tuple(grid) == self.grid else sincos_2d(x.shape[-1], grid)[None].to(x.device)
        patches = unshuffle(x[:, num_prefix:end], kept, self.mask_token[0, 0], grid[0] * grid[1]) + pos.to(x.dtype)
        x = torch.cat([extra, patches], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.pred(self.norm(x)[:, extra.shape[1]:])


class MaskedAutoencoder(Objective):
    """A plain ViT encoder (saved as any vitkit model) with MAE's decoder beside it."""

    name = "MAE"

    def __init__(self, encoder: nn.Module, cfg: MAEConfig | None = None, decoder: MAEDecoder | None = None) -> None:
        cfg = cfg or MAEConfig()
        if decoder is None:
            enc = check_plain_patches(encoder, self.name).cfg
            decoder = MAEDecoder(enc.embed_dim, enc.grid_size, enc.patch_size ** 2 * enc.in_chans, cfg)
        super().__init__(encoder, decoder, cfg)

    def forward(self, images: torch.Tensor) -> MAEOutput:
        """Masks cfg.mask_ratio of each image's patches at random (in training and evaluation alike), encodes the
        rest at their true grid positions (absolute, RoPE or ALiBi) and decodes every patch."""
        enc = self.encoder
        tokens, grid = enc.embed_patches(images)
        x, rope, bias, kept = enc.patch_drop.keep_random(*enc.add_positions(tokens, grid), self.cfg.mask_ratio)
        latent = enc.forward_blocks(x, rope, bias)
        pred = self.decoder(latent, kept, grid, enc.cfg.num_prefix_tokens, enc.cfg.num_suffix_tokens)
        return MAEOutput(pred, masked_places(kept, grid[0] * grid[1]))

    def loss(self, images: torch.Tensor, output: MAEOutput) -> torch.Tensor:
        return mae_loss(output.pred, patchify(images, self.encoder.cfg.patch_size), output.masked,
                        self.cfg.norm_pix_loss)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, output: MAEOutput) -> torch.Tensor:
        """Input-space images: hidden patches as predicted (with norm_pix_loss, given back each true patch's mean
        and variance, as MAE's pictures do), visible patches as they were."""
        size = self.encoder.cfg.patch_size
        target = patchify(images, size)
        pred = output.pred.float()
        if self.cfg.norm_pix_loss:
            pred = pred * (target.var(-1, keepdim=True) + 1e-6).sqrt() + target.mean(-1, keepdim=True)
        mixed = torch.where(output.masked[..., None], pred, target)
        return unpatchify(mixed, size, (images.shape[-2] // size, images.shape[-1] // size))


def mae_loss(pred: torch.Tensor, target: torch.Tensor, masked: torch.Tensor, norm_pix_loss: bool) -> torch.Tensor:
    """Mean over hidden patches of the per-patch mean squared error (targets standardised per patch if asked)."""
    target = norm_pix(target.float()) if norm_pix_loss else target.float()
    return masked_mean((pred.float() - target).pow(2).mean(dim=-1), masked)
