"""vitkit beside a plain PyTorch ViT and timm (same weights, same process, alternating repeats): inference, training.

    python benchmarks/train_speed.py                              # the three models of issue 8, a few minutes
    python benchmarks/train_speed.py --models vit_cifar_patch4_32 --threads 1 --min-time 0.5

Prints a table and writes benchmarks/results/train_speed.json. timm is compared when it is installed (see
timm_import.py for machines without torchvision) and the model is one it has (not ViT-5).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from vitkit.bench import Timing, add_timing_arguments, bench, plain_twin_gaps
from vitkit.models import create_model
from vitkit.report import format_table, write_json

from side_by_side import environment
from timm_import import import_timm

BATCHES = {"vit_cifar_patch4_32": 64, "vit_small_patch16_224": 8, "vit5_small_patch16_224": 8}


def run(models: list[str], dtypes: list[str], timing: Timing, with_timm: bool) -> list[dict]:
    """Every model x {inference, training} x dtype, with its plain and timm twins when the architecture allows."""
    records = []
    for name in models:
        with torch.device("meta"):
            baseline = not plain_twin_gaps(create_model(name).cfg)
        for train in (False, True):
            for dtype in dtypes:
                found = bench(name, BATCHES.get(name, 16), dtype, train=train, baseline=baseline,
                              timm=baseline and with_timm, timing=timing)
                for record in found:
                    record["load_avg"] = round(os.getloadavg()[0], 2)
                    print(f"{name} {record['mode']} {dtype} {record['impl']}: {record['img_s']:.1f} img/s",
                          file=sys.stderr, flush=True)
                records += found
    return records


def table(records: list[dict]) -> str:
    """One row per measurement, with the speed ratio to vitkit fp32 of the same model and mode."""
    fp32 = {(r["model"], r["mode"]): r["img_s"] for r in records if r["impl"] == "vitkit" and r["dtype"] == "fp32"}
    rows = [[r["model"], r["mode"], r["impl"], r["dtype"], r["batch"], round(r["img_s"], 1),
             round(r["ratio_to_vitkit"], 2), round(r["img_s"] / fp32[r["model"], r["mode"]], 2),
             round(r["gflop_s"], 1), round(100 * r["peak_fraction"], 1), r["load_avg"]] for r in records]
    headers = ["model", "mode", "impl", "dtype", "batch", "img/s", "x vitkit same dtype", "x vitkit fp32",
               "GFLOP/s", "% dtype peak", "load"]
    return format_table(rows, headers)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(BATCHES))
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    add_timing_arguments(parser)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_speed.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    timm, timm_note = import_timm()
    records = run(args.models, args.dtypes, Timing(args.min_time, args.repeats), timm is not None)
    print(table(records))
    print(timm_note)
    env = environment(timm=timm_note)
    print(f"\nwritten to {write_json(args.out, dict(environment=env, results=records))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
