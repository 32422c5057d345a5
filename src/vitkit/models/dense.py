"""Dense prediction on any backbone with forward_intermediates: ViTDet's simple feature pyramid (a plain ViT's one
map at four scales, or a Swin's four stage maps), the Segmenter linear and FPN-lite heads, and the model joining them,
described by a SegmentationConfig (the model family "segment") so that it saves, loads and trains like any other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
import torch.nn.functional as F

from ..layers import LayerNorm2d
from ..preprocess import Preprocess
from .config import PlainConfig, as_pair, check_fields
from .family import ModelConfig, build_from_config, family_of, get_family, register_family
from .param_groups import param_groups
from .registry import get_preset

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


HEADS = ("linear", "fpn")
# what the segmentation model decides for its backbone: its input, and no classifier of its own
OWN_FIELDS = ("img_size", "in_chans", "num_classes")


@dataclass
class SegmentationConfig(PlainConfig):
    """A segmentation model as data: a backbone (a model section of any classifying family: {family, name, fields}),
    a head ('linear': Segmenter's 1x1 on the last map; 'fpn': the feature pyramid plus the FPN-lite decoder), the
    class count and the input. img_size and in_chans default to the backbone's; once built, `backbone` holds every
    field of its config (the preset name only as a record), so a saved model rebuilds without its recipe."""

    backbone: ModelConfig = field(default_factory=lambda: ModelConfig("vit", "vit_cifar_patch4_32"))
    head: str = "fpn"
    num_classes: int = 11
    img_size: int | tuple[int, int] | None = None
    in_chans: int | None = None
    pyramid_dim: int = 128
    decoder_dim: int = 128

    def __post_init__(self) -> None:
        if isinstance(self.backbone, dict):
            self.backbone = ModelConfig.from_config(self.backbone, "model.backbone.")
        if self.head not in HEADS:
            raise ValueError(f"model.head={self.head!r} is not one of {HEADS}")
        if self.num_classes < 1 or self.pyramid_dim < 4 or self.decoder_dim < 1:
            raise ValueError(f"num_classes={self.num_classes}, pyramid_dim={self.pyramid_dim} and decoder_dim="
                             f"{self.decoder_dim} must be positive (pyramid_dim at least 4: the 4x level divides it)")
        resolved = self._resolve_backbone()
        self.img_size = as_pair(self.img_size if self.img_size is not None else resolved.img_size, "img_size")
        self.in_chans = self.in_chans if self.in_chans is not None else resolved.in_chans
        fields = {k: v for k, v in resolved.to_dict().items() if k not in OWN_FIELDS}
        self.backbone = ModelConfig(self.backbone.family, self.backbone.name, fields)
        self.backbone_config()  # validates the size against the backbone (patch size, Swin's windows)

    def _resolve_backbone(self) -> Any:
        """The backbone's full config: its preset (if named) with the section's fields and this model's input (where
        given) on top."""
        family, name, fields = self.backbone.family, self.backbone.name, dict(self.backbone.fields)
        fields.update({k: getattr(self, k) for k in ("img_size", "in_chans") if getattr(self, k) is not None})
        if family == "segment":
            raise ValueError("model.backbone.family=segment: a segmentation model's backbone is a classifier family "
                             "(vit, swin)")
        config_class = get_family(family).config_class
        if name is None:
            return config_class.from_dict(fields)
        preset = get_preset(name)
        if preset.family != family:
            raise ValueError(f"model.backbone.name={name} is a {preset.family} preset, not a {family} one; set "
                             f"model.backbone.family={preset.family}")
        check_fields(config_class, fields)
        return preset.config.replace(**fields)

    def backbone_config(self) -> Any:
        """The backbone as built: no classifier, this model's input size and channels; dense prediction reads every
        patch, so patch dropout is refused."""
        config = get_family(self.backbone.family).config_class.from_dict(
            {**self.backbone.fields, "img_size": self.img_size, "in_chans": self.in_chans, "num_classes": 0})
        if getattr(config, "patch_drop_rate", 0.0):
            raise ValueError(f"model.backbone.patch_drop_rate={config.patch_drop_rate}: dense prediction needs every "
                             "patch token; set it to 0")
        return config

    @property
    def input_size(self) -> tuple[int, ...]:
        """The shape of one input: (C, H, W)."""
        return (self.in_chans, *self.img_size)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "backbone": self.backbone.to_config()}


def _classifier(head: nn.Module) -> nn.Conv2d:
    """The last 1x1 convolution of a head: the layer that names the classes."""
    return head.proj if isinstance(head, LinearHead) else head.classify


class SegmentationModel(nn.Module):
    """Backbone -> (fpn head: feature pyramid) -> head -> logits upsampled bilinearly to the input [B, K, H, W].

    Built from a SegmentationConfig; `backbone` passes an already built (e.g. pretrained) backbone, which must be the
    one the config describes (SegmentationModel.on_backbone writes that config)."""

    def __init__(self, cfg: SegmentationConfig | None = None, backbone: nn.Module | None = None,
                 **overrides: Any) -> None:
        super().__init__()
        cfg = cfg or SegmentationConfig()
        self.cfg = cfg = cfg.replace(**overrides) if overrides else cfg
        wanted = cfg.backbone_config()
        if backbone is None:
            backbone = build_from_config(wanted)
        elif backbone.cfg.to_dict() != wanted.to_dict():
            raise ValueError("the backbone given is not the one the segmentation config describes; build the model "
                             "with SegmentationModel.on_backbone(backbone, ...)")
        self.backbone = backbone
        if cfg.head == "linear":
            self.pyramid = None
            self.head = LinearHead(backbone_maps(backbone)[1][-1], cfg.num_classes)
        else:
            self.pyramid = FeaturePyramid(backbone, dim=cfg.pyramid_dim)
            self.head = FPNHead([cfg.pyramid_dim] * len(self.pyramid.strides), cfg.num_classes, cfg.decoder_dim)
        self.indices = self.pyramid.indices if self.pyramid is not None else backbone_maps(backbone)[0]
        self.preset_name: str | None = f"{cfg.backbone.name or cfg.backbone.family}-{cfg.head}"
        self.preprocess: Preprocess = backbone.preprocess
        self.class_names: list[str] | None = None

    @classmethod
    def on_backbone(cls, backbone: nn.Module, num_classes: int, head: str = "fpn",
                    **fields: Any) -> "SegmentationModel":
        """A segmentation model around a built (e.g. pretrained) classifier, whose head is removed; its preset name
        and preprocessing are kept."""
        if backbone.cfg.num_classes:
            backbone.reset_classifier(0)
        config = backbone.cfg.to_dict()
        section = ModelConfig(family_of(backbone.cfg).name, backbone.preset_name,
                              {k: v for k, v in config.items() if k not in OWN_FIELDS})
        cfg = SegmentationConfig(backbone=section, head=head, num_classes=num_classes, img_size=config["img_size"],
                                 in_chans=config["in_chans"], **fields)
        return cls(cfg, backbone=backbone)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        maps = backbone_features(self.backbone, images, self.indices)
        if self.pyramid is not None:
            maps = self.pyramid(maps)
        logits = self.head(maps)
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)

    # ----- training and adaptation, as the classifier families offer them ----------------------------------------
    def reset_classifier(self, num_classes: int) -> None:
        """A new zero-initialised class layer (another label set); the pyramid and decoder are kept."""
        old = _classifier(self.head)
        new = nn.Conv2d(old.in_channels, num_classes, 1).to(old.weight.device)
        nn.init.zeros_(new.weight)
        nn.init.zeros_(new.bias)
        if isinstance(self.head, LinearHead):
            self.head.proj = new
        else:
            self.head.classify = new
        self.cfg = self.cfg.replace(num_classes=num_classes)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.backbone.set_grad_checkpointing(enable)

    def no_weight_decay(self) -> set[str]:
        return {f"backbone.{name}" for name in self.backbone.no_weight_decay()}

    def _top_layer(self) -> int:
        return max(self.backbone.layer_id(name) for name, _ in self.backbone.named_parameters())

    def layer_id(self, param_name: str) -> int:
        """The backbone's depths for layer-wise lr decay; the pyramid and head are the top layer (full lr)."""
        if param_name.startswith("backbone."):
            return self.backbone.layer_id(param_name[len("backbone."):])
        return self._top_layer()

    def param_groups(self, weight_decay: float = 0.05, layer_decay: float | None = None) -> list[dict[str, Any]]:
        return param_groups(self, self.layer_id, self._top_layer(), weight_decay, layer_decay)


def build_segmentation(name: str | None, fields: dict[str, Any]) -> SegmentationModel:
    """The "segment" family's build for training configs: the backbone names its preset, the model has none."""
    if name is not None:
        raise ValueError(f"model.name={name}: segmentation models have no presets; name the backbone's preset in "
                         "model.backbone.name")
    return SegmentationModel(SegmentationConfig.from_dict(fields))


register_family("segment", SegmentationConfig, build_segmentation, SegmentationModel)
