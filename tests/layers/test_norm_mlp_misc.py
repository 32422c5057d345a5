import pytest
import torch
import torch.nn.functional as F

from vitkit.layers import (DropPath, GluMlp, LayerScale, RMSNorm, TokenGroupNorm, TokenPool, drop_path_rates,
                           make_mlp, make_norm, resample_pos_embed, sincos_2d)


def test_rmsnorm_formula_and_fp32_compute():
    torch.manual_seed(0)
    norm = RMSNorm(16, eps=1e-6)
    norm.weight.data = torch.randn(16)
    x = torch.randn(3, 16)
    expected = x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    torch.testing.assert_close(norm(x), expected)
    assert norm(x.bfloat16()).dtype == torch.bfloat16


def test_rmsnorm_keeps_float64_precision():
    """fp32 compute is a floor for bf16, not a ceiling: a float64 model (gradcheck, references) must stay float64."""
    torch.manual_seed(0)
    norm = RMSNorm(16, eps=1e-6).double()
    norm.weight.data = torch.randn(16, dtype=torch.float64)
    x = torch.randn(3, 16, dtype=torch.float64)
    expected = x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    torch.testing.assert_close(norm(x), expected, rtol=0, atol=1e-12)


def test_token_groupnorm_equals_groupnorm_applied_to_each_token():
    torch.manual_seed(0)
    norm = TokenGroupNorm(64, eps=1e-6)
    norm.weight.data, norm.bias.data = torch.randn(64), torch.randn(64)
    x = torch.randn(2, 5, 64)
    expected = F.group_norm(x.reshape(10, 64, 1), 32, norm.weight, norm.bias, eps=1e-6).reshape(2, 5, 64)
    torch.testing.assert_close(norm(x), expected, rtol=0, atol=1e-5)


def test_unknown_norm_lists_choices():
    with pytest.raises(ValueError, match="layernorm"):
        make_norm("batchnorm", 8)


def test_swiglu_is_silu_gate_times_value():
    torch.manual_seed(0)
    mlp = GluMlp(8, 12, act="swiglu")
    x = torch.randn(4, 8)
    value, gate = x @ mlp.fc1.weight[:12].T + mlp.fc1.bias[:12], x @ mlp.fc1.weight[12:].T + mlp.fc1.bias[12:]
    expected = (gate * torch.sigmoid(gate) * value) @ mlp.fc2.weight.T + mlp.fc2.bias
    torch.testing.assert_close(mlp(x), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind,act", [("gelu", lambda t: F.gelu(t)), ("gelu_tanh", lambda t: F.gelu(t, approximate="tanh")),
                                      ("relu", torch.relu), ("silu", F.silu)])
def test_plain_mlp_activations(kind, act):
    mlp = make_mlp(kind, 8, 16)
    x = torch.randn(3, 8)
    torch.testing.assert_close(mlp(x), mlp.fc2(act(mlp.fc1(x))))


def test_drop_path_drops_whole_samples_and_keeps_the_mean():
    torch.manual_seed(0)
    layer = DropPath(0.25).train()
    out = layer(torch.ones(4000, 3, 2))
    per_sample = out.reshape(4000, -1)
    assert set(per_sample.unique().tolist()) <= {0.0, torch.tensor(1 / 0.75).item()}
    assert torch.all(per_sample.min(1).values == per_sample.max(1).values)
    assert abs(out.mean().item() - 1.0) < 0.05
    assert torch.equal(layer.eval()(torch.ones(2, 3)), torch.ones(2, 3))


def test_drop_path_schedules():
    assert drop_path_rates(5, 0.2, "linear") == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    assert drop_path_rates(3, 0.05, "constant") == [0.05] * 3


def test_layer_scale_scales_per_channel():
    assert torch.equal(LayerScale(4, 1e-4)(torch.ones(2, 4)), torch.full((2, 4), 1e-4))


def test_sincos_table_matches_the_formula():
    table = sincos_2d(8, (2, 3))
    omega = [1.0, 0.01]
    row, col = 1, 2  # token 5
    expected = [torch.sin(torch.tensor(row * w)) for w in omega] + [torch.cos(torch.tensor(row * w)) for w in omega] + \
               [torch.sin(torch.tensor(col * w)) for w in omega] + [torch.cos(torch.tensor(col * w)) for w in omega]
    torch.testing.assert_close(table[5], torch.stack(expected))


@pytest.mark.parametrize("antialias", [True, False])
def test_resample_keeps_prefix_tokens_and_constants(antialias):
    prefix = torch.randn(1, 2, 4)
    table = torch.cat([prefix, torch.full((1, 9, 4), 0.5)], dim=1)
    out = resample_pos_embed(table, (5, 4), (3, 3), num_prefix_tokens=2, antialias=antialias)
    assert out.shape == (1, 22, 4)
    assert torch.equal(out[:, :2], prefix)
    torch.testing.assert_close(out[:, 2:], torch.full((1, 20, 4), 0.5))


def test_pooling():
    x = torch.arange(2 * 6 * 1, dtype=torch.float32).reshape(2, 6, 1)
    assert torch.equal(TokenPool("token", 1, 1, 0)(x), x[:, 0])
    assert torch.equal(TokenPool("token", 2, 2, 0)(x), x[:, :2].mean(1))
    assert torch.equal(TokenPool("avg", 1, 1, 2)(x), x[:, 1:4].mean(1))
    with pytest.raises(ValueError, match="needs a class token"):
        TokenPool("token", 0, 0, 0)
