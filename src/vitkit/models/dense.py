"""Dense prediction on any backbone with forward_intermediates: ViTDet's simple feature pyramid (a plain ViT's one
map at four scales, or a Swin's four stage maps), the Segmenter linear and FPN-lite heads, and the model joining them.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from ..layers import LayerNorm2d

VIT_SCALES = (4.0, 2.0, 1.0, 0.5)


def backbone_maps(backbone: nn.Module) -> tuple[list[int], list[int], list[int]]:
    """(forward_intermediates indices, widths, strides in pixels) of the maps a dense head reads: every stage of a
    hierarchical backbone (its config names stage_dims), else a plain ViT's last block."""
    cfg = backbone.cfg
    if hasattr(cfg, "stage_dims"):
        strides = [cfg.patch_size * 2 ** i for i in range(cfg.num_stages)]
        return list(range(cfg.num_stages)), list(cfg.stage_dims), strides
    return [-1], [cfg.embed_dim], [cfg.feature_stride]


def backbone_features(backbone: nn.Module, images: torch.Tensor, indices: list[int]) -> list[torch.Tensor]:
    """The chosen maps [B, C, h, w], the last one through the backbone's final norm (what its head would see)."""
    return backbone.forward_intermediates(images, indices, norm=True, output_fmt="NCHW")[1]


def _project(in_dim: int, out_dim: int) -> list[nn.Module]:
    """ViTDet's output convolutions: 1x1 to the common width, then 3x3, each followed by a channel LayerNorm."""
    return [nn.Conv2d(in_dim, out_dim, 1, bias=False), LayerNorm2d(out_dim),
            nn.Conv2d(out_dim, out_dim, 3, padding=1, bias=False), LayerNorm2d(out_dim)]


def _rescale(dim: int, scale: float) -> tuple[list[nn.Module], int]:
    """ViTDet's resampling of a plain map by 4, 2, 1 or 1/2, and the width it leaves."""
    if scale == 4.0:
        return [nn.ConvTranspose2d(dim, dim // 2, 2, stride=2), LayerNorm2d(dim // 2), nn.GELU(),
                nn.ConvTranspose2d(dim // 2, dim // 4, 2, stride=2)], dim // 4
    if scale == 2.0:
        return [nn.ConvTranspose2d(dim, dim // 2, 2, stride=2)], dim // 2
    if scale == 1.0:
        return [], dim
    if scale == 0.5:
        return [nn.MaxPool2d(2, stride=2)], dim
    raise ValueError(f"scale {scale} is not one of ViTDet's {VIT_SCALES}")


class FeaturePyramid(nn.Module):
    """Maps of one common width at several strides, finest first (ViTDet's SimpleFeaturePyramid, Li et al. 2022):
    a plain ViT's last patch map resampled by `scales`, or a hierarchical backbone's stage maps projected as they are.

    `indices` are what to ask the backbone's forward_intermediates for; `strides` are each level's in pixels."""

    def __init__(self, backbone: nn.Module, dim: int = 256, scales: tuple[float, ...] = VIT_SCALES) -> None:
        super().__init__()
        self.indices, widths, strides = backbone_maps(backbone)
        self.dim = dim
        if len(widths) > 1:  # already a pyramid: only the projections
            self.levels = nn.ModuleList(nn.Sequential(*_project(w, dim)) for w in widths)
            self.strides = strides
            return
        levels, self.strides = [], []
        for scale in scales:
            layers, width = _rescale(widths[0], scale)
            levels.append(nn.Sequential(*layers, *_project(width, dim)))
            self.strides.append(int(strides[0] / scale))
        self.levels = nn.ModuleList(levels)

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """The backbone's maps (from `indices`) -> the pyramid's [B, dim, H / stride, W / stride] maps."""
        if len(maps) == 1:
            return [level(maps[0]) for level in self.levels]
        if len(maps) != len(self.levels):
            raise ValueError(f"the pyramid was built for {len(self.levels)} backbone maps, got {len(maps)}")
        return [level(m) for level, m in zip(self.levels, maps)]


class LinearHead(nn.Module):
    """Segmenter's linear baseline (Strudel et al. 2021): one linear map per patch token, i.e. a 1x1 convolution on
    one map; without a pyramid that map is the backbone's last (a plain ViT's patch map, a Swin's last stage)."""

    def __init__(self, in_dim: int, num_classes: int, level: int = -1) -> None:
        super().__init__()
        self.level = level
        self.proj = nn.Conv2d(in_dim, num_classes, 1)

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        return self.proj(maps[self.level])


def _conv3x3(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, bias=False), LayerNorm2d(dim), nn.GELU())


class FPNHead(nn.Module):
    """FPN-lite decoder: 1x1 laterals, top-down (upsample the coarser sum and add the lateral), a 3x3 conv per level,
    every level upsampled to the finest and summed, 1x1 to classes; maps arrive finest first."""

    def __init__(self, in_dims: list[int], num_classes: int, dim: int = 128) -> None:
        super().__init__()
        self.laterals = nn.ModuleList(nn.Conv2d(d, dim, 1) for d in in_dims)
        self.smooth = nn.ModuleList(_conv3x3(dim) for _ in in_dims)
        self.classify = nn.Conv2d(dim, num_classes, 1)

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        if len(maps) != len(self.laterals):
            raise ValueError(f"the FPN head was built for {len(self.laterals)} maps, got {len(maps)}")
        top_down = [self.laterals[-1](maps[-1])]
        for lateral, m in zip(reversed(self.laterals[:-1]), reversed(maps[:-1])):
            coarser = F.interpolate(top_down[-1], size=m.shape[-2:], mode="bilinear", align_corners=False)
            top_down.append(lateral(m) + coarser)
        outs = [smooth(p) for smooth, p in zip(self.smooth, reversed(top_down))]
        size = outs[0].shape[-2:]
        fused = sum(F.interpolate(o, size=size, mode="bilinear", align_corners=False) for o in outs)
        return self.classify(fused)


class SegmentationModel(nn.Module):
    """Backbone -> (optional) feature pyramid -> head -> logits upsampled bilinearly to the input [B, K, H, W]."""

    def __init__(self, backbone: nn.Module, pyramid: FeaturePyramid | None, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.pyramid, self.head = backbone, pyramid, head
        self.indices = pyramid.indices if pyramid is not None else backbone_maps(backbone)[0]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        maps = backbone_features(self.backbone, images, self.indices)
        if self.pyramid is not None:
            maps = self.pyramid(maps)
        logits = self.head(maps)
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
