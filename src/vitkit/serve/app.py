"""The FastAPI app of `vitkit serve`: classify endpoints fed by the dynamic batcher, model facts, health, metrics,
and the demo page, every refusal a JSON {"error"} that says what to do."""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, AsyncIterator, Callable, Literal

import numpy as np
import torch
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..config import from_dict
from .batcher import DynamicBatcher, QueueFull, ShuttingDown
from .config import ServeConfig
from .explain import EXPLAIN_METHODS
from .images import UploadRejected, decode_upload
from .metrics import ServeMetrics
from .middleware import ApiKey, BodyLimit, RequestContext, error_response
from .model import ServedModel

CONFIG_VARIABLE = "VITKIT_SERVE_CONFIG"  # how a --workers process receives the server's config (JSON)
RETRY_AFTER = {"Retry-After": "1"}
UPLOAD_HELP = ("send the image as the multipart form field 'file' (curl -F file=@cat.jpg URL) or as the raw bytes "
               "with an image/* content type (curl --data-binary @cat.jpg -H 'Content-Type: image/jpeg' URL)")
IMAGE_BODY = {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
    "image/*": {"schema": {"type": "string", "format": "binary"}}}}
log = logging.getLogger("vitkit.serve")
Explain = Literal[EXPLAIN_METHODS]  # a tuple subscript spreads: Literal["rollout", "gradcam", "eigencam"]


class Prediction(BaseModel):
    label: str
    index: int
    probability: float


class Explanation(BaseModel):
    method: str
    target: str
    overlay_png: str  # base64 of a PNG: the map over the model's input pixels


class Classification(BaseModel):
    predictions: list[Prediction]
    explain: Explanation | None = None


class ClassifyResponse(Classification):
    model: str
    latency_ms: float


class BatchItem(Classification):
    filename: str


class BatchResponse(BaseModel):
    model: str
    results: list[BatchItem]
    latency_ms: float


class Serving:
    """What one app holds while it runs: the config, metrics, the model and its batcher, and the single thread
    that runs every forward and every explanation (one at a time: they share the cores and the model's hooks)."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.metrics = ServeMetrics(config.max_batch_size)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="vitkit-forward")
        self.model: ServedModel | None = None
        self.batcher: DynamicBatcher | None = None
        self.draining = False
        self._batches: asyncio.Task | None = None

    async def start(self) -> None:
        """Loads the model and warms it up (compiling backends compile here); the port opens after this."""
        loop, config = asyncio.get_running_loop(), self.config
        self.model = await loop.run_in_executor(self.executor, ServedModel.load, config)
        seconds = await loop.run_in_executor(self.executor, self.model.warm_up, config.max_batch_size)
        self.batcher = DynamicBatcher(self.model.classify, self.executor, config.max_batch_size, config.max_wait_ms,
                                      config.max_queue, self.metrics.batch_size.observe, self.metrics.queue_depth.set)
        self._batches = asyncio.create_task(self.batcher.run())
        self.metrics.ready.set(1)
        log.info("worker %d ready: %s, %d classes, backend %s; %d threads; warmed up in %.1f s", os.getpid(),
                 self.model.name, len(self.model.labels), self.model.backend.describe(), torch.get_num_threads(),
                 seconds)

    def drain(self) -> None:
        """SIGTERM: not ready any more, and what is queued runs now."""
        self.draining = True
        if self.batcher is not None:
            self.batcher.drain()

    async def stop(self) -> None:
        """Answers everything queued, then lets the batcher and its thread go."""
        if self.batcher is not None and self._batches is not None:
            self.batcher.close()
            await self._batches
        self.executor.shutdown()
        self.metrics.close()

    async def classify(self, uploads: list[tuple[str, bytes]], topk: int, explain: str | None) -> list[dict[str, Any]]:
        """Every upload decoded (off the event loop), classified in the batches it joins, explained if asked."""
        model = self.served()
        if explain and (reason := model.why_no_explain()):
            raise HTTPException(400, f"explain={explain} is not available: {reason}")
        pixels = await asyncio.gather(*(asyncio.to_thread(self._prepare, data) for _, data in uploads))
        assert self.batcher is not None
        rows = await self.batcher.submit(pixels, self.config.timeout_s)
        results = []
        for (filename, _), array, probs in zip(uploads, pixels, rows):
            values, indices = torch.from_numpy(probs).topk(min(topk, len(model.labels)))  # as predict ranks
            result: dict[str, Any] = {"filename": filename, "predictions": [
                {"label": model.labels[i], "index": i, "probability": v}
                for v, i in zip(values.tolist(), indices.tolist())]}
            if explain:
                png = await asyncio.get_running_loop().run_in_executor(self.executor, model.explain, array, explain,
                                                                       indices[0].item())
                result["explain"] = {"method": explain, "target": model.labels[indices[0].item()],
                                     "overlay_png": base64.b64encode(png).decode()}
            results.append(result)
        return results

    def _prepare(self, data: bytes) -> np.ndarray:
        """Decoded (after the header check), resized and cropped: one trip to a decoding thread per image."""
        return self.served().pixels(decode_upload(data, self.config.max_pixels))

    def served(self) -> ServedModel:
        """The loaded model (the lifespan loads it before the port opens, so requests always find one)."""
        if self.model is None:
            raise ShuttingDown("the model is not loaded")
        return self.model


def create_app(config: ServeConfig) -> FastAPI:
    """The app for one worker process: the model loads and warms up in its lifespan, before the port opens."""
    serving = Serving(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await serving.start()
        undo = drain_on_signals(serving.drain)
        try:
            yield
        finally:
            undo()
            await serving.stop()

    app = FastAPI(title="vitkit serve", version="1", lifespan=lifespan,
                  description="Image classification with a vitkit model, dynamically batched. Every error is "
                              "JSON {\"error\": ...}; every response carries X-Request-ID.")
    app.state.serving = serving
    _add_routes(app, serving)
    _add_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    app.add_middleware(ApiKey, api_key=config.api_key)
    app.add_middleware(RequestContext, metrics=serving.metrics, access_log=config.access_log)  # outermost
    return app


def create_app_from_environment() -> FastAPI:
    """uvicorn's factory for --workers: each process rebuilds the app from the JSON config the parent left in
    VITKIT_SERVE_CONFIG."""
    from .server import configure_logging

    config = from_dict(ServeConfig, json.loads(os.environ[CONFIG_VARIABLE]))
    configure_logging()
    torch.set_num_threads(config.threads_per_worker())
    return create_app(config)


def drain_on_signals(drain: Callable[[], None]) -> Callable[[], None]:
    """Chains drain() in front of the SIGTERM / SIGINT handlers (uvicorn's: stop accepting, finish requests) so
    queued requests run at once instead of waiting out max_wait_ms; returns the undo. Only in the main thread,
    where signal handlers live (not under TestClient, whose app runs in a thread)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    previous = {sig: signal.SIG_DFL if handler is None else handler for sig, handler in previous.items()}  # None: C's

    def handler(sig: int, frame: Any) -> None:
        loop.call_soon_threadsafe(drain)
        chained = previous[sig]
        if callable(chained):
            chained(sig, frame)
        else:  # the default action (terminate): restore and re-raise once drained
            signal.signal(sig, chained)
            loop.call_soon_threadsafe(signal.raise_signal, sig)

    for sig in previous:
        signal.signal(sig, handler)

    def undo() -> None:
        for sig, original in previous.items():
            signal.signal(sig, original)
    return undo


def _add_routes(app: FastAPI, serving: Serving) -> None:
    config = serving.config

    @app.get("/", include_in_schema=False)
    async def demo_page() -> HTMLResponse:
        return HTMLResponse((resources.files(__package__) / "static" / "index.html").read_text(encoding="utf-8"))

    @app.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: the model is loaded and warm, and the server is not shutting down")
    async def readyz() -> Response:
        if serving.draining or serving.batcher is None:
            return error_response(503, "not ready: the server is shutting down", RETRY_AFTER)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", summary="Prometheus metrics, text format")
    async def metrics() -> Response:
        body, content_type = serving.metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get("/v1/model", summary="The model: name, classes, image size, preprocessing, backend, parameters")
    async def model_info() -> dict[str, Any]:
        return serving.served().describe(config)

    @app.post("/v1/classify", response_model=ClassifyResponse, response_model_exclude_none=True,
              openapi_extra={"requestBody": IMAGE_BODY}, summary="Top-k classes of one image")
    async def classify(request: Request, topk: int = Query(5, ge=1, description="how many classes to return"),
                       explain: Explain | None = Query(None, description="also return this map as a PNG overlay")
                       ) -> dict[str, Any]:
        start = time.perf_counter()
        uploads = await read_uploads(request, 1, "/v1/classify takes one image; send several as repeated 'file' "
                                                 "fields to /v1/classify/batch")
        result = (await serving.classify(uploads, topk, explain))[0]
        del result["filename"]
        return {"model": serving.served().name, **result, "latency_ms": 1000 * (time.perf_counter() - start)}

    @app.post("/v1/classify/batch", response_model=BatchResponse, response_model_exclude_none=True,
              openapi_extra={"requestBody": IMAGE_BODY}, summary="Top-k classes of several images, in order")
    async def classify_batch(request: Request, topk: int = Query(5, ge=1), explain: Explain | None = Query(None)
                             ) -> dict[str, Any]:
        start = time.perf_counter()
        uploads = await read_uploads(request, config.max_queue, f"send at most {config.max_queue} images per request "
                                                                "(--max-queue)")
        results = await serving.classify(uploads, topk, explain)
        return {"model": serving.served().name, "results": results,
                "latency_ms": 1000 * (time.perf_counter() - start)}


async def read_uploads(request: Request, max_files: int, too_many: str) -> list[tuple[str, bytes]]:
    """(name, bytes) of each image in the body: the multipart 'file' fields, or a raw image/* body."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        try:
            form = await request.form(max_files=max_files, max_fields=16)
        except StarletteHTTPException as error:  # python-multipart's refusals: too many files or fields, bad syntax
            raise UploadRejected(400, f"{error.detail}" + (f"; {too_many}" if "Too many files" in error.detail
                                                            else "")) from None
        files = form.getlist("file")
        if not files:
            raise UploadRejected(400, f"the form has no 'file' field ({', '.join(form.keys()) or 'no fields'}); "
                                      + UPLOAD_HELP)
        if not all(isinstance(item, UploadFile) for item in files):
            raise UploadRejected(400, "the form field 'file' must be a file upload, not text; " + UPLOAD_HELP)
        return [(item.filename or f"file {i}", await item.read()) for i, item in enumerate(files)]
    if media.startswith("image/"):
        return [("body", await request.body())]
    raise UploadRejected(415, f"content type {media or '(none)'} is not an image upload; " + UPLOAD_HELP)


def _add_error_handlers(app: FastAPI) -> None:
    """Every refusal as {"error": ...}: the server's own, FastAPI's validation errors, unknown paths."""

    @app.exception_handler(UploadRejected)
    async def rejected(request: Request, error: UploadRejected) -> Response:
        log.info("refused upload: %s", error)
        return error_response(error.status, str(error))

    @app.exception_handler(QueueFull)
    async def queue_full(request: Request, error: QueueFull) -> Response:
        log.warning("503: %s", error)
        return error_response(503, f"server busy: {error}; retry after the Retry-After seconds", RETRY_AFTER)

    @app.exception_handler(ShuttingDown)
    async def shutting_down(request: Request, error: ShuttingDown) -> Response:
        return error_response(503, f"not serving: {error}; retry against another replica", RETRY_AFTER)

    @app.exception_handler(TimeoutError)
    async def timed_out(request: Request, error: TimeoutError) -> Response:
        log.warning("504: %s", error)
        return error_response(504, f"timed out waiting for the model: {error} (--timeout); the server is overloaded, "
                                   "retry later")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        message = str(error.detail)
        if error.status_code == 404:
            message = f"no such endpoint {request.url.path}; the API is listed at /docs"
        elif error.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; the API is listed at /docs"
        return error_response(error.status_code, message, error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> Response:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        return error_response(422, f"invalid request: {problems}")
