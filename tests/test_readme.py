"""The README's Python example and its two set-up commands are what a newcomer copies: keep them true."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_models_example_runs():
    block = re.search(r"## Models\n\n```python\n(.*?)```", README, re.S).group(1)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["logits"].shape == (2, 10)
    assert namespace["tokens"].shape == (2, 65, 192)
    assert len(namespace["maps"]) == 12


def test_ci_runs_exactly_the_readme_test_command():
    commands = re.findall(r"```bash\n(.*?)\n```", README, re.S)
    assert commands[0].startswith("pip install torch==2.13.0") and commands[0].endswith("vitkit train")
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("section,count", [("Training", 4), ("Self-supervised pre-training", 3)])
def test_every_training_command_names_a_recipe_and_overrides_that_resolve(section, count):
    from vitkit.train import resolve_config

    block = re.search(rf"## {section}\n\n```bash\n(.*?)```", README, re.S).group(1)
    commands = [line.split("#")[0].split() for line in block.splitlines() if "train --config" in line]
    assert len(commands) >= count
    for words in commands:
        config = words[words.index("--config") + 1]
        resolve_config(ROOT / config, [word for word in words if "=" in word and not word.startswith("--")])


def test_the_fine_tuning_example_runs_as_shown(tmp_path, monkeypatch):
    """The README's first fine-tuning command, word for word, in a folder where its relative path exists."""
    from vitkit import cli

    block = re.search(r"## Fine-tuning, transfer and distillation\n.*?```bash\n(.*?)\n```", README, re.S).group(1)
    words = block.split()
    assert words[:3] == ["vitkit", "train", "--init-from"] and not any(w.startswith("model.") for w in words)
    (tmp_path / "tests").symlink_to(ROOT / "tests")
    monkeypatch.chdir(tmp_path)
    assert cli.main(words[1:] + ["logging.progress=false", "data.num_workers=0"]) == 0
    name = next(w.split("=", 1)[1] for w in words if w.startswith("name="))
    assert (tmp_path / "runs" / name / "summary.json").is_file()


def test_dense_prediction_example_runs():
    block = re.search(r"## Dense prediction[^\n]*\n\n```python\n(.*?)```", README, re.S).group(1)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["logits"].shape == (2, 11, 32, 32)
    assert namespace["seg"].pyramid.strides == [1, 2, 4, 8]


def test_faster_vits_example_runs():
    block = re.search(r"## Faster ViTs\n\n```python\n(.*?)```", README, re.S).group(1)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["logits"].shape == (2, 1000) and namespace["model"].cfg.token_merging == 13
    assert namespace["windowed"].blocks[2].window_size == 0 and namespace["windowed"].blocks[0].window_size == 4
