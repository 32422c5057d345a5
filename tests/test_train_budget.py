"""benchmarks/train_budget.py sizes a recipe to a wall-clock budget; its arithmetic is checked here by hand."""
import importlib.util
from pathlib import Path

import pytest

from vitkit.train import resolve_config

ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "configs" / "fashion_mnist_cpu_budget.yaml")
RATES = {0.75: 6000.0, 0.5: 3000.0, 0.0: 1500.0}  # images/s at each patch-dropout rate
TRAIN_IMAGES = 60_000


@pytest.fixture(scope="module")
def budget():
    spec = importlib.util.spec_from_file_location("train_budget", ROOT / "benchmarks" / "train_budget.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def seconds(spans, rates=RATES):
    return sum(epochs * TRAIN_IMAGES / rates[rate] for epochs, rate in spans)


def test_the_recipe_splits_into_its_patch_dropout_stages(budget):
    assert budget.stage_spans(resolve_config(RECIPE)) == [(10.0, 0.75), (3.5, 0.5), (1.5, 0.0)]


def test_the_epochs_fill_the_budget_at_each_stages_own_speed(budget):
    # 10 epochs at 10 s, 3.5 at 20 s and 1.5 at 40 s: 230 s for the recipe's 15 epochs; 510 s of 600 are for steps
    assert budget.fit_epochs(resolve_config(RECIPE), RATES, TRAIN_IMAGES, 600.0) == 33
    # timing only the first stage would have sized 51 epochs, far over the budget once the later stages run
    assert budget.fit_epochs(resolve_config(RECIPE), {rate: RATES[0.75] for rate in RATES}, TRAIN_IMAGES, 600.0) == 51


@pytest.mark.parametrize("epochs", [6, 30, 33])
def test_the_scaled_schedule_keeps_each_stages_share_and_fits(budget, epochs):
    recipe = resolve_config(RECIPE)
    scaled = resolve_config(RECIPE, budget.scaled_schedule(recipe, epochs))
    assert scaled.schedule.epochs == epochs and scaled.eval_every_epochs == epochs  # the recipe evaluates once
    assert scaled.schedule.warmup_epochs == pytest.approx(epochs / 10)
    assert [rate for _, rate in budget.stage_spans(scaled)] == [0.75, 0.5, 0.0]
    shares = [span / epochs for span, _ in budget.stage_spans(scaled)]
    assert shares == pytest.approx([span / 15 for span, _ in budget.stage_spans(recipe)], abs=1e-4)
    fits = seconds(budget.stage_spans(scaled)) <= 600.0 * budget.RESERVE
    assert fits == (epochs <= 33)
