"""Self-supervised pre-training on CIFAR-10 at CPU scale: MAE and the ViT paper's masked patch prediction, judged by
kNN, a linear probe and fine-tuning with all and with 10 % of the labels, beside a random-init floor and the
supervised budget model's ceiling.

    python benchmarks/selfsup.py                       # the issue's protocol: about 2 hours on 2 cores, see below
    python benchmarks/selfsup.py --smoke               # every stage on the digits with tiny models, in seconds

1. MAE and masked patch prediction each pre-train for --pretrain-minutes (20) with configs/cifar10_mae_cpu.yaml and
   configs/cifar10_masked_patch_cpu.yaml (the same plain 4x4-patch encoder).
2. Each encoder, a randomly initialised one (the floor) and the supervised 30-minute budget model (the ceiling,
   --ceiling) is judged on its pooled features: kNN top-1 for k = 20 and 200 (cosine, temperature-weighted votes;
   the 50,000 training images are the memory) and a linear probe (BatchNorm without affine + linear head, cached
   features); `vitkit eval RUN --knn --linear-probe` does the same for one checkpoint.
3. Each pre-trained encoder and the same architecture from scratch fine-tune for --finetune-minutes (10) with
   configs/cifar10_finetune_selfsup.yaml (all labels) and configs/cifar10_finetune_selfsup_10pct.yaml (500 labels
   per class, seed 0). Where a pre-trained run and scratch differ by under 2 points, both run again with seed 1 and
   the table shows the mean of the two seeds.
Prints the table, writes benchmarks/results/selfsup.json and the table of docs/selfsup.md (between its markers).
"""
from __future__ import annotations

import argparse
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import torch

from vitkit import save_pretrained
from vitkit.data import build_dataset
from vitkit.hardware import cpu_kernels
from vitkit.inference import judge_representation, load_model
from vitkit.preprocess import Preprocess
from vitkit.report import format_table, write_json
from vitkit.train import resolve_config, train
from vitkit.train.trainer import build_model

ROOT = Path(__file__).resolve().parents[1]
CIFAR = f"cifar10:{ROOT.parent / 'shared' / 'datasets' / 'cifar10' / 'cifar-10-batches-py'}"
CEILING = ROOT.parent / "shared" / "checkpoints" / "cifar10_budget"
PRETRAIN = {"mae": ROOT / "configs" / "cifar10_mae_cpu.yaml",
            "masked_patch": ROOT / "configs" / "cifar10_masked_patch_cpu.yaml"}
FINETUNE = {"100%": ROOT / "configs" / "cifar10_finetune_selfsup.yaml",
            "10%": ROOT / "configs" / "cifar10_finetune_selfsup_10pct.yaml"}
NAMES = {"random": "random init (floor)", "mae": "MAE", "masked_patch": "masked patch prediction (3-bit colour)",
         "supervised": "supervised budget model (ceiling)"}
CLOSE = 2.0  # points: a difference under this gets a second seed
MARKERS = ("<!-- selfsup-table:start -->", "<!-- selfsup-table:end -->")
# --smoke: the digits (8x8, gray) with a model small enough that each stage takes seconds
SMOKE_MODEL = ["model.img_size=8", "model.patch_size=2", "model.embed_dim=32", "model.depth=1", "model.num_heads=2"]
SMOKE = ["data.dataset=digits", "data.num_workers=0", "data.batch_size=64", "eval_every_epochs=100",
         "logging.progress=false"]
SMOKE_PRETRAIN = ["selfsup.mae.decoder_embed_dim=16", "selfsup.mae.decoder_depth=1", "selfsup.mae.decoder_num_heads=2",
                  "selfsup.knn_images=100"]


class Protocol:
    """Where the runs go and how each stage is called, full size or --smoke."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.out = args, Path(args.output_dir)
        self.data = "digits" if args.smoke else args.data
        self.extra = SMOKE + SMOKE_MODEL if args.smoke else [f"data.dataset={args.data}"]

    def pretrain(self, task: str) -> Path:
        overrides = self.extra + (SMOKE_PRETRAIN if self.args.smoke else []) + [
            f"schedule.time_budget_minutes={self.args.pretrain_minutes}", f"output_dir={self.out}", f"name={task}"]
        train(PRETRAIN[task], overrides)
        return self.out / task

    def random_init(self) -> Path:
        """The pre-training architecture as initialised, saved like any checkpoint: the floor."""
        cfg, data = resolve_config(PRETRAIN["mae"], self.extra), build_dataset(self.data, "test")
        torch.manual_seed(0)
        model = build_model(cfg, num_classes=0, in_chans=data.num_channels)
        model.preprocess = Preprocess(tuple(data.mean), tuple(data.std))  # the data's, as a trained encoder's
        return save_pretrained(model, self.out / "random_init")

    def judge(self, source: Path) -> dict[str, float]:
        epochs = 5 if self.args.smoke else self.args.probe_epochs
        return judge_representation(load_model(source), self.data, knn=(20, 200), probe=True, probe_epochs=epochs)

    def finetune(self, labels: str, init: str, seed: int) -> float:
        init_from = [] if init == "scratch" else [f"finetune.init_from={self.out / init}"]
        smoke = ["data.subset.per_class=0.1"] if self.args.smoke and labels == "10%" else []
        name = f"ft-{labels.rstrip('%')}pct-{init}-seed{seed}"
        overrides = self.extra + smoke + init_from + [f"seed={seed}", f"output_dir={self.out}", f"name={name}",
                                                       f"schedule.time_budget_minutes={self.args.finetune_minutes}"]
        return train(FINETUNE[labels], overrides).summary["final_top1"]


def fine_tune_all(protocol: Protocol, objectives: list[str]) -> dict[str, dict[str, list[float]]]:
    """{labels: {init: [top-1 per seed]}}: seed 0 for every run, seed 1 for pairs within CLOSE points of scratch."""
    results: dict[str, dict[str, list[float]]] = {}
    for labels in FINETUNE:
        runs = {init: [protocol.finetune(labels, init, 0)] for init in ["scratch", *objectives]}
        close = [init for init in objectives if abs(runs[init][0] - runs["scratch"][0]) < CLOSE]
        for init in (["scratch"] if close else []) + close:
            runs[init].append(protocol.finetune(labels, init, 1))
        results[labels] = runs
    return results


def table(judged: dict[str, dict], tuned: dict[str, dict[str, list[float]]], minutes: dict[str, float]) -> tuple:
    headers = ["encoder", "pre-train (min)", "kNN-20 (%)", "kNN-200 (%)", "linear probe (%)", "fine-tune 100 % (%)",
               "fine-tune 10 % (%)"]
    rows = []
    for key, scores in judged.items():
        init = "scratch" if key == "random" else key
        tuned_cells = [_mean_cell(tuned.get(labels, {}).get(init)) for labels in FINETUNE]
        rows.append([NAMES[key], minutes.get(key, "-"), round(scores["knn20_top1"], 2), round(scores["knn200_top1"], 2),
                     round(scores["probe_top1"], 2), *tuned_cells])
    return headers, rows


def _mean_cell(values: list[float] | None) -> str | float:
    if not values:
        return "-"
    mean = round(statistics.mean(values), 2)
    return mean if len(values) == 1 else f"{mean} ({', '.join(f'{v:.2f}' for v in values)})"


def write_docs_table(path: Path, text: str) -> None:
    """Replaces the table between the markers of docs/selfsup.md."""
    page = path.read_text()
    pattern = re.compile(re.escape(MARKERS[0]) + ".*?" + re.escape(MARKERS[1]), re.S)
    if not pattern.search(page):
        raise ValueError(f"{path} has no {MARKERS[0]} ... {MARKERS[1]} markers to put the table between")
    path.write_text(pattern.sub(lambda _: f"{MARKERS[0]}\n{text}\n{MARKERS[1]}", page))


def markdown(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=CIFAR, help="the CIFAR-10 dataset spec")
    parser.add_argument("--pretrain-minutes", type=float, default=20.0)
    parser.add_argument("--finetune-minutes", type=float, default=10.0)
    parser.add_argument("--probe-epochs", type=int, default=100)
    parser.add_argument("--ceiling", default=str(CEILING),
                        help="the supervised budget model to judge beside them (a run or checkpoint; 'none' to skip)")
    parser.add_argument("--output-dir", default="runs/selfsup")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "selfsup.json")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "selfsup.md",
                        help="the page whose table to replace ('none' to leave it)")
    parser.add_argument("--smoke", action="store_true",
                        help="check every stage in seconds: digits, tiny models, 0.05-minute budgets, no docs")
    args = parser.parse_args()
    if args.smoke:
        args.pretrain_minutes = args.finetune_minutes = 0.05
        args.ceiling, args.docs = "none", Path("none")
        args.out = Path(args.output_dir) / "selfsup.json"
    protocol, started = Protocol(args), time.time()
    objectives = list(PRETRAIN)
    encoders = {"random": protocol.random_init(), **{task: protocol.pretrain(task) for task in objectives}}
    if args.ceiling != "none":
        encoders["supervised"] = Path(args.ceiling)
    judged = {key: protocol.judge(source) for key, source in encoders.items()}
    tuned = fine_tune_all(protocol, objectives)
    minutes = {"random": 0, **{task: args.pretrain_minutes for task in objectives}, "supervised": 30}
    headers, rows = table(judged, tuned, minutes)
    print(format_table(rows, headers))
    kernels = cpu_kernels()
    record = {"machine": f"{kernels.model} ({kernels.cpu_class}), {torch.get_num_threads()} threads",
              "platform": platform.platform(), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
              "hours": round((time.time() - started) / 3600, 2), "data": protocol.data, "smoke": args.smoke,
              "ceiling": args.ceiling, "judged": judged, "fine_tuned": tuned, "headers": headers, "rows": rows}
    print(f"\nwritten to {write_json(args.out, record)}")
    if str(args.docs) != "none":
        write_docs_table(args.docs, markdown(headers, rows) + f"\n\nMeasured {record['date']} on {record['machine']} "
                                                              f"in {record['hours']} hours.")
        print(f"table written into {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
