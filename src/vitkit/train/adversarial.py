"""Adversarial training: every batch is replaced by its attack before the training step's forward, Madry et al.'s
PGD or Wong et al.'s "fast" FGSM from a random start, maximising the task's own loss.

What the attack sees is the network the update trains: the model in train mode (batch norm normalises with the
batch's statistics) with the same dropout, drop-path and patch-dropout draws as the update, because the random state
of the attack's first forward is replayed for its every forward and for the update's. The attack is therefore a
worst case for exactly the function whose loss the step lowers, and kept patches agree when patch dropout stays on.
Batch-norm running statistics are restored after the attack, so only the update's forward moves them. The attack
runs on the unwrapped model (no DDP hooks, no compilation), in fp32 with autocast off; under torch.compile the
update's random ops fall back to eager's so that they draw what the attack drew.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn

from ..data.transforms import normalize
from ..robust.attacks import default_step_size, perturb

KINDS = ("pgd", "fgsm_rs")
FGSM_RS_STEP = 1.25  # Wong et al. 2020: one step of 1.25 eps from a uniform start
PGD_STEPS = 7  # Madry et al. 2018's CIFAR-10 training attack


@dataclass
class AdversarialConfig:
    """`kind`: null (off), pgd or fgsm_rs; `eps` and `step_size` in units of 1/255 (8 means 8/255); `steps` is PGD's
    (null: Madry et al.'s 7; fgsm_rs takes one); `step_size` null: 2.5 eps / steps for PGD, 1.25 eps for fgsm_rs;
    `patch_drop`: keep the model's patch dropout (else it is off while training adversarially)."""

    kind: str | None = None
    eps: float = 8.0
    steps: int | None = None
    step_size: float | None = None
    patch_drop: bool = False

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in KINDS:
            raise ValueError(f"adversarial.kind={self.kind!r} is not one of {KINDS} (or null: no adversarial training)")
        if not 0 < self.eps <= 255:
            raise ValueError(f"adversarial.eps={self.eps} must lie in (0, 255]: it is given in units of 1/255 "
                             "(8 means 8/255)")
        if (self.steps is not None and self.steps < 1) or (self.step_size is not None and self.step_size <= 0):
            raise ValueError(f"adversarial.steps={self.steps} must be >= 1 and adversarial.step_size="
                             f"{self.step_size} positive (or null)")
        if self.kind == "fgsm_rs" and self.steps not in (None, 1):
            raise ValueError(f"adversarial.kind=fgsm_rs takes one step; remove adversarial.steps={self.steps} or use "
                             "kind=pgd")

    @property
    def num_steps(self) -> int:
        return 1 if self.kind == "fgsm_rs" else self.steps or PGD_STEPS

    @property
    def step(self) -> float:
        """The step in units of 1/255."""
        if self.step_size is not None:
            return self.step_size
        return FGSM_RS_STEP * self.eps if self.kind == "fgsm_rs" else default_step_size(self.eps, self.num_steps)

    def patch_drop_rate(self, rate: float) -> float:
        """The patch-dropout rate the schedule asks for, or 0 while training adversarially without patch_drop."""
        return rate if self.kind is None or self.patch_drop else 0.0

    def describe(self, has_patch_drop: bool) -> str | None:
        if self.kind is None:
            return None
        patches = ("; patch dropout " + ("kept (the attack and the update see the same patches)" if self.patch_drop
                                         else "off (adversarial.patch_drop=true keeps it)")) if has_patch_drop else ""
        return (f"adversarial training: {self.kind}, eps {self.eps:g}/255, {self.num_steps} step(s) of "
                f"{self.step:g}/255 from a random start, {self.num_steps + 1} forward/backward passes per batch; the "
                f"attack in fp32 on the training-mode model with the update's dropout draws{patches}")


class ReplayDraws:
    """Called before each forward: the first call records the random state, later calls restore it."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.state = device, None

    def __call__(self) -> None:
        cuda = self.device.type == "cuda"
        if self.state is None:
            self.state = (torch.get_rng_state(), torch.cuda.get_rng_state(self.device) if cuda else None)
            return
        torch.set_rng_state(self.state[0])
        if cuda:
            torch.cuda.set_rng_state(self.state[1], self.device)


@contextlib.contextmanager
def batch_norm_statistics_kept(model: nn.Module) -> Iterator[None]:
    """Batch-norm running averages (and counts) as they were before the block."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [{name: buffer.clone() for name, buffer in m.named_buffers(recurse=False)} for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for module, buffers in zip(norms, saved):
                for name, value in buffers.items():
                    getattr(module, name).copy_(value)


def adversarial_images(model: nn.Module, task_loss: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
                       images: torch.Tensor, targets: torch.Tensor, cfg: AdversarialConfig) -> torch.Tensor:
    """The attacked batch, normalised like `images`; the random state is left where the update must start from.

    The attack works in [0, 1] pixels (the batch un-normalised with model.preprocess; augmentations that left [0, 1],
    such as random erasing's noise, are clipped to it) and maximises `task_loss(model, normalised images, targets)`.
    """
    prep = model.preprocess.for_channels(images.shape[1])
    mean = torch.tensor(prep.mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std = torch.tensor(prep.std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    pixels = (images.detach() * std + mean).clamp(0, 1)
    replay = ReplayDraws(images.device)

    def loss_of(x: torch.Tensor) -> torch.Tensor:
        replay()
        return task_loss(model, normalize(x, prep.mean, prep.std), targets)

    with batch_norm_statistics_kept(model):
        adversarial = perturb(loss_of, pixels, cfg.eps / 255, cfg.num_steps, cfg.step / 255)
    replay()
    return normalize(adversarial, prep.mean, prep.std)
