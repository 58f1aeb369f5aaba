"""What the API does for browsers: serve the demo storefront, and read beacons' bodies.

``navigator.sendBeacon`` cannot set headers; given a string it posts ``text/plain``, the one
JSON-carrying content type a browser sends across origins without a CORS preflight (a beacon is
sent with credentials, so a preflight would also need ``Access-Control-Allow-Credentials``,
which this API does not grant). So POST /v1/events takes a ``text/plain`` body as the JSON it
is. This opens nothing new: without API keys the route is open to any client anyway, and with
keys a beacon (which cannot carry ``X-API-Key``) is refused like any request without one.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

DEMO_DIR = Path(__file__).parent / "static" / "demo"
DEMO_PATH = "/demo"
EVENTS_PATH = "/v1/events"


def mount_demo(app: FastAPI) -> None:
    """The storefront at /demo/ (and the JavaScript client at /demo/personalize.js)."""
    app.mount(DEMO_PATH, StaticFiles(directory=DEMO_DIR, html=True), name="demo")


class BeaconBodyMiddleware:
    """Reads a ``text/plain`` POST to /v1/events as ``application/json`` (see the module)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == EVENTS_PATH:
            headers = scope["headers"]
            if any(_text_plain(name, value) for name, value in headers):
                # Changed in place, not copied: the metrics middleware outside reads the matched
                # route from this very dict once the router has written it.
                scope["headers"] = [
                    (name, b"application/json") if _text_plain(name, value) else (name, value)
                    for name, value in headers
                ]
        await self.app(scope, receive, send)


def _text_plain(name: bytes, value: bytes) -> bool:
    return name == b"content-type" and value.split(b";")[0].strip().lower() == b"text/plain"
