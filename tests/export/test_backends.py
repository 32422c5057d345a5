import json
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from vitkit import create_model
from vitkit.checkpoints import resolve_checkpoint
from vitkit.cli import main
from vitkit.data import build_dataset, build_loader
from vitkit.export import BACKENDS, cache_dir_for, optimize_for_inference, pick_backend
from vitkit.hardware import CpuKernels
from vitkit.export import backends, ort
from vitkit.inference import load_model
from vitkit.train import train

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

AVX2 = CpuKernels("x86_64", frozenset({"avx2", "fma"}))
AVX512_VNNI_BF16 = CpuKernels("x86_64", frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}))
ARM = CpuKernels("aarch64", frozenset({"asimd"}))
TINY = dict(img_size=8, patch_size=2, in_chans=1, embed_dim=32, depth=1, num_heads=2, num_classes=10)


@pytest.fixture(autouse=True)
def user_cache(tmp_path, monkeypatch):
    """Files a test caches outside a checkpoint go to its own folder, never to ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "vitkit" / "onnx"


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A tiny ViT trained for a few seconds on digits: far from chance, so agreeing on its argmax means something."""
    out = tmp_path_factory.mktemp("runs")
    torch.manual_seed(0)
    train(overrides=["model.embed_dim=32", "model.depth=1", "model.num_heads=2", "schedule.epochs=10",
                     "schedule.warmup_epochs=1", "optim.lr=5e-3", "logging.progress=false", "data.num_workers=0",
                     f"output_dir={out}", "name=digits"])
    return out / "digits"


def digits_test_set(model):
    dataset = build_dataset("digits", split="test")
    loader = build_loader(dataset, batch_size=len(dataset), train=False, img_size=model.cfg.img_size,
                          in_chans=model.cfg.in_chans, preprocess=model.preprocess, num_workers=0)
    return next(iter(loader))


def test_ort_backends_answer_as_the_model_on_digits_and_reuse_their_files(digits_run, monkeypatch):
    model = load_model(digits_run)
    images, labels = digits_test_set(model)
    with torch.no_grad():
        reference = model(images)
    assert (reference.argmax(1) == labels).float().mean() > 0.4  # chance is 0.1
    cache = cache_dir_for(resolve_checkpoint(digits_run))
    fp32 = optimize_for_inference(model, images[:2], backend="ort-fp32", cache_dir=cache)
    torch.testing.assert_close(fp32(images), reference, rtol=1e-4, atol=1e-4 * reference.abs().max().item())
    assert torch.equal(fp32(images).argmax(1), reference.argmax(1))
    int8 = optimize_for_inference(model, images[:2], backend="ort-int8", cache_dir=cache)
    assert (int8(images).argmax(1) == reference.argmax(1)).float().mean() >= 0.97
    assert fp32.preprocess == model.preprocess and fp32.cfg == model.cfg  # what predict and eval read
    assert sorted(path.name.split("-")[1] for path in cache.glob("*.onnx")) == ["fp32", "int8"]
    assert cache.parent.samefile(resolve_checkpoint(digits_run))  # next to the checkpoint: it travels with it
    monkeypatch.setattr(ort, "export_onnx", lambda *args, **kwargs: pytest.fail("a cached file was built again"))
    again = optimize_for_inference(model, images[:2], backend="ort-int8", cache_dir=cache)
    torch.testing.assert_close(again(images), int8(images))


@pytest.mark.parametrize("kernels, lossless, with_int8, measured", [
    (AVX2, "ort-fp32", "ort-int8", True),
    (AVX512_VNNI_BF16, "ort-fp32", "torch-int8", True),
    (ARM, "torch-fp32", "torch-fp32", False),
    (CpuKernels("x86_64", frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile"})), "torch-fp32",
     "torch-fp32", False),
])
def test_pick_backend_follows_the_measured_table_per_cpu_class(kernels, lossless, with_int8, measured):
    assert pick_backend(backends.LOSSLESS, kernels)[0] == lossless
    name, reason = pick_backend(BACKENDS, kernels)
    assert name == with_int8 and ("not measured" not in reason) == measured


def test_auto_is_lossless_unless_int8_is_allowed(digits_run, monkeypatch):
    model = load_model(digits_run)
    images = torch.randn(3, *model.cfg.img_size).unsqueeze(1)
    cache = cache_dir_for(resolve_checkpoint(digits_run))
    monkeypatch.setattr(backends, "compile_int8", lambda model: model)  # compile_int8 has its own test; slow here
    chosen = {}
    for kernels in (AVX2, AVX512_VNNI_BF16, ARM):
        monkeypatch.setattr(backends, "cpu_kernels", lambda kernels=kernels: kernels)
        chosen[kernels] = [optimize_for_inference(model, images, allow_int8, cache_dir=cache).name
                           for allow_int8 in (False, True)]
    assert chosen == {AVX2: ["ort-fp32", "ort-int8"], AVX512_VNNI_BF16: ["ort-fp32", "torch-int8"],
                      ARM: ["torch-fp32", "torch-fp32"]}
    assert any(path.name.endswith("-7bit.onnx") for path in cache.glob("*.onnx"))  # x86 without VNNI: 7-bit weights
    monkeypatch.setattr(backends, "ort_available", lambda: False)
    monkeypatch.setattr(backends, "cpu_kernels", lambda: AVX2)
    without = optimize_for_inference(model, images)
    assert without.name == "torch-fp32" and "pip install" in without.describe()


def test_forcing_a_backend_the_cpu_lacks_warns_once(monkeypatch):
    monkeypatch.setattr(backends, "cpu_kernels", lambda: AVX2)
    monkeypatch.setattr(backends, "_warned", set())
    model = create_model("vit_cifar_patch4_32", **TINY).eval()
    images = torch.randn(2, 1, 8, 8)
    with pytest.warns(UserWarning, match="torch-bf16 forced on a CPU without AVX512-BF16, AMX or ARM BF16"):
        bf16 = optimize_for_inference(model, images, backend="torch-bf16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optimize_for_inference(model, images, backend="torch-bf16")
    with torch.no_grad():
        torch.testing.assert_close(bf16(images), model(images), rtol=0, atol=0.05)
    assert bf16(images).dtype == torch.float32 and model.head.weight.dtype == torch.float32


def test_backend_errors_name_the_problem_and_the_fix(monkeypatch):
    model = create_model("vit_cifar_patch4_32", **TINY).eval()
    with pytest.raises(ValueError, match="unknown backend 'onnx'; choose auto or one of torch-fp32"):
        optimize_for_inference(model, torch.randn(2, 1, 8, 8), backend="onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what an environment without it looks like to import
    with pytest.raises(ImportError, match=r"ort-int8 backend needs onnxruntime: pip install 'vitkit\[export\]'"):
        optimize_for_inference(model, torch.randn(2, 1, 8, 8), backend="ort-int8")


def test_onnx_files_go_beside_a_writable_checkpoint_else_to_the_user_cache(tmp_path, monkeypatch, user_cache):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "weights.pth").touch()
    assert cache_dir_for(tmp_path / "ckpt") == tmp_path / "ckpt" / "onnx"
    assert cache_dir_for(tmp_path / "weights.pth") == tmp_path / "onnx"
    assert cache_dir_for("hf-hub:org/name") == cache_dir_for(None) == user_cache
    monkeypatch.setattr(ort.os, "access", lambda path, mode: False)  # a read-only folder (root ignores chmod)
    assert cache_dir_for(tmp_path / "ckpt") == user_cache


def test_predict_and_eval_run_the_chosen_backend_and_say_which(digits_run, tmp_path, capsys):
    dataset = build_dataset("digits", split="test")
    for i in range(3):
        Image.fromarray(dataset.images[i, 0].numpy()).save(tmp_path / f"{i}.png")
    answers = {}
    for backend in ("torch-fp32", "auto", "ort-fp32"):
        assert main(["predict", str(digits_run), str(tmp_path), "--format", "json", "--backend", backend]) == 0
        captured = capsys.readouterr()
        answers[backend] = json.loads(captured.out)
        assert captured.err.count("\n") == 1 and captured.err.startswith("vitkit predict: backend ")
    for backend in ("auto", "ort-fp32"):
        for mine, theirs in zip(answers[backend], answers["torch-fp32"]):
            assert [t["class"] for t in mine["top"]] == [t["class"] for t in theirs["top"]]
            assert np.allclose([t["probability"] for t in mine["top"]], [t["probability"] for t in theirs["top"]],
                               atol=1e-5)
    assert main(["eval", str(digits_run), "--out", str(tmp_path / "eval")]) == 0
    assert "vitkit eval: backend " in capsys.readouterr().err
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert report["backend"] in backends.LOSSLESS and not report["int8"]


@pytest.mark.parametrize("spin_wait, expected", [(True, None), (False, "0")])
def test_ort_threads_sleep_between_runs_when_asked(tmp_path, spin_wait, expected):
    """The server's sessions turn intra-op spinning off (its cores decode and answer HTTP between batches)."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    from vitkit.export.ort import ort_session

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "identity.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    options = ort_session(path, threads=1, spin_wait=spin_wait).get_session_options()
    try:
        entry = options.get_session_config_entry("session.intra_op.allow_spinning")
    except RuntimeError:  # unset: onnxruntime's default, spinning on
        entry = None
    assert entry == expected
