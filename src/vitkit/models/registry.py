"""The preset registry: a name maps to a model family's config plus its preprocessing defaults, nothing more."""
from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..preprocess import Preprocess
from .config import ViTConfig
from .family import build_from_config, family_of, register_family
from .swin_config import SwinConfig
from .swin_transformer import SwinTransformer
from .video_config import VideoConfig
from .video_transformer import VideoTransformer
from .vision_transformer import VisionTransformer


@dataclass(frozen=True)
class Preset:
    name: str
    config: ViTConfig | SwinConfig
    preprocess: Preprocess = field(default_factory=Preprocess)
    description: str = ""

    @property
    def family(self) -> str:
        return family_of(self.config).name


_PRESETS: dict[str, Preset] = {}
_ALIASES: dict[str, str] = {}  # a renamed preset's old name -> its name now


def register(name: str, config: ViTConfig | SwinConfig, preprocess: Preprocess | None = None,
             description: str = "") -> None:
    """Adds a preset; names are unique."""
    _check_free(name)
    _PRESETS[name] = Preset(name, config, preprocess or Preprocess(), description)


def register_alias(alias: str, name: str) -> None:
    """Lets a renamed preset's old name still build it; list_models lists only the new name, so none appears twice."""
    _check_free(alias)
    if name not in _PRESETS:
        raise ValueError(f"alias {alias!r} points to {name!r}, which is not a registered preset")
    _ALIASES[alias] = name


def _check_free(name: str) -> None:
    if name in _PRESETS or name in _ALIASES:
        raise ValueError(f"preset {name!r} is already registered")


def list_models(pattern: str = "*") -> list[str]:
    """Preset names matching a shell-style pattern, e.g. list_models('vit5_*')."""
    return sorted(n for n in _PRESETS if fnmatch.fnmatch(n, pattern))


def is_preset(name: str) -> bool:
    """True for a preset's name or old name: what create_model builds, as opposed to a path."""
    return name in _PRESETS or name in _ALIASES


def get_preset(name: str) -> Preset:
    """The preset called name (or by its old name), or a ValueError listing the closest names."""
    name = _ALIASES.get(name, name)
    if name not in _PRESETS:
        close = difflib.get_close_matches(name, _PRESETS, n=5, cutoff=0.5)
        hint = f"closest: {', '.join(close)}" if close else "run `vitkit models` to see them all"
        raise ValueError(f"unknown model {name!r}; {hint}")
    return _PRESETS[name]


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Builds a preset as its family's model class, with any config field overridden (timm's keyword names:
    img_size, num_classes, ...)."""
    preset = get_preset(name)
    model = build_from_config(preset.config.replace(**overrides))
    model.preset_name = preset.name  # an old name is recorded as the new one
    model.preprocess = preset.preprocess
    return model


def _preset_builder(family: str, example: str):
    """A family's build for training configs: its preset named by model.name, with the section's fields on top."""
    def build(name: str | None, fields: dict[str, Any]) -> nn.Module:
        if name is None:
            raise ValueError(f"model.name is required (a preset, e.g. {example}; see `vitkit models`)")
        if get_preset(name).family != family:
            raise ValueError(f"model.name={name} is a {get_preset(name).family} preset, not a {family} one; set "
                             f"model.family={get_preset(name).family} or name a {family} preset")
        return create_model(name, **fields)
    return build


register_family("vit", ViTConfig, _preset_builder("vit", "vit_cifar_patch4_32"), VisionTransformer)
register_family("swin", SwinConfig, _preset_builder("swin", "swin_tiny_patch4_window7_224"), SwinTransformer)


def _build_video(name: str | None, fields: dict[str, Any]) -> nn.Module:
    """The video family has no presets: its model section lists the fields (docs/video.md has recipes)."""
    if name is not None:
        raise ValueError(f"model.name={name}: the video family has no presets; describe the model with its fields "
                         "(embed_dim, depth, num_heads, attention, num_frames, ...) and leave model.name out")
    return VideoTransformer(VideoConfig(**fields))


register_family("video", VideoConfig, _build_video, VideoTransformer)
