"""What the hardware computes natively and which cores are free: the defaults (precision, threads, inference
backend) depend on it. Choices follow the CPU's instruction sets, so one machine always gets the same path; a short
matmul measurement, cached per CPU, torch version and thread count, confirms them and gives warnings their numbers."""
from __future__ import annotations

import functools
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

RATES_VERSION = 1


@dataclass(frozen=True)
class CpuKernels:
    """The CPU's matmul instruction sets, from its flags (Linux /proc/cpuinfo, else what torch reports)."""

    arch: str
    flags: frozenset[str]
    model: str = ""

    @property
    def x86(self) -> bool:
        return self.arch in ("x86_64", "amd64", "i386", "i686")

    @property
    def avx2(self) -> bool:
        return self.x86 and "avx2" in self.flags

    @property
    def avx512(self) -> bool:
        return self.x86 and "avx512f" in self.flags

    @property
    def vnni(self) -> bool:
        """int8 dot products (AVX512-VNNI or AVX-VNNI): what makes torch's int8 matmul fast."""
        return self.x86 and bool({"avx512_vnni", "avx_vnni"} & self.flags)

    @property
    def amx(self) -> bool:
        return self.x86 and "amx_tile" in self.flags

    @property
    def native_bf16(self) -> bool:
        """bf16 matmuls in hardware (AVX512-BF16, AMX, or ARM's BF16 extension); elsewhere they are emulated."""
        if self.x86:
            return bool({"avx512_bf16", "amx_bf16"} & self.flags)
        return self.arm and "bf16" in self.flags

    @property
    def arm(self) -> bool:
        return self.arch in ("aarch64", "arm64")

    @property
    def fast_int8(self) -> bool:
        """torch._int_mm has a fast kernel here (VNNI or AMX); without one it is ~40x slower than fp32 (AVX2)."""
        return self.vnni or self.amx

    def missing_for(self, precision: str) -> str | None:
        """The instructions this CPU lacks for a native `precision` kernel (bf16, int8), or None where it has them."""
        native, needed = {"bf16": (self.native_bf16, "AVX512-BF16, AMX or ARM BF16"),
                          "int8": (self.fast_int8, "VNNI or AMX")}.get(precision, (True, ""))
        return None if native else needed

    @property
    def cpu_class(self) -> str:
        """The class the choices are made by, e.g. 'x86 AVX-512 + VNNI + BF16' or 'x86 AVX2'."""
        if self.x86:
            if not self.avx2:
                return "x86 (no AVX2)"
            base = "x86 AVX-512" if self.avx512 else "x86 AVX2"
            extras = [name for name, has in (("VNNI", self.vnni), ("BF16", self.native_bf16), ("AMX", self.amx)) if has]
            return " + ".join([base, *extras])
        if self.arm:
            extras = [name for name, has in (("SVE", "sve" in self.flags), ("BF16", self.native_bf16),
                                             ("I8MM", "i8mm" in self.flags)) if has]
            return " + ".join(["ARM NEON", *extras])
        return f"{self.arch} (unclassified)"


@functools.lru_cache(maxsize=1)
def cpu_kernels() -> CpuKernels:
    """This machine's CpuKernels (read once)."""
    arch = platform.machine().lower()
    flags, model = _proc_cpuinfo()
    if not flags:  # no /proc/cpuinfo (macOS, Windows): torch's own capability string
        capability = torch.backends.cpu.get_cpu_capability().lower()
        flags = {"avx2"} | ({"avx512f"} if "avx512" in capability else set())
        flags |= {"avx512_bf16"} if getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)() else set()
    return CpuKernels(arch, frozenset(flags), model)


def _proc_cpuinfo() -> tuple[set[str], str]:
    """The first CPU's flags (x86 'flags', ARM 'Features') and model name."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set(), ""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    flags = fields.get("flags") or fields.get("features") or ""
    return set(flags.split()), fields.get("model name") or fields.get("cpu part", "")


def matmul_rates(threads: int | None = None, cache_dir: Path | None = None) -> dict[str, float]:
    """GFLOP/s of a 1024-square matmul in fp32, bf16 and int8 on this CPU: measured once (about a second) and cached
    per CPU, torch version and thread count in the user's cache directory."""
    threads = threads or torch.get_num_threads()
    kernels = cpu_kernels()
    key = f"{kernels.model}|{kernels.cpu_class}|torch {torch.__version__}|{threads} threads|v{RATES_VERSION}"
    path = (cache_dir or user_cache_dir()) / "matmul_rates.json"
    cached = _read_json(path)
    if key in cached:
        return cached[key]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rates = {name: _rate(dtype) for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16),
                                                          ("int8", torch.int8))}
    finally:
        torch.set_num_threads(previous)
    cached[key] = rates
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cached, indent=1))
    except OSError:  # a read-only home: measure again next time
        pass
    return rates


def user_cache_dir() -> Path:
    """$XDG_CACHE_HOME/vitkit, else ~/.cache/vitkit: never beside a checkpoint, which may be read-only."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vitkit"


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _rate(dtype: torch.dtype, size: int = 1024, seconds: float = 0.25) -> float:
    """GFLOP/s of size^3 matmuls in dtype on the CPU, timed for about `seconds` after one warm-up call."""
    mm = matmul_call(dtype, size, torch.device("cpu"))
    mm()
    return timed_rate(mm, matmul_flops(size), seconds, torch.device("cpu")) / 1e9


def matmul_flops(size: int) -> int:
    """FLOPs of one size x size x size matmul (a multiply and an add per term)."""
    return 2 * size ** 3


def matmul_call(dtype: torch.dtype, size: int, device: torch.device) -> Callable[[], torch.Tensor]:
    """One dense size^3 matmul in dtype, ready to time (int8: torch._int_mm with the layout Int8Linear uses)."""
    if dtype == torch.int8:
        a = torch.randint(-127, 128, (size, size), dtype=dtype, device=device)
        b = torch.randint(-127, 128, (size, size), dtype=dtype, device=device).t()
        return functools.partial(torch._int_mm, a, b)
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    return functools.partial(torch.matmul, a, b)


def timed_rate(fn: Callable[[], Any], work: float, min_time: float, device: torch.device) -> float:
    """Work units per second over one timed repeat of at least `min_time` seconds."""
    sync(device)
    start, done = time.perf_counter(), 0.0
    while True:
        fn()
        done += work
        sync(device)
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return done / elapsed


def sync(device: torch.device) -> None:
    """Waits for queued CUDA work, so a timer reads the work done, not the work launched."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def slower_than_fp32(precision: str) -> str | None:
    """A one-line warning when `precision` (bf16 or int8) has no native kernel on this CPU, with measured rates;
    None where it is native. Runs as asked either way: the warning says what 'auto' would pick."""
    kernels = cpu_kernels()
    missing = kernels.missing_for(precision)
    if missing is None:
        return None
    rates = matmul_rates()
    return (f"{precision} has no native kernel on this CPU ({kernels.cpu_class}; no {missing}): measured matmul "
            f"{precision} {rates[precision]:.0f} GFLOP/s against fp32 {rates['fp32']:.0f} GFLOP/s. Running as asked; "
            "precision=auto (or leaving --int8/--dtype out) picks the faster path")


def has_native_bf16(device: torch.device) -> bool:
    """bf16 matmuls run natively here (not emulated, which is slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_kernels().native_bf16


def pick_threads(device: torch.device) -> int:
    """CPU threads = cores not already busy: OpenMP spin-waits on oversubscribed cores (10x slower steps measured).

    OMP_NUM_THREADS, when set, wins; on GPU the setting is left alone.
    """
    if device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, usable_cores() - round(busy_cores())))
    return torch.get_num_threads()


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def busy_cores(interval: float = 0.25) -> float:
    """Cores other processes keep busy now, from two /proc/stat samples: the 1-minute load average still counts a job
    that ended a minute ago (a run started right after another got half the cores)."""
    try:
        total_before, idle_before = _cpu_times()
        time.sleep(interval)
        total_after, idle_after = _cpu_times()
    except OSError:  # no /proc (macOS, Windows)
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    total, idle = total_after - total_before, idle_after - idle_before
    return (os.cpu_count() or 1) * (1 - idle / total) if total > 0 else 0.0


def _cpu_times() -> tuple[int, int]:
    """(all, idle + iowait) jiffies summed over the machine's CPUs."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:9]]
    return sum(fields), fields[3] + fields[4]
