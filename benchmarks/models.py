"""Every preset's size, cost and CPU speed: params, GFLOPs, inference images/s in fp32 and cast to bf16.

    python benchmarks/models.py                 # all presets (about 10 minutes on 2 cores)
    python benchmarks/models.py --models 'vit5_*' --min-time 2

Prints a table and writes benchmarks/results/models.json.
"""
from __future__ import annotations

import argparse
import copy
import platform
import sys
from pathlib import Path

import torch

from vitkit import create_model, list_models
from vitkit.bench import Timing, add_timing_arguments, alternating_rates, inference_fn
from vitkit.models.profile import model_stats
from vitkit.report import format_table, write_json


def rates(model: torch.nn.Module, x: torch.Tensor, timing: Timing) -> dict[str, float]:
    """Inference images/s in fp32 and with a bf16 copy of the model, timed alternately (the way `vitkit bench` does)."""
    bf16 = copy.deepcopy(model)
    return alternating_rates({"fp32": inference_fn(model, x, "fp32"), "bf16": inference_fn(bf16, x, "bf16")},
                             x.shape[0], timing, x.device)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="*", help="shell-style preset filter")
    add_timing_arguments(parser)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "models.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows, records = [], []
    for name in list_models(args.models):
        stats = model_stats(name)
        batch = 16 if stats.gflops < 1 else 4 if stats.gflops < 20 else 1
        model = create_model(name).eval()
        x = torch.randn(batch, model.cfg.in_chans, *model.cfg.img_size)
        measured = rates(model, x, Timing(args.min_time, args.repeats, warmup=1))
        fp32, bf16 = measured["fp32"], measured["bf16"]
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
