"""from_pretrained: convert a checkpoint, build the model it describes (a VisionTransformer or a SwinTransformer, as
the converter names its family), load every tensor strictly, then replace the head or change the input size when
asked."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..models import SwinConfig, ViTConfig, VisionTransformer, get_family, get_preset, is_preset, list_models
from ..preprocess import Preprocess
from ..models.config import check_fields
from .io import CheckpointError, ConflictError, MissingFieldsError
from .mapping import Converted
from .sources import convert_source

log = logging.getLogger("vitkit.checkpoints")

# Fields the tensors decide: a preset or an override that disagrees on one of them describes another architecture.
STRUCTURAL = ("embed_dim", "depth", "depths", "patch_size", "mlp_ratio", "num_heads", "class_token",
              "num_class_tokens", "dist_token", "reg_tokens", "reg_position", "qkv_bias", "proj_bias", "mlp_bias",
              "qk_norm", "norm", "mlp", "mlp_norm", "fc_norm", "representation_size", "init_values", "pos_embed",
              "no_embed_class", "rope")
# Fields that adapt a loaded model (new head, resampled positions, folded patch embedding) rather than describe it.
ADAPTABLE = ("num_classes", "img_size", "in_chans", "window_size")
MISSING_HINTS = {
    "num_heads": "the file does not record the number of attention heads (e.g. 3 for ViT-Ti, 6 for ViT-S, "
                 "12 for ViT-B, 16 for ViT-L)",
    "rope": "Eva files do not record whether RoPE was used, as its tables are not saved (EVA-02 models use it)",
    "img_size": "the file has no learned position table to read the input size from",
}
LISTED_KEYS = 20


@dataclass
class LoadReport:
    """What a load did: the source format, how keys were mapped, what was skipped and what was adapted."""

    source: str
    format: str
    config: ViTConfig | SwinConfig
    notes: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    preprocess_origin: str = ""

    @property
    def skipped(self) -> bool:
        return bool(self.missing or self.unexpected or self.mismatched)

    def skipped_text(self) -> str:
        """The keys a strict=False load left out, one group per line."""
        return key_problems(self.missing, self.unexpected, self.mismatched)

    def describe(self) -> str:
        """A readable account for `vitkit convert`: format, mapped keys, architecture, skips, adaptations."""
        lines = [f"source: {self.source} (format: {self.format})", "mapped:"]
        lines += [f"  {note}" for note in self.notes]
        default = type(self.config)().to_dict()
        changed = {k: v for k, v in self.config.to_dict().items() if v != default[k]}
        lines.append("architecture: " + ", ".join(f"{k}={v!r}" for k, v in changed.items()))
        if self.skipped:
            lines.append("skipped (strict=False):\n" + self.skipped_text())
        lines += self.adapted
        return "\n".join(lines)


def from_pretrained(source: str | os.PathLike, model: str | ViTConfig | SwinConfig | None = None,
                    strict: bool = True, use_ema: bool = False, **overrides: Any) -> nn.Module:
    """Any supported checkpoint as a vitkit model in one call; a new head or input size is logged."""
    vit, report = load_checkpoint(source, model=model, strict=strict, use_ema=use_ema, **overrides)
    for line in report.adapted:
        log.warning(line)
    if report.skipped:
        log.warning("strict=False: %s left out:\n%s", report.source, report.skipped_text())
    return vit


def load_checkpoint(source: str | os.PathLike, model: str | ViTConfig | SwinConfig | None = None,
                    strict: bool = True, use_ema: bool = False, **overrides: Any) -> tuple[nn.Module, LoadReport]:
    """from_pretrained, also returning the LoadReport (mapped keys, skipped keys, adaptations)."""
    converted = convert_source(source, use_ema=use_ema)
    family = get_family(converted.family)
    check_fields(family.config_class, overrides)
    base, preset_name = _base(model, converted)
    if base is None and "num_heads" in converted.required and "num_heads" not in overrides:
        base, preset_name = _preset_with_same_shapes(converted)
    net = family.model_class(build_config(converted, base, preset_name, overrides, str(source), strict))
    missing, unexpected, mismatched = load_weights(net, converted.state_dict, strict)
    origin = _attach_metadata(net, converted, preset_name)
    if missing:
        converted.notes.append("strict=False: the model's tensors missing from the checkpoint keep their fresh "
                               "initialisation")
    adapted = adapt(net, converted, overrides)
    if net.cfg.in_chans != converted.fields["in_chans"]:
        origin += "; folded into the patch projection by the channel change, so the model takes [0, 1] pixels"
    return net, LoadReport(str(source), converted.format, net.cfg, converted.notes, missing, unexpected,
                           mismatched, adapted, origin)


def _base(model: str | ViTConfig | SwinConfig | None,
          converted: Converted) -> tuple[ViTConfig | SwinConfig | None, str | None]:
    """The config that fills what the file does not record: a preset (by name), a config of the checkpoint's
    family, or none."""
    config_class = get_family(converted.family).config_class
    if isinstance(model, config_class):
        return model, None
    name = model if model is not None else converted.base_preset
    if name is None:
        return None, None
    if not isinstance(name, str):
        raise ValueError(f"model= takes a preset name or a {config_class.__name__} (the checkpoint holds a "
                         f"{converted.family} model), got {type(name).__name__}")
    if get_preset(name).family != converted.family:
        raise ConflictError({"family": (converted.family, get_preset(name).family)},
                            f"the checkpoint holds a {converted.family} model, but preset {name!r} is a "
                            f"{get_preset(name).family} one; pass a {converted.family} preset or leave model= out",
                            name)
    return get_preset(name).config, name


def _preset_with_same_shapes(converted: Converted) -> tuple[ViTConfig | None, str | None]:
    """The preset whose architecture the tensors describe, when the file does not record the head count (timm).

    Presets that differ only in what the tensors cannot show (input size, dropout) count as one; presets that
    disagree on num_heads leave the choice to the user."""
    matches = [name for name in list_models() if get_preset(name).family == converted.family
               and not _conflicts(converted.fields, get_preset(name).config.to_dict())]
    heads = {get_preset(name).config.num_heads for name in matches}
    if len(heads) != 1:
        return None, None
    name = matches[0]
    converted.notes.append(f"num_heads={heads.pop()} from the preset with the same tensor shapes "
                           f"({', '.join(matches) if len(matches) <= 3 else name + f' and {len(matches) - 1} more'})")
    return get_preset(name).config, name


def build_config(converted: Converted, base: ViTConfig | SwinConfig | None, base_name: str | None,
                 overrides: dict[str, Any], source: str, strict: bool = True) -> ViTConfig | SwinConfig:
    """defaults < preset < facts from the file < overrides; adaptable fields the file (or its convention) sets
    wait until after loading."""
    base_values = base.to_dict() if base is not None else {}
    if base is not None:
        _check_conflicts(converted.fields, base_values, f"preset {base_name!r}" if base_name else "the model= config",
                         base_name or "the model= config")
    if strict:  # strict=False may build another architecture on purpose and load the tensors that fit
        _check_conflicts(converted.fields, overrides, "the fields passed")
    needed = list(converted.required) + (["img_size"] if "img_size" not in converted.fields else [])
    missing = [name for name in needed if name not in converted.fields and name not in converted.defaults
               and name not in base_values and name not in overrides]
    if missing:
        raise MissingFieldsError({name: MISSING_HINTS.get(name, "not recorded in the file") for name in missing},
                                 _missing_message(missing, source))
    values = {**converted.defaults, **base_values, **converted.fields}
    if base_values.get("init_values") and converted.fields.get("init_values"):
        values["init_values"] = base_values["init_values"]
    fixed = converted.fields.keys() | converted.defaults.keys()
    values.update({k: v for k, v in overrides.items() if k not in ADAPTABLE or k not in fixed})
    return get_family(converted.family).config_class.from_dict(values)


def _check_conflicts(facts: dict[str, Any], base: dict[str, Any], label: str, preset: str | None = None) -> None:
    differences = [f"{name}: checkpoint {facts[name]!r}, {label} {base[name]!r}" for name in _conflicts(facts, base)]
    if differences:
        raise ConflictError({name: (facts[name], base[name]) for name in _conflicts(facts, base)},
                            f"the checkpoint does not match {label} ({'; '.join(differences)}). Pass the preset "
                            "the checkpoint was trained as, or leave model= out and pass only the fields the file "
                            "does not record (e.g. num_heads=)", preset)


def _conflicts(facts: dict[str, Any], other: dict[str, Any]) -> list[str]:
    """The structural fields on which a config contradicts what the checkpoint's tensors say."""
    return [name for name in STRUCTURAL if name in facts and name in other and not _same(name, facts, other)]


def _same(name: str, facts: dict[str, Any], base: dict[str, Any]) -> bool:
    """Equality as the weights see it: LayerScale present or not, and the MLP's hidden width."""
    a, b = facts[name], base[name]
    if name == "init_values":
        return (a is None) == (b is None)
    if name == "mlp_ratio":
        return int(facts["embed_dim"] * a) == int(facts["embed_dim"] * b)
    if name == "reg_position":
        return a == b or not facts.get("reg_tokens")
    if name == "num_class_tokens":
        return a == b or not facts.get("class_token")
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):  # Swin's depths: tuples, or lists from JSON
        return list(a) == list(b)
    return a == b


def _missing_message(missing: list[str], source: str) -> str:
    wanted = " and ".join(f"{name}=..." for name in missing)
    reasons = "; ".join(f"{name}: {MISSING_HINTS.get(name, 'not recorded in the file')}" for name in missing)
    return (f"cannot tell the architecture of {source} from the file alone; vitkit does not guess. Pass {wanted}, "
            f"or model='<preset>' naming a vitkit preset of the same architecture. Why: {reasons}")


def load_weights(model: VisionTransformer, state_dict: dict[str, torch.Tensor],
                 strict: bool) -> tuple[list[str], list[str], list[tuple[str, tuple[int, ...], tuple[int, ...]]]]:
    """Compares the full key set and every shape; strict raises on any difference, else loads what fits."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = sorted((k, tuple(state_dict[k].shape), tuple(expected[k].shape))
                        for k in set(state_dict) & set(expected) if state_dict[k].shape != expected[k].shape)
    if strict and (missing or unexpected or mismatched):
        raise CheckpointError("the checkpoint does not fit the model built for it:\n"
                              + key_problems(missing, unexpected, mismatched)
                              + "\nFix the architecture (model='<preset>' or field overrides) to match the checkpoint, "
                                "or pass strict=False to load the tensors that fit and skip these")
    usable = {k: v for k, v in state_dict.items() if k in expected and v.shape == expected[k].shape}
    model.load_state_dict(usable, strict=False)
    return missing, unexpected, mismatched


def key_problems(missing: list[str], unexpected: list[str],
                 mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]]) -> str:
    """Offending keys, grouped and listed by name (long lists are cut after LISTED_KEYS)."""
    groups = [("missing from the checkpoint", missing), ("in the checkpoint but not in the model", unexpected),
              ("shape differs", [f"{k}: checkpoint {list(a)}, model {list(b)}" for k, a, b in mismatched])]
    lines = []
    for title, keys in groups:
        if keys:
            more = f", ... and {len(keys) - LISTED_KEYS} more" if len(keys) > LISTED_KEYS else ""
            lines.append(f"  {title} ({len(keys)}): {', '.join(keys[:LISTED_KEYS])}{more}")
    return "\n".join(lines)


def _attach_metadata(vit: nn.Module, converted: Converted, preset_name: str | None) -> str:
    """Preset name, preprocessing and class names: the file's own first, then the preset's, then the family's
    convention; returns where the preprocessing came from."""
    name = converted.preset or preset_name
    vit.preset_name = get_preset(name).name if name and is_preset(name) else name  # an old preset name: the new one
    vit.class_names = list(converted.class_names) if converted.class_names is not None else None
    if converted.preprocess is not None:
        vit.preprocess = converted.preprocess
        return converted.preprocess_origin or "recorded in the checkpoint"
    if preset_name is not None:
        vit.preprocess = get_preset(preset_name).preprocess
        return f"the default of preset {preset_name}"
    vit.preprocess = Preprocess()
    converted.notes.append("preprocessing is not recorded in the file: vitkit's defaults are set "
                           "(ImageNet mean/std, bicubic, crop 0.875); assign model.preprocess if it was "
                           "trained otherwise")
    return "not recorded: ImageNet mean/std, timm's default"


def adapt(vit: nn.Module, converted: Converted, overrides: dict[str, Any]) -> list[str]:
    """A new zero-initialised head and/or a new input size (Swin: and window), each described in one line."""
    done = []
    classes = overrides.get("num_classes")
    if "num_classes" in converted.fields and classes is not None and classes != vit.cfg.num_classes:
        old = vit.cfg.num_classes
        vit.reset_classifier(classes)
        vit.class_names = None
        done.append(f"head replaced: the checkpoint has {old} classes; the new {classes}-class head is "
                    "zero-initialised (fine-tune it before use)" if classes else
                    f"head removed: the checkpoint's {old}-class head is dropped (num_classes=0)")
    chans = overrides.get("in_chans")
    if chans is not None and chans != vit.cfg.in_chans:
        done.append(_adapt_channels(vit, chans))
    if converted.family == "swin":
        change = _resize_swin(vit, overrides.get("img_size"), overrides.get("window_size"))
        return done + ([change] if change else [])
    size = overrides.get("img_size")
    if "img_size" in converted.fields and size is not None:
        size = (size, size) if isinstance(size, int) else tuple(size)
        if size != vit.cfg.img_size:
            done.append(_resize(vit, size))
    return done


# pixel_old = MIXING[(old, new)] @ pixel_new: gray replicated to RGB, or RGB to gray as PIL's "L" mode (ITU-R 601-2)
CHANNEL_MIXING = {(3, 1): ((1.0,), (1.0,), (1.0,)), (1, 3): ((0.299, 0.587, 0.114),)}


def _adapt_channels(vit: nn.Module, in_chans: int) -> str:
    """Folds the channel mapping and the checkpoint's normalisation into the patch projection, so that raw [0, 1]
    pixels of the new channel count give what the checkpoint gave on the mapped, normalised image."""
    old = vit.cfg.in_chans
    if not isinstance(vit, VisionTransformer):
        raise CheckpointError(f"in_chans={in_chans}: vitkit adapts the input channels of plain ViT checkpoints only; "
                              f"pass in_chans={old} and give this {type(vit).__name__} {old}-channel images")
    if (old, in_chans) not in CHANNEL_MIXING:
        raise CheckpointError(f"in_chans={in_chans}: the checkpoint takes {old} channels, and vitkit adapts between "
                              "1 (gray) and 3 (RGB) channels only; convert the images instead")
    if vit.backbone is not None:
        raise CheckpointError(f"in_chans={in_chans}: this checkpoint starts with a ResNet or convolutional stem, "
                              "whose padded first convolution cannot take the normalisation in exactly; pass "
                              f"in_chans={old} and give it {old}-channel images")
    proj, pre = vit.patch_embed.proj, vit.preprocess.for_channels(old)
    mean = torch.tensor(pre.mean, dtype=torch.float64)
    std = torch.tensor(pre.std, dtype=torch.float64)
    mixing = torch.tensor(CHANNEL_MIXING[(old, in_chans)], dtype=torch.float64)  # [old, new]
    weight = proj.weight.detach().double() / std.view(1, -1, 1, 1)  # W_c / s_c
    bias = proj.bias.detach().double() if proj.bias is not None else torch.zeros(proj.out_channels, dtype=torch.float64)
    bias = bias - (weight * mean.view(1, -1, 1, 1)).sum((1, 2, 3))  # - sum_c m_c / s_c * sum(W_c)
    vit.set_patch_projection(torch.einsum("dchw,cn->dnhw", weight, mixing).float(), bias.float())
    vit.preprocess = Preprocess(mean=(0.0,) * in_chans, std=(1.0,) * in_chans, interpolation=pre.interpolation,
                                crop_pct=pre.crop_pct)
    what = "gray replicated to RGB" if old == 3 else "RGB converted to gray (0.299 R + 0.587 G + 0.114 B)"
    return (f"input channels adapted from {old} to {in_chans}: the patch projection now equals the checkpoint's on "
            f"{what} normalised with its mean {_rounded(pre.mean)} / std {_rounded(pre.std)} (folded in; the model "
            "takes [0, 1] pixels, mean 0 / std 1)")


def _rounded(values: tuple[float, ...]) -> list[float]:
    return [round(v, 4) for v in values]


def _resize(vit: VisionTransformer, size: tuple[int, int]) -> str:
    old_size, old_grid = vit.cfg.img_size, vit.cfg.grid_size
    vit.set_input_size(size)
    new_grid = vit.cfg.grid_size
    changes = []
    if vit.pos_embed is not None:
        changes.append(f"position embedding resampled from a {old_grid[0]}x{old_grid[1]} to a "
                       f"{new_grid[0]}x{new_grid[1]} grid (bicubic, antialias={vit.cfg.pos_embed_antialias}, "
                       "prefix tokens kept apart)")
    if vit.cfg.rope:
        changes.append(f"RoPE tables rebuilt for the {new_grid[0]}x{new_grid[1]} grid")
    what = "; ".join(changes) or "no position tables to adapt"
    return f"input size changed from {old_size[0]}x{old_size[1]} to {size[0]}x{size[1]}: {what}"


def _resize_swin(model: nn.Module, size: int | tuple[int, int] | None,
                 window: int | tuple[int, int] | None) -> str | None:
    """A new native input size and/or window for a Swin model, described in one line (None: nothing changed)."""
    old_size, old_window = model.cfg.img_size, model.cfg.window_size
    model.set_input_size(size, window)
    new_size, new_window = model.cfg.img_size, model.cfg.window_size
    changes = []
    if new_size != old_size:
        changes.append(f"input size changed from {old_size[0]}x{old_size[1]} to {new_size[0]}x{new_size[1]}")
    if new_window != old_window:
        changes.append(f"window changed from {old_window[0]}x{old_window[1]} to {new_window[0]}x{new_window[1]}: "
                       f"every relative-position bias table resampled from {2 * old_window[0] - 1}x"
                       f"{2 * old_window[1] - 1} to {2 * new_window[0] - 1}x{2 * new_window[1] - 1} offsets "
                       "(bicubic)")
    return "; ".join(changes) or None
