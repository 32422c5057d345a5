"""Where a run is (Progress, saved with every checkpoint) and where its schedule takes it (Schedule over the recipe's
epochs, TimeBudget over minutes): the loop asks them instead of branching on the budget."""
from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable

from .config import TrainConfig
from .schedule import staged_value, warmup_cosine


@dataclass
class Progress:
    """How far a run has come; train_state.pt holds it as a plain dict, which a resumed run goes on from."""

    epoch: int = 0
    step: int = 0
    batch: int = 0
    seconds: float = 0.0
    best: float | None = None
    best_epoch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> Progress:
        """Checkpoints from before the clock hold no seconds: they count from zero."""
        return cls(**saved)


class Schedule:
    """The recipe's schedule over its epochs, in optimizer steps: the lr and patch-drop rate at a position, when to
    evaluate and stop, and how the log says so; it keeps the training time too (progress.seconds, across resumes)."""

    started: float
    seconds_before: float

    def __init__(self, cfg: TrainConfig, steps_per_epoch: int, progress: Progress, now: Callable[[], float]) -> None:
        self.cfg, self.steps_per_epoch, self.progress, self.now = cfg, steps_per_epoch, progress, now
        self.total_steps = steps_per_epoch * cfg.schedule.epochs
        self.warmup_steps = round(cfg.schedule.warmup_epochs * steps_per_epoch)
        self.length, self.length_setting = f"{cfg.schedule.epochs} epochs", "schedule.epochs"

    def start_clock(self) -> None:
        """Training time counts from now, on top of what the run recorded before a resume."""
        self.started, self.seconds_before = self.now(), self.progress.seconds

    def seconds(self) -> float:
        """Training seconds so far; brings progress.seconds, which checkpoints save, up to date."""
        self.progress.seconds = self.elapsed()
        return self.progress.seconds

    def elapsed(self) -> float:
        return self.seconds_before + self.now() - self.started

    def position(self) -> float:
        """Where the run is in its schedule, in optimizer steps; reads the clock."""
        self.seconds()
        return self.progress.step

    def epoch_position(self, counted: int) -> float:
        """Where the run is in its schedule, in epochs: the `counted` ones; reads the clock."""
        self.seconds()
        return counted

    def finished(self) -> bool:
        return self.progress.epoch >= self.cfg.schedule.epochs

    def epochs(self) -> Iterable[int]:
        """The epochs left to train."""
        return range(self.progress.epoch, self.cfg.schedule.epochs)

    def lr(self, position: float) -> float:
        s = self.cfg.schedule
        return warmup_cosine(position, self.cfg.optim.lr, self.total_steps, self.warmup_steps, s.min_lr, s.warmup_lr)

    def patch_drop_rate(self, position: float, initial: float) -> float:
        return staged_value(position / self.steps_per_epoch, initial, self.cfg.schedule.patch_drop_stages)

    def should_evaluate(self, start: float, end: float) -> bool:
        """After the last epoch, and after each that crosses a multiple of eval_every_epochs of the schedule."""
        every = self.cfg.eval_every_epochs
        return self.finished() or math.floor(end / every) > math.floor(start / every)

    def describe(self) -> str:
        return f"{self.steps_per_epoch} steps/epoch x {self.cfg.schedule.epochs} epochs"

    def epoch_label(self, epoch: int) -> str:
        return f"epoch {epoch}/{self.cfg.schedule.epochs}"

    def moment(self, epoch: float) -> str:
        """When the schedule reaches `epoch`, in the terms the run counts in."""
        return f"step {math.ceil(epoch * self.steps_per_epoch) + 1}"

    def patch_drop_plan(self, initial: float) -> str | None:
        stages = self.cfg.schedule.patch_drop_stages
        if not stages:
            return None
        return f"patch dropout {initial}, then " + ", ".join(
            f"{rate} from epoch {start:g} ({self.moment(start)})" for start, rate in stages)

    def clock_note(self) -> dict[str, str]:
        return {}

    def end_note(self) -> str | None:
        return None


class TimeBudget(Schedule):
    """The recipe's schedule stretched over schedule.time_budget_minutes: the position is the budget's share used, so
    the run ends on time whatever the machine's speed."""

    def __init__(self, cfg: TrainConfig, steps_per_epoch: int, progress: Progress, now: Callable[[], float],
                 agree: Callable[[float], float]) -> None:
        super().__init__(cfg, steps_per_epoch, progress, now)
        self.agree, self.minutes = agree, cfg.schedule.time_budget_minutes
        self.budget = self.minutes * 60
        self.length, self.length_setting = f"{self.minutes:g} minutes", "schedule.time_budget_minutes"

    def elapsed(self) -> float:
        """One clock for all ranks (`agree`), or they would stop at different steps."""
        return self.agree(super().elapsed())

    def position(self) -> float:
        return self.total_steps * min(1.0, self.seconds() / self.budget)

    def epoch_position(self, counted: int) -> float:
        return self.position() / self.steps_per_epoch

    def finished(self) -> bool:
        return self.progress.seconds >= self.budget

    def epochs(self) -> Iterable[int]:
        return itertools.count(self.progress.epoch)

    def describe(self) -> str:
        return super().describe() + f", stretched over {self.minutes:g} minutes"

    def epoch_label(self, epoch: int) -> str:
        """The epoch count is not known in advance."""
        return f"epoch {epoch}"

    def moment(self, epoch: float) -> str:
        return f"minute {epoch / self.cfg.schedule.epochs * self.budget / 60:.1f}"

    def clock_note(self) -> dict[str, str]:
        return {"minutes": f"{self.progress.seconds / 60:.1f}/{self.budget / 60:g}"}

    def end_note(self) -> str | None:
        step = self.progress.step
        return (f"time is up ({self.minutes:g} minutes): {step} steps, {step / self.steps_per_epoch:.2f} passes over "
                "the training data")


def build_schedule(cfg: TrainConfig, steps_per_epoch: int, progress: Progress, now: Callable[[], float],
                   agree: Callable[[float], float]) -> Schedule:
    """The recipe's epochs, or the same schedule over the clock when schedule.time_budget_minutes is set."""
    if cfg.schedule.time_budget_minutes:
        return TimeBudget(cfg, steps_per_epoch, progress, now, agree)
    return Schedule(cfg, steps_per_epoch, progress, now)
