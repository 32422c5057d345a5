"""The API in-process (FastAPI's TestClient runs the real app, lifespan included): answers equal `vitkit predict`'s,
batching routes rows, explain overlays, every refusal is JSON naming the problem, and the server keeps serving."""
import base64
import contextlib
import io
import json
import re
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

from serve_helpers import (LABELS, assert_same_predictions, image_bytes, metric_value, png_bomb, require_serve_extra,
                           smooth_image, wait_until)

require_serve_extra()

with warnings.catch_warnings():  # starlette would rather have httpx2; httpx is what the test extra installs
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient  # noqa: E402

from vitkit.analysis.plots import overlay  # noqa: E402
from vitkit.cli import main  # noqa: E402
from vitkit.data.decode import load_rgb  # noqa: E402
from vitkit.inference import eval_pixels, load_model  # noqa: E402
from vitkit.serve import ServeConfig  # noqa: E402
from vitkit.serve.app import create_app  # noqa: E402

FOREVER_MS = 600_000  # a batch waiting for this runs only when full, drained or closed
PNG = image_bytes(smooth_image(11))


def serve_in_process(checkpoint, **settings):
    return TestClient(create_app(ServeConfig(source=str(checkpoint), backend="torch-fp32", **settings)))


@pytest.fixture(scope="module")
def client(checkpoint):
    with serve_in_process(checkpoint) as client:
        yield client


def post_file(client, path, **params):
    return client.post("/v1/classify", params=params, files={"file": (path.name, path.read_bytes())})


@pytest.mark.parametrize("how", ["multipart", "raw"])
def test_classify_answers_as_vitkit_predict(client, photos, predicted, how):
    for path in photos:
        if how == "multipart":
            response = post_file(client, path)
        else:
            response = client.post("/v1/classify", content=path.read_bytes(), headers={"Content-Type": "image/png"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model"] == "tiny" and body["latency_ms"] > 0 and "explain" not in body
        assert_same_predictions(body["predictions"], predicted[path.name])


def test_topk_limits_the_answer_and_cannot_pass_the_class_count(client, photos, predicted):
    two = post_file(client, photos[0], topk=2).json()["predictions"]
    assert_same_predictions(two, {"top": predicted[photos[0].name]["top"][:2]})
    assert len(post_file(client, photos[0], topk=50).json()["predictions"]) == len(LABELS)


def test_several_images_in_one_request_are_answered_in_order(client, photos, predicted):
    order = [photos[3], photos[0], photos[4], photos[0]]
    response = client.post("/v1/classify/batch", files=[("file", (p.name, p.read_bytes())) for p in order])
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["filename"] for r in results] == [p.name for p in order]
    for result, path in zip(results, order):
        assert_same_predictions(result["predictions"], predicted[path.name])


def test_concurrent_requests_share_one_forward_and_each_gets_its_own_row(checkpoint, photos, predicted):
    """The batch waits for ever unless full, so all five requests certainly ran in one batch of five."""
    with serve_in_process(checkpoint, max_batch_size=len(photos), max_wait_ms=FOREVER_MS) as client:
        with ThreadPoolExecutor(len(photos)) as pool:
            responses = list(pool.map(lambda path: post_file(client, path), photos))
        for path, response in zip(photos, responses):
            assert response.status_code == 200, response.text
            assert_same_predictions(response.json()["predictions"], predicted[path.name])
        metrics = client.get("/metrics").text
    assert metric_value(metrics, "vitkit_batch_size_count") == 1
    assert metric_value(metrics, "vitkit_batch_size_sum") == len(photos)


def hand_rollout(model, image: torch.Tensor) -> np.ndarray:
    """Attention rollout written out in numpy: per block 0.5 I + 0.5 mean-over-heads attention, rows renormalised,
    multiplied from the first block on; the class token's row over the patches, on the patch grid."""
    with torch.no_grad():
        maps = [a[0].double().mean(0).numpy() for a in model.get_attention_maps(image)]
    joint = np.eye(maps[0].shape[0])
    for attention in maps:
        mixed = 0.5 * np.eye(len(attention)) + 0.5 * attention
        joint = (mixed / mixed.sum(-1, keepdims=True)) @ joint
    return joint[0, 1:].reshape(model.cfg.grid_size)


def test_explain_rollout_overlays_the_rollout_of_the_image(client, checkpoint, photos):
    path = photos[1]
    response = post_file(client, path, explain="rollout")
    assert response.status_code == 200, response.text
    explain = response.json()["explain"]
    assert explain["method"] == "rollout" and explain["target"] == response.json()["predictions"][0]["label"]
    served = np.asarray(Image.open(io.BytesIO(base64.b64decode(explain["overlay_png"]))))
    model = load_model(checkpoint)
    pixels = eval_pixels(load_rgb(path), model.cfg.img_size, model.cfg.in_chans, model.preprocess)
    image = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255
    mean, std = torch.tensor(model.preprocess.mean)[:, None, None], torch.tensor(model.preprocess.std)[:, None, None]
    heat = hand_rollout(model, (image - mean) / std)
    enlarged = pixels.repeat(7, 0).repeat(7, 1) / 255.0  # 32 px enlarged 7 times: at least 224 px to look at
    expected = np.round(overlay(enlarged, heat) * 255)
    assert served.shape == (224, 224, 3)
    assert np.abs(served - expected).max() <= 1


@pytest.mark.parametrize("method", ["gradcam", "eigencam"])
def test_explain_gradcam_and_eigencam_return_an_overlay_of_the_answered_class(client, photos, method):
    body = post_file(client, photos[0], explain=method).json()
    assert body["explain"]["target"] == body["predictions"][0]["label"]
    picture = Image.open(io.BytesIO(base64.b64decode(body["explain"]["overlay_png"])))
    assert picture.format == "PNG" and picture.size == (224, 224)


def test_the_model_endpoint_describes_the_checkpoint(client, checkpoint):
    import json

    saved = json.loads((checkpoint / "config.json").read_text())
    info = client.get("/v1/model").json()
    assert info["classes"] == saved["class_names"] == LABELS
    assert info["image_size"] == saved["config"]["img_size"] and info["in_chans"] == 3
    assert info["preprocessing"]["mean"] == saved["preprocess"]["mean"]
    assert info["backend"] == "torch-fp32" and info["explain"] is True
    assert info["parameters"] == sum(t.numel() for t in load_model(checkpoint).state_dict().values())


def test_the_model_is_warmed_up_on_a_full_batch_and_one_image_before_the_first_request(checkpoint, monkeypatch):
    from vitkit.serve.model import ServedModel

    calls = []
    original = ServedModel.classify
    monkeypatch.setattr(ServedModel, "classify",
                        lambda self, arrays: calls.append(len(arrays)) or original(self, arrays))
    with serve_in_process(checkpoint, max_batch_size=8):
        assert calls == [8, 1]  # the lifespan has run; no request was sent


def test_the_demo_page_and_the_api_docs_are_served_and_the_page_needs_no_network(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "://" not in page.text  # no CDN, no font or script from elsewhere: it works offline
    assert not re.findall(r"""(?:src|href)\s*=\s*["'](?!data:)""", page.text)  # and no second file of its own
    assert 'id="file"' in page.text and "/v1/classify" in page.text
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()["paths"]
    assert set(schema["/v1/classify"]["post"]["requestBody"]["content"]) == {"multipart/form-data", "image/*"}
    assert {"/v1/classify/batch", "/v1/model", "/healthz", "/readyz", "/metrics"} <= set(schema)


JPEG = image_bytes(smooth_image(12, 64, 64), "JPEG")
BAD_REQUESTS = {
    "not-an-image": (dict(content=b"plain text", headers={"Content-Type": "image/png"}), 400, "not an image"),
    "truncated-jpeg": (dict(content=JPEG[:len(JPEG) * 2 // 3], headers={"Content-Type": "image/jpeg"}), 400,
                       "truncated"),
    "zero-byte-body": (dict(content=b"", headers={"Content-Type": "image/png"}), 400, "empty"),
    "zero-byte-file": (dict(files={"file": ("a.png", b"")}), 400, "empty"),
    "wrong-content-type": (dict(content=PNG, headers={"Content-Type": "text/plain"}), 415, "not an image upload"),
    "form-urlencoded": (dict(data={"file": "abc"}), 415, "not an image upload"),
    "no-file-field": (dict(files={"picture": ("a.png", PNG)}), 400, "no 'file' field"),
    "file-field-as-text": (dict(data={"file": "abc"}, files={"other": ("a.png", PNG)}), 400, "must be a file"),
    "two-images-to-single": (dict(files=[("file", ("a.png", PNG)), ("file", ("b.png", PNG))]), 400,
                             "/v1/classify/batch"),
    "unknown-explain": (dict(params={"explain": "saliency"}, files={"file": ("a.png", PNG)}), 422, "explain"),
    "topk-zero": (dict(params={"topk": 0}, files={"file": ("a.png", PNG)}), 422, "topk"),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_input_is_a_json_error_naming_it_and_the_server_keeps_serving(client, photos, name):
    request, status, message = BAD_REQUESTS[name]
    response = client.post("/v1/classify", **request)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert message in response.json()["error"]
    assert post_file(client, photos[0]).status_code == 200


def test_a_decompression_bomb_is_refused_before_decoding_and_the_server_keeps_serving(client, photos,
                                                                                        decoded_pixels):
    response = client.post("/v1/classify", files={"file": ("bomb.png", png_bomb(8000, 8000))})
    assert response.status_code == 413
    assert "64.0 megapixels" in response.json()["error"] and "--max-pixels" in response.json()["error"]
    assert decoded_pixels == []
    assert post_file(client, photos[0]).status_code == 200


def test_unknown_paths_and_methods_answer_json(client):
    assert client.get("/v2/nothing").json()["error"].startswith("no such endpoint /v2/nothing")
    response = client.get("/v1/classify")
    assert response.status_code == 405 and "/docs" in response.json()["error"]


def test_every_response_carries_a_request_id_echoed_when_sent(client, photos):
    assert client.get("/healthz", headers={"X-Request-ID": "client-42"}).headers["X-Request-ID"] == "client-42"
    generated = post_file(client, photos[0]).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    error = client.post("/v1/classify", content=b"", headers={"Content-Type": "image/png", "X-Request-ID": "bad 1"})
    assert re.fullmatch(r"[0-9a-f]{32}", error.headers["X-Request-ID"])  # not echoed: spaces would garble logs


def test_metrics_count_requests_batches_and_latency(client, photos):
    before = client.get("/metrics").text
    for path in photos[:3]:
        assert post_file(client, path).status_code == 200
    assert client.post("/v1/classify", content=b"x", headers={"Content-Type": "image/png"}).status_code == 400
    response = client.get("/metrics")
    after = response.text
    assert response.headers["content-type"].startswith("text/plain")

    def grew(name, **labels):
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)
    assert grew("vitkit_requests_total", endpoint="/v1/classify", status="200") == 3
    assert grew("vitkit_requests_total", endpoint="/v1/classify", status="400") == 1
    assert grew("vitkit_request_latency_seconds_count", endpoint="/v1/classify") == 4
    assert grew("vitkit_batch_size_sum") == 3  # one after another: three batches of one
    assert metric_value(after, "vitkit_queue_depth") == 0
    assert metric_value(after, "vitkit_worker_ready") == 1


def test_a_full_queue_answers_503_a_late_answer_504_and_the_server_serves_on(checkpoint, photos, predicted):
    """A batch of two waits for ever for its second image: one queued request holds it, so a two-image request
    does not fit the queue of two (503), and the first times out (504); then a two-image request fills a batch."""
    with serve_in_process(checkpoint, max_batch_size=2, max_queue=2, max_wait_ms=FOREVER_MS, timeout_s=1.0) as client:
        serving = client.app.state.serving
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(post_file, client, photos[0])
            wait_until(lambda: serving.batcher.depth == 1, timeout=10, what="the first request to queue")
            two = [("file", (p.name, p.read_bytes())) for p in photos[:2]]
            full = client.post("/v1/classify/batch", files=two)
            assert full.status_code == 503 and full.headers["Retry-After"] == "1"
            assert "queue is full" in full.json()["error"]
            late = first.result()
        assert late.status_code == 504 and "--timeout" in late.json()["error"]
        served = client.post("/v1/classify/batch", files=two)
        assert served.status_code == 200
        for result, path in zip(served.json()["results"], photos[:2]):
            assert_same_predictions(result["predictions"], predicted[path.name])
        assert client.get("/readyz").status_code == 200
        client.portal.call(serving.drain)  # what SIGTERM does first
        draining = client.get("/readyz")
        assert draining.status_code == 503 and draining.headers["Retry-After"] == "1"
        assert client.get("/healthz").status_code == 200


def test_limits_and_the_api_key(checkpoint, photos):
    small = image_bytes(smooth_image(13, 20, 20))  # 400 pixels
    with serve_in_process(checkpoint, max_pixels=1000, max_body_mb=0.01, api_key="s3cret") as client:
        for path in ("/healthz", "/readyz"):
            assert client.get(path).status_code == 200  # probes need no key
        for path in ("/", "/metrics", "/v1/model", "/docs"):
            refused = client.get(path)
            assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
        wrong = client.post("/v1/classify", files={"file": ("a.png", small)}, headers={"Authorization": "Bearer no"})
        assert wrong.status_code == 401 and "API key" in wrong.json()["error"]
        client.headers["Authorization"] = "Bearer s3cret"
        assert client.post("/v1/classify", files={"file": ("a.png", small)}).status_code == 200
        big = client.post("/v1/classify", files={"file": ("a.png", image_bytes(smooth_image(14, 40, 40)))})
        assert big.status_code == 413 and "--max-pixels" in big.json()["error"]
        declared = client.post("/v1/classify", content=b"\0" * 20_000, headers={"Content-Type": "image/png"})
        assert declared.status_code == 413 and "--max-body-mb" in declared.json()["error"]
        streamed = client.post("/v1/classify", content=(b"\0" * 4096 for _ in range(5)),
                               headers={"Content-Type": "image/png"})  # chunked: no Content-Length to go by
        assert streamed.status_code == 413 and "--max-body-mb" in streamed.json()["error"]
        assert client.post("/v1/classify", files={"file": ("a.png", small)}).status_code == 200


def test_an_onnx_file_is_served_by_onnxruntime_and_explain_says_why_not(checkpoint, photos, predicted, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    exported = tmp_path / "tiny.onnx"
    assert main(["export", str(checkpoint), str(exported), "--no-check"]) == 0
    with TestClient(create_app(ServeConfig(source=str(exported)))) as client:
        info = client.get("/v1/model").json()
        assert info["backend"] == "ort-file" and info["classes"] == LABELS and info["explain"] is False
        assert info["parameters"] == sum(t.numel() for t in load_model(checkpoint).state_dict().values())
        for path in photos:
            served = post_file(client, path).json()["predictions"]
            assert [p["label"] for p in served] == [p["class"] for p in predicted[path.name]["top"]]
            np.testing.assert_allclose([p["probability"] for p in served],
                                       [p["probability"] for p in predicted[path.name]["top"]], atol=1e-5)
        refused = post_file(client, photos[0], explain="rollout")
        assert refused.status_code == 400 and "ONNX file" in refused.json()["error"]


def test_tome_serves_what_predict_tome_answers(checkpoint, photos, predicted):
    """--tome reaches the serving model (answers equal `vitkit predict --tome`, which differ from the plain model's)
    while explain keeps the unmerged model."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["predict", str(checkpoint), str(photos[0]), "--format", "json", "--backend", "torch-fp32",
                     "--tome", "3"]) == 0
    merged = json.loads(out.getvalue())[0]
    with serve_in_process(checkpoint, token_merging=3) as client:
        body = post_file(client, photos[0], explain="rollout").json()
        assert_same_predictions(body["predictions"], merged)
        assert "explain" in body
    plain = predicted[photos[0].name]["top"][0]["probability"]
    assert abs(merged["top"][0]["probability"] - plain) > 1e-5  # beyond the 1e-5 relative match above: tome changed it
