"""Transfer: does pre-training on CIFAR-10 help on Fashion-MNIST, and how much does each fine-tuning mode recover?

    python benchmarks/transfer.py                                   # defaults: about 6 minutes on 2 cores
    python benchmarks/transfer.py --pretrain-seconds 60 --finetune-seconds 30 --distill-seconds 30
    python benchmarks/transfer.py --pretrained runs/budget/cifar10-30min     # a model trained by train_budget.py

One run, one device: a tiny ViT is pre-trained on CIFAR-10 for a fixed wall-clock budget (or loaded from a run
or checkpoint, which makes a stronger teacher), then adapted to
Fashion-MNIST (28x28 gray -> 32x32 RGB, new zero-initialised 10-class head) with the same budget for each of:
linear probe (features cached once), visual prompt tuning (deep prompts, frozen body), full fine-tuning, and the
same model trained from scratch. Then DeiT distillation on CIFAR-10: a smaller student with a distillation token,
taught by the pre-trained model (hard distillation), against the same student without a teacher, same steps.
Prints one table per part; writes benchmarks/results/transfer.json.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import platform
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from vitkit import VisionTransformer, create_model
from vitkit.data import AugmentConfig, build_dataset, build_loader
from vitkit.inference import load_model
from vitkit.representation import linear_probe
from vitkit.report import format_table, write_json
from vitkit.train.distill import DistillationLoss
from vitkit.train.evaluate import evaluate
from vitkit.train.finetune import FinetuneConfig, apply_mode
from vitkit.train.optim import build_optimizer

ROOT = Path(__file__).resolve().parents[1]
TEACHER = dict(img_size=32, patch_size=4, embed_dim=96, depth=4, num_heads=3, in_chans=3)
STUDENT = dict(img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=2, in_chans=3, dist_token=True)
AUGMENT = AugmentConfig(crop="pad", padding=4, hflip=0.5)


def subset(dataset, count: int):
    """The first `count` images: a fixed evaluation set small enough for a CPU budget."""
    return dataclasses.replace(dataset, images=dataset.images[:count], labels=dataset.labels[:count])


def loaders(spec: str, batch_size: int, eval_images: int):
    train_set, test_set = build_dataset(spec, "train"), subset(build_dataset(spec, "test"), eval_images)
    make = lambda data, train: build_loader(data, batch_size=batch_size if train else 512, train=train,  # noqa: E731
                                            augment=AUGMENT, img_size=32, in_chans=3, num_workers=0)
    return make(train_set, True), make(test_set, False)


def train_for(model: torch.nn.Module, loader, lr: float,
              loss_fn: Callable[[object, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
              seconds: float | None = None, max_steps: int | None = None) -> int:
    """AdamW with a cosine decay over the budget (wall-clock seconds or optimiser steps); returns the steps taken."""
    loss_fn = loss_fn or (lambda out, images, targets: F.cross_entropy(out, targets))
    optimizer = build_optimizer(model, "adamw", lr, 0.05, (0.9, 0.999), 1e-8, 0.9, None)
    model.train()
    start, steps, epoch = time.perf_counter(), 0, 0
    while True:
        loader.set_epoch(epoch)
        for images, targets in loader:
            done = (time.perf_counter() - start) / seconds if seconds else steps / max_steps
            if done >= 1:
                return steps
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"] * 0.5 * (1 + math.cos(math.pi * done))
            loss = loss_fn(model(images), images, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
        epoch += 1


def top1(model: torch.nn.Module, loader) -> float:
    return evaluate(model, loader, 10, torch.device("cpu"))["top1"]


def transfer(pretrained: torch.nn.Module, args) -> list[list]:
    """The four ways to Fashion-MNIST, each with the same budget, from the same pre-trained weights."""
    train_loader, test_loader = loaders(f"fashion-mnist:{args.fashion}", args.batch_size, args.eval_images)
    rows = []
    for mode, lr in (("linear probe", None), ("prompt tuning", 1e-2), ("full fine-tuning", 5e-4),
                     ("from scratch", 1e-3)):
        torch.manual_seed(0)
        if mode == "from scratch":
            model = VisionTransformer(pretrained.cfg)
        else:
            model = copy.deepcopy(pretrained)
            model.reset_classifier(10)
        start = time.perf_counter()
        if mode == "linear probe":
            probe_loader = build_loader(subset(train_loader.dataset, args.probe_images), batch_size=512, train=False,
                                        augment=AUGMENT, img_size=32, in_chans=3, num_workers=0)
            scores, steps = linear_probe(model, probe_loader, test_loader, epochs=50, lr=1e-2), "-"
            accuracy = scores["test_top1"]
        else:
            if mode == "prompt tuning":
                apply_mode(model, FinetuneConfig(mode="prompt", prompt_tokens=8, prompt_deep=True))
            steps = train_for(model, train_loader, lr, seconds=args.finetune_seconds)
            accuracy = top1(model, test_loader)
        trained = model.head.parameters() if mode == "linear probe" else model.parameters()
        trainable = sum(p.numel() for p in trained if p.requires_grad)
        rows.append([mode, round(accuracy, 2), steps, trainable, round(time.perf_counter() - start, 1)])
        print(rows[-1], flush=True)
    return rows


def distillation(teacher: torch.nn.Module, args) -> list[list]:
    """The same small student with and without the pre-trained teacher, on CIFAR-10.

    Both see the same images: the student alone trains for the time budget, the taught one for as many steps
    (the teacher's forward pass makes its steps slower; the seconds column shows by how much).
    """
    train_loader, test_loader = loaders(f"cifar10:{args.cifar}", args.batch_size, args.eval_images)
    teacher.eval().requires_grad_(False)
    rows = [["teacher (pre-trained)", round(top1(teacher, test_loader), 2), "-", "-"]]
    steps = None
    for name, teach in (("student, no teacher", None), ("student, hard distillation", teacher)):
        torch.manual_seed(0)
        student = create_model("vit_cifar_patch4_32", **STUDENT, num_classes=10)
        student.distilled_training = teach is not None
        loss = DistillationLoss(F.cross_entropy, teach, kind="hard", alpha=0.5)
        task = (lambda out, images, targets: F.cross_entropy(out[0] if isinstance(out, tuple) else out, targets))
        start = time.perf_counter()
        if steps is None:
            steps = train_for(student, train_loader, 1e-3, task, seconds=args.distill_seconds)
        else:
            train_for(student, train_loader, 1e-3, loss, max_steps=steps)
        rows.append([name, round(top1(student, test_loader), 2), steps, round(time.perf_counter() - start, 1)])
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrain-seconds", type=float, default=120, help="CIFAR-10 pre-training budget")
    parser.add_argument("--pretrained", help="a CIFAR-10 run or checkpoint to start from instead of pre-training")
    parser.add_argument("--finetune-seconds", type=float, default=45, help="budget of each fine-tuning mode")
    parser.add_argument("--distill-seconds", type=float, default=45,
                        help="the untaught student's budget; the taught one gets as many steps (0: skip)")
    parser.add_argument("--probe-images", type=int, default=10000, help="training images the linear probe caches")
    parser.add_argument("--eval-images", type=int, default=2000, help="test images each accuracy is measured on")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--cifar", default=str(ROOT.parent / "shared/datasets/cifar10/cifar-10-batches-py"))
    parser.add_argument("--fashion", default=str(ROOT.parent / "shared/datasets/fashion-mnist"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/transfer.json"))
    args = parser.parse_args()

    torch.manual_seed(0)
    cifar_train, cifar_test = loaders(f"cifar10:{args.cifar}", args.batch_size, args.eval_images)
    if args.pretrained:
        pretrained, steps = load_model(args.pretrained).float(), "-"
        origin = f"loaded from {args.pretrained}"
    else:
        pretrained = create_model("vit_cifar_patch4_32", **TEACHER, num_classes=10)
        steps = train_for(pretrained, cifar_train, 1e-3, seconds=args.pretrain_seconds)
        origin = f"{steps} steps in {args.pretrain_seconds:.0f}s"
    cifar_top1 = top1(pretrained, cifar_test)
    print(f"pre-trained on CIFAR-10: {origin}, top-1 {cifar_top1:.2f}%")

    rows = transfer(pretrained, args)
    print(f"\nFashion-MNIST (32x32 RGB), {args.finetune_seconds:.0f}s per mode, {args.eval_images} test images:")
    print(format_table(rows, ["mode", "top-1 (%)", "steps", "trainable params", "seconds"]))
    distill_rows = distillation(pretrained, args) if args.distill_seconds > 0 else []
    if distill_rows:
        print(f"\nCIFAR-10 distillation, {args.distill_seconds:.0f}s per student, {args.eval_images} test images:")
        print(format_table(distill_rows, ["model", "top-1 (%)", "steps", "seconds"]))
    write_json(Path(args.out), {
        "settings": vars(args), "machine": platform.platform(), "threads": torch.get_num_threads(),
        "pretrain": {"steps": steps, "cifar10_top1": cifar_top1,
                     "model": dataclasses.asdict(pretrained.cfg) if args.pretrained else TEACHER},
        "transfer": [dict(zip(["mode", "top1", "steps", "trainable_params", "seconds"], r)) for r in rows],
        "distillation": [dict(zip(["model", "top1", "steps", "seconds"], r)) for r in distill_rows],
        "student": STUDENT})
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
