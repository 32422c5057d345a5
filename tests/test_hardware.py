"""Thread picking (the cores other processes leave free) and the CPU classes the precision and backend choices follow."""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vitkit import hardware


def test_pick_threads_leaves_the_busy_cores_alone(monkeypatch):
    previous = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    try:
        monkeypatch.setattr(hardware, "busy_cores", lambda: 1.2)
        assert hardware.pick_threads(torch.device("cpu")) == 3
        monkeypatch.setattr(hardware, "busy_cores", lambda: 9.0)
        assert hardware.pick_threads(torch.device("cpu")) == 1
    finally:
        torch.set_num_threads(previous)


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="reads /proc/stat (Linux)")
def test_busy_cores_sees_a_spinning_process_now():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert hardware.busy_cores() >= 0.6
    finally:
        spinner.kill()
        spinner.wait()


def test_busy_cores_falls_back_to_the_load_average_without_proc(monkeypatch):
    def no_proc():
        raise FileNotFoundError("/proc/stat")

    monkeypatch.setattr(hardware, "_cpu_times", no_proc)
    monkeypatch.setattr("os.getloadavg", lambda: (1.5, 0.0, 0.0))
    assert hardware.busy_cores() == 1.5


AVX2_EPYC = hardware.CpuKernels("x86_64", frozenset("fpu sse2 avx fma f16c avx2".split()), "AMD EPYC")
SAPPHIRE = hardware.CpuKernels("x86_64", frozenset("avx2 avx512f avx512_vnni avx512_bf16 amx_tile amx_bf16".split()))
ZEN4 = hardware.CpuKernels("x86_64", frozenset("avx2 avx512f avx512_vnni avx512_bf16".split()))
GRAVITON3 = hardware.CpuKernels("aarch64", frozenset("fp asimd sve bf16 i8mm".split()))
OLD_ARM = hardware.CpuKernels("aarch64", frozenset("fp asimd".split()))


@pytest.mark.parametrize("kernels,cpu_class,bf16,int8", [
    (AVX2_EPYC, "x86 AVX2", False, False),
    (SAPPHIRE, "x86 AVX-512 + VNNI + BF16 + AMX", True, True),
    (ZEN4, "x86 AVX-512 + VNNI + BF16", True, True),
    (hardware.CpuKernels("x86_64", frozenset({"avx2", "avx_vnni"})), "x86 AVX2 + VNNI", False, True),
    (GRAVITON3, "ARM NEON + SVE + BF16 + I8MM", True, False),
    (OLD_ARM, "ARM NEON", False, False),
])
def test_the_cpu_class_and_native_kernels_follow_the_flags(kernels, cpu_class, bf16, int8):
    assert (kernels.cpu_class, kernels.native_bf16, kernels.fast_int8) == (cpu_class, bf16, int8)


def test_this_machines_flags_are_read(monkeypatch):
    kernels = hardware.cpu_kernels()
    assert kernels.cpu_class and kernels.arch
    if Path("/proc/cpuinfo").is_file() and kernels.x86:
        assert kernels.avx2 == ("avx2" in Path("/proc/cpuinfo").read_text().split())


@pytest.mark.parametrize("kernels,expected", [(AVX2_EPYC, "fp32"), (ZEN4, "bf16"), (OLD_ARM, "fp32")])
def test_auto_precision_follows_the_cpu_class(monkeypatch, kernels, expected):
    from vitkit.train.trainer import pick_precision

    monkeypatch.setattr(hardware, "cpu_kernels", lambda: kernels)
    assert pick_precision("auto", torch.device("cpu")) == expected


def test_an_emulated_precision_asked_for_runs_with_one_warning_that_gives_the_rates(monkeypatch):
    from vitkit.train.trainer import pick_precision, precision_warning

    monkeypatch.setattr(hardware, "cpu_kernels", lambda: AVX2_EPYC)
    monkeypatch.setattr(hardware, "matmul_rates", lambda: {"fp32": 198.0, "bf16": 45.0, "int8": 4.7})
    assert pick_precision("bf16", torch.device("cpu")) == "bf16"  # as asked
    warning = precision_warning("bf16", torch.device("cpu"))
    assert "x86 AVX2; no AVX512-BF16, AMX or ARM BF16" in warning and "bf16 45 GFLOP/s against fp32 198" in warning
    assert "no VNNI or AMX" in hardware.slower_than_fp32("int8")
    monkeypatch.setattr(hardware, "cpu_kernels", lambda: ZEN4)
    assert precision_warning("bf16", torch.device("cpu")) is None and hardware.slower_than_fp32("int8") is None


def test_matmul_rates_are_measured_once_per_cpu_torch_and_threads(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(hardware, "_rate", lambda dtype: calls.append(dtype) or 100.0)
    first = hardware.matmul_rates(threads=1, cache_dir=tmp_path)
    assert first == {"fp32": 100.0, "bf16": 100.0, "int8": 100.0} and len(calls) == 3
    assert hardware.matmul_rates(threads=1, cache_dir=tmp_path) == first and len(calls) == 3  # from the cache
    hardware.matmul_rates(threads=2, cache_dir=tmp_path)
    assert len(calls) == 6  # another thread count is another measurement
    (key,) = [k for k in json.loads((tmp_path / "matmul_rates.json").read_text()) if "1 threads" in k]
    assert torch.__version__ in key and hardware.cpu_kernels().cpu_class in key



def test_bench_in_an_emulated_dtype_warns_with_the_rates(monkeypatch, capsys):
    from vitkit.cli import main

    monkeypatch.setattr(hardware, "cpu_kernels", lambda: AVX2_EPYC)
    monkeypatch.setattr(hardware, "matmul_rates", lambda: {"fp32": 198.0, "bf16": 45.0, "int8": 4.7})
    assert main(["bench", "vit_cifar_patch4_32", "--batch", "2", "--dtype", "bf16", "--threads", "1",
                 "--min-time", "0.01", "--repeats", "1", "--warmup", "1"]) == 0
    assert "bf16 45 GFLOP/s against fp32 198" in capsys.readouterr().err
