"""The seed ViT-5 variant's sigmoid gates against the formula written out by hand (only the module's parameters)."""
import pytest
import torch

from vitkit.layers import Attention
from vitkit.models import create_model


def tiny_seed_block():
    """Block 0 of a vit5seed model shrunk to width 32 (4 heads), weights and biases all random, in float64."""
    torch.manual_seed(0)
    model = create_model("vit5seed_small_patch16_224", img_size=32, embed_dim=32, depth=1, num_heads=4,
                         num_classes=3)
    block = model.blocks[0].double().eval()
    with torch.no_grad():
        for name, param in block.named_parameters():  # norm gains away from 1, biases away from 0: each one counts
            param.copy_(torch.randn_like(param) * 0.3 + (1.0 if "norm" in name else 0.0))
    return block


def rms(x, weight, eps):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def attention_by_hand(h, p, heads, gate=True):
    """softmax(q k^T / sqrt(d)) v per head, heads concatenated, times sigmoid(W_g h + b_g), then the projection."""
    batch, tokens, dim = h.shape
    head_dim = dim // heads
    qkv = h @ p["qkv.weight"].T + (p["qkv.bias"] if "qkv.bias" in p else 0)
    q, k, v = qkv[..., :dim], qkv[..., dim:2 * dim], qkv[..., 2 * dim:]
    outs = []
    for i in range(heads):
        cols = slice(i * head_dim, (i + 1) * head_dim)
        scores = q[..., cols] @ k[..., cols].transpose(-2, -1) / head_dim ** 0.5
        weights = torch.exp(scores - scores.amax(-1, keepdim=True))
        outs.append(weights / weights.sum(-1, keepdim=True) @ v[..., cols])
    concat = torch.cat(outs, dim=-1)
    if gate:
        concat = torch.sigmoid(h @ p["gate.proj.weight"].T + p["gate.proj.bias"]) * concat
    return concat @ p["proj.weight"].T + p["proj.bias"]


def test_seed_preset_turns_both_gates_on():
    """The vit5seed presets are the only gated models: their blocks must carry both gates."""
    block = tiny_seed_block()
    assert block.attn.gate is not None and block.ffn_gate is not None
    assert tuple(block.attn.gate.proj.weight.shape) == (32, 32) and tuple(block.ffn_gate.proj.weight.shape) == (32, 32)


@pytest.mark.parametrize("explicit", [False, True])
def test_seed_block_equals_the_gated_formula(explicit):
    """Both attention paths and the FFN must apply the gate exactly where the formula does, not just agree."""
    block = tiny_seed_block()
    p = {k: v.detach() for k, v in block.named_parameters()}
    eps = block.norm1.eps
    x = torch.randn(2, 7, 32, dtype=torch.float64)
    # attention branch: h = RMSNorm(x); x1 = x + W_o (sigmoid(W_g h + b_g) * MHA_concat(h)) + b_o  (no qkv bias)
    h = rms(x, p["norm1.weight"], eps)
    attn_params = {k[len("attn."):]: v for k, v in p.items() if k.startswith("attn.")}
    assert "qkv.bias" not in attn_params
    x1 = x + attention_by_hand(h, attn_params, heads=4)
    # FFN branch: h2 = RMSNorm(x1); x2 = x1 + sigmoid(W_f h2 + b_f) * (W_2 (silu(W_g' h2) * (W_v h2)) + b_2)
    h2 = rms(x1, p["norm2.weight"], eps)
    hidden = p["mlp.fc2.weight"].shape[1]
    fc1 = h2 @ p["mlp.fc1.weight"].T + p["mlp.fc1.bias"]
    value, gate_in = fc1[..., :hidden], fc1[..., hidden:]
    ffn = (gate_in * torch.sigmoid(gate_in) * value) @ p["mlp.fc2.weight"].T + p["mlp.fc2.bias"]
    expected = x1 + torch.sigmoid(h2 @ p["ffn_gate.proj.weight"].T + p["ffn_gate.proj.bias"]) * ffn
    with torch.no_grad():
        out = block(x, return_attn=True)[0] if explicit else block(x)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("explicit", [False, True])
def test_attention_gate_alone_in_float32(explicit):
    """The gate on a bare Attention module (float32, with qkv bias): sigmoid(W_g x + b_g) scales the heads' output."""
    torch.manual_seed(1)
    attn = Attention(32, 4, gate=True).eval()
    with torch.no_grad():
        for param in attn.parameters():
            param.copy_(torch.randn_like(param) * 0.3)
    x = torch.randn(3, 9, 32)
    p = {k: v.detach() for k, v in attn.named_parameters()}
    expected = attention_by_hand(x, p, heads=4)
    ungated = attention_by_hand(x, p, heads=4, gate=False)
    with torch.no_grad():
        out = attn(x, return_attn=True)[0] if explicit else attn(x)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    assert (out - ungated).abs().max() > 0.1  # the gate changes the output: the comparison above sees it
