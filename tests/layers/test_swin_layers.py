"""Swin's layers: patch merging against the Swin code's slicing formula, window attention's bias and mask."""
import pytest
import torch

from vitkit.layers import PatchMerging, WindowAttention, shifted_window_mask, window_partition


def test_patch_merging_against_the_slicing_formula():
    torch.manual_seed(0)
    merge = PatchMerging(6).eval()
    x = torch.randn(2, 4, 8, 6)
    # the Swin code: x0 = x[0::2, 0::2], x1 = x[1::2, 0::2], x2 = x[0::2, 1::2], x3 = x[1::2, 1::2], concatenated
    cat = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
    expected = merge.reduction(merge.norm(cat))
    out = merge(x)
    assert out.shape == (2, 2, 4, 12)
    torch.testing.assert_close(out, expected, atol=0, rtol=0)
    assert merge.reduction.bias is None and merge.norm.normalized_shape == (24,)


def test_patch_merging_refuses_an_odd_map():
    with pytest.raises(ValueError, match="even height and width, got 3x4"):
        PatchMerging(4)(torch.zeros(1, 3, 4, 4))


def test_window_attention_bias_is_the_table_looked_up_by_offset():
    attn = WindowAttention(8, 2, (2, 2))
    with torch.no_grad():
        attn.relative_position_bias_table.copy_(torch.arange(18.0).reshape(9, 2))
    bias = attn.relative_position_bias()
    assert bias.shape == (2, 4, 4)
    # token 0 is (0, 0), token 3 is (1, 1): offset (-1, -1) is row 0; the reverse (1, 1) is row 8
    assert bias[:, 0, 3].tolist() == [0.0, 1.0] and bias[:, 3, 0].tolist() == [16.0, 17.0]
    assert bias[:, 1, 1].tolist() == [8.0, 9.0]  # no offset: the middle row


def test_a_masked_token_cannot_change_the_others():
    torch.manual_seed(0)
    attn = WindowAttention(8, 2, (4, 4)).eval()
    grid, window, shift = (8, 8), (4, 4), (2, 2)
    mask = shifted_window_mask(grid, window, shift)
    x = window_partition(torch.randn(1, *grid, 8), window)  # 4 windows of 16 tokens
    out = attn(x, mask)
    # in the last window, token 0 came from the map's interior; token 15 was wrapped from its top-left corner
    assert mask[3, 0, 15] == -100.0
    y = x.clone()
    y[3, 15] += 10.0
    changed = attn(y, mask)
    torch.testing.assert_close(changed[3, 0], out[3, 0])
    assert not torch.allclose(changed[3, 15], out[3, 15])
    unmasked = attn(y)
    assert not torch.allclose(unmasked[3, 0], attn(x)[3, 0])


def test_a_new_window_resamples_the_table_and_rebuilds_the_index():
    attn = WindowAttention(8, 2, (7, 7))
    attn.set_window((12, 12))
    assert attn.relative_position_bias_table.shape == (23 * 23, 2)
    assert attn.relative_position_index.shape == (144, 144)
    assert attn(torch.randn(3, 144, 8)).shape == (3, 144, 8)
