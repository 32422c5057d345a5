import pytest
import torch

from vitkit.layers import PatchEmbed


def test_conv_is_the_papers_linear_projection_of_flattened_patches():
    torch.manual_seed(0)
    embed = PatchEmbed(patch_size=4, in_chans=3, embed_dim=8)
    x = torch.randn(2, 3, 8, 12)
    tokens, grid = embed(x)
    # Flatten each P x P x C patch by hand (row-major over patches) and apply one shared linear map E.
    patches = x.reshape(2, 3, 2, 4, 3, 4).permute(0, 2, 4, 1, 3, 5).reshape(2, 6, 3 * 4 * 4)
    projection = embed.proj.weight.reshape(8, -1)
    expected = patches @ projection.T + embed.proj.bias
    assert grid == (2, 3)
    torch.testing.assert_close(tokens, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("in_chans", [1, 4])
def test_any_channel_count(in_chans):
    tokens, grid = PatchEmbed(8, in_chans, 16)(torch.randn(1, in_chans, 16, 32))
    assert tokens.shape == (1, 8, 16) and grid == (2, 4)


def test_wrong_channel_count_names_the_fix():
    with pytest.raises(ValueError, match=r"expects 3 input channels but got 1.*repeat a grayscale"):
        PatchEmbed(8, 3, 16)(torch.randn(1, 1, 16, 16))


def test_size_not_divisible_suggests_a_size():
    with pytest.raises(ValueError, match=r"30x30 is not divisible by the patch size 8.*32x32"):
        PatchEmbed(8, 3, 16)(torch.randn(1, 3, 30, 30))


def test_missing_batch_dimension_is_explained():
    with pytest.raises(ValueError, match="unsqueeze"):
        PatchEmbed(8, 3, 16)(torch.randn(3, 16, 16))
