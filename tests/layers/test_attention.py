import pytest
import torch
from torch import nn

from vitkit.layers import Attention, alibi_2d_bias, rope_angles, rope_tables


def test_matches_torch_multihead_attention():
    torch.manual_seed(0)
    attn = Attention(dim=32, num_heads=4).eval()
    reference = nn.MultiheadAttention(32, 4, batch_first=True).eval()
    with torch.no_grad():
        reference.in_proj_weight.copy_(attn.qkv.weight)
        reference.in_proj_bias.copy_(attn.qkv.bias)
        reference.out_proj.weight.copy_(attn.proj.weight)
        reference.out_proj.bias.copy_(attn.proj.bias)
    x = torch.randn(2, 10, 32)
    expected, _ = reference(x, x, x, need_weights=False)
    torch.testing.assert_close(attn(x), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("qk_norm", [None, "layernorm", "rmsnorm"])
@pytest.mark.parametrize("with_rope,with_bias", [(False, False), (True, False), (False, True)])
def test_explicit_path_equals_fused_path(qk_norm, with_rope, with_bias):
    torch.manual_seed(0)
    attn = Attention(32, 4, qk_norm=qk_norm, gate=True).eval()
    x = torch.randn(2, 17, 32)
    rope = rope_tables(torch.cat([torch.zeros(1, 4), rope_angles(8, 10000.0, (4, 4))])) if with_rope else None
    bias = alibi_2d_bias(4, (4, 4), num_prefix_tokens=1) if with_bias else None
    fused = attn(x, rope, bias)
    explicit, probs = attn(x, rope, bias, return_attn=True)
    torch.testing.assert_close(explicit, fused, rtol=0, atol=1e-5)
    assert probs.shape == (2, 4, 17, 17)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 4, 17))


def test_alibi_bias_is_minus_slope_times_distance():
    bias = alibi_2d_bias(num_heads=2, grid=(3, 3), num_prefix_tokens=1, num_suffix_tokens=2)
    assert bias.shape == (2, 12, 12)
    assert torch.all(bias[:, 0] == 0) and torch.all(bias[:, :, -2:] == 0)
    # patch (0,0) is token 1, patch (2,1) is token 1 + 7; distance sqrt(5); head slopes 2^-4, 2^-8
    torch.testing.assert_close(bias[:, 1, 8], -torch.tensor([2 ** -4, 2 ** -8]) * 5 ** 0.5)


def test_heads_must_divide_dim():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        Attention(30, 4)


@pytest.mark.parametrize("with_bias", [False, True])
def test_bf16_on_cpu_matches_fp32_attention_in_value_and_gradient(with_bias):
    # bf16 on a CPU takes the explicit path (faster there than SDPA); it must still be the same attention
    torch.manual_seed(0)
    attn = Attention(32, 4).train()
    x = torch.randn(3, 17, 32, requires_grad=True)
    bias = alibi_2d_bias(4, (4, 4), num_prefix_tokens=1) if with_bias else None
    expected = attn(x, attn_bias=bias)
    expected_grads = torch.autograd.grad(expected.square().sum(), [x, attn.qkv.weight])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attn(x, attn_bias=bias)
    grads = torch.autograd.grad(out.float().square().sum(), [x, attn.qkv.weight])
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, rtol=0.05, atol=0.03)
    for grad, reference in zip(grads, expected_grads):
        torch.testing.assert_close(grad, reference, rtol=0.05, atol=0.05 * reference.abs().max().item())
