"""Item lists (similar, bought together, trending) and catalog availability."""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Response

from api.deps import (
    MetricsDep,
    RecommenderDep,
    SettingsDep,
    StoreDep,
)
from api.routes.common import (
    API_PREFIX,
    NEEDS_MODEL,
    ItemPath,
    K,
    json_response,
    read_unavailable,
    store_failed,
    unavailable_for_writes,
)
from api.schemas import AvailabilityIn, AvailabilityOut, ItemsOut, items_payload
from engine.profiles import StoreUnavailableError
from engine.recommender import Recommended

reads = APIRouter(prefix=API_PREFIX, tags=["items"], responses=NEEDS_MODEL)
writes = APIRouter(prefix=API_PREFIX, tags=["items"])

_UNKNOWN_ITEM: dict[int | str, dict[str, Any]] = {
    404: {"description": "the model does not know this item"}
}


def _items_of(produce: Callable[[], list[Recommended]], version: str, degraded: bool) -> Response:
    """An :class:`ItemsOut` answer; 404 when ``produce`` does not know the item."""
    try:
        found = produce()
    except KeyError as exc:
        raise HTTPException(HTTPStatus.NOT_FOUND, "the model does not know this item") from exc
    return json_response(
        {"items": items_payload(found), "model_version": version, "degraded": degraded}
    )


@reads.get(
    "/items/{item_id}/similar",
    summary="Items like this one",
    description="Nearest items in the model's latent space, available ones only.",
    response_model=ItemsOut,
    responses=_UNKNOWN_ITEM,
)
async def similar(
    item_id: ItemPath, recommender: RecommenderDep, store: StoreDep, metrics: MetricsDep, k: K = 10
) -> Response:
    unavailable, degraded = await read_unavailable(store, metrics, "/v1/items/{item_id}/similar")
    return _items_of(
        lambda: recommender.similar(item_id, k, unavailable),
        recommender.model.version,
        degraded,
    )


@reads.get(
    "/items/{item_id}/bought-together",
    summary="Items bought with this one",
    description="Items from the same baskets, by lift; each reason names support and lift.",
    response_model=ItemsOut,
    responses=_UNKNOWN_ITEM,
)
async def bought_together(
    item_id: ItemPath, recommender: RecommenderDep, store: StoreDep, metrics: MetricsDep, k: K = 10
) -> Response:
    unavailable, degraded = await read_unavailable(
        store, metrics, "/v1/items/{item_id}/bought-together"
    )
    return _items_of(
        lambda: recommender.bought_together(item_id, k, unavailable),
        recommender.model.version,
        degraded,
    )


@reads.get(
    "/trending",
    summary="What is trending now",
    description="Live event counts over the trending window first, then the model's trending "
    "and popular items. Without the store: the model's lists alone, degraded.",
    response_model=ItemsOut,
)
async def trending(
    recommender: RecommenderDep, store: StoreDep, metrics: MetricsDep, k: K = 10
) -> Response:
    degraded = False
    live: list[tuple[str, float]] = []
    unavailable: frozenset[str] = frozenset()
    try:
        # A few more than k live counts: some may be filtered out as unavailable.
        live = await store.trending(2 * k)
        unavailable = await store.unavailable()
    except StoreUnavailableError as exc:
        store_failed(metrics, "trending", exc)
        metrics.degraded_responses.labels("/v1/trending").inc()
        degraded = True
    return _items_of(
        lambda: recommender.trending(k, live, unavailable), recommender.model.version, degraded
    )


@writes.put(
    "/items/availability",
    summary="Mark items in or out of stock",
    description="Takes effect on the very next request. Any item id is accepted, including "
    "items the model does not know yet. More than max_batch ids: 413.",
    response_model=AvailabilityOut,
    responses={
        413: {"description": "too many item ids"},
        503: {"description": "profile store unreachable: nothing changed, retry"},
    },
)
async def set_availability(
    body: Annotated[AvailabilityIn, Body()],
    store: StoreDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> AvailabilityOut:
    if len(body.item_ids) > settings.max_batch:
        raise HTTPException(
            413, f"{len(body.item_ids)} item ids in one request; at most {settings.max_batch}"
        )
    try:
        await store.set_availability(body.item_ids, body.available)
    except StoreUnavailableError as exc:
        store_failed(metrics, "set_availability", exc)
        raise unavailable_for_writes() from exc
    return AvailabilityOut(updated=len(set(body.item_ids)), available=body.available)
