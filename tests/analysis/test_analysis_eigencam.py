"""EigenCAM against scikit-learn's PCA on the same tokens, and `analyze` / `eval` reading a run's own data."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from vitkit.analysis import eigen_cam
from vitkit.analysis.eigencam import principal_component_map
from vitkit.analysis.tokens import token_layout
from vitkit.cli import main

from analysis_helpers import tiny_model

OLD_RUN = Path(__file__).resolve().parents[1] / "fixtures" / "old_runs" / "v0_scratch"


def pca_cam(patches: np.ndarray) -> np.ndarray:
    """sklearn's first principal component score per patch, oriented so its strongest patch is positive, ReLU'd."""
    score = PCA(n_components=1).fit_transform(patches)[:, 0]
    score = score * np.sign(score[np.abs(score).argmax()])
    return np.maximum(score, 0)


def test_principal_component_map_matches_sklearn_pca():
    torch.manual_seed(0)
    model = tiny_model(reg_tokens=2)
    layout = token_layout(model.cfg)
    tokens = torch.randn(3, 1 + 2 + 16, 32) + torch.linspace(0, 3, 32)  # an offset PCA must centre away
    cams = principal_component_map(tokens, layout)
    assert cams.shape == (3, 4, 4)
    for tokens_one, cam in zip(tokens, cams):
        expected = pca_cam(tokens_one[layout.patches].double().numpy())
        np.testing.assert_allclose(cam.flatten().numpy(), expected, atol=1e-5)


def test_eigen_cam_reads_the_tokens_entering_the_last_block():
    model = tiny_model()
    images = torch.randn(2, 3, 32, 32)
    _, outputs = model.forward_intermediates(images, indices=[0], output_fmt="NLC")  # block 0's output = block 1's input
    for patches, cam in zip(model.patch_tokens(outputs[0]), eigen_cam(model, images)):
        np.testing.assert_allclose(cam.flatten().numpy(), pca_cam(patches.double().detach().numpy()), atol=1e-5)


def test_analyze_and_eval_of_a_run_use_its_own_test_images(tmp_path, capsys):
    run = shutil.copytree(OLD_RUN, tmp_path / "run", symlinks=True)
    assert main(["analyze", str(run), "--out", str(tmp_path / "out"), "--show", "3", "--num-images", "12"]) == 0
    report = (tmp_path / "out" / "report.html").read_text()
    assert "images: the digits test split" in report and "synthetic" not in report
    assert (tmp_path / "out" / "eigencam.png").stat().st_size > 0
    assert json.loads((tmp_path / "out" / "attention_distance.json").read_text())["num_images"] == 12
    assert main(["eval", str(run), "--out", str(tmp_path / "eval")]) == 0
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["data"] == "digits"


def test_a_checkpoint_outside_a_run_needs_data_or_says_it_draws_noise(tmp_path, capsys):
    checkpoint = OLD_RUN / "checkpoints" / "best"
    assert main(["analyze", str(checkpoint / "model.safetensors"), "--out", str(tmp_path / "out"), "--show", "1"]) == 0
    assert "no dataset known for this source" in capsys.readouterr().err
    assert main(["eval", str(checkpoint / "model.safetensors")]) == 2
    assert "pass --data SPEC" in capsys.readouterr().err


def test_dataset_images_take_the_classes_in_turn_and_keep_the_pixels():
    from vitkit.analysis import dataset_images
    from vitkit.data import build_dataset
    from vitkit.preprocess import Preprocess

    images = dataset_images("digits", 12, (8, 8), 1, Preprocess(crop_pct=1.0))
    test = build_dataset("digits", split="test")
    indices = [int(name.split("#")[1].rstrip(")")) for name in images.names]
    assert [name.split(" ")[0] for name in images.names[:10]] == [str(d) for d in range(10)]
    assert [int(test.labels[i]) for i in indices[:10]] == list(range(10))
    np.testing.assert_allclose(images.pixels[..., 0], test.images[indices, 0].numpy() / 255.0, atol=1e-7)


@pytest.mark.parametrize("where", ["run", "checkpoints/best"])
def test_a_run_is_recognised_from_its_folder_or_its_checkpoint(where):
    from vitkit.checkpoints import run_dataset

    assert run_dataset(OLD_RUN / where if where != "run" else OLD_RUN) == "digits"
