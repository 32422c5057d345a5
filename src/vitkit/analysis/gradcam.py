"""Grad-CAM for ViTs and Swins: which patches carry the evidence for a class, from the tokens entering the last
block (a Swin's: its last stage's)."""
from __future__ import annotations

import torch
from torch import nn

from .tokens import TokenLayout, block_input_tokens, model_blocks


def grad_cam(model: nn.Module, images: torch.Tensor,
             targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Class evidence maps [B, rows, cols] and the classes they explain (default: the predicted ones).

    The patch tokens entering the last block play the role of a CNN's last feature map: each channel is weighted
    by the patch-averaged gradient of the class score, summed over channels, and negative evidence is dropped.
    The last block's input (not its output) is used because with class-token pooling the output patch tokens do
    not reach the logits at all; the input reaches them through the last attention.
    """
    if model.cfg.num_classes == 0:
        raise ValueError("Grad-CAM needs class scores, but this model has no classifier head (num_classes=0)")
    captured: dict[str, torch.Tensor] = {}

    def capture(module: torch.nn.Module, args: tuple) -> tuple:
        tokens = args[0].detach().requires_grad_(True)
        captured["tokens"] = tokens
        return (tokens,) + args[1:]

    handle = model_blocks(model)[-1].register_forward_pre_hook(capture)
    try:
        with torch.enable_grad():
            logits = model(images)
            if targets is None:
                targets = logits.argmax(-1)
            score = logits.gather(1, targets.view(-1, 1)).sum()
            grads, = torch.autograd.grad(score, captured["tokens"])
    finally:
        handle.remove()
    tokens, layout = block_input_tokens(model, captured["tokens"].detach())
    return cam_from_tokens(tokens, block_input_tokens(model, grads)[0], layout), targets


def cam_from_tokens(tokens: torch.Tensor, grads: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """The Grad-CAM rule on token sequences [B, T, D]: ReLU(sum_d mean_p(grad[p, d]) * token[p, d]) per patch."""
    acts, grads = tokens[:, layout.patches], grads[:, layout.patches]
    weights = grads.mean(1, keepdim=True)
    cam = torch.relu((weights * acts).sum(-1))
    return cam.reshape(cam.shape[0], *layout.grid)
