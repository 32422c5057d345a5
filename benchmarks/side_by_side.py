"""What the side-by-side speed scripts share: one model's command line, its inputs, and the machine facts saved with
the results (so a JSON file says where and under what load its numbers were taken)."""
from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path
from typing import Any

import torch

from vitkit.bench import add_timing_arguments
from vitkit.models import create_model


def parse_one_model(doc: str, model: str, batch: int, result: str) -> argparse.Namespace:
    """--model, --batch, the timing knobs (2-second repeats) and --out (in benchmarks/results); applies --threads."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=model)
    parser.add_argument("--batch", type=int, default=batch)
    add_timing_arguments(parser, min_time=2.0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / result))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def model_and_batch(args: argparse.Namespace) -> tuple[torch.nn.Module, torch.Tensor]:
    """The preset with seed-0 weights and one random batch of its input size."""
    torch.manual_seed(0)
    model = create_model(args.model)
    return model, torch.randn(args.batch, model.cfg.in_chans, *model.cfg.img_size)


def environment(**extra: Any) -> dict[str, Any]:
    """torch version, threads, CPU and load average, plus the script's own facts."""
    return dict(torch=torch.__version__, threads=torch.get_num_threads(),
                cpu=platform.processor() or platform.machine(), load_avg=os.getloadavg(), **extra)
