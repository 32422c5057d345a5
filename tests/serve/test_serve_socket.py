"""`vitkit serve` as a user runs it: a real process on a free loopback port, driven over real sockets; body limits
proven on the wire, SIGTERM draining without timing luck, and two workers whose metrics add up."""
import json
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest

from serve_helpers import assert_same_predictions, metric_samples, metric_value, require_serve_extra, wait_until

require_serve_extra()

import httpx  # noqa: E402

from vitkit.cli import main  # noqa: E402
from vitkit.serve.process import ServerProcess  # noqa: E402

FOREVER_MS = "600000"


def post_file(url, path, **headers):
    return httpx.post(f"{url}/v1/classify", files={"file": (path.name, path.read_bytes())}, headers=headers,
                      timeout=60)


def test_classify_over_a_socket_with_the_request_id_in_the_log(live_server, photos, predicted):
    assert live_server.url.startswith("http://127.0.0.1:")  # loopback unless --host says otherwise
    response = post_file(live_server.url, photos[2], **{"X-Request-ID": "socket-test-7"})
    assert response.status_code == 200 and response.headers["X-Request-ID"] == "socket-test-7"
    assert_same_predictions(response.json()["predictions"], predicted[photos[2].name])
    wait_until(lambda: "[socket-test-7]" in live_server.log(), timeout=10, what="the request's log line")
    line = next(line for line in live_server.lines if "[socket-test-7]" in line)
    assert "POST /v1/classify -> 200" in line
    first_lines = live_server.log().split("vitkit.serve: worker")[0]  # what is logged before the model is ready
    for fact in ("torch-fp32", "threads", "batches of up to 32 images", "waiting at most 5 ms", live_server.url):
        assert fact in first_lines


def raw_exchange(url: str, head: bytes, chunks=(), timeout: float = 20.0) -> tuple[int, dict]:
    """Sends a request head and then body chunks over a plain socket, without finishing the body, and reads the
    answer: an answer at all proves the server did not wait for the rest."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as conn:
        conn.sendall(head)
        for chunk in chunks:
            conn.sendall(chunk)
        received = b""
        while b"\r\n\r\n" not in received or len(received.split(b"\r\n\r\n", 1)[1]) < _length(received):
            data = conn.recv(65536)
            if not data:
                break
            received += data
    status_line, rest = received.split(b"\r\n", 1)
    return int(status_line.split()[1]), json.loads(rest.split(b"\r\n\r\n", 1)[1])


def _length(received: bytes) -> int:
    head = received.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    return next((int(line.split(":")[1]) for line in head.split("\r\n") if line.startswith("content-length:")), 1)


def test_a_declared_oversize_body_is_refused_before_it_is_sent(live_server, photos):
    head = (b"POST /v1/classify HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\n"
            b"Content-Length: 52428800\r\n\r\n")  # 50 MB announced, then only 1 KB sent
    status, body = raw_exchange(live_server.url, head, [b"\0" * 1024])
    assert status == 413 and "--max-body-mb" in body["error"]
    assert post_file(live_server.url, photos[0]).status_code == 200


def test_a_streamed_oversize_body_is_refused_once_past_the_limit(live_server, photos):
    head = (b"POST /v1/classify HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"10000\r\n" + b"\0" * 0x10000 + b"\r\n"  # 64 KB chunks: 1.1 MB sent against a 1 MB limit, never ended
    status, body = raw_exchange(live_server.url, head, [chunk] * 18)
    assert status == 413 and "--max-body-mb" in body["error"]
    assert post_file(live_server.url, photos[0]).status_code == 200


def test_sigterm_answers_every_queued_request_then_exits_0(checkpoint, photos, predicted):
    """The batch waits for ever for more images, so the four requests are certainly queued when the signal comes;
    each must still get its answer, promptly, and the process must exit 0."""
    with ServerProcess([str(checkpoint), "--backend", "torch-fp32", "--threads", "1", "--max-wait-ms", FOREVER_MS]
                       ) as server:
        with ThreadPoolExecutor(4) as pool:
            answers = [pool.submit(post_file, server.url, path) for path in photos[:4]]
            wait_until(lambda: metric_value(httpx.get(f"{server.url}/metrics").text, "vitkit_queue_depth") == 4,
                       timeout=30, what="four queued requests")
            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            responses = [answer.result() for answer in answers]
        assert [r.status_code for r in responses] == [200] * 4
        for response, path in zip(responses, photos):
            assert_same_predictions(response.json()["predictions"], predicted[path.name])
        assert server.process.wait(30) == 0, server.log()
        assert time.monotonic() - signalled < 30  # drained at once, not after the 600 s wait
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{server.url}/healthz", timeout=5)


def test_two_workers_share_the_port_and_metrics_add_up_over_both(checkpoint, photos):
    with ServerProcess([str(checkpoint), "--backend", "torch-fp32", "--workers", "2", "--threads", "1"]) as server:
        def ready_workers() -> set[str]:
            text = httpx.get(f"{server.url}/metrics", timeout=10).text
            return {s.labels["pid"] for s in metric_samples(text) if s.name == "vitkit_worker_ready" and s.value == 1}
        workers = wait_until(lambda: len(ready_workers()) == 2 and ready_workers(), what="two ready workers")
        for path in photos * 2:
            assert post_file(server.url, path).status_code == 200  # a new connection each: either worker answers
        text = httpx.get(f"{server.url}/metrics").text
        assert metric_value(text, "vitkit_requests_total", endpoint="/v1/classify", status="200") == 2 * len(photos)
        assert "2 worker(s) x 1 threads" in server.log()
        assert all(f"worker {pid} ready" in server.log() for pid in workers)
        assert server.stop() == 0


def test_the_command_refuses_a_missing_source_and_bad_settings(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "nothing")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["serve", str(tmp_path), "--max-batch-size", "0"]) == 2
    assert "max_batch_size=0: must be positive" in capsys.readouterr().err


def test_the_api_key_comes_from_the_flag_or_the_environment(checkpoint, monkeypatch):
    import vitkit.serve.server

    started = []
    monkeypatch.setattr(vitkit.serve.server, "serve", lambda config: started.append(config) or 0)
    monkeypatch.setenv("VITKIT_API_KEY", "from-env")
    assert main(["serve", str(checkpoint)]) == 0
    assert main(["serve", str(checkpoint), "--api-key", "from-flag"]) == 0
    assert [config.api_key for config in started] == ["from-env", "from-flag"]
    assert started[0].host == "127.0.0.1" and started[0].port == 8000
