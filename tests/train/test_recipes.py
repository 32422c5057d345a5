from pathlib import Path

import pytest
import torch

from vitkit.train import resolve_config
from vitkit.train.trainer import build_model

RECIPES = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))


def test_the_recipes_folder_is_found():
    assert len(RECIPES) >= 8


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_validates_and_builds_its_model(path):
    cfg = resolve_config(path)
    with torch.device("meta"):  # shapes only: ViT-B at 384 costs nothing here
        model = build_model(cfg, num_classes=10, in_chans=3)
        logits = model(torch.empty(2, *model.cfg.input_size))
    pixels = tuple(model.cfg.img_size) if cfg.task == "segment" else ()  # segmentation: a score map per class
    assert logits.shape == (2, 10, *pixels)
