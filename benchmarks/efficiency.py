"""Accuracy against images per second for the faster ViTs (docs/efficiency.md): one PNG and one JSON per model.

    python benchmarks/efficiency.py                                     # the three models below (about 40 minutes)
    python benchmarks/efficiency.py --only cifar10 --extra plain-15min=runs/effic/plain-15min \\
        linear-15min=runs/effic/linear-15min windowed-15min=runs/effic/windowed-15min \\
        pruned-30=runs/effic/pruned30-ft pruned-50=runs/effic/pruned50-ft
    python benchmarks/efficiency.py --only cifar10 --limit 200 --tome 4 --combo-tome 4 --min-time 0.05 --repeats 1

Models: the CIFAR-10 and Fashion-MNIST budget models (../shared/checkpoints, accuracy on the full test sets) and
ViT-S/16 at 224 with random weights (throughput only: 196 patches, where merging has room). Settings, each one point:
the model as trained (fp32), token merging at several r, int8 (vitkit's Int8Linear, compiled), weight-only int4,
ToMe + int8, and any trained checkpoints given with --extra (linear or windowed attention, pruned and fine-tuned
models, the plain model trained for the same minutes), each fp32 and int8. Images/s are timed alternating, at each
--batch; accuracy is top-1 on the test split. The JSON records the CPU class and its matmul flags (AVX2, AVX-512,
VNNI, BF16, AMX): the same settings rank differently on an AVX2-only CPU and on one with AMX. For each model with
accuracy it also names the fastest setting within 0.5 and within 1 point of the plain model.
"""
from __future__ import annotations

import argparse
import copy
import functools
import sys
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from vitkit.bench import Timing, add_timing_arguments, alternating_rates  # noqa: E402
from vitkit.checkpoints import resolve_checkpoint  # noqa: E402
from vitkit.export import optimize_for_inference, quantize_int4, quantize_int8  # noqa: E402
from vitkit.hardware import cpu_kernels  # noqa: E402
from vitkit.inference import evaluate_on, load_model  # noqa: E402
from vitkit.models import create_model  # noqa: E402
from vitkit.models.profile import count_flops  # noqa: E402
from vitkit.report import format_table, write_json  # noqa: E402

from side_by_side import environment  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
RESULTS = Path(__file__).parent / "results"
MODELS = {
    "cifar10": dict(checkpoint=SHARED / "checkpoints" / "cifar10_budget", tome=(2, 4, 6, 8, 10), combo_tome=(4, 8),
                    data=f"cifar10:{SHARED / 'datasets' / 'cifar10' / 'cifar-10-batches-py'}", batches=(64,)),
    "fashion_mnist": dict(checkpoint=SHARED / "checkpoints" / "fashion_mnist_budget", tome=(2, 4, 6, 8),
                          combo_tome=(4,), data=f"fashion-mnist:{SHARED / 'datasets' / 'fashion-mnist'}",
                          batches=(64,)),
    "vit_small": dict(preset="vit_small_patch16_224", tome=(4, 8, 13, 16, 20), combo_tome=(8, 13), data=None,
                      batches=(1, 8)),
}
ACCURACY_DROPS = (0.5, 1.0)


def base_model(spec: dict[str, Any]) -> torch.nn.Module:
    """The budget checkpoint, or the preset with seed-0 weights."""
    if "checkpoint" in spec:
        return load_model(spec["checkpoint"])
    torch.manual_seed(0)
    return create_model(spec["preset"]).eval()


def settings(model: torch.nn.Module, tome: list[int], combo_tome: list[int],
             extras: dict[str, torch.nn.Module]) -> dict[str, tuple[torch.nn.Module, str]]:
    """label -> (float model with its token merging set, backend that runs it)."""
    out = {"fp32": (model, "torch-fp32")}
    out |= {f"ToMe r={r}": (merging(model, r), "torch-fp32") for r in tome}
    out |= {"int8": (model, "torch-int8"), "int4": (model, "torch-int4")}
    out |= {f"ToMe r={r} + int8": (merging(model, r), "torch-int8") for r in combo_tome}
    for name, extra in extras.items():
        out |= {name: (extra, "torch-fp32"), f"{name} + int8": (extra, "torch-int8")}
    return out


def merging(model: torch.nn.Module, r: int) -> torch.nn.Module:
    copied = copy.deepcopy(model)
    copied.set_token_merging(r)
    return copied


def weight_megabytes(model: torch.nn.Module, backend: str) -> float:
    """Bytes of the weights as the backend holds them (int8 / int4 blocks, float elsewhere)."""
    quantize = {"torch-int8": quantize_int8, "torch-int4": quantize_int4}.get(backend)
    held = quantize(copy.deepcopy(model)) if quantize else model
    return sum(t.numel() * t.element_size() for t in held.state_dict().values()) / 2**20


def measure(name: str, spec: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Every setting of one model: set-up, accuracy, size, FLOPs, then images/s per batch size, alternating."""
    model = base_model(spec)
    cfg = model.cfg
    extras = {label: load_model(path) for label, path in args.extra.items()} if name == args.extra_for else {}
    chosen = settings(model, args.tome or list(spec["tome"]), args.combo_tome or list(spec["combo_tome"]), extras)
    example = torch.randn(2, cfg.in_chans, *cfg.img_size)
    rows, runners = [], {}
    for label, (float_model, backend_name) in chosen.items():
        start = time.perf_counter()
        backend = optimize_for_inference(float_model, example, backend=backend_name)
        setup = time.perf_counter() - start
        accuracy = (evaluate_on(backend, spec["data"], limit=args.limit)["top1"] if spec["data"] else None)
        runners[label] = backend
        rows.append(dict(setting=label, backend=backend_name, token_merging=float_model.cfg.token_merging,
                         top1=accuracy, setup_s=setup, weight_mib=weight_megabytes(float_model, backend_name),
                         gflops=count_flops(float_model, cfg.img_size, cfg.in_chans) / 1e9))
        print(f"{name}: {label} ready ({setup:.1f} s)", file=sys.stderr, flush=True)
    timing = Timing(args.min_time, args.repeats)
    for batch in args.batch or spec["batches"]:
        x = torch.randn(batch, cfg.in_chans, *cfg.img_size)
        rates = alternating_rates({label: functools.partial(run, x) for label, run in runners.items()}, batch,
                                  timing, x.device)
        for row in rows:
            row[f"img_s_b{batch}"] = rates[row["setting"]]
            row[f"speedup_b{batch}"] = rates[row["setting"]] / rates["fp32"]
    return dict(model=name, source=str(spec.get("checkpoint", spec.get("preset"))), data=spec["data"],
                limit=args.limit, img_size=list(cfg.img_size), tokens=cfg.num_tokens, results=rows,
                within=within_drops(rows, args.batch or spec["batches"]))


def within_drops(rows: list[dict[str, Any]], batches) -> dict[str, Any]:
    """For each allowed accuracy drop, the fastest setting (at the first batch size) that stays within it."""
    if rows[0]["top1"] is None:
        return {}
    key, plain = f"speedup_b{batches[0]}", rows[0]["top1"]
    found = {}
    for drop in ACCURACY_DROPS:
        allowed = [row for row in rows if row["top1"] >= plain - drop]
        best = max(allowed, key=lambda row: row[key])
        found[f"-{drop} point"] = dict(setting=best["setting"], speedup=best[key], top1=best["top1"])
    return found


def plot(record: dict[str, Any], batches, path: Path) -> None:
    """Accuracy against images/s (one point per setting), or images/s alone where there is no accuracy."""
    rows, batch = record["results"], batches[0]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    if rows[0]["top1"] is None:
        ax.barh([row["setting"] for row in rows], [row[f"img_s_b{batch}"] for row in rows])
        ax.set(xlabel=f"images/s (batch {batch})", title=f"{record['model']}: throughput per setting")
    else:
        for row in rows:
            ax.scatter(row[f"img_s_b{batch}"], row["top1"], color="C3" if row["setting"] == "fp32" else "C0")
            ax.annotate(row["setting"], (row[f"img_s_b{batch}"], row["top1"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        for drop, style in zip(ACCURACY_DROPS, (":", "--")):
            ax.axhline(rows[0]["top1"] - drop, color="gray", linestyle=style, linewidth=0.8,
                       label=f"plain - {drop} point")
        ax.set(xlabel=f"images/s (batch {batch})", ylabel="top-1 (%)", title=f"{record['model']}: accuracy vs speed")
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine() -> dict[str, Any]:
    """The CPU class and the matmul instruction sets its figures depend on."""
    kernels = cpu_kernels()
    return dict(cpu_class=kernels.cpu_class, cpu_model=kernels.model, avx2=kernels.avx2, avx512=kernels.avx512,
                vnni=kernels.vnni, bf16=kernels.native_bf16, amx=kernels.amx)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(MODELS), action="append")
    parser.add_argument("--tome", type=int, nargs="+", help="ToMe r values (default: per model)")
    parser.add_argument("--combo-tome", type=int, nargs="+", help="r values also run with int8 (default: per model)")
    parser.add_argument("--batch", type=int, nargs="+", help="batch sizes to time (default: per model)")
    parser.add_argument("--extra", nargs="+", default=[], metavar="NAME=CHECKPOINT",
                        help="trained checkpoints to add as points of the --extra-for model (a run folder or a "
                             "checkpoint), e.g. linear-15min=runs/effic/linear-15min")
    parser.add_argument("--extra-for", default="cifar10", choices=sorted(MODELS))
    parser.add_argument("--limit", type=int, help="evaluate on the first LIMIT test images only (quick checks)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for efficiency_<model>.json / .png")
    add_timing_arguments(parser, min_time=2.0)
    args = parser.parse_args()
    pairs = [item.partition("=") for item in args.extra]
    if any(not sep or not name for name, sep, _ in pairs):
        parser.error("--extra takes NAME=CHECKPOINT pairs, e.g. linear-15min=runs/effic/linear-15min")
    args.extra = {name: resolve_checkpoint(path) for name, _, path in pairs}
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def main() -> int:
    args = parse_args()
    host = machine()
    for name in args.only or MODELS:
        spec = MODELS[name]
        record = measure(name, spec, args)
        batches = args.batch or spec["batches"]
        rows = [[r["setting"], "-" if r["top1"] is None else round(r["top1"], 2), round(r["gflops"], 3),
                 round(r["weight_mib"], 2)] + [round(r[f"img_s_b{b}"], 1) for b in batches]
                + [round(r[f"speedup_b{b}"], 2) for b in batches] for r in record["results"]]
        print(format_table(rows, ["setting", "top-1 (%)", "GFLOPs", "weights MiB"]
                           + [f"img/s b{b}" for b in batches] + [f"x fp32 b{b}" for b in batches]))
        for drop, best in record["within"].items():
            print(f"fastest within {drop}: {best['setting']} ({best['speedup']:.2f}x, {best['top1']:.2f} %)")
        print(f"{name} on {host['cpu_class']} ({host['cpu_model']}), {torch.get_num_threads()} threads")
        args.out.mkdir(parents=True, exist_ok=True)  # write_json makes it too, but the plot comes first
        plot(record, batches, args.out / f"efficiency_{name}.png")
        path = write_json(args.out / f"efficiency_{name}.json",
                          dict(environment=environment(**host), settings=vars(args), **record))
        print(f"written to {path} and {args.out / f'efficiency_{name}.png'}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
