"""Self-supervised pre-training as training tasks: `task: mae` and `task: masked_patch` train vitkit.selfsup's
objectives in the one loop. The encoder is the run's model (saved as any vitkit model, without a head, so
--init-from fine-tunes it as it is); the objective's decoder travels beside it in every checkpoint."""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ClassVar

import torch

from ..data import build_loader
from ..data.datasets import Dataset
from ..data.subset import SubsetConfig, take_subset
from ..representation import cache_features, knn_predict
from ..selfsup import MaskedAutoencoder, MaskedPatchPredictor, Objective, mae_pictures, masked_patch_pictures
from .distributed import all_reduce_sum, full_state_dict
from .tasks import Task, register_task

if TYPE_CHECKING:
    from .trainer import Run

KNN_MONITOR_K = 20
PICTURE_IMAGES = 8


class PretrainTask(Task):
    """Test scores: the objective's loss on the test images (masks drawn from a fixed seed, so evaluations compare)
    and a kNN-20 monitor, the test images classified by `selfsup.knn_images` training images (NaN without labels
    or with knn_images=0; `vitkit eval RUN --knn` gives the full protocol). Each evaluation also draws the
    objective's picture of 8 test images into the run folder."""

    metrics = ("loss", "knn20_top1")
    labels = {"knn20_top1": "kNN-20 top-1"}
    needs_labels = False
    objective_class: ClassVar[type[Objective]]  # its settings: the selfsup section named as the task
    draw: ClassVar[Callable[[Objective, torch.Tensor, Path], Path]]
    objective: Objective

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        train_set, test_set = super().build_datasets()
        self.train_set = train_set  # the kNN monitor's memory comes from it
        return train_set, test_set

    def bind(self, model: torch.nn.Module, num_classes: int, device: torch.device) -> None:
        """The encoder loses its head (a representation has none); the objective's parts join it on the device."""
        model.reset_classifier(0)
        model.class_names = None
        self.objective = self.objective_class(model, getattr(self.cfg.selfsup, self.name)).to(device)
        self.num_classes = num_classes
        self.bank_loader = None

    def trainable(self, model: torch.nn.Module) -> torch.nn.Module:
        return self.objective

    def state_dict(self) -> dict[str, torch.Tensor]:
        return full_state_dict(self.objective.decoder)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if not state:
            raise ValueError(f"the checkpoint holds no task.safetensors, so {self.name}'s decoder cannot resume; "
                             "it was not written by a pre-training run")
        self.objective.decoder.load_state_dict(state)

    def loss(self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.objective.loss(images, model(images))

    def scores(self, model: torch.nn.Module, run: Run) -> dict[str, float]:
        objective = self.objective.with_encoder(model)
        was_training = objective.training
        objective.eval()
        bank = self.memory_bank(model, run)
        sums = torch.zeros(3, dtype=torch.float64, device=run.device)  # loss sum, kNN hits, images
        with torch.no_grad(), torch.random.fork_rng(devices=[run.device] if run.device.type == "cuda" else []):
            torch.manual_seed(run.cfg.seed)
            for batch, (images, labels) in enumerate(run.test_loader):
                images = images.to(run.device, non_blocking=True)
                with run.autocast():
                    loss = objective.loss(images, objective(images))
                    feats = model.forward_head(model.forward_features(images), pre_logits=True) if bank else None
                if bank is not None:
                    guess = knn_predict(*bank, feats.float(), KNN_MONITOR_K, self.num_classes)
                    sums[1] += (guess.cpu() == labels.cpu()).sum().item()
                sums[0] += loss.float() * len(images)
                sums[2] += len(images)
                if batch == 0 and run.ctx.is_main and model is self.objective.encoder:
                    self.draw(objective, images[:PICTURE_IMAGES], run.run_dir)
        objective.train(was_training)
        all_reduce_sum(sums, run.ctx)
        count = sums[2].clamp(min=1)
        knn = (100 * sums[1] / count).item() if bank is not None else math.nan
        return {"loss": (sums[0] / count).item(), "knn20_top1": knn}

    def memory_bank(self, model: torch.nn.Module, run: Run) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Features and labels of the kNN monitor's training images, by this encoder (None when there is none)."""
        wanted = self.cfg.selfsup.knn_images
        if not wanted or not self.num_classes:
            return None
        if self.bank_loader is None:
            smallest = int(torch.bincount(self.train_set.labels).min())
            per_class = max(1, wanted // self.num_classes)
            bank = (take_subset(self.train_set, SubsetConfig(per_class=per_class, seed=self.cfg.seed), "train")
                    if per_class < smallest else self.train_set)
            data = self.cfg.data
            self.bank_loader = build_loader(bank, batch_size=data.eval_batch_size, train=False, augment=data.augment,
                                            img_size=model.cfg.img_size, device=run.device,
                                            num_workers=data.num_workers, in_chans=model.cfg.in_chans,
                                            preprocess=model.preprocess)
        with run.autocast():
            feats, labels = cache_features(model, self.bank_loader)
        return feats.to(run.device), labels.to(run.device)


@register_task
class MAETask(PretrainTask):
    """MAE (He et al. 2022): pixels of the hidden patches from the visible ones; settings in selfsup.mae."""

    name = "mae"
    objective_class = MaskedAutoencoder
    draw = staticmethod(mae_pictures)


@register_task
class MaskedPatchTask(PretrainTask):
    """The ViT paper's masked patch prediction (appendix B.1.2); settings in selfsup.masked_patch."""

    name = "masked_patch"
    objective_class = MaskedPatchPredictor
    draw = staticmethod(masked_patch_pictures)
