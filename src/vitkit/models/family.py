"""Model families and a training config's model section: a family tag, an optional preset, and that family's config
fields on top, validated and coerced like every other section. A new family registers itself here; the trainer
only calls ModelConfig.build."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from ..config import coerce_fields, to_dict

DEFAULT_FAMILY = "vit"


@dataclass(frozen=True)
class Family:
    """A kind of model: its config dataclass, how to build one from a preset name (or None) and fields, and the
    model class a config of it builds (presets and checkpoints need it; a family without presets may leave it out)."""

    name: str
    config_class: type
    build: Callable[[str | None, dict[str, Any]], nn.Module]
    model_class: type[nn.Module] | None = None


_FAMILIES: dict[str, Family] = {}


def register_family(name: str, config_class: type, build: Callable[[str | None, dict[str, Any]], nn.Module],
                    model_class: type[nn.Module] | None = None) -> None:
    """Adds a model family; names are unique."""
    if name in _FAMILIES:
        raise ValueError(f"model family {name!r} is already registered")
    _FAMILIES[name] = Family(name, config_class, build, model_class)


def get_family(name: str) -> Family:
    """The family called name, or an error listing the known ones."""
    if name not in _FAMILIES:
        raise ValueError(f"unknown model family {name!r}; known: {sorted(_FAMILIES)}")
    return _FAMILIES[name]


def family_of(config: Any) -> Family:
    """The family whose config class a config (or a model's cfg) is: how a preset or a saved model names its family."""
    for family in _FAMILIES.values():
        if type(config) is family.config_class:
            return family
    raise ValueError(f"{type(config).__name__} is the config of no registered model family")


def build_from_config(config: Any) -> nn.Module:
    """The model a config describes, as its family's model class."""
    family = family_of(config)
    if family.model_class is None:
        raise ValueError(f"model family {family.name!r} registered no model class to build from a config")
    return family.model_class(config)


@dataclass
class ModelConfig:
    """A training config's model section. In YAML it is flat: `{family: vit, name: <preset>, <field>: <value>}`."""

    family: str = DEFAULT_FAMILY
    name: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, data: dict[str, Any], where: str = "model.") -> "ModelConfig":
        """Reads the flat section; each field is checked against the family's config class and coerced to its type."""
        if not isinstance(data, dict):
            raise ValueError(f"{where.rstrip('.')} must be a mapping of model fields, got {data!r}")
        family = data.get("family", DEFAULT_FAMILY)
        if not isinstance(family, str):
            raise ValueError(f"{where}family must be text, got {family!r}")
        name = data.get("name")
        if name is not None and not isinstance(name, str):
            raise ValueError(f"{where}name must be a preset name (text), got {name!r}")
        rest = {k: v for k, v in data.items() if k not in ("family", "name")}
        return cls(family, name, coerce_fields(get_family(family).config_class, rest, where))

    def to_config(self) -> dict[str, Any]:
        """The flat section, as YAML and config.yaml hold it."""
        head = {"family": self.family, **({"name": self.name} if self.name else {})}
        return {**head, **to_dict(self.fields)}

    def build(self, **fields: Any) -> nn.Module:
        """The model: the preset (if named) with this section's fields, then these (e.g. the data's class count)."""
        return get_family(self.family).build(self.name, {**self.fields, **fields})
