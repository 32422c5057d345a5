import json

import pytest
import torch
from torch import nn

from vitkit import create_model
from vitkit.export import Int8Linear, Int8Mlp, compile_int8, quantize_int8
from vitkit.export.quantize import NEGATIVE_PEAK
from vitkit.layers.mlp import PLAIN_ACTS, Mlp
from vitkit.cli import main
from vitkit.inference import evaluate_on, load_model
from vitkit.train import train

SMALL = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_classes=10)


def fake_quantized_linear(linear: nn.Linear, x: torch.Tensor, absmax: torch.Tensor | None = None) -> torch.Tensor:
    """The same int8 scheme in float64: round to the int8 grid, multiply back, matmul in float."""
    w, x = linear.weight.double(), x.double()
    w_scale = w.abs().amax(1, keepdim=True) / 127
    x_scale = (x.abs().amax(-1, keepdim=True) if absmax is None else absmax.double()) / 127
    w_q, x_q = (w / w_scale).round() * w_scale, (x / x_scale).round() * x_scale
    return x_q @ w_q.T + linear.bias.double()


@pytest.mark.parametrize("shape", [(1, 40), (3, 7, 40), (2, 65, 40)])
def test_int8_linear_is_the_int8_grid_matmul(shape):
    torch.manual_seed(0)
    linear = nn.Linear(40, 24)
    x = torch.randn(shape)
    out = Int8Linear(linear)(x)
    assert out.shape == (*shape[:-1], 24) and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), fake_quantized_linear(linear, x), rtol=1e-5, atol=1e-5)
    float_out = linear(x)
    assert (out - float_out).abs().max() < 0.02 * float_out.abs().max()  # int8 rounding, not a different function


def test_int8_linear_keeps_bf16_activations_bf16():
    linear = nn.Linear(16, 8, bias=False)
    out = Int8Linear(linear)(torch.randn(4, 16, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16


@pytest.mark.parametrize("act", sorted(NEGATIVE_PEAK))
def test_negative_peak_is_the_largest_activation_magnitude_below_zero(act):
    h = torch.linspace(-8, 0, 800_001, dtype=torch.float64)
    largest = PLAIN_ACTS[act]()(h).abs().max().item()
    assert largest <= NEGATIVE_PEAK[act] < largest + 1e-4  # a bound, and a tight one


@pytest.mark.parametrize("act", ["gelu", "silu"])
def test_int8_mlp_is_the_int8_grid_mlp(act):
    torch.manual_seed(0)
    mlp = Mlp(32, 128, act=act).eval()
    x = torch.randn(3, 9, 32)
    with torch.no_grad():
        out = Int8Mlp(mlp)(x)
        hidden = fake_quantized_linear(mlp.fc1, x)
        reference = fake_quantized_linear(mlp.fc2, mlp.act(hidden))  # each row's true largest |activation|
    torch.testing.assert_close(out.double(), reference, rtol=1e-4, atol=1e-4)


def test_int8_mlp_keeps_rows_whose_activations_are_all_negative_on_the_grid():
    torch.manual_seed(0)
    mlp = Mlp(16, 64).eval()
    with torch.no_grad():
        mlp.fc1.bias.fill_(-1.0)  # every hidden unit near -1: GELU ~ -0.16, all below zero
        x = torch.randn(4, 16) * 0.1
        out = Int8Mlp(mlp)(x)
        hidden = fake_quantized_linear(mlp.fc1, x)
        peak = torch.full((4, 1), NEGATIVE_PEAK["gelu"])
        reference = fake_quantized_linear(mlp.fc2, mlp.act(hidden), peak)  # the scale is the bound, not the row's
        measured = fake_quantized_linear(mlp.fc2, mlp.act(hidden))
    assert (hidden < 0).all() and (reference - measured).abs().max() > 1e-4  # the two grids differ here
    torch.testing.assert_close(out.double(), reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("act, bounded", [(nn.SiLU(), True), (nn.GELU(approximate="tanh"), True), (nn.Tanh(), False)])
def test_the_bound_follows_an_activation_swapped_after_building(act, bounded):
    mlp = Mlp(16, 64, act="gelu").eval()
    mlp.act = act
    if bounded:
        assert Int8Mlp(mlp).negative_peak == pytest.approx(act(torch.linspace(-8, 0, 80_001)).abs().max().item(),
                                                           abs=1e-4)
    else:
        with pytest.raises(ValueError, match="two Int8Linear"):
            Int8Mlp(mlp)


def test_quantize_int8_swaps_the_block_linears_and_leaves_the_rest():
    model = quantize_int8(create_model("vit_cifar_patch4_32", **SMALL))
    int8 = [name for name, m in model.named_modules() if isinstance(m, Int8Linear)]
    assert len(int8) == 2 * 4  # qkv, proj, fc1, fc2 per block
    assert all(name.startswith("blocks.") for name in int8)
    assert all(isinstance(block.mlp, Int8Mlp) for block in model.blocks)
    assert isinstance(model.head, nn.Linear) and not model.training


@pytest.mark.parametrize("fields", [dict(mlp="swiglu"), dict(mlp_norm=True)])
def test_quantize_int8_measures_the_activations_where_no_bound_applies(fields):
    torch.manual_seed(0)
    model = create_model("vit_cifar_patch4_32", **SMALL, **fields).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        reference = model(x)
        out = quantize_int8(model)(x)
    assert not any(isinstance(m, Int8Mlp) for m in model.modules())
    assert sum(isinstance(m, Int8Linear) for m in model.modules()) == 2 * 4
    torch.testing.assert_close(out, reference, rtol=0, atol=0.05 * reference.abs().max().item())


@pytest.mark.parametrize("native", [True, False])
def test_int8_attention_runs_in_bf16_only_where_bf16_is_native(native, monkeypatch):
    from vitkit.export import quantize

    monkeypatch.setattr(quantize, "has_native_bf16", lambda device: native)
    torch.manual_seed(0)
    model = create_model("vit_cifar_patch4_32", **SMALL).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        reference = model(x)
        quantize_int8(model)
        assert all(b.attn.compute_dtype == (torch.bfloat16 if native else None) for b in model.blocks)
        out = model(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, reference, rtol=0, atol=0.05 * reference.abs().max().item())


def test_attention_compute_dtype_casts_q_k_v_and_returns_the_input_dtype():
    from vitkit.layers.attention import Attention

    torch.manual_seed(0)
    attn = Attention(64, 4).eval()
    x = torch.randn(2, 10, 64)
    with torch.no_grad():
        reference, reference_probs = attn(x, return_attn=True)
        attn.compute_dtype = torch.bfloat16
        out, probs = attn(x, return_attn=True)
    assert out.dtype == torch.float32 and probs.dtype == torch.bfloat16
    torch.testing.assert_close(out, reference, rtol=0, atol=2e-2)
    torch.testing.assert_close(probs.float(), reference_probs, rtol=0, atol=1e-2)


def test_quantize_int8_refuses_what_is_not_a_vit():
    with pytest.raises(TypeError, match="VisionTransformer"):
        quantize_int8(nn.Sequential(nn.Linear(4, 4)))


def test_int8_model_keeps_the_accuracy_of_a_trained_model(tmp_path, monkeypatch):
    from vitkit.export import backends

    torch.manual_seed(0)
    train(overrides=["model.embed_dim=64", "model.depth=2", "model.num_heads=4", "schedule.epochs=20",
                     "schedule.warmup_epochs=1",
                     "logging.progress=false", "data.num_workers=0", f"output_dir={tmp_path}", "name=digits"])
    fp32 = evaluate_on(load_model(tmp_path / "digits"), "digits")
    monkeypatch.setattr(backends, "compile_int8", lambda model: model)  # the same integers, without ~20 s compiling
    assert main(["eval", str(tmp_path / "digits"), "--data", "digits", "--backend", "torch-int8",
                 "--out", str(tmp_path / "int8")]) == 0
    int8 = json.loads((tmp_path / "int8" / "eval.json").read_text())
    assert int8["backend"] == "torch-int8" and int8["int8"]
    assert isinstance(load_model(tmp_path / "digits", int8=True).blocks[0].mlp.fc1, Int8Linear)
    assert fp32["top1"] > 80  # a model worth quantizing
    assert abs(int8["top1"] - fp32["top1"]) <= 1.5


def test_save_pretrained_refuses_an_int8_model_and_says_what_to_do(tmp_path):
    from vitkit import save_pretrained

    with pytest.raises(ValueError, match="int8=True"):
        save_pretrained(quantize_int8(create_model("vit_cifar_patch4_32", **SMALL)), tmp_path / "ckpt")
    assert not (tmp_path / "ckpt").exists()


def test_compiled_int8_model_computes_what_the_eager_one_does():
    torch.manual_seed(0)
    model = quantize_int8(create_model("vit_cifar_patch4_32", **SMALL))
    x = torch.randn(4, 3, 32, 32)
    with torch.inference_mode():
        eager = model(x)
        compiled = compile_int8(model)(x)
    torch.testing.assert_close(compiled, eager, rtol=1e-3, atol=1e-3)  # the same integers; only float order differs
