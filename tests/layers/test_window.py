"""Windows over an NHWC map, each operation against a reference built by hand, token by token."""
import pytest
import torch

from vitkit.layers import (pad_to_windows, relative_position_index, resize_relative_position_table, shifted_window_mask,
                           window_partition, window_reverse, window_shift)
from vitkit.layers.window import MASKED


def brute_force_partition(x, window):
    """Window k of image b (row-major over the grid of windows) lists its tokens row by row."""
    batch, height, width, _ = x.shape
    wh, ww = window
    out = []
    for b in range(batch):
        for top in range(0, height, wh):
            for left in range(0, width, ww):
                out.append(torch.stack([x[b, top + i, left + j] for i in range(wh) for j in range(ww)]))
    return torch.stack(out)


@pytest.mark.parametrize("grid,window", [((4, 6), (2, 3)), ((6, 6), (3, 3)), ((4, 4), (4, 4)), ((8, 4), (2, 1))])
def test_partition_matches_the_brute_force_order_and_reverse_inverts_it(grid, window):
    x = torch.randn(2, *grid, 5)
    windows = window_partition(x, window)
    assert torch.equal(windows, brute_force_partition(x, window))
    assert torch.equal(window_reverse(windows, window, grid), x)
    assert torch.equal(window_partition(window_reverse(windows, window, grid), window), windows)


def test_a_map_that_does_not_tile_is_refused():
    with pytest.raises(ValueError, match="a 5x4 map does not tile into 2x2 windows"):
        window_partition(torch.zeros(1, 5, 4, 3), (2, 2))


def brute_force_mask(grid, window, shift):
    """After rolling by -shift, the token at (i, j) came from ((i + s) mod H, (j + s) mod W). Two tokens of a window
    may attend to each other only if the roll moved both, or neither, across each edge of the map."""
    height, width = grid
    wh, ww = window
    masks = []
    for top in range(0, height, wh):
        for left in range(0, width, ww):
            cells = [(top + i, left + j) for i in range(wh) for j in range(ww)]
            wrapped = [(i + shift[0] >= height, j + shift[1] >= width) for i, j in cells]
            masks.append(torch.tensor([[0.0 if p == q else MASKED for q in wrapped] for p in wrapped]))
    return torch.stack(masks)


@pytest.mark.parametrize("grid,window,shift", [((8, 8), (4, 4), (2, 2)), ((6, 9), (3, 3), (1, 1)),
                                               ((12, 8), (4, 4), (2, 2)), ((7, 14), (7, 7), (0, 3))])
def test_shift_mask_matches_where_the_tokens_came_from(grid, window, shift):
    assert torch.equal(shifted_window_mask(grid, window, shift), brute_force_mask(grid, window, shift))


def test_only_the_windows_on_the_wrap_edges_are_masked():
    mask = shifted_window_mask((8, 8), (4, 4), (2, 2))
    assert mask.shape == (4, 16, 16)
    assert not mask[0].any()  # the top-left window holds one region
    assert mask[1].any() and mask[2].any() and mask[3].any()


def test_window_shift_is_half_a_window_except_where_one_window_covers_the_axis():
    assert window_shift((56, 56), (7, 7)) == (3, 3)
    assert window_shift((7, 7), (7, 7)) == (0, 0)
    assert window_shift((7, 14), (7, 7)) == (0, 3)
    assert window_shift((16, 16), (4, 4)) == (2, 2)


def test_relative_position_index_of_a_2x2_window_by_hand():
    # tokens (0,0) (0,1) (1,0) (1,1); offsets (dy, dx) in -1..1 index the 3x3 table as (dy + 1) * 3 + (dx + 1)
    expected = torch.tensor([[4, 3, 1, 0],
                             [5, 4, 2, 1],
                             [7, 6, 4, 3],
                             [8, 7, 5, 4]])
    assert torch.equal(relative_position_index((2, 2)), expected)


@pytest.mark.parametrize("window", [(3, 3), (2, 4), (7, 7)])
def test_relative_position_index_names_each_pairs_offset(window):
    wh, ww = window
    cells = [(i, j) for i in range(wh) for j in range(ww)]
    expected = torch.tensor([[(yq - yk + wh - 1) * (2 * ww - 1) + (xq - xk + ww - 1) for yk, xk in cells]
                             for yq, xq in cells])
    index = relative_position_index(window)
    assert torch.equal(index, expected)
    assert index.max() == (2 * wh - 1) * (2 * ww - 1) - 1 and index.min() == 0


def test_resizing_the_bias_table():
    table = torch.randn(13 * 13, 3)
    assert resize_relative_position_table(table, (7, 7), (7, 7)) is table
    constant = torch.full((13 * 13, 3), 0.5)
    resized = resize_relative_position_table(constant, (7, 7), (12, 12))
    assert resized.shape == (23 * 23, 3)
    torch.testing.assert_close(resized, torch.full_like(resized, 0.5))
    with pytest.raises(ValueError, match="does not fit a 6x6 window"):
        resize_relative_position_table(table, (6, 6), (7, 7))


@pytest.mark.parametrize("grid,window", [((5, 7), (2, 3)), ((4, 6), (2, 3)), ((3, 3), (4, 4))])
def test_padding_appends_zeros_to_the_next_multiple_and_cropping_undoes_it(grid, window):
    x = torch.randn(2, *grid, 3)
    padded = pad_to_windows(x, window)
    rows, cols = -(-grid[0] // window[0]) * window[0], -(-grid[1] // window[1]) * window[1]
    assert padded.shape == (2, rows, cols, 3)
    assert torch.equal(padded[:, :grid[0], :grid[1]], x)
    assert not padded[:, grid[0]:].any() and not padded[:, :, grid[1]:].any()
    windows = window_partition(padded, window)
    assert torch.equal(window_reverse(windows, window, (rows, cols))[:, :grid[0], :grid[1]], x)


@pytest.mark.parametrize("grid,window", [((5, 7), 3), ((4, 4), 2), ((3, 5), 8)])
@pytest.mark.parametrize("with_rope", [False, True])
def test_windowed_attention_equals_attention_over_each_windows_real_tokens(grid, window, with_rope):
    """Brute force: for every window, gather its tokens that lie on the grid (no padding) and run the attention on
    them alone, with their own RoPE rows."""
    from vitkit.layers import Attention, rope_angles, rope_tables, windowed_attention

    torch.manual_seed(0)
    attn = Attention(16, 2).eval()
    x = torch.randn(2, grid[0] * grid[1], 16)
    rope = rope_tables(rope_angles(8, 100.0, grid)) if with_rope else None
    with torch.no_grad():
        out, probs = windowed_attention(attn, x, grid, window, rope, return_attn=True)
        torch.testing.assert_close(windowed_attention(attn, x, grid, window, rope), out, rtol=0, atol=1e-5)
        expected = torch.empty_like(x)
        for top in range(0, grid[0], window):
            for left in range(0, grid[1], window):
                members = [r * grid[1] + c for r in range(top, min(top + window, grid[0]))
                           for c in range(left, min(left + window, grid[1]))]
                table = tuple(t[members] for t in rope) if rope else None
                expected[:, members] = attn(x[:, members], table)
                outside = [i for i in range(x.shape[1]) if i not in members]
                assert not probs[:, :, members][..., outside].any()
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 2, x.shape[1]))
