"""`vitkit`: one entry point; each subcommand is a small function that parses its arguments and calls the library."""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from .config import parse_overrides
from .report import format_table


def cmd_models(args: argparse.Namespace) -> int:
    """Lists presets with their parameter count and GFLOPs at the native resolution."""
    from .models import get_preset, list_models
    from .models.profile import model_stats

    names = list_models(args.pattern)
    if not names:
        print(f"no preset matches {args.pattern!r}; try `vitkit models` for all of them", file=sys.stderr)
        return 1
    rows = []
    for name in names:
        stats = model_stats(name)
        rows.append([name, round(stats.params / 1e6, 2), round(stats.gflops, 2),
                     "x".join(map(str, stats.img_size)), stats.num_tokens, get_preset(name).description])
    print(format_table(rows, ["model", "params (M)", "GFLOPs", "input", "tokens", "description"]))
    print("\nGFLOPs: floating-point operations of one forward pass at batch 1 (2 per multiply-add).")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Prints a preset's module tree, its token sequence, parameters and FLOPs."""
    import torch

    from .models import create_model, get_preset
    from .models.profile import count_flops, count_params

    overrides = parse_overrides(args.overrides)
    with torch.device("meta"):
        model = create_model(args.name, **overrides).eval()
    cfg = model.cfg
    print(model)
    rows = [["images", f"B x {cfg.in_chans} x {cfg.img_size[0]} x {cfg.img_size[1]}"]]
    if cfg.backbone:
        side = cfg.img_size[0] // (cfg.feature_stride // cfg.patch_size), cfg.img_size[1] // (cfg.feature_stride // cfg.patch_size)
        rows.append(["ResNet feature map", f"B x {model.backbone.out_chans} x {side[0]} x {side[1]}"])
    rows.append(["patch tokens", f"B x {cfg.num_patches} x {cfg.embed_dim}  (grid {cfg.grid_size[0]}x{cfg.grid_size[1]})"])
    prefix = [f"{cfg.num_class_tokens} class" if cfg.class_token else "", "1 distillation" if cfg.dist_token else "",
              f"{cfg.reg_tokens} register" if cfg.reg_tokens and cfg.reg_position == "prefix" else ""]
    rows.append(["prefix tokens", ", ".join(p for p in prefix if p) or "none"])
    rows.append(["suffix tokens", f"{cfg.num_suffix_tokens} register" if cfg.num_suffix_tokens else "none"])
    total = cfg.num_patches + cfg.num_prefix_tokens + cfg.num_suffix_tokens
    rows.append(["sequence in each block", f"B x {total} x {cfg.embed_dim}  ({cfg.num_heads} heads of {cfg.head_dim})"])
    rows.append(["position encoding", ", ".join(p for p in [cfg.pos_embed if cfg.pos_embed != "none" else "",
                                                            "2D RoPE" if cfg.rope else "",
                                                            "2D ALiBi" if cfg.alibi else ""] if p) or "none"])
    rows.append(["pooled features", f"B x {model.num_features}  ({cfg.global_pool})"])
    rows.append(["logits", f"B x {cfg.num_classes}"])
    rows.append(["parameters", f"{count_params(model):,}"])
    rows.append(["GFLOPs (batch 1)", f"{count_flops(model, cfg.img_size, cfg.in_chans) / 1e9:.2f}"])
    print()
    print(format_table(rows, ["stage", "shape / value"]))
    return 0


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], Callable[[argparse.ArgumentParser], None], str]] = {
    "models": (cmd_models, lambda p: p.add_argument("pattern", nargs="?", default="*",
                                                    help="shell-style filter, e.g. 'vit5_*'"),
               "list presets with params and GFLOPs"),
    "info": (cmd_info, lambda p: (p.add_argument("name", help="preset name"),
                                  p.add_argument("overrides", nargs="*", help="ViTConfig overrides, e.g. img_size=384")),
             "show one preset's modules, token shapes, params and FLOPs"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vitkit", description="Vision Transformers: build, train, inspect, ship.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, add_arguments, help_text) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = COMMANDS[args.command][0]
    try:
        return handler(args)
    except ValueError as error:
        print(f"vitkit {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
