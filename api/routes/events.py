"""POST /v1/events: what visitors do, single or batched, idempotent by event id."""

from __future__ import annotations

import time
from collections import Counter
from http import HTTPStatus
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Request, Response

from api.routes.common import API_PREFIX, json_response, store_failed, unavailable_for_writes
from api.schemas import EventIn, EventsAccepted, EventsBody
from engine.profiles import StoreUnavailableError

router = APIRouter(prefix=API_PREFIX, tags=["events"])

_EXAMPLES = {
    "one event": {
        "summary": "a click",
        "value": {"visitor_id": "v-7f3a9c", "item_id": "sku158", "type": "click"},
    },
    "login": {
        "summary": "an event that links the visitor to a customer (merges the session)",
        "value": {
            "event_id": "9d1c0b7e4a3f4c2b8e6d5a4b3c2d1e0f",
            "visitor_id": "v-7f3a9c",
            "customer_id": "c103",
            "item_id": "sku158",
            "type": "view",
        },
    },
    "batch": {
        "summary": "a batch (a JSON array; at most max_batch events)",
        "value": [
            {"event_id": "e1", "visitor_id": "v-7f3a9c", "item_id": "sku158", "type": "view",
             "timestamp": 1_767_000_000.0},
            {"event_id": "e2", "visitor_id": "v-7f3a9c", "item_id": "sku158",
             "type": "add_to_cart", "timestamp": 1_767_000_030.0},
        ],
    },
}  # fmt: skip


@router.post(
    "/events",
    summary="Record events (one object or an array)",
    description="Stores every event before answering 202, so a 202 is never given for an event "
    "that was not stored; if the store is unreachable the answer is 503 with Retry-After and "
    "nothing is acknowledged (retrying with the same event ids is safe). An event id seen before "
    "counts as a duplicate. Events for items the model does not know yet are stored and counted. "
    "An event with a customer_id links the visitor's session to that customer. More than "
    "max_batch events: 413.",
    status_code=HTTPStatus.ACCEPTED,
    response_model=EventsAccepted,
    responses={
        413: {"description": "body or batch too large"},
        503: {"description": "profile store unreachable: nothing stored, retry"},
    },
)
async def record_events(
    request: Request, body: Annotated[EventsBody, Body(openapi_examples=_EXAMPLES)]
) -> Response:
    # A hot path: the body is FastAPI's to validate, the rest is read off the app's state
    # rather than through dependencies (tens of microseconds each), the answer written by orjson.
    state = request.app.state
    settings, store, metrics = state.settings, state.store, state.metrics
    recommender = state.holder.current
    batch: list[EventIn] = body if isinstance(body, list) else [body]
    if len(batch) > settings.max_batch:
        raise HTTPException(
            413, f"{len(batch)} events in one request; at most {settings.max_batch}"
        )
    now = time.time()
    events = [e.to_event(now) for e in batch]
    try:
        stored = await store.record(events)
    except StoreUnavailableError as exc:
        store_failed(metrics, "record", exc)
        raise unavailable_for_writes() from exc
    tally = Counter(
        (e.type, "new" if new else "duplicate") for e, new in zip(events, stored, strict=True)
    )
    for (kind, result), n in tally.items():
        metrics.events.labels(kind, result).inc(n)
    unknown = 0 if recommender is None else sum(not recommender.knows(e.item_id) for e in events)
    if unknown:
        metrics.unknown_item_events.inc(unknown)
    accepted = sum(stored)
    return json_response(
        {"accepted": accepted, "duplicates": len(events) - accepted, "unknown_items": unknown},
        HTTPStatus.ACCEPTED,
    )
