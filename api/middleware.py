"""Pure ASGI middleware: request metrics, security headers, and the body size limit.

Pure ASGI rather than ``BaseHTTPMiddleware``: no extra task per request and no buffering of the
response, which matters when the whole request budget is a few milliseconds.
"""

from __future__ import annotations

import json
import time

from prometheus_client import Histogram
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import UNMATCHED_ROUTE, ApiMetrics

_SECURITY_HEADERS = [
    # Browsers must not guess a content type: a JSON answer is never run as script or HTML.
    (b"x-content-type-options", b"nosniff"),
    # Request URLs carry visitor ids; never leak them to another site through the Referer.
    (b"referrer-policy", b"no-referrer"),
    # Answers are per visitor (and carry their profile): no browser or shared cache may keep one.
    (b"cache-control", b"no-store"),
    # An API is never a page to frame: no clickjacking through /docs or a JSON answer.
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
]


class MetricsMiddleware:
    """Times every request, labelled by the matched route's template (bounded cardinality)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics
        # The histogram of each (route, method, status) seen: prometheus-client's ``labels``
        # validates and locks on every call. Bounded as the labels are (routes are templates,
        # methods those the HTTP parser accepts).
        self._timers: dict[tuple[str, str, int], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # if the app raises before responding, the server answers 500
        start = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *_SECURITY_HEADERS]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            # The router writes the matched route into this same scope dict.
            route = scope.get("route")
            key = (getattr(route, "path", None) or UNMATCHED_ROUTE, scope["method"], status)
            timer = self._timers.get(key)
            if timer is None:
                template, method, code = key
                timer = self.metrics.request_seconds.labels(template, method, str(code))
                self._timers[key] = timer
            timer.observe(time.perf_counter() - start)


class _BodyTooLarge(HTTPException):
    """Raised from ``receive``: FastAPI re-raises HTTPExceptions met while reading the body."""


class BodyLimitMiddleware:
    """413 for a body above ``max_bytes``: by Content-Length up front, else while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await self._reject(send)
                    return
                break
        received = 0
        detail = f"request body exceeds {self.max_bytes} bytes"

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Close after answering: else the server goes on reading (and dropping) a
                    # body that may never end.
                    raise _BodyTooLarge(413, detail, headers={"connection": "close"})
            return message

        await self.app(scope, limited_receive, send)

    async def _reject(self, send: Send) -> None:
        body = json.dumps({"detail": f"request body exceeds {self.max_bytes} bytes"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
