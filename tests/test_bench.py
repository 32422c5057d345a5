import json
import sys

import pytest
import torch

from vitkit import create_model
from vitkit.bench import (PlainViT, Timing, achieved_flops, alternating_rates, bench, inference_fn, matmul_flops,
                          plain_twin, timm_twin)
from vitkit.cli import main
from vitkit.models.profile import count_flops


def test_bench_smoke_writes_table_and_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["bench", "vit_cifar_patch4_32", "--batch", "2", "--train", "--baseline", "--threads", "1",
            "--min-time", "0.01", "--repeats", "1", "--warmup", "0", "--json", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "vitkit" in text and "plain" in text and "matmul peak" in text
    records = json.loads(out.read_text())
    assert [r["impl"] for r in records] == ["vitkit", "plain"]
    assert all(r["img_s"] > 0 and 0 < r["peak_fraction"] for r in records)


def test_bf16_inference_runs_the_model_cast_to_bf16_close_to_fp32():
    torch.manual_seed(0)
    model = create_model("vit_cifar_patch4_32", depth=2).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        reference = model(x)
    logits = inference_fn(model, x, "bf16")()
    assert logits.dtype == torch.bfloat16 and model.head.weight.dtype == torch.bfloat16
    torch.testing.assert_close(logits.float(), reference, atol=0.05, rtol=0.05)


def test_bench_compiled_bf16_inference_smoke():
    records = bench("vit_cifar_patch4_32", batch=2, dtype="bf16", compile_=True,
                    timing=Timing(min_time=0.01, repeats=1, warmup=0))
    assert records[0]["compile"] and records[0]["img_s"] > 0 and records[0]["first_call_s"] > 0


def test_bench_int8_inference_times_the_quantized_model_against_the_int8_peak(capsys, monkeypatch):
    import vitkit.bench

    quantized = []
    real = vitkit.bench.quantize_int8
    monkeypatch.setattr(vitkit.bench, "quantize_int8", lambda model: quantized.append(model) or real(model))
    assert main(["bench", "vit_cifar_patch4_32", "--batch", "2", "--dtype", "int8", "--threads", "1",
                 "--min-time", "0.01", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "int8" in out and "measured int8 matmul peak" in out and len(quantized) == 1
    record = bench("vit_cifar_patch4_32", batch=2, dtype="int8", timing=Timing(min_time=0.01, repeats=1))[0]
    model = create_model("vit_cifar_patch4_32")
    flops = count_flops(model, model.cfg.img_size, model.cfg.in_chans)  # of the float model: int8 does the same work
    assert record["gflop_s"] == pytest.approx(record["img_s"] * flops / 1e9)
    with pytest.raises(ValueError, match="drop --train"):
        bench("vit_cifar_patch4_32", batch=2, dtype="int8", train=True)


def test_alternating_rates_rotate_the_order_so_each_function_takes_each_position():
    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    rates = alternating_rates(fns, work=1.0, timing=Timing(min_time=0.0, repeats=3, warmup=1), device=torch.device("cpu"))
    timed = calls[3:]  # after one warm-up call each
    assert [timed[i:i + 3] for i in (0, 3, 6)] == [list("abc"), list("bca"), list("cab")]
    assert list(rates) == list("abc") and all(rate > 0 for rate in rates.values())


def test_flop_arithmetic():
    assert matmul_flops(4) == 128
    assert achieved_flops(10.0, 2e9, train=False) == 2e10
    assert achieved_flops(10.0, 2e9, train=True) == 6e10


@pytest.mark.parametrize("name", ["vit_cifar_patch4_32", "vit_tiny_patch16_224"])
def test_plain_baseline_matches_vitkit_logits_and_gradients(name):
    torch.manual_seed(0)
    model = create_model(name, img_size=32, num_classes=10) if "224" in name else create_model(name)
    with torch.no_grad():  # non-trivial tokens and positions, so a mix-up of their order would show
        model.cls_token.normal_()
        model.pos_embed.normal_()
    twin = plain_twin(model)
    assert isinstance(twin, PlainViT)
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(twin(x), model(x), rtol=1e-5, atol=1e-5)
    model(x).square().sum().backward()
    twin(x).square().sum().backward()
    torch.testing.assert_close(twin.blocks[0].attn.qkv.weight.grad, model.blocks[0].attn.qkv.weight.grad,
                               rtol=1e-4, atol=1e-6)


def test_timm_twin_matches_vitkit_logits():
    pytest.importorskip("timm", reason="timm (and the torchvision it imports) not installed")
    torch.manual_seed(0)
    model = create_model("vit_cifar_patch4_32").eval()
    with torch.no_grad():
        model.pos_embed.normal_()
    twin = timm_twin(model).eval()
    assert type(twin).__module__ == "timm.models.vision_transformer"
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(twin(x), model(x), rtol=1e-5, atol=1e-5)


def test_bench_timm_without_timm_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # an import of timm now fails
    with pytest.raises(SystemExit, match="pip install timm"):
        main(["bench", "vit_cifar_patch4_32", "--batch", "1", "--timm", "--min-time", "0.01", "--repeats", "1"])


def test_plain_baseline_refuses_architectures_it_does_not_cover():
    with pytest.raises(ValueError, match="rope=True"):
        plain_twin(create_model("vit5_small_patch16_224", img_size=32))


def test_bench_best_times_the_backend_choice_beside_torch_fp32(tmp_path, capsys, monkeypatch):
    from vitkit.export import backends
    from vitkit.hardware import CpuKernels

    zen4 = CpuKernels("x86_64", frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}))
    monkeypatch.setattr(backends, "cpu_kernels", lambda: zen4)
    monkeypatch.setattr(backends, "ort_available", lambda: False)  # auto, lossless, without ORT: torch-fp32
    assert main(["bench", "vit_cifar_patch4_32", "--batch", "2", "--best", "--backend", "torch-bf16", "--threads", "1",
                 "--min-time", "0.01", "--repeats", "1", "--json", str(tmp_path / "bench.json")]) == 0
    out = capsys.readouterr().out
    assert "measured fp32 matmul peak" in out and "measured bf16 matmul peak" in out
    records = json.loads((tmp_path / "bench.json").read_text())
    assert [(r["impl"], r["dtype"]) for r in records] == [("torch-fp32 (auto)", "fp32"), ("torch-bf16", "bf16")]
    assert records[1]["ratio_to_vitkit"] == pytest.approx(records[1]["img_s"] / records[0]["img_s"])
    assert main(["bench", "vit_cifar_patch4_32", "--best", "--train"]) == 2
    assert "drop --train" in capsys.readouterr().err
