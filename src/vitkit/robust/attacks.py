"""Adversarial attacks in [0, 1] pixel space: FGSM, PGD (L-inf and L2, untargeted or targeted) and APGD-CE.

Every attack takes `model`, a callable from pixels in [0, 1] to logits (PixelModel puts a checkpoint's normalisation
inside that call), so eps means what papers mean: 8/255 is eight grey levels. Gradients are taken in the images'
dtype with autocast off, whatever precision the model trains in. Attacks never change the model's mode: evaluation
calls them on a model in eval mode (no dropout, drop-path or patch dropout), adversarial training on one in train mode.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..data.transforms import normalize
from ..preprocess import Preprocess

NORMS = ("linf", "l2")
Loss = Callable[[torch.Tensor], torch.Tensor]  # pixels -> a scalar to maximise (a sum or mean over the batch)


class PixelModel(nn.Module):
    """Pixels in [0, 1] -> logits, normalising inside the call as the checkpoint's preprocessing says."""

    def __init__(self, model: nn.Module, preprocess: Preprocess | None = None) -> None:
        super().__init__()
        self.model = model
        prep = (preprocess or model.preprocess).for_channels(model.cfg.in_chans)
        self.mean, self.std = prep.mean, prep.std

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        return normalize(pixels, self.mean, self.std)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalise(pixels))


def check_eps(eps: float, norm: str = "linf") -> None:
    """eps is a pixel-space radius: L-inf in [0, 1] (no image moves further); L2 non-negative."""
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is not one of {NORMS}")
    if eps < 0 or (norm == "linf" and eps > 1):
        raise ValueError(f"eps={eps * 255:g}/255 must lie in [0, 255]/255 for an L-inf attack on [0, 1] pixels"
                         if norm == "linf" else f"eps={eps} must be non-negative")


def no_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Gradients of the input in full precision, even inside a bf16 training step."""
    return torch.autocast(device.type, enabled=False)


def input_gradient(loss_of: Loss, x: torch.Tensor) -> torch.Tensor:
    """d loss / d x at x, with autocast off and no gradient left on any parameter."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad(), no_autocast(x.device):
        loss = loss_of(x)
    return torch.autograd.grad(loss, x)[0].detach()


def l2_norm(x: torch.Tensor) -> torch.Tensor:
    """Per-image L2 norm, shaped to broadcast over [B, C, H, W]."""
    return x.flatten(1).norm(dim=1).view(-1, *([1] * (x.ndim - 1)))


def project(adv: torch.Tensor, images: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """The nearest point to `adv` in the eps ball around `images` (L-inf: clip; L2: shrink radially), then in
    [0, 1]."""
    delta = adv - images
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        delta = delta * torch.clamp(eps / l2_norm(delta), max=1.0)
    return (images + delta).clamp(0, 1)


def ascent_direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """The steepest-ascent step of unit size: the sign (L-inf) or the L2-normalised gradient."""
    return grad.sign() if norm == "linf" else grad / (l2_norm(grad) + 1e-10)


def random_start(images: torch.Tensor, eps: float, norm: str, generator: torch.Generator | None) -> torch.Tensor:
    """Madry et al.'s start: uniform in the L-inf box; for L2 a random direction at a uniform radius."""
    if norm == "linf":
        noise = torch.rand(images.shape, generator=generator, dtype=images.dtype).to(images.device) * 2 - 1
        return (images + eps * noise).clamp(0, 1)
    direction = torch.randn(images.shape, generator=generator, dtype=images.dtype).to(images.device)
    radius = torch.rand((len(images),) + (1,) * (images.ndim - 1), generator=generator, dtype=images.dtype)
    return (images + direction / l2_norm(direction) * radius.to(images.device) * eps).clamp(0, 1)


def perturb(loss_of: Loss, images: torch.Tensor, eps: float, steps: int, step_size: float, norm: str = "linf",
            start: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """Projected gradient ascent on `loss_of` from `images` (or a random start): the core of FGSM, PGD and of
    adversarial training, which maximises its own task loss."""
    check_eps(eps, norm)
    if steps < 1 or step_size <= 0:
        raise ValueError(f"an attack needs steps >= 1 and step_size > 0 (got {steps}, {step_size})")
    images = images.detach()
    adv = random_start(images, eps, norm, generator) if start else images.clone()
    for _ in range(steps):
        adv = project(adv + step_size * ascent_direction(input_gradient(loss_of, adv), norm), images, eps, norm)
    return adv


def default_step_size(eps: float, steps: int) -> float:
    """Madry et al.'s 2.5 eps / steps: the standard CIFAR setting, 10 steps of 2/255 at 8/255."""
    return 2.5 * eps / steps


def cross_entropy_loss(model: Callable[[torch.Tensor], torch.Tensor], labels: torch.Tensor,
                       targeted: bool = False) -> Loss:
    """The summed cross-entropy to raise (or, towards target `labels`, to lower)."""
    sign = -1.0 if targeted else 1.0
    return lambda x: sign * F.cross_entropy(model(x).to(x.dtype), labels, reduction="sum")


def fgsm(model: Callable, images: torch.Tensor, labels: torch.Tensor, eps: float,
         targeted: bool = False) -> torch.Tensor:
    """Goodfellow et al.'s single signed-gradient step of size eps (targeted: towards `labels`)."""
    return perturb(cross_entropy_loss(model, labels, targeted), images, eps, 1, eps, "linf", start=False)


def pgd(model: Callable, images: torch.Tensor, labels: torch.Tensor, eps: float, steps: int = 10,
        step_size: float | None = None, norm: str = "linf", random_start: bool = True, targeted: bool = False,
        generator: torch.Generator | None = None) -> torch.Tensor:
    """Madry et al.'s PGD on the cross-entropy; targeted: descends the loss of the target `labels`."""
    step_size = default_step_size(eps, steps) if step_size is None else step_size
    return perturb(cross_entropy_loss(model, labels, targeted), images, eps, steps, step_size, norm,
                   start=random_start, generator=generator)


def apgd_checkpoints(steps: int) -> list[int]:
    """The iterations after which APGD may halve its step: the first after 22 % of the budget, then windows
    shrinking by 3 % of it down to 6 % (Croce & Hein 2020)."""
    window, shrink, floor = max(int(0.22 * steps), 1), max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    marks, at = [], window
    while at <= steps:
        marks.append(at)
        window = max(window - shrink, floor)
        at += window
    return marks


def apgd_ce(model: Callable, images: torch.Tensor, labels: torch.Tensor, eps: float, steps: int = 100,
            norm: str = "linf", rho: float = 0.75, generator: torch.Generator | None = None) -> torch.Tensor:
    """APGD-CE (Croce & Hein 2020): gradient ascent with momentum 0.75 from a random point on the eps sphere, a
    step of 2 eps halved (and restarted from the best point) wherever, since the last checkpoint, at most rho of the
    steps raised the loss, or the step was not halved last time and the best loss did not improve. Returns, per
    image, the last iterate that was misclassified, else the one of highest loss."""
    check_eps(eps, norm)
    images = images.detach()
    shape = (-1,) + (1,) * (images.ndim - 1)
    if norm == "linf":
        noise = torch.rand(images.shape, generator=generator, dtype=images.dtype).to(images.device) * 2 - 1
        noise = noise / noise.flatten(1).abs().amax(1).view(shape)
    else:
        noise = torch.randn(images.shape, generator=generator, dtype=images.dtype).to(images.device)
        noise = noise / (l2_norm(noise) + 1e-12)
    adv = (images + eps * noise).clamp(0, 1)

    def loss_and_grad(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = x.detach().requires_grad_(True)
        with torch.enable_grad(), no_autocast(x.device):
            logits = model(x).to(x.dtype)
            losses = F.cross_entropy(logits, labels, reduction="none")
        return losses.detach(), torch.autograd.grad(losses.sum(), x)[0].detach(), logits.detach().argmax(1)

    losses, grad, pred = loss_and_grad(adv)
    fooled = pred != labels
    best, best_loss, best_grad, last_fooling = adv.clone(), losses.clone(), grad.clone(), adv.clone()
    step = torch.full((len(images),) + shape[1:], 2.0 * eps, dtype=images.dtype, device=images.device)
    history = [losses]  # loss at every iterate, the start included
    marks, previous_mark = apgd_checkpoints(steps), 0
    halved_last = torch.ones(len(images), dtype=torch.bool, device=images.device)
    best_at_last_mark = best_loss.clone()
    previous = adv
    for i in range(steps):
        momentum = 1.0 if i == 0 else 0.75
        z = project(adv + step * ascent_direction(grad, norm), images, eps, norm)
        new = project(adv + momentum * (z - adv) + (1 - momentum) * (adv - previous), images, eps, norm)
        previous, adv = adv, new
        losses, grad, pred = loss_and_grad(adv)
        history.append(losses)
        now_fooled = pred != labels
        fooled |= now_fooled
        last_fooling[now_fooled] = adv[now_fooled]
        better = losses > best_loss
        best[better], best_grad[better], best_loss[better] = adv[better], grad[better], losses[better]
        if i + 1 in marks:
            window = torch.stack(history[previous_mark:i + 2])
            rises = (window[1:] > window[:-1]).sum(0)
            oscillating = rises <= rho * (i + 1 - previous_mark)
            stalled = ~halved_last & (best_loss <= best_at_last_mark)
            halve = oscillating | stalled
            step[halve] /= 2
            adv[halve], grad[halve] = best[halve], best_grad[halve]
            halved_last, best_at_last_mark, previous_mark = halve, best_loss.clone(), i + 1
    return torch.where(fooled.view(shape), last_fooling, best)
