import pytest
import torch
from torch import nn

from vitkit.analysis import grad_cam

from analysis_helpers import tiny_model

EVIDENCE = {0: (1, 2), 1: (3, 0)}


def constructed_model(class_token: bool, prompts: int = 0) -> nn.Module:
    """Channel c of a patch becomes token feature c; class c's score reads feature c (class 2 reads -feature 0).

    With a class token the last block's attention is uniform with identity values, so the class token gathers the
    patch features; without one the block is the identity and the patches are averaged. Zero prompt tokens, when
    asked for, sit between the prefix and the patches and must not shift the map.
    """
    pool = {} if class_token else dict(class_token=False, global_pool="avg")
    model = tiny_model(depth=1, prompt_tokens=prompts, **pool)
    dim = model.cfg.embed_dim
    block = model.blocks[0]
    with torch.no_grad():
        for param in model.parameters():
            param.zero_()
        model.patch_embed.proj.weight[0, 0] = 1 / 64
        model.patch_embed.proj.weight[1, 1] = 1 / 64
        if class_token:
            block.attn.qkv.weight[2 * dim:] = torch.eye(dim)
            block.attn.proj.weight.copy_(torch.eye(dim))
        model.head.weight[0, 0] = model.head.weight[1, 1] = 1.0
        model.head.weight[2, 0] = -1.0
    block.norm1 = nn.Identity()
    model.norm = nn.Identity()
    return model


def evidence_image() -> torch.Tensor:
    image = torch.zeros(1, 3, 32, 32)
    for channel, (row, col) in EVIDENCE.items():
        image[0, channel, 8 * row:8 * row + 8, 8 * col:8 * col + 8] = 1.0
    return image


@pytest.mark.parametrize("class_token,prompts", [(True, 0), (False, 0), (True, 2)])
def test_grad_cam_is_nonzero_only_where_the_class_evidence_is(class_token, prompts):
    model = constructed_model(class_token, prompts)
    for target, (row, col) in EVIDENCE.items():
        cam, targets = grad_cam(model, evidence_image(), torch.tensor([target]))
        assert targets.tolist() == [target]
        assert cam.shape == (1, 4, 4) and cam[0, row, col] > 0
        cam[0, row, col] = 0
        assert torch.equal(cam, torch.zeros(1, 4, 4))


@pytest.mark.parametrize("class_token", [True, False])
def test_evidence_against_a_class_is_dropped(class_token):
    cam, _ = grad_cam(constructed_model(class_token), evidence_image(), torch.tensor([2]))
    assert torch.equal(cam, torch.zeros(1, 4, 4))


def test_default_target_is_the_prediction_and_the_model_is_left_unchanged():
    model = tiny_model(depth=2)
    images = torch.randn(3, 3, 32, 32)
    before = model(images)
    cam, targets = grad_cam(model, images)
    assert torch.equal(targets, before.argmax(-1)) and cam.shape == (3, 4, 4) and (cam >= 0).all()
    assert torch.equal(model(images), before) and all(p.grad is None for p in model.parameters())


def test_a_model_without_a_head_is_a_clear_error():
    with pytest.raises(ValueError, match="no classifier head"):
        grad_cam(tiny_model(num_classes=0), torch.randn(1, 3, 32, 32))
