import json
import sys

import pytest
import torch

from vitkit import create_model
from vitkit.cli import main
from vitkit.export import check_onnx, export_onnx

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=5)


def run_onnx(path, images: torch.Tensor) -> torch.Tensor:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: images.numpy()})[0])


@pytest.mark.parametrize("name, extra", [
    ("vit_cifar_patch4_32", {}),
    ("vit5_small_patch16_224", {}),  # RoPE, registers, LayerScale, QK-norm, RMSNorm
])
def test_onnx_file_computes_the_models_logits_at_any_batch(tmp_path, name, extra):
    torch.manual_seed(0)
    model = create_model(name, **TINY, **extra).eval()
    report = export_onnx(model, tmp_path / "model.onnx")
    assert report["max_abs_error"] < 1e-4
    for batch in (1, 7):
        images = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(run_onnx(tmp_path / "model.onnx", images), model(images), rtol=1e-4, atol=1e-4)


def test_onnx_file_records_preprocessing_and_class_names(tmp_path):
    model = create_model("vit_cifar_patch4_32", **TINY)
    model.class_names = ["a", "b", "c", "d", "e"]
    export_onnx(model, tmp_path / "model.onnx", check=False)
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "model.onnx")).metadata_props}
    assert json.loads(meta["vitkit_class_names"]) == model.class_names
    assert json.loads(meta["vitkit_preprocess"])["mean"] == list(model.preprocess.mean)
    assert json.loads(meta["vitkit_config"])["embed_dim"] == 32


def test_check_onnx_catches_a_file_that_disagrees_with_the_model(tmp_path):
    model = create_model("vit_cifar_patch4_32", **TINY)
    export_onnx(model, tmp_path / "model.onnx", check=False)
    with torch.no_grad():
        model.head.bias += 1.0
    with pytest.raises(ValueError, match="differ from PyTorch"):
        check_onnx(model, tmp_path / "model.onnx")


def test_export_refuses_an_int8_model_and_says_what_to_do(tmp_path):
    from vitkit.export import quantize_int8

    with pytest.raises(ValueError, match="export the float model"):
        export_onnx(quantize_int8(create_model("vit_cifar_patch4_32", **TINY)), tmp_path / "model.onnx")


def test_export_command_writes_a_checked_file(tmp_path, capsys):
    from vitkit import save_pretrained

    save_pretrained(create_model("vit_cifar_patch4_32", **TINY), tmp_path / "ckpt")
    assert main(["export", str(tmp_path / "ckpt"), str(tmp_path / "model.onnx")]) == 0
    assert "onnxruntime" in capsys.readouterr().out
    images = torch.randn(2, 3, 32, 32)
    from vitkit.inference import load_model

    with torch.no_grad():
        torch.testing.assert_close(run_onnx(tmp_path / "model.onnx", images), load_model(tmp_path / "ckpt")(images),
                                   rtol=1e-4, atol=1e-4)


def test_export_without_onnx_says_what_to_install(tmp_path, monkeypatch):
    from vitkit import save_pretrained

    save_pretrained(create_model("vit_cifar_patch4_32", **TINY), tmp_path / "ckpt")
    monkeypatch.setitem(sys.modules, "onnx", None)  # what an environment without the package looks like to import
    with pytest.raises(SystemExit, match=r"pip install 'vitkit\[export\]'"):
        main(["export", str(tmp_path / "ckpt"), str(tmp_path / "model.onnx")])


def test_the_docs_onnxruntime_example_runs(tmp_path, monkeypatch, capsys):
    from pathlib import Path
    import re

    docs = (Path(__file__).resolve().parents[2] / "docs" / "export.md").read_text()
    example = next(block for block in re.findall(r"```python\n(.*?)```", docs, re.S) if "InferenceSession" in block)
    model = create_model("vit_cifar_patch4_32", **TINY)
    model.class_names = ["plane", "car", "bird", "cat", "deer"]
    monkeypatch.chdir(tmp_path)
    export_onnx(model, "cifar.onnx", check=False)
    exec(compile(example, "docs/export.md", "exec"), {})
    printed = capsys.readouterr().out
    assert printed.count("'") == 8 and all(name in model.class_names for name in re.findall(r"'(\w+)'", printed))


def test_export_copies_only_a_model_it_would_otherwise_change(tmp_path):
    from vitkit.export.onnx import _fp32_cpu_eval

    model = create_model("vit_cifar_patch4_32", **TINY)
    assert _fp32_cpu_eval(model.eval()) is model
    for changed in (model.train(), model.eval().to(torch.bfloat16)):
        copied = _fp32_cpu_eval(changed)
        assert copied is not changed and not copied.training and copied.head.weight.dtype == torch.float32
    assert model.head.weight.dtype == torch.bfloat16
