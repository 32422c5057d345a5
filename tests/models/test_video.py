"""The video family: built from a model section, saved and loaded, its attention maps, and inflation from an image
ViT checked against the image model itself on clips whose frames are all the same image."""
from pathlib import Path

import pytest
import torch

from vitkit import from_pretrained, save_pretrained
from vitkit.models import (ModelConfig, VideoConfig, VideoTransformer, VisionTransformer, ViTConfig, inflate,
                           inflated_config)

CHECKPOINT = Path(__file__).resolve().parents[2].parent / "shared" / "checkpoints" / "fashion_mnist_budget"
TINY = dict(img_size=16, patch_size=4, in_chans=2, num_classes=5, embed_dim=32, depth=2, num_heads=4)
ATTENTIONS = [("frames", 0), ("joint", 0), ("divided", 0), ("factorised", 1)]


def image_model(**overrides) -> VisionTransformer:
    torch.manual_seed(0)
    model = VisionTransformer(ViTConfig(**{**TINY, "rope": True, "init_values": 0.1, **overrides})).eval()
    with torch.no_grad():  # trained-looking tokens and positions, not the near-zero initial ones
        for table in (model.pos_embed, model.cls_token):
            if table is not None:
                table.normal_(std=0.5)
    return model


def still_clip(images: torch.Tensor, frames: int) -> torch.Tensor:
    """Every frame the same image: [B, C, H, W] -> [B, C, T, H, W]."""
    return images[:, :, None].expand(-1, -1, frames, -1, -1).contiguous()


@pytest.mark.parametrize("attention,temporal_depth", ATTENTIONS)
@pytest.mark.parametrize("tubelet_init", ["central", "average"])
def test_inflated_model_gives_the_image_models_output_on_identical_frames(attention, temporal_depth, tubelet_init):
    # joint attention over T copies of the patches reproduces the image model only without a class token, whose
    # single copy would weigh 1/T as much against the repeated patches (the other patterns keep one per frame)
    tokens = {"class_token": False, "global_pool": "avg"} if attention == "joint" else {}
    image = image_model(**tokens)
    video = inflate(image, tubelet_init, attention=attention, temporal_depth=temporal_depth, num_frames=4,
                    tubelet_size=2).eval()
    images = torch.randn(3, 2, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(video(still_clip(images, 4)), image(images), rtol=1e-4, atol=1e-5)


def test_inflation_resizes_patches_and_positions_and_replaces_the_head():
    image = image_model()
    video = inflate(image, attention="divided", num_frames=4, img_size=24, patch_size=6, num_classes=8)
    assert video.patch_embed.proj.weight.shape == (32, 2, 2, 6, 6) and video.pos_embed.shape == (1, 1 + 16, 32)
    assert torch.equal(video.time_embed, torch.zeros(1, 2, 32)) and not video.head.weight.any()
    assert video.cfg.embed_dim == 32 and video.cfg.rope and video.cfg.init_values == 0.1  # the image's architecture


@pytest.mark.parametrize("fields,message", [
    ({"embed_dim": 64}, r"embed_dim=64 \(the image model has 32\).*keeps the image model's architecture"),
    ({"in_chans": 3}, r"load it with from_pretrained\(source, in_chans=3\)"),
])
def test_inflation_refuses_fields_that_contradict_the_image_model(fields, message):
    with pytest.raises(ValueError, match=message):
        inflate(image_model(), num_frames=2, **fields)


def test_inflation_names_the_image_features_the_video_family_lacks():
    with pytest.raises(ValueError, match=r"reg_tokens=4.*video family does not have"):
        inflated_config(ViTConfig(**TINY, reg_tokens=4))


@pytest.mark.skipif(not CHECKPOINT.is_dir(), reason="the Fashion-MNIST budget model is not in ../shared")
def test_the_fashion_mnist_budget_model_inflates_exactly():
    image = from_pretrained(CHECKPOINT).eval()
    video = inflate(image, attention="divided", num_frames=4).eval()
    images = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(video(still_clip(images, 4)), image(images), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("attention,temporal_depth", ATTENTIONS)
def test_a_model_section_builds_saves_and_loads_each_pattern(tmp_path, attention, temporal_depth):
    section = ModelConfig.from_config({"family": "video", "attention": attention, "temporal_depth": temporal_depth,
                                       "num_frames": 4, **TINY})
    model = section.build(num_classes=3).eval()
    clip = torch.randn(2, 2, 4, 16, 16)
    loaded = from_pretrained(save_pretrained(model, tmp_path / attention)).eval()
    assert isinstance(loaded, VideoTransformer) and loaded.cfg == model.cfg
    with torch.no_grad():
        torch.testing.assert_close(loaded(clip), model(clip))
        assert model(clip).shape == (2, 3)


def test_attention_maps_are_distributions_in_space_and_in_time():
    for attention, temporal_depth in ATTENTIONS:
        model = VideoTransformer(VideoConfig(**TINY, attention=attention, temporal_depth=temporal_depth, num_frames=6))
        space, time = model.get_attention_maps(torch.randn(2, 2, 6, 16, 16))
        assert space[0].shape == (2, 3, 4, 1 + 16 if attention != "joint" else 16, 17 if attention != "joint" else 16)
        positions = 1 if attention == "factorised" else 16
        assert len(time) == {"frames": 0, "factorised": 1}.get(attention, 2)
        assert all(probs.shape == (2, positions, 4, 3, 3) for probs in time)
        for probs in space + time:
            torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:-1]))


def test_joint_maps_are_its_probabilities_within_a_frame_and_along_a_position():
    model = VideoTransformer(VideoConfig(**TINY, attention="joint", class_token=False, global_pool="avg",
                                         num_frames=4)).eval()
    clip = torch.randn(1, 2, 4, 16, 16)
    space, time = model.get_attention_maps(clip)
    x, frames, rope = model.embed(clip)
    _, probs = model.blocks[0](x, model._joint_rope(rope, frames), return_attn=True)
    frame1 = probs[0, :, 16:32, 16:32]  # frame 1's queries onto frame 1's keys, renormalised
    torch.testing.assert_close(space[0][0, 1], frame1 / frame1.sum(-1, keepdim=True))
    position5 = probs[0][:, 5::16, 5::16]  # position 5's queries over time onto position 5's keys
    torch.testing.assert_close(time[0][0, 5], position5 / position5.sum(-1, keepdim=True))


@pytest.mark.parametrize("fields,message", [
    ({"attention": "factorised"}, "needs temporal_depth >= 1"),
    ({"temporal_depth": 2}, "only applies to attention='factorised'"),
    ({"num_frames": 5}, "num_frames=5 does not split into tubelets of 2"),
    ({"attention": "sparse"}, "attention='sparse' is not one of"),
])
def test_bad_video_configs_say_what_to_change(fields, message):
    with pytest.raises(ValueError, match=message):
        VideoConfig(**fields)


def test_the_video_family_has_no_presets():
    with pytest.raises(ValueError, match="video family has no presets"):
        ModelConfig.from_config({"family": "video", "name": "vit_cifar_patch4_32"}).build()


def test_a_clip_of_other_length_and_size_resamples_the_positions():
    model = VideoTransformer(VideoConfig(**TINY, num_frames=4, rope=True)).eval()
    assert model(torch.randn(1, 2, 8, 24, 24)).shape == (1, 5)
    model.set_input_size(img_size=24, num_frames=8)
    assert model.pos_embed.shape == (1, 1 + 36, 32) and model.time_embed.shape == (1, 4, 32)


def test_frame_averaging_is_blind_to_the_order_of_the_frames_and_divided_attention_is_not():
    clip = torch.randn(2, 2, 6, 16, 16)
    reverse = clip.flip(2)
    frames = VideoTransformer(VideoConfig(**TINY, attention="frames", tubelet_size=1, num_frames=6)).eval()
    divided = VideoTransformer(VideoConfig(**TINY, attention="divided", num_frames=6)).eval()
    for block in divided.blocks:  # a trained model's temporal step is not the zero it starts as
        torch.nn.init.normal_(block.temporal_fc.weight, std=0.2)
    with torch.no_grad():
        torch.testing.assert_close(frames(reverse), frames(clip))
        assert not torch.allclose(divided(reverse), divided(clip), atol=1e-4)
