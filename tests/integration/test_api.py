"""The HTTP API end to end: a model trained on a generated shop, served by ``create_app``.

Runs against the embedded in-memory store and (parametrised) a RedisProfileStore on the private
redis-server of this test session. Each test builds its own app (cheap: the model is memory-
mapped) and, for Redis, its own key prefix, so tests never see each other's visitors.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from api_server import ApiClient, serving
from pydantic import ValidationError
from shops import two_version_shop

from api.cli import plan_from_args, register, run
from api.settings import ApiSettings
from engine.artifacts import current_version, list_versions, publish

KEY = "test-key-1"
OTHER_KEY = "test-key-2"
AUTH = {"X-API-Key": KEY}
CUSTOMER = "c103"  # a customer of the generated shop (seed 1)
CLICKED = "sku49"  # an item of the generated shop, not among the anonymous top 10


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models dir with v1 published and v2 (another seed) written but not published.

    Read-only: tests that publish or damage versions work on a copy (:func:`models_copy`).
    """
    return two_version_shop(tmp_path_factory.mktemp("shop"))


def versions(models: Path) -> tuple[str, str]:
    v1, v2 = list_versions(models)
    return v1, v2


@pytest.fixture
def models_copy(shop: Path, tmp_path: Path) -> Path:
    target = tmp_path / "models"
    shutil.copytree(shop, target, symlinks=True)
    return target


@pytest.fixture(params=["memory", "redis", "cluster"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def settings_for(models: Path, store_kind: str = "memory", **overrides: Any) -> ApiSettings:
    values: dict[str, Any] = {
        "models_dir": models,
        "api_keys": [KEY, OTHER_KEY],
        "watch_seconds": 0,
    }
    if store_kind in ("redis", "cluster"):
        values["redis_url"] = overrides.pop("redis_url")
        values["key_prefix"] = f"t{uuid.uuid4().hex[:12]}:"
        values["redis_cluster"] = store_kind == "cluster"
    values.update(overrides)
    return ApiSettings(**values)


@pytest.fixture
def redis_if_needed(request: pytest.FixtureRequest, store_kind: str) -> str | None:
    if store_kind == "memory":
        return None
    return str(
        request.getfixturevalue("redis_cluster_url" if store_kind == "cluster" else "redis_url")
    )


@pytest.fixture
async def client(
    shop: Path, store_kind: str, redis_if_needed: str | None
) -> AsyncIterator[ApiClient]:
    """The app with a keyed write API, on the parametrised store."""
    extra = {"redis_url": redis_if_needed} if redis_if_needed else {}
    async with serving(settings_for(shop, store_kind, **extra)) as c:
        yield c


@pytest.fixture
async def memory_client(shop: Path) -> AsyncIterator[ApiClient]:
    async with serving(settings_for(shop)) as c:
        yield c


def closed_port_url() -> str:
    from redis_server import free_port

    return f"redis://127.0.0.1:{free_port()}/0"


# --- helpers -------------------------------------------------------------------------------------


async def recommend(client: httpx.AsyncClient, visitor: str, **params: Any) -> dict[str, Any]:
    response = await client.get("/v1/recommendations", params={"visitor_id": visitor, **params})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ids(body: dict[str, Any]) -> list[str]:
    return [item["item_id"] for item in body["items"]]


async def send(client: httpx.AsyncClient, events: Any, *, expect: int = 202) -> dict[str, Any]:
    response = await client.post("/v1/events", json=events, headers=AUTH)
    assert response.status_code == expect, response.text
    body: dict[str, Any] = response.json()
    return body


def event(visitor: str, item: str, kind: str = "click", **fields: Any) -> dict[str, Any]:
    return {"visitor_id": visitor, "item_id": item, "type": kind, **fields}


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text output (0 if absent)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if head.split("{")[0] != name:
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(value)
    return 0.0


# --- personalization -----------------------------------------------------------------------------


async def test_click_changes_the_very_next_recommendation(client: httpx.AsyncClient) -> None:
    visitor = f"v-{uuid.uuid4().hex[:8]}"
    before = await recommend(client, visitor, k=10)
    assert before["strategy"] == "trending" and len(before["items"]) == 10
    assert CLICKED not in ids(before)

    await send(client, event(visitor, CLICKED))
    after = await recommend(client, visitor, k=10, explain=True)

    assert after["strategy"] == "session"
    assert ids(after) != ids(before)
    assert CLICKED not in ids(after)  # seen this session
    assert len(after["items"]) == 10
    # The clicked item's neighbours rise: the page moves towards it in the latent space.
    response = await client.get(f"/v1/items/{CLICKED}/similar", params={"k": 100})
    closeness = {item["item_id"]: item["score"] for item in response.json()["items"]}

    def mean_closeness(body: dict[str, Any]) -> float:
        return sum(closeness.get(i, -1.0) for i in ids(body)) / len(body["items"])

    assert mean_closeness(after) > mean_closeness(before)
    assert all(item["reason"] for item in after["items"])


async def test_seen_items_come_back_only_when_asked(client: httpx.AsyncClient) -> None:
    visitor = f"v-{uuid.uuid4().hex[:8]}"
    await send(client, event(visitor, CLICKED))
    assert CLICKED not in ids(await recommend(client, visitor, k=100))
    # The clicked item is the session's own best match: asked for, it comes back.
    assert CLICKED in ids(await recommend(client, visitor, k=100, include_seen=True))


async def test_login_merges_the_session_into_the_customer(client: httpx.AsyncClient) -> None:
    visitor = f"v-{uuid.uuid4().hex[:8]}"
    await send(client, [event(visitor, CLICKED), event(visitor, "sku36", "view")])
    assert (await recommend(client, visitor))["strategy"] == "session"

    await send(client, event(visitor, "sku36", "add_to_cart", customer_id=CUSTOMER))

    merged = await recommend(client, visitor)  # no customer_id: the store linked it
    assert merged["strategy"] == "customer+session"
    profile = (await client.get(f"/v1/visitors/{visitor}")).json()
    assert profile["customer_id"] == CUSTOMER
    assert [e["item_id"] for e in profile["recent"]] == ["sku36", "sku36", CLICKED]


async def test_customer_id_in_the_query(client: httpx.AsyncClient) -> None:
    body = await recommend(client, f"v-{uuid.uuid4().hex[:8]}", customer_id=CUSTOMER)
    assert body["strategy"] == "customer"
    assert len(body["items"]) == 10


# --- consent and segments ------------------------------------------------------------------------


async def consent(client: httpx.AsyncClient, visitor: str, given: bool, **body: Any) -> Any:
    response = await client.put(
        f"/v1/visitors/{visitor}/consent", json={"personalization": given, **body}, headers=AUTH
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_withdrawn_consent_means_non_personalized_lists(client: httpx.AsyncClient) -> None:
    visitor = f"v-{uuid.uuid4().hex[:8]}"
    await send(client, event(visitor, CLICKED, customer_id=CUSTOMER))
    personal = await recommend(client, visitor)
    assert personal["strategy"] == "customer+session"

    profile = await consent(client, visitor, False)
    assert profile["consent"]["personalization"] is False
    withdrawn = await recommend(client, visitor)
    anonymous = await recommend(client, f"v-{uuid.uuid4().hex[:8]}")
    assert withdrawn["strategy"] == "non-personalized" and withdrawn["segment"] is None
    assert ids(withdrawn) == ids(anonymous)  # nothing of the visitor or the customer is used
    # An explicit customer_id does not override the visitor's withdrawal either.
    assert ids(await recommend(client, visitor, customer_id=CUSTOMER)) == ids(anonymous)
    # A late retry of an older "given" does not undo it; a newer one does.
    await consent(client, visitor, True, timestamp=1.0)
    assert (await recommend(client, visitor))["strategy"] == "non-personalized"
    await consent(client, visitor, True)
    assert (await recommend(client, visitor))["strategy"] == "customer+session"


async def test_consent_required_by_setting(shop: Path) -> None:
    async with serving(settings_for(shop, consent_required=True)) as c:
        visitor = f"v-{uuid.uuid4().hex[:8]}"
        await send(c, event(visitor, CLICKED))
        assert (await recommend(c, visitor))["strategy"] == "non-personalized"
        await consent(c, visitor, True)
        assert (await recommend(c, visitor))["strategy"] == "session"


async def test_malformed_consent_gets_422(memory_client: httpx.AsyncClient) -> None:
    for body in ({}, {"personalization": "maybe"}, {"personalization": True, "channel": "x"}):
        response = await memory_client.put("/v1/visitors/v1/consent", json=body, headers=AUTH)
        assert response.status_code == 422, body
        assert response.json()["detail"][0]["loc"][0] == "body"


async def test_segments_report_members_and_profile(client: ApiClient) -> None:
    report = (await client.get("/v1/segments")).json()
    segments = {row["name"]: row for row in report["segments"]}
    assert sum(row["customers"] for row in segments.values()) == report["customers"]
    assert sum(row["revenue_share"] for row in segments.values()) == pytest.approx(1.0, abs=1e-3)

    model = client.app.state.holder.current.model
    mine = model.segment_of(CUSTOMER)
    members = await client.get(f"/v1/segments/{mine}/customers", params={"limit": 10_000})
    assert members.status_code == 200
    body = members.json()
    assert CUSTOMER in body["customers"] and body["total"] == segments[mine]["customers"]
    assert (await client.get("/v1/segments/no-such/customers")).status_code == 404

    visitor = f"v-{uuid.uuid4().hex[:8]}"
    await send(client, event(visitor, CLICKED, customer_id=CUSTOMER))
    assert (await client.get(f"/v1/visitors/{visitor}")).json()["segment"] == mine
    assert (await recommend(client, visitor))["segment"] == mine


async def test_boosts_and_pins_target_segments(memory_client: ApiClient) -> None:
    model = memory_client.app.state.holder.current.model
    mine = model.segment_of(CUSTOMER)
    other = next(name for name in sorted(set(model.segments.tolist())) if name != mine)
    plain = ids(await recommend(memory_client, "v-t", customer_id=CUSTOMER, k=5))
    pin = next(i for i in model.items.ids.tolist() if i not in plain)
    targeted = await recommend(
        memory_client, "v-t", customer_id=CUSTOMER, k=5, pin=pin, target_segment=mine
    )
    assert ids(targeted)[0] == pin
    elsewhere = await recommend(
        memory_client, "v-t", customer_id=CUSTOMER, k=5, pin=pin, target_segment=other
    )
    assert ids(elsewhere) == plain  # the campaign is for another segment
    anonymous = await recommend(memory_client, "v-anon", k=5, pin=pin, target_segment=mine)
    unpinned = await recommend(memory_client, "v-anon", k=5)
    assert ids(anonymous) == ids(unpinned)  # no known customer: in no segment

    bad = await memory_client.get(
        "/v1/recommendations", params={"visitor_id": "v1", "target_segment": "vip"}
    )
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["query", "target_segment", 0]


async def test_recently_viewed(client: httpx.AsyncClient) -> None:
    visitor = f"v-{uuid.uuid4().hex[:8]}"
    await send(
        client,
        [
            event(visitor, "sku1", "view", timestamp=1_700_000_000.0),
            event(visitor, "sku2", "view", timestamp=1_700_000_010.0),
            event(visitor, "sku1", "click", timestamp=1_700_000_020.0),
        ],
    )
    response = await client.get(f"/v1/visitors/{visitor}/recent", params={"k": 5})
    assert response.status_code == 200
    assert [i["item_id"] for i in response.json()["items"]] == ["sku1", "sku2"]


async def test_filters_pagination_and_explain(memory_client: httpx.AsyncClient) -> None:
    visitor = "v-filters"
    first = await recommend(memory_client, visitor, k=10)
    assert all(item["reason"] is None for item in first["items"])  # explain defaults to off
    second = await recommend(memory_client, visitor, k=10, offset=10)
    assert len(second["items"]) == 10 and not set(ids(first)) & set(ids(second))

    category = first["items"][0]["category"]
    only = await recommend(memory_client, visitor, k=5, include_category=category)
    assert {item["category"] for item in only["items"]} == {category}
    without = await recommend(memory_client, visitor, k=10, exclude_category=category)
    assert category not in {item["category"] for item in without["items"]}

    cheap = await recommend(memory_client, visitor, k=10, min_price=2, max_price=4)
    assert cheap["items"] and all(2 <= item["price"] <= 4 for item in cheap["items"])

    pinned = await recommend(memory_client, visitor, k=5, pin=["sku7", "sku8"])
    assert ids(pinned)[:2] == ["sku7", "sku8"]

    capped = await recommend(memory_client, visitor, k=10, max_per_category=1)
    categories = [item["category"] for item in capped["items"]]
    assert len(categories) == 10 and len(set(categories)) == 10


async def test_item_lists(memory_client: httpx.AsyncClient) -> None:
    for path in (f"/v1/items/{CLICKED}/similar", f"/v1/items/{CLICKED}/bought-together"):
        response = await memory_client.get(path, params={"k": 5})
        assert response.status_code == 200, response.text
        body = response.json()
        assert 0 < len(body["items"]) <= 5 and CLICKED not in ids(body)
        assert body["degraded"] is False
    trending = await memory_client.get("/v1/trending", params={"k": 7})
    assert len(trending.json()["items"]) == 7
    missing = await memory_client.get("/v1/items/no-such-item/similar")
    assert missing.status_code == 404


# --- events --------------------------------------------------------------------------------------


async def test_events_are_idempotent_by_id(client: httpx.AsyncClient) -> None:
    visitor = f"v-{uuid.uuid4().hex[:8]}"
    click = event(visitor, CLICKED, event_id=f"e-{uuid.uuid4().hex}")
    assert await send(client, click) == {"accepted": 1, "duplicates": 0, "unknown_items": 0}
    assert await send(client, click) == {"accepted": 0, "duplicates": 1, "unknown_items": 0}

    profile = (await client.get(f"/v1/visitors/{visitor}")).json()
    assert profile["counters"] == {"click": 1}
    assert len(profile["recent"]) == 1


async def test_unknown_items_are_stored_and_counted(client: httpx.AsyncClient) -> None:
    visitor = f"v-{uuid.uuid4().hex[:8]}"
    body = await send(client, [event(visitor, "sku-newer-than-the-model"), event(visitor, "sku1")])
    assert body == {"accepted": 2, "duplicates": 0, "unknown_items": 1}

    profile = (await client.get(f"/v1/visitors/{visitor}")).json()
    assert "sku-newer-than-the-model" in [e["item_id"] for e in profile["recent"]]
    page = await recommend(client, visitor, k=10)  # scoring ignores what it does not know
    assert len(page["items"]) == 10
    metrics = (await client.get("/metrics")).text
    assert metric_value(metrics, "personalize_unknown_item_events_total") == 1


async def test_erasure_removes_every_key(client: ApiClient, store_kind: str) -> None:
    visitor = f"v-{uuid.uuid4().hex[:8]}"
    await send(
        client,
        [
            event(visitor, CLICKED, customer_id=CUSTOMER),
            event(visitor, "sku36", "purchase"),
        ],
    )
    assert (await client.get(f"/v1/visitors/{visitor}")).json()["recent"]

    erased = await client.delete(f"/v1/visitors/{visitor}", headers=AUTH)
    assert erased.status_code == 200
    assert erased.json()["keys_deleted"] > 0

    profile = (await client.get(f"/v1/visitors/{visitor}")).json()
    assert profile["recent"] == [] and profile["customer_id"] is None
    assert profile["counters"] == {} and profile["bought"] == []
    if store_kind != "memory":
        settings: ApiSettings = client.app.state.settings
        assert settings.redis_url is not None
        cls = redis.RedisCluster if settings.redis_cluster else redis.Redis
        with cls.from_url(settings.redis_url) as r:  # every master of a cluster
            left = [k for k in r.scan_iter(match=f"{settings.key_prefix}*", count=1000)
                    if visitor.encode() in k]  # fmt: skip
        assert left == []
    again = await client.delete(f"/v1/visitors/{visitor}", headers=AUTH)
    assert again.json()["keys_deleted"] == 0


async def test_unavailable_item_disappears_at_once(client: httpx.AsyncClient) -> None:
    visitor = f"v-{uuid.uuid4().hex[:8]}"
    top = ids(await recommend(client, visitor, k=10))[0]

    response = await client.put(
        "/v1/items/availability", json={"item_ids": [top], "available": False}, headers=AUTH
    )
    assert response.status_code == 200, response.text
    page = await recommend(client, visitor, k=10)
    assert top not in ids(page) and len(page["items"]) == 10
    trending = (await client.get("/v1/trending", params={"k": 20})).json()
    assert top not in ids(trending)

    await client.put(
        "/v1/items/availability", json={"item_ids": [top], "available": True}, headers=AUTH
    )
    assert ids(await recommend(client, visitor, k=10))[0] == top


# --- auth ----------------------------------------------------------------------------------------

WRITES = [
    ("POST", "/v1/events", {"json": event("v-auth", "sku1")}),
    ("PUT", "/v1/items/availability", {"json": {"item_ids": ["sku1"], "available": True}}),
    ("DELETE", "/v1/visitors/v-auth", {}),
    ("PUT", "/v1/visitors/v-auth/consent", {"json": {"personalization": True}}),
    ("POST", "/v1/admin/reload", {}),
]
READS = [
    ("GET", "/v1/recommendations", {"params": {"visitor_id": "v-auth"}}),
    ("GET", "/v1/items/sku1/similar", {}),
    ("GET", "/v1/items/sku1/bought-together", {}),
    ("GET", "/v1/trending", {}),
    ("GET", "/v1/visitors/v-auth", {}),
    ("GET", "/v1/visitors/v-auth/recent", {}),
    ("GET", "/v1/segments", {}),
    ("GET", "/v1/segments/loyal/customers", {}),
]


@pytest.mark.parametrize(("method", "url", "kwargs"), WRITES)
async def test_writes_need_a_key(
    memory_client: httpx.AsyncClient, method: str, url: str, kwargs: dict[str, Any]
) -> None:
    missing = await memory_client.request(method, url, **kwargs)
    assert missing.status_code == 401
    wrong = await memory_client.request(method, url, headers={"X-API-Key": "nope"}, **kwargs)
    assert wrong.status_code == 403
    assert "nope" not in wrong.text
    for key in (KEY, OTHER_KEY):
        right = await memory_client.request(method, url, headers={"X-API-Key": key}, **kwargs)
        assert 200 <= right.status_code < 300, right.text


@pytest.mark.parametrize(("method", "url", "kwargs"), READS)
async def test_reads_are_open_by_default_and_keyed_by_setting(
    shop: Path, memory_client: httpx.AsyncClient, method: str, url: str, kwargs: dict[str, Any]
) -> None:
    assert (await memory_client.request(method, url, **kwargs)).status_code == 200
    async with serving(settings_for(shop, read_requires_key=True)) as keyed:
        assert (await keyed.request(method, url, **kwargs)).status_code == 401
        wrong = await keyed.request(method, url, headers={"X-API-Key": "x"}, **kwargs)
        assert wrong.status_code == 403
        assert (await keyed.request(method, url, headers=AUTH, **kwargs)).status_code == 200


def test_production_refuses_to_run_without_keys(shop: Path) -> None:
    with pytest.raises(ValidationError, match="API key"):
        ApiSettings(models_dir=shop, environment="production")
    assert ApiSettings(models_dir=shop, environment="production", api_keys=["k"]).api_keys


def test_keys_parse_from_a_comma_separated_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSONALIZE_API_KEYS", "alpha, beta")
    monkeypatch.setenv("PERSONALIZE_CORS_ORIGINS", "https://shop.example")
    settings = ApiSettings()
    assert [k.get_secret_value() for k in settings.api_keys] == ["alpha", "beta"]
    assert "alpha" not in repr(settings)
    assert settings.cors_origins == ["https://shop.example"]


# --- bad input -----------------------------------------------------------------------------------

BAD_REQUESTS = [
    ("GET", "/v1/recommendations", {"params": {"visitor_id": "v1", "k": 0}}, ["query", "k"]),
    ("GET", "/v1/recommendations", {"params": {"visitor_id": "v1", "k": 101}}, ["query", "k"]),
    ("GET", "/v1/recommendations", {"params": {"k": 5}}, ["query", "visitor_id"]),
    ("GET", "/v1/recommendations", {"params": {"visitor_id": "v{1}"}}, ["query", "visitor_id"]),
    ("GET", "/v1/recommendations", {"params": {"visitor_id": "v" * 200}}, ["query", "visitor_id"]),
    # A trailing newline passes Python's `$` (engine.profiles.valid_id), never this edge.
    ("GET", "/v1/recommendations", {"params": {"visitor_id": "v1\n"}}, ["query", "visitor_id"]),
    ("POST", "/v1/events", {"json": event("v1\n", "sku1")}, ["body", "event", "visitor_id"]),
    ("GET", "/v1/recommendations", {"params": {"visitor_id": "v1", "offset": -1}},
     ["query", "offset"]),
    ("GET", "/v1/recommendations", {"params": {"visitor_id": "v1", "min_price": 9,
     "max_price": 3}}, ["query", "max_price"]),
    ("GET", "/v1/recommendations", {"params": {"visitor_id": "v1", "boost": "sku1:lots"}},
     ["query", "boost", 0]),
    ("GET", "/v1/recommendations", {"params": {"visitor_id": "v1", "pin": "a*b"}},
     ["query", "pin", 0]),
    ("GET", "/v1/recommendations", {"params": {"visitor_id": "v1", "customer_id": "c:1"}},
     ["query", "customer_id"]),
    ("GET", "/v1/visitors/v{x}", {}, ["path", "visitor_id"]),
    ("GET", f"/v1/items/{'i' * 200}/similar", {}, ["path", "item_id"]),
    ("POST", "/v1/events", {"json": event("v1", "sku1", "like")}, ["body", "event", "type"]),
    ("POST", "/v1/events", {"json": [event("v1", "sku1"), event("v1", "sku 1")]},
     ["body", "batch", 1, "item_id"]),
    ("POST", "/v1/events", {"json": event("v1", "sku1", event_id="{x}")},
     ["body", "event", "event_id"]),
    ("POST", "/v1/events", {"json": event("v1", "sku1", timestamp=4e10)},
     ["body", "event", "timestamp"]),
    ("POST", "/v1/events", {"json": {"visitor_id": "v1", "type": "click"}},
     ["body", "event", "item_id"]),
    ("PUT", "/v1/items/availability", {"json": {"item_ids": ["ok", "n{o}"], "available": False}},
     ["body", "item_ids", 1]),
]  # fmt: skip


@pytest.mark.parametrize(("method", "url", "kwargs", "loc"), BAD_REQUESTS)
async def test_malformed_requests_get_422_naming_the_field(
    memory_client: httpx.AsyncClient,
    method: str,
    url: str,
    kwargs: dict[str, Any],
    loc: list[str | int],
) -> None:
    response = await memory_client.request(method, url, headers=AUTH, **kwargs)
    assert response.status_code == 422, response.text
    assert loc in [error["loc"] for error in response.json()["detail"]]


@pytest.mark.parametrize("body", [b"{", b"\xc9", b""])
async def test_an_event_body_that_is_not_json_gets_400(
    memory_client: httpx.AsyncClient, body: bytes
) -> None:
    headers = {**AUTH, "content-type": "application/json"}
    response = await memory_client.post("/v1/events", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith("the body is not JSON")


async def test_an_event_body_declared_as_another_type_gets_422(
    memory_client: httpx.AsyncClient,
) -> None:
    headers = {**AUTH, "content-type": "application/xml"}
    body = b'{"visitor_id": "v1", "item_id": "sku1", "type": "click"}'
    response = await memory_client.post("/v1/events", content=body, headers=headers)
    assert response.status_code == 422, response.text
    assert [error["loc"] for error in response.json()["detail"]] == [["body"]]
    assert "Content-Type" in response.json()["detail"][0]["msg"]
    accepted = await memory_client.post(
        "/v1/events", content=body, headers={**AUTH, "content-type": "application/json"}
    )
    assert accepted.status_code == 202, accepted.text


async def test_oversize_body_gets_413(shop: Path) -> None:
    async with serving(settings_for(shop, max_body_bytes=2048)) as c:
        big = [event("v-big", f"sku{i}") for i in range(100)]
        declared = await c.post("/v1/events", json=big, headers=AUTH)
        assert declared.status_code == 413

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
            payload = httpx.Request("POST", "/", json=big).read()
            for start in range(0, len(payload), 512):
                yield payload[start : start + 512]

        streamed = await c.post(
            "/v1/events",
            content=chunks(),
            headers={**AUTH, "content-type": "application/json"},
        )
        assert streamed.status_code == 413
        profile = (await c.get("/v1/visitors/v-big")).json()
        assert profile["recent"] == []


async def test_oversize_batch_gets_413_and_stores_nothing(shop: Path) -> None:
    async with serving(settings_for(shop, max_batch=5)) as c:
        response = await c.post(
            "/v1/events", json=[event("v-batch", f"sku{i}") for i in range(6)], headers=AUTH
        )
        assert response.status_code == 413
        assert (await c.get("/v1/visitors/v-batch")).json()["recent"] == []
        availability = await c.put(
            "/v1/items/availability",
            json={"item_ids": [f"sku{i}" for i in range(6)], "available": False},
            headers=AUTH,
        )
        assert availability.status_code == 413
        assert (await send(c, [event("v-batch", f"sku{i}") for i in range(5)]))["accepted"] == 5


# --- model reload --------------------------------------------------------------------------------


async def test_reload_switches_the_model(models_copy: Path) -> None:
    v1, v2 = versions(models_copy)
    async with serving(settings_for(models_copy)) as c:
        assert (await recommend(c, "v1"))["model_version"] == v1
        unchanged = (await c.post("/v1/admin/reload", headers=AUTH)).json()
        assert unchanged["outcome"] == "unchanged" and unchanged["version"] == v1

        publish(models_copy, v2)
        response = await c.post("/v1/admin/reload", headers=AUTH)
        assert response.json() == {
            "outcome": "reloaded",
            "version": v2,
            "previous_version": v1,
            "error": None,
        }
        assert (await recommend(c, "v1"))["model_version"] == v2
        metrics = (await c.get("/metrics")).text
        assert metric_value(metrics, "personalize_model_info", version=v2) == 1
        assert metric_value(metrics, "personalize_model_reloads_total", outcome="reloaded") == 2


async def test_damaged_version_is_refused_and_the_old_one_keeps_serving(
    models_copy: Path,
) -> None:
    v1, v2 = versions(models_copy)
    factors = models_copy / v2 / "item_factors.npy"
    data = bytearray(factors.read_bytes())
    data[-3] ^= 0xFF  # one flipped bit pattern in the payload, not the header
    factors.write_bytes(bytes(data))
    link = models_copy / "current.tmp"
    os.symlink(v2, link)
    os.replace(link, models_copy / "current")  # published by hand, unchecked
    assert current_version(models_copy) == v2

    async with serving(settings_for(models_copy)) as c:
        # The app started on the damaged pointer: nothing to serve yet, so unready.
        assert (await c.get("/readyz")).status_code == 503
    publish(models_copy, v1)
    async with serving(settings_for(models_copy)) as c:
        os.symlink(v2, link)
        os.replace(link, models_copy / "current")
        response = (await c.post("/v1/admin/reload", headers=AUTH)).json()
        assert response["outcome"] == "failed"
        assert response["version"] == v1
        assert "sha256" in response["error"]

        assert (await recommend(c, "v1"))["model_version"] == v1
        ready = await c.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["model_version"] == v1 and "sha256" in ready.json()["model_error"]
        metrics = (await c.get("/metrics")).text
        assert metric_value(metrics, "personalize_model_reloads_total", outcome="failed") == 1


async def test_watcher_follows_the_current_pointer(models_copy: Path) -> None:
    _, v2 = versions(models_copy)
    async with serving(settings_for(models_copy, watch_seconds=0.02)) as c:
        publish(models_copy, v2)
        for _ in range(250):
            if (await c.get("/healthz")).json()["model_version"] == v2:
                break
            await asyncio.sleep(0.02)
        assert (await recommend(c, "v1"))["model_version"] == v2


async def test_no_model_yet_means_unready_until_one_is_published(
    shop: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-models"
    empty.mkdir()
    async with serving(settings_for(empty)) as c:
        assert (await c.get("/readyz")).status_code == 503
        response = await c.get("/v1/recommendations", params={"visitor_id": "v1"})
        assert response.status_code == 503
        # Events are still taken: the store does not need the model.
        assert (await send(c, event("v1", "sku1")))["accepted"] == 1

        v1, _ = versions(shop)
        shutil.copytree(shop / v1, empty / v1)
        publish(empty, v1)
        assert (await c.post("/v1/admin/reload", headers=AUTH)).json()["outcome"] == "reloaded"
        assert (await c.get("/readyz")).status_code == 200


# --- Redis down ----------------------------------------------------------------------------------


async def test_redis_down_degrades_reads_and_refuses_writes(shop: Path) -> None:
    settings = settings_for(shop, "redis", redis_url=closed_port_url())
    async with serving(settings) as c:
        page = await recommend(c, "v1", k=10)
        assert page["degraded"] is True and len(page["items"]) == 10

        refused = await c.post("/v1/events", json=event("v1", "sku1"), headers=AUTH)
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "1"
        unavailable = await c.put(
            "/v1/items/availability", json={"item_ids": ["sku1"], "available": False}, headers=AUTH
        )
        assert unavailable.status_code == 503

        trending = (await c.get("/v1/trending")).json()
        assert trending["degraded"] is True and len(trending["items"]) == 10
        similar = (await c.get(f"/v1/items/{CLICKED}/similar")).json()
        assert similar["degraded"] is True
        assert (await c.get("/v1/visitors/v1")).status_code == 503

        ready = await c.get("/readyz")
        assert ready.status_code == 503 and ready.json()["store"] == "unreachable"
        assert (await c.get("/healthz")).status_code == 200
        metrics = (await c.get("/metrics")).text
        assert metric_value(metrics, "personalize_store_errors_total", operation="record") == 1
        assert metric_value(metrics, "personalize_store_errors_total", operation="context") == 1


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Any]:
    from redis_server import RedisServer

    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_redis_restart_recovers(shop: Path, own_redis: Any) -> None:
    async with serving(settings_for(shop, "redis", redis_url=own_redis.url)) as c:
        assert (await send(c, event("v1", CLICKED)))["accepted"] == 1
        own_redis.stop()
        assert (await recommend(c, "v1"))["degraded"] is True
        await send(c, event("v1", "sku1"), expect=503)
        own_redis.start()
        # The same client reconnects by itself (the restarted server persisted nothing).
        assert (await recommend(c, "v1"))["degraded"] is False
        assert (await send(c, event("v1", "sku1")))["accepted"] == 1
        assert (await recommend(c, "v1"))["strategy"] == "session"
        assert (await c.get("/readyz")).status_code == 200


async def test_redis_without_append_only_file_is_reported_at_start(
    shop: Path, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The session's private server persists nothing: every acknowledged event would be lost
    # with it, and the operator must hear of it.
    with caplog.at_level(logging.WARNING, logger="api.main"):
        async with serving(settings_for(shop, "redis", redis_url=redis_url)):
            pass
    assert "appendonly no" in caplog.text


# --- health, metrics, OpenAPI --------------------------------------------------------------------


async def test_health_and_metrics(memory_client: httpx.AsyncClient, shop: Path) -> None:
    v1, _ = versions(shop)
    health = await memory_client.get("/healthz")
    assert health.json()["status"] == "ok"
    ready = await memory_client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "model_version": v1, "store": "ok",
                            "model_error": None}  # fmt: skip
    assert ready.headers["x-content-type-options"] == "nosniff"

    await recommend(memory_client, "v-metrics")
    await send(memory_client, [event("v-metrics", "sku1"), event("v-metrics", "sku2", "view")])
    await memory_client.get("/v1/visitors/v-metrics")
    await memory_client.get("/no/such/route")

    response = await memory_client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    histogram = "personalize_http_request_duration_seconds_count"
    assert metric_value(text, histogram, route="/v1/recommendations", method="GET",
                        status="200") == 1  # fmt: skip
    assert metric_value(text, histogram, route="/v1/visitors/{visitor_id}", status="200") == 1
    assert metric_value(text, histogram, route="/v1/events", method="POST", status="202") == 1
    assert metric_value(text, histogram, route="<unmatched>", status="404") == 1
    assert metric_value(text, "personalize_events_total", type="click", result="new") == 1
    assert metric_value(text, "personalize_events_total", type="view", result="new") == 1
    assert metric_value(text, "personalize_model_info", version=v1) == 1
    assert "no/such/route" not in text


async def test_cors_for_a_storefront(shop: Path) -> None:
    origin = "https://shop.example"
    async with serving(settings_for(shop, cors_origins=[origin])) as c:
        preflight = await c.options(
            "/v1/events",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-api-key",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == origin
        # The two hot routes skip the framework's layers, not the app's middleware.
        click = {"visitor_id": "v-cors", "item_id": "sku1", "type": "click"}
        for answer in (
            await c.post("/v1/events", json=click, headers={**AUTH, "Origin": origin}),
            await c.get("/v1/recommendations?visitor_id=v-cors", headers={"Origin": origin}),
        ):
            assert answer.is_success
            assert answer.headers["access-control-allow-origin"] == origin
            assert answer.headers["x-content-type-options"] == "nosniff"
        other = await c.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


async def test_hot_routes_answer_other_methods_as_the_framework_does(
    memory_client: httpx.AsyncClient,
) -> None:
    """Only GET /v1/recommendations and POST /v1/events take the short way; other methods on
    those paths get the framework's answers (HEAD like GET without a body, 405 otherwise)."""
    head = await memory_client.head("/v1/recommendations?visitor_id=v-head")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["x-content-type-options"] == "nosniff"
    for method, path in (("PUT", "/v1/recommendations"), ("GET", "/v1/events")):
        response = await memory_client.request(method, path, headers=AUTH)
        assert response.status_code == 405, (method, path, response.text)


async def test_openapi_documents_every_route(memory_client: httpx.AsyncClient) -> None:
    schema = (await memory_client.get("/openapi.json")).json()
    paths = schema["paths"]
    assert set(paths) == {
        "/v1/recommendations", "/v1/items/{item_id}/similar",
        "/v1/items/{item_id}/bought-together", "/v1/trending", "/v1/items/availability",
        "/v1/events", "/v1/visitors/{visitor_id}", "/v1/visitors/{visitor_id}/recent",
        "/v1/visitors/{visitor_id}/consent", "/v1/segments", "/v1/segments/{segment}/customers",
        "/v1/admin/reload", "/healthz", "/readyz", "/metrics", "/v1/items",
    }  # fmt: skip
    for path, operations in paths.items():
        for method, operation in operations.items():
            assert operation.get("summary"), f"{method} {path} has no summary"
            assert operation.get("tags"), f"{method} {path} has no tag"
    events = paths["/v1/events"]["post"]
    assert set(events["requestBody"]["content"]["application/json"]["examples"]) >= {
        "one event",
        "batch",
    }
    params = {p["name"]: p for p in paths["/v1/recommendations"]["get"]["parameters"]}
    assert "examples" in params["visitor_id"] and "examples" in params["k"]
    assert "APIKeyHeader" in schema["components"]["securitySchemes"]


# --- serve command -------------------------------------------------------------------------------


def _serve_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["serve", *argv])


def test_serve_passes_settings_to_every_worker(shop: Path) -> None:
    args = _serve_args(
        "--models", str(shop), "--redis-url", "redis://127.0.0.1:6390/0", "--port", "8123",
        "--workers", "2", "--api-key", "k1", "--api-key", "k2", "--environment", "production",
    )  # fmt: skip
    serve_plan = plan_from_args(args)
    assert serve_plan.environ["PERSONALIZE_MODELS_DIR"] == str(shop.resolve())
    assert serve_plan.environ["PERSONALIZE_REDIS_URL"] == "redis://127.0.0.1:6390/0"
    assert serve_plan.environ["PERSONALIZE_API_KEYS"] == "k1,k2"
    assert serve_plan.uvicorn["factory"] is True and serve_plan.uvicorn["workers"] == 2
    assert serve_plan.uvicorn["port"] == 8123
    assert serve_plan.warnings == ()

    environ: dict[str, str] = {}
    calls: list[tuple[str, dict[str, Any]]] = []
    assert run(serve_plan, environ=environ, runner=lambda app, **kw: calls.append((app, kw))) == 0
    assert calls == [("api.main:app_factory", serve_plan.uvicorn)]
    assert environ["PERSONALIZE_ENVIRONMENT"] == "production"
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        # One BLAS thread per worker, unless the operator chose otherwise.
        assert environ.get(variable, os.environ.get(variable)) == os.environ.get(variable, "1")


def test_serve_refuses_production_without_keys(shop: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERSONALIZE_API_KEYS", raising=False)
    args = _serve_args("--models", str(shop), "--environment", "production")
    with pytest.raises(ValueError, match="API key"):
        plan_from_args(args)
