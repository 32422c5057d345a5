"""What the loop asks of a training task. trainer.py is one loop for every task (classification, segmentation,
self-supervised pre-training); a task says where its data comes from, how a batch becomes a loss, and how a model is
scored on the test data, naming the scores that may pick the best checkpoint."""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import torch
import torch.nn.functional as F

from ..data import build_dataset, build_loader
from ..data.datasets import Dataset
from ..data.loader import EpochLoader
from ..data.segmentation import build_segmentation_dataset, build_segmentation_loader
from ..data.subset import take_subset
from ..evaluation import evaluate_segmentation
from ..models import ModelConfig
from .distill import build_criterion
from .evaluate import evaluate
from .finetune import load_for_finetuning, load_segmentation_start
from .losses import classification_loss

if TYPE_CHECKING:
    from .config import TrainConfig
    from .trainer import Run

TASKS: dict[str, type["Task"]] = {}


def register_task(cls: type["Task"]) -> type["Task"]:
    """Makes `task: <cls.name>` a valid training config value."""
    TASKS[cls.name] = cls
    return cls


class Task:
    """A task's scores are test-set metrics named in `metrics` (the first is the headline the log and summary lead
    with; "loss" is lower-is-better, the rest higher); `labels` says how the log writes them."""

    name: ClassVar[str]
    metrics: ClassVar[tuple[str, ...]]
    labels: ClassVar[dict[str, str]] = {}
    needs_labels: ClassVar[bool] = True  # False: an image folder without class folders is data too

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        """The train and test splits, as data.dataset and data.subset say."""
        data = self.cfg.data
        return tuple(take_subset(build_dataset(data.dataset, split=split, skip_bad_images=data.skip_bad_images,
                                               labels=self.needs_labels), data.subset, split)
                     for split in ("train", "test"))

    def build_loader(self, dataset: Dataset, train: bool, **options: Any) -> EpochLoader:
        """How a split becomes batches on the device; `options` are build_loader's keywords."""
        return build_loader(dataset, train=train, **options)

    def load_start(self, section: ModelConfig, stated: set[str], num_classes: int,
                   in_chans: int) -> tuple[torch.nn.Module, list[str]]:
        """The model finetune.init_from starts from, and lines for the log: the checkpoint's own architecture with
        this run's classes (`section` is the recipe's model section, `stated` the fields the user chose in it)."""
        return load_for_finetuning(self.cfg.finetune, section, stated, num_classes, in_chans)

    def bind(self, model: torch.nn.Module, num_classes: int, device: torch.device) -> None:
        """Called once the model exists and sits on its device, before the optimiser (and EMA copy) take it."""

    def trainable(self, model: torch.nn.Module) -> torch.nn.Module:
        """What the loop optimises, wraps (DDP/FSDP, compile) and hands to `loss`: the model itself, or a module
        holding it beside parts only the task trains (MAE's decoder), with the model's param_groups method."""
        return model

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Weights of those parts, saved beside the model in every checkpoint and given back on resume."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state:
            raise ValueError(f"task {self.name!r} trains nothing beside the model, yet the checkpoint holds task "
                             f"weights ({', '.join(sorted(state)[:3])}...): resume it with the task it was trained "
                             "with")

    def loss(self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """One micro-batch's loss through `model` (the wrapped, possibly compiled training model)."""
        raise NotImplementedError

    def scores(self, model: torch.nn.Module, run: Run) -> dict[str, float]:
        """Each of `metrics` on run.test_loader."""
        raise NotImplementedError

    @classmethod
    def lower_is_better(cls, metric: str) -> bool:
        return metric == "loss"

    @classmethod
    def label(cls, metric: str) -> str:
        return cls.labels.get(metric, metric)

    @classmethod
    def format(cls, metric: str, value: float) -> str:
        """A loss as it is; every other score is a percentage."""
        return f"{value:.4f}" if metric == "loss" else f"{value:.2f}%"


@register_task
class ClassifyTask(Task):
    """Images to classes: cross-entropy (smoothed, mixed, or with a DeiT teacher); top-1, top-5 and loss."""

    name = "classify"
    metrics = ("top1", "top5", "loss")
    labels = {"top1": "top-1", "top5": "top-5"}
    criterion: Callable[..., torch.Tensor]

    def bind(self, model: torch.nn.Module, num_classes: int, device: torch.device) -> None:
        loss = self.cfg.loss
        task_loss = functools.partial(classification_loss, kind=loss.kind, label_smoothing=loss.label_smoothing)
        self.criterion = build_criterion(self.cfg.distill, model, task_loss, num_classes, device)

    def loss(self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.criterion(model(images), images, targets)

    def scores(self, model: torch.nn.Module, run: Run) -> dict[str, Any]:
        result = evaluate(model, run.test_loader, run.num_classes, run.device, run.autocast_dtype, run.ctx)
        return {metric: result[metric] for metric in self.metrics}


@register_task
class SegmentTask(Task):
    """Images to a class per pixel (a SegmentationModel, model.family=segment): pixel cross-entropy without the
    ignored pixels; mean IoU, pixel accuracy and loss. finetune.init_from may name a classifier: its weights become
    the backbone."""

    name = "segment"
    metrics = ("miou", "pixel_accuracy", "loss")
    labels = {"miou": "mIoU", "pixel_accuracy": "pixel accuracy"}
    ignore_index: int

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        """The splits of a segmentation spec (segfolder:PATH, synthseg...); data.dataset is rewritten as the spec
        that rebuilds them (the synthetic set's seed, size and counts spelled out), so config.yaml records it."""
        cfg, data = self.cfg, self.cfg.data
        if cfg.model.family != "segment":
            raise ValueError(f"task=segment trains a segmentation model, not model.family={cfg.model.family}: set "
                             "model.family=segment with model.backbone (a vit or swin section) and model.head "
                             "(linear or fpn); see configs/synthseg_*.yaml")
        if data.subset.active:
            raise ValueError("data.subset picks images by class label; segmentation sets have none: remove it")
        train, test = (build_segmentation_dataset(data.dataset, split) for split in ("train", "test"))
        data.dataset, self.ignore_index = train.spec, train.ignore_index
        return train, test

    def build_loader(self, dataset: Dataset, train: bool, num_frames: int | None = None,
                     **options: Any) -> EpochLoader:
        """Paired image and mask batches (a segmentation model takes images, never clips: num_frames is None)."""
        return build_segmentation_loader(dataset, train=train, **options)

    def load_start(self, section: ModelConfig, stated: set[str], num_classes: int,
                   in_chans: int) -> tuple[torch.nn.Module, list[str]]:
        return load_segmentation_start(self.cfg.finetune, section, num_classes, in_chans)

    def bind(self, model: torch.nn.Module, num_classes: int, device: torch.device) -> None:
        if self.cfg.loss.kind != "ce" or self.cfg.distill.teacher:
            raise ValueError("task=segment trains with pixel cross-entropy: set loss.kind=ce and no distill.teacher")

    def loss(self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(images).float(), targets, ignore_index=self.ignore_index,
                               label_smoothing=self.cfg.loss.label_smoothing)

    def scores(self, model: torch.nn.Module, run: Run) -> dict[str, Any]:
        result = evaluate(model, run.test_loader, run.num_classes, run.device, run.autocast_dtype, run.ctx,
                          score=evaluate_segmentation, ignore_index=self.ignore_index)
        return {metric: result[metric] for metric in self.metrics}


def task_class(name: str) -> type[Task]:
    if name not in TASKS:
        raise ValueError(f"task={name!r} is not one of {tuple(TASKS)}")
    return TASKS[name]
