"""The production profile store: Redis through redis.asyncio (hiredis parser when installed).

Recording is one round trip per :meth:`RedisProfileStore.record` call, whatever the batch size:
one pipeline of ``EVALSHA`` calls. The global script takes up to EVENTS_PER_CALL events per call
(idempotency markers, stream, trending: every global key shares the ``{g}`` hash tag); the visitor
script takes each visitor's events in order (recent list, counters, bought set, TTLs: a visitor's
keys share its hash tag), packed several visitors per call on a single server and one visitor per
call on Redis Cluster, so every call keeps to one slot there. Both scripts are shipped as files
beside this module and are atomic; the visitor script is idempotent on its own, so resending a
pipeline after a lost reply never double-counts.

Every Redis failure surfaces as :class:`~engine.profiles.base.StoreUnavailableError`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib.resources import files
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError

from engine.profiles.base import (
    EVENT_TYPES,
    Consent,
    Event,
    EventType,
    Profile,
    RecentEvent,
    StoreLimits,
    StoreUnavailableError,
    valid_id,
)
from engine.profiles.keys import Keys
from engine.profiles.packing import HiredisPackingConnection

# The trending sum is scratch space: it only has to outlive the MULTI that reads it.
_UNION_TTL_SECONDS = 10
# Events per script call: a script blocks Redis while it runs, so a batch of 1000 is split into
# calls of about this many events (a few milliseconds each), all in the one pipeline.
EVENTS_PER_CALL = 250
# Stream entries an erasure scans per script call.
ERASE_PAGE = 1000


def _lua(name: str) -> str:
    return files("engine.profiles").joinpath("lua", name).read_text(encoding="utf-8")


def _text(value: Any) -> str:
    """Accept clients built with or without ``decode_responses``."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _ts(timestamp: float) -> str:
    # repr round-trips a float exactly; the scripts store the string as given.
    return repr(float(timestamp))


@contextlib.contextmanager
def _unavailable(action: str) -> Iterator[None]:
    """Turn any Redis or socket failure into the one error the API knows how to degrade on."""
    try:
        yield
    except StoreUnavailableError:
        raise
    except (RedisError, OSError) as exc:
        raise StoreUnavailableError(f"redis {action} failed: {exc}") from exc


# Recent entries (record_visitor.lua): "<type code><item_id> <seconds since t0>".
TYPE_CODES: dict[str, EventType] = {
    "v": "view", "c": "click", "a": "add_to_cart", "p": "purchase"
}  # fmt: skip


def parse_recent(entry: str, base: int) -> RecentEvent:
    """Decode one recent-list entry; ``base`` is the profile's ``t0`` (whole epoch seconds)."""
    head, sep, seconds = entry.rpartition(" ")
    code, item_id = head[:1], head[1:]
    if not sep or code not in TYPE_CODES or not item_id:
        raise ValueError(f"malformed recent entry {entry!r}")
    return RecentEvent(item_id=item_id, type=TYPE_CODES[code], timestamp=float(base + int(seconds)))


def parse_profile(
    visitor_id: str, recent: Sequence[Any], fields: Mapping[Any, Any], bought: Sequence[Any]
) -> Profile:
    """Build a :class:`Profile` from the raw LRANGE / HGETALL / SMEMBERS replies."""
    data = {_text(k): _text(v) for k, v in fields.items()}
    base = int(data.get("t0", "0"))
    counters = {name: int(data[f"n_{name}"]) for name in EVENT_TYPES if f"n_{name}" in data}
    consent = (
        Consent(given=data["consent"] == "1", at=float(data["consent_at"]))
        if "consent" in data
        else None
    )
    return Profile(
        visitor_id=visitor_id,
        customer_id=data.get("customer_id") or None,
        recent=tuple(parse_recent(_text(entry), base) for entry in recent),
        counters=counters,
        bought=frozenset(_text(item) for item in bought),
        first_seen=float(data["first_seen"]) if "first_seen" in data else None,
        last_seen=float(data["last_seen"]) if "last_seen" in data else None,
        consent=consent,
    )


class RedisProfileStore:
    """Session profiles, trending, the event stream and availability in Redis.

    Args:
        client: a ``redis.asyncio.Redis`` (or cluster) client. Its retry policy decides how
            often a failed command is retried before :class:`StoreUnavailableError`.
        keys: the key layout (prefix); default prefix ``p13n:``.
        limits: caps and TTLs of everything the store writes.
        clock: epoch seconds; picks the trending bucket (injectable for tests).
        owns_client: close the client in :meth:`close` (set by :meth:`from_url`).
    """

    def __init__(
        self,
        client: Redis,
        keys: Keys | None = None,
        limits: StoreLimits | None = None,
        *,
        clock: Callable[[], float] = time.time,
        owns_client: bool = False,
    ) -> None:
        self._redis = client
        self._keys = keys or Keys()
        self._limits = limits or StoreLimits()
        self._clock = clock
        self._owns_client = owns_client
        self._per_visitor = isinstance(client, RedisCluster)  # scripts must keep to one slot
        # Script objects keep the source and its SHA; they are loaded lazily on NOSCRIPT.
        self._global: AsyncScript = client.register_script(_lua("record_global.lua"))
        self._visitor: AsyncScript = client.register_script(_lua("record_visitor.lua"))
        self._consent: AsyncScript = client.register_script(_lua("set_consent.lua"))
        self._read: AsyncScript = client.register_script(_lua("read_context.lua"))
        self._erase_events: AsyncScript = client.register_script(_lua("erase_events.lua"))

    @classmethod
    def from_url(
        cls,
        url: str,
        keys: Keys | None = None,
        limits: StoreLimits | None = None,
        *,
        clock: Callable[[], float] = time.time,
        socket_timeout: float = 1.0,
        connect_timeout: float = 1.0,
        retries: int = 2,
        backoff_cap: float = 0.25,
        max_connections: int | None = None,
        health_check_interval: int = 30,
    ) -> RedisProfileStore:
        """A store owning a client that fails fast and reconnects by itself.

        Timeouts are short because a personalization call should degrade (fall back to popular
        items) rather than hang. Connection and timeout errors are retried ``retries`` times with
        jittered exponential backoff; a dead pooled connection (Redis restarted) is dropped and
        the retry reconnects, so the store recovers without being rebuilt. A resent write is
        safe: the scripts are idempotent by event id (if a timed-out pipeline had in fact run,
        the resend reports those events as seen before, but stores nothing twice).
        """
        # Plain TCP URLs get the C packer; TLS and Unix sockets keep redis-py's own classes.
        packing: dict[str, Any] = {}
        if url.startswith("redis://"):
            packing["connection_class"] = HiredisPackingConnection
        client = Redis.from_url(
            url,
            **packing,
            decode_responses=True,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=backoff_cap), retries),
            health_check_interval=health_check_interval,
            max_connections=max_connections,
        )
        return cls(client, keys, limits, clock=clock, owns_client=True)

    @property
    def keys(self) -> Keys:
        return self._keys

    @property
    def limits(self) -> StoreLimits:
        return self._limits

    # --- writes ---------------------------------------------------------------------------------

    def _global_call(
        self, events: Sequence[Event], bucket: int
    ) -> tuple[AsyncScript, list[str], list[str]]:
        limits = self._limits
        keys = [self._keys.seen(event.event_id) for event in events]
        keys += [self._keys.stream, self._keys.trending(bucket)]
        args = [
            str(limits.idempotency_ttl_seconds),
            str(limits.stream_max_events),
            # A bucket is summed for trending_buckets widths after it starts; each write
            # pushes its expiry at least that far.
            str(limits.trending_buckets * limits.trending_bucket_seconds),
        ]
        for event in events:
            args += (event.event_id, event.visitor_id, event.customer_id or "", event.item_id,
                     event.type, _ts(event.timestamp))  # fmt: skip
        return self._global, keys, args

    def _visitor_call(
        self, visitors: Sequence[tuple[str, Sequence[Event]]]
    ) -> tuple[AsyncScript, list[str], list[str]]:
        """Visitors' events, each visitor's in order, for one call of the visitor script."""
        keys: list[str] = []
        args = [str(self._limits.recent_events), str(self._limits.profile_ttl_seconds)]
        for visitor_id, events in visitors:
            keys += self._keys.visitor_keys(visitor_id)
            args.append(str(len(events)))
            for event in events:
                args += (event.item_id, event.type, _ts(event.timestamp), event.customer_id or "")
        return self._visitor, keys, args

    def _visitor_calls(
        self, events: Sequence[Event]
    ) -> list[tuple[AsyncScript, list[str], list[str]]]:
        """The visitor script calls of a batch.

        On Redis Cluster one call per visitor (its keys are one slot). On a single server, where
        a script may take keys of any slot, visitors are packed into calls of about
        EVENTS_PER_CALL events: the per-call cost (dispatch, the script's setup, the client
        packing the command) is paid once per call, not once per visitor.
        """
        by_visitor: dict[str, list[Event]] = {}
        for event in events:
            by_visitor.setdefault(event.visitor_id, []).append(event)
        if self._per_visitor:
            return [self._visitor_call([part]) for part in by_visitor.items()]
        calls, group, size = [], [], 0
        for visitor_id, part in by_visitor.items():
            group.append((visitor_id, part))
            size += len(part)
            if size >= EVENTS_PER_CALL:
                calls.append(self._visitor_call(group))
                group, size = [], 0
        if group:
            calls.append(self._visitor_call(group))
        return calls

    async def _run(self, calls: Sequence[tuple[AsyncScript, list[str], list[str]]]) -> list[Any]:
        """EVALSHA every call in one pipeline; on NOSCRIPT load the scripts and resend those.

        redis-py's own pipeline support for Script objects sends SCRIPT EXISTS before every
        execute, which would double the round trips of a click; here the steady state is one
        round trip and a server that lost its scripts (restart, SCRIPT FLUSH) costs one more.
        Only the calls that answered NOSCRIPT are resent: a call that ran is never run again,
        so a global verdict of 1 is not turned into 0 by our own retry.
        """
        results: list[Any] = [None] * len(calls)
        pending = list(range(len(calls)))
        for _attempt in range(2):
            async with self._redis.pipeline(transaction=False) as pipe:
                for i in pending:
                    script, keys, args = calls[i]
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                replies = await pipe.execute(raise_on_error=False)
            missing: list[int] = []
            for i, reply in zip(pending, replies, strict=True):
                if isinstance(reply, NoScriptError):
                    missing.append(i)
                elif isinstance(reply, Exception):
                    raise reply
                else:
                    results[i] = reply
            if not missing:
                return results
            for script in {calls[i][0] for i in missing}:
                script.sha = _text(await self._redis.script_load(script.script))
            pending = missing
        raise StoreUnavailableError("redis kept answering NOSCRIPT after loading the scripts")

    async def record(self, events: Sequence[Event]) -> list[bool]:
        """Store events in one round trip; per event, True if its id was new.

        The visitor part always runs, even for a repeated id: if an earlier attempt stored the
        global part but lost the visitor part, this completes it (and it is a no-op when the
        visitor part was stored).
        """
        if not events:
            return []
        bucket = int(self._clock() // self._limits.trending_bucket_seconds)
        step = EVENTS_PER_CALL
        calls = [
            self._global_call(events[i : i + step], bucket) for i in range(0, len(events), step)
        ]
        n_global = len(calls)
        calls += self._visitor_calls(events)
        with _unavailable("record"):
            results = await self._run(calls)
        return [bool(int(verdict)) for reply in results[:n_global] for verdict in reply]

    async def _apply_visitor(self, event: Event) -> bool:
        """Run only the visitor script (what a retry after a partial failure does)."""
        with _unavailable("record"):
            ((applied,),) = await self._run([self._visitor_call([(event.visitor_id, [event])])])
        return bool(int(applied))

    async def set_consent(self, visitor_id: str, consent: Consent) -> bool:
        """One script call: compare with the stored statement, write, refresh the TTL."""
        key = self._keys.profile(visitor_id)
        args = ["1" if consent.given else "0", _ts(consent.at)]
        args.append(str(self._limits.profile_ttl_seconds))
        with _unavailable("set_consent"):
            (stored,) = await self._run([(self._consent, [key], args)])
        return bool(int(stored))

    async def customer_consents(self) -> list[tuple[str, Consent]]:
        """SCAN the profile hashes (never KEYS), a page of HMGETs per round trip."""
        found: list[tuple[str, Consent]] = []
        with _unavailable("customer_consents"):
            cursor: int | None = None
            while cursor != 0:
                cursor, keys = await self._redis.scan(
                    cursor or 0, match=self._keys.profile_match(), count=1000
                )
                async with self._redis.pipeline(transaction=False) as pipe:
                    for key in keys:
                        pipe.hmget(key, "customer_id", "consent", "consent_at")
                    replies = await pipe.execute()
                for customer, given, at in replies:
                    if customer and given is not None and at is not None:
                        consent = Consent(given=_text(given) == "1", at=float(at))
                        found.append((_text(customer), consent))
        return found

    async def set_availability(self, item_ids: Sequence[str], available: bool) -> None:
        """Mark items available again (remove) or unavailable (add); takes effect at once."""
        items = list(item_ids)
        for item in items:
            if not valid_id(item):
                raise ValueError(f"item_id {item!r} is not a valid id")
        if not items:
            return
        with _unavailable("set_availability"):
            if available:
                await self._redis.srem(self._keys.unavailable, *items)
            else:
                await self._redis.sadd(self._keys.unavailable, *items)

    async def erase(self, visitor_id: str) -> int:
        """Delete the visitor's keys by name (UNLINK frees memory off the main thread), then
        their entries in the event stream and those events' idempotency markers.

        The stream is walked a page at a time by a script (Redis is never blocked for long):
        about 1,000 round trips for a full stream of a million events.
        """
        keys = self._keys.visitor_keys(visitor_id)
        with _unavailable("erase"):
            deleted = int(await self._redis.unlink(*keys))
            start = "-"
            while True:
                ((scanned, last, *event_ids),) = await self._run(
                    [(self._erase_events, [self._keys.stream],
                      [visitor_id, start, str(ERASE_PAGE)])]
                )  # fmt: skip
                if event_ids:
                    await self._redis.unlink(*(self._keys.seen(_text(e)) for e in event_ids))
                if int(scanned) < ERASE_PAGE:
                    return deleted
                start = f"({_text(last)}"

    # --- reads ----------------------------------------------------------------------------------

    async def profile(self, visitor_id: str) -> Profile:
        recent, profile, bought = self._keys.visitor_keys(visitor_id)
        with _unavailable("profile"):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.lrange(recent, 0, self._limits.recent_events - 1)
                pipe.hgetall(profile)
                pipe.smembers(bought)
                entries, fields, items = await pipe.execute()
        return parse_profile(visitor_id, entries, fields, items)

    async def context(self, visitor_id: str) -> tuple[Profile, frozenset[str]]:
        """Profile and unavailable items in one round trip: one script call on a single server,
        a pipeline of the four reads on Redis Cluster (the keys span two slots).

        Not a transaction across slots: each visitor key is written atomically by one script,
        so the worst a concurrent click can do is show up in some of the replies and not yet in
        others.
        """
        recent, profile, bought = self._keys.visitor_keys(visitor_id)
        cap = self._limits.recent_events
        with _unavailable("context"):
            if self._per_visitor:
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.lrange(recent, 0, cap - 1)
                    pipe.hgetall(profile)
                    pipe.smembers(bought)
                    pipe.smembers(self._keys.unavailable)
                    entries, fields, items, unavailable = await pipe.execute()
            else:
                keys = [recent, profile, bought, self._keys.unavailable]
                # The Script object runs EVALSHA, loading the script on NOSCRIPT: one command.
                entries, flat, items, unavailable = await self._read(keys=keys, args=[cap])
                fields = dict(zip(flat[::2], flat[1::2], strict=True))
        return (
            parse_profile(visitor_id, entries, fields, items),
            frozenset(_text(item) for item in unavailable),
        )

    async def trending(self, limit: int) -> list[tuple[str, float]]:
        """Sum the window's buckets server-side and read only the top ``limit``.

        ZUNIONSTORE into a scratch key (short TTL) instead of ZUNION, so a large catalog never
        crosses the wire; MULTI keeps concurrent callers from reading each other's scratch key.
        """
        if limit <= 0:
            return []
        limits = self._limits
        current = int(self._clock() // limits.trending_bucket_seconds)
        buckets = [
            self._keys.trending(b)
            for b in range(current - limits.trending_buckets + 1, current + 1)
        ]
        union = self._keys.trending_union
        with _unavailable("trending"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zunionstore(union, buckets)
                pipe.expire(union, _UNION_TTL_SECONDS)
                pipe.zrevrange(union, 0, limit - 1, withscores=True)
                _, _, top = await pipe.execute()
        return [(_text(item), float(score)) for item, score in top]

    async def unavailable(self) -> frozenset[str]:
        with _unavailable("unavailable"):
            members = await self._redis.smembers(self._keys.unavailable)
        return frozenset(_text(item) for item in members)

    async def events(self, count: int) -> list[dict[str, str]]:
        """The newest ``count`` stream entries, oldest first (fields only, no stream ids)."""
        if count <= 0:
            return []
        with _unavailable("events"):
            entries = await self._redis.xrevrange(self._keys.stream, count=count)
        return [
            {_text(k): _text(v) for k, v in fields.items()}
            for _id, fields in reversed(entries or [])
            if fields  # XREVRANGE has no deleted entries, but the reply type allows them
        ]

    async def persistence(self) -> dict[str, str]:
        """Redis's ``appendonly`` and ``appendfsync`` settings: whether an acknowledged event
        survives a Redis restart. Empty when they cannot be read (Redis down, or CONFIG renamed
        away, as managed services often do)."""
        try:
            reply = await self._redis.config_get("append*")
        except (RedisError, OSError):
            return {}
        settings = {_text(k): _text(v) for k, v in reply.items()}
        return {k: v for k, v in settings.items() if k in ("appendonly", "appendfsync")}

    async def ping(self) -> bool:
        """True if Redis answers; False instead of raising, for readiness probes."""
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        if self._owns_client:
            await self._redis.aclose()
