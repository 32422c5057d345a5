"""Plain ASGI middleware around every request: a request id shared by the response and the log lines, the API key,
and the body size limit (refused from Content-Length, or as soon as a streamed body passes it)."""
from __future__ import annotations

import hmac
import logging
import re
import time
import uuid
from contextvars import ContextVar
from typing import Any, Awaitable, Callable

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse

from .metrics import ServeMetrics

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="-")
CLIENT_ID = re.compile(r"[!-~]{1,128}")  # printable ASCII without spaces: safe to echo and to log
OPEN_PATHS = ("/healthz", "/readyz")  # load balancers probe without credentials
log = logging.getLogger("vitkit.serve")


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """Every refusal looks the same: {"error": what is wrong and what to do}."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class RequestContext:
    """Gives each request an id (the client's X-Request-ID when it sends a sane one), echoes it on the response,
    logs one line per request under it (unless access_log is off), counts it in the metrics, and turns a crash into
    a 500 that carries it."""

    def __init__(self, app: App, metrics: ServeMetrics, access_log: bool = True) -> None:
        self.app, self.metrics, self.access_log = app, metrics, access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = Headers(scope=scope).get("x-request-id", "")
        request_id = given if CLIENT_ID.fullmatch(given) else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        start, status = time.perf_counter(), 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error in %s %s", scope["method"], scope["path"])
            if not started:
                await error_response(500, f"internal server error; quote request id {request_id} when reporting "
                                          "it")(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", "unmatched")  # templates only: bounded label values
            self.metrics.observe(route, status, seconds)
            if self.access_log:
                log.info("%s %s -> %d in %.1f ms", scope["method"], scope["path"], status, 1000 * seconds)
            REQUEST_ID.reset(token)


class ApiKey:
    """With a key set, every path but the health checks needs `Authorization: Bearer <key>`."""

    def __init__(self, app: App, api_key: str | None) -> None:
        self.app, self.expected = app, f"Bearer {api_key}".encode() if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.expected is None or scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        given = Headers(scope=scope).get("authorization", "").encode()
        if not hmac.compare_digest(given, self.expected):  # constant time: the key cannot be guessed byte by byte
            message = ("missing or wrong API key: send the header 'Authorization: Bearer <key>' with the key the "
                       "server was started with (--api-key or VITKIT_API_KEY)")
            return await error_response(401, message, {"WWW-Authenticate": "Bearer"})(scope, receive, send)
        await self.app(scope, receive, send)


class BodyTooLarge(Exception):
    """Raised from receive() when a streamed body passes the limit, to unwind the app mid-read."""


class BodyLimit:
    """Refuses a body over max_bytes with 413 without reading it all: at once from Content-Length, else as soon as
    the received chunks pass the limit."""

    def __init__(self, app: App, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(scope, receive, send)
        received, started = 0, False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise BodyTooLarge
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.max_bytes / 1024 / 1024
        await error_response(413, f"the request body is over this server's limit of {limit:g} MB (--max-body-mb); "
                                  "send a smaller image")(scope, receive, send)
