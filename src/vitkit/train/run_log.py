"""What a run leaves behind for people: metrics.jsonl, a readable train.log, curves.png, optional TensorBoard."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


class RunLog:
    """Appends metrics as JSON lines and plain text; a no-op on ranks other than 0."""

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool = False) -> None:
        self.run_dir, self.enabled = run_dir, enabled
        self.writer = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as error:
                raise ValueError("logging.tensorboard=true needs the tensorboard package: pip install tensorboard") \
                    from error
            self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def truncate_after(self, step: int, epoch: int) -> None:
        """Drops records a killed run wrote after its last checkpoint, so a resumed run does not repeat them."""
        path = self.run_dir / "metrics.jsonl"
        if not self.enabled or not path.exists():
            return
        kept = [line for line in path.read_text().splitlines()
                if line and _before(json.loads(line), step, epoch)]
        path.write_text("".join(line + "\n" for line in kept))

    def metrics(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                    self.writer.add_scalar(f"{record['kind']}/{key}", value, record["step"])

    def text(self, message: str, echo: bool = True) -> None:
        if not self.enabled:
            return
        with open(self.run_dir / "train.log", "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {message}\n")
        if echo:
            print(message, flush=True)

    def plot_curves(self) -> None:
        """Loss, accuracy and learning rate against epochs, from metrics.jsonl."""
        path = self.run_dir / "metrics.jsonl"
        if not self.enabled or not path.exists():
            return
        records = [json.loads(line) for line in path.read_text().splitlines() if line]
        steps = [r for r in records if r["kind"] == "step"]
        fig, axes = plt.subplots(1, 3, figsize=(15, 4))
        axes[0].plot([r["epoch_float"] for r in steps], [r["loss"] for r in steps], lw=0.8, label="train (step)")
        scored = [r for r in records if r["kind"] == "epoch" and "val_loss" in r]  # see eval_every_epochs
        axes[0].plot([r["epoch"] for r in scored], [r["val_loss"] for r in scored], "o-", label="test")
        axes[0].set(title="loss", xlabel="epoch")
        for key, label in (("val_top1", "test top-1"), ("ema_val_top1", "EMA test top-1")):
            points = [(r["epoch"], r[key]) for r in scored if key in r]
            if points:
                axes[1].plot(*zip(*points), "o-", label=label)
        axes[1].set(title="accuracy (%)", xlabel="epoch")
        axes[2].plot([r["epoch_float"] for r in steps], [r["lr"] for r in steps])
        axes[2].set(title="learning rate", xlabel="epoch")
        for ax in axes[:2]:
            if ax.get_legend_handles_labels()[0]:  # no test points yet before the first evaluation
                ax.legend()
        for ax in axes:
            ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(self.run_dir / "curves.png", dpi=100)
        plt.close(fig)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _before(record: dict[str, Any], step: int, epoch: int) -> bool:
    return record["step"] <= step if record["kind"] == "step" else record["epoch"] <= epoch
