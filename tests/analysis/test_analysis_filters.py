import torch

from vitkit.analysis import filter_components
from vitkit.analysis.filters import filters_message, plot_filter_components

from analysis_helpers import tiny_model


def test_a_rank_k_filter_bank_has_exactly_k_components():
    generator = torch.Generator().manual_seed(0)
    basis = torch.randn(3, 3 * 4 * 4, generator=generator)
    weight = (torch.randn(64, 3, generator=generator) @ basis + torch.randn(1, 48, generator=generator))
    components, ratio = filter_components(weight.reshape(64, 3, 4, 4), num_components=6)
    assert components.shape == (6, 3, 4, 4)
    assert torch.isclose(ratio[:3].sum(), torch.tensor(1.0), atol=1e-5) and ratio[3:].max() < 1e-6
    flat = components[:3].reshape(3, -1).double()
    assert torch.allclose(flat @ flat.T, torch.eye(3, dtype=torch.float64), atol=1e-5)
    projector = torch.linalg.pinv(basis.double()) @ basis.double()
    assert torch.allclose(flat @ projector, flat, atol=1e-5)


def test_components_come_out_in_order_of_variance():
    u1, u2 = torch.zeros(12), torch.zeros(12)
    u1[0], u2[5] = 1.0, 1.0
    strong = torch.tensor([3.0, -3.0] * 16)
    weak = torch.tensor([1.0, 1.0, -1.0, -1.0] * 8)
    weight = strong[:, None] * u1 + weak[:, None] * u2
    components, ratio = filter_components(weight.reshape(32, 3, 2, 2), num_components=2)
    assert torch.allclose(components[0].reshape(-1).abs(), u1) and torch.allclose(components[1].reshape(-1).abs(), u2)
    assert torch.allclose(ratio, torch.tensor([0.9, 0.1]))


def test_filter_tiles_are_drawn_for_rgb_and_grey(tmp_path):
    for chans in (3, 1):
        model = tiny_model(in_chans=chans)
        assert filters_message(model) is None
        components, ratio = filter_components(model.patch_embed.proj.weight)
        assert components.shape == (28, chans, 8, 8)
        assert plot_filter_components(components, ratio, tmp_path / f"f{chans}.png").stat().st_size > 0


def test_models_without_pixel_filters_say_why():
    assert "4 channels" in filters_message(tiny_model(in_chans=4))
    assert "convolutional stem" in filters_message(tiny_model(patch_size=2, conv_stem=(8, 16)))
