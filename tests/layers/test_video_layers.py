"""Video layers against independent formulations: the tubelet embedding against the image patch embedding frame by
frame and against hand-flattened tubelets; divided attention's steps against joint attention masked to the pairs
they may see; FlexiViT's filter resize against PIL's resize and numpy's least squares."""
import numpy as np
import pytest
import torch
from PIL import Image

from vitkit.layers import Block, DividedBlock, PatchEmbed, TubeletEmbed, resize_patch_kernel, rope_angles, rope_tables


def test_tubelets_of_one_frame_are_the_image_patch_embedding_of_each_frame():
    torch.manual_seed(0)
    tubelet, image = TubeletEmbed(4, 1, 3, 8), PatchEmbed(4, 3, 8)
    with torch.no_grad():
        image.proj.weight.copy_(tubelet.proj.weight[:, :, 0])
        image.proj.bias.copy_(tubelet.proj.bias)
    clip = torch.randn(2, 3, 5, 8, 12)
    tokens, grid = tubelet(clip)
    per_frame = torch.cat([image(clip[:, :, t])[0] for t in range(5)], dim=1)  # time-major: frame 0's patches first
    assert grid == (5, 2, 3)
    torch.testing.assert_close(tokens, per_frame, rtol=0, atol=1e-5)


def test_a_tubelet_is_one_linear_map_of_its_flattened_t_x_p_x_p_x_c_pixels():
    torch.manual_seed(0)
    embed = TubeletEmbed(patch_size=2, tubelet_size=2, in_chans=1, embed_dim=6)
    clip = torch.randn(1, 1, 4, 4, 2)
    tokens, grid = embed(clip)
    expected = []
    for t in range(2):
        for r in range(2):
            patch = clip[0, :, 2 * t:2 * t + 2, 2 * r:2 * r + 2, 0:2].reshape(-1)
            expected.append(embed.proj.weight.reshape(6, -1) @ patch + embed.proj.bias)
    assert grid == (2, 2, 1)
    torch.testing.assert_close(tokens[0], torch.stack(expected), rtol=0, atol=1e-5)


@pytest.mark.parametrize("shape,message", [
    ((1, 3, 8, 8), r"clips \[B, C, T, H, W\].*x.unsqueeze\(2\)"),
    ((1, 1, 2, 8, 8), "expects 3 input channels but got 1"),
    ((1, 3, 3, 8, 8), "3 frames do not split into tubelets of 2"),
    ((1, 3, 2, 11, 8), "11x8 is not divisible by the patch size 4; resize the frames to 12x8"),
])
def test_bad_clips_say_what_is_wrong(shape, message):
    with pytest.raises(ValueError, match=message):
        TubeletEmbed(4, 2, 3, 8)(torch.zeros(shape))


def _pil_resize(patch: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(patch.astype(np.float32), mode="F").resize((size, size),
                                                                                 Image.Resampling.BILINEAR))


def test_resized_filters_give_the_old_response_on_patches_enlarged_by_pil():
    torch.manual_seed(0)
    weight = torch.randn(5, 2, 4, 4, dtype=torch.float64)
    new = resize_patch_kernel(weight, (7, 7))
    patches = np.random.default_rng(0).random((3, 2, 4, 4))
    enlarged = np.stack([[_pil_resize(channel, 7) for channel in patch] for patch in patches])
    old_out = torch.einsum("dchw,nchw->nd", weight, torch.from_numpy(patches))
    new_out = torch.einsum("dchw,nchw->nd", new, torch.from_numpy(enlarged).double())
    torch.testing.assert_close(new_out, old_out, rtol=1e-5, atol=1e-5)


def test_shrunk_filters_are_the_least_squares_fit_through_pils_resize():
    weight = torch.randn(3, 1, 6, 6, dtype=torch.float64)
    basis = np.eye(36).reshape(36, 6, 6)
    matrix = np.stack([_pil_resize(b, 4).reshape(-1) for b in basis], axis=1)  # resize(x) = matrix @ x
    expected = np.linalg.lstsq(matrix.T, weight.reshape(3, 36).numpy().T, rcond=None)[0].T.reshape(3, 1, 4, 4)
    torch.testing.assert_close(resize_patch_kernel(weight, (4, 4)), torch.from_numpy(expected), rtol=1e-4,
                               atol=1e-5)


def _mask(frames: int, positions: int, same: str) -> torch.Tensor:
    """Additive bias over a clip's T*N tokens (time-major): 0 where the pair shares a frame (or a position)."""
    time = torch.arange(frames).repeat_interleave(positions)
    place = torch.arange(positions).repeat(frames)
    keep = (time[:, None] == time[None]) if same == "frame" else (place[:, None] == place[None])
    return torch.zeros(keep.shape).masked_fill(~keep, float("-inf"))


def _rope(head_dim: int, grid: tuple[int, int]):
    return rope_tables(rope_angles(head_dim, 10000.0, grid))


@pytest.fixture
def divided():
    torch.manual_seed(0)
    block = DividedBlock(16, 2, 32, qk_norm=True, init_values=0.5).eval()
    torch.nn.init.normal_(block.temporal_fc.weight, std=0.2)  # a trained block: its temporal step is not a no-op
    return block


def test_divided_temporal_step_is_joint_attention_masked_to_same_position_pairs(divided):
    frames = 3
    x = torch.randn(2, frames * 4, 16)
    joint = divided.temporal_attn(divided.temporal_norm1(x), attn_bias=_mask(frames, 4, "position"))
    torch.testing.assert_close(divided.attend_time(x, frames), joint, rtol=1e-5, atol=1e-6)


def test_divided_block_is_masked_joint_attention_in_time_then_in_space(divided):
    """The whole block from joint attention with masks: the spatial step (RoPE per frame) sees only its frame."""
    frames, grid = 3, (2, 3)
    cos, sin = _rope(8, grid)
    x = torch.randn(2, frames * 6, 16)
    hidden = x + divided.temporal_fc(divided.temporal_attn(divided.temporal_norm1(x),
                                                           attn_bias=_mask(frames, 6, "position")))
    joint_rope = (cos.repeat(frames, 1), sin.repeat(frames, 1))
    hidden = hidden + divided.ls1(divided.attn(divided.norm1(hidden), joint_rope, _mask(frames, 6, "frame")))
    expected = hidden + divided.ls2(divided.mlp(divided.norm2(hidden)))
    torch.testing.assert_close(divided(x, frames, 0, (cos, sin)), expected, rtol=1e-5, atol=1e-5)


def test_divided_class_token_joins_every_frame_and_is_averaged_over_them(divided):
    frames = 2
    x = torch.randn(1, 1 + frames * 4, 16)
    out = divided(x, frames, num_prefix=1)
    hidden = x[:, 1:] + divided.temporal_fc(divided.attend_time(x[:, 1:], frames))
    per_frame = [Block.forward(divided, torch.cat([x[:, :1], hidden[:, 4 * t:4 * t + 4]], 1)) for t in range(frames)]
    torch.testing.assert_close(out[:, 0], torch.stack([f[:, 0] for f in per_frame]).mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out[:, 1:], torch.cat([f[:, 1:] for f in per_frame], 1), rtol=1e-5, atol=1e-6)
