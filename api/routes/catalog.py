"""GET /v1/items: the serving model's catalog a page at a time, for product grids."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import MetricsDep, RecommenderDep, StoreDep
from api.routes.common import API_PREFIX, NEEDS_MODEL, K, read_unavailable
from api.schemas import CatalogItem, CatalogOut

reads = APIRouter(prefix=API_PREFIX, tags=["items"], responses=NEEDS_MODEL)


@reads.get(
    "/items",
    summary="The catalog, a page at a time",
    description="Every item of the serving model with its description, category, price and "
    "availability, best-selling first. Without the store: every item shown available, degraded.",
    response_model=CatalogOut,
)
async def catalog(
    recommender: RecommenderDep,
    store: StoreDep,
    metrics: MetricsDep,
    k: K = 24,
    offset: Annotated[int, Query(ge=0, le=1 << 31, description="skip this many items")] = 0,
) -> CatalogOut:
    unavailable, degraded = await read_unavailable(store, metrics, "/v1/items")
    items = [
        CatalogItem(
            item_id=item_id,
            description=description,
            category=category,
            price=price,
            available=item_id not in unavailable,
        )
        for item_id, description, category, price in recommender.catalog(offset, k)
    ]
    return CatalogOut(
        items=items,
        total=len(recommender.model.items),
        offset=offset,
        model_version=recommender.version,
        degraded=degraded,
    )
