"""`vitkit predict` and `vitkit eval` on a segmentation checkpoint made here: a model whose class layer always picks
class 2, so every mask, overlay pixel and score is known by hand."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from vitkit.checkpoints import save_pretrained
from vitkit.cli import main
from vitkit.data.segmentation import build_segmentation_dataset
from vitkit.inference import OVERLAY_ALPHA, class_colours
from vitkit.models import SegmentationConfig, SegmentationModel

CLASSES = ["sky", "road", "car"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    backbone = {"family": "vit", "name": "vit_cifar_patch4_32", "embed_dim": 16, "depth": 1, "num_heads": 2}
    model = SegmentationModel(SegmentationConfig(backbone=backbone, head="fpn", img_size=16, num_classes=3,
                                                 pyramid_dim=8, decoder_dim=8))
    with torch.no_grad():
        model.head.classify.weight.zero_()
        model.head.classify.bias.copy_(torch.tensor([0.0, 0.0, 5.0]))
    model.class_names = CLASSES
    return save_pretrained(model, tmp_path_factory.mktemp("ckpt") / "seg")


def test_predict_writes_a_mask_and_an_overlay_per_image(checkpoint, tmp_path, capsys):
    rng = np.random.default_rng(0)
    sizes = {"wide": (30, 12), "tall": (9, 21)}
    for name, size in sizes.items():
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(tmp_path / f"{name}.png")
    out = tmp_path / "out"
    assert main(["predict", str(checkpoint), str(tmp_path / "wide.png"), str(tmp_path / "tall.png"), "--out", str(out),
                 "--backend", "torch-fp32", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["classes"] for r in report] == [[{"class": "car", "share": 1.0}]] * 2
    colour = class_colours(3)[2]
    for name, size in sizes.items():
        mask = Image.open(out / f"{name}_mask.png")
        assert mask.mode == "P" and mask.size == size and (np.asarray(mask) == 2).all()
        image = np.asarray(Image.open(tmp_path / f"{name}.png"), dtype=np.float64)
        expected = ((1 - OVERLAY_ALPHA) * image + OVERLAY_ALPHA * colour).round()
        assert np.array_equal(np.asarray(Image.open(out / f"{name}_overlay.png")), expected)


def test_a_predicted_mask_reads_back_as_a_segmentation_folder(checkpoint, tmp_path):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (10, 8), (10, 200, 30)).save(tmp_path / "images" / "a.png")
    assert main(["predict", str(checkpoint), str(tmp_path / "images"), "--out", str(tmp_path / "masks"),
                 "--backend", "torch-fp32"]) == 0
    (tmp_path / "masks" / "a_mask.png").rename(tmp_path / "masks" / "a.png")
    (tmp_path / "masks" / "a_overlay.png").unlink()
    _, mask = build_segmentation_dataset(f"segfolder:{tmp_path}")[0]
    assert mask.shape == (8, 10) and (mask == 2).all()


def test_eval_reports_miou_per_class_iou_and_the_pixel_confusion(checkpoint, tmp_path, capsys):
    rng = np.random.default_rng(1)
    truth = []
    for folder in ("train", "val"):
        (tmp_path / "data" / folder / "images").mkdir(parents=True)
        (tmp_path / "data" / folder / "masks").mkdir()
        for i in range(3):
            mask = rng.choice([0, 1, 2, 2, 255], (16, 16)).astype(np.uint8)
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
                tmp_path / "data" / folder / "images" / f"{i}.png")
            Image.fromarray(mask).save(tmp_path / "data" / folder / "masks" / f"{i}.png")
            truth += [mask] if folder == "val" else []
    (tmp_path / "data" / "classes.txt").write_text("\n".join(CLASSES))
    out = tmp_path / "eval"
    assert main(["eval", str(checkpoint), "--data", f"segfolder:{tmp_path / 'data'}", "--out", str(out),
                 "--backend", "torch-fp32"]) == 0
    report = json.loads((out / "eval.json").read_text())
    labelled = np.concatenate([m.ravel() for m in truth])
    labelled = labelled[labelled != 255]
    share = (labelled == 2).mean()  # every pixel is predicted 2: IoU of 2 is its share, of 0 and 1 zero
    assert report["per_class_iou"] == pytest.approx([0.0, 0.0, 100 * share])
    assert report["miou"] == pytest.approx(100 * share / 3) and report["pixel_accuracy"] == pytest.approx(100 * share)
    expected = np.zeros((3, 3), int)
    expected[:, 2] = np.bincount(labelled, minlength=3)
    assert np.array_equal(report["confusion"], expected) and report["classes"] == CLASSES
    assert (out / "confusion.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "mIoU" in printed and "car" in printed
