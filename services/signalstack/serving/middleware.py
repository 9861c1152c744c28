"""ASGI middleware of the inference API: the request body limit and the request metrics."""

from __future__ import annotations

import time
from typing import Final

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from signalstack.serving.metrics import ServingMetrics
from signalstack.serving.repository import MODEL_NAMES

PREDICT_PREFIX: Final = "/predict/"


async def _send_error(send: Send, status: int, message: str) -> None:
    body = orjson.dumps({"error": message})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):  # noqa: N818 - internal signal, never leaves the middleware
    pass


class BodyLimitMiddleware:
    """Requests whose body exceeds ``max_bytes`` get 413: at once when Content-Length says
    so, otherwise as soon as the bytes read pass the limit (a chunked upload)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self) -> str:
        return f"request body larger than {self.max_bytes} bytes (SERVING_MAX_BODY_BYTES)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    await _send_error(send, 400, f"Content-Length {value!r} is not a number")
                    return
                if length > self.max_bytes:
                    await _send_error(send, 413, self._message())
                    return
        received = 0
        too_large = False
        replied = False

        async def limited() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal replied
            if not too_large:
                await send(message)
            elif not replied:  # whatever the app made of the aborted read: 413 instead
                replied = True
                await _send_error(send, 413, self._message())

        try:
            await self.app(scope, limited, guarded_send)
        except _BodyTooLarge:
            if not replied:
                await _send_error(send, 413, self._message())


class MetricsMiddleware:
    """Latency per route template and model, responses by status, requests in flight."""

    def __init__(self, app: ASGIApp, metrics: ServingMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.in_flight.dec()
            route = scope.get("route")
            path = str(getattr(route, "path", "")) or "unmatched"
            model = str(scope.get("path_params", {}).get("model_name", ""))
            if path.startswith(PREDICT_PREFIX):
                model = path.removeprefix(PREDICT_PREFIX)
            if model not in MODEL_NAMES:
                model = ""  # never a client-chosen label value
            self.metrics.request_seconds.labels(path, model).observe(time.perf_counter() - start)
            self.metrics.responses.labels(path, model, str(status)).inc()


__all__ = ["BodyLimitMiddleware", "MetricsMiddleware"]
