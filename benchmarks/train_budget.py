"""Real accuracy for a fixed wall-clock budget on this machine: CIFAR-10 (30 min) and Fashion-MNIST (10 min).

    python benchmarks/train_budget.py                              # both, with the default budgets
    python benchmarks/train_budget.py --only fashion_mnist --minutes 10

The schedule (epochs, warmup, cosine) is sized to the budget from a short throughput calibration, so the learning
rate reaches its floor when time runs out. Prints a table and writes benchmarks/results/train_budget.json.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

from vitkit.bench import Timing, alternating_rates, train_fn
from vitkit.data import build_dataset
from vitkit.report import format_table, write_json
from vitkit.train import resolve_config, train
from vitkit.train.trainer import build_model, pick_device, pick_precision

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
TASKS = {
    "cifar10": dict(config="configs/cifar10_cpu_budget.yaml", minutes=30.0, target=75.0,
                    dataset=f"cifar10:{SHARED / 'cifar10' / 'cifar-10-batches-py'}"),
    "fashion_mnist": dict(config="configs/fashion_mnist_cpu_budget.yaml", minutes=10.0, target=91.0,
                          dataset=f"fashion-mnist:{SHARED / 'fashion-mnist'}"),
}


def calibrate(config: str, overrides: list[str], num_classes: int, in_chans: int) -> float:
    """Training images/s of the recipe's model step here, compiled if the recipe compiles (the input pipeline is ~100x
    faster, see data.py)."""
    cfg = resolve_config(config, overrides)
    device = pick_device(cfg.device)
    model = build_model(cfg, num_classes, in_chans).to(device)
    images = torch.randn(cfg.data.batch_size, model.cfg.in_chans, *model.cfg.img_size, device=device)
    step = train_fn(torch.compile(model) if cfg.compile else model, images, pick_precision(cfg.precision, device),
                    num_classes)
    timing = Timing(min_time=2.0, repeats=3)  # the median of three: one slow repeat cost a whole epoch before
    return alternating_rates({"step": step}, cfg.data.batch_size, timing, device)["step"]


def run_task(name: str, minutes: float, output_dir: Path, extra: list[str], epochs: int | None = None) -> dict:
    task = TASKS[name]
    overrides = [f"data.dataset={task['dataset']}"] + extra
    train_set = build_dataset(task["dataset"], split="train")
    if epochs is None:
        rate = calibrate(task["config"], overrides, len(train_set.classes), train_set.num_channels)
        epochs = max(1, math.floor(minutes * 60 * rate * 0.85 / len(train_set)))  # 15%: input, evaluation, checkpoints
    start = time.time()
    schedule = [f"schedule.epochs={epochs}", f"schedule.warmup_epochs={min(5.0, epochs / 10)}"]
    summary = train(task["config"], overrides + schedule + [f"name={name}-{int(minutes)}min",
                                                            f"output_dir={output_dir}"]).summary
    minutes_used = (time.time() - start) / 60
    return dict(task=name, budget_minutes=minutes, minutes_used=round(minutes_used, 1), epochs=epochs,
                img_s=round(summary["steps"] * resolve_config(task["config"], overrides).data.batch_size
                            / (minutes_used * 60), 1),
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
    rows = [[r["task"], r["budget_minutes"], r["minutes_used"], r["epochs"], r["img_s"], r["top1"], r["target"],
             r["precision"]] for r in results]
    print(format_table(rows, ["task", "budget (min)", "used (min)", "epochs", "img/s", "top-1 (%)", "target (%)",
                              "precision"]))
    path = write_json(args.out, results)
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
