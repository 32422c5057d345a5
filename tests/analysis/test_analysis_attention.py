import numpy as np
import pytest
import torch

from vitkit.analysis import (attention_rollout, class_attention, collect_attention, register_attention,
                             register_share, rollout_map, token_layout)
from vitkit.analysis.attention import check_attention_maps

from analysis_helpers import tiny_config, tiny_model


def numpy_rollout(layers: list[np.ndarray]) -> np.ndarray:
    """Reference rollout for one image: layers of [H, T, T], written independently with numpy."""
    result = np.eye(layers[0].shape[-1])
    for attn in layers:
        mixed = 0.5 * np.eye(attn.shape[-1]) + 0.5 * attn.mean(0)
        mixed /= mixed.sum(-1, keepdims=True)
        result = mixed @ result
    return result


def test_rollout_of_identity_attention_is_the_identity():
    tokens = 17
    maps = [torch.eye(tokens).expand(1, 2, tokens, tokens)] * 3
    rollout = attention_rollout(maps)
    assert torch.allclose(rollout[0], torch.eye(tokens))


def test_identity_rollout_maps_are_uniform_over_the_image():
    with_cls = token_layout(tiny_config())
    rollout = torch.eye(17)[None]
    assert torch.equal(rollout_map(rollout, with_cls), torch.zeros(1, 4, 4))
    pooled = token_layout(tiny_config(class_token=False, global_pool="avg"))
    assert torch.allclose(rollout_map(torch.eye(16)[None], pooled), torch.full((1, 4, 4), 1 / 16))


def test_rollout_of_uniform_attention_has_the_closed_form():
    tokens, depth = 17, 3
    uniform = torch.full((1, 4, tokens, tokens), 1 / tokens)
    rollout = attention_rollout([uniform] * depth)[0].double()
    expected = (1 - 0.5 ** depth) / tokens + 0.5 ** depth * torch.eye(tokens, dtype=torch.float64)
    assert torch.allclose(rollout, expected, atol=1e-6)


def test_rollout_matches_a_numpy_reference_on_random_attention():
    generator = torch.Generator().manual_seed(1)
    layers = [torch.rand(2, 3, 10, 10, generator=generator).softmax(-1) for _ in range(4)]
    rollout = attention_rollout(layers)
    for image in range(2):
        expected = numpy_rollout([layer[image].double().numpy() for layer in layers])
        assert np.allclose(rollout[image].numpy(), expected, atol=1e-6)


def test_class_attention_puts_each_head_where_the_class_token_looks():
    layout = token_layout(tiny_config())
    probs = torch.zeros(1, 2, 17, 17)
    probs[0, 0, 0, 1 + 2 * 4 + 3] = 1.0
    probs[0, 1, 0, 0] = 0.5
    probs[0, 1, 0, 1] = 0.5
    maps = class_attention(probs, layout)
    assert maps.shape == (1, 2, 4, 4)
    assert maps[0, 0, 2, 3] == 1 and maps[0, 0].sum() == 1
    assert maps[0, 1, 0, 0] == 0.5 and maps[0, 1].sum() == 0.5


def test_several_class_tokens_are_averaged_and_no_class_token_uses_the_patch_mean():
    layout = token_layout(tiny_config(num_class_tokens=2))
    probs = torch.zeros(1, 1, 18, 18)
    probs[0, 0, 0, 2] = probs[0, 0, 1, 3] = 1.0
    assert class_attention(probs, layout)[0, 0, 0, :2].tolist() == [0.5, 0.5]
    pooled = token_layout(tiny_config(class_token=False, global_pool="avg"))
    probs = torch.zeros(1, 1, 16, 16)
    probs[0, 0, :, 5] = 1.0
    expected = torch.zeros(4, 4)
    expected[1, 1] = 1.0
    assert torch.equal(class_attention(probs, pooled)[0, 0], expected)


@pytest.mark.parametrize("position", ["prefix", "suffix"])
def test_register_rows_and_share_are_found_wherever_registers_sit(position):
    layout = token_layout(tiny_config(reg_tokens=2, reg_position=position))
    registers = list(range(1, 3)) if position == "prefix" else [17, 18]
    probs = torch.zeros(1, 2, 19, 19)
    probs[0, :, registers[1], layout.patches.start + 5] = 1.0
    probs[0, :, 0, registers[0]] = 0.3
    probs[0, :, 0, 0] = 0.7
    maps = register_attention(probs, layout)
    assert maps.shape == (1, 2, 4, 4) and maps[0, 0].sum() == 0 and maps[0, 1, 1, 1] == 1
    assert torch.allclose(register_share(probs, layout), torch.tensor([0.3]))


def test_real_model_maps_come_from_every_block_and_are_probabilities():
    model = tiny_model(reg_tokens=4, reg_position="suffix", rope=True, depth=3)
    maps = collect_attention(model, torch.randn(2, 3, 32, 32))
    assert len(maps) == 3 and all(m.shape == (2, 2, 21, 21) for m in maps)


def test_empty_or_unnormalised_maps_are_refused():
    with pytest.raises(RuntimeError, match="from 2 blocks"):
        check_attention_maps([torch.ones(1, 2, 5, 5) / 5], depth=2, batch=1, heads=2)
    with pytest.raises(RuntimeError, match="fused kernel"):
        check_attention_maps([None], depth=1, batch=1, heads=2)
    with pytest.raises(RuntimeError, match="do not sum to 1"):
        check_attention_maps([torch.zeros(1, 2, 5, 5)], depth=1, batch=1, heads=2)


def test_extra_tokens_after_the_prefix_shift_patches_and_suffix_registers():
    cfg = tiny_config(reg_tokens=2, reg_position="suffix")
    assert token_layout(cfg).patches == slice(1, 17)
    shifted = token_layout(cfg, sequence_length=19 + 3)
    assert shifted.patches == slice(4, 20) and shifted.registers == slice(20, 22) and shifted.class_tokens == slice(0, 1)
    with pytest.raises(ValueError, match="shorter than this model's 19"):
        token_layout(cfg, sequence_length=10)
