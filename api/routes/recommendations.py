"""GET /v1/recommendations: the page of items for a visitor."""

from __future__ import annotations

import math
from typing import Annotated, Any, NoReturn

from fastapi import APIRouter, Depends, Query
from fastapi.exceptions import RequestValidationError
from pydantic import StringConstraints

from api.deps import MetricsDep, RecommenderDep, StoreDep, require_read_key
from api.routes.common import API_PREFIX, K, read_context
from api.schemas import RecommendationsOut, RecommendedItem
from engine.profiles import ID_PATTERN, valid_id
from engine.recommender import Query as RecQuery

router = APIRouter(
    prefix=API_PREFIX, tags=["recommendations"], dependencies=[Depends(require_read_key)]
)

MAX_LIST_PARAM = 100  # repeatable query parameters (categories, boosts, pins)
MAX_BOOST = 1000.0

Category = Annotated[str, StringConstraints(min_length=1, max_length=128)]
_IdQuery = Annotated[str, StringConstraints(pattern=ID_PATTERN)]


def _invalid(field: str, message: str, value: Any, index: int | None = None) -> NoReturn:
    loc: tuple[str | int, ...] = ("query", field) if index is None else ("query", field, index)
    raise RequestValidationError([{"type": "value_error", "loc": loc, "msg": message,
                                   "input": value}])  # fmt: skip


def _boosts(raw: list[str]) -> dict[str, float]:
    boosts: dict[str, float] = {}
    for i, spec in enumerate(raw):
        item, sep, factor_text = spec.rpartition(":")
        try:
            factor = float(factor_text)
        except ValueError:
            factor = math.nan
        if (
            not sep
            or not valid_id(item)
            or not math.isfinite(factor)
            or not 0 < factor <= MAX_BOOST
        ):
            _invalid("boost", f"expected 'item:factor' with 0 < factor <= {MAX_BOOST:g}", spec, i)
        boosts[item] = factor
    return boosts


def recommendation_query(
    k: K = 10,
    offset: Annotated[
        int, Query(ge=0, le=1000, description="skip this many items of the ranking (pagination)")
    ] = 0,
    customer_id: Annotated[
        str | None,
        Query(
            pattern=ID_PATTERN,
            description="the logged-in customer (default: the one linked to the visitor)",
        ),
    ] = None,
    context_item: Annotated[
        str | None,
        Query(
            pattern=ID_PATTERN,
            description="the product page being shown",
            openapi_examples={"a product page": {"value": "sku158"}},
        ),
    ] = None,
    include_category: Annotated[
        list[Category] | None,
        Query(max_length=MAX_LIST_PARAM, description="only these categories (repeatable)"),
    ] = None,
    exclude_category: Annotated[
        list[Category] | None,
        Query(max_length=MAX_LIST_PARAM, description="never these categories (repeatable)"),
    ] = None,
    min_price: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
    max_price: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
    boost: Annotated[
        list[str] | None,
        Query(
            max_length=MAX_LIST_PARAM,
            description="'item:factor' multiplies an item's score (repeatable)",
            openapi_examples={"promote one item": {"value": ["sku49:1.5"]}},
        ),
    ] = None,
    pin: Annotated[
        list[_IdQuery] | None,
        Query(
            max_length=MAX_LIST_PARAM,
            description="items placed first, in this order, if they pass the filters",
        ),
    ] = None,
    max_per_category: Annotated[
        int | None, Query(ge=1, le=100, description="diversity cap (relaxed only to fill k)")
    ] = None,
) -> RecQuery:
    """The query parameters as the engine's :class:`~engine.recommender.Query`."""
    if min_price is not None and max_price is not None and min_price > max_price:
        _invalid("max_price", "max_price must not be below min_price", max_price)
    return RecQuery(
        k=k,
        offset=offset,
        customer_id=customer_id,
        context_item=context_item,
        include_categories=frozenset(include_category or ()),
        exclude_categories=frozenset(exclude_category or ()),
        min_price=min_price,
        max_price=max_price,
        boost=_boosts(boost or []),
        pin=tuple(dict.fromkeys(pin or ())),
        max_per_category=max_per_category,
    )


@router.get(
    "/recommendations",
    summary="Recommendations for a visitor",
    description="The visitor's session (clicks folded into the model at request time) and, if "
    "known, the customer's history; then the business rules: purchased items out unless due "
    "again, unavailable items out, category and price filters, boosts and pins, a per-category "
    "cap. Never fewer than k items while the catalog has them. If the profile store is "
    'unreachable, answers from the model and popularity with `"degraded": true`.',
    response_model=RecommendationsOut,
)
async def recommendations(
    visitor_id: Annotated[
        str,
        Query(
            pattern=ID_PATTERN,
            description="the browser's anonymous id",
            openapi_examples={"a visitor": {"value": "v-7f3a9c"}},
        ),
    ],
    query: Annotated[RecQuery, Depends(recommendation_query)],
    recommender: RecommenderDep,
    store: StoreDep,
    metrics: MetricsDep,
    explain: Annotated[bool, Query(description="include a reason per item")] = False,
) -> RecommendationsOut:
    profile, unavailable, degraded = await read_context(
        store, visitor_id, metrics, "/v1/recommendations"
    )
    # Sub-millisecond and CPU-bound: called inline, a thread hop would cost more than it saves.
    result = recommender.recommend(query, profile, unavailable)
    return RecommendationsOut(
        visitor_id=visitor_id,
        items=[RecommendedItem.of(r, explain=explain) for r in result.items],
        strategy=result.strategy,
        model_version=result.model_version,
        degraded=degraded,
    )
