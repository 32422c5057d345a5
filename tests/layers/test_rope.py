import math

import pytest
import torch

from vitkit.layers import apply_rope, rope_angles, rope_frequencies, rope_tables


def test_frequencies_follow_the_vit5_formula():
    freqs = rope_frequencies(head_dim=16, theta=100.0)
    expected = torch.tensor([100.0 ** (-j / 4) for j in range(4)])
    torch.testing.assert_close(freqs, expected)


def test_angle_layout_row_half_then_column_half():
    angles = rope_angles(head_dim=8, theta=10000.0, grid=(2, 3))
    freqs = [10000.0 ** (-j / 2) for j in range(2)]
    for token in range(6):
        row, col = divmod(token, 3)
        expected = [row * f for f in freqs] + [col * f for f in freqs]
        torch.testing.assert_close(angles[token], torch.tensor(expected))


def test_rotation_matches_complex_multiplication():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 8)
    angles = rope_angles(8, 10000.0, (2, 3))
    rotated = apply_rope(x, *rope_tables(angles))
    as_complex = torch.view_as_complex(x.reshape(2, 3, 6, 4, 2).contiguous())
    expected = torch.view_as_real(as_complex * torch.polar(torch.ones_like(angles), angles)).reshape(2, 3, 6, 8)
    torch.testing.assert_close(rotated, expected, rtol=0, atol=1e-6)


def test_zero_angle_leaves_tokens_untouched_bit_for_bit():
    x = torch.randn(5, 8)
    assert torch.equal(apply_rope(x, *rope_tables(torch.zeros(5, 4))), x)


def test_scores_depend_only_on_relative_position():
    torch.manual_seed(1)
    q, k = torch.randn(8), torch.randn(8)
    cos, sin = rope_tables(rope_angles(8, 100.0, (4, 4)))

    def score(i, j):
        return (apply_rope(q, cos[i], sin[i]) * apply_rope(k, cos[j], sin[j])).sum()

    # tokens (0,0)->(1,2) and (2,1)->(3,3) have the same offset (+1, +2)
    assert math.isclose(score(0, 6), score(9, 15), rel_tol=1e-5)


def test_head_dim_must_divide_by_four():
    with pytest.raises(ValueError, match="divisible by 4"):
        rope_frequencies(6, 10000.0)


def test_positions_are_scaled_onto_the_reference_grid():
    angles = rope_angles(8, 10000.0, grid=(4, 4), ref_grid=(2, 2))
    # row position of the last row is 3/4*2 = 1.5
    assert math.isclose(angles[-1, 0].item(), 1.5)
