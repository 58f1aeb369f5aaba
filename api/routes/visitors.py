"""A visitor's profile (read), its erasure (privacy) and recently viewed items."""

from __future__ import annotations

import time
from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, HTTPException

from api.deps import MetricsDep, OptionalRecommenderDep, SettingsDep, StoreDep
from api.routes.common import (
    API_PREFIX,
    RETRY_AFTER_SECONDS,
    K,
    VisitorPath,
    personalization_allowed,
    read_context,
    store_failed,
    unavailable_for_writes,
)
from api.schemas import ConsentIn, ErasedOut, ProfileOut, RecentEventOut, RecentOut
from engine.profiles import Consent, StoreUnavailableError

reads = APIRouter(prefix=API_PREFIX, tags=["visitors"])
writes = APIRouter(prefix=API_PREFIX, tags=["visitors"])

_UNREACHABLE: dict[int | str, dict[str, Any]] = {
    503: {"description": "profile store unreachable, retry"}
}


@reads.get(
    "/visitors/{visitor_id}",
    summary="A visitor's profile",
    description="Everything the store holds about the visitor; an unknown visitor has an empty "
    "profile. 503 when the store is unreachable (an empty answer would be wrong here).",
    response_model=ProfileOut,
    responses=_UNREACHABLE,
)
async def profile(
    visitor_id: VisitorPath,
    store: StoreDep,
    metrics: MetricsDep,
    recommender: OptionalRecommenderDep,
) -> ProfileOut:
    try:
        found = await store.profile(visitor_id)
    except StoreUnavailableError as exc:
        store_failed(metrics, "profile", exc)
        raise HTTPException(
            HTTPStatus.SERVICE_UNAVAILABLE,
            "profile store unavailable, retry later",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from exc
    segment = None
    if recommender is not None and found.customer_id is not None:
        segment = recommender.model.segment_of(found.customer_id)
    return ProfileOut.of(found, segment)


@writes.put(
    "/visitors/{visitor_id}/consent",
    summary="Record a visitor's personalization consent",
    description="Given: recommendations use the session and the customer's history. Withdrawn: "
    "the visitor gets non-personalized lists (trending, under the same rules) from the next "
    "request on. Without a statement, PERSONALIZE_CONSENT_REQUIRED decides. A statement older "
    "than the stored one is ignored (out-of-order retries). Lives and expires with the profile; "
    "erasure removes it.",
    response_model=ProfileOut,
    responses=_UNREACHABLE,
)
async def set_consent(
    visitor_id: VisitorPath,
    body: ConsentIn,
    store: StoreDep,
    metrics: MetricsDep,
    recommender: OptionalRecommenderDep,
) -> ProfileOut:
    at = time.time() if body.timestamp is None else body.timestamp
    try:
        await store.set_consent(visitor_id, Consent(given=body.personalization, at=at))
    except StoreUnavailableError as exc:
        store_failed(metrics, "set_consent", exc)
        raise unavailable_for_writes() from exc
    return await profile(visitor_id, store, metrics, recommender)


@writes.delete(
    "/visitors/{visitor_id}",
    summary="Erase a visitor",
    description="Deletes every key the store holds for the visitor (the right to erasure), "
    "their events in the durable event stream and those events' idempotency markers. "
    "Idempotent: erasing an unknown visitor deletes nothing. Training logs already exported "
    "from the stream are outside the store.",
    response_model=ErasedOut,
    responses=_UNREACHABLE,
)
async def erase(visitor_id: VisitorPath, store: StoreDep, metrics: MetricsDep) -> ErasedOut:
    try:
        deleted = await store.erase(visitor_id)
    except StoreUnavailableError as exc:
        store_failed(metrics, "erase", exc)
        raise unavailable_for_writes() from exc
    return ErasedOut(visitor_id=visitor_id, keys_deleted=deleted)


@reads.get(
    "/visitors/{visitor_id}/recent",
    summary="Recently viewed items",
    description="The visitor's recent items, newest first, each once, unavailable items left "
    "out. A personalized shelf: empty for a visitor who withdrew consent (or, with "
    "PERSONALIZE_CONSENT_REQUIRED, never gave it). Without the store: an empty list, degraded.",
    response_model=RecentOut,
)
async def recent(
    visitor_id: VisitorPath,
    store: StoreDep,
    metrics: MetricsDep,
    settings: SettingsDep,
    k: K = 10,
) -> RecentOut:
    found, unavailable, degraded = await read_context(
        store, visitor_id, metrics, "/v1/visitors/{visitor_id}/recent"
    )
    if not personalization_allowed(found, settings):
        return RecentOut(visitor_id=visitor_id, items=[], degraded=degraded)
    seen: set[str] = set()
    items: list[RecentEventOut] = []
    for event in found.recent:
        if event.item_id in seen or event.item_id in unavailable:
            continue
        seen.add(event.item_id)
        items.append(
            RecentEventOut(item_id=event.item_id, type=event.type, timestamp=event.timestamp)
        )
        if len(items) == k:
            break
    return RecentOut(visitor_id=visitor_id, items=items, degraded=degraded)
