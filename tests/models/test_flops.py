"""FLOP counting checked against a hand count of every matmul in the network."""
import torch

from vitkit import ViTConfig, VisionTransformer
from vitkit.models.profile import count_flops, model_stats


def hand_count(cfg: ViTConfig) -> int:
    d, n = cfg.embed_dim, cfg.num_patches
    t = n + cfg.num_prefix_tokens + cfg.num_suffix_tokens
    patch = 2 * n * (cfg.in_chans * cfg.patch_size ** 2) * d
    qkv, attention, proj = 2 * t * d * 3 * d, 2 * 2 * t * t * d, 2 * t * d * d
    mlp = 2 * 2 * t * d * cfg.mlp_hidden_dim
    head = 2 * d * cfg.num_classes
    return patch + cfg.depth * (qkv + attention + proj + mlp) + head


def test_counted_flops_equal_the_hand_count_on_cpu_and_meta():
    cfg = ViTConfig(img_size=32, patch_size=8, embed_dim=64, depth=3, num_heads=4, num_classes=10, reg_tokens=2)
    expected = hand_count(cfg)
    assert count_flops(VisionTransformer(cfg).eval(), cfg.img_size) == expected
    with torch.device("meta"):
        assert count_flops(VisionTransformer(cfg).eval(), cfg.img_size) == expected


def test_vit_base_gflops():
    cfg = ViTConfig()
    stats = model_stats("vit_base_patch16_224")
    assert stats.gflops * 1e9 == hand_count(cfg)
    assert 35.0 < stats.gflops < 35.3  # 17.6 GMACs, the figure published for ViT-B/16
