"""EigenCAM: where the dominant pattern of a block's patch tokens lies, with no gradient and no class to choose."""
from __future__ import annotations

import torch
from torch import nn

from .tokens import TokenLayout, block_input_tokens, model_blocks


@torch.no_grad()
def eigen_cam(model: nn.Module, images: torch.Tensor, block: int = -1) -> torch.Tensor:
    """Maps [B, rows, cols] of the patch tokens entering `block` (default the last, as Grad-CAM reads them; a Swin's
    blocks count stage after stage) projected on their first principal component (Muhammad & Yeasin 2020)."""
    captured: dict[str, torch.Tensor] = {}

    def capture(module: torch.nn.Module, args: tuple) -> None:
        captured["tokens"] = args[0]

    handle = model_blocks(model)[block].register_forward_pre_hook(capture)
    try:
        model(images)
    finally:
        handle.remove()
    return principal_component_map(*block_input_tokens(model, captured["tokens"]))


def principal_component_map(tokens: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """Per image: the patches' activations, centred over patches, projected on their first right singular vector.

    A principal component's sign is arbitrary; it is fixed so that the strongest response is positive, then the
    negative side is dropped (ReLU), as for every CAM.
    """
    acts = tokens[:, layout.patches].double()
    centred = acts - acts.mean(1, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    projection = (centred @ vh[:, 0].unsqueeze(-1)).squeeze(-1)  # [B, patches]
    strongest = projection.gather(1, projection.abs().argmax(1, keepdim=True))
    cam = torch.relu(projection * torch.where(strongest < 0, -1.0, 1.0))
    return cam.float().reshape(cam.shape[0], *layout.grid)
