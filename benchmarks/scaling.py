"""How training speed and activation memory grow with sequence length, depth and width; SDPA vs the math path; and
the faster attentions (linear, Performer, windowed) against softmax attention from 64 to 4096 tokens.

    python benchmarks/scaling.py                       # all three sweeps; ~20 min on 2 cores
    python benchmarks/scaling.py --sweeps attention    # the attention variants alone; ~12 min on 2 cores
    python benchmarks/scaling.py --device cuda --model vit_base_patch16_224 --batch 32

Sequence length: image sizes 224 -> 512 at patch 16 (197 -> 1025 tokens), each timed with SDPA's default kernel
(flash attention, never materialising the N x N matrix) and with its math backend (the explicit softmax(QK^T)V of
the paper), alternating. Activation memory is the bytes autograd saves for the backward pass (counted by a
saved-tensor hook, so it is the same measure on CPU and GPU); on CUDA the peak allocated memory is reported too.
Gradient checkpointing is measured at every image size: the memory it saves and the speed it costs.

Attention variants (--sweeps attention): a ViT-Ti-wide model of --attention-depth blocks, without class token, on
square grids of --attention-tokens patches (patch 16, so 4096 tokens is a 1024-pixel image), each step timed with
softmax attention (SDPA), linear attention (elu + 1), Performer (FAVOR+) and windowed attention (8 x 8 windows in
every block, no global ones: the windowed blocks' own cost), alternating; the table names the token count from which
each one trains faster than softmax attention.
Prints a table, writes benchmarks/results/scaling.json, scaling.png and scaling_attention.png.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402

from vitkit.bench import Timing, add_timing_arguments, alternating_rates, train_fn  # noqa: E402
from vitkit.models import create_model  # noqa: E402
from vitkit.report import format_table, write_json  # noqa: E402

RESULTS = Path(__file__).parent / "results"
VARIANTS = {"sdpa": {}, "math": {"backend": SDPBackend.MATH}, "sdpa + checkpointing": {"grad_checkpointing": True}}
ATTENTIONS = {"softmax": {}, "linear (elu+1)": {"model": {"attention": "linear"}},
              "performer (FAVOR+)": {"model": {"attention": "performer"}},
              "windowed 8x8": {"model": {"window_size": 8}}}
SWEEPS = ("image size", "depth/width", "attention")


def saved_activation_bytes(model: torch.nn.Module, x: torch.Tensor, backend: SDPBackend | None) -> int:
    """Bytes autograd keeps for the backward pass of one forward (parameters excluded)."""
    seen = {p.untyped_storage().data_ptr() for p in model.parameters()}
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        storage = tensor.untyped_storage()  # q, k and v are views of one qkv buffer: count each storage once
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
        return tensor

    with _backend(backend), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x).float().sum().backward()
    model.zero_grad(set_to_none=True)
    return total


def _backend(backend: SDPBackend | None):
    return sdpa_kernel(backend) if backend is not None else contextlib.nullcontext()


def measure(name: str, overrides: dict, batch: int, device: torch.device, timing: Timing,
            variants: dict[str, dict] = VARIANTS) -> list[dict]:
    """Training images/s and activation memory of one configuration, for each variant: an SDPA backend, gradient
    checkpointing or model fields of its own."""
    records, steps = [], {}
    for variant, extra in variants.items():
        torch.manual_seed(0)
        model = create_model(name, num_classes=10, **overrides, **extra.get("model", {})).to(device)
        model.set_grad_checkpointing(extra.get("grad_checkpointing", False))
        x = torch.randn(batch, model.cfg.in_chans, *model.cfg.img_size, device=device)
        backend = extra.get("backend")
        step = train_fn(model, x, "fp32", 10)
        steps[variant] = (lambda step=step, backend=backend: _run(step, backend))
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        activations = saved_activation_bytes(model, x, backend)
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        records.append(dict(model=name, **overrides, tokens=model.cfg.num_patches + model.cfg.num_prefix_tokens,
                            variant=variant, batch=batch, activation_mib=activations / 2**20, peak_mib=peak))
    rates = alternating_rates(steps, batch, timing, device)
    for record in records:
        record["img_s"] = rates[record["variant"]]
    return records


def _run(step, backend: SDPBackend | None) -> None:
    with _backend(backend):
        step()


def overtakes(records: list[dict]) -> dict[str, int | None]:
    """The smallest token count from which each attention variant trains faster than softmax at every larger one."""
    sweep = [r for r in records if r["sweep"] == "attention"]
    softmax = {r["tokens"]: r["img_s"] for r in sweep if r["variant"] == "softmax"}
    found = {}
    for variant in ATTENTIONS:
        if variant == "softmax":
            continue
        faster = sorted((r["tokens"], r["img_s"] > softmax[r["tokens"]]) for r in sweep if r["variant"] == variant)
        found[variant] = next((tokens for i, (tokens, _) in enumerate(faster) if all(f for _, f in faster[i:])), None)
    return found


def plot(records: list[dict], sweep_name: str, variants, path: Path) -> None:
    """img/s and activation memory against tokens, one line per variant, for one sweep over sequence length."""
    fig, (speed, memory) = plt.subplots(1, 2, figsize=(10, 4))
    sweep = [r for r in records if r["sweep"] == sweep_name]
    for variant in variants:
        rows = sorted((r for r in sweep if r["variant"] == variant), key=lambda r: r["tokens"])
        tokens = [r["tokens"] for r in rows]
        speed.plot(tokens, [r["img_s"] for r in rows], marker="o", label=variant)
        memory.plot(tokens, [r["activation_mib"] for r in rows], marker="o", label=variant)
    log_x = "log" if sweep_name == "attention" else "linear"
    speed.set(xlabel="tokens", ylabel="training images/s", title="speed", yscale="log", xscale=log_x)
    memory.set(xlabel="tokens", ylabel="saved activations (MiB)", title="activation memory", yscale="log",
               xscale=log_x)
    for ax in (speed, memory):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{sweep[0]['model']}, batch {sweep[0]['batch']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vit_tiny_patch16_224")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 320, 384, 448, 512])
    parser.add_argument("--shapes", nargs="+", default=["192x6", "192x12", "384x6", "384x12"],
                        help="width x depth pairs for the depth/width sweep at 224")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--sweeps", nargs="+", choices=SWEEPS, default=list(SWEEPS))
    parser.add_argument("--attention-tokens", type=int, nargs="+", default=[64, 256, 1024, 2304, 4096],
                        help="square token counts for the attention sweep")
    parser.add_argument("--attention-depth", type=int, default=4, help="blocks of the attention sweep's model")
    parser.add_argument("--attention-batch", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    add_timing_arguments(parser, repeats=2)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device, timing = torch.device(args.device), Timing(args.min_time, args.repeats, warmup=1)
    records = []
    for size in args.sizes if "image size" in args.sweeps else []:
        records += [dict(r, sweep="image size") for r in measure(args.model, {"img_size": size}, args.batch, device,
                                                                  timing)]
        print(f"image size {size} done", file=sys.stderr, flush=True)
    for shape in args.shapes if "depth/width" in args.sweeps else []:
        width, depth = (int(v) for v in shape.split("x"))
        found = measure(args.model, {"embed_dim": width, "depth": depth, "num_heads": width // 64}, args.batch,
                        device, timing)
        records += [dict(r, sweep="depth/width") for r in found]
        print(f"width {width} depth {depth} done", file=sys.stderr, flush=True)
    for tokens in args.attention_tokens if "attention" in args.sweeps else []:
        side = math.isqrt(tokens)
        if side * side != tokens:
            parser.error(f"--attention-tokens: {tokens} is not a square grid (64, 256, 1024, ...)")
        overrides = dict(img_size=16 * side, depth=args.attention_depth, class_token=False, global_pool="avg")
        found = measure(args.model, overrides, args.attention_batch, device, timing, ATTENTIONS)
        records += [dict(r, sweep="attention") for r in found]
        print(f"attention at {tokens} tokens done", file=sys.stderr, flush=True)
    rows = [[r["sweep"], r.get("img_size", 224), r.get("embed_dim", "-"), r.get("depth", "-"), r["tokens"],
             r["variant"], round(r["img_s"], 2), round(r["activation_mib"], 1),
             "n/a" if r["peak_mib"] is None else round(r["peak_mib"], 1)] for r in records]
    print(format_table(rows, ["sweep", "img", "width", "depth", "tokens", "variant", "img/s", "activations MiB",
                              "peak MiB"]))
    crossings = overtakes(records) if "attention" in args.sweeps else {}
    for variant, tokens in crossings.items():
        print(f"{variant}: trains faster than softmax attention from {tokens} tokens on" if tokens else
              f"{variant}: slower than softmax attention at every measured length")
    path = write_json(RESULTS / "scaling.json", dict(settings=vars(args), results=records,
                                                     faster_than_softmax_from=crossings))
    pictures = []
    for sweep, variants, name in (("image size", VARIANTS, "scaling.png"), ("attention", ATTENTIONS,
                                                                            "scaling_attention.png")):
        if sweep in args.sweeps:
            plot(records, sweep, variants, RESULTS / name)
            pictures.append(str(RESULTS / name))
    print(f"\nwritten to {path} and {', '.join(pictures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
