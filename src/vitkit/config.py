"""Command-line `key=value` overrides, typed the way YAML reads them (`lr=1e-3`, `qkv_bias=false`, `img_size=[32,32]`)."""
from __future__ import annotations

from typing import Any, Sequence

import yaml


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


def _number_or_text(value: str) -> Any:
    """YAML 1.1 reads '1e-3' as text; users mean a number."""
    try:
        return float(value)
    except ValueError:
        return value
