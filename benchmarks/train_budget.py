"""Real accuracy for a fixed wall-clock budget on this machine: CIFAR-10 (30 min) and Fashion-MNIST (10 min).

    python benchmarks/train_budget.py                              # both, with the default budgets
    python benchmarks/train_budget.py --only fashion_mnist --minutes 10

The recipe's schedule is stretched or shrunk to the budget: a short calibration times the training step at each
patch-dropout stage's rate, and the epochs that fit follow, with warmup, stages and evaluations keeping their share of
the run, so the learning rate reaches its floor when time runs out on a fast machine and a slow one alike.
`--epochs N` fixes the epoch count instead (to repeat a run exactly). Prints a table and writes
benchmarks/results/train_budget.json.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from vitkit.bench import Timing, alternating_rates, train_fn
from vitkit.data import build_dataset
from vitkit.report import format_table, write_json
from vitkit.train import TrainConfig, resolve_config, train
from vitkit.train.trainer import build_model, pick_device, pick_precision

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
TASKS = {
    "cifar10": dict(config="configs/cifar10_cpu_budget.yaml", minutes=30.0, target=75.0,
                    dataset=f"cifar10:{SHARED / 'cifar10' / 'cifar-10-batches-py'}"),
    "fashion_mnist": dict(config="configs/fashion_mnist_cpu_budget.yaml", minutes=10.0, target=91.0,
                          dataset=f"fashion-mnist:{SHARED / 'fashion-mnist'}"),
}
RESERVE = 0.85  # of the budget for the timed steps; the rest: compiling, input, evaluation, checkpoints


def calibrate(cfg: TrainConfig, num_classes: int, in_chans: int) -> dict[float, float]:
    """Training images/s of the recipe's model step here at each patch-dropout rate its stages use, compiled if the
    recipe compiles (the input pipeline is ~100x faster, see data.py): a full-patch step costs 3-4x a quarter-patch one,
    so timing only the first stage sized runs with stages far over the budget."""
    device = pick_device(cfg.device)
    model = build_model(cfg, num_classes, in_chans).to(device)
    images = torch.randn(cfg.data.batch_size, model.cfg.in_chans, *model.cfg.img_size, device=device)
    step = train_fn(torch.compile(model, dynamic=False) if cfg.compile else model, images,
                    pick_precision(cfg.precision, device), num_classes)

    def step_at(rate: float) -> Callable[[], None]:
        def run() -> None:
            model.patch_drop.rate = rate
            step()
        return run

    timing = Timing(min_time=2.0, repeats=3)  # the median of three: one slow repeat cost a whole epoch before
    rates = {rate for _, rate in stage_spans(cfg)}
    return alternating_rates({rate: step_at(rate) for rate in rates}, cfg.data.batch_size, timing, device)


def stage_spans(cfg: TrainConfig) -> list[tuple[float, float]]:
    """(epochs, patch-dropout rate) of each stretch of the recipe's schedule, in order."""
    starts = [(0.0, cfg.model.get("patch_drop_rate", 0.0))] + [tuple(stage) for stage in cfg.schedule.patch_drop_stages]
    ends = [start for start, _ in starts[1:]] + [cfg.schedule.epochs]
    return [(end - start, rate) for (start, rate), end in zip(starts, ends)]


def fit_epochs(cfg: TrainConfig, rates: dict[float, float], train_images: int, seconds: float) -> int:
    """Epochs of the recipe, its stages stretched in proportion, that fit in `seconds` at the calibrated rates."""
    seconds_per_epoch = sum(span * train_images / rates[rate] for span, rate in stage_spans(cfg)) / cfg.schedule.epochs
    return max(1, math.floor(seconds * RESERVE / seconds_per_epoch))


def scaled_schedule(cfg: TrainConfig, epochs: int) -> list[str]:
    """Overrides that run the recipe for `epochs`: warmup, patch-dropout stages and evaluations keep their share."""
    scale = epochs / cfg.schedule.epochs
    stages = [[round(start * scale, 3), rate] for start, rate in cfg.schedule.patch_drop_stages]
    return [f"schedule.epochs={epochs}", f"schedule.warmup_epochs={min(5.0, epochs / 10)}",
            f"schedule.patch_drop_stages={json.dumps(stages)}",
            f"eval_every_epochs={max(1, round(cfg.eval_every_epochs * scale))}"]


def run_task(name: str, minutes: float, output_dir: Path, extra: list[str], epochs: int | None = None) -> dict:
    task = TASKS[name]
    overrides = [f"data.dataset={task['dataset']}"] + extra
    cfg = resolve_config(task["config"], overrides)
    train_set = build_dataset(task["dataset"], split="train")
    rates, start = None, time.time()
    if epochs is None:  # the calibration's time counts against the budget
        rates = calibrate(cfg, len(train_set.classes), train_set.num_channels)
        epochs = fit_epochs(cfg, rates, len(train_set), minutes * 60 - (time.time() - start))
    calibration_minutes, start = (time.time() - start) / 60, time.time()
    summary = train(task["config"], overrides + scaled_schedule(cfg, epochs) + [
        f"name={name}-{int(minutes)}min", f"output_dir={output_dir}"]).summary
    minutes_used = (time.time() - start) / 60
    return dict(task=name, budget_minutes=minutes, calibration_minutes=round(calibration_minutes, 1),
                minutes_used=round(minutes_used, 1), epochs=epochs,
                img_s=round(summary["steps"] * cfg.data.batch_size / (minutes_used * 60), 1),
                calibrated_img_s={str(rate): round(value, 1) for rate, value in (rates or {}).items()},
                top1=round(summary["final_top1"], 2), ema_top1=summary["ema_final_top1"], target=task["target"],
                precision=summary["precision"], config=task["config"], overrides=extra)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(TASKS), action="append")
    parser.add_argument("--minutes", type=float, help="override every task's budget")
    parser.add_argument("--output-dir", default="runs/budget")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "train_budget.json",
                        help="where the results go (experiments: elsewhere, so the recipe's record survives)")
    parser.add_argument("--epochs", type=int, help="fix the epoch count instead of sizing it from a calibration")
    parser.add_argument("overrides", nargs="*", help="extra recipe overrides, e.g. precision=bf16")
    args = parser.parse_args()
    if not SHARED.exists():
        print(f"the datasets are expected in {SHARED}", file=sys.stderr)
        return 1
    results = [run_task(name, args.minutes or TASKS[name]["minutes"], Path(args.output_dir), args.overrides,
                        args.epochs)
               for name in (args.only or TASKS)]
    rows = [[r["task"], r["budget_minutes"], r["calibration_minutes"], r["minutes_used"], r["epochs"], r["img_s"],
             r["top1"], r["target"], r["precision"]] for r in results]
    print(format_table(rows, ["task", "budget (min)", "calibration (min)", "training (min)", "epochs", "img/s",
                              "top-1 (%)", "target (%)", "precision"]))
    path = write_json(args.out, results)
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
