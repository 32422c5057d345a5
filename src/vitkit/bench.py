"""Speed of a model on this device: images/s, achieved FLOP/s and its fraction of the measured matmul peak.

Side by side, vitkit is timed against a plain PyTorch ViT with the same weights (PlainViT below), in the same
process with alternating repeats, so ratios stay meaningful on a shared, noisy machine.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn
import torch.nn.functional as F

from .export import compile_int8, optimize_for_inference, quantize_int8
from .hardware import matmul_call, matmul_flops, sync, timed_rate
from .models import create_model
from .models.profile import count_flops
from .models.vision_transformer import apply_token_merging

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.int8}
PEAK_OF = {"int4": "bf16"}  # the int4 kernel multiplies bf16 activations by bf16-dequantized weights


@dataclass(frozen=True)
class Timing:
    """How long to measure: `repeats` timed runs of at least `min_time` seconds after `warmup` calls."""

    min_time: float = 1.0
    repeats: int = 3
    warmup: int = 2


def add_timing_arguments(parser: argparse.ArgumentParser, min_time: float = 1.0, repeats: int = 3) -> None:
    """The knobs every speed measurement shares, `vitkit bench` and the benchmark scripts alike."""
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--min-time", type=float, default=min_time, help="seconds per timed repeat")
    parser.add_argument("--repeats", type=int, default=repeats, help="timed repeats; the median is reported")


# ----- arithmetic ---------------------------------------------------------------------------------------------------
def achieved_flops(images_per_s: float, forward_flops_per_image: float, train: bool) -> float:
    """FLOP/s actually done: a training step costs forward + backward = 3x the forward FLOPs."""
    return images_per_s * forward_flops_per_image * (3 if train else 1)


# ----- timing -------------------------------------------------------------------------------------------------------
def alternating_rates(fns: dict[str, Callable[[], Any]], work: float, timing: Timing,
                      device: torch.device) -> dict[str, float]:
    """Median rate of each function, with their repeats interleaved so load changes hit all of them alike, and the
    order rotated each round: a fixed order measured a 0.98-1.11x spread between the same two models by position."""
    for fn in fns.values():
        for _ in range(timing.warmup):
            fn()
    names = list(fns)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(timing.repeats):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            rates[name].append(timed_rate(fns[name], work, timing.min_time, device))
    return {name: statistics.median(rates[name]) for name in names}


@functools.lru_cache(maxsize=None)
def peak_matmul_flops(dtype: torch.dtype, device: torch.device, timing: Timing, size: int = 2048) -> float:
    """The device's measured dense matmul FLOP/s for this dtype: the yardstick for model FLOPs utilisation."""
    return alternating_rates({"mm": matmul_call(dtype, size, device)}, matmul_flops(size), timing, device)["mm"]


# ----- the plain baseline -------------------------------------------------------------------------------------------
class PlainAttention(nn.Module):
    """Textbook multi-head attention over SDPA."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))


class PlainMlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class PlainBlock(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int, qkv_bias: bool, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = PlainAttention(dim, heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = PlainMlp(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PlainViT(nn.Module):
    """The ViT a competent user writes in an afternoon; parameter names match vitkit's so weights load as they are."""

    def __init__(self, img_size: int, patch: int, dim: int, depth: int, heads: int, hidden: int, num_classes: int,
                 in_chans: int = 3, qkv_bias: bool = True, eps: float = 1e-6) -> None:
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(in_chans, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + (img_size // patch) ** 2, dim))
        self.blocks = nn.ModuleList([PlainBlock(dim, heads, hidden, qkv_bias, eps) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])


def plain_twin_gaps(cfg: Any) -> list[str]:
    """The config fields (as 'field=value') that a PlainViT cannot reproduce; empty when it can."""
    plain = dict(mlp="gelu", norm="layernorm", qk_norm=False, init_values=None, class_token=True, num_class_tokens=1,
                 dist_token=False, reg_tokens=0, pos_embed="learned", no_embed_class=False, rope=False, alibi=False,
                 global_pool="token", fc_norm=False, representation_size=None, backbone=None, conv_stem=(),
                 attn_gate=False, ffn_gate=False, mlp_norm=False, mlp_bias=True, proj_bias=True, patch_drop_rate=0.0,
                 attention="softmax", window_size=0, token_merging=0, block_widths=None)
    gaps = [f"{key}={getattr(cfg, key)!r}" for key, value in plain.items() if getattr(cfg, key) != value]
    return gaps + ([f"img_size={cfg.img_size!r}"] if cfg.img_size[0] != cfg.img_size[1] else [])


def plain_twin(model: nn.Module) -> PlainViT:
    """A PlainViT with `model`'s architecture and weights; raises if the config is beyond a plain ViT."""
    return _twin(model, "the plain baseline", lambda cfg: PlainViT(
        cfg.img_size[0], cfg.patch_size, cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.mlp_hidden_dim,
        cfg.num_classes, cfg.in_chans, cfg.qkv_bias, cfg.norm_eps))


def timm_twin(model: nn.Module) -> nn.Module:
    """timm's VisionTransformer with `model`'s architecture and weights (the same key names as the plain twin)."""
    from timm.models.vision_transformer import VisionTransformer as TimmViT

    return _twin(model, "the timm comparison", lambda cfg: TimmViT(
        img_size=cfg.img_size[0], patch_size=cfg.patch_size, in_chans=cfg.in_chans, num_classes=cfg.num_classes,
        embed_dim=cfg.embed_dim, depth=cfg.depth, num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio,
        qkv_bias=cfg.qkv_bias))


def _twin(model: nn.Module, what: str, build: Callable[[Any], nn.Module]) -> nn.Module:
    """Builds another implementation of `model`'s plain-ViT architecture and loads `model`'s weights into it."""
    gaps = plain_twin_gaps(model.cfg)
    if gaps:
        raise ValueError(f"{what} only covers the original ViT; this model has {', '.join(gaps)}")
    twin = build(model.cfg)
    twin.load_state_dict(model.state_dict())
    return twin.to(next(model.parameters()).device)


# ----- one benchmark ------------------------------------------------------------------------------------------------
def _autocast(device: torch.device, dtype: str):
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[dtype])


def inference_fn(model: nn.Module, x: torch.Tensor, dtype: str) -> Callable[[], Any]:
    """One no-grad forward pass of the model cast to `dtype`: deployed inference needs no fp32 master weights, and
    skipping autocast's per-call weight casts is faster (the model is cast in place). int8: a model already passed
    through quantize_int8, whose other layers run in fp32 (faster than bf16 around int8 matmuls, measured)."""
    if dtype == "int8":
        dtype = "fp32"
    model.eval().to(DTYPES[dtype])
    x = x.to(DTYPES[dtype])

    def step() -> torch.Tensor:
        with torch.inference_mode():
            return model(x)
    return step


def train_fn(model: nn.Module, x: torch.Tensor, dtype: str, num_classes: int) -> Callable[[], Any]:
    """One full training step: forward, cross-entropy, backward, AdamW (fused on CUDA and CPU)."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, fused=True)
    y = torch.randint(0, num_classes, (x.shape[0],), device=x.device)

    def step() -> None:
        with _autocast(x.device, dtype):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def fused_attention_ok(model: nn.Module, x: torch.Tensor, dtype: str) -> bool | None:
    """On CUDA, whether attention runs a flash / memory-efficient SDPA kernel (checked by refusing the math path)."""
    if x.device.type != "cuda":
        return None
    from torch.nn.attention import SDPBackend, sdpa_kernel

    try:
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]), torch.no_grad(), \
                _autocast(x.device, dtype):
            model(x)
    except RuntimeError:
        return False
    return True


def _first_call_seconds(fn: Callable[[], Any], device: torch.device) -> float:
    """The first call's time: with --compile this is the compile time."""
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def bench(name: str, batch: int = 32, dtype: str = "fp32", train: bool = False, compile_: bool = False,
          baseline: bool = False, timm: bool = False, device: str = "cpu", timing: Timing = Timing(),
          token_merging: int | tuple[int, ...] = 0) -> list[dict[str, Any]]:
    """Benchmarks one preset (and its plain and timm twins): one record per implementation. token_merging: r tokens
    merged per block in vitkit's model (ToMe; the twins cannot merge, so it goes without them)."""
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {tuple(DTYPES)}")
    if dtype == "int8" and (train or baseline or timm):
        raise ValueError("int8 times vitkit's inference alone (quantize_int8 rewrites vitkit's blocks): drop --train, "
                         "--baseline and --timm; benchmarks/inference.py sets int8 beside timm's bf16")
    dev = torch.device(device)
    torch.manual_seed(0)
    model = create_model(name).to(dev)
    if token_merging:
        apply_token_merging(model, token_merging)
    cfg = model.cfg
    models = {"vitkit": model}
    if baseline:
        models["plain"] = plain_twin(model)
    if timm:
        models["timm"] = timm_twin(model)
    x = torch.randn(batch, cfg.in_chans, *cfg.img_size, device=dev)
    flops = count_flops(model, cfg.img_size, cfg.in_chans)
    if dtype == "int8":
        quantize_int8(model)  # after counting: the FLOP counter knows nn.Linear, and int8 does the same arithmetic
    make = functools.partial(train_fn, num_classes=cfg.num_classes) if train else inference_fn
    fns, first = {}, {}
    for label, module in models.items():
        if not compile_:
            runnable = module
        elif dtype == "int8":
            runnable = compile_int8(module)
        else:  # inference compiles frozen: weights become constants that inductor prepacks for oneDNN and fuses around
            runnable = torch.compile(module, options=None if train else {"freezing": True})
        fns[label] = make(runnable, x, dtype)
        first[label] = _first_call_seconds(fns[label], dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    rates = alternating_rates(fns, batch, timing, dev)
    memory = torch.cuda.max_memory_allocated(dev) / 2 ** 20 if dev.type == "cuda" else None  # max over impls
    fused = {label: fused_attention_ok(module, x, dtype) for label, module in models.items()}
    peak = peak_matmul_flops(DTYPES[dtype], dev, timing)
    records = []
    for label, rate in rates.items():
        achieved = achieved_flops(rate, flops, train)
        records.append(dict(model=name, impl=label, mode="train" if train else "infer", dtype=dtype, batch=batch,
                            compile=compile_, token_merging=token_merging, threads=torch.get_num_threads(), img_s=rate,
                            ratio_to_vitkit=rate / rates["vitkit"], gflop_s=achieved / 1e9,
                            peak_gflop_s=peak / 1e9, peak_fraction=achieved / peak,
                            first_call_s=first[label], peak_mem_mib=memory, fused_sdpa=fused[label]))
    return records


def bench_backends(name: str, backends: Sequence[str], batch: int = 8, allow_int8: bool = False,
                   timing: Timing = Timing(), token_merging: int | tuple[int, ...] = 0) -> list[dict[str, Any]]:
    """Inference images/s of backends ("auto": optimize_for_inference's choice) beside torch-fp32, alternating, so
    the choice can be checked on the machine it was made for. ONNX files are built afresh in a temporary folder:
    first_call_s is each backend's whole set-up (export, quantization, compilation) plus one call."""
    torch.manual_seed(0)
    model = create_model(name).eval()
    if token_merging:
        apply_token_merging(model, token_merging)
    cfg = model.cfg
    x = torch.randn(batch, cfg.in_chans, *cfg.img_size)
    flops = count_flops(model, cfg.img_size, cfg.in_chans)
    built, chosen = {}, None
    with tempfile.TemporaryDirectory() as cache:
        for asked in dict.fromkeys(["torch-fp32", *backends]):
            start = time.perf_counter()
            backend = optimize_for_inference(model, x, allow_int8, asked, cache)
            built.setdefault(backend.name, (functools.partial(backend, x), time.perf_counter() - start))
            chosen = backend.name if asked == "auto" else chosen
        rates = alternating_rates({label: fn for label, (fn, _) in built.items()}, batch, timing, x.device)
    records = []
    for label, rate in rates.items():
        dtype = label.split("-")[1]
        peak = peak_matmul_flops(DTYPES[PEAK_OF.get(dtype, dtype)], x.device, timing)
        achieved = achieved_flops(rate, flops, train=False)
        records.append(dict(model=name, impl=label + (" (auto)" if label == chosen else ""), mode="infer",
                            dtype=dtype, batch=batch, compile=label == "torch-int8", token_merging=token_merging,
                            threads=torch.get_num_threads(), img_s=rate, ratio_to_vitkit=rate / rates["torch-fp32"],
                            gflop_s=achieved / 1e9, peak_gflop_s=peak / 1e9, peak_fraction=achieved / peak,
                            first_call_s=built[label][1], peak_mem_mib=None, fused_sdpa=None))
    return records
