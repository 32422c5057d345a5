"""Every preset's size, cost and CPU speed: params, GFLOPs, inference images/s in fp32 and bf16 autocast.

    python benchmarks/models.py                 # all presets (about 10 minutes on 2 cores)
    python benchmarks/models.py --models 'vit5_*' --min-time 2

Prints a table and writes benchmarks/results/models.json.
"""
from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from vitkit import create_model, list_models
from vitkit.models.profile import model_stats
from vitkit.report import format_table, write_json


def images_per_second(model: torch.nn.Module, x: torch.Tensor, bf16: bool, min_time: float, repeats: int) -> float:
    """Median throughput over `repeats` timed runs of at least `min_time` seconds each, after one warm-up."""
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        model(x)
        rates = []
        for _ in range(repeats):
            start, count = time.perf_counter(), 0
            while time.perf_counter() - start < min_time:
                model(x)
                count += x.shape[0]
            rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="*", help="shell-style preset filter")
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds per timed repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "models.json"))
    args = parser.parse_args()

    torch.manual_seed(0)
    rows, records = [], []
    for name in list_models(args.models):
        stats = model_stats(name)
        batch = 16 if stats.gflops < 1 else 4 if stats.gflops < 20 else 1
        model = create_model(name).eval()
        x = torch.randn(batch, model.cfg.in_chans, *model.cfg.img_size)
        fp32 = images_per_second(model, x, False, args.min_time, args.repeats)
        bf16 = images_per_second(model, x, True, args.min_time, args.repeats)
        record = dict(model=name, params=stats.params, gflops=round(stats.gflops, 3), batch=batch,
                      fp32_img_s=round(fp32, 2), bf16_img_s=round(bf16, 2),
                      fp32_gflop_s=round(fp32 * stats.gflops, 1), bf16_gflop_s=round(bf16 * stats.gflops, 1))
        records.append(record)
        rows.append([name, round(stats.params / 1e6, 2), round(stats.gflops, 2), batch, round(fp32, 1),
                     round(bf16, 1), round(bf16 / fp32, 2)])
        print(f"{name}: {fp32:.1f} img/s fp32, {bf16:.1f} img/s bf16", file=sys.stderr, flush=True)
        del model
    print(format_table(rows, ["model", "params (M)", "GFLOPs", "batch", "fp32 img/s", "bf16 img/s", "bf16/fp32"]))
    env = dict(torch=torch.__version__, threads=torch.get_num_threads(), cpu=platform.processor() or platform.machine())
    print(f"\nwritten to {write_json(args.out, dict(environment=env, results=records))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
