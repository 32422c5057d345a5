"""Running the app: the socket is bound first (so --port 0 works and the first log lines name the real URL), then
one uvicorn process or N workers sharing it, with prometheus-client's multiprocess metrics; a SIGTERM drains the
queue and exits 0."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import tempfile
from typing import Any, Iterator

from ..config import to_dict
from .config import ServeConfig
from .metrics import MULTIPROCESS_VARIABLE
from .middleware import REQUEST_ID

LOG_FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"
log = logging.getLogger("vitkit.serve")


class _RequestIdFilter(logging.Filter):
    """Stamps each record with the id of the request it was logged under ('-' outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


def configure_logging(level: int = logging.INFO) -> None:
    """vitkit.serve's log lines on stderr, each with its request id; once per process."""
    if any(isinstance(f, _RequestIdFilter) for h in log.handlers for f in h.filters):
        return
    handler = logging.StreamHandler()
    handler.addFilter(_RequestIdFilter())
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False


def serve(config: ServeConfig) -> int:
    """Serves until SIGTERM or Ctrl-C, then answers what is queued and returns 0 (3 when the model cannot load)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from .app import CONFIG_VARIABLE

    configure_logging()
    options: dict[str, Any] = dict(host=config.host, port=config.port, workers=config.workers, access_log=False,
                                   proxy_headers=False, timeout_graceful_shutdown=int(config.timeout_s) + 5)
    socket = uvicorn.Config(app=None, **options).bind_socket()
    _announce(config, socket.getsockname())
    if config.workers == 1:
        import torch

        from .app import create_app

        torch.set_num_threads(config.threads_per_worker())
        server = uvicorn.Server(uvicorn.Config(app=create_app(config), **options))
        with _signals_end_quietly():
            server.run(sockets=[socket])
        return 0 if server.started else 3
    metrics_dir = None
    if not os.environ.get(MULTIPROCESS_VARIABLE):  # workers write their metrics here; /metrics sums them
        metrics_dir = os.environ[MULTIPROCESS_VARIABLE] = tempfile.mkdtemp(prefix="vitkit-serve-metrics-")
    os.environ[CONFIG_VARIABLE] = json.dumps(to_dict(config))
    try:
        Multiprocess(uvicorn.Config(app="vitkit.serve.app:create_app_from_environment", factory=True, **options),
                     sockets=[socket]).run()
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _announce(config: ServeConfig, address: tuple) -> None:
    """The first log lines: what is served, how it runs and batches, and where."""
    host, port = address[:2]
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    backend = ("onnxruntime (ONNX file)" if config.is_onnx
               else config.backend + (", int8 allowed" if config.int8 else ""))
    log.info("serving %s at %s (demo page /, API docs /docs, metrics /metrics)", config.source, url)
    log.info("backend %s; %d worker(s) x %d threads; batches of up to %d images, waiting at most %g ms; queue %d, "
             "timeout %g s; max %g megapixels, %g MB bodies; API key %s", backend, config.workers,
             config.threads_per_worker(), config.max_batch_size, config.max_wait_ms, config.max_queue,
             config.timeout_s, config.max_pixels / 1e6, config.max_body_mb, "required" if config.api_key else "off")


@contextlib.contextmanager
def _signals_end_quietly() -> Iterator[None]:
    """uvicorn re-raises the stopping signal once it has shut down gracefully; a no-op handler underneath turns that
    into a normal return, so a SIGTERM'd server exits 0."""
    previous = {sig: signal.signal(sig, lambda sig, frame: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
