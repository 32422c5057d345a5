"""Swin's shifted-window masks are built once per map, window, shift and device, and stay right when the input size
or window changes."""
import torch

import vitkit.models.swin_transformer as swin_module
from vitkit.layers import shifted_window_mask
from vitkit.models import SwinTransformer


def tiny(**overrides):
    torch.manual_seed(0)
    fields = dict(img_size=32, patch_size=2, window_size=4, embed_dim=8, depths=(2, 2), num_heads=(1, 2),
                  num_classes=3)
    return SwinTransformer(**{**fields, **overrides}).eval()


def test_the_mask_is_built_once_and_equals_a_fresh_one(monkeypatch):
    calls = []
    monkeypatch.setattr(swin_module, "shifted_window_mask",
                        lambda *args: calls.append(args) or shifted_window_mask(*args))
    model = tiny()
    images = torch.randn(2, 3, 32, 32)
    first = model(images)
    assert len(calls) == 2  # stage 0 (16x16 map) and stage 1 (8x8), both shifted by 2
    assert torch.equal(model(images), first) and len(calls) == 2
    (key, mask), = model.layers[0]._masks.items()
    assert key == ((16, 16), (4, 4), (2, 2), torch.device("cpu"))
    assert torch.equal(mask, shifted_window_mask((16, 16), (4, 4), (2, 2)))
    model(torch.randn(1, 3, 64, 64))  # another input size: a mask of its own beside the first
    assert len(calls) == 4 and len(model.layers[0]._masks) == 2


def test_a_new_window_drops_the_old_masks_and_computes_what_a_fresh_model_does():
    model = tiny()
    images = torch.randn(1, 3, 32, 32)
    model(images)
    model.set_input_size(window_size=2)
    assert not any(stage._masks for stage in model.layers)
    fresh = tiny(window_size=2)
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(model(images), fresh(images), rtol=0, atol=0)
    assert next(iter(model.layers[0]._masks))[1:3] == ((2, 2), (1, 1))
