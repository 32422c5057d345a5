import itertools
import json

import numpy as np
import torch

from vitkit.analysis import collect_attention, mean_attention_distance, token_layout, uniform_attention_distance
from vitkit.analysis.distance import distance_table, plot_attention_distance

from analysis_helpers import tiny_config, tiny_model


def brute_force_mean_distance(rows: int, cols: int, stride: int) -> float:
    """Mean Euclidean distance over all ordered pairs of patch centres, by explicit loops."""
    cells = list(itertools.product(range(rows), range(cols)))
    total = sum(np.hypot(r1 - r2, c1 - c2) for (r1, c1), (r2, c2) in itertools.product(cells, cells))
    return stride * total / len(cells) ** 2


def test_attention_to_itself_has_distance_zero():
    layout = token_layout(tiny_config())
    tokens = layout.patches.stop
    probs = torch.eye(tokens).expand(2, 2, tokens, tokens)
    assert torch.equal(mean_attention_distance(probs, layout), torch.zeros(2, 2, dtype=torch.float64))


def test_uniform_attention_gives_the_mean_pairwise_patch_distance():
    for img_size, patch in [(32, 8), ((24, 40), 8), (32, 4)]:
        layout = token_layout(tiny_config(img_size=img_size, patch_size=patch))
        tokens = layout.patches.stop
        probs = torch.full((1, 3, tokens, tokens), 1.0 / tokens)
        expected = brute_force_mean_distance(*layout.grid, patch)
        assert np.allclose(mean_attention_distance(probs, layout).numpy(), expected, rtol=1e-9)
        assert np.isclose(uniform_attention_distance(layout.grid, patch), expected, rtol=1e-9)


def test_attention_to_the_horizontal_neighbour_is_one_patch_away():
    layout = token_layout(tiny_config())
    rows, cols = layout.grid
    probs = torch.zeros(1, 1, layout.patches.stop, layout.patches.stop)
    for r, c in itertools.product(range(rows), range(cols)):
        neighbour = c + 1 if c + 1 < cols else c - 1
        probs[0, 0, 1 + r * cols + c, 1 + r * cols + neighbour] = 1.0
    probs[0, 0, 0, 0] = 1.0
    assert torch.allclose(mean_attention_distance(probs, layout), torch.tensor([[8.0]], dtype=torch.float64))


def test_attention_on_the_class_token_does_not_count_as_short_range():
    layout = token_layout(tiny_config())
    tokens = layout.patches.stop
    probs = torch.full((1, 1, tokens, tokens), 0.5 / (tokens - 1))
    probs[..., 0] = 0.5
    expected = brute_force_mean_distance(*layout.grid, 8)
    assert np.isclose(mean_attention_distance(probs, layout).item(), expected)


def test_a_model_with_zero_queries_and_keys_attends_uniformly_in_every_layer():
    model = tiny_model(rope=True, pos_embed="none", reg_tokens=2)
    for block in model.blocks:
        block.attn.qkv.weight.data[:64] = 0
        block.attn.qkv.bias.data[:64] = 0
    maps = collect_attention(model, torch.randn(2, 3, 32, 32))
    layout = token_layout(model.cfg)
    measured = torch.stack([mean_attention_distance(p, layout) for p in maps])
    assert torch.allclose(measured, torch.full_like(measured, brute_force_mean_distance(4, 4, 8)))


def test_distance_table_is_json_with_one_row_per_layer(tmp_path):
    layout = token_layout(tiny_config())
    distances = np.array([[1.0, 2.0], [3.0, 5.0]])
    table = distance_table(distances, layout, num_images=7)
    assert json.loads(json.dumps(table))["layers"][1] == {"layer": 1, "mean": 4.0, "heads": [3.0, 5.0]}
    assert table["num_images"] == 7 and table["image_size"] == [32, 32]
    assert plot_attention_distance(distances, layout, tmp_path / "d.png").stat().st_size > 0
