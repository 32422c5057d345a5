import numpy as np
import torch

from vitkit.analysis import position_similarity, position_table
from vitkit.analysis.position import plot_position_similarity, position_message
from vitkit.layers.pos_embed import sincos_2d

from analysis_helpers import tiny_model


def analytic_sincos_similarity(dim: int, d_row: int, d_col: int) -> float:
    """sin-cos rows have constant norm; their dot product is sum_j cos(w_j dr) + sum_j cos(w_j dc)."""
    quarter = dim // 4
    omega = 1.0 / 10000.0 ** (np.arange(quarter) / quarter)
    return (np.cos(omega * d_row).sum() + np.cos(omega * d_col).sum()) / (2 * quarter)


def test_sincos_similarity_matches_the_closed_form():
    grid, dim = (5, 7), 64
    similarity = position_similarity(sincos_2d(dim, grid), grid).numpy()
    for (r1, c1, r2, c2) in [(0, 0, 0, 0), (0, 0, 4, 6), (2, 3, 2, 5), (4, 1, 0, 1)]:
        assert np.isclose(similarity[r1, c1, r2, c2], analytic_sincos_similarity(dim, r1 - r2, c1 - c2), atol=1e-5)


def test_sincos_similarity_peaks_at_self_is_symmetric_and_decays_along_rows_and_columns():
    grid = (8, 8)
    similarity = position_similarity(sincos_2d(64, grid), grid)
    flat = similarity.reshape(64, 64)
    assert torch.allclose(flat.diagonal(), torch.ones(64))
    assert torch.equal(flat.argmax(1), torch.arange(64))
    assert torch.allclose(flat, flat.T)
    centre = similarity[3, 3]
    for step in range(3):
        assert centre[3, 3 + step] > centre[3, 4 + step] and centre[3 + step, 3] > centre[4 + step, 3]
        assert centre[3, 4 + step] > centre[4 + step, 4 + step]


def test_learned_table_leaves_out_the_class_token_row():
    model = tiny_model()
    with torch.no_grad():
        model.pos_embed[0, 1:] = sincos_2d(32, (4, 4))
    table = position_table(model)
    assert table.shape == (16, 32) and torch.equal(table, sincos_2d(32, (4, 4)))
    assert position_message(model) is None


def test_sincos_model_uses_its_fixed_table():
    model = tiny_model(pos_embed="sincos")
    assert torch.equal(position_table(model), sincos_2d(32, (4, 4)))


def test_rope_only_and_no_position_models_say_so_instead_of_plotting():
    rope_only = tiny_model(rope=True, pos_embed="none")
    assert position_table(rope_only) is None and "only with 2D RoPE" in position_message(rope_only)
    nothing = tiny_model(pos_embed="none")
    assert position_table(nothing) is None and "no position encoding" in position_message(nothing)
    both = tiny_model(rope=True)
    assert position_table(both) is not None and "RoPE" in position_message(both)


def test_wrong_table_size_is_a_clear_error():
    try:
        position_similarity(torch.randn(17, 8), (4, 4))
    except ValueError as error:
        assert "17 entries" in str(error) and "patch entries only" in str(error)
    else:
        raise AssertionError("a 17-row table on a 4x4 grid must be rejected")


def test_similarity_plot_is_written(tmp_path):
    path = plot_position_similarity(position_similarity(sincos_2d(32, (3, 4)), (3, 4)), tmp_path / "p.png")
    assert path.stat().st_size > 0
