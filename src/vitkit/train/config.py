"""TrainConfig: a run described as data (YAML + `key=value` overrides), validated key by key and saved with the run."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..config import from_dict, load_yaml, merge, parse_overrides, to_dict
from ..data import AugmentConfig
from ..data.subset import SubsetConfig
from ..models import ModelConfig
from ..selfsup import SelfSupConfig
from .adversarial import AdversarialConfig
from .distill import DistillConfig
from .finetune import FinetuneConfig
from .losses import LOSSES
from .optim import OPTIMIZERS
from .tasks import task_class

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_UNSET = object()
# The defaults are the built-in recipe `vitkit train` runs with no argument: a small ViT on 8x8 digits.
DIGITS_MODEL = {"name": "vit_cifar_patch4_32", "img_size": 8, "patch_size": 2, "embed_dim": 128, "depth": 4,
                "num_heads": 4}


def _digits_augment() -> AugmentConfig:
    """8x8 digits: no crop (a one-pixel shift is an eighth of the image) and no mirroring (a mirrored 2 is no 2)."""
    return AugmentConfig(crop="none", hflip=0.0)


@dataclass
class DataConfig:
    dataset: str = "digits"
    batch_size: int = 64
    eval_batch_size: int = 512
    num_workers: int = 2
    skip_bad_images: bool = False
    augment: AugmentConfig = field(default_factory=_digits_augment)
    subset: SubsetConfig = field(default_factory=SubsetConfig)


@dataclass
class OptimConfig:
    name: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    momentum: float = 0.9
    layer_decay: float | None = None
    clip_grad: float | None = None
    accum_steps: int = 1


@dataclass
class ScheduleConfig:
    epochs: int = 40
    warmup_epochs: float = 3.0
    min_lr: float = 1e-5
    warmup_lr: float = 1e-6
    # [[start_epoch, rate], ...]: from each start epoch on, patch dropout drops this share of the patches (0: none),
    # e.g. [[10, 0.5], [13.5, 0.0]] after model.patch_drop_rate: training ends on the sequence the test sees
    patch_drop_stages: list[tuple[float, float]] = field(default_factory=list)
    # Minutes of training (evaluations included, the final one not): the schedule in epochs (warmup, cosine, stages,
    # eval_every_epochs) is stretched over this time instead of over `epochs` passes, and the run stops when it is up.
    # Machines, and one machine from hour to hour, differ in speed by more than an epoch count can absorb; the price
    # is bit-exact reproducibility.
    time_budget_minutes: float | None = None


@dataclass
class LossConfig:
    """The training loss; label smoothing applies to hard labels and mixup/cutmix targets alike."""

    kind: str = "ce"
    label_smoothing: float = 0.1

    def __post_init__(self) -> None:
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"loss.label_smoothing={self.label_smoothing} must be in [0, 1)")


@dataclass
class EmaConfig:
    decay: float | None = None
    warmup: bool = True


@dataclass
class LoggingConfig:
    log_every_steps: int = 20
    tensorboard: bool = False
    progress: bool = True


@dataclass
class TrainConfig:
    name: str | None = None
    task: str = "classify"
    output_dir: str = "runs"
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    grad_checkpointing: bool = False
    deterministic: bool = False
    distributed: str = "ddp"
    checkpoint_every_steps: int | None = None
    eval_every_epochs: int = 1
    best_metric: str | None = None  # val_<metric> or ema_val_<metric>; None: val_ + the task's headline metric
    model: ModelConfig = field(default_factory=lambda: ModelConfig.from_config(DIGITS_MODEL))
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)
    selfsup: SelfSupConfig = field(default_factory=SelfSupConfig)

    def __post_init__(self) -> None:
        choices = {"precision": (self.precision, PRECISIONS), "optim.name": (self.optim.name, OPTIMIZERS),
                   "loss.kind": (self.loss.kind, LOSSES), "distributed": (self.distributed, ("ddp", "fsdp"))}
        for key, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValueError(f"{key}={value!r} is not one of {allowed}")
        if min(self.optim.accum_steps, self.data.batch_size, self.schedule.epochs, self.eval_every_epochs) < 1:
            raise ValueError("optim.accum_steps, data.batch_size, schedule.epochs and eval_every_epochs must be at "
                             "least 1")
        self._check_patch_drop_stages()
        if self.adversarial.kind and self.distributed == "fsdp":
            raise ValueError("adversarial training runs with distributed=ddp: FSDP's sharded backward is not set up "
                             "for the attack's input-only gradients")
        if self.schedule.time_budget_minutes is not None and not self.schedule.time_budget_minutes > 0:
            raise ValueError(f"schedule.time_budget_minutes={self.schedule.time_budget_minutes} must be positive "
                             "(or null: train for schedule.epochs passes)")
        task = task_class(self.task)
        if self.best_metric is None:
            self.best_metric = f"val_{task.metrics[0]}"
        choices = [f"{prefix}val_{metric}" for prefix in ("", "ema_") for metric in task.metrics]
        if self.best_metric not in choices:
            raise ValueError(f"best_metric={self.best_metric!r} is not a score of task {self.task!r}; choose one of "
                             f"{choices}")
        if self.best_metric.startswith("ema_") and self.ema.decay is None:
            raise ValueError(f"best_metric={self.best_metric!r} needs EMA: set ema.decay (e.g. 0.9998)")

    def _check_patch_drop_stages(self) -> None:
        stages, epochs = self.schedule.patch_drop_stages, self.schedule.epochs
        if any(len(stage) != 2 for stage in stages):
            raise ValueError(f"schedule.patch_drop_stages={stages!r} must list [start_epoch, rate] pairs, "
                             "e.g. [[10, 0.5], [13.5, 0.0]]")
        starts = [start for start, _ in stages]
        if starts != sorted(set(starts)) or any(not 0.0 <= start < epochs for start in starts):
            raise ValueError(f"schedule.patch_drop_stages starts {starts} must increase and lie in [0, "
                             f"schedule.epochs={epochs})")
        if any(not 0.0 <= rate < 1.0 for _, rate in stages):
            raise ValueError(f"schedule.patch_drop_stages rates {[rate for _, rate in stages]} must lie in [0, 1): "
                             "the share of patches dropped (0 keeps every patch)")


def stated_model_fields(config: TrainConfig | dict[str, Any] | str | os.PathLike | None = None,
                        overrides: list[str] | dict[str, Any] | None = None) -> set[str]:
    """The model fields the user chose, in a recipe file or dict or as overrides (a TrainConfig object: those that
    differ from the built-in recipe); with finetune.init_from only these may contradict the checkpoint."""
    if isinstance(config, TrainConfig):
        section = {k: v for k, v in config.model.to_config().items() if DIGITS_MODEL.get(k, _UNSET) != v}
    elif isinstance(config, dict):
        section = config.get("model")
    elif config is not None:
        section = load_yaml(config).get("model")
    else:
        section = {}
    extra = (parse_overrides(overrides) if isinstance(overrides, list) else overrides or {}).get("model")
    return {k for part in (section, extra) if isinstance(part, dict) for k in part if k != "family"}


def resolve_config(config: TrainConfig | dict[str, Any] | str | os.PathLike | None = None,
                   overrides: list[str] | dict[str, Any] | None = None) -> TrainConfig:
    """A TrainConfig from an object, a dict or a YAML path (None: the defaults, the digits recipe), plus overrides."""
    if isinstance(config, TrainConfig) and not overrides:
        return config
    if config is None:
        data = {**to_dict(TrainConfig()), "best_metric": None}  # None: the headline of whichever task is chosen
    elif isinstance(config, TrainConfig):
        data = to_dict(config)
    elif isinstance(config, dict):
        data = config
    else:
        data = load_yaml(config)
    if overrides:
        data = merge(data, parse_overrides(overrides) if isinstance(overrides, list) else overrides)
    return from_dict(TrainConfig, moved_keys(data))


def moved_keys(data: dict[str, Any]) -> dict[str, Any]:
    """A config written before a key moved, in today's layout: run folders keep loading and resuming.

    data.augment.label_smoothing -> loss.label_smoothing (smoothing is the loss's, for hard and mixed targets alike).
    """
    augment = (data.get("data") or {}).get("augment") or {}
    if not isinstance(augment, dict) or "label_smoothing" not in augment:
        return data
    augment = dict(augment)
    smoothing = augment.pop("label_smoothing")
    loss = dict(data.get("loss") or {})
    loss.setdefault("label_smoothing", smoothing)
    return {**data, "data": {**data["data"], "augment": augment}, "loss": loss}
