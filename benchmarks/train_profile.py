"""vitkit's training step beside timm's, operator by operator: which ops each runs, how often, and their self times.

    python benchmarks/train_profile.py                               # tiny CIFAR ViT, batch 64, fp32 (about a minute)
    python benchmarks/train_profile.py --model vit_small_patch16_224 --batch 8

Issue 22 asks where vitkit's fp32 training step loses to timm's. A speed ratio alone cannot say; a profile can: if
both run the same operators the same number of times, the gap is not in the code (extra copies, casts, contiguous
calls would show as extra rows) but in noise or memory placement. The same weights and batch (timm_twin), the step
train_best.py times (forward, cross-entropy, backward, fused AdamW), profiled in alternating rounds. Prints the ops
that differ in count (if any) and the largest self times; writes benchmarks/results/train_profile.json.
"""
from __future__ import annotations

import sys
from collections import Counter

import torch
from torch.profiler import ProfilerActivity, profile

from vitkit.bench import timm_twin, train_fn
from vitkit.report import format_table, write_json

from side_by_side import environment, model_and_batch, parse_one_model
from timm_import import import_timm


def profile_rounds(steps: dict[str, callable], rounds: int, steps_per_round: int) -> dict[str, dict[str, list]]:
    """Per implementation, each op's [calls, self CPU ms], summed over alternating rounds of profiled steps."""
    totals = {name: {} for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(steps_per_round):
                    step()
            for event in prof.key_averages():
                calls, ms = totals[name].get(event.key, (0, 0.0))
                totals[name][event.key] = (calls + event.count, ms + event.self_cpu_time_total / 1e3)
    return totals


def main() -> int:
    args = parse_one_model(__doc__, model="vit_cifar_patch4_32", batch=64, result="train_profile.json")
    timm, timm_note = import_timm()
    if timm is None:
        print(f"timm is needed for this comparison: {timm_note}", file=sys.stderr)
        return 1
    model, x = model_and_batch(args)
    steps = {"vitkit": train_fn(model, x, "fp32", model.cfg.num_classes),
             "timm": train_fn(timm_twin(model), x, "fp32", model.cfg.num_classes)}
    for step in steps.values():  # warm-up: allocator caches, oneDNN primitives
        for _ in range(3):
            step()
    totals = profile_rounds(steps, rounds=args.repeats or 3, steps_per_round=3)
    ops = sorted(set(totals["vitkit"]) | set(totals["timm"]),
                 key=lambda op: -max(totals[n].get(op, (0, 0.0))[1] for n in totals))
    count_gaps = {op: (totals["vitkit"].get(op, (0, 0))[0], totals["timm"].get(op, (0, 0))[0]) for op in ops
                  if totals["vitkit"].get(op, (0, 0))[0] != totals["timm"].get(op, (0, 0))[0]}
    rows = [[op[:50], *(totals[n].get(op, (0, 0.0))[0] for n in totals),
             *(round(totals[n].get(op, (0, 0.0))[1], 1) for n in totals)] for op in ops[:25]]
    print(format_table(rows, ["op (largest self time first)", "vitkit calls", "timm calls", "vitkit ms", "timm ms"]))
    total_ms = {n: round(sum(ms for _, ms in totals[n].values()), 1) for n in totals}
    calls = {n: sum(Counter({op: c for op, (c, _) in totals[n].items()}).values()) for n in totals}
    print(f"\nself CPU time in total: vitkit {total_ms['vitkit']} ms, timm {total_ms['timm']} ms; "
          f"op calls: vitkit {calls['vitkit']}, timm {calls['timm']}")
    print("ops whose call counts differ: " + (", ".join(f"{op} {v} vs {t}" for op, (v, t) in count_gaps.items())
                                               or "none: both steps run the same operators the same number of times"))
    write_json(args.out, {"environment": environment(model=args.model, batch=args.batch, timm=timm_note),
                          "total_self_ms": total_ms, "op_calls": calls, "count_gaps": count_gaps,
                          "ops": {n: {op: list(v) for op, v in totals[n].items()} for n in totals}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
