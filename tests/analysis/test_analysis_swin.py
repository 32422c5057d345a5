"""analyze on a Swin: per-window maps against a token-by-token reference, Grad-CAM on the last stage by hand, and
the report saying (not drawing) what is undefined for shifted windows without a class token."""
import html

import pytest
import torch

from vitkit.analysis import analyze, grad_cam, synthetic_images
from vitkit.analysis.windows import NOT_DEFINED_MESSAGE, collect_window_attention, window_maps
from vitkit.checkpoints import save_pretrained
from vitkit.cli import main
from vitkit.models import SegmentationConfig, SegmentationModel, SwinTransformer


def tiny_swin():
    torch.manual_seed(0)
    return SwinTransformer(img_size=32, patch_size=2, window_size=4, embed_dim=8, depths=(2, 2), num_heads=(1, 2),
                           num_classes=3).eval()


def brute_force_maps(probs, grid, window, shift):
    """Key n of window k (row-major over the rolled map) sits at rolled place (top + n // ww, left + n % ww), which
    holds the token from ((row + shift) mod H, (col + shift) mod W); its value is the mean over the window's queries."""
    height, width = grid
    wh, ww = window
    per_image = height // wh * (width // ww)
    out = torch.zeros(probs.shape[0] // per_image, probs.shape[1], height, width)
    for k in range(probs.shape[0]):
        image, index = divmod(k, per_image)
        top, left = index // (width // ww) * wh, index % (width // ww) * ww
        for n in range(wh * ww):
            row, col = (top + n // ww + shift[0]) % height, (left + n % ww + shift[1]) % width
            out[image, :, row, col] = probs[k, :, :, n].mean(-1)
    return out


@pytest.mark.parametrize("shift", [(0, 0), (2, 2), (0, 2)])
def test_window_maps_against_a_token_by_token_reference(shift):
    probs = torch.rand(2 * 6, 3, 16, 16).softmax(-1)  # 2 images of 8x12 maps in 4x4 windows
    maps = window_maps(probs, (8, 12), (4, 4), shift)
    assert maps.shape == (2, 3, 8, 12)
    torch.testing.assert_close(maps, brute_force_maps(probs, (8, 12), (4, 4), shift))


def test_every_block_gives_probabilities_per_window():
    model = tiny_swin()
    maps = collect_window_attention(model, torch.randn(2, 3, 32, 32))
    assert [tuple(p.shape) for p in maps] == [(2 * 16, 1, 16, 16)] * 2 + [(2 * 4, 2, 16, 16)] * 2
    assert model.block_windows() == [(0, (16, 16), (0, 0)), (0, (16, 16), (2, 2)), (1, (8, 8), (0, 0)),
                                     (1, (8, 8), (2, 2))]
    masked = maps[1].reshape(2, 16, 1, 16, 16)[:, -1, 0]  # the last window of a shifted block joins 4 regions
    assert (masked < 1e-20).any() and not (maps[0] < 1e-20).any()


def test_grad_cam_reads_the_last_stage_by_hand():
    model = tiny_swin()
    images = torch.randn(2, 3, 32, 32)
    cam, targets = grad_cam(model, images)
    assert cam.shape == (2, 8, 8) and (cam >= 0).all()
    seen = {}

    def swap_in_a_leaf(module, args):
        seen["x"] = args[0].detach().requires_grad_()
        return (seen["x"],) + args[1:]

    handle = model.layers[-1].blocks[-1].register_forward_pre_hook(swap_in_a_leaf)
    score = model(images).gather(1, targets[:, None]).sum()
    handle.remove()
    x = seen["x"]
    grads, = torch.autograd.grad(score, x)  # [B, 8, 8, C]
    expected = torch.relu((grads.mean((1, 2), keepdim=True) * x).sum(-1))
    torch.testing.assert_close(cam, expected.detach())


def test_analyze_writes_the_window_maps_and_says_what_is_undefined(tmp_path, capsys):
    save_pretrained(tiny_swin(), tmp_path / "swin")
    out = tmp_path / "out"
    assert main(["analyze", str(tmp_path / "swin"), "--out", str(out), "--layer", "1", "-1", "--show", "2"]) == 0
    assert "not defined for a Swin Transformer" in capsys.readouterr().err
    for name in ["filters.png", "attention_layer1.png", "attention_layer3.png", "gradcam.png", "eigencam.png"]:
        assert (out / name).stat().st_size > 0, name
    assert not (out / "rollout.png").exists() and not (out / "attention_distance.json").exists()
    report = (out / "report.html").read_text()
    assert html.escape(NOT_DEFINED_MESSAGE) in report and "no absolute position embedding" in report
    with pytest.raises(ValueError, match="layer 4 does not exist: this model has 4 blocks"):
        analyze(tiny_swin(), synthetic_images(1, (32, 32), 3), tmp_path / "bad", layers=[4])


def test_a_segmentation_model_is_refused_with_a_reason(tmp_path):
    model = SegmentationModel(SegmentationConfig(backbone={"family": "vit", "name": "vit_cifar_patch4_32",
                                                           "embed_dim": 16, "depth": 1, "num_heads": 2}))
    with pytest.raises(ValueError, match="analyze explains classifiers"):
        analyze(model, synthetic_images(1, (32, 32), 3), tmp_path)
