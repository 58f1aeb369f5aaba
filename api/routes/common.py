"""Helpers the route modules share: reading the store with degradation, refusing writes."""

from __future__ import annotations

import logging
import math
import time
from http import HTTPStatus
from typing import Annotated, Any

import orjson
from fastapi import HTTPException, Path, Query, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.routing import Match, Route
from starlette.types import Scope

from api.metrics import ApiMetrics
from api.schemas import ErrorOut
from api.settings import ApiSettings
from engine.profiles import ID_PATTERN, Profile, ProfileStore, StoreUnavailableError

log = logging.getLogger(__name__)

API_PREFIX = "/v1"  # every route but health and metrics is versioned
RETRY_AFTER_SECONDS = 1

K = Annotated[
    int,
    Query(
        ge=1,
        le=100,
        description="how many items",
        openapi_examples={"a shelf": {"value": 10}, "a carousel": {"value": 24}},
    ),
]
ItemPath = Annotated[
    str,
    Path(
        pattern=ID_PATTERN,
        description="an item id",
        openapi_examples={"an item": {"value": "sku158"}},
    ),
]
VisitorPath = Annotated[
    str,
    Path(
        pattern=ID_PATTERN,
        description="the visitor's anonymous id",
        openapi_examples={"a visitor": {"value": "v-7f3a9c"}},
    ),
]


class DirectRoute(Route):
    """A plain Starlette route in a FastAPI app, for a hot handler that reads the request itself.

    It records itself as the scope's ``route``, as FastAPI's routes do, so that the metrics
    middleware labels its requests by this path template.
    """

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE:
            child_scope["route"] = self
        return match, child_scope


def invalid_request(exc: ValidationError, where: str) -> RequestValidationError:
    """A pydantic error as FastAPI's own 422, ``loc`` led by ``where`` (``query``, ``body``),
    for routes that validate their input in one pydantic call instead of FastAPI's."""
    errors = exc.errors(include_url=False, include_context=False)
    return RequestValidationError([{**e, "loc": (where, *e["loc"])} for e in errors])


def json_response(payload: dict[str, Any], status_code: int = HTTPStatus.OK) -> Response:
    """A JSON answer serialized once by orjson, for routes that declare its model as their
    ``response_model`` (for the OpenAPI document) but skip FastAPI's validation of it."""
    return Response(orjson.dumps(payload), status_code, media_type="application/json")


# Every route that needs the serving model (RecommenderDep) answers 503 until one is loaded;
# its router declares it.
NEEDS_MODEL: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorOut, "description": "no model loaded yet; retry after Retry-After"}
}

LOG_EVERY_SECONDS = 10.0
_last_logged: dict[str, float] = {}


def store_failed(metrics: ApiMetrics, operation: str, exc: StoreUnavailableError) -> None:
    """Count every failure; log at most one per operation every LOG_EVERY_SECONDS.

    With Redis down every request fails the same way: thousands of identical lines a second
    would bury the logs (and cost more than the request); the counter keeps the exact number.
    """
    metrics.store_errors.labels(operation).inc()
    now = time.monotonic()
    if now - _last_logged.get(operation, -math.inf) >= LOG_EVERY_SECONDS:
        _last_logged[operation] = now
        log.warning("profile store unavailable during %s: %s", operation, exc)


def unavailable_for_writes() -> HTTPException:
    """503 with Retry-After: nothing was acknowledged, so the client must retry."""
    return HTTPException(
        HTTPStatus.SERVICE_UNAVAILABLE,
        "profile store unavailable; nothing was stored, retry later",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def personalization_allowed(profile: Profile, settings: ApiSettings) -> bool:
    """The visitor's own statement decides; without one, PERSONALIZE_CONSENT_REQUIRED does."""
    if profile.consent is not None:
        return profile.consent.given
    return not settings.consent_required


async def read_context(
    store: ProfileStore, visitor_id: str, metrics: ApiMetrics, route: str
) -> tuple[Profile, frozenset[str], bool]:
    """The visitor's profile and the unavailable items; empty and ``degraded`` if unreachable."""
    try:
        profile, unavailable = await store.context(visitor_id)
    except StoreUnavailableError as exc:
        store_failed(metrics, "context", exc)
        metrics.degraded_responses.labels(route).inc()
        return Profile(visitor_id=visitor_id), frozenset(), True
    return profile, unavailable, False


async def read_unavailable(
    store: ProfileStore, metrics: ApiMetrics, route: str
) -> tuple[frozenset[str], bool]:
    try:
        return await store.unavailable(), False
    except StoreUnavailableError as exc:
        store_failed(metrics, "unavailable", exc)
        metrics.degraded_responses.labels(route).inc()
        return frozenset(), True
