"""Real accuracy for a fixed wall-clock budget on this machine: CIFAR-10 (30 min, a plain ViT and a Swin of its size)
and Fashion-MNIST (10 min).

    python benchmarks/train_budget.py                              # CIFAR-10 and Fashion-MNIST, default budgets
    python benchmarks/train_budget.py --only fashion_mnist --minutes 10
    python benchmarks/train_budget.py --only cifar10 --only cifar10_swin   # the plain ViT and the Swin of its size

Each recipe runs with `schedule.time_budget_minutes`: its schedule (warmup, cosine, patch-dropout stages,
evaluations) is stretched over the budget by the clock, so the learning rate reaches its floor when time runs out on a
fast machine and a slow one alike, and when the machine slows down mid-run. Half a minute of the budget is left for
loading the data and the final evaluation. `--epochs N` runs a fixed number of epochs instead (bit-reproducible).
Prints a table and writes benchmarks/results/train_budget.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from vitkit.report import format_table, write_json
from vitkit.train import resolve_config, train

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
TASKS = {
    "cifar10": dict(config="configs/cifar10_cpu_budget.yaml", minutes=30.0, target=75.0,
                    dataset=f"cifar10:{SHARED / 'cifar10' / 'cifar-10-batches-py'}"),
    "cifar10_swin": dict(config="configs/cifar10_swin_cpu_budget.yaml", minutes=30.0, target=None,
                         dataset=f"cifar10:{SHARED / 'cifar10' / 'cifar-10-batches-py'}"),
    "fashion_mnist": dict(config="configs/fashion_mnist_cpu_budget.yaml", minutes=10.0, target=91.0,
                          dataset=f"fashion-mnist:{SHARED / 'fashion-mnist'}"),
}
DEFAULT_TASKS = ("cifar10", "fashion_mnist")  # cifar10_swin on request: the Swin beside the ViT budget model
OUTSIDE_THE_CLOCK_MINUTES = 0.5  # loading the data, the final evaluation (8-19 s), the last checkpoint


def run_task(name: str, minutes: float, output_dir: Path, extra: list[str], epochs: int | None = None) -> dict:
    task = TASKS[name]
    overrides = [f"data.dataset={task['dataset']}"] + extra
    length = ([f"schedule.epochs={epochs}"] if epochs else
              [f"schedule.time_budget_minutes={minutes - OUTSIDE_THE_CLOCK_MINUTES}"])
    start = time.time()
    summary = train(task["config"], overrides + length + [f"name={name}-{int(minutes)}min",
                                                          f"output_dir={output_dir}"]).summary
    minutes_used = (time.time() - start) / 60
    return dict(task=name, budget_minutes=minutes, minutes_used=round(minutes_used, 1), epochs=summary["epochs"],
                steps=summary["steps"], img_s=round(summary["steps"] * resolve_config(
                    task["config"], overrides).data.batch_size / (minutes_used * 60), 1),
                top1=round(summary["final_top1"], 2), ema_top1=summary["ema_final_top1"], target=task["target"],
                precision=summary["precision"], config=task["config"], overrides=extra)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(TASKS), action="append")
    parser.add_argument("--minutes", type=float, help="override every task's budget")
    parser.add_argument("--output-dir", default="runs/budget")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "train_budget.json",
                        help="where the results go (experiments: elsewhere, so the recipe's record survives)")
    parser.add_argument("--epochs", type=int, help="train this many epochs instead of for the budget's minutes")
    parser.add_argument("overrides", nargs="*", help="extra recipe overrides, e.g. precision=bf16")
    args = parser.parse_args()
    if not SHARED.exists():
        print(f"the datasets are expected in {SHARED}", file=sys.stderr)
        return 1
    results = [run_task(name, args.minutes or TASKS[name]["minutes"], Path(args.output_dir), args.overrides,
                        args.epochs)
               for name in (args.only or DEFAULT_TASKS)]
    rows = [[r["task"], r["budget_minutes"], r["minutes_used"], r["epochs"], r["img_s"], r["top1"], r["target"],
             r["precision"]] for r in results]
    print(format_table(rows, ["task", "budget (min)", "used (min)", "epochs", "img/s", "top-1 (%)", "target (%)",
                              "precision"]))
    path = write_json(args.out, results)
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
