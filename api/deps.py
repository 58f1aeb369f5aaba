"""What handlers receive: the model, the store, settings and metrics, and the API-key checks.

Everything is created by the app (``create_app`` and its lifespan) and kept on ``app.state``;
tests replace any of it with ``app.dependency_overrides``.

Every dependency is ``async def`` although none awaits: FastAPI runs a plain ``def`` dependency
in its thread pool, and with a handful per request those hops cost more than the scoring
(measured: 670 req/s with them, see benchmarks/http_latency.py for the figure without).
"""

from __future__ import annotations

import hmac
from http import HTTPStatus
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from api.metrics import ApiMetrics
from api.settings import ApiSettings
from api.state import ModelHolder
from engine.profiles import ProfileStore
from engine.recommender import Recommender

API_KEY_HEADER = "X-API-Key"

_api_key = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="One of the keys in PERSONALIZE_API_KEYS.",
)


async def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


async def get_store(request: Request) -> ProfileStore:
    store: ProfileStore = request.app.state.store
    return store


async def get_metrics(request: Request) -> ApiMetrics:
    metrics: ApiMetrics = request.app.state.metrics
    return metrics


async def get_holder(request: Request) -> ModelHolder:
    holder: ModelHolder = request.app.state.holder
    return holder


def serving_recommender(holder: ModelHolder) -> Recommender:
    """The serving model, taken once: a reload during the request does not change it."""
    recommender = holder.current
    if recommender is None:
        raise HTTPException(
            HTTPStatus.SERVICE_UNAVAILABLE,
            "no model loaded yet",
            headers={"Retry-After": "5"},
        )
    return recommender


async def get_recommender(request: Request) -> Recommender:
    return serving_recommender(request.app.state.holder)


async def get_optional_recommender(request: Request) -> Recommender | None:
    current: Recommender | None = request.app.state.holder.current
    return current


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
StoreDep = Annotated[ProfileStore, Depends(get_store)]
MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]
HolderDep = Annotated[ModelHolder, Depends(get_holder)]
RecommenderDep = Annotated[Recommender, Depends(get_recommender)]
OptionalRecommenderDep = Annotated[Recommender | None, Depends(get_optional_recommender)]


def check_key(given: str | None, settings: ApiSettings) -> None:
    """401 without a key, 403 with a wrong one; the key itself is never logged or echoed."""
    if not given:
        raise HTTPException(
            HTTPStatus.UNAUTHORIZED,
            f"missing API key ({API_KEY_HEADER} header)",
            headers={"WWW-Authenticate": API_KEY_HEADER},
        )
    supplied = given.encode()
    matched = False
    # Compare against every key without stopping early: the time taken says nothing about
    # which key (or how much of one) matched.
    for key in settings.api_keys:
        matched |= hmac.compare_digest(supplied, key.get_secret_value().encode())
    if not matched:
        raise HTTPException(HTTPStatus.FORBIDDEN, "invalid API key")


async def require_api_key(
    settings: SettingsDep, key: Annotated[str | None, Security(_api_key)]
) -> None:
    """Writes and admin routes always; reads when ``read_requires_key`` (see ``create_app``)."""
    check_key(key, settings)
