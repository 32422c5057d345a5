"""Input pipeline vs. training step on CIFAR-10: can the data keep the model fed?

    python benchmarks/data.py                       # about a minute on 2 cores
    python benchmarks/data.py --device cuda --min-time 2

Measures, in one run and on one device: images/s of the input pipeline alone (CIFAR-10 train split, the full
recipe: pad-and-crop, flip, RandAugment or 3-Augment, random erasing, mixup/cutmix, normalise), images/s of the
training step of vit_cifar_patch4_32 (forward + backward + AdamW, fp32, batch 128), and a per-stage breakdown
of the pipeline with the kornia alternatives we did not use. Prints tables; writes benchmarks/results/data.json.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import kornia
import numpy as np
import torch
import torch.nn.functional as F

from vitkit import create_model
from vitkit.data import AugmentConfig, build_dataset, build_loader, ops
from vitkit.data.mixup import mix_batch
from vitkit.data.randaugment import parse_rand_augment, rand_augment
from vitkit.data.transforms import color_jitter, pad_crop, random_erase, sample_rrc_boxes, three_augment
from vitkit.report import format_table, write_json

ROOT = Path(__file__).resolve().parents[1]
MIX = dict(mixup_alpha=0.8, cutmix_alpha=1.0, re_prob=0.25)
RECIPES = {
    "RandAugment recipe": AugmentConfig(auto_augment="rand-m9-mstd0.5-inc1", **MIX),
    "3-Augment recipe": AugmentConfig(three_augment=True, **MIX),
}


def rate(step: Callable[[], int], min_time: float, repeats: int) -> float:
    """Median images/s over `repeats` timed runs of at least `min_time` seconds, after one warm-up call."""
    step()
    rates = []
    for _ in range(repeats):
        start, count = time.perf_counter(), 0
        while time.perf_counter() - start < min_time:
            count += step()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def pipeline_step(loader) -> Callable[[], int]:
    """Pulls one batch per call, starting a new epoch when one runs out."""
    state = {"iterator": iter(loader), "epoch": 0}

    def step() -> int:
        try:
            images, _ = next(state["iterator"])
        except StopIteration:
            state["epoch"] += 1
            loader.set_epoch(state["epoch"])
            state["iterator"] = iter(loader)
            images, _ = next(state["iterator"])
        return images.shape[0]

    return step


def training_step(batches: list, device: torch.device) -> Callable[[], int]:
    """vit_cifar_patch4_32: forward, soft-target cross-entropy, backward, AdamW step."""
    model = create_model("vit_cifar_patch4_32", num_classes=10).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    position = {"i": 0}

    def step() -> int:
        images, targets = batches[position["i"] % len(batches)]
        position["i"] += 1
        loss = torch.sum(-targets * F.log_softmax(model(images), dim=-1), dim=-1).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return images.shape[0]

    return step


def stage_rates(images: torch.Tensor, min_time: float, repeats: int) -> list[list]:
    """Each stage alone on one uint8 batch, next to the kornia module it could have been."""
    x = images.float() / 255
    labels = torch.arange(images.shape[0]) % 10
    fill = torch.tensor([0.49, 0.48, 0.45], device=x.device)
    spec = parse_rand_augment("rand-m9-mstd0.5-inc1")
    cfg = AugmentConfig(**MIX)
    rng = np.random.default_rng(0)
    n = x.shape[0]
    kornia_crop = kornia.augmentation.RandomCrop((32, 32), padding=4)
    kornia_rand_augment = kornia.augmentation.auto.RandAugment(n=2, m=9)
    stages = [
        ("pad 4 + random crop", "vitkit (torch gather)", lambda: pad_crop(x, 4, "constant", rng)),
        ("pad 4 + random crop", "kornia RandomCrop", lambda: kornia_crop(x)),
        ("random-resized crop", "vitkit (torch grid_sample)",
         lambda: ops.resized_crop(x, sample_rrc_boxes(rng, n, 32, 32, (0.08, 1), (3 / 4, 4 / 3)), (32, 32),
                                  "bilinear")),
        ("random-resized crop", "kornia crop_and_resize",
         lambda: kornia.geometry.transform.crop_and_resize(x, _box_corners(rng, n), (32, 32))),
        ("horizontal flip", "vitkit (torch where)", lambda: ops.hflip(x, rng.random(n) < 0.5)),
        ("RandAugment m9 mstd0.5 inc1", "vitkit (kornia ops, per-sample)", lambda: rand_augment(x, spec, rng, fill)),
        ("RandAugment n2 m9", "kornia RandAugment (one op pair per batch)",
         lambda: kornia_rand_augment(x)),
        ("3-Augment", "vitkit (kornia ops)", lambda: three_augment(x, rng)),
        ("colour jitter 0.3", "vitkit (kornia ops)", lambda: color_jitter(x, 0.3, rng)),
        ("random erasing 0.25", "vitkit (torch masks)", lambda: random_erase(x, 0.25, "pixel", 1, rng)),
        ("mixup/cutmix", "vitkit (torch)", lambda: mix_batch(x, labels, 10, cfg, rng)),
    ]
    rows = []
    for stage, how, fn in stages:
        rows.append([stage, how, round(rate(lambda fn=fn: (fn(), n)[1], min_time, repeats))])
        print(f"  {stage} / {how}: {rows[-1][-1]} img/s", file=sys.stderr, flush=True)
    return rows


def _box_corners(rng: np.random.Generator, count: int) -> torch.Tensor:
    top, left, h, w = sample_rrc_boxes(rng, count, 32, 32, (0.08, 1), (3 / 4, 4 / 3)).T.astype(np.float32)
    corners = np.stack([np.stack([left, top], 1), np.stack([left + w - 1, top], 1),
                        np.stack([left + w - 1, top + h - 1], 1), np.stack([left, top + h - 1], 1)], 1)
    return torch.from_numpy(corners)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cifar", default=str(ROOT.parent / "shared" / "datasets" / "cifar10"),
                        help="folder holding cifar-10-batches-py")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--min-time", type=float, default=1.5, help="seconds per timed repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "data.json"))
    args = parser.parse_args()

    torch.manual_seed(0)
    load_before = os.getloadavg()[0]
    device = torch.device(args.device)
    dataset = build_dataset(f"cifar10:{args.cifar}", "train")
    rows, records = [], []
    batches = None
    for name, augment in RECIPES.items():
        loader = build_loader(dataset, args.batch_size, train=True, augment=augment, img_size=32, device=device)
        images_s = rate(pipeline_step(loader), args.min_time, args.repeats)
        batches = batches or [next(iter(loader)) for _ in range(4)]
        records.append(dict(stage=f"pipeline: {name}", img_s=round(images_s, 1)))
        print(f"{name}: {images_s:.0f} img/s", file=sys.stderr, flush=True)
    train_s = rate(training_step(batches, device), args.min_time, args.repeats)
    records.append(dict(stage="training step: vit_cifar_patch4_32 fwd+bwd+AdamW fp32", img_s=round(train_s, 1)))
    for record in records:
        record["x_training_step"] = round(record["img_s"] / train_s, 1)
        rows.append([record["stage"], record["img_s"], record["x_training_step"]])
    print(format_table(rows, ["CIFAR-10, batch %d, %s" % (args.batch_size, device), "img/s", "x training step"]))

    sample = dataset.images[:args.batch_size].to(device)
    stages = stage_rates(sample, args.min_time / 2, args.repeats)
    print()
    print(format_table(stages, ["stage (one batch of 128, 32x32)", "implementation", "img/s"]))
    env = dict(torch=torch.__version__, kornia=kornia.__version__, threads=torch.get_num_threads(),
               device=str(device), cpu=platform.processor() or platform.machine(), batch_size=args.batch_size,
               load_average_before=round(load_before, 2), load_average_after=round(os.getloadavg()[0], 2))
    stage_records = [dict(stage=s, implementation=how, img_s=r) for s, how, r in stages]
    print(f"\nwritten to {write_json(args.out, dict(environment=env, results=records, stages=stage_records))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
