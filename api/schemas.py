"""Request and response bodies of the API, with their constraints and OpenAPI examples.

Every id is held to :data:`engine.profiles.ID_PATTERN` here, at the edge, so a malformed id is a
422 naming its field and never reaches a store key.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    field_validator,
)

from api.state import ReloadOutcome
from engine.profiles import ID_PATTERN, Consent, Event, EventType, Profile
from engine.recommender import Recommended

Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]

# Events may arrive late (offline queues, retries) but not from the future: a clock that is far
# ahead would distort trending and recency for everyone.
MAX_CLOCK_SKEW_SECONDS = 86_400

_EVENT_EXAMPLE: dict[str, Any] = {
    "event_id": "3f2b8c1e9a7d4e5f8b6a1c2d3e4f5a6b",
    "visitor_id": "v-7f3a9c",
    "item_id": "sku158",
    "type": "click",
    "timestamp": 1_767_000_000.0,
}


class ErrorOut(BaseModel):
    """Every error but 422: one human-readable line, naming the field or limit at fault."""

    detail: str = Field(examples=["invalid API key"])


class EventIn(BaseModel):
    """One thing a visitor did to an item."""

    # Strict: JSON gives each field its own type; lax parsing would read `"timestamp": true`
    # as 1970-01-01T00:00:01 (found by benchmarks.fuzz_api).
    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [_EVENT_EXAMPLE]}
    )

    event_id: Id | None = Field(
        None,
        description="Idempotency key: an event id seen before is acknowledged, not stored again. "
        "Omitted: the server generates one (then a retry is a new event).",
    )
    visitor_id: Id = Field(description="The browser's anonymous id (cookie).")
    customer_id: Id | None = Field(
        None,
        description="Set once the visitor logs in: links the anonymous session to the customer.",
    )
    item_id: Id = Field(description="The item; may be newer than the model (stored, counted).")
    type: EventType
    timestamp: float | None = Field(
        None, gt=0, description="Epoch seconds when it happened; default: when received."
    )

    @field_validator("timestamp")
    @classmethod
    def _not_in_future(cls, value: float | None) -> float | None:
        if value is not None and (
            not math.isfinite(value) or value > time.time() + MAX_CLOCK_SKEW_SECONDS
        ):
            raise ValueError("timestamp must be epoch seconds, not in the future")
        return value

    def to_event(self, now: float) -> Event:
        return Event(
            event_id=self.event_id or uuid.uuid4().hex,
            visitor_id=self.visitor_id,
            item_id=self.item_id,
            type=self.type,
            timestamp=now if self.timestamp is None else self.timestamp,
            customer_id=self.customer_id,
        )


def _event_or_batch(value: Any) -> str:
    return "batch" if isinstance(value, list) else "event"


# A JSON object is one event, a JSON array a batch; the tag keeps a bad field's error pointing at
# that field (``body.batch.3.item_id``) instead of listing the failures of both shapes.
EventsBody = Annotated[
    Annotated[EventIn, Tag("event")] | Annotated[list[EventIn], Tag("batch")],
    Discriminator(_event_or_batch),
]


class EventsAccepted(BaseModel):
    """Every event in the request is stored (``accepted`` now, ``duplicates`` before)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"accepted": 2, "duplicates": 1, "unknown_items": 0}]}
    )

    accepted: int = Field(description="events stored by this request")
    duplicates: int = Field(description="events whose id was already stored (not counted twice)")
    unknown_items: int = Field(description="events for items the serving model does not know")


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    reason: str | None = Field(None, description="why it was picked (only with explain=true)")
    description: str
    category: str
    price: float | None


def items_payload(items: Sequence[Recommended], *, explain: bool = True) -> list[dict[str, Any]]:
    """Items as :class:`RecommendedItem` objects in JSON, built directly: the hot routes write
    their answers with orjson rather than validating a model per item."""
    return [
        {
            "item_id": r.item_id,
            "score": r.score,
            "reason": r.reason if explain else None,
            "description": r.description,
            "category": r.category,
            "price": r.price,
        }
        for r in items
    ]


_ITEM_EXAMPLE: dict[str, Any] = {
    "item_id": "sku49",
    "score": 0.8731,
    "reason": "because you viewed sku158",
    "description": "GLASS LANTERN 49",
    "category": "c3",
    "price": 4.95,
}


class RecommendationsOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "visitor_id": "v-7f3a9c",
                    "items": [_ITEM_EXAMPLE],
                    "strategy": "session",
                    "model_version": "20261123T191500Z",
                    "degraded": False,
                }
            ]
        }
    )

    visitor_id: str
    items: list[RecommendedItem]
    strategy: str = Field(
        description='"customer", "customer+session", "session", "trending", or '
        '"non-personalized" (the visitor has not consented)'
    )
    segment: str | None = Field(None, description="the customer's value segment, if known")
    model_version: str
    degraded: bool = Field(
        description="true when the profile store was unreachable: answered from the model and "
        "popularity alone, without the session, purchases or availability"
    )


class ItemsOut(BaseModel):
    """A list of items: similar, bought together or trending."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"items": [_ITEM_EXAMPLE], "model_version": "20261123T191500Z", "degraded": False}
            ]
        }
    )

    items: list[RecommendedItem]
    model_version: str
    degraded: bool = Field(False, description="true when the profile store was unreachable")


class RecentEventOut(BaseModel):
    item_id: str
    type: EventType
    timestamp: float


class RecentOut(BaseModel):
    """The visitor's recently seen items, newest first, each item once."""

    visitor_id: str
    items: list[RecentEventOut]
    degraded: bool = False


class ConsentIn(BaseModel):
    """A visitor's statement about personalization, e.g. from the cookie banner."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,  # a statement is true or false, never "yes" or 1
        json_schema_extra={"examples": [{"personalization": False}]},
    )

    personalization: bool = Field(description="true: consent given; false: withdrawn")
    timestamp: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="when it was stated (default: now)"
    )


class ConsentOut(BaseModel):
    personalization: bool
    timestamp: float

    @classmethod
    def of(cls, c: Consent) -> ConsentOut:
        return cls(personalization=c.given, timestamp=c.at)


class ProfileOut(BaseModel):
    """Everything the store holds about a visitor (for the visitor's own access request)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "visitor_id": "v-7f3a9c",
                    "customer_id": "c103",
                    "recent": [{"item_id": "sku158", "type": "click", "timestamp": 1.767e9}],
                    "counters": {"click": 1},
                    "bought": [],
                    "first_seen": 1.767e9,
                    "last_seen": 1.767e9,
                    "consent": {"personalization": True, "timestamp": 1.767e9},
                    "segment": "loyal",
                }
            ]
        }
    )

    visitor_id: str
    customer_id: str | None
    recent: list[RecentEventOut]
    counters: dict[str, int]
    bought: list[str]
    first_seen: float | None
    last_seen: float | None
    consent: ConsentOut | None = Field(description="the visitor's statement, if any")
    segment: str | None = Field(
        description="the linked customer's value segment in the serving model (RFM)"
    )

    @classmethod
    def of(cls, p: Profile, segment: str | None) -> ProfileOut:
        return cls(
            visitor_id=p.visitor_id,
            customer_id=p.customer_id,
            recent=[
                RecentEventOut(item_id=e.item_id, type=e.type, timestamp=e.timestamp)
                for e in p.recent
            ],
            counters=dict(p.counters),
            bought=sorted(p.bought),
            first_seen=p.first_seen,
            last_seen=p.last_seen,
            consent=None if p.consent is None else ConsentOut.of(p.consent),
            segment=segment,
        )


class ErasedOut(BaseModel):
    visitor_id: str
    keys_deleted: int = Field(description="store keys removed (0: nothing was held)")


class AvailabilityIn(BaseModel):
    """Mark items in or out of stock; takes effect on the next request."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"item_ids": ["sku49", "sku158"], "available": False}]},
    )

    item_ids: list[Id] = Field(min_length=1, description="at most max_batch ids (else 413)")
    available: bool


class AvailabilityOut(BaseModel):
    updated: int
    available: bool


class ReloadOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "outcome": "reloaded",
                    "version": "20261124T080000Z",
                    "previous_version": "20261123T191500Z",
                    "error": None,
                }
            ]
        }
    )

    outcome: ReloadOutcome
    version: str | None = Field(description="the version serving now")
    previous_version: str | None
    error: str | None = Field(None, description="why a new version was refused")


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    model_version: str | None = None
    store: Literal["ok", "unreachable"] | None = None
    model_error: str | None = Field(None, description="the last refused model, if any")


class SegmentOut(BaseModel):
    name: str
    customers: int
    revenue: float = Field(description="monetary value over the training log (revenue or units)")
    revenue_share: float
    win_back: int = Field(description="customers past their usual gap between purchases")


class SegmentsOut(BaseModel):
    """The customer value segments of the serving model, as of its training log's end."""

    model_version: str
    as_of: float = Field(description="epoch seconds the recency is measured from")
    customers: int
    top20_share: float = Field(description="share of revenue from the top 20 % of customers")
    segments: list[SegmentOut]


class SegmentCustomersOut(BaseModel):
    segment: str
    model_version: str
    total: int = Field(description="customers in the segment")
    customers: list[str] = Field(description="one page of their ids, in the model's order")


class CatalogItem(BaseModel):
    item_id: str
    description: str
    category: str
    price: float | None
    available: bool = Field(description="false while the item is marked out of stock")


class CatalogOut(BaseModel):
    """One page of the serving model's catalog, best-selling first."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "item_id": "sku49",
                            "description": "GLASS LANTERN 49",
                            "category": "c3",
                            "price": 4.95,
                            "available": True,
                        }
                    ],
                    "total": 200,
                    "offset": 0,
                    "model_version": "20261123T191500Z",
                    "degraded": False,
                }
            ]
        }
    )

    items: list[CatalogItem]
    total: int = Field(description="items in the catalog")
    offset: int
    model_version: str
    degraded: bool = Field(
        False, description="true when the store was unreachable: availability unknown"
    )
