"""The two hot routes answered beside FastAPI's request pipeline, under the app's own middleware.

A request to any route passes through FastAPI's telemetry check, Starlette's error middleware,
FastAPI's exception telemetry and body-size middleware, Starlette's exception middleware,
FastAPI's exit stack and the router's matching of every route in turn: about 30 microseconds
of a floor-level request's 80 (py-spy under load), for layers whose work these two routes do
themselves or do not need. ``GET /v1/recommendations`` and ``POST /v1/events`` (the calls a
storefront makes on every page and every click) are dispatched by path straight into the
same user middleware (metrics and security headers, CORS, beacon bodies, body limit) around
the handler; their errors are answered by the app's own exception handlers, so every answer
is the one the full pipeline would give. Every other request takes the full pipeline.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

Handler = Callable[[Request, Exception], Awaitable[Response]]


class _HotEndpoints:
    """The innermost ASGI app of the hot stack: the matched handler, its errors answered."""

    def __init__(self, handlers: dict[Any, Any]) -> None:
        self._handlers: dict[type[BaseException], Handler] = {
            key: value for key, value in handlers.items() if isinstance(key, type)
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = scope["route"]
        request = Request(scope, receive, send)
        try:
            response = await route.endpoint(request)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise  # the server answers 500 and logs it, as for any route
            response = await handler(request, exc)
        await response(scope, receive, send)

    def _handler(self, exc: Exception) -> Handler | None:
        for cls in type(exc).__mro__:
            if cls in self._handlers:
                return self._handlers[cls]
        return None


class HotRoutesApp(FastAPI):
    """A FastAPI app whose routes given to :meth:`add_hot_routes` skip the framework's
    per-request layers (module doc).

    The routes stay registered with FastAPI too (matched there for HEAD, documented in the
    OpenAPI schema); only exact method and path matches take the short way.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._hot_routes: dict[tuple[str, str], Route] = {}
        self._hot_stack: ASGIApp | None = None

    def add_hot_routes(self, routes: Sequence[Route]) -> None:
        for route in routes:
            self.router.routes.insert(0, route)  # HEAD and other methods: the full pipeline
            for method in route.methods or ():
                if method != "HEAD":
                    self._hot_routes[method, route.path] = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        if scope["type"] == "http":  # lifespan and websocket scopes have no method
            route = self._hot_routes.get((scope["method"], scope["path"]))
        if route is None:
            await super().__call__(scope, receive, send)
            return
        if self._hot_stack is None:
            self._hot_stack = self._build_hot_stack()
        scope["app"] = self
        scope["route"] = route  # the metrics middleware labels the request by its template
        await self._hot_stack(scope, receive, send)

    def _build_hot_stack(self) -> ASGIApp:
        app: ASGIApp = _HotEndpoints(self.exception_handlers)
        for cls, args, kwargs in reversed(self.user_middleware):
            app = cls(app, *args, **kwargs)
        return app
