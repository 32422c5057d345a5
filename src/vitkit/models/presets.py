"""Named presets: the paper's ViT-Ti/S/B/L/H, DeiT, ViT-5 (official and gated), the CIFAR ViTs, the hybrid, Swin.

Initialisation per family: 'timm' (trunc-normal 0.02 linears, zero biases, class token N(0, 1e-6)) for ViT and
DeiT as timm and the DeiT code build them; 'vit5' (trunc-normal 0.02 for linears, position embedding, class and
register tokens) as the official ViT-5 code does.
"""
from __future__ import annotations

from ..preprocess import CIFAR10_MEAN, CIFAR10_STD, INCEPTION_MEAN, INCEPTION_STD, Preprocess
from .config import ViTConfig
from .registry import register, register_alias
from .swin_config import SwinConfig

# The paper's Table 1 plus the DeiT sizes: (embed_dim, depth, num_heads).
VIT_SIZES = {
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
    "huge": (1280, 32, 16),
}


def _vit_family() -> None:
    for size, (dim, depth, heads) in VIT_SIZES.items():
        for patch in (14, 16, 32):
            for res in (224, 384):
                if res % patch:
                    continue
                crop = 0.9 if res == 224 else 1.0
                register(f"vit_{size}_patch{patch}_{res}",
                         ViTConfig(img_size=res, patch_size=patch, embed_dim=dim, depth=depth, num_heads=heads),
                         Preprocess(INCEPTION_MEAN, INCEPTION_STD, crop_pct=crop),
                         f"ViT-{size[0].upper()}/{patch} at {res}px (Dosovitskiy et al. 2020)")


def _deit_family() -> None:
    for size in ("tiny", "small", "base"):
        dim, depth, heads = VIT_SIZES[size]
        base = ViTConfig(embed_dim=dim, depth=depth, num_heads=heads)
        register(f"deit_{size}_patch16_224", base, Preprocess(), f"DeiT-{size[0].upper()} (Touvron et al. 2021)")
        register(f"deit_{size}_distilled_patch16_224", base.replace(dist_token=True), Preprocess(),
                 f"DeiT-{size[0].upper()} with a distillation token; eval output is the mean of both heads")
    dim, depth, heads = VIT_SIZES["base"]
    register("deit_base_patch16_384", ViTConfig(img_size=384, embed_dim=dim, depth=depth, num_heads=heads),
             Preprocess(crop_pct=1.0), "DeiT-B fine-tuned at 384px")


def _vit5_family() -> None:
    official = dict(norm="rmsnorm", norm_eps=1e-6, qkv_bias=False, proj_bias=True, qk_norm=True, init_values=1e-4,
                    pos_embed="learned", no_embed_class=True, rope=True, rope_theta=10000.0, reg_tokens=4,
                    reg_position="suffix", reg_rope_theta=100.0, global_pool="token", mlp="gelu",
                    drop_path_schedule="constant", weight_init="vit5", pos_embed_antialias=False)
    for size in ("small", "base", "large"):
        dim, depth, heads = VIT_SIZES[size]
        register(f"vit5_{size}_patch16_224",
                 ViTConfig(embed_dim=dim, depth=depth, num_heads=heads, **official), Preprocess(crop_pct=1.0),
                 f"ViT-5-{size[0].upper()} exactly as the official code builds it (Wang et al. 2026)")
    gated = dict(norm="rmsnorm", qkv_bias=False, mlp="swiglu", mlp_ratio=8 / 3, attn_gate=True, ffn_gate=True,
                 pos_embed="none", rope=True, num_class_tokens=4, global_pool="token", weight_init="vit5")
    for size in ("small", "base"):
        dim, depth, heads = VIT_SIZES[size]
        name = f"vit5gated_{size}_patch16_224"
        register(name, ViTConfig(embed_dim=dim, depth=depth, num_heads=heads, **gated), Preprocess(crop_pct=1.0),
                 "ViT-5 with SwiGLU, sigmoid gates on attention and FFN, RoPE only, 4 averaged class tokens; "
                 "not the official ViT-5")
        register_alias(f"vit5seed_{size}_patch16_224", name)  # the old name, in configs and runs from before


def _cifar_family() -> None:
    cifar = Preprocess(CIFAR10_MEAN, CIFAR10_STD, crop_pct=1.0)
    register("vit_cifar_seed_patch8_32",
             ViTConfig(img_size=32, patch_size=8, embed_dim=256, depth=4, num_heads=4, mlp_ratio=4.0,
                       num_classes=10), cifar,
             "the seed tutorial's small CIFAR ViT (patch 8, depth 4, width 256)")
    register("vit_cifar_patch4_32",
             ViTConfig(img_size=32, patch_size=4, embed_dim=192, depth=6, num_heads=3, num_classes=10), cifar,
             "width-192, depth-6, patch-4 CIFAR ViT used by the benchmarks")


def _hybrid_family() -> None:
    dim, depth, heads = VIT_SIZES["base"]
    for res in (224, 384):
        register(f"vit_base_r50_s16_{res}",
                 ViTConfig(img_size=res, patch_size=1, embed_dim=dim, depth=depth, num_heads=heads,
                           backbone="resnet50", backbone_layers=(3, 4, 9)),
                 Preprocess(INCEPTION_MEAN, INCEPTION_STD, crop_pct=0.9 if res == 224 else 1.0),
                 "the paper's hybrid: ResNet-50 stages (3, 4, 9) -> 1x1 patch embedding -> ViT-B")


def _swin_family() -> None:
    sizes = {"tiny": (96, (2, 2, 6, 2), (3, 6, 12, 24)), "small": (96, (2, 2, 18, 2), (3, 6, 12, 24)),
             "base": (128, (2, 2, 18, 2), (4, 8, 16, 32))}
    for size, (dim, depths, heads) in sizes.items():
        register(f"swin_{size}_patch4_window7_224",
                 SwinConfig(img_size=224, patch_size=4, window_size=7, embed_dim=dim, depths=depths, num_heads=heads),
                 Preprocess(crop_pct=0.9),
                 f"Swin-{size[0].upper()}: shifted 7x7 windows, 4 stages (Liu et al. 2021)")


_vit_family()
_deit_family()
_vit5_family()
_cifar_family()
_hybrid_family()
_swin_family()
