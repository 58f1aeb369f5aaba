"""POST /v1/events: what visitors do, single or batched, idempotent by event id."""

from __future__ import annotations

import time
from collections import Counter
from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from starlette.requests import ClientDisconnect

from api.deps import API_KEY_HEADER, check_key
from api.routes.common import (
    API_PREFIX,
    DirectRoute,
    invalid_request,
    json_response,
    store_failed,
    unavailable_for_writes,
)
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

_EVENTS_BODY: TypeAdapter[EventIn | list[EventIn]] = TypeAdapter(EventsBody)


def _request_body_document() -> dict[str, Any]:
    """The body's OpenAPI entry, written here because the handler reads the body itself.

    Its ``$defs`` (the event's schema) are moved to the document's components by
    :func:`api.openapi.document_errors`, where the references point.
    """
    schema = _EVENTS_BODY.json_schema(ref_template="#/components/schemas/{model}")
    return {
        "required": True,
        "content": {"application/json": {"schema": schema, "examples": _EXAMPLES}},
    }


def _is_json(content_type: str | None) -> bool:
    """FastAPI's rule: JSON when the Content-Type says so (``application/json``, ``+json``) or
    says nothing; ``text/plain`` arrives here already rewritten (api/browser.py)."""
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def read_events(request: Request) -> list[EventIn]:
    """The body validated as one event or a batch in one pydantic call (JSON parsed in Rust):
    400 if it is not JSON, else errors in FastAPI's 422 shape, ``loc`` led by ``body``."""
    try:
        body = await request.body()
    except ClientDisconnect:
        # Nobody reads the answer; it ends the request quietly, as FastAPI's own body reading does.
        raise HTTPException(HTTPStatus.BAD_REQUEST, "the client left mid-body") from None
    if not _is_json(request.headers.get("content-type")):
        raise RequestValidationError([{
            "type": "content_type", "loc": ("body",), "input": None,
            "msg": "expected a JSON body (Content-Type: application/json)",
        }])  # fmt: skip
    try:
        parsed = _EVENTS_BODY.validate_json(body)
    except ValidationError as exc:
        malformed = next((e for e in exc.errors() if e["type"] == "json_invalid"), None)
        if malformed is not None:  # its input is the raw bytes, not for a JSON answer
            detail = f"the body is not JSON: {malformed['msg']}"
            raise HTTPException(HTTPStatus.BAD_REQUEST, detail) from None
        raise invalid_request(exc, "body") from None
    return parsed if isinstance(parsed, list) else [parsed]


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
    openapi_extra={"requestBody": _request_body_document()},
)
async def record_events(request: Request) -> Response:
    # A hot path, like GET /v1/recommendations: it reads the request itself (see direct_route),
    # takes the rest off the app's state, and writes the answer once, by orjson.
    state = request.app.state
    settings, store, metrics = state.settings, state.store, state.metrics
    if settings.api_keys:
        check_key(request.headers.get(API_KEY_HEADER), settings)
    batch = await read_events(request)
    recommender = state.holder.current
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


def direct_route() -> DirectRoute:
    """This route as a plain Starlette route for the app's hot paths, for the reason given in
    :func:`api.routes.recommendations.direct_route`; the FastAPI route stays for the document."""
    return DirectRoute(f"{API_PREFIX}/events", record_events, methods=["POST"])
