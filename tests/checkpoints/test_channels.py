"""A 3-channel checkpoint on gray data (and the reverse): the folded patch projection must give exactly what the
checkpoint gives on the image mapped to its channels and normalised its own way."""
import numpy as np
import pytest
import torch
from PIL import Image

from vitkit import create_model, from_pretrained
from vitkit.checkpoints import CheckpointError, load_checkpoint, save_pretrained
from vitkit.preprocess import Preprocess


@pytest.mark.parametrize("name,kwargs,mean,std", [
    ("hf_vit_cls", {}, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # Hugging Face's default normalisation
    ("timm_vit_cls.safetensors", {"num_heads": 4}, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # ImageNet
])
def test_gray_input_equals_the_checkpoint_on_gray_replicated_to_rgb(fixtures, name, kwargs, mean, std):
    original = from_pretrained(fixtures / name, **kwargs).eval()
    gray = from_pretrained(fixtures / name, in_chans=1, **kwargs).eval()
    assert gray.cfg.in_chans == 1 and gray.preprocess.mean == (0.0,) and gray.preprocess.std == (1.0,)
    pixels = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    rgb = (pixels.expand(-1, 3, -1, -1) - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(gray(pixels), original(rgb), atol=1e-5, rtol=0)


def test_rgb_input_equals_a_gray_checkpoint_on_the_luma_of_the_image(tmp_path):
    """ITU-R 601-2 luma (0.299 R + 0.587 G + 0.114 B, PIL's "L" mode): exactly in floats, and to PIL's integer
    rounding on uint8 images converted by PIL itself."""
    torch.manual_seed(0)
    gray_model = create_model("vit_cifar_patch4_32", img_size=16, embed_dim=32, depth=1, num_heads=2, in_chans=1,
                              num_classes=5).eval()
    gray_model.preprocess = Preprocess(mean=(0.3,), std=(0.4,))
    save_pretrained(gray_model, tmp_path / "gray")
    rgb_model, report = load_checkpoint(tmp_path / "gray", in_chans=3)
    assert rgb_model.cfg.in_chans == 3 and rgb_model.preprocess.mean == (0.0, 0.0, 0.0)
    assert "input channels adapted from 1 to 3" in report.adapted[0]
    rgb_model.eval()
    images = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    rgb = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    luma = (images.astype(np.float64) @ np.array([0.299, 0.587, 0.114])) / 255
    expected = gray_model((torch.from_numpy(luma).float().unsqueeze(1) - 0.3) / 0.4)
    torch.testing.assert_close(rgb_model(rgb), expected, atol=1e-5, rtol=0)
    pil = np.stack([np.asarray(Image.fromarray(image).convert("L")) for image in images]) / 255
    from_pil = gray_model((torch.from_numpy(pil).float().unsqueeze(1) - 0.3) / 0.4)
    torch.testing.assert_close(rgb_model(rgb), from_pil, atol=0.05, rtol=0)  # PIL rounds luma to whole levels


def test_other_channel_counts_and_stems_are_refused(fixtures, tmp_path):
    with pytest.raises(CheckpointError, match="adapts between 1 \\(gray\\) and 3 \\(RGB\\)"):
        from_pretrained(fixtures / "hf_vit_cls", in_chans=2)
    stem = create_model("vit_cifar_patch4_32", img_size=16, embed_dim=32, depth=1, num_heads=2, conv_stem=[16],
                        num_classes=3)
    save_pretrained(stem, tmp_path / "stem")
    with pytest.raises(CheckpointError, match="convolutional stem"):
        from_pretrained(tmp_path / "stem", in_chans=1)


@pytest.mark.parametrize("name,kwargs,mean,interpolation,origin", [
    ("hf_vit_cls", {}, (0.5, 0.5, 0.5), "bilinear", "Hugging Face ViT's default"),
    ("vit5_official_tiny.pth", {}, (0.485, 0.456, 0.406), "bicubic", "official ViT-5"),
    ("timm_vit_cls.safetensors", {"num_heads": 4}, (0.485, 0.456, 0.406), "bicubic", "timm's default"),
])
def test_unrecorded_preprocessing_follows_the_family_convention(fixtures, name, kwargs, mean, interpolation, origin):
    model, report = load_checkpoint(fixtures / name, **kwargs)
    assert model.preprocess.mean == mean and model.preprocess.interpolation == interpolation
    assert origin in report.preprocess_origin


def test_a_hugging_face_preprocessor_config_wins(fixtures, tmp_path):
    import json
    import shutil

    folder = shutil.copytree(fixtures / "hf_vit_cls", tmp_path / "hf")
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"image_mean": [0.1, 0.2, 0.3], "image_std": [0.4, 0.5, 0.6], "resample": 3}))
    model, report = load_checkpoint(folder)
    assert model.preprocess == Preprocess((0.1, 0.2, 0.3), (0.4, 0.5, 0.6), "bicubic", 1.0)
    assert "preprocessor_config.json" in report.preprocess_origin
