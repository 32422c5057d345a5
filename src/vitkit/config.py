"""Configuration is data: nested dataclasses loaded from YAML and `key=value` overrides, checked key by key."""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml

T = TypeVar("T")


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """Turns ['optim.lr=1e-3', 'depth=6'] into {'optim': {'lr': 0.001}, 'depth': 6}."""
    result: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not of the form key=value (e.g. optim.lr=1e-3)")
        value = yaml.safe_load(raw) if raw else None
        if isinstance(value, str):
            value = _number_or_text(value)
        node = result
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r} conflicts with an earlier value for {part!r}")
        node[leaf] = value
    return result


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Deep-merges update into a copy of base (nested dicts merge, everything else replaces)."""
    out = dict(base)
    for key, value in update.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Reads a YAML mapping, with an error that names the file when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping of keys to values, got {type(data).__name__}")
    return data


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Builds dataclass cls from a dict: unknown keys and wrong types are errors that name the dotted key."""
    return cls(**coerce_fields(cls, data, where))


def coerce_fields(cls: type, data: dict[str, Any], where: str = "") -> dict[str, Any]:
    """Some of dataclass cls's fields, checked by name and coerced to their types (an override on top of defaults)."""
    if not isinstance(data, dict):
        raise ValueError(f"{where.rstrip('.') or 'config'} must be a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, fields, n=3)
        raise ValueError(f"unknown config key {where + key!r}" + (f"; did you mean {close}?" if close else
                                                                     f"; valid keys: {sorted(fields)}"))
    return {name: _coerce(hints[name], value, where + name) for name, value in data.items()}


def to_dict(obj: Any) -> Any:
    """Plain dicts/lists of a (nested) dataclass, ready for YAML or JSON (a section with to_config writes its own)."""
    if hasattr(obj, "to_config"):
        return obj.to_config()
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(option, value, key)
            except ValueError as error:
                errors.append(str(error))
        raise ValueError(errors[0] if len(errors) == 1 else f"{key}={value!r} does not match {hint}")
    if isinstance(hint, type) and hasattr(hint, "from_config"):  # a section with a layout of its own
        return hint.from_config(value if value is not None else {}, key + ".")
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value if value is not None else {}, key + ".")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{key} must be a list, got {value!r}")
        item = args[0] if args else Any
        items = [_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is bool and not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, got {value!r}")
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{key} must be an integer, got {value!r}")
    if hint is str and not isinstance(value, str):
        raise ValueError(f"{key} must be text, got {value!r}")
    if hint in (int, float, str, bool) and not isinstance(value, hint):
        raise ValueError(f"{key} must be {hint.__name__}, got {value!r}")
    return value


def _number_or_text(value: str) -> Any:
    """YAML 1.1 reads '1e-3' as text; users mean a number."""
    try:
        return float(value)
    except ValueError:
        return value
