"""Privacy through the API on a real (private) redis-server: erasure leaves nothing of the
visitor, and withdrawn consent stops every personalized answer.

Redis is inspected directly, with SCAN (never KEYS), under a key prefix of this test's own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest
import redis.asyncio as aioredis
from api_server import ApiClient, serving

from api.settings import ApiSettings
from engine.profiles import EVENT_TYPES, Keys
from personalize.cli import main as personalize_main

KEY = "privacy-key"
AUTH = {"X-API-Key": KEY}
CUSTOMER, OTHER_CUSTOMER = "c103", "c104"  # customers of the generated shop


@pytest.fixture
async def client(small_shop: Path, redis_url: str) -> AsyncIterator[ApiClient]:
    settings = ApiSettings(
        models_dir=small_shop,
        redis_url=redis_url,
        key_prefix=f"p{uuid.uuid4().hex[:10]}:",
        api_keys=[KEY],
        watch_seconds=0,
    )
    async with serving(settings) as c:
        yield c


@pytest.fixture
async def server(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    async with aioredis.Redis.from_url(redis_url, decode_responses=True) as r:
        yield r


async def _scan(server: aioredis.Redis, match: str) -> list[str]:
    return sorted([key async for key in server.scan_iter(match=match, count=1000)])


async def _everything(client: ApiClient, visitor: str) -> list[str]:
    """The visitor produces every kind of data the store keeps; their event ids."""
    event_ids = [f"{visitor}-{kind}" for kind in EVENT_TYPES]
    events = [
        {"event_id": event_id, "visitor_id": visitor, "item_id": f"sku{i}", "type": kind}
        for i, (event_id, kind) in enumerate(zip(event_ids, EVENT_TYPES, strict=True))
    ]
    events[0]["customer_id"] = CUSTOMER  # the login link
    response = await client.post("/v1/events", json=events, headers=AUTH)
    assert response.json()["accepted"] == len(EVENT_TYPES)
    consent = await client.put(
        f"/v1/visitors/{visitor}/consent", json={"personalization": True}, headers=AUTH
    )
    assert consent.is_success
    profile = (await client.get(f"/v1/visitors/{visitor}")).json()
    assert profile["customer_id"] == CUSTOMER and profile["consent"]["personalization"]
    assert profile["bought"] and len(profile["recent"]) == len(EVENT_TYPES)
    return event_ids


async def test_erasure_leaves_no_key_and_no_event_of_the_visitor(
    client: ApiClient, server: aioredis.Redis
) -> None:
    settings: ApiSettings = client.app.state.settings
    keys = Keys(settings.key_prefix)
    visitor, other = f"v-{uuid.uuid4().hex[:8]}", f"v-{uuid.uuid4().hex[:8]}"
    mine = await _everything(client, visitor)
    theirs = await _everything(client, other)
    assert await _scan(server, keys.visitor_match(visitor)) == sorted(keys.visitor_keys(visitor))
    seen = [k for k in await _scan(server, keys.global_match()) if ":seen:" in k]

    async def seen_ids() -> set[str]:
        return {event_id for key in seen for event_id in await server.smembers(key)}

    assert set(mine) <= await seen_ids()

    erased = await client.delete(f"/v1/visitors/{visitor}", headers=AUTH)
    assert erased.status_code == 200 and erased.json()["keys_deleted"] == 3

    assert await _scan(server, keys.visitor_match(visitor)) == []
    assert await seen_ids() == set(theirs)  # the erased visitor's ids are forgotten
    everything = await _scan(server, f"{settings.key_prefix}*")
    assert not [key for key in everything if visitor in key]
    (stream,) = keys.streams  # one shard on a single server
    entries: list[Any] = await server.xrange(stream)
    assert [fields["event_id"] for _, fields in entries] == theirs  # only the other visitor's
    # The other visitor keeps all of theirs.
    assert await _scan(server, keys.visitor_match(other)) == sorted(keys.visitor_keys(other))
    profile = (await client.get(f"/v1/visitors/{visitor}")).json()
    assert profile["recent"] == [] and profile["customer_id"] is None
    assert profile["consent"] is None


async def test_withdrawn_consent_stops_every_personalized_answer(client: ApiClient) -> None:
    visitor = f"v-{uuid.uuid4().hex[:8]}"
    await _everything(client, visitor)
    params = {"visitor_id": visitor}
    personal = (await client.get("/v1/recommendations", params=params)).json()
    assert personal["strategy"] == "customer+session" and personal["segment"]
    assert (await client.get(f"/v1/visitors/{visitor}/recent")).json()["items"]

    withdrawn = {"personalization": False}
    await client.put(f"/v1/visitors/{visitor}/consent", json=withdrawn, headers=AUTH)
    page = (await client.get("/v1/recommendations", params=params)).json()
    assert page["strategy"] == "non-personalized" and page["segment"] is None
    assert (await client.get(f"/v1/visitors/{visitor}/recent")).json()["items"] == []
    # The visitor's own access request still shows what is held (and so what erasure removes).
    profile = (await client.get(f"/v1/visitors/{visitor}")).json()
    assert profile["consent"]["personalization"] is False and profile["recent"]


def _mailed(small_shop: Path, out: Path, *consent: Path) -> set[str]:
    """The customers `personalize email-batch` would mail, with these consent files."""
    argv = ["email-batch", "--models", str(small_shop), "--out", str(out), "--holdout", "0",
            "--quiet", "--send-log", str(out.with_suffix(".jsonl"))]  # fmt: skip
    for path in consent:
        argv += ["--consent", str(path)]
    assert personalize_main(argv) == 0
    return set(pa_csv.read_csv(out)["customer_id"].cast(pa.string()).to_pylist())


async def test_a_storefront_withdrawal_stops_the_personalised_mail(
    client: ApiClient, small_shop: Path, tmp_path: Path
) -> None:
    """The withdrawal reaches the e-mail batch through `personalize consent-export`."""
    settings: ApiSettings = client.app.state.settings
    assert settings.redis_url is not None
    crm = tmp_path / "crm-consent.csv"
    crm.write_text(
        "customer_id,channel,status,timestamp\n"
        f"{CUSTOMER},email,given,2020-01-01\n{OTHER_CUSTOMER},email,given,2020-01-01\n"
    )
    assert _mailed(small_shop, tmp_path / "before.csv", crm) == {CUSTOMER, OTHER_CUSTOMER}

    for customer, given in ((CUSTOMER, False), (OTHER_CUSTOMER, True)):
        visitor = f"v-{uuid.uuid4().hex[:8]}"
        event = {"visitor_id": visitor, "item_id": "sku1", "type": "view", "customer_id": customer}
        assert (await client.post("/v1/events", json=event, headers=AUTH)).status_code == 202
        statement = {"personalization": given}
        await client.put(f"/v1/visitors/{visitor}/consent", json=statement, headers=AUTH)
    exported = tmp_path / "storefront-consent.csv"
    argv = ["consent-export", "--redis-url", settings.redis_url,
            "--key-prefix", settings.key_prefix, "--out", str(exported)]  # fmt: skip
    # The command runs its own event loop: off this test's loop, in a thread.
    assert await asyncio.to_thread(personalize_main, argv) == 0

    assert _mailed(small_shop, tmp_path / "after.csv", crm, exported) == {OTHER_CUSTOMER}
