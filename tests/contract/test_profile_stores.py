"""One contract every profile store meets, run against the embedded store, a single Redis and a
Redis Cluster.

The Redis cases run on a private redis-server, the cluster cases on a private three-master
cluster, each started for the session (tests/redis_server.py); each test writes under its own
key prefix, so tests never see each other's keys. On the cluster the global keys are spread over
CLUSTER_SHARDS hash tags. A fake clock drives expiry and trending windows, so nothing sleeps.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest
from redis.asyncio import Redis, RedisCluster
from redis_server import RedisServer, running_redis

from engine.profiles import (
    Consent,
    Event,
    EventType,
    Keys,
    MemoryProfileStore,
    Profile,
    RecentEvent,
    RedisProfileStore,
    StoreLimits,
    StoreUnavailableError,
)
from engine.profiles import redis as redis_store

T0 = 1_700_000_040.0  # a whole number of 60 s buckets
LIMITS = StoreLimits(
    recent_events=5,
    profile_ttl_seconds=3_600,
    idempotency_ttl_seconds=600,
    stream_max_events=1_000,
    trending_bucket_seconds=60,
    trending_buckets=3,
)
# XADD MAXLEN ~ trims whole stream nodes only (stream-node-max-entries, default 100).
STREAM_NODE_ENTRIES = 100
CLUSTER_SHARDS = 4


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Store(Protocol):
    """The contract plus the hook that runs only the visitor half of record()."""

    async def record(self, events: Any) -> list[bool]: ...
    async def profile(self, visitor_id: str) -> Profile: ...
    async def context(self, visitor_id: str) -> tuple[Profile, frozenset[str]]: ...
    async def erase(self, visitor_id: str) -> int: ...
    async def trending(self, limit: int) -> list[tuple[str, float]]: ...
    async def set_consent(self, visitor_id: str, consent: Consent) -> bool: ...
    async def customer_consents(self) -> list[tuple[str, Consent]]: ...
    async def set_availability(self, item_ids: Any, available: bool) -> None: ...
    async def unavailable(self) -> frozenset[str]: ...
    async def events(self, count: int) -> list[dict[str, str]]: ...
    async def ping(self) -> bool: ...
    async def close(self) -> None: ...
    async def _apply_visitor(self, event: Event) -> bool: ...


@dataclass
class Harness:
    kind: str
    clock: FakeClock
    make: Callable[[StoreLimits, bool], Awaitable[Store]]
    redis: Redis | RedisCluster | None = None  # a raw client on the private server (redis only)
    keys: Keys | None = None
    shards: int = 1  # the global keys' shards: events of one batch are ordered per shard
    stores: list[Store] = field(default_factory=list)

    async def store(self, limits: StoreLimits = LIMITS, *, fresh: bool = False) -> Store:
        """A store on the test's data, or with ``fresh`` on data of its own."""
        store = await self.make(limits, fresh)
        self.stores.append(store)
        return store


@pytest.fixture(params=["memory", "redis", "cluster"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    clock = FakeClock()
    if request.param == "memory":

        async def make_memory(limits: StoreLimits, fresh: bool) -> Store:
            return MemoryProfileStore(limits, clock=clock)  # each one is its own data

        h = Harness("memory", clock, make_memory)
        yield h
    else:
        cluster = request.param == "cluster"
        url: str = request.getfixturevalue("redis_cluster_url" if cluster else "redis_url")
        shards = CLUSTER_SHARDS if cluster else 1

        def prefix() -> Keys:
            return Keys(f"test-{uuid.uuid4().hex[:12]}:", shards)

        keys = prefix()

        async def make_redis(limits: StoreLimits, fresh: bool) -> Store:
            return RedisProfileStore.from_url(
                url, prefix() if fresh else keys, limits, clock=clock, cluster=cluster
            )

        raw: Redis | RedisCluster = (
            RedisCluster.from_url(url, decode_responses=True)
            if cluster
            else Redis.from_url(url, decode_responses=True)
        )
        h = Harness("redis", clock, make_redis, redis=raw, keys=keys, shards=shards)
        try:
            yield h
        finally:
            await raw.aclose()
    for store in h.stores:
        await store.close()


def per_shard(harness: Harness, entries: Sequence[Mapping[str, str] | Event]) -> list[list[str]]:
    """Event ids by global shard, in order: what the stream's order promises when one batch
    spreads over several shards (entries of one millisecond are not ordered across shards)."""
    keys = Keys(shards=harness.shards)
    shards: list[list[str]] = [[] for _ in range(harness.shards)]
    for entry in entries:
        item, event_id = (
            (entry.item_id, entry.event_id)
            if isinstance(entry, Event)
            else (entry["item_id"], entry["event_id"])
        )
        shards[keys.shard(item)].append(event_id)
    return shards


_seq = 0


def ev(
    item: str = "i1",
    kind: EventType = "view",
    visitor: str = "v1",
    ts: float | None = None,
    customer: str | None = None,
    event_id: str | None = None,
) -> Event:
    global _seq
    _seq += 1
    return Event(
        event_id=event_id or f"e{_seq}",
        visitor_id=visitor,
        item_id=item,
        type=kind,
        timestamp=T0 + _seq if ts is None else ts,
        customer_id=customer,
    )


# --- recording and reading back ----------------------------------------------------------------


async def test_record_then_profile(harness: Harness) -> None:
    store = await harness.store()
    events = [
        ev("i1", "view", ts=T0 + 20),
        ev("i2", "click", ts=T0 + 10),  # arrives out of order: first_seen is the earliest
        ev("i3", "purchase", ts=T0 + 30, customer="c9"),
        ev("i1", "view", ts=T0 + 25),
    ]
    assert await store.record(events) == [True] * 4

    profile = await store.profile("v1")
    assert profile.visitor_id == "v1"
    assert profile.recent == (  # newest recorded first
        RecentEvent("i1", "view", T0 + 25),
        RecentEvent("i3", "purchase", T0 + 30),
        RecentEvent("i2", "click", T0 + 10),
        RecentEvent("i1", "view", T0 + 20),
    )
    assert dict(profile.counters) == {"view": 2, "click": 1, "purchase": 1}
    assert profile.bought == frozenset({"i3"})
    assert profile.first_seen == T0 + 10
    assert profile.last_seen == T0 + 30
    assert profile.customer_id == "c9"
    assert not profile.is_empty


async def test_customer_link_survives_anonymous_events_and_follows_login(
    harness: Harness,
) -> None:
    store = await harness.store()
    await store.record([ev(visitor="v2")])
    assert (await store.profile("v2")).customer_id is None
    await store.record([ev(visitor="v2", customer="c1"), ev(visitor="v2")])
    assert (await store.profile("v2")).customer_id == "c1"
    await store.record([ev(visitor="v2", customer="c2")])
    assert (await store.profile("v2")).customer_id == "c2"


async def test_timestamps_first_last_exact_recent_whole_seconds(harness: Harness) -> None:
    # first_seen / last_seen round-trip exactly. Recent entries keep whole seconds (floor): the
    # session decays with a 7-day half-life and "recently viewed" orders by position, so a
    # fraction of a second changes nothing the engine computes, and 4-7 characters per entry
    # are a quarter of the entry in Redis (see StoreLimits, record_visitor.lua).
    store = await harness.store()
    ts = 1_712_345_678.123456
    await store.record([ev(ts=ts)])
    profile = await store.profile("v1")
    assert profile.recent[0].timestamp == 1_712_345_678.0
    assert profile.first_seen == profile.last_seen == ts
    # Out of order and before the first event (the Redis layout stores seconds relative to it).
    await store.record([ev(ts=ts - 3_600.5), ev(ts=ts + 86_400.999)])
    profile = await store.profile("v1")
    assert [r.timestamp for r in profile.recent] == [
        1_712_345_678.0 + 86_401,
        1_712_345_678.0 - 3_601,
        1_712_345_678.0,
    ]
    assert profile.first_seen == ts - 3_600.5
    assert profile.last_seen == ts + 86_400.999


async def test_recent_list_is_capped_newest_first(harness: Harness) -> None:
    store = await harness.store()
    await store.record([ev(f"i{n}") for n in range(8)])
    profile = await store.profile("v1")
    assert [r.item_id for r in profile.recent] == ["i7", "i6", "i5", "i4", "i3"]
    assert profile.counters["view"] == 8  # counters keep counting past the cap


async def test_one_entry_for_a_double_fired_event(harness: Harness) -> None:
    """Two ids, one type, one item, one second: both are recorded (stream, trending) but the
    session holds one signal, as a retry of either would."""
    store = await harness.store()
    assert await store.record([ev("i1", ts=T0 + 0.1), ev("i1", ts=T0 + 0.9)]) == [True] * 2
    profile = await store.profile("v1")
    assert profile.recent == (RecentEvent("i1", "view", T0),)
    assert profile.counters == {"view": 1}
    assert await store.trending(5) == [("i1", 2.0)]


async def test_unknown_visitor_has_empty_profile(harness: Harness) -> None:
    store = await harness.store()
    profile = await store.profile("nobody")
    assert profile == Profile(visitor_id="nobody")
    assert profile.is_empty
    assert dict(profile.counters) == {}


# --- idempotency --------------------------------------------------------------------------------


async def _snapshot(store: Store) -> tuple[Any, ...]:
    return (
        await store.profile("v1"),
        await store.events(10_000),
        await store.trending(100),
    )


async def test_same_event_twice_changes_nothing(harness: Harness) -> None:
    store = await harness.store()
    event = ev("i1", "purchase")
    assert await store.record([event]) == [True]
    before = await _snapshot(store)
    assert await store.record([event]) == [False]
    assert await _snapshot(store) == before
    profile, stream, trending = before
    assert dict(profile.counters) == {"purchase": 1}
    assert len(profile.recent) == 1
    assert len(stream) == 1
    assert trending == [("i1", 1.0)]


async def test_retry_of_visitor_part_does_not_double_count(harness: Harness) -> None:
    store = await harness.store()
    event = ev("i1", "click")
    # The visitor part alone first: as if an earlier attempt stored it and then failed.
    assert await store._apply_visitor(event) is True
    assert await store._apply_visitor(event) is False
    assert await store.record([event]) == [True]  # the global part had not been stored
    profile = await store.profile("v1")
    assert dict(profile.counters) == {"click": 1}
    assert len(profile.recent) == 1
    assert len(await store.events(100)) == 1


async def test_batch_returns_a_verdict_per_event(harness: Harness) -> None:
    store = await harness.store()
    seen = ev("i1")
    assert await store.record([seen]) == [True]
    again = ev("i4")
    verdicts = await store.record([seen, ev("i2"), again, ev("i3", visitor="v2"), again])
    assert verdicts == [False, True, True, True, False]
    assert await store.record([]) == []
    assert (await store.profile("v1")).counters["view"] == 3
    assert len(await store.events(100)) == 4


async def test_batch_of_many_visitors_matches_one_event_at_a_time(harness: Harness) -> None:
    events = [
        ev(f"i{n % 4}", ("view", "click", "add_to_cart", "purchase")[n % 4], visitor=f"v{n % 3}",
           ts=T0 + (n * 7) % 11, customer=f"c{n}" if n % 5 == 0 else None)
        for n in range(40)
    ]  # fmt: skip
    events.insert(8, events[3])  # a repeat inside the batch, still in the recent window
    one_by_one = await harness.store()
    single = [(await one_by_one.record([e]))[0] for e in events]
    batched = await harness.store(fresh=True)  # its own keys: the ids above are new to it
    assert await batched.record(events) == single
    assert single.count(False) == 1
    for visitor in ("v0", "v1", "v2"):
        assert await batched.profile(visitor) == await one_by_one.profile(visitor)
    assert await batched.trending(10) == await one_by_one.trending(10)
    assert per_shard(harness, await batched.events(100)) == per_shard(
        harness, await one_by_one.events(100)
    )


async def test_repeat_in_one_batch_counts_once_even_past_the_recent_cap(
    harness: Harness,
) -> None:
    store = await harness.store()
    first = ev("i1", "purchase")
    # Eight newer events push the first out of the 5-entry recent list before it comes again.
    events = [first, *(ev(f"i{n}") for n in range(2, 10)), first]
    assert await store.record(events) == [True] * 9 + [False]
    profile = await store.profile("v1")
    assert dict(profile.counters) == {"purchase": 1, "view": 8}


# --- reads that the recommender makes -----------------------------------------------------------


async def test_context_returns_profile_and_unavailable_together(harness: Harness) -> None:
    store = await harness.store()
    await store.record([ev("i1"), ev("i2", "purchase")])
    await store.set_availability(["i2", "i9"], available=False)
    profile, unavailable = await store.context("v1")
    assert profile == await store.profile("v1")
    assert unavailable == frozenset({"i2", "i9"})
    empty, unavailable = await store.context("someone-else")
    assert empty.is_empty
    assert unavailable == frozenset({"i2", "i9"})


async def test_availability_on_and_off(harness: Harness) -> None:
    store = await harness.store()
    assert await store.unavailable() == frozenset()
    await store.set_availability(["a", "b", "c"], available=False)
    assert await store.unavailable() == frozenset({"a", "b", "c"})
    await store.set_availability(["a", "zzz"], available=True)
    assert await store.unavailable() == frozenset({"b", "c"})
    await store.set_availability([], available=False)
    await store.set_availability([], available=True)
    assert await store.unavailable() == frozenset({"b", "c"})
    with pytest.raises(ValueError):
        await store.set_availability(["bad id"], available=False)


async def test_trending_order_and_window(harness: Harness) -> None:
    store = await harness.store()
    clock = harness.clock
    await store.record([ev("i1"), ev("i1"), ev("i1"), ev("i3"), ev("i3"), ev("i2")])
    assert await store.trending(2) == [("i1", 3.0), ("i3", 2.0)]

    clock.advance(60)  # next bucket: both buckets count
    await store.record([ev("i2", visitor="v2") for _ in range(4)] + [ev("i4"), ev("i5")])
    assert await store.trending(10) == [
        ("i2", 5.0),
        ("i1", 3.0),
        ("i3", 2.0),
        ("i5", 1.0),  # ties: member descending, as ZREVRANGE orders them
        ("i4", 1.0),
    ]

    clock.advance(2 * 60)  # the first bucket leaves the 3-bucket window
    assert await store.trending(10) == [("i2", 4.0), ("i5", 1.0), ("i4", 1.0)]
    clock.advance(60)
    assert await store.trending(10) == []
    assert await store.trending(0) == []


async def test_event_stream_content_oldest_first(harness: Harness) -> None:
    store = await harness.store()
    events = [ev("i1", ts=T0 + 0.5), ev("i2", "purchase", customer="c1"), ev("i3", visitor="v2")]
    for event in events:  # one by one: across shards, the stream orders by Redis's milliseconds
        await store.record([event])
        await asyncio.sleep(0.002)
    await store.record([events[0]])  # a duplicate is not streamed again
    stream = await store.events(10)
    assert stream == [
        {
            "event_id": e.event_id,
            "visitor_id": e.visitor_id,
            "customer_id": e.customer_id or "",
            "item_id": e.item_id,
            "type": e.type,
            "ts": repr(e.timestamp),
        }
        for e in events
    ]
    assert [s["item_id"] for s in await store.events(2)] == ["i2", "i3"]
    assert await store.events(0) == []


async def test_event_stream_is_bounded(harness: Harness) -> None:
    limits = StoreLimits(
        recent_events=5, stream_max_events=10, trending_bucket_seconds=60, trending_buckets=3
    )
    store = await harness.store(limits)
    events = [ev(f"i{n}", visitor=f"v{n % 7}") for n in range(300)]
    assert await store.record(events) == [True] * 300
    stream = await store.events(10_000)
    # Redis trims approximately (whole nodes), never below the cap (shared by the shards);
    # memory trims exactly. Each shard keeps its newest events.
    assert 10 <= len(stream) <= 10 + harness.shards * STREAM_NODE_ENTRIES
    for kept, recorded in zip(per_shard(harness, stream), per_shard(harness, events), strict=True):
        assert kept == recorded[len(recorded) - len(kept) :]


# --- consent -----------------------------------------------------------------------------------


async def test_consent_round_trips_and_later_statement_wins(harness: Harness) -> None:
    store = await harness.store()
    assert (await store.profile("v1")).consent is None  # never stated

    assert await store.set_consent("v1", Consent(given=True, at=T0 + 10.25))
    assert (await store.profile("v1")).consent == Consent(given=True, at=T0 + 10.25)
    assert await store.set_consent("v1", Consent(given=False, at=T0 + 20))
    # An older statement arriving late (another tab, a retry) does not undo the withdrawal.
    assert not await store.set_consent("v1", Consent(given=True, at=T0 + 15))
    profile, _ = await store.context("v1")
    assert profile.consent == Consent(given=False, at=T0 + 20)


async def test_consent_lives_beside_events_and_goes_with_erasure(harness: Harness) -> None:
    store = await harness.store()
    await store.set_consent("v1", Consent(given=False, at=T0))
    await store.record([ev("i1", customer="c1")])
    profile = await store.profile("v1")
    assert profile.consent == Consent(given=False, at=T0)
    assert profile.customer_id == "c1" and profile.counters == {"view": 1}

    assert await store.erase("v1") == 2  # recent, profile
    assert (await store.profile("v1")).consent is None


async def test_customer_consents_list_linked_visitors_statements(harness: Harness) -> None:
    store = await harness.store()
    await store.record([ev("i1", customer="c1"), ev("i2", visitor="v2", customer="c2")])
    await store.record([ev("i3", visitor="v3")])  # no customer: nobody to tell the CRM about
    await store.set_consent("v1", Consent(given=False, at=T0))
    await store.set_consent("v3", Consent(given=False, at=T0))
    assert await store.customer_consents() == [("c1", Consent(given=False, at=T0))]
    await store.set_consent("v2", Consent(given=True, at=T0 + 1))
    assert sorted(await store.customer_consents()) == [
        ("c1", Consent(given=False, at=T0)),
        ("c2", Consent(given=True, at=T0 + 1)),
    ]
    await store.erase("v1")
    assert await store.customer_consents() == [("c2", Consent(given=True, at=T0 + 1))]


async def test_consent_expires_with_the_profile(harness: Harness) -> None:
    limits = StoreLimits(profile_ttl_seconds=60)
    store = await harness.store(limits)
    await store.set_consent("v1", Consent(given=True, at=T0))
    if harness.kind == "redis":
        assert harness.redis is not None and harness.keys is not None
        assert 0 < await harness.redis.ttl(harness.keys.profile("v1")) <= 60
    else:
        harness.clock.advance(61)
        assert (await store.profile("v1")).consent is None


# --- erasure and bounds -------------------------------------------------------------------------


async def _visitor_keys_on_server(harness: Harness, visitor: str) -> list[str]:
    assert harness.redis is not None and harness.keys is not None
    return [k async for k in harness.redis.scan_iter(match=harness.keys.visitor_match(visitor))]


async def test_erase_removes_every_key_of_the_visitor(harness: Harness) -> None:
    store = await harness.store()
    await store.record([ev("i1", customer="c1"), ev("i2", "purchase"), ev("i3", visitor="v2")])
    if harness.kind == "redis":
        assert sorted(await _visitor_keys_on_server(harness, "v1")) == sorted(
            harness.keys.visitor_keys("v1")  # type: ignore[union-attr]
        )

    assert await store.erase("v1") == 3  # recent, profile, bought
    assert (await store.profile("v1")).is_empty
    assert await store.erase("v1") == 0
    if harness.kind == "redis":
        assert await _visitor_keys_on_server(harness, "v1") == []
    assert (await store.profile("v2")).counters == {"view": 1}  # others untouched
    assert await store.erase("v2") == 2  # no purchase, no bought set


async def test_erase_removes_the_visitors_events_and_their_ids(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stream is the next training log: an erased visitor's events must not reach it."""
    monkeypatch.setattr(redis_store, "ERASE_PAGE", 2)  # several pages on a short stream
    store = await harness.store()
    mine = [ev(f"i{i}", event_id=f"mine{i}") for i in range(5)]
    theirs = [ev(f"i{i}", visitor="v2", event_id=f"theirs{i}") for i in range(3)]
    await store.record([mine[0], theirs[0], mine[1], mine[2], theirs[1], mine[3], theirs[2]])
    await store.record([mine[4]])

    assert await store.erase("v1") == 2  # recent, profile
    assert per_shard(harness, await store.events(100)) == per_shard(harness, theirs)
    if harness.kind == "redis":
        keys = harness.keys
        assert harness.redis is not None and keys is not None
        assert sorted(await _seen_ids(harness)) == sorted(e.event_id for e in theirs)
    # Forgotten, not just hidden: the same ids are new again; the other visitor's are not.
    assert await store.record([mine[0], theirs[0]]) == [True, False]
    assert await store.erase("v3") == 0  # nothing of theirs: nothing changes
    assert len(await store.events(100)) == 4


async def _seen_ids(harness: Harness) -> list[str]:
    """Every event id in the server's seen-id sets (every shard, every window)."""
    assert harness.redis is not None and harness.keys is not None
    sets = [k async for k in harness.redis.scan_iter(match=harness.keys.global_match())
            if ":seen:" in k]  # fmt: skip
    return [event_id for key in sets for event_id in await harness.redis.smembers(key)]


async def test_event_ids_are_remembered_for_the_idempotency_ttl(harness: Harness) -> None:
    """At least idempotency_ttl_seconds; Redis forgets an id within twice that (its windows)."""
    store = await harness.store()
    event = ev("i1")
    assert await store.record([event]) == [True]
    harness.clock.advance(LIMITS.idempotency_ttl_seconds - 1)
    assert await store.record([event]) == [False]
    harness.clock.advance(LIMITS.idempotency_ttl_seconds + 2)
    assert await store.record([event]) == [True]
    assert await store.record([event, ev("i2")]) == [False, True]
    if harness.kind == "redis":
        assert sorted(await _seen_ids(harness)) == sorted([event.event_id, _last_id()])


def _last_id() -> str:
    return f"e{_seq}"


async def test_invalid_ids_are_rejected(harness: Harness) -> None:
    store = await harness.store()
    for bad in ["", "has space", "a{b}", "a:b", "x*", "é", "x" * 129]:
        with pytest.raises(ValueError):
            Event(event_id="e", visitor_id=bad, item_id="i", type="view", timestamp=T0)
        with pytest.raises(ValueError):
            Event(event_id=bad, visitor_id="v", item_id="i", type="view", timestamp=T0)
        with pytest.raises(ValueError):
            Event(event_id="e", visitor_id="v", item_id=bad, type="view", timestamp=T0)
        with pytest.raises(ValueError):
            await store.profile(bad)
        with pytest.raises(ValueError):
            await store.erase(bad)
    with pytest.raises(ValueError):
        Event(event_id="e", visitor_id="v", item_id="i", type="like", timestamp=T0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Event(event_id="e", visitor_id="v", item_id="i", type="view", timestamp=T0, customer_id="")


async def test_ping(harness: Harness) -> None:
    store = await harness.store()
    assert await store.ping() is True


# --- Redis only ---------------------------------------------------------------------------------


async def test_redis_record_is_one_round_trip_through_redis_py(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client's path (TLS, Sentinel, or the pipelined connection gone): one pipeline."""
    client = Redis.from_url(redis_url, decode_responses=True)
    store = RedisProfileStore(client, Keys(f"rt-{uuid.uuid4().hex[:8]}:"), LIMITS, owns_client=True)
    try:
        await store.record([ev()])  # loads the scripts if this server lacks them
        pipelines: list[Any] = []
        commands: list[tuple[Any, ...]] = []
        make_pipeline = client.pipeline

        def counting_pipeline(*args: Any, **kwargs: Any) -> Any:
            pipe = make_pipeline(*args, **kwargs)
            pipelines.append(pipe)
            return pipe

        async def counting_command(*args: Any, **kwargs: Any) -> Any:
            commands.append(args)
            raise AssertionError(f"unexpected extra round trip {args}")

        monkeypatch.setattr(client, "pipeline", counting_pipeline)
        monkeypatch.setattr(client, "execute_command", counting_command)
        assert await store.record([ev(), ev(visitor="v2"), ev("i2", "purchase")]) == [True] * 3
        assert len(pipelines) == 1 and commands == []
        assert len(pipelines[0].scripts) == 0  # no SCRIPT EXISTS before the EVALSHAs
    finally:
        await store.close()


async def test_redis_record_and_read_are_one_write_each_on_the_pipelined_connection(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RedisProfileStore.from_url(redis_url, Keys(f"rt-{uuid.uuid4().hex[:8]}:"), LIMITS)
    try:
        await store.record([ev()])  # loads the scripts if this server lacks them
        await store.context("v1")
        pipelined = store._pipelined
        assert pipelined is not None
        sent: list[int] = []
        send = pipelined.pipeline

        async def counting(commands: Any) -> list[Any]:
            sent.append(len(commands))
            return await send(commands)

        async def unexpected(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError(f"redis-py used: {args}")

        monkeypatch.setattr(pipelined, "pipeline", counting)
        monkeypatch.setattr(store._redis, "pipeline", unexpected)
        monkeypatch.setattr(store._redis, "execute_command", unexpected)
        assert await store.record([ev(), ev(visitor="v2"), ev("i2", "purchase")]) == [True] * 3
        profile, _ = await store.context("v2")
        assert [e.item_id for e in profile.recent] == ["i1"]
        assert len(sent) == 2 and sent[0] > 1  # the record's scripts in one write, the read
    finally:
        await store.close()


@dataclass
class RedisParts:
    """A store on its own key prefix and a raw client to look at what it wrote."""

    keys: Keys
    store: RedisProfileStore
    raw: Redis


@pytest.fixture
async def redis_parts(redis_url: str) -> AsyncIterator[RedisParts]:
    keys = Keys(f"t-{uuid.uuid4().hex[:8]}:")
    store = RedisProfileStore.from_url(redis_url, keys, LIMITS, clock=FakeClock())
    raw = Redis.from_url(redis_url, decode_responses=True)
    try:
        yield RedisParts(keys, store, raw)
    finally:
        await raw.aclose()
        await store.close()


async def test_redis_recent_entries_are_compact(redis_parts: RedisParts) -> None:
    keys, store, raw = redis_parts.keys, redis_parts.store, redis_parts.raw
    event = ev("i1", "purchase", event_id="0123456789abcdef0123456789abcdef", ts=T0 + 0.75)
    await store.record([event, ev("i2", ts=T0 + 62)])
    # "<type code><item> <whole seconds since t0>": no event id, no fractional seconds.
    assert await raw.lrange(keys.recent("v1"), 0, -1) == ["vi2 62", "pi1 0"]
    assert await raw.hget(keys.profile("v1"), "t0") == str(int(T0))
    assert await raw.object("encoding", keys.recent("v1")) in ("quicklist", "listpack")
    assert (await store.profile("v1")).recent == (
        RecentEvent("i2", "view", T0 + 62),
        RecentEvent("i1", "purchase", T0),
    )
    # A retry's visitor part finds the event's entry and changes nothing.
    assert await store.record([event]) == [False]
    assert (await store.profile("v1")).counters == {"purchase": 1, "view": 1}
    assert await raw.llen(keys.recent("v1")) == 2


async def test_redis_recent_list_is_trimmed_past_half_again_the_cap(
    redis_parts: RedisParts,
) -> None:
    keys, store, raw = redis_parts.keys, redis_parts.store, redis_parts.raw
    cap = LIMITS.recent_events
    for n in range(4 * cap):
        await store.record([ev(f"i{n}")])
        assert await raw.llen(keys.recent("v1")) <= cap + -(-cap // 2)
    assert len((await store.profile("v1")).recent) == cap


async def test_redis_ttl_refreshed_once_run_down(redis_parts: RedisParts) -> None:
    """An active visitor's keys skip the EXPIREs until a thirtieth of the TTL has passed."""
    keys, store, raw = redis_parts.keys, redis_parts.store, redis_parts.raw
    ttl = LIMITS.profile_ttl_seconds
    await store.record([ev("i1")])
    recent, profile, bought = keys.visitor_keys("v1")
    slack = ttl // 30
    await raw.expire(recent, ttl - slack + 5)  # not yet run down: left alone
    await store.record([ev("i2", ts=T0 + 1)])
    assert await raw.ttl(recent) <= ttl - slack + 5
    await store.record([ev("i3", "purchase", ts=T0 + 2)])  # a new bought set gets its TTL
    assert 0 < await raw.ttl(bought) <= ttl
    await raw.expire(recent, ttl - slack - 5)  # run down: every key refreshed
    await store.record([ev("i4", ts=T0 + 3)])
    for key in (recent, profile, bought):
        assert await raw.ttl(key) > ttl - 5, key


async def test_redis_every_key_has_a_ttl_or_a_bound(redis_parts: RedisParts) -> None:
    keys, store, raw = redis_parts.keys, redis_parts.store, redis_parts.raw
    await store.record([ev("i1", "purchase", customer="c1"), ev("i2", visitor="v2")])
    await store.set_availability(["i1"], available=False)
    await store.trending(5)

    for key in keys.visitor_keys("v1"):
        assert 0 < await raw.ttl(key) <= LIMITS.profile_ttl_seconds, key
    bucket = keys.trending(0, int(T0 // LIMITS.trending_bucket_seconds))
    window = LIMITS.trending_buckets * LIMITS.trending_bucket_seconds
    assert 0 < await raw.ttl(bucket) <= window

    bounded = {keys.stream(0), keys.unavailable}  # MAXLEN ~ / the size of the catalog
    written = [k async for k in raw.scan_iter(match=f"{keys.prefix}*")]
    # v1: recent, profile, bought; v2: recent, profile; the window's seen ids; stream, bucket,
    # trending union, unavailable.
    assert len(written) == 10
    for key in written:
        if key not in bounded:
            assert await raw.ttl(key) > 0, key


async def test_redis_unavailable_then_reconnects_by_itself(tmp_path: Path) -> None:
    with running_redis(tmp_path) as server:
        store = RedisProfileStore.from_url(
            server.url, limits=LIMITS, socket_timeout=0.5, connect_timeout=0.5, backoff_cap=0.02
        )
        try:
            assert await store.record([ev("i1")]) == [True]
            await _check_unavailable(server, store)
            server.start()  # same port, empty data, no scripts loaded
            assert await store.ping() is True
            assert await store.record([ev("i2")]) == [True]
            assert [r.item_id for r in (await store.profile("v1")).recent] == ["i2"]
        finally:
            await store.close()


async def _check_unavailable(server: RedisServer, store: RedisProfileStore) -> None:
    server.stop()
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.record([ev("i3")]),
        lambda: store.profile("v1"),
        lambda: store.context("v1"),
        lambda: store.erase("v1"),
        lambda: store.trending(5),
        lambda: store.set_availability(["i1"], available=False),
        lambda: store.unavailable(),
        lambda: store.events(5),
    ]
    for call in calls:
        with pytest.raises(StoreUnavailableError):
            await call()
    assert await store.ping() is False


# --- memory only --------------------------------------------------------------------------------


async def test_memory_profiles_and_event_ids_expire_by_the_clock() -> None:
    clock = FakeClock()
    store = MemoryProfileStore(LIMITS, clock=clock)
    event = ev("i1", "purchase")
    await store.record([event, ev("i2", visitor="v2")])

    clock.advance(LIMITS.idempotency_ttl_seconds - 1)
    assert await store.record([event]) == [False]
    await store.record([ev("i3", visitor="v2")])  # v2 stays active
    clock.advance(2)
    assert await store.record([event]) == [True]  # the id is forgotten...
    assert (await store.profile("v1")).counters == {"purchase": 1}  # ...the profile still knows it

    clock.advance(LIMITS.profile_ttl_seconds)  # lazy expiry on read
    assert (await store.profile("v1")).is_empty
    assert await store.erase("v1") == 0
    assert (await store.profile("v2")).is_empty
    assert len(store._visitors) == 0 and len(store._seen) <= 3


async def test_memory_sweep_drops_inactive_profiles_without_reads() -> None:
    clock = FakeClock()
    store = MemoryProfileStore(LIMITS, clock=clock)
    await store.record([ev(visitor=f"v{n}") for n in range(50)])
    clock.advance(LIMITS.profile_ttl_seconds + 1)
    await store.record([ev(visitor="fresh")])
    assert list(store._visitors) == ["fresh"]
    assert len(store._seen) == 1


async def test_memory_caps_profiles_and_event_ids() -> None:
    store = MemoryProfileStore(LIMITS, clock=FakeClock(), max_profiles=3, max_event_ids=4)
    await store.record([ev(visitor=f"v{n}") for n in range(5)])
    await store.record([ev(visitor="v2")])  # v2 becomes the most recently active
    assert list(store._visitors) == ["v3", "v4", "v2"]
    assert (await store.profile("v0")).is_empty
    assert len(store._seen) == 4
