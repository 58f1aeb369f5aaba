"""GET /v1/items: the serving model's catalog a page at a time, for product grids."""

from __future__ import annotations

import math
import weakref
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query

from api.deps import MetricsDep, RecommenderDep, StoreDep
from api.routes.common import API_PREFIX, NEEDS_MODEL, K, read_unavailable
from api.schemas import CatalogItem, CatalogOut
from engine.recommender import Recommender

reads = APIRouter(prefix=API_PREFIX, tags=["items"], responses=NEEDS_MODEL)

# One ordering per loaded model, dropped with it: sorting 100k items on every page would cost
# milliseconds, and a reload swaps the recommender (and so the key) atomically.
_best_selling: weakref.WeakKeyDictionary[Recommender, np.ndarray] = weakref.WeakKeyDictionary()


def best_selling(recommender: Recommender) -> np.ndarray:
    """Item rows by units sold, best first, equal sales by row (so pages never overlap)."""
    order = _best_selling.get(recommender)
    if order is None:
        order = np.argsort(-recommender.model.scorer.popularity, kind="stable")
        _best_selling[recommender] = order
    return order


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
    model = recommender.model
    rows = best_selling(recommender)[offset : offset + k].tolist()
    items = []
    for row in rows:
        item_id = str(model.items.ids[row])
        price = float(model.price[row])
        items.append(
            CatalogItem(
                item_id=item_id,
                description=str(model.description[row]),
                category=str(model.category[row]),
                price=None if math.isnan(price) else price,
                available=item_id not in unavailable,
            )
        )
    return CatalogOut(
        items=items,
        total=len(model.items),
        offset=offset,
        model_version=recommender.version,
        degraded=degraded,
    )
