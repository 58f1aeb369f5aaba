"""The FastAPI application: ``create_app`` wires settings, model, store, routes and middleware.

No app exists at import time. Tests call :func:`create_app` (as often as they like: metrics live
in a per-app registry); uvicorn calls :func:`app_factory` (``uvicorn --factory
api.main:app_factory``), which reads ``PERSONALIZE_*`` variables, so every worker process builds
the same app from the same environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from http import HTTPStatus

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from api.browser import BeaconBodyMiddleware, mount_demo
from api.deps import API_KEY_HEADER, require_api_key
from api.hot_routes import HotRoutesApp
from api.metrics import ApiMetrics
from api.middleware import BodyLimitMiddleware, MetricsMiddleware
from api.openapi import document_errors
from api.routes import admin, catalog, events, health, items, recommendations, segments, visitors
from api.routes.common import RETRY_AFTER_SECONDS
from api.settings import ApiSettings
from api.state import ModelHolder, ReloadResult
from engine.profiles import ProfileStore, StoreLimits, StoreUnavailableError

log = logging.getLogger(__name__)

_TAGS = [
    {"name": "recommendations", "description": "Personalized pages of items for a visitor."},
    {"name": "items", "description": "Item-to-item lists, trending, catalog availability."},
    {"name": "events", "description": "What visitors do: views, clicks, carts, purchases."},
    {"name": "visitors", "description": "A visitor's profile, consent, erasure and recent items."},
    {"name": "segments", "description": "Customer value segments (RFM) and their members."},
    {"name": "admin", "description": "Model reload (API key required)."},
    {"name": "health", "description": "Liveness, readiness and Prometheus metrics."},
]


def build_store(settings: ApiSettings) -> ProfileStore:
    """Redis when ``redis_url`` is set (one server, a cluster or through Sentinel), else the
    embedded in-memory store."""
    limits = StoreLimits(recent_events=settings.recent_events)
    if settings.redis_url is None:
        from engine.profiles.memory import MemoryProfileStore

        return MemoryProfileStore(limits)
    from engine.profiles.keys import Keys
    from engine.profiles.redis import RedisProfileStore

    keys = Keys(settings.key_prefix, settings.shards)
    if settings.redis_sentinels:
        return RedisProfileStore.from_sentinel(
            settings.sentinel_addresses, settings.redis_url, keys, limits
        )
    return RedisProfileStore.from_url(
        settings.redis_url, keys, limits, cluster=settings.redis_cluster
    )


async def warn_if_events_can_be_lost(store: ProfileStore) -> None:
    """Say at start when Redis would lose acknowledged events if it restarted.

    A 202 means the event is in Redis; whether it outlives a Redis crash is Redis's persistence
    setting, which the engine cannot choose but can report (README, "Guarantees").
    """
    from engine.profiles.redis import RedisProfileStore

    if not isinstance(store, RedisProfileStore):
        return
    if (await store.persistence()).get("appendonly") == "no":
        log.warning(
            "Redis runs without its append-only file (appendonly no): events acknowledged "
            "since its last snapshot are lost if it restarts; set appendonly yes with "
            "appendfsync everysec (or always: nothing acknowledged is lost)"
        )


def create_app(
    settings: ApiSettings | None = None, *, store: ProfileStore | None = None
) -> FastAPI:
    """Build the app; the model loads and the store opens when its lifespan starts.

    Args:
        settings: defaults to reading ``PERSONALIZE_*`` environment variables.
        store: use this store instead of building one from the settings; the caller owns it
            (it is not closed on shutdown).
    """
    settings = settings or ApiSettings()
    metrics = ApiMetrics()

    def record_reload(result: ReloadResult) -> None:
        metrics.model_reloads.labels(result.outcome).inc()
        metrics.set_model_version(result.version)

    holder = ModelHolder(
        settings.models_dir,
        on_change=record_reload,
        candidates=settings.candidate_index,
        probe_share=settings.candidate_probe_share,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        first = await holder.reload()
        if first.outcome == "failed":
            # Start anyway, unready: the watcher (or an admin reload) picks up the first good
            # version, and /readyz keeps traffic away until then.
            log.error("no model to serve yet: %s", first.error)
        own_store = store is None
        app.state.store = store if store is not None else build_store(settings)
        await warn_if_events_can_be_lost(app.state.store)
        watcher = (
            asyncio.create_task(holder.watch(settings.watch_seconds), name="model-watcher")
            if settings.watch_seconds > 0
            else None
        )
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            if own_store:
                await app.state.store.close()

    app = HotRoutesApp(
        title="personalize",
        summary="Real-time personalization: recommendations from a trained model and the "
        "visitor's live session.",
        version="1",
        openapi_tags=_TAGS,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.holder = holder
    app.state.store = store  # replaced by the built store when the lifespan starts

    # The key check is attached here, not on the routers, so that open routes (reads, or every
    # route in development without keys) carry no dependency: each costs tens of microseconds.
    keyed = [Depends(require_api_key)] if settings.api_keys else []
    reads = keyed if settings.reads_need_key else []
    app.add_hot_routes([recommendations.direct_route(), events.direct_route()])
    app.include_router(recommendations.router, dependencies=reads)
    app.include_router(events.router, dependencies=keyed)
    for router in (items.reads, catalog.reads, visitors.reads, segments.reads):
        app.include_router(router, dependencies=reads)
    for router in (items.writes, visitors.writes, admin.router):
        app.include_router(router, dependencies=keyed)
    app.include_router(health.router)
    app.openapi = lambda: document_errors(app)  # type: ignore[method-assign]
    if settings.demo:
        mount_demo(app)

    @app.exception_handler(StoreUnavailableError)
    async def _store_unavailable(request: Request, exc: StoreUnavailableError) -> JSONResponse:
        # A safety net: routes degrade or answer 503 themselves; nothing may end in a 500.
        metrics.store_errors.labels("unhandled").inc()
        return JSONResponse(
            {"detail": "profile store unavailable, retry later"},
            status_code=HTTPStatus.SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    # add_middleware wraps: the last added runs first. Metrics outermost so that 413s and CORS
    # preflights are timed too; the body limit innermost, next to the routes that read bodies.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(BeaconBodyMiddleware)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Content-Type", API_KEY_HEADER],
            # No cookies or HTTP auth: the API authenticates by header key, so a browser never
            # needs to send credentials (and allow_credentials stays off).
            expose_headers=["Retry-After"],  # so the storefront's script can back off on 503
            max_age=600,
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def app_factory() -> FastAPI:
    """For ``uvicorn --factory api.main:app_factory``: settings from the environment."""
    from threadpoolctl import threadpool_limits

    # One BLAS/OpenMP thread per worker: scoring one request is tiny, and threads spinning up for
    # it cost far more than they save (p99 8x worse measured with the default thread pools).
    threadpool_limits(1)
    return create_app(ApiSettings())
