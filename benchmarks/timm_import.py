"""Imports timm where torchvision cannot be installed (a CPU-only torch build such as this machine's).

timm imports torchvision when it is imported, for its data transforms and a frozen-BatchNorm helper; its
VisionTransformer never calls it. When torchvision is missing, placeholder modules stand in for it so the benchmarks
can time timm's real model code. For benchmark processes only: nothing else in such a process may use torchvision.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types


class _PlaceholderClass(type):
    """Any attribute of a placeholder class is a string naming it (timm builds dicts keyed by enum members)."""

    def __getattr__(cls, name: str) -> str:
        if name.startswith("__"):
            raise AttributeError(name)
        return f"{cls.__name__}.{name}"


class _PlaceholderModule(types.ModuleType):
    def __getattr__(self, name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        placeholder = _PlaceholderClass(name, (), {})
        setattr(self, name, placeholder)
        return placeholder


class _PlaceholderFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        if fullname.split(".")[0] == "torchvision":
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _PlaceholderModule(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__path__ = []


def import_timm() -> tuple[types.ModuleType | None, str]:
    """timm (or None) and a note for the results saying how it was imported or why it was not."""
    if importlib.util.find_spec("timm") is None:
        return None, "timm not compared: not installed (pip install --no-deps timm)"
    note = "timm compared"
    if importlib.util.find_spec("torchvision") is None:
        sys.meta_path.insert(0, _PlaceholderFinder())
        note = "timm compared (torchvision missing: placeholder modules stand in for its unused imports)"
    import timm

    return timm, f"{note}, timm {timm.__version__}"
