"""`vitkit`: one entry point; each subcommand is a small function that parses its arguments and calls the library."""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Callable, Sequence

from .config import parse_overrides
from .report import format_table

if TYPE_CHECKING:
    from pathlib import Path

    from .export import InferenceBackend


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
    """Prints a preset's module tree, its token sequence (Swin: its stages' maps), parameters and FLOPs."""
    import torch

    from .models import SwinConfig, create_model
    from .models.profile import count_flops, count_params

    overrides = parse_overrides(args.overrides)
    with torch.device("meta"):
        model = create_model(args.name, **overrides).eval()
    cfg = model.cfg
    print(model)
    rows = [["images", f"B x {cfg.in_chans} x {cfg.img_size[0]} x {cfg.img_size[1]}"]]
    if isinstance(cfg, SwinConfig):
        rows += _swin_stage_rows(cfg)
    else:
        rows += _token_rows(model)
    rows.append(["pooled features", f"B x {model.num_features}  ({cfg.global_pool})"])
    rows.append(["logits", f"B x {cfg.num_classes}"])
    rows.append(["parameters", f"{count_params(model):,}"])
    rows.append(["GFLOPs (batch 1)", f"{count_flops(model, cfg.img_size, cfg.in_chans) / 1e9:.2f}"])
    print()
    print(format_table(rows, ["stage", "shape / value"]))
    return 0


def _token_rows(model) -> list[list[str]]:
    """A ViT's stem, token sequence and position encoding."""
    cfg, rows = model.cfg, []
    if model.backbone is not None:
        stem_stride = cfg.feature_stride // cfg.patch_size
        side = cfg.img_size[0] // stem_stride, cfg.img_size[1] // stem_stride
        kind = "ResNet" if cfg.backbone else "conv stem"
        rows.append([f"{kind} feature map", f"B x {model.backbone.out_chans} x {side[0]} x {side[1]}"])
    rows.append(["patch tokens", f"B x {cfg.num_patches} x {cfg.embed_dim}  (grid {cfg.grid_size[0]}x{cfg.grid_size[1]})"])
    prefix = [f"{cfg.num_class_tokens} class" if cfg.class_token else "", "1 distillation" if cfg.dist_token else "",
              f"{cfg.reg_tokens} register" if cfg.reg_tokens and cfg.reg_position == "prefix" else ""]
    rows.append(["prefix tokens", ", ".join(p for p in prefix if p) or "none"])
    rows.append(["suffix tokens", f"{cfg.num_suffix_tokens} register" if cfg.num_suffix_tokens else "none"])
    total = cfg.num_patches + cfg.num_prefix_tokens + cfg.num_suffix_tokens
    rows.append(["sequence in each block", f"B x {total} x {cfg.embed_dim}  ({cfg.num_heads} heads of {cfg.head_dim})"])
    if cfg.patch_drop_rate:
        kept = model.patch_drop.num_kept(cfg.num_patches)
        rows.append(["... in training (patch dropout)", f"B x {total - cfg.num_patches + kept} x {cfg.embed_dim}  "
                                                         f"(keeps {kept} of {cfg.num_patches} patches per image)"])
    rows.append(["position encoding", ", ".join(p for p in [cfg.pos_embed if cfg.pos_embed != "none" else "",
                                                            "2D RoPE" if cfg.rope else "",
                                                            "2D ALiBi" if cfg.alibi else ""] if p) or "none"])
    return rows


def _swin_stage_rows(cfg) -> list[list[str]]:
    """Each Swin stage's map, its windows and their shift in every other block."""
    from .layers import window_shift

    rows, (wh, ww) = [], cfg.window_size
    for stage, (dim, depth, heads) in enumerate(zip(cfg.stage_dims, cfg.depths, cfg.num_heads)):
        side = (cfg.grid_size[0] // 2 ** stage, cfg.grid_size[1] // 2 ** stage)
        windows = (side[0] // wh) * (side[1] // ww)
        shift = window_shift(side, cfg.window_size)
        rows.append([f"stage {stage} ({depth} blocks{', after patch merging' if stage else ''})",
                     f"B x {side[0]} x {side[1]} x {dim}  ({heads} heads of {dim // heads}; {windows} "
                     f"window{'s' if windows > 1 else ''} of {wh}x{ww}, "
                     + (f"shifted by {shift[0]}x{shift[1]} in every other block)" if any(shift) else "unshifted)")])
    return rows


def cmd_train(args: argparse.Namespace) -> int:
    """Trains from a YAML recipe plus key=value overrides; --resume continues a run from its last checkpoint."""
    from pathlib import Path

    import torch

    from .hardware import pick_threads
    from .train import TrainingInterrupted, train

    config = args.config
    overrides = list(args.overrides) + (["data.skip_bad_images=true"] if args.skip_bad_images else [])
    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").is_file():
            raise ValueError(f"--resume {run_dir}: no config.yaml there; pass the run folder, e.g. runs/<name>")
        config = run_dir / "config.yaml"
        overrides += [f"output_dir={run_dir.parent}", f"name={run_dir.name}"]
    if args.init_from:
        overrides.append(f"finetune.init_from={args.init_from}")
    previous_threads = torch.get_num_threads()
    pick_threads(torch.device("cpu"))  # the cores other processes leave free; the run's first log line says how many
    try:
        train(config, overrides, resume=bool(args.resume))
    except TrainingInterrupted as stopped:
        print(f"vitkit train: {stopped}", file=sys.stderr)
        return 130
    finally:
        torch.set_num_threads(previous_threads)  # main() may be called in-process (tests, notebooks)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()  # under torchrun, on success only: a failed rank must not block here
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Top-1, top-5 and per-class accuracy of a run or checkpoint (a segmentation model: mIoU, per-class IoU and
    pixel accuracy), a confusion-matrix PNG and a JSON report."""
    from .inference import evaluate_on, evaluate_segmentation_on, is_segmentation, plot_confusion
    from .report import write_json

    data = _dataset_of(args.checkpoint, args.data)
    if data is None:
        raise ValueError(f"{args.checkpoint} is not a training run, so its dataset is unknown; pass --data SPEC "
                         "(e.g. --data digits, --data cifar10:/path or --data segfolder:/path)")
    if args.knn is not None or args.linear_probe:
        return _judge_representation(args, data)
    backend = _load_backend(args)
    segment = is_segmentation(backend)
    evaluate = evaluate_segmentation_on if segment else evaluate_on
    scores = evaluate(backend, data, split=args.split, batch_size=args.batch_size, device=args.device)
    out = _eval_folder(args)
    out.mkdir(parents=True, exist_ok=True)
    plot_confusion(scores["confusion"], scores["classes"], out / "confusion.png")
    report = {"checkpoint": str(args.checkpoint), "data": data, "split": args.split, "backend": backend.name,
              "int8": backend.name.endswith("int8"), "token_merging": args.tome, **scores}
    write_json(out / "eval.json", report)
    if segment:
        rows = [[name, "absent" if iou is None else round(iou, 2)]
                for name, iou in zip(scores["classes"], scores["per_class_iou"])]
        print(format_table(rows, ["class", "IoU (%)"]))
        summary = (f"mIoU {scores['miou']:.2f}%  pixel accuracy {scores['pixel_accuracy']:.2f}%  loss "
                   f"{scores['loss']:.4f}  ({scores['count']} pixels)")
    else:
        rows = [[name, round(acc, 2)] for name, acc in zip(scores["classes"], scores["per_class"])]
        print(format_table(rows, ["class", "accuracy (%)"]))
        summary = (f"top-1 {scores['top1']:.2f}%  top-5 {scores['top5']:.2f}%  loss {scores['loss']:.4f}  "
                   f"({scores['count']} images)")
    print(f"\n{data} ({args.split}): {summary}\nwritten: {out / 'eval.json'}, {out / 'confusion.png'}")
    return 0


def _eval_folder(args: argparse.Namespace) -> Path:
    """--out, else <run>/eval for a run or checkpoint folder, else ./eval."""
    from pathlib import Path

    return Path(args.out or (Path(args.checkpoint) if Path(args.checkpoint).is_dir() else Path(".")) / "eval")


def _judge_representation(args: argparse.Namespace, data: str) -> int:
    """`eval --knn / --linear-probe`: the frozen model's pooled features judged, whatever its head (or none)."""
    from .inference import judge_representation, load_model
    from .report import write_json
    from .representation import KNN_K

    model = load_model(args.checkpoint, args.device, token_merging=args.tome)
    ks = (args.knn or list(KNN_K)) if args.knn is not None else []
    scores = judge_representation(model, data, ks, args.linear_probe, args.probe_epochs, args.probe_lr,
                                  args.batch_size, args.device)
    path = write_json(_eval_folder(args) / "representation.json", {"checkpoint": str(args.checkpoint), "data": data, **scores})
    rows = [[f"kNN, k={k} (cosine, weighted votes)", round(scores[f"knn{k}_top1"], 2)] for k in ks]
    if args.linear_probe:
        rows.append([f"linear probe (BatchNorm, {args.probe_epochs} epochs)", round(scores["probe_top1"], 2)])
    print(format_table(rows, ["judge", "test top-1 (%)"]))
    print(f"\n{data}: {scores['train_images']} train / {scores['test_images']} test images, {scores['features']} "
          f"features each\nwritten: {path}")
    return 0


def _dataset_of(source: str, data: str | None) -> str | None:
    """--data if given, else the dataset the run was trained on (None for a checkpoint outside a run)."""
    from .checkpoints import run_dataset

    return data or run_dataset(source)


def _eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a run folder (uses checkpoints/best) or a checkpoint")
    parser.add_argument("--data", help="dataset spec, e.g. digits or cifar10:/path (default: the run's own dataset)")
    parser.add_argument("--split", default="test", choices=["train", "test"])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", help="output folder (default: <run>/eval)")
    parser.add_argument("--knn", nargs="*", type=int, metavar="K",
                        help="judge the pooled features instead: kNN top-1 (cosine similarity, temperature-weighted "
                             "votes) for each K, default 20 200; the train split is the memory")
    parser.add_argument("--linear-probe", action="store_true",
                        help="judge the pooled features instead: a linear probe (BatchNorm without affine + linear "
                             "head) trained on the train split's cached features")
    parser.add_argument("--probe-epochs", type=int, default=100)
    parser.add_argument("--probe-lr", type=float, default=1e-3)
    _backend_arguments(parser)
    _tome_argument(parser)


def _backend_arguments(parser: argparse.ArgumentParser) -> None:
    from .export import BACKENDS

    parser.add_argument("--backend", choices=("auto", *BACKENDS), default="auto",
                        help="how the model runs (default auto: the measured fastest for this CPU, lossless unless "
                             "--int8; see docs/export.md)")
    parser.add_argument("--int8", action="store_true",
                        help="allow int8 quantization (faster on CPU; eval shows the cost)")


def _tome_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tome", type=_merge_schedule, default=0, metavar="R",
                        help="token merging: merge R tokens in every block (or R1,R2,... one per block); faster, and "
                             "it changes the answers (docs/efficiency.md); default 0: off")


def _merge_schedule(text: str) -> int | tuple[int, ...]:
    """--tome 13 or --tome 16,16,8,8,...: tokens merged per block."""
    try:
        values = tuple(int(value) for value in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--tome takes a whole number of tokens per block (e.g. 13) or one per "
                                         f"block separated by commas, got {text!r}") from None
    return values[0] if len(values) == 1 else values


def _load_backend(args: argparse.Namespace) -> InferenceBackend:
    """The checkpoint behind --backend, announced on stderr in one line (stdout stays the command's output)."""
    from .inference import load_backend

    try:
        backend = load_backend(args.checkpoint, args.backend, allow_int8=args.int8, device=args.device,
                               token_merging=args.tome)
    except ImportError as missing:
        raise SystemExit(f"vitkit {args.command}: {missing}")
    print(f"vitkit {args.command}: backend {backend.describe()}", file=sys.stderr)
    return backend


def cmd_predict(args: argparse.Namespace) -> int:
    """Top-k classes with names and probabilities for image files or folders, as a table, JSON or CSV; a
    segmentation model writes a mask and an overlay PNG per image instead."""
    import csv
    import json

    from .inference import is_segmentation, predict

    backend = _load_backend(args)
    if is_segmentation(backend):
        return _predict_masks(backend, args)
    predictions = predict(backend, args.inputs, topk=args.topk, device=args.device)
    if args.format == "json":
        print(json.dumps([{"path": p.path, "top": [{"class": c, "probability": v} for c, v in p.top]}
                          for p in predictions], indent=2))
    elif args.format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(["path", "rank", "class", "probability"])
        for p in predictions:
            for rank, (name, prob) in enumerate(p.top, 1):
                writer.writerow([p.path, rank, name, f"{prob:.6f}"])
    else:
        rows = [[p.path if rank == 1 else "", rank, name, round(100 * prob, 2)]
                for p in predictions for rank, (name, prob) in enumerate(p.top, 1)]
        print(format_table(rows, ["image", "rank", "class", "probability (%)"]))
    return 0


def _predict_masks(backend: InferenceBackend, args: argparse.Namespace) -> int:
    """A segmentation model's predict: the files written and each image's classes by share of the pixels."""
    import csv
    import json

    from .inference import predict_masks

    results = predict_masks(backend, args.inputs, args.out, device=args.device)
    if args.format == "json":
        print(json.dumps([{"path": r.path, "mask": str(r.mask_file), "overlay": str(r.overlay_file),
                           "classes": [{"class": c, "share": v} for c, v in r.shares]} for r in results], indent=2))
        return 0
    if args.format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(["path", "mask", "overlay", "class", "share"])
        for r in results:
            writer.writerows([r.path, r.mask_file, r.overlay_file, name, f"{share:.6f}"] for name, share in r.shares)
        return 0
    rows = [[r.path, r.mask_file.name, r.overlay_file.name,
             ", ".join(f"{c} {100 * v:.1f}%" for c, v in r.shares[:args.topk])] for r in results]
    print(format_table(rows, ["image", "mask", "overlay", f"largest classes (top {args.topk}, share of pixels)"]))
    print(f"\nwritten to {args.out}")
    return 0


def _predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a run folder (uses checkpoints/best) or a checkpoint")
    parser.add_argument("inputs", nargs="+", help="image files or folders")
    parser.add_argument("--topk", type=int, default=5)
    parser.add_argument("--format", choices=["table", "json", "csv"], default="table")
    parser.add_argument("--out", default="predictions",
                        help="segmentation models: folder for <image>_mask.png and <image>_overlay.png")
    parser.add_argument("--device", default="cpu")
    _backend_arguments(parser)
    _tome_argument(parser)


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML recipe (default: the built-in digits recipe)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue runs/<name> from checkpoints/last")
    parser.add_argument("--init-from", metavar="CHECKPOINT",
                        help="fine-tune from a checkpoint (vitkit, timm, HF, ViT-5) or a run folder; same as "
                             "finetune.init_from=CHECKPOINT")
    parser.add_argument("--skip-bad-images", action="store_true",
                        help="skip unreadable images (listed in summary.json) instead of stopping")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. optim.lr=1e-3 schedule.epochs=5")


def cmd_data(args: argparse.Namespace) -> int:
    """Scans a dataset: classes, images per class, sizes and modes, and every unreadable file (exit 1 if any)."""
    from .data.check import check_dataset, format_report

    reports = check_dataset(args.spec, seed=args.seed, val_fraction=args.val_fraction)
    print("\n\n".join(format_report(args.spec, report) for report in reports))
    return 1 if any(report.unreadable for report in reports) else 0


def _data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["check"], help="check: scan the dataset and report what it holds")
    parser.add_argument("spec", help="digits, cifar10:PATH, cifar100:PATH, mnist:PATH, fashion-mnist:PATH, "
                                     "imagefolder:PATH, clipfolder:PATH, moving-fashion:PATH")
    parser.add_argument("--seed", type=int, default=0, help="split seed for datasets split by ratio")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="test share when one folder is split")


def cmd_convert(args: argparse.Namespace) -> int:
    """Converts a timm, Hugging Face, ViT-5 or vitkit checkpoint into vitkit's format and prints what was mapped."""
    from .checkpoints import load_checkpoint, save_pretrained

    overrides = parse_overrides(args.overrides)
    model, report = load_checkpoint(args.src, model=args.model, strict=not args.non_strict, use_ema=args.ema,
                                    **overrides)
    save_pretrained(model, args.dst)
    print(report.describe())
    print(f"saved {sum(t.numel() for t in model.state_dict().values()):,} weights to {args.dst} "
          "(config.json + model.safetensors); load it with vitkit.from_pretrained")
    return 0


def _convert_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="checkpoint file, folder (Hugging Face, vitkit) or hf-hub:org/name")
    parser.add_argument("dst", help="output folder for config.json + model.safetensors")
    parser.add_argument("--model", help="vitkit preset supplying what the file does not record (e.g. num_heads)")
    parser.add_argument("--ema", action="store_true", help="take the EMA weights of a training checkpoint")
    parser.add_argument("--non-strict", action="store_true",
                        help="load the tensors that fit and report the rest instead of failing")
    parser.add_argument("overrides", nargs="*", help="ViTConfig fields, e.g. num_heads=6 num_classes=10 img_size=384")


def cmd_export(args: argparse.Namespace) -> int:
    """Writes a run or checkpoint as an ONNX file with a dynamic batch, checked against PyTorch under onnxruntime."""
    from .export import export_onnx
    from .inference import load_model

    try:
        report = export_onnx(load_model(args.checkpoint), args.output, opset=args.opset, check=not args.no_check)
    except ImportError as missing:
        raise SystemExit(f"vitkit export: {missing}")
    checked = ("" if args.no_check
               else f"; onnxruntime matches PyTorch to {report['max_abs_error']:.1e} on the logits")
    print(f"wrote {report['path']} (opset {report['opset']}, input 'images' [batch, C, H, W], output 'logits'; "
          f"preprocessing and class names in its metadata){checked}")
    return 0


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a run folder (uses checkpoints/best) or a checkpoint")
    parser.add_argument("output", help="the .onnx file to write")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset version")
    parser.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")


def cmd_analyze(args: argparse.Namespace) -> int:
    """Writes the paper's Fig. 7 pictures, attention maps, rollout and Grad-CAM as PNGs plus one report.html."""
    from .analysis import analyze, dataset_images, load_for_analysis, load_images, run_pictures, synthetic_images

    model, origin = load_for_analysis(args.source)
    if hasattr(model.cfg, "num_frames"):
        return _analyze_clips(args, model, origin)
    size, chans = model.cfg.img_size, model.cfg.in_chans
    data = None if args.images else _dataset_of(args.source, args.data)
    if args.images:
        images = load_images(args.images, size, chans, model.preprocess)
    elif data:
        images = dataset_images(data, max(args.show, args.num_images), size, chans, model.preprocess)
        origin += f"; images: the {data} test split"
    else:
        images = synthetic_images(args.show, size, chans)
    for name, reason in images.unreadable:
        print(f"vitkit analyze: unreadable image skipped: {name} ({reason})", file=sys.stderr)
    result = analyze(model, images, args.out, layers=args.layer, show=args.show, device=args.device,
                     title=f"vitkit analyze {args.source}", notes=[origin], pictures=run_pictures(args.source))
    for message in result.messages:
        print(f"note: {message}", file=sys.stderr)
    print(f"wrote {len(result.files)} files to {args.out}; open {result.files['report.html']}")
    return 0


def _analyze_clips(args: argparse.Namespace, model, origin: str) -> int:
    """A video model: one strip per clip and layer of its spatial and temporal attention, plus report.html."""
    from .analysis.video import analyze_clips, dataset_clips, folder_clips

    data = None if args.images else _dataset_of(args.source, args.data)
    if not (args.images or data):
        raise ValueError(f"{args.source} is no training run, so it has no clips of its own: pass --data with a clip "
                         "dataset (e.g. moving-fashion:PATH) or --images with clip folders (one clip's frames each)")
    clips = folder_clips(args.images, model) if args.images else dataset_clips(data, args.show, model)
    files = analyze_clips(model, clips, args.out, layers=args.layer, device=args.device,
                          title=f"vitkit analyze {args.source}", notes=[origin + (f"; clips: the {data} test split"
                                                                                  if data else "")])
    print(f"wrote {len(files)} files to {args.out}; open {files['report.html']}")
    return 0


def _analyze_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="run folder (runs/<name>), checkpoint, or preset name (random weights)")
    parser.add_argument("--images", nargs="+", default=[],
                        help="image files or folders (default: test images of --data or of the run's dataset); for "
                             "a video model, clip folders (the frames of one clip each)")
    parser.add_argument("--data", help="dataset spec whose test images to analyse (default: the run's own dataset)")
    parser.add_argument("--num-images", type=int, default=32,
                        help="dataset images to measure attention distances on (maps are drawn for --show of them)")
    parser.add_argument("--out", required=True, help="folder for the PNGs, attention_distance.json and report.html")
    parser.add_argument("--layer", type=int, nargs="+", default=[-1],
                        help="layers whose per-head attention is drawn (default: -1, the last)")
    parser.add_argument("--show", type=int, default=8, help="images to draw maps for (distances use all of them)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")


def cmd_bench(args: argparse.Namespace) -> int:
    """Images/s, FLOP/s and fraction of the measured matmul peak of one preset, optionally beside a plain ViT."""
    import torch

    from .bench import Timing, bench, bench_backends
    from .hardware import slower_than_fp32
    from .report import write_json

    backends = list(args.backend) + (["auto"] if args.best else [])
    if not backends and args.device == "cpu" and (warning := slower_than_fp32(args.dtype)):
        print(f"vitkit bench: warning: {warning}", file=sys.stderr)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads or previous_threads)
    timing = Timing(min_time=args.min_time, repeats=args.repeats, warmup=args.warmup)
    try:
        if backends:
            _check_backend_bench(args)
            records = bench_backends(args.model, backends, batch=args.batch, allow_int8=args.int8, timing=timing,
                                     token_merging=args.tome)
        else:
            records = bench(args.model, batch=args.batch, dtype=args.dtype, train=args.train, compile_=args.compile,
                            baseline=args.baseline, timm=args.timm, device=args.device, timing=timing,
                            token_merging=args.tome)
    except ImportError as missing:
        if args.timm:
            raise SystemExit(f"--timm needs an importable timm (pip install timm; it imports torchvision): {missing}")
        if backends:
            raise SystemExit(f"vitkit bench: {missing}")
        raise
    finally:
        torch.set_num_threads(previous_threads)
    rows = [[r["impl"], r["mode"], r["dtype"], r["batch"], r["threads"], round(r["img_s"], 1),
             round(r["ratio_to_vitkit"], 2), round(r["gflop_s"], 1), round(100 * r["peak_fraction"], 1),
             round(r["first_call_s"], 1), "n/a" if r["peak_mem_mib"] is None else round(r["peak_mem_mib"])]
            for r in records]
    print(format_table(rows, ["impl", "mode", "dtype", "batch", "threads", "img/s", "x vitkit", "GFLOP/s",
                              "% peak", "1st call s", "peak MiB"]))
    for dtype, peak in {r["dtype"]: r["peak_gflop_s"] for r in records}.items():
        print(f"measured {dtype} matmul peak: {peak:.0f} GFLOP/s")
    if args.json:
        print(f"written to {write_json(args.json, records)}")
    return 0


def _check_backend_bench(args: argparse.Namespace) -> None:
    """--backend / --best time CPU inference backends, each with its own dtype and compilation."""
    clashing = [flag for flag, on in (("--train", args.train), ("--baseline", args.baseline), ("--timm", args.timm),
                                      ("--compile", args.compile), ("--dtype", args.dtype != "fp32"),
                                      ("--device", args.device != "cpu")) if on]
    if clashing:
        raise ValueError(f"--backend and --best time CPU inference backends, each in its own dtype: drop "
                         f"{', '.join(clashing)}")


def _bench_arguments(parser: argparse.ArgumentParser) -> None:
    from .bench import add_timing_arguments
    from .export import BACKENDS

    parser.add_argument("model", help="preset name, e.g. vit_cifar_patch4_32")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--dtype", choices=("fp32", "bf16", "int8"), default="fp32",
                        help="bf16: training autocasts, inference runs the model cast to bf16; int8: inference with "
                             "the blocks' linear layers in int8 (vitkit.export.quantize_int8), the rest in fp32")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the model, frozen for inference (first call s = compile time)")
    parser.add_argument("--train", action="store_true", help="time a full training step instead of inference")
    parser.add_argument("--baseline", action="store_true", help="also time a plain PyTorch ViT with the same weights")
    parser.add_argument("--timm", action="store_true", help="also time timm's VisionTransformer with the same weights")
    parser.add_argument("--backend", nargs="+", default=[], choices=("auto", *BACKENDS),
                        help="time these inference backends beside torch-fp32 (CPU; first call s = the set-up: "
                             "ONNX export, quantization, compilation)")
    parser.add_argument("--best", action="store_true",
                        help="time optimize_for_inference's choice for this CPU beside torch-fp32 (--backend auto)")
    parser.add_argument("--int8", action="store_true", help="let --best / auto choose an int8 backend")
    _tome_argument(parser)
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    add_timing_arguments(parser)
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before timing")
    parser.add_argument("--json", help="also write the records to this JSON file")


def cmd_robustness(args: argparse.Namespace) -> int:
    """Clean, adversarial, corrupted and OOD behaviour of a run or checkpoint as robustness.json + report.html."""
    from pathlib import Path

    import torch

    from .hardware import pick_threads
    from .robust.corruptions import parse_corruptions
    from .robust.pipeline import RobustnessSettings, measure_robustness
    from .robust.report import summary_lines

    settings = RobustnessSettings(
        attacks=_names(args.attacks), eps=[_number(v, "--eps") for v in _names(args.eps)],
        pgd_steps=args.pgd_steps, apgd_steps=args.apgd_steps,
        corruptions=[] if args.corruptions == "none" else parse_corruptions(args.corruptions),
        severities=_severities(args.severities), ood=[] if args.ood == ["none"] else args.ood,
        detectors=_names(args.detectors), limit=args.limit, fit_images=args.fit_images, knn_k=args.knn_k,
        batch_size=args.batch_size, seed=args.seed, show=args.show)
    out = Path(args.out or (Path(args.checkpoint) if Path(args.checkpoint).is_dir() else Path(".")) / "robustness")
    previous_threads = torch.get_num_threads()
    pick_threads(torch.device(args.device))
    try:
        record, files = measure_robustness(args.checkpoint, out, args.data, settings, args.device)
    finally:
        torch.set_num_threads(previous_threads)
    print("\n".join(summary_lines(record)))
    print(f"written: {files['robustness.json']}, {files['report.html']}")
    return 0


def _names(text: str) -> list[str]:
    """'a,b,c' -> ['a', 'b', 'c']; 'none' or '' -> []."""
    return [] if text.strip() in ("", "none") else [part.strip() for part in text.split(",") if part.strip()]


def _number(text: str, flag: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{flag} {text!r} is not a number") from None


def _severities(text: str) -> list[int]:
    """'1-5', '1,3,5' or '2' -> severities; 'none' -> []."""
    chosen: list[int] = []
    for part in _names(text):
        low, _, high = part.partition("-")
        try:
            chosen += list(range(int(low), int(high or low) + 1))
        except ValueError:
            raise ValueError(f"--severities {text!r}: use a range (1-5) or a list (1,3,5)") from None
    return chosen


def _robustness_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a run folder (uses checkpoints/best) or a checkpoint")
    parser.add_argument("--data", help="labelled dataset spec (default: the run's own, with its data.subset); its "
                                       "test split is attacked and corrupted, its train split fits the OOD detectors")
    parser.add_argument("--ood", nargs="+", default=["noise:gaussian", "noise:uniform"],
                        help="OOD sets: a dataset spec (its test split, e.g. fashion-mnist:PATH), folder:PATH (any "
                             "folder of images), noise:gaussian, noise:uniform, held-out (the classes the run's "
                             "data.subset left out); 'none' for no OOD detection")
    parser.add_argument("--attacks", default="fgsm,pgd,apgd", help="comma-separated: fgsm, pgd, apgd (APGD-CE); none")
    parser.add_argument("--eps", default="1,2,4,8", help="L-inf radii in units of 1/255 (8 means 8/255)")
    parser.add_argument("--pgd-steps", type=int, default=20, help="PGD iterations (step 2.5 eps / steps)")
    parser.add_argument("--apgd-steps", type=int, default=100, help="APGD-CE iterations")
    parser.add_argument("--corruptions", default="all",
                        help="all, a group (noise, blur, weather, digital), comma-separated names, or none")
    parser.add_argument("--severities", default="1-5", help="corruption severities, e.g. 1-5 or 1,3,5")
    parser.add_argument("--detectors", default=",".join(("msp", "max_logit", "energy", "mahalanobis",
                                                         "relative_mahalanobis", "knn")),
                        help="OOD scores to compute (the last three need a model with pooled features); "
                             "none for no OOD detection")
    parser.add_argument("--limit", type=int, help="measure on this many test (and OOD) images, drawn at random")
    parser.add_argument("--fit-images", type=int, help="training images the OOD detectors are fitted on "
                                                        "(default: the whole train split)")
    parser.add_argument("--knn-k", type=int, default=50, help="the k of the kNN detector")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0, help="random starts, corruption noise, image choice")
    parser.add_argument("--show", type=int, default=6, help="adversarial examples drawn in the report")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", help="output folder (default: <run>/robustness)")


def cmd_serve(args: argparse.Namespace) -> int:
    """Serves a checkpoint or ONNX file over HTTP with dynamic batching until SIGTERM (then drains and exits 0)."""
    import os

    from .serve import ServeConfig, require_serve_extra
    from .serve.config import API_KEY_VARIABLE

    try:
        require_serve_extra()
    except ImportError as missing:
        raise SystemExit(f"vitkit serve: {missing}")
    if not (args.source.startswith("hf-hub:") or os.path.exists(args.source)):
        raise ValueError(f"{args.source}: no such file or folder; give a run folder, a checkpoint or an ONNX file "
                         "from `vitkit export`")
    config = ServeConfig(source=args.source, name=args.name, backend=args.backend, int8=args.int8,
                         max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
                         timeout_s=args.timeout, max_pixels=args.max_pixels, max_body_mb=args.max_body_mb,
                         api_key=args.api_key or os.environ.get(API_KEY_VARIABLE), host=args.host, port=args.port,
                         workers=args.workers, threads=args.threads, access_log=not args.no_access_log,
                         token_merging=args.tome)
    from .serve.server import serve

    return serve(config)


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="run folder, checkpoint (vitkit, timm, HF, ViT-5) or an ONNX file from "
                                       "`vitkit export` (served by onnxruntime)")
    _backend_arguments(parser)
    _tome_argument(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only; 0.0.0.0 "
                                                             "exposes the server to the network)")
    parser.add_argument("--port", type=int, default=8000, help="port (0: any free one; the log names it)")
    parser.add_argument("--max-batch-size", type=int, default=32, help="most images in one forward")
    parser.add_argument("--max-wait-ms", type=float, default=5.0,
                        help="longest a request waits for its batch to fill (0: run whatever is queued at once)")
    parser.add_argument("--max-queue", type=int, default=256,
                        help="images that may wait; beyond that requests get 503 with Retry-After")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds a request may wait for its answer "
                                                                    "before a 504")
    parser.add_argument("--max-pixels", type=int, default=40_000_000,
                        help="largest image (width x height) accepted, checked from the header before decoding")
    parser.add_argument("--max-body-mb", type=float, default=10.0, help="largest request body; beyond it 413")
    parser.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on every endpoint but /healthz and "
                                          "/readyz (default: $VITKIT_API_KEY, else no key)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes sharing the port, the cores split between them; /metrics sums them")
    parser.add_argument("--threads", type=int, help="torch / onnxruntime threads per worker (default: cores / "
                                                    "workers)")
    parser.add_argument("--name", help="the model's name in responses (default: the source's file or folder name)")
    parser.add_argument("--no-access-log", action="store_true",
                        help="no log line per request (refusals and errors are still logged with their request id)")


def cmd_prune(args: argparse.Namespace) -> int:
    """Removes attention heads and MLP channels (Torch-Pruning) until the model needs --flops fewer FLOPs, and saves
    it with its per-block widths; fine-tune it after (configs/cifar10_prune_finetune.yaml)."""
    from .checkpoints import save_pretrained
    from .export.prune import prune
    from .inference import load_model
    from .models.profile import count_flops, count_params

    model = load_model(args.checkpoint)
    try:
        pruned = prune(model, args.flops, round_to=args.round_to, global_pruning=args.global_pruning)
    except ImportError as missing:
        raise SystemExit(f"vitkit prune: {missing}")
    save_pretrained(pruned, args.output)
    cfg = model.cfg
    rows = [[name, f"{count_params(m) / 1e6:.3f}", f"{count_flops(m, cfg.img_size, cfg.in_chans) / 1e6:.1f}",
             " ".join("{}/{}".format(*m.cfg.block_width(i)) for i in range(cfg.depth))]
            for name, m in (("original", model), ("pruned", pruned))]
    print(format_table(rows, ["model", "params (M)", "MFLOPs", "heads/MLP width per block"]))
    print(f"saved to {args.output}; fine-tune it: vitkit train --config configs/cifar10_prune_finetune.yaml "
          f"--init-from {args.output}")
    return 0


def _prune_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a run folder (uses checkpoints/best) or a checkpoint")
    parser.add_argument("output", help="folder for the pruned model (config.json + model.safetensors)")
    parser.add_argument("--flops", type=float, required=True, help="share of the FLOPs to remove, e.g. 0.3 or 0.5")
    parser.add_argument("--round-to", type=int, help="keep MLP widths multiples of this (32 keeps int4 possible)")
    parser.add_argument("--global", dest="global_pruning", action="store_true",
                        help="rank heads and channels across blocks (widths differ per block) instead of per block")


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], Callable[[argparse.ArgumentParser], None], str]] = {
    "models": (cmd_models, lambda p: p.add_argument("pattern", nargs="?", default="*",
                                                    help="shell-style filter, e.g. 'vit5_*'"),
               "list presets with params and GFLOPs"),
    "info": (cmd_info, lambda p: (p.add_argument("name", help="preset name"),
                                  p.add_argument("overrides", nargs="*", help="ViTConfig overrides, e.g. img_size=384")),
             "show one preset's modules, token shapes, params and FLOPs"),
    "train": (cmd_train, _train_arguments, "train a model (default: the built-in digits recipe)"),
    "eval": (cmd_eval, _eval_arguments, "accuracy (segmentation: mIoU), per class, and confusion matrix of a "
                                        "checkpoint"),
    "predict": (cmd_predict, _predict_arguments, "top-k classes (segmentation: mask and overlay PNGs) for image "
                                                 "files or folders"),
    "data": (cmd_data, _data_arguments, "inspect a dataset: `vitkit data check SPEC`"),
    "convert": (cmd_convert, _convert_arguments, "convert a timm / HF / ViT-5 checkpoint to vitkit's format"),
    "analyze": (cmd_analyze, _analyze_arguments, "Fig. 7 analyses, attention maps and Grad-CAM as PNGs + report.html"),
    "export": (cmd_export, _export_arguments, "write a checkpoint as a checked ONNX file"),
    "bench": (cmd_bench, _bench_arguments, "images/s, FLOP/s and share of matmul peak, optionally beside a plain ViT"),
    "robustness": (cmd_robustness, _robustness_arguments,
                   "adversarial attacks, common corruptions and OOD detection as robustness.json + report.html"),
    "serve": (cmd_serve, _serve_arguments, "HTTP inference server with dynamic batching, metrics and a demo page"),
    "prune": (cmd_prune, _prune_arguments, "remove heads and MLP channels to a FLOPs target (Torch-Pruning)"),
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
