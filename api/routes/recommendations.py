"""GET /v1/recommendations: the page of items for a visitor."""

from __future__ import annotations

import math
from typing import Annotated, Any, NoReturn, get_origin
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, StringConstraints, ValidationError

from api.deps import API_KEY_HEADER, check_key, serving_recommender
from api.routes.common import (
    API_PREFIX,
    NEEDS_MODEL,
    DirectRoute,
    invalid_request,
    json_response,
    personalization_allowed,
    read_context,
)
from api.schemas import RecommendationsOut, items_payload
from engine.profiles import ID_PATTERN, valid_id
from engine.recommender import Query as RecQuery

router = APIRouter(prefix=API_PREFIX, tags=["recommendations"], responses=NEEDS_MODEL)

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


class RecommendationParams(BaseModel):
    """The query parameters, validated as one model by :func:`recommendation_params`.

    Not declared to FastAPI parameter by parameter (nor as a ``Query()`` model, which it still
    reads field by field): its per-parameter resolution cost ~0.3 ms a request, more than the
    scoring. The OpenAPI document lists them all the same, generated from this model.
    """

    visitor_id: str = Field(
        pattern=ID_PATTERN,
        description="the browser's anonymous id",
        examples=["v-7f3a9c"],
    )
    k: int = Field(10, ge=1, le=100, description="how many items", examples=[10])
    offset: int = Field(0, ge=0, le=1000, description="skip this many items (pagination)")
    customer_id: str | None = Field(
        None,
        pattern=ID_PATTERN,
        description="the logged-in customer (default: the one linked to the visitor)",
    )
    context_item: str | None = Field(
        None, pattern=ID_PATTERN, description="the product page being shown", examples=["sku158"]
    )
    include_category: list[Category] = Field(
        default_factory=list,
        max_length=MAX_LIST_PARAM,
        description="only these categories (repeatable)",
    )
    exclude_category: list[Category] = Field(
        default_factory=list,
        max_length=MAX_LIST_PARAM,
        description="never these categories (repeatable)",
    )
    min_price: float | None = Field(None, ge=0, allow_inf_nan=False)
    max_price: float | None = Field(None, ge=0, allow_inf_nan=False)
    boost: list[str] = Field(
        default_factory=list,
        max_length=MAX_LIST_PARAM,
        description="'item:factor' multiplies an item's score (repeatable)",
        examples=[["sku49:1.5"]],
    )
    pin: list[_IdQuery] = Field(
        default_factory=list,
        max_length=MAX_LIST_PARAM,
        description="items placed first, in this order, if they pass the filters",
    )
    max_per_category: int | None = Field(
        None, ge=1, le=100, description="diversity cap (relaxed only to fill k)"
    )
    explain: bool = Field(False, description="include a reason per item")
    include_seen: bool = Field(
        False, description="keep items the visitor saw this session (left out by default)"
    )
    target_segment: list[Category] = Field(
        default_factory=list,
        max_length=MAX_LIST_PARAM,
        description="boosts and pins apply only to customers in these value segments "
        "(repeatable; GET /v1/segments lists them)",
        examples=[["at-risk", "cant-lose"]],
    )

    def to_query(self, segments: frozenset[str]) -> RecQuery:
        """The engine's :class:`~engine.recommender.Query`; 422 for what no field type says.

        Args:
            segments: the segment names the serving model knows.
        """
        for i, name in enumerate(self.target_segment):
            if name not in segments:
                known = ", ".join(sorted(segments))
                _invalid("target_segment", f"unknown segment; the model has: {known}", name, i)
        if (
            self.min_price is not None
            and self.max_price is not None
            and self.min_price > self.max_price
        ):
            _invalid("max_price", "max_price must not be below min_price", self.max_price)
        return RecQuery(
            k=self.k,
            offset=self.offset,
            customer_id=self.customer_id,
            context_item=self.context_item,
            include_categories=frozenset(self.include_category),
            exclude_categories=frozenset(self.exclude_category),
            min_price=self.min_price,
            max_price=self.max_price,
            boost=_boosts(self.boost),
            pin=tuple(dict.fromkeys(self.pin)),
            max_per_category=self.max_per_category,
            explain=self.explain,
            include_seen=self.include_seen,
            target_segments=frozenset(self.target_segment),
        )


_LIST_FIELDS = frozenset(
    name
    for name, f in RecommendationParams.model_fields.items()
    if get_origin(f.annotation) is list
)


def recommendation_params(request: Request) -> RecommendationParams:
    """Validate the query string against :class:`RecommendationParams` in one pydantic call.

    Errors keep FastAPI's shape (422, ``loc`` = ``["query", field, ...]``).
    """
    raw: dict[str, Any] = {}
    # Starlette's own parse (QueryParams), without building its multi-dict: half the cost.
    query = request.scope["query_string"].decode("latin-1")
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in _LIST_FIELDS:
            raw.setdefault(name, []).append(value)
        else:
            raw[name] = value
    try:
        return RecommendationParams.model_validate(raw)
    except ValidationError as exc:
        raise invalid_request(exc, "query") from None


def _openapi_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """The model's fields as OpenAPI query parameters (the route reads them itself)."""
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    parameters = []
    for name, field_schema in schema["properties"].items():
        field_schema = dict(field_schema)
        parameter: dict[str, Any] = {"name": name, "in": "query", "required": name in required}
        if "description" in field_schema:
            parameter["description"] = field_schema.pop("description")
        if "examples" in field_schema:
            examples = field_schema.pop("examples")
            parameter["examples"] = {f"example {i}": {"value": v} for i, v in enumerate(examples)}
        if name in _LIST_FIELDS:
            parameter["explode"] = True  # repeat the parameter: ?pin=a&pin=b
        parameters.append({**parameter, "schema": field_schema})
    return parameters


@router.get(
    "/recommendations",
    summary="Recommendations for a visitor",
    description="The visitor's session (clicks folded into the model at request time) and, if "
    "known, the customer's history; then the business rules: purchased items out unless due "
    "again, unavailable items out, category and price filters, boosts and pins, a per-category "
    "cap. Never fewer than k items while the catalog has them. If the profile store is "
    'unreachable, answers from the model and popularity with `"degraded": true`.',
    response_model=RecommendationsOut,
    openapi_extra={"parameters": _openapi_parameters(RecommendationParams)},
)
async def recommendations(request: Request) -> Response:
    # The hot path takes the request alone: each FastAPI dependency costs tens of microseconds,
    # and a returned model would be validated again against ``response_model`` (which stays
    # above for the OpenAPI document); the JSON is written once, by orjson.
    state = request.app.state
    if state.settings.reads_need_key:
        check_key(request.headers.get(API_KEY_HEADER), state.settings)
    recommender = serving_recommender(state.holder)
    params = recommendation_params(request)
    query = params.to_query(recommender.segment_names)
    metrics = state.metrics
    profile, unavailable, degraded = await read_context(
        state.store, params.visitor_id, metrics, "/v1/recommendations"
    )
    personalized = personalization_allowed(profile, state.settings)
    # Sub-millisecond and CPU-bound: called inline, a thread hop would cost more than it saves.
    result = recommender.recommend(query, profile, unavailable, personalized=personalized)
    metrics.recommendations.labels(result.strategy, result.segment or "").inc()
    return json_response(
        {
            "visitor_id": params.visitor_id,
            "items": items_payload(result.items, explain=query.explain),
            "strategy": result.strategy,
            "segment": result.segment,
            "model_version": result.model_version,
            "degraded": degraded,
        }
    )


def direct_route() -> DirectRoute:
    """This route as a plain Starlette route, for the app's hot paths (:mod:`api.hot_routes`).

    FastAPI's per-route machinery (request wrapping, dependency solving, its exit stack) costs
    about 60 microseconds a request even with no dependency (measured in process: 171 -> 110 us
    for a new visitor), a third of what a recommendation costs. The handler needs none of it:
    it reads the request itself, checks the key when reads need one, and its errors are
    FastAPI's exceptions, which the app's handlers answer as before. The FastAPI route above
    stays registered for the OpenAPI document; requests reach this one.
    """
    return DirectRoute(f"{API_PREFIX}/recommendations", recommendations, methods=["GET"])
