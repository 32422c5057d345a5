"""Shared helpers: the peers' interop fixtures (tests/fixtures/interop) and ways to write damaged copies of them."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "interop"


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def manifest() -> dict:
    return {case["case"]: case for case in json.loads((FIXTURES / "manifest.json").read_text())["cases"]}


@pytest.fixture
def edited_safetensors(tmp_path):
    """Writes a copy of a fixture's state dict after edit(state_dict) changed it in place."""
    def write(name: str, edit) -> Path:
        state = load_file(str(FIXTURES / name))
        edit(state)
        path = tmp_path / name
        save_file(state, str(path), metadata={"format": "pt"})
        return path
    return write


@pytest.fixture
def edited_hf_folder(tmp_path):
    """Copies a Hugging Face fixture folder, then edits its weights and/or its config.json."""
    def write(name: str, edit_weights=None, edit_config=None) -> Path:
        folder = tmp_path / name
        shutil.copytree(FIXTURES / name, folder)
        for path in folder.iterdir():
            path.chmod(0o644)
        if edit_weights is not None:
            state = load_file(str(folder / "model.safetensors"))
            edit_weights(state)
            save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
        if edit_config is not None:
            config = json.loads((folder / "config.json").read_text())
            edit_config(config)
            (folder / "config.json").write_text(json.dumps(config))
        return folder
    return write


@pytest.fixture(scope="session")
def reference(manifest):
    """The fixed input x and the peer's stored outputs for one manifest case."""
    def read(case: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        stored = load_file(str(FIXTURES / manifest[case]["input_file"]))
        return stored.pop("x"), stored
    return read
