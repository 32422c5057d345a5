"""ViT-5 against Swin at 224: inference images/s in one alternating run, beside the ViT-5 write-up's claims (its
Swin comparison table: ViT-5-B infers at 1.1x Swin-B's speed, ViT-5-L at 0.9x Swin-L's).

    python benchmarks/swin_speed.py            # vitkit ViT-5-B, vitkit Swin-B, timm's Swin-B; fp32 and bf16
    python benchmarks/swin_speed.py --large    # also ViT-5-L against a Swin-L (slow on a CPU)
    python benchmarks/swin_speed.py --batch 2 --min-time 0.2 --repeats 1 --dtypes fp32   # a smoke run

Weights are random (speed does not depend on them). timm's Swin-B joins where timm imports (benchmarks/
timm_import.py). Prints a table and writes benchmarks/results/swin_speed.json.
"""
from __future__ import annotations

import argparse
import copy
import platform
import sys
from pathlib import Path

import torch

from vitkit import create_model
from vitkit.bench import Timing, add_timing_arguments, alternating_rates, inference_fn
from vitkit.models.profile import count_flops
from vitkit.report import format_table, write_json

from timm_import import import_timm

CLAIMS = {"B": 1.1, "L": 0.9}  # ViT-5's speed as a multiple of Swin's, /work/shared/sources (section 5.2's table)
SOURCE = "the ViT-5 write-up's comparison with Swin (../shared/sources/000_*.txt, section 5.2)"
# Swin-L as the Swin paper and timm define it (vitkit has presets up to Swin-B): width 192, depths 2-2-18-2
SWIN_LARGE = dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48))


def contenders(size: str, timm) -> dict[str, torch.nn.Module]:
    """The models of one size class: vitkit's ViT-5 and Swin, and timm's Swin where it imports."""
    if size == "B":
        models = {"vitkit vit5_base_patch16_224": create_model("vit5_base_patch16_224"),
                  "vitkit swin_base_patch4_window7_224": create_model("swin_base_patch4_window7_224")}
        timm_name = "swin_base_patch4_window7_224"
    else:
        models = {"vitkit vit5_large_patch16_224": create_model("vit5_large_patch16_224"),
                  "vitkit Swin-L (window 7, 224)": create_model("swin_base_patch4_window7_224", **SWIN_LARGE)}
        timm_name = "swin_large_patch4_window7_224"
    if timm is not None:
        models[f"timm {timm_name}"] = timm.create_model(timm_name, pretrained=False)
    return {name: model.eval() for name, model in models.items()}


def measure(size: str, dtype: str, batch: int, timing: Timing, timm) -> list[dict]:
    """One alternating run over the size class's models in `dtype`; each record carries ViT-5's ratio to it."""
    models = contenders(size, timm)
    x = torch.randn(batch, 3, 224, 224)
    flops = {name: count_flops(model, (224, 224)) / 1e9 for name, model in models.items()}
    steps = {name: inference_fn(copy.deepcopy(model), x, dtype) for name, model in models.items()}
    rates = alternating_rates(steps, batch, timing, x.device)
    vit5 = next(rate for name, rate in rates.items() if "vit5" in name)
    return [dict(size=size, dtype=dtype, model=name, batch=batch, gflops=round(flops[name], 2),
                 params_m=round(sum(p.numel() for p in models[name].parameters()) / 1e6, 2), img_s=round(rate, 2),
                 vit5_ratio=round(vit5 / rate, 3), claimed_vit5_ratio=None if "vit5" in name else CLAIMS[size])
            for name, rate in rates.items()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--dtypes", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"])
    parser.add_argument("--large", action="store_true", help="also ViT-5-L against Swin-L (about 4x the B run)")
    add_timing_arguments(parser, min_time=3.0, repeats=5)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "swin_speed.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    timm, timm_note = import_timm()
    timing = Timing(args.min_time, args.repeats, warmup=2)
    records = [record for size in ["B"] + (["L"] if args.large else []) for dtype in args.dtypes
               for record in measure(size, dtype, args.batch, timing, timm)]
    rows = [[r["size"], r["dtype"], r["model"], r["params_m"], r["gflops"], r["img_s"],
             "" if r["claimed_vit5_ratio"] is None else r["vit5_ratio"],
             "" if r["claimed_vit5_ratio"] is None else r["claimed_vit5_ratio"]] for r in records]
    print(format_table(rows, ["size", "dtype", "model", "params (M)", "GFLOPs", "img/s", "ViT-5 / this",
                              "claimed"]))
    print(f"\nclaimed: {SOURCE}; {timm_note}")
    env = dict(torch=torch.__version__, threads=torch.get_num_threads(), cpu=platform.processor() or platform.machine())
    path = write_json(args.out, dict(environment=env, timm=timm_note, claims_source=SOURCE, results=records))
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
