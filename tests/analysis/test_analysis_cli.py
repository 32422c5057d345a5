import re

from PIL import Image

from vitkit.checkpoints import save_pretrained
from vitkit.cli import main

from analysis_helpers import tiny_model

ALWAYS = ["filters.png", "attention_distance.png", "attention_distance.json", "rollout.png", "gradcam.png", "eigencam.png",
          "report.html"]


def image_folder(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, size in enumerate([(32, 32), (50, 40), (20, 64)]):
        Image.new("RGB", size, (40 * i, 100, 200 - 40 * i)).save(folder / f"img{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG but not really")
    return folder


def embedded_images(report: str) -> list[str]:
    return re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+" alt="([^"]+)"', report)


def test_analyze_a_preset_writes_every_picture_and_a_self_contained_report(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["analyze", "vit_cifar_seed_patch8_32", "--images", str(image_folder(tmp_path)), "--out", str(out),
                 "--layer", "0", "-1", "--show", "2"]) == 0
    err = capsys.readouterr().err
    assert "broken.png" in err
    pictures = ALWAYS + ["position_similarity.png", "attention_layer0.png", "attention_layer3.png"]
    for name in pictures:
        assert (out / name).stat().st_size > 0, name
    report = (out / "report.html").read_text()
    assert sorted(embedded_images(report)) == sorted(n for n in pictures if n.endswith(".png"))
    assert "broken.png" in report and 'src="' + "filters.png" not in report


def test_checkpoint_without_class_token_with_registers_and_rope_only(tmp_path, capsys):
    model = tiny_model(class_token=False, global_pool="avg", reg_tokens=2, reg_position="suffix", rope=True,
                       pos_embed="none")
    save_pretrained(model, tmp_path / "ckpt")
    out = tmp_path / "out"
    assert main(["analyze", str(tmp_path / "ckpt"), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "no class token" in err and "only with 2D RoPE" in err and "synthetic" in err
    assert (out / "registers.png").stat().st_size > 0 and not (out / "position_similarity.png").exists()
    report = (out / "report.html").read_text()
    assert "registers.png" in embedded_images(report) and "mean-pooled attention" in report


def test_bad_layer_and_all_unreadable_images_are_errors_with_exit_code_2(tmp_path, capsys):
    out = str(tmp_path / "out")
    assert main(["analyze", "vit_cifar_seed_patch8_32", "--out", out, "--layer", "9"]) == 2
    assert "layer 9 does not exist" in capsys.readouterr().err
    (tmp_path / "bad.png").write_bytes(b"nope")
    assert main(["analyze", "vit_cifar_seed_patch8_32", "--images", str(tmp_path / "bad.png"), "--out", out]) == 2
    err = capsys.readouterr().err
    assert "bad.png" in err and "no readable images" in err
