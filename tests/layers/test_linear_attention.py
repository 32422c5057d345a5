"""Linear attention against its closed forms: the N x N kernel matrix written out (elu + 1, FAVOR+ without its
stabilisers), and FAVOR+ approaching softmax attention as its random features grow."""
import math

import pytest
import torch
import torch.nn.functional as F

from vitkit.layers import Attention, FavorFeatureMap, linear_attention
from vitkit.layers.linear_attention import orthogonal_gaussian


def split_heads(attn, x):
    """q, k, v [B, H, N, d] from the layer's own qkv weights, written out."""
    batch, tokens, _ = x.shape
    qkv = x @ attn.qkv.weight.t() + attn.qkv.bias
    q, k, v = qkv.reshape(batch, tokens, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    return q, k, v


def closed_form(attn, x, phi_q, phi_k):
    """out_i = sum_j phi(q_i).phi(k_j) v_j / sum_j phi(q_i).phi(k_j), then the output projection."""
    q, k, v = split_heads(attn, x)
    kernel = torch.einsum("bhim,bhjm->bhij", phi_q(q), phi_k(k))
    out = torch.einsum("bhij,bhjd->bhid", kernel / kernel.sum(-1, keepdim=True), v)
    return out.transpose(1, 2).reshape(x.shape) @ attn.proj.weight.t() + attn.proj.bias


def test_elu_linear_attention_equals_its_closed_form():
    torch.manual_seed(0)
    attn = Attention(24, 3, kind="linear").eval()
    x = torch.randn(2, 11, 24)
    phi = lambda t: torch.where(t > 0, t + 1, t.exp())  # elu(t) + 1
    with torch.no_grad():
        torch.testing.assert_close(attn(x), closed_form(attn, x, phi, phi), rtol=1e-5, atol=1e-5)


def test_favor_attention_equals_its_closed_form_without_stabilisers():
    torch.manual_seed(0)
    attn = Attention(16, 2, kind="performer", num_features=32).eval()
    w = attn.feature_map.projection  # [m, d]
    d = attn.head_dim

    def phi(t):  # exp(w . t' - |t'|^2 / 2) / sqrt(m), t' = t / d^(1/4)
        t = t / d ** 0.25
        return torch.exp(t @ w.t() - (t * t).sum(-1, keepdim=True) / 2) / math.sqrt(w.shape[0])
    x = torch.randn(2, 9, 16) * 0.5
    with torch.no_grad():
        torch.testing.assert_close(attn(x), closed_form(attn, x, phi, phi), rtol=1e-4, atol=1e-5)


def test_favor_approaches_softmax_attention_as_features_grow():
    """The estimate is unbiased, so its error keeps shrinking (about as 1 / sqrt(features)); moderate norms keep the
    estimator's variance (which grows as exp |q + k|^2) small enough to see it in a few thousand features."""
    torch.manual_seed(0)
    q, k = (torch.randn(2, 1, 2, 16, 8) * 0.5).unbind(0)
    v = torch.randn(1, 2, 16, 8)
    exact = F.scaled_dot_product_attention(q, k, v)
    errors = []
    for features in (16, 256, 4096, 32768):
        phi = FavorFeatureMap(8, features)
        errors.append((linear_attention(phi(q, True), phi(k, False), v) - exact).abs().mean().item())
    assert errors == sorted(errors, reverse=True)
    assert errors[-1] < 0.02 * exact.abs().mean().item()


def test_orthogonal_features_are_orthogonal_within_each_block():
    torch.manual_seed(0)
    w = orthogonal_gaussian(20, 8)  # blocks of 8, 8 and 4 rows
    for block in (w[:8], w[8:16], w[16:]):
        gram = block @ block.t()
        torch.testing.assert_close(gram - torch.diag(gram.diag()), torch.zeros_like(gram), rtol=0, atol=1e-4)


@pytest.mark.parametrize("kind", ["linear", "performer"])
def test_a_per_key_weight_counts_as_that_many_copies_of_the_key(kind):
    torch.manual_seed(0)
    attn = Attention(16, 2, kind=kind).eval()
    tokens = torch.randn(1, 3, 16)
    copies = tokens[:, [0, 1, 1, 2]]
    with torch.no_grad():
        expected = attn(copies)[:, [0, 1, 3]]
        weighted = attn(tokens, attn_bias=torch.tensor([1.0, 2.0, 1.0]).log()[None, None, None])
    torch.testing.assert_close(weighted, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["linear", "performer"])
def test_attention_maps_of_linear_kinds_are_the_weights_they_apply(kind):
    torch.manual_seed(0)
    attn = Attention(16, 2, kind=kind).eval()
    x = torch.randn(2, 7, 16)
    with torch.no_grad():
        out, probs = attn(x, return_attn=True)
        torch.testing.assert_close(out, attn(x), rtol=1e-4, atol=1e-5)
    assert probs.shape == (2, 2, 7, 7) and bool((probs >= 0).all())
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 2, 7))


def test_linear_attention_refuses_a_full_bias():
    attn = Attention(16, 2, kind="linear")
    with pytest.raises(ValueError, match="per-key bias"):
        attn(torch.randn(1, 4, 16), attn_bias=torch.zeros(2, 4, 4))
