"""Pruning against a closed form: in a model whose weakest heads and MLP channels are exactly zero, pruning must
remove those and nothing else, so the pruned model computes what the full one did."""
import sys

import pytest
import torch

from vitkit import ViTConfig
from vitkit.checkpoints import from_pretrained, save_pretrained
from vitkit.export import quantize_int4
from vitkit.export.prune import prune
from vitkit.models import VisionTransformer
from vitkit.models.profile import count_flops

pytest.importorskip("torch_pruning")
SMALL = ViTConfig(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=4, num_classes=3)


def zero_half(model):
    """Heads 1 and 3 and the odd MLP channels of every block contribute nothing: their weights are zero."""
    dim, head_dim = model.cfg.embed_dim, model.cfg.head_dim
    with torch.no_grad():
        for block in model.blocks:
            for head in (1, 3):
                cols = slice(head * head_dim, (head + 1) * head_dim)
                for part in range(3):  # its q, k and v rows
                    rows = slice(part * dim + cols.start, part * dim + cols.stop)
                    block.attn.qkv.weight[rows] = 0
                    block.attn.qkv.bias[rows] = 0
                block.attn.proj.weight[:, cols] = 0
                if block.attn.gate is not None:
                    block.attn.gate.proj.weight[cols] = 0
                    block.attn.gate.proj.bias[cols] = 0
            block.mlp.fc1.weight[1::2] = 0
            block.mlp.fc1.bias[1::2] = 0
            block.mlp.fc2.weight[:, 1::2] = 0
    return model


@pytest.mark.parametrize("overrides", [dict(), dict(qk_norm=True, rope=True, attn_gate=True, reg_tokens=2)])
def test_pruning_removes_the_zero_heads_and_channels_and_nothing_else(overrides):
    torch.manual_seed(0)
    model = zero_half(VisionTransformer(SMALL.replace(**overrides)).eval())
    halved = VisionTransformer(SMALL.replace(block_widths=[[2, 64], [2, 64]], **overrides))
    exact = 1 - count_flops(halved, (16, 16)) / count_flops(model, (16, 16))
    pruned = prune(model, exact - 0.01)  # just short of both halves: every channel cut is a zero one
    widths = pruned.cfg.block_widths
    assert all(heads == 2 and 64 <= hidden < 72 for heads, hidden in widths), widths
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), model(x), rtol=1e-5, atol=1e-6)


def test_a_pruned_model_meets_its_target_saves_loads_and_quantizes(tmp_path):
    torch.manual_seed(0)
    model = VisionTransformer(SMALL.replace(embed_dim=64, num_heads=2)).eval()
    model.class_names = ["a", "b", "c"]
    pruned = prune(model, 0.3, round_to=32)
    ratio = count_flops(pruned, (16, 16)) / count_flops(model, (16, 16))
    assert ratio <= 0.7 and all(hidden % 32 == 0 for _, hidden in pruned.cfg.block_widths)
    assert model.cfg.block_widths is None and model.blocks[0].mlp.fc1.out_features == 256  # the original untouched
    save_pretrained(pruned, tmp_path)
    loaded = from_pretrained(tmp_path).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), pruned(x))
        assert loaded.class_names == ["a", "b", "c"]
        quantize_int4(loaded)(x)  # widths that are multiples of 32 fit the int4 kernel


def test_what_cannot_be_pruned_is_refused(monkeypatch):
    with pytest.raises(ValueError, match="in \\(0, 1\\)"):
        prune(VisionTransformer(SMALL), 1.2)
    with pytest.raises(ValueError, match="gated"):
        prune(VisionTransformer(SMALL.replace(mlp="swiglu")), 0.3)
    monkeypatch.setitem(sys.modules, "torch_pruning", None)
    with pytest.raises(ImportError, match=r"pip install 'vitkit\[efficiency\]'"):
        prune(VisionTransformer(SMALL), 0.3)
