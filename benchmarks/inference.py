"""Every CPU inference backend side by side, with timm's bf16: same weights, same process, alternating repeats.

    python benchmarks/inference.py                                   # ViT-S/16, batch 8 (about 6 minutes)
    python benchmarks/inference.py --model vit_cifar_patch4_32 --batch 64

Timed settings: vitkit fp32 eager (the reference every ratio of `vitkit bench --backend` uses), bf16 autocast (how
timm is usually run in bf16), the model cast to bf16, the cast model compiled with frozen weights, vitkit with int8
linear layers (vitkit.export.quantize_int8, the rest in fp32: eager, and compiled with vitkit.export.compile_int8),
and ONNX Runtime in fp32 and in int8 (onnxruntime's dynamic quantization), both built by
vitkit.export.optimize_for_inference; timm's rows (fp32 and bf16) appear when timm is importable (see
timm_import.py), torchao's dynamic int8 compiled when torchao is installed (`pip install --no-deps torchao`). Prints
images/s, the ratio to timm's autocast (else vitkit's), the share of the measured bf16 matmul peak and the largest
logit difference from fp32; writes benchmarks/results/inference.json.
"""
from __future__ import annotations

import copy
import functools
import sys
import tempfile
from typing import Any, Callable

import torch

from vitkit.bench import Timing, achieved_flops, alternating_rates, inference_fn, peak_matmul_flops, timm_twin
from vitkit.export import compile_int8, optimize_for_inference, quantize_int8
from vitkit.models.profile import count_flops
from vitkit.report import format_table, write_json

from side_by_side import environment, model_and_batch, parse_one_model
from timm_import import import_timm


def autocast_fn(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], Any]:
    """fp32 weights, bf16 matmuls: autocast casts every weight on every call."""
    model.eval()

    def step() -> torch.Tensor:
        with torch.inference_mode(), torch.autocast(x.device.type, dtype=torch.bfloat16):
            return model(x)
    return step


def torchao_int8(model: torch.nn.Module) -> torch.nn.Module | None:
    """A copy with torchao's dynamic int8 (int8 weights and activations), the well-kept library beside vitkit's own
    Int8Linear; None where torchao does not import."""
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
    except ImportError:
        return None
    copied = copy.deepcopy(model).eval()
    quantize_(copied, Int8DynamicActivationInt8WeightConfig())
    return copied


def settings(model: torch.nn.Module, x: torch.Tensor, with_timm: bool, cache: str) -> dict[str, Callable[[], Any]]:
    """Every (implementation, setting) pair as a ready-to-time step, each on its own copy of the weights; the ONNX
    files are built in `cache`."""
    twins = {"vitkit": lambda: copy.deepcopy(model)} | ({"timm": lambda: timm_twin(model)} if with_timm else {})
    steps = {"vitkit fp32": inference_fn(copy.deepcopy(model), x, "fp32")}
    for impl, make in twins.items():
        if impl != "vitkit":
            steps[f"{impl} fp32"] = inference_fn(make(), x, "fp32")
        steps[f"{impl} bf16 autocast"] = autocast_fn(make(), x)
        steps[f"{impl} bf16 weights"] = inference_fn(make(), x, "bf16")
        steps[f"{impl} bf16 compiled"] = inference_fn(torch.compile(make(), options={"freezing": True}), x, "bf16")
    steps["vitkit int8"] = inference_fn(quantize_int8(copy.deepcopy(model)), x, "int8")
    steps["vitkit int8 compiled"] = inference_fn(compile_int8(quantize_int8(copy.deepcopy(model))), x, "int8")
    if (torchao := torchao_int8(model)) is not None:
        steps["torchao int8 compiled"] = inference_fn(torch.compile(torchao), x, "fp32")
    for backend in ("ort-fp32", "ort-int8"):
        run = optimize_for_inference(model, x, backend=backend, cache_dir=cache)
        steps[backend.replace("-", " ")] = functools.partial(run, x)
    return steps


def main() -> int:
    args = parse_one_model(__doc__, model="vit_small_patch16_224", batch=8, result="inference.json")
    timm, timm_note = import_timm()
    model, x = model_and_batch(args)
    model.eval()
    with torch.inference_mode():
        reference = model(x)
    with tempfile.TemporaryDirectory() as cache:
        steps = settings(model, x, timm is not None, cache)
    errors = {name: (step().float() - reference).abs().max().item() for name, step in steps.items()}  # + compiles
    timing = Timing(args.min_time, args.repeats)
    rates = alternating_rates(steps, args.batch, timing, x.device)
    peak = peak_matmul_flops(torch.bfloat16, x.device, timing)
    flops = count_flops(model, model.cfg.img_size, model.cfg.in_chans)
    baseline = "timm bf16 autocast" if timm is not None else "vitkit bf16 autocast"
    records = [dict(model=args.model, setting=name, batch=args.batch, img_s=rate, ratio=rate / rates[baseline],
                    peak_fraction=achieved_flops(rate, flops, train=False) / peak, max_logit_error=errors[name])
               for name, rate in rates.items()]
    rows = [[r["setting"], round(r["img_s"], 1), round(r["ratio"], 2), round(100 * r["peak_fraction"], 1),
             f"{r['max_logit_error']:.3f}"] for r in records]
    print(format_table(rows, ["setting", "img/s", f"x {baseline}", "% bf16 peak", "max |logit - fp32|"]))
    print(f"{args.model}, batch {args.batch}, {torch.get_num_threads()} threads; bf16 matmul peak {peak / 1e9:.0f} "
          f"GFLOP/s; fp32 logits span {reference.abs().max().item():.2f}; {timm_note}")
    env = environment(timm=timm_note, peak_gflop_s=peak / 1e9)
    print(f"\nwritten to {write_json(args.out, dict(environment=env, results=records))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
