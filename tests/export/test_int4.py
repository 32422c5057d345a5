"""Weight-only int4 against the same 4-bit grid computed in float64 by hand, and a quantized model against its float
self."""
import pytest
import torch
from torch import nn

from vitkit import ViTConfig
from vitkit.checkpoints import save_pretrained
from vitkit.export import Int4Linear, optimize_for_inference, quantize_int4
from vitkit.models import VisionTransformer


def dequantized(weight: torch.Tensor, group: int) -> torch.Tensor:
    """Each group of `group` input channels rounded to 16 evenly spaced levels from its minimum to its maximum."""
    w = weight.double()
    out = torch.empty_like(w)
    for row in range(w.shape[0]):
        for start in range(0, w.shape[1], group):
            values = w[row, start:start + group]
            low, step = values.min(), (values.max() - values.min()) / 15
            out[row, start:start + group] = low + ((values - low) / step).round() * step
    return out


@pytest.mark.parametrize("group", [32, 64])
@pytest.mark.parametrize("shape", [(5, 64), (2, 3, 64)])
def test_int4_linear_is_the_4bit_grid_matmul(group, shape):
    torch.manual_seed(0)
    linear = nn.Linear(64, 48)
    x = torch.randn(shape)
    out = Int4Linear(linear, group)(x)
    assert out.shape == (*shape[:-1], 48) and out.dtype == torch.float32
    activations = x.to(torch.bfloat16).double()  # the kernel multiplies bf16 activations
    expected = activations @ dequantized(linear.weight, group).T + linear.bias.double()
    torch.testing.assert_close(out.double(), expected, rtol=1e-2, atol=1e-2)  # the kernel returns bf16
    assert (out - linear(x)).abs().max() < 0.1 * linear(x).abs().max()  # 4-bit rounding, not another function


def test_int4_refuses_shapes_its_kernel_cannot_run():
    with pytest.raises(ValueError, match="groups of 32 and the outputs into multiples of 16"):
        Int4Linear(nn.Linear(48, 32))
    with pytest.raises(ValueError, match="group_size must be one of"):
        Int4Linear(nn.Linear(64, 32), group_size=16)
    model = VisionTransformer(ViTConfig(img_size=16, patch_size=8, embed_dim=32, depth=1, num_heads=2,
                                        block_widths=[[2, 40]]))
    with pytest.raises(ValueError, match="blocks.0.mlp.fc1: a linear layer 32 -> 40"):
        quantize_int4(model)
    assert not any(isinstance(m, Int4Linear) for m in model.modules())  # checked before anything is swapped


def test_an_int4_model_stays_close_to_its_float_self_and_is_an_eighth_of_the_weights(tmp_path):
    torch.manual_seed(0)
    model = VisionTransformer(ViTConfig(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2,
                                        num_classes=10)).eval()
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        reference = model(x)
        backend = optimize_for_inference(model, x[:2], backend="torch-int4")
        logits = backend(x)
    assert backend.name == "torch-int4"
    assert (logits - reference).abs().max() < 0.1 * reference.abs().max()
    block_bytes = sum(t.numel() * t.element_size() for t in model.blocks.state_dict().values())
    quantized = quantize_int4(model)
    int4_bytes = sum(t.numel() * t.element_size() for t in quantized.blocks.state_dict().values())
    assert int4_bytes < 0.2 * block_bytes
    with pytest.raises(ValueError, match="save the model before quantize_int8 / quantize_int4"):
        save_pretrained(quantized, tmp_path)
