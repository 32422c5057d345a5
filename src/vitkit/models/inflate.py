"""Inflating an image ViT into a video ViT (TimeSformer's recipe): spatial weights copied, the patch filters spread
over the tubelet (central frame or averaged) and resized to the video's patch size (FlexiViT's pseudo-inverse), the
spatial positions resampled to its grid, the temporal positions zero, and every temporal addition starting as a
no-op, so that on a clip of identical frames the video model gives the image model's output."""
from __future__ import annotations

from typing import Any

import torch

from ..layers import resample_pos_embed, resize_patch_kernel
from .config import ViTConfig
from .video_config import VideoConfig
from .video_transformer import VideoTransformer
from .vision_transformer import VisionTransformer

TUBELET_INITS = ("central", "average")
# VideoConfig fields that describe the weights: an inflated model takes them from the image model.
SHARED_FIELDS = ("embed_dim", "depth", "num_heads", "mlp_ratio", "mlp", "mlp_norm", "mlp_bias", "qkv_bias",
                 "proj_bias", "qk_norm", "norm", "norm_eps", "init_values", "attn_gate", "ffn_gate", "class_token",
                 "no_embed_class", "pos_embed", "rope", "rope_theta", "global_pool", "fc_norm")
# Image features the video family does not have, with the value that means "not used".
WITHOUT = {"dist_token": False, "reg_tokens": 0, "backbone": None, "conv_stem": (), "alibi": False,
           "prompt_tokens": 0, "representation_size": None}


def inflated_config(image: ViTConfig, **video_fields: Any) -> VideoConfig:
    """The video model an image model becomes: the image's architecture (SHARED_FIELDS), its input size, patch
    size, channels and classes unless given, and the video's own choices (frames, tubelets, attention, dropout)."""
    used = [f"{name}={getattr(image, name)!r}" for name, off in WITHOUT.items() if getattr(image, name) != off]
    if image.class_token and image.num_class_tokens != 1:
        used.append(f"num_class_tokens={image.num_class_tokens}")
    if image.pos_embed == "sincos" or image.global_pool not in ("token", "avg"):
        used.append(f"pos_embed={image.pos_embed!r}, global_pool={image.global_pool!r}")
    if used:
        raise ValueError(f"the image model uses {', '.join(used)}, which the video family does not have; inflate a "
                         "ViT with one class token (or none), learned or no absolute positions, and token or avg "
                         "pooling")
    conflicts = {k: (getattr(image, k), v) for k, v in video_fields.items()
                 if k in SHARED_FIELDS and v != getattr(image, k)}
    if conflicts:
        named = ", ".join(f"{k}={given!r} (the image model has {found!r})" for k, (found, given) in conflicts.items())
        raise ValueError(f"{named}: an inflated model keeps the image model's architecture; drop "
                         f"{'this field' if len(conflicts) == 1 else 'these fields'}")
    base = {"img_size": image.img_size, "patch_size": image.patch_size, "in_chans": image.in_chans,
            "num_classes": image.num_classes, **{k: getattr(image, k) for k in SHARED_FIELDS}}
    return VideoConfig(**{**base, **video_fields})


def tubelet_weight(weight: torch.Tensor, tubelet_size: int, mode: str = "central") -> torch.Tensor:
    """Image patch filters [D, C, p, p] as tubelet filters [D, C, t, p, p]: all in frame t // 2 and zero elsewhere
    ('central', ViViT) or spread evenly, each 1/t ('average', I3D); either gives the image's tokens on t equal
    frames."""
    if mode not in TUBELET_INITS:
        raise ValueError(f"tubelet_init={mode!r} is not one of {TUBELET_INITS}")
    if mode == "average":
        return weight[:, :, None].repeat(1, 1, tubelet_size, 1, 1) / tubelet_size
    out = weight.new_zeros(weight.shape[0], weight.shape[1], tubelet_size, *weight.shape[2:])
    out[:, :, tubelet_size // 2] = weight
    return out


@torch.no_grad()
def inflate(image_model: VisionTransformer, tubelet_init: str = "central", **video_fields: Any) -> VideoTransformer:
    """The video model an image ViT becomes (any checkpoint from_pretrained reads; change its input channels there
    first). Fields: VideoConfig's own (num_frames, tubelet_size, attention, temporal_depth, img_size, patch_size,
    num_classes, dropout rates); the rest are the image model's. A different class count gets a new zero head."""
    if not isinstance(image_model, VisionTransformer):
        raise ValueError(f"inflation takes a plain ViT (VisionTransformer), got {type(image_model).__name__}")
    image = image_model.cfg
    if video_fields.get("in_chans", image.in_chans) != image.in_chans:
        raise ValueError(f"in_chans={video_fields['in_chans']}: the image model takes {image.in_chans} channels; "
                         f"load it with from_pretrained(source, in_chans={video_fields['in_chans']}) first")
    cfg = inflated_config(image, **video_fields)
    video = VideoTransformer(cfg)
    source = image_model.state_dict()
    state = video.state_dict()
    for key, value in source.items():
        if key in state and state[key].shape == value.shape:
            state[key] = value
    kernel = resize_patch_kernel(source["patch_embed.proj.weight"], (cfg.patch_size, cfg.patch_size))
    state["patch_embed.proj.weight"] = tubelet_weight(kernel, cfg.tubelet_size, tubelet_init)
    if video.pos_embed is not None:
        state["pos_embed"] = resample_pos_embed(source["pos_embed"], cfg.grid_size, image.grid_size,
                                                video._pos_embed_prefix)
    if video.time_embed is not None:
        state["time_embed"] = torch.zeros_like(state["time_embed"])
    for i in range(cfg.depth if cfg.attention == "divided" else 0):
        for part in ("attn", "norm1"):
            for key, value in source.items():
                if key.startswith(f"blocks.{i}.{part}."):
                    state[key.replace(f".{part}.", f".temporal_{part}.", 1)] = value
        for name in ("weight", "bias"):
            state[f"blocks.{i}.temporal_fc.{name}"] = torch.zeros_like(state[f"blocks.{i}.temporal_fc.{name}"])
    for key in state:  # the temporal encoder starts as the identity: its residual branches end at zero
        if key.startswith("temporal_blocks.") and (".attn.proj." in key or ".mlp.fc2." in key):
            state[key] = torch.zeros_like(state[key])
    if cfg.num_classes != image.num_classes and cfg.num_classes:
        state["head.weight"], state["head.bias"] = (torch.zeros_like(state[k]) for k in ("head.weight", "head.bias"))
    video.load_state_dict(state)
    video.preprocess = image_model.preprocess
    video.class_names = image_model.class_names if cfg.num_classes == image.num_classes else None
    return video


def inflation_notes(image: ViTConfig, video: VideoConfig, tubelet_init: str) -> list[str]:
    """What inflate did, one line each, for a training log."""
    notes = [f"{video.attention} space-time attention over {video.num_frames} frames in tubelets of "
             f"{video.tubelet_size}: the image filters "
             + ("in each tubelet's central frame" if tubelet_init == "central" else "averaged over each tubelet")]
    if video.patch_size != image.patch_size:
        notes.append(f"patch filters resized from {image.patch_size}x{image.patch_size} to {video.patch_size}x"
                     f"{video.patch_size} (FlexiViT's pseudo-inverse resize)")
    if video.grid_size != image.grid_size and video.pos_embed == "learned":
        notes.append(f"spatial positions resampled from a {image.grid_size[0]}x{image.grid_size[1]} to a "
                     f"{video.grid_size[0]}x{video.grid_size[1]} grid (bicubic)")
    notes.append({
        "frames": "each frame through the image model, the features averaged over time",
        "joint": "temporal positions start at zero; joint attention sees every frame's patches at once",
        "divided": "temporal positions start at zero; each block's temporal attention is a copy of its spatial "
                   "attention behind a zero temporal_fc",
        "factorised": "temporal positions start at zero; the temporal encoder starts as the identity (its attention "
                      "and MLP outputs at zero)"}[video.attention])
    if video.num_classes != image.num_classes:
        notes.append(f"new zero-initialised {video.num_classes}-class head (the image model has {image.num_classes})")
    return notes
