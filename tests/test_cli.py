import subprocess
import sys

from vitkit.cli import main


def test_models_lists_presets_with_params_and_flops(capsys):
    assert main(["models", "vit5_*"]) == 0
    out = capsys.readouterr().out
    assert "vit5_small_patch16_224" in out and "22.04" in out and "9.40" in out
    assert "deit" not in out


def test_info_shows_token_shapes(capsys):
    assert main(["info", "vit5_small_patch16_224"]) == 0
    out = capsys.readouterr().out
    assert "B x 201 x 384" in out and "22,039,144" in out and "4 register" in out


def test_info_accepts_overrides(capsys):
    assert main(["info", "vit_tiny_patch16_224", "img_size=32", "patch_size=4", "num_classes=10"]) == 0
    assert "B x 65 x 192" in capsys.readouterr().out


def test_info_shows_the_feature_maps_of_a_stem(capsys):
    assert main(["info", "vit_cifar_patch4_32", "patch_size=1", "conv_stem=[32,64]"]) == 0
    out = capsys.readouterr().out
    assert "conv stem feature map" in out and "B x 64 x 8 x 8" in out and "B x 64 x 192" in out
    assert main(["info", "vit_base_r50_s16_224"]) == 0
    out = capsys.readouterr().out
    assert "ResNet feature map" in out and "B x 1024 x 14 x 14" in out


def test_info_shows_the_training_sequence_under_patch_dropout(capsys):
    assert main(["info", "vit_cifar_patch4_32", "patch_drop_rate=0.75"]) == 0
    out = capsys.readouterr().out
    assert "B x 65 x 192" in out and "B x 17 x 192" in out and "keeps 16 of 64 patches" in out


def test_unknown_model_is_a_clear_error_with_exit_code_2():
    result = subprocess.run([sys.executable, "-m", "vitkit", "info", "vit_bse_patch16_224"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "closest: vit_base_patch16_224" in result.stderr
