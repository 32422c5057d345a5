import pytest
import torch
import torch.nn.functional as F

from vitkit import ViTConfig, create_model
from vitkit.layers import ConvStem


def reference_stem(stem: ConvStem, x: torch.Tensor, training: bool) -> torch.Tensor:
    """The stem written out: 3x3 stride-2 convs as im2col matmuls, BatchNorm from its formula, ReLU."""
    convs = [m for m in stem.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in stem.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for conv, norm in zip(convs, norms):
        rows, cols = (x.shape[-2] + 1) // 2, (x.shape[-1] + 1) // 2
        patches = F.unfold(x, kernel_size=3, padding=1, stride=2)
        x = (conv.weight.reshape(conv.out_channels, -1) @ patches).reshape(x.shape[0], -1, rows, cols)
        if training:
            mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)
        else:
            mean, var = norm.running_mean, norm.running_var
        x = (x - mean[:, None, None]) / torch.sqrt(var[:, None, None] + norm.eps)
        x = (x * norm.weight[:, None, None] + norm.bias[:, None, None]).clamp_min(0)
    return x


@pytest.mark.parametrize("training", [True, False])
def test_stem_matches_its_written_out_formula(training):
    torch.manual_seed(0)
    stem = ConvStem(3, (8, 16))
    with torch.no_grad():
        for norm in (m for m in stem.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            norm.weight.uniform_(0.5, 1.5), norm.bias.normal_(), norm.running_mean.normal_()
            norm.running_var.uniform_(0.5, 2.0)
    stem.train(training)
    x = torch.randn(4, 3, 32, 24)
    out = stem(x)
    assert out.shape == (4, 16, 8, 6) and stem.stride == 4
    torch.testing.assert_close(out, reference_stem(stem, x, training), rtol=1e-4, atol=1e-4)


def test_model_with_conv_stem_has_one_token_per_stride():
    model = create_model("vit_cifar_patch4_32", patch_size=1, conv_stem=(16, 32), embed_dim=32, num_heads=2, depth=1)
    assert model.cfg.feature_stride == 4 and model.cfg.grid_size == (8, 8)
    tokens = model.forward_features(torch.randn(2, 3, 32, 32))
    assert tokens.shape == (2, 1 + 64, 32)
    assert model.patch_embed.proj.kernel_size == (1, 1)


def test_stem_errors_name_the_fix():
    with pytest.raises(ValueError, match="one stem"):
        ViTConfig(backbone="resnet50", conv_stem=(16, 32))
    with pytest.raises(ValueError, match="not divisible by the patch size 8"):
        ConvStem(3, (8, 8, 8))(torch.randn(1, 3, 20, 20))
