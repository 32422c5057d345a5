"""vitkit's fastest CPU training step beside the plain fp32 baseline: same weights, same process, alternating repeats.

    python benchmarks/train_best.py                                  # tiny CIFAR ViT, batch 64 (about 4 minutes)
    python benchmarks/train_best.py --model vit_small_patch16_224 --batch 8 --min-time 4

Issue 8 asks for vitkit's best CPU training setting at 2x the fp32 baseline; benchmarks/train_speed.py times fp32
and bf16 in separate alternating groups, so a ratio across them carries the machine's drift between the groups.
Here every setting alternates with every other: the plain SDPA ViT, timm (when importable, see timm_import.py) and
vitkit in fp32 and bf16 autocast, and vitkit in bf16 autocast compiled. A step is forward, cross-entropy, backward
and fused AdamW. Prints images/s, the ratio to the plain fp32 step and the share of the dtype's measured matmul
peak; writes benchmarks/results/train_best.json.
"""
from __future__ import annotations

import copy
import sys
from typing import Any, Callable

import torch

from vitkit.bench import (DTYPES, Timing, achieved_flops, alternating_rates, peak_matmul_flops, plain_twin, timm_twin,
                          train_fn)
from vitkit.models.profile import count_flops
from vitkit.report import format_table, write_json

from side_by_side import environment, model_and_batch, parse_one_model
from timm_import import import_timm

BASELINE = "plain fp32"


def settings(model: torch.nn.Module, x: torch.Tensor, with_timm: bool) -> dict[str, Callable[[], Any]]:
    """Every (implementation, dtype) pair as a ready-to-time training step, each on its own copy of the weights."""
    twins = {"plain": lambda: plain_twin(model), "vitkit": lambda: copy.deepcopy(model)}
    if with_timm:
        twins["timm"] = lambda: timm_twin(model)
    num_classes = model.cfg.num_classes
    steps = {f"{impl} {dtype}": train_fn(make(), x, dtype, num_classes) for dtype in ("fp32", "bf16")
             for impl, make in twins.items()}
    steps["vitkit bf16 compiled"] = train_fn(torch.compile(copy.deepcopy(model)), x, "bf16", num_classes)
    return steps


def main() -> int:
    args = parse_one_model(__doc__, model="vit_cifar_patch4_32", batch=64, result="train_best.json")
    timm, timm_note = import_timm()
    model, x = model_and_batch(args)
    steps = settings(model, x, timm is not None)
    timing = Timing(args.min_time, args.repeats)
    rates = alternating_rates(steps, args.batch, timing, x.device)  # the warm-up calls compile
    peaks = {dtype: peak_matmul_flops(DTYPES[dtype], x.device, timing) for dtype in ("fp32", "bf16")}
    flops = count_flops(model, model.cfg.img_size, model.cfg.in_chans)
    records = []
    for name, rate in rates.items():
        dtype = name.split()[1]
        records.append(dict(model=args.model, setting=name, batch=args.batch, img_s=rate,
                            ratio=rate / rates[BASELINE],
                            peak_fraction=achieved_flops(rate, flops, train=True) / peaks[dtype]))
    rows = [[r["setting"], round(r["img_s"], 1), round(r["ratio"], 2), round(100 * r["peak_fraction"], 1)]
            for r in records]
    print(format_table(rows, ["setting", "img/s", f"x {BASELINE}", "% dtype matmul peak"]))
    print(f"{args.model}, batch {args.batch}, {torch.get_num_threads()} threads; matmul peaks fp32 "
          f"{peaks['fp32'] / 1e9:.0f}, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s; {timm_note}")
    env = environment(timm=timm_note, peak_gflop_s={k: v / 1e9 for k, v in peaks.items()})
    print(f"\nwritten to {write_json(args.out, dict(environment=env, results=records))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
