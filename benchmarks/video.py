"""Video ViTs on Moving Fashion-MNIST on this CPU: accuracy of the four designs in the same minutes, inflation
against training from scratch, and how speed and activation memory grow with the clip length.

    python benchmarks/video.py accuracy            # 5 runs of 20 minutes (+ ~1 min of data and evaluation each)
    python benchmarks/video.py speed               # clips/s and activation memory at 8, 16, 32 frames (~10 min)
    python benchmarks/video.py accuracy --minutes 0.2 --train-clips 64 --test-clips 32 --only divided   # a smoke run

accuracy: configs/moving_fashion_{frames,joint,divided,factorised}.yaml from scratch, and the divided recipe inflated
from the Fashion-MNIST budget model (../shared/checkpoints/fashion_mnist_budget), each with
schedule.time_budget_minutes = minutes - 1, at least 3 seconds (generating the clips and the final evaluation lie
outside the clock).
Writes benchmarks/results/video_accuracy.json and .png (test top-1 at each evaluation against the training minutes
before it).
speed: each design's training step (forward, cross-entropy, backward, AdamW; the recipes' precision, as `auto`
picks it here) and no-grad forward, alternating, on random clips of 8, 16 and 32 frames; forward GFLOPs per clip
(attention matmuls included); activation memory is the bytes autograd saves for the backward pass in the step's
precision (a saved-tensor hook, the same measure as benchmarks/scaling.py; in bf16 on a CPU the attention takes the
explicit path, which keeps the N x N probabilities, where fp32's fused kernel keeps O(N)).
Writes benchmarks/results/video_speed.json and .png.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from vitkit.bench import Timing, add_timing_arguments, alternating_rates, inference_fn, train_fn  # noqa: E402
from vitkit.models.profile import count_flops  # noqa: E402
from vitkit.report import format_table, write_json  # noqa: E402
from vitkit.train import resolve_config, train  # noqa: E402
from vitkit.train.trainer import build_model, pick_precision  # noqa: E402

from scaling import saved_activation_bytes  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
RESULTS = Path(__file__).parent / "results"
DESIGNS = ("frames", "joint", "divided", "factorised")
INFLATED = "divided inflated"
OUTSIDE_THE_CLOCK_MINUTES = 1.0  # generating 12,000 clips, the final evaluation of 2,000, the last checkpoint


def recipe(design: str) -> Path:
    return ROOT / "configs" / f"moving_fashion_{design.split()[0]}.yaml"


def run_design(design: str, minutes: float, output_dir: Path, dataset: str, extra: list[str]) -> dict:
    """One recipe for `minutes`; the summary, the clips/s and the accuracy curve of its evaluations."""
    overrides = [f"data.dataset={dataset}", f"schedule.time_budget_minutes={max(minutes - OUTSIDE_THE_CLOCK_MINUTES, 0.05)}",
                 f"name={design.replace(' ', '-')}-{minutes:g}min", f"output_dir={output_dir}", *extra]
    if design == INFLATED:
        overrides.append(f"finetune.init_from={SHARED / 'checkpoints' / 'fashion_mnist_budget'}")
    start = time.time()
    result = train(recipe(design), overrides)
    summary, used = result.summary, (time.time() - start) / 60
    batch = resolve_config(recipe(design), overrides).data.batch_size
    return dict(design=design, budget_minutes=minutes, minutes_used=round(used, 1),
                params=sum(p.numel() for p in result.model.parameters()), passes=summary["epochs"],
                steps=summary["steps"], clips_s=round(summary["steps"] * batch / summary["train_seconds"], 1),
                top1=round(summary["final_top1"], 2), best_top1=round(summary["best"], 2),
                precision=summary["precision"], curve=curve(Path(summary["run_dir"])), overrides=extra)


def curve(run_dir: Path) -> list[tuple[float, float]]:
    """(training minutes, test top-1) at each evaluation, from metrics.jsonl (evaluation time not counted)."""
    points, seconds = [], 0.0
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("kind") == "epoch":
            seconds += record["epoch_seconds"]
            if "val_top1" in record:
                points.append((round(seconds / 60, 2), round(record["val_top1"], 2)))
    return points


def accuracy(args: argparse.Namespace) -> int:
    fashion = SHARED / "datasets" / "fashion-mnist"
    if not fashion.exists():
        print(f"Fashion-MNIST is expected in {fashion}", file=sys.stderr)
        return 1
    dataset = f"moving-fashion:{fashion}?train_clips={args.train_clips}&test_clips={args.test_clips}"
    results = []
    for design in args.only or (*DESIGNS, INFLATED):
        results.append(run_design(design, args.minutes, Path(args.output_dir), dataset, args.overrides))
        print(f"{design}: {results[-1]['top1']} % after {results[-1]['minutes_used']} min", file=sys.stderr,
              flush=True)
    rows = [[r["design"], f"{r['params'] / 1e6:.2f}M", r["budget_minutes"], r["minutes_used"], r["passes"],
             r["clips_s"], r["top1"], r["best_top1"], r["precision"]] for r in results]
    print(format_table(rows, ["design", "params", "budget (min)", "used (min)", "passes", "clips/s", "top-1 (%)",
                              "best (%)", "precision"]))
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        ax.plot(*zip(*r["curve"]) if r["curve"] else ([], []), marker="o", label=r["design"])
    ax.axhline(50, color="grey", linestyle=":", label="axis only (frames as a set)")
    ax.set(xlabel="training minutes", ylabel="test top-1 (%)", title="Moving Fashion-MNIST direction (8 classes)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path = write_json(args.out, dict(settings=vars(args), results=results))
    fig.tight_layout()
    fig.savefig(path.with_suffix(".png"), dpi=110)
    print(f"\nwritten to {path} and {path.with_suffix('.png')}")
    return 0


def speed(args: argparse.Namespace) -> int:
    timing = Timing(args.min_time, args.repeats, warmup=1)
    device = torch.device("cpu")
    records = []
    for frames in args.frames:
        for design in args.only or DESIGNS:
            cfg = resolve_config(recipe(design), [f"model.num_frames={frames}"])
            dtype = args.dtype if args.dtype != "auto" else pick_precision("auto", device)
            torch.manual_seed(0)
            model = build_model(cfg, num_classes=8, in_chans=1)
            x = torch.randn(args.batch, 1, frames, *model.cfg.img_size)
            gflops = count_flops(model, (frames, *model.cfg.img_size), in_chans=1) / 1e9
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):  # as the step computes
                activations = saved_activation_bytes(model, x, None) / args.batch
            steps = {"train": train_fn(model, x, dtype, 8)}
            rates = alternating_rates(steps, args.batch, timing, device)
            rates |= alternating_rates({"infer": inference_fn(model, x, dtype)}, args.batch, timing, device)
            tokens = frames // model.cfg.tubelet_size * model.cfg.num_patches
            records.append(dict(design=design, frames=frames, tokens=tokens, gflops=gflops, batch=args.batch,
                                dtype=dtype, train_clips_s=rates["train"], infer_clips_s=rates["infer"],
                                activation_mib_per_clip=activations / 2**20))
            print(f"{design} {frames} frames: {rates['train']:.1f} clips/s", file=sys.stderr, flush=True)
    rows = [[r["design"], r["frames"], r["tokens"], round(r["gflops"], 2), r["dtype"], round(r["train_clips_s"], 2),
             round(r["infer_clips_s"], 2), round(r["activation_mib_per_clip"], 1)] for r in records]
    print(format_table(rows, ["design", "frames", "tokens", "GFLOPs/clip", "dtype", "train clips/s",
                              "infer clips/s", "activations MiB/clip"]))
    fig, (fast, memory) = plt.subplots(1, 2, figsize=(10, 4))
    for design in args.only or DESIGNS:
        rows = [r for r in records if r["design"] == design]
        fast.plot([r["frames"] for r in rows], [r["train_clips_s"] for r in rows], marker="o", label=design)
        memory.plot([r["frames"] for r in rows], [r["activation_mib_per_clip"] for r in rows], marker="o",
                    label=design)
    fast.set(xlabel="frames", ylabel="training clips/s", yscale="log", title="speed")
    memory.set(xlabel="frames", ylabel="saved activations per clip (MiB)", yscale="log", title="activation memory")
    for ax in (fast, memory):
        ax.grid(alpha=0.3)
        ax.legend()
    path = write_json(args.out, dict(settings=vars(args), results=records))
    fig.tight_layout()
    fig.savefig(path.with_suffix(".png"), dpi=110)
    print(f"\nwritten to {path} and {path.with_suffix('.png')}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    acc = sub.add_parser("accuracy", help="the designs (and inflation) for the same minutes")
    acc.add_argument("--only", nargs="+", choices=[*DESIGNS, INFLATED])
    acc.add_argument("--minutes", type=float, default=20.0)
    acc.add_argument("--train-clips", type=int, default=10_000)
    acc.add_argument("--test-clips", type=int, default=2_000)
    acc.add_argument("--output-dir", default="runs/video")
    acc.add_argument("--out", type=Path, default=RESULTS / "video_accuracy.json", help="the JSON; the PNG beside it")
    acc.add_argument("overrides", nargs="*", help="extra recipe overrides, e.g. precision=fp32")
    fast = sub.add_parser("speed", help="clips/s and activation memory against the number of frames")
    fast.add_argument("--only", nargs="+", choices=DESIGNS)
    fast.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32])
    fast.add_argument("--batch", type=int, default=8)
    fast.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"])
    fast.add_argument("--out", type=Path, default=RESULTS / "video_speed.json", help="the JSON; the PNG beside it")
    add_timing_arguments(fast, min_time=2.0, repeats=2)
    args = parser.parse_args()
    if getattr(args, "threads", 0):
        torch.set_num_threads(args.threads)
    return accuracy(args) if args.what == "accuracy" else speed(args)


if __name__ == "__main__":
    sys.exit(main())
