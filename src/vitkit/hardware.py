"""What the hardware computes natively and which cores are free: the defaults (precision, threads) depend on it."""
from __future__ import annotations

import os
import time

import torch


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX tiles); torch exposes it only privately."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def has_native_bf16(device: torch.device) -> bool:
    """bf16 matmuls run natively here (not emulated, which is slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_bf16()


def pick_threads(device: torch.device) -> int:
    """CPU threads = cores not already busy: OpenMP spin-waits on oversubscribed cores (10x slower steps measured).

    OMP_NUM_THREADS, when set, wins; on GPU the setting is left alone.
    """
    if device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        torch.set_num_threads(max(1, cores - round(busy_cores())))
    return torch.get_num_threads()


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
