"""mIoU on the synthetic segmentation set (Fashion-MNIST items on CIFAR-10 photographs, 64x64, 11 classes) for a
plain ViT with ViTDet's simple pyramid and a Swin with its stage maps, both under an FPN-lite decoder, each trained
from scratch and from a CIFAR-10 classifier of its own family, all four on the same wall-clock budget.

    python benchmarks/dense.py                                   # the four runs, 15 minutes each (about 62 minutes)
    python benchmarks/dense.py --only vit-scratch swin-scratch   # some of them
    cp docs/dense.md /tmp/dense.md                               # a smoke run, on a copy of the doc
    python benchmarks/dense.py --minutes 0.3 --doc /tmp/dense.md --out /tmp/dense.json \\
        "data.dataset=synthseg:../shared?train=64&test=32"

The ViT starts from the CIFAR-10 budget checkpoint in ../shared/checkpoints/cifar10_budget; the Swin from a CIFAR-10
Swin run, trained first with `python benchmarks/train_budget.py --only cifar10_swin` (its run folder is the default
--swin-init). Prints a table, writes benchmarks/results/dense.json and the table of docs/dense.md (between its
dense-table markers).
"""
from __future__ import annotations

import argparse
import platform
import re
import sys
import time
from pathlib import Path

import torch

from vitkit.hardware import cpu_kernels
from vitkit.report import format_table, write_json
from vitkit.train import train

SHARED = Path(__file__).resolve().parents[2] / "shared"
DOC = Path(__file__).resolve().parents[1] / "docs" / "dense.md"
RUNS = {  # name: (recipe, backbone family the checkpoint must match, or None from scratch)
    "vit-scratch": ("configs/synthseg_vit_fpn.yaml", None),
    "vit-cifar10": ("configs/synthseg_vit_fpn.yaml", "vit"),
    "swin-scratch": ("configs/synthseg_swin_fpn.yaml", None),
    "swin-cifar10": ("configs/synthseg_swin_fpn.yaml", "swin"),
}
DESCRIBED = {"vit": "plain ViT + simple pyramid, FPN-lite", "swin": "Swin stages, FPN-lite"}
OUTSIDE_THE_CLOCK_MINUTES = 0.5  # building the data set (about 20 s), the final evaluation, the last checkpoint
MARKERS = ("<!-- dense-table:start -->", "<!-- dense-table:end -->")


def run(name: str, minutes: float, output_dir: Path, inits: dict[str, Path], extra: list[str]) -> dict:
    """One recipe on the clock, from scratch or from the family's CIFAR-10 checkpoint; its record."""
    recipe, family = RUNS[name]
    overrides = [f"data.dataset=synthseg:{SHARED}?seed=0&size=64&train=10000&test=2000",
                 f"schedule.time_budget_minutes={minutes - OUTSIDE_THE_CLOCK_MINUTES}", f"name={name}",
                 f"output_dir={output_dir}"] + ([f"finetune.init_from={inits[family]}"] if family else []) + extra
    start = time.time()
    result = train(recipe, overrides)
    summary, model = result.summary, result.model
    return dict(run=name, model=DESCRIBED[name.split("-")[0]], start=str(inits[family]) if family else "scratch",
                budget_minutes=minutes, minutes_used=round((time.time() - start) / 60, 1),
                epochs=summary["epochs"], steps=summary["steps"], miou=round(summary["final_miou"], 2),
                best_miou=round(summary["best"], 2), pixel_accuracy=round(summary["final_pixel_accuracy"], 2),
                params=sum(p.numel() for p in model.parameters()), precision=summary["precision"],
                dataset=summary["dataset"], recipe=recipe, overrides=extra)


def markdown(records: list[dict]) -> str:
    lines = ["| backbone + head | start | minutes | epochs | mIoU (%) | best mIoU (%) | pixel acc. (%) | params |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {'CIFAR-10 classifier' if r['start'] != 'scratch' else 'scratch'} | "
              f"{r['minutes_used']} | {r['epochs']} | {r['miou']:.2f} | {r['best_miou']:.2f} | "
              f"{r['pixel_accuracy']:.2f} | {r['params']:,} |" for r in records]
    return "\n".join(lines)


TABLE_BLOCK = re.compile(re.escape(MARKERS[0]) + ".*?" + re.escape(MARKERS[1]), re.S)


def check_doc(path: Path) -> None:
    """Fails before an hour of training, not after it, when the doc has no table block to fill."""
    if not path.is_file() or not TABLE_BLOCK.search(path.read_text()):
        raise SystemExit(f"{path} has no {MARKERS[0]} ... {MARKERS[1]} block to fill; add one or pass --doc")


def write_doc_table(path: Path, records: list[dict], note: str) -> None:
    """Replaces what lies between the doc's two markers with the table and a line on where it was measured."""
    block = f"{MARKERS[0]}\n{markdown(records)}\n\n{note}\n{MARKERS[1]}"
    path.write_text(TABLE_BLOCK.sub(lambda _: block, path.read_text()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=sorted(RUNS), help="run these (default: all four)")
    parser.add_argument("--minutes", type=float, default=15.0, help="wall-clock budget of each run")
    parser.add_argument("--vit-init", type=Path, default=SHARED / "checkpoints" / "cifar10_budget")
    parser.add_argument("--swin-init", type=Path, default=Path("runs/budget/cifar10_swin-30min"),
                        help="a CIFAR-10 Swin run or checkpoint (benchmarks/train_budget.py --only cifar10_swin)")
    parser.add_argument("--output-dir", type=Path, default=Path("runs/dense"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "dense.json")
    parser.add_argument("--doc", type=Path, default=DOC, help="the doc whose table to fill")
    parser.add_argument("overrides", nargs="*", help="extra overrides for every run, e.g. precision=fp32")
    args = parser.parse_args()
    check_doc(args.doc)
    names = args.only or list(RUNS)
    inits = {"vit": args.vit_init, "swin": args.swin_init}
    missing = [f"{family}: {inits[family]}" for family in {RUNS[n][1] for n in names} - {None}
               if not inits[family].exists()]
    if missing:
        print(f"missing CIFAR-10 checkpoints ({'; '.join(missing)}); train the Swin one with `python "
              "benchmarks/train_budget.py --only cifar10_swin`, or pass --vit-init / --swin-init", file=sys.stderr)
        return 1
    records = [run(name, args.minutes, args.output_dir, inits, args.overrides) for name in names]
    print(format_table([[r["run"], r["model"], r["minutes_used"], r["epochs"], r["miou"], r["best_miou"],
                         r["pixel_accuracy"], r["params"]] for r in records],
                       ["run", "model", "minutes", "epochs", "mIoU (%)", "best mIoU (%)", "pixel acc. (%)", "params"]))
    env = dict(torch=torch.__version__, threads=torch.get_num_threads(), cpu_class=cpu_kernels().cpu_class,
               cpu=platform.processor() or platform.machine())
    note = (f"Measured by `benchmarks/dense.py` ({args.minutes:g} minutes per run) on {env['cpu_class']}, "
            f"{env['threads']} threads, torch {env['torch']}, {time.strftime('%Y-%m-%d')}.")
    write_doc_table(args.doc, records, note)
    print(f"\nwritten to {write_json(args.out, dict(environment=env, results=records))} and {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
