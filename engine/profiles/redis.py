"""The production profile store: Redis through redis.asyncio (hiredis parser when installed).

Recording is one round trip per :meth:`RedisProfileStore.record` call, whatever the batch size:
one pipeline of ``EVALSHA`` calls. The global script takes up to EVENTS_PER_CALL events of one
global shard per call (seen ids, stream, trending: an event's global keys are in its item's shard,
see :mod:`engine.profiles.keys`); the visitor
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
from typing import Any, cast

from redis.asyncio import Redis, SSLConnection
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
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
from engine.profiles.multiplexed import (
    MultiplexedConnection,
    MultiplexError,
    MultiplexTimeoutError,
)
from engine.profiles.packing import HiredisPackingConnection

# The trending sum is scratch space: it only has to outlive the MULTI that reads it.
_UNION_TTL_SECONDS = 10
# Events per script call: a script blocks Redis while it runs, so a batch of 1000 is split into
# calls of about this many events (a few milliseconds each), all in the one pipeline.
EVENTS_PER_CALL = 250
# Stream entries an erasure scans per script call.
ERASE_PAGE = 1000
# Profile hashes read per pipeline when listing consents.
CONSENT_PAGE = 1000


def _lua(name: str) -> str:
    return files("engine.profiles").joinpath("lua", name).read_text(encoding="utf-8")


def _text(value: Any) -> str:
    """Accept clients built with or without ``decode_responses``."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _texts(values: Sequence[Any]) -> Sequence[str]:
    """:func:`_text` of a whole reply, checked once (a client decodes all of it or none)."""
    return values if not values or isinstance(values[0], str) else [_text(v) for v in values]


def _stream_id(entry_id: Any) -> tuple[int, int]:
    milliseconds, _, sequence = _text(entry_id).partition("-")
    return int(milliseconds), int(sequence)


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
    event_type = TYPE_CODES.get(head[:1])
    if not sep or event_type is None or len(head) < 2:
        raise ValueError(f"malformed recent entry {entry!r}")
    return RecentEvent(head[1:], event_type, float(base + int(seconds)))


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
        recent=tuple([parse_recent(entry, base) for entry in _texts(recent)]),
        counters=counters,
        bought=frozenset(_text(item) for item in bought),
        first_seen=float(data["first_seen"]) if "first_seen" in data else None,
        last_seen=float(data["last_seen"]) if "last_seen" in data else None,
        consent=consent,
    )


def client_options(
    *,
    socket_timeout: float = 1.0,
    connect_timeout: float = 1.0,
    retries: int = 2,
    backoff_cap: float = 0.25,
    max_connections: int | None = None,
    health_check_interval: int = 30,
) -> dict[str, Any]:
    """Client options that fail fast and reconnect by themselves.

    Timeouts are short because a personalization call should degrade (fall back to popular
    items) rather than hang. Connection and timeout errors are retried ``retries`` times with
    jittered exponential backoff; a dead pooled connection (Redis restarted) is dropped and the
    retry reconnects, so the store recovers without being rebuilt. A resent write is safe: the
    scripts are idempotent by event id (if a timed-out pipeline had in fact run, the resend
    reports those events as seen before, but stores nothing twice).
    """
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": connect_timeout,
        "retry": Retry(ExponentialWithJitterBackoff(base=0.01, cap=backoff_cap), retries),
        "health_check_interval": health_check_interval,
    }
    if max_connections is not None:
        options["max_connections"] = max_connections
    return options


class RedisProfileStore:
    """Session profiles, trending, the event stream and availability in Redis.

    Args:
        client: a ``redis.asyncio.Redis`` or ``RedisCluster`` client. Its retry policy decides
            how often a failed command is retried before :class:`StoreUnavailableError`.
        keys: the key layout (prefix, global shards); default prefix ``p13n:``, one shard.
        limits: caps and TTLs of everything the store writes.
        clock: epoch seconds; picks the trending bucket (injectable for tests).
        owns_client: close the client in :meth:`close` (set by the ``from_*`` factories).
        pipelined: a pipelined connection to the same server for the per-request calls (the
            read of :meth:`context`, the scripts of :meth:`record`), which fall back to
            ``client`` when it gets no reply short of a timeout; owned by the store.
            ``from_url`` opens one for ``redis://`` URLs.
    """

    def __init__(
        self,
        client: Redis | RedisCluster,
        keys: Keys | None = None,
        limits: StoreLimits | None = None,
        *,
        clock: Callable[[], float] = time.time,
        owns_client: bool = False,
        pipelined: MultiplexedConnection | None = None,
    ) -> None:
        self._redis = client
        self._pipelined = pipelined
        self._keys = keys or Keys()
        self._limits = limits or StoreLimits()
        self._clock = clock
        self._owns_client = owns_client
        self._cluster = isinstance(client, RedisCluster)  # every script call keeps to one slot
        self._sentinels: list[Redis] = []  # clients of the sentinels, closed with the store
        # Script objects keep the source and its SHA; they are loaded lazily on NOSCRIPT.
        self._global: AsyncScript = client.register_script(_lua("record_global.lua"))
        self._visitor: AsyncScript = client.register_script(_lua("record_visitor.lua"))
        self._consent: AsyncScript = client.register_script(_lua("set_consent.lua"))
        self._read: AsyncScript = client.register_script(_lua("read_context.lua"))
        self._erase_events: AsyncScript = client.register_script(_lua("erase_events.lua"))
        self._trending: AsyncScript = client.register_script(_lua("trending.lua"))

    @classmethod
    def from_url(
        cls,
        url: str,
        keys: Keys | None = None,
        limits: StoreLimits | None = None,
        *,
        clock: Callable[[], float] = time.time,
        cluster: bool = False,
        **client: Any,
    ) -> RedisProfileStore:
        """A store owning a client that fails fast and reconnects by itself.

        ``redis://`` or ``rediss://`` (TLS; ``ssl_ca_certs`` and the other ``ssl_*`` options may
        be query parameters), with a user and password if the server wants them. With
        ``cluster`` the URL names one node of a Redis Cluster and the client finds the rest.
        ``client`` overrides the options of :func:`client_options`.
        """
        options = client_options(**client)
        if cluster:
            options.pop("health_check_interval")  # the cluster client checks nodes itself
            return cls(RedisCluster.from_url(url, **options), keys, limits, clock=clock,
                       owns_client=True)  # fmt: skip
        pipelined = None
        if url.startswith(("redis://", "unix://")):
            # Plain TCP and Unix sockets get the pipelined read (TCP the C packer too); TLS keeps
            # redis-py's own classes.
            given = parse_url(url)
            if url.startswith("redis://"):
                options["connection_class"] = HiredisPackingConnection
            pipelined = MultiplexedConnection(
                given.get("host", "localhost"),
                int(given.get("port", 6379)),
                db=int(given.get("db", 0)),
                username=given.get("username"),
                password=given.get("password"),
                timeout=options["socket_timeout"],
                connect_timeout=options["socket_connect_timeout"],
                path=given.get("path"),
            )
        redis = Redis.from_url(url, **options)
        return cls(redis, keys, limits, clock=clock, owns_client=True, pipelined=pipelined)

    @classmethod
    def from_sentinel(
        cls,
        sentinels: Sequence[tuple[str, int]],
        url: str,
        keys: Keys | None = None,
        limits: StoreLimits | None = None,
        *,
        clock: Callable[[], float] = time.time,
        **client: Any,
    ) -> RedisProfileStore:
        """A store on the master that Redis Sentinel knows by the URL's host, following failovers.

        ``redis://[[user]:password@]<master name>[/db]`` (``rediss://`` for TLS): the URL's host
        is the master's service name, since the sentinels say where the master is. The same
        password and TLS setting are used to ask the sentinels.
        """
        options = client_options(**client)
        given: dict[str, Any] = dict(parse_url(url))
        master = given.pop("host", None)
        if not master:
            raise ValueError("with Sentinel, the Redis URL's host must be the master's name")
        given.pop("port", None)
        if given.pop("connection_class", None) is SSLConnection:
            given["ssl"] = True
        options.update(given)
        asking = {
            k: v
            for k, v in options.items()
            if k.startswith(("socket_", "ssl")) or k in ("retry", "username", "password")
        }
        sentinel = Sentinel(sentinels, sentinel_kwargs=asking, **options)
        store = cls(sentinel.master_for(master), keys, limits, clock=clock, owns_client=True)
        store._sentinels = sentinel.sentinels
        return store

    @property
    def keys(self) -> Keys:
        return self._keys

    @property
    def limits(self) -> StoreLimits:
        return self._limits

    # --- writes ---------------------------------------------------------------------------------

    def _window(self) -> int:
        """The current idempotency window (see record_global.lua)."""
        return int(self._clock() // self._limits.idempotency_ttl_seconds)

    def _seen_sets(self, shard: int, window: int) -> list[str]:
        """A shard's seen-id sets: the window's, the previous one's, the one before."""
        return [self._keys.seen(shard, window - back) for back in range(3)]

    def _global_call(
        self, shard: int, events: Sequence[Event], bucket: int, window: int
    ) -> tuple[AsyncScript, list[str], list[str]]:
        """One shard's events for one call of the global script (every key in the shard)."""
        limits, keys = self._limits, self._keys
        names = self._seen_sets(shard, window)
        names += [keys.stream(shard), keys.trending(shard, bucket)]
        args = [
            # The set is checked through the next window; one more is the unlinking's slack.
            str(int((window + 3) * limits.idempotency_ttl_seconds - self._clock())),
            # MAXLEN is per stream: the shards share the cap.
            str(-(-limits.stream_max_events // keys.shards)),
            # A bucket is summed for trending_buckets widths after it starts; each write
            # pushes its expiry at least that far.
            str(limits.trending_buckets * limits.trending_bucket_seconds),
        ]
        for event in events:
            args += (event.event_id, event.visitor_id, event.customer_id or "", event.item_id,
                     event.type, _ts(event.timestamp))  # fmt: skip
        return self._global, names, args

    def _global_calls(
        self, events: Sequence[Event]
    ) -> tuple[list[tuple[AsyncScript, list[str], list[str]]], list[int]]:
        """The global script calls of a batch: each shard's events in calls of at most
        EVENTS_PER_CALL; with the order in which their verdicts come back (event positions)."""
        bucket = int(self._clock() // self._limits.trending_bucket_seconds)
        window = self._window()
        by_shard: dict[int, list[int]] = {}
        for position, event in enumerate(events):
            by_shard.setdefault(self._keys.shard(event.item_id), []).append(position)
        calls, order = [], []
        step = EVENTS_PER_CALL
        for shard, positions in by_shard.items():
            for i in range(0, len(positions), step):
                part = positions[i : i + step]
                calls.append(self._global_call(shard, [events[p] for p in part], bucket, window))
                order += part
        return calls, order

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
        if self._cluster:
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
            replies = await self._send(
                [("EVALSHA", script.sha, len(keys), *keys, *args)
                 for script, keys, args in (calls[i] for i in pending)]
            )  # fmt: skip
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
                script.sha = await self._load(script)
            pending = missing
        raise StoreUnavailableError("redis kept answering NOSCRIPT after loading the scripts")

    async def _send(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """One pipeline of commands, an error reply as its exception in its place: on the
        pipelined connection when there is one, else (or when it gets no reply short of a
        timeout) redis-py's.

        Falling back after a dropped connection may run a call twice: the scripts are
        idempotent by event id, so nothing is stored twice (:func:`client_options`)."""
        if self._pipelined is not None:
            try:
                return await self._pipelined.pipeline(commands)
            except MultiplexTimeoutError as exc:
                raise StoreUnavailableError(f"redis call failed: {exc}") from exc
            except MultiplexError:
                pass  # redis-py's retries and backoff take it from here
        async with self._redis.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            return cast(list[Any], await pipe.execute(raise_on_error=False))

    async def _load(self, script: AsyncScript) -> str:
        """Load a script the server lacks (new, restarted, flushed); its SHA. Through the
        pipelined connection when the calls go there: a burst of requests after a restart
        then does not queue for redis-py's pool. redis-py loads it on every node of a
        cluster."""
        if self._pipelined is None:
            return _text(await self._redis.script_load(script.script))
        (sha,) = await self._send([("SCRIPT", "LOAD", script.script)])
        if isinstance(sha, Exception):
            raise sha
        return _text(sha)

    async def record(self, events: Sequence[Event]) -> list[bool]:
        """Store events in one round trip; per event, True if its id was new.

        The visitor part always runs, even for a repeated id: if an earlier attempt stored the
        global part but lost the visitor part, this completes it (and it is a no-op when the
        visitor part was stored).
        """
        if not events:
            return []
        calls, order = self._global_calls(events)
        n_global = len(calls)
        calls += self._visitor_calls(events)
        with _unavailable("record"):
            results = await self._run(calls)
        verdicts = [False] * len(events)
        flat = (verdict for reply in results[:n_global] for verdict in reply)
        for position, verdict in zip(order, flat, strict=True):
            verdicts[position] = bool(int(verdict))
        return verdicts

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
        """SCAN the profile hashes (never KEYS; on a cluster, every master), a pipeline of
        HMGETs per page of keys."""
        found: list[tuple[str, Consent]] = []
        with _unavailable("customer_consents"):
            page: list[str] = []
            async for key in self._redis.scan_iter(match=self._keys.profile_match(), count=1000):
                page.append(_text(key))
                if len(page) == CONSENT_PAGE:
                    found += await self._consents(page)
                    page = []
            found += await self._consents(page)
        return found

    async def _consents(self, keys: Sequence[str]) -> list[tuple[str, Consent]]:
        if not keys:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hmget(key, "customer_id", "consent", "consent_at")
            replies = await pipe.execute()
        return [
            (_text(customer), Consent(given=_text(given) == "1", at=float(at)))
            for customer, given, at in replies
            if customer and given is not None and at is not None
        ]

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
        their entries in every event stream and those events' idempotency markers.

        Each stream is walked a page at a time by a script that also forgets the deleted events'
        ids (Redis is never blocked for long): about 1,000 round trips for a million events in
        all.
        """
        keys = self._keys.visitor_keys(visitor_id)
        with _unavailable("erase"):
            deleted = int(await self._redis.unlink(*keys))
            for shard in range(self._keys.shards):
                await self._erase_shard(shard, visitor_id)
        return deleted

    async def _erase_shard(self, shard: int, visitor_id: str) -> None:
        keys = [self._keys.stream(shard), *self._seen_sets(shard, self._window())]
        start = "-"
        while True:
            ((scanned, last),) = await self._run(
                [(self._erase_events, keys, [visitor_id, start, str(ERASE_PAGE)])]
            )
            if int(scanned) < ERASE_PAGE:
                return
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
            if self._cluster:
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.lrange(recent, 0, cap - 1)
                    pipe.hgetall(profile)
                    pipe.smembers(bought)
                    pipe.smembers(self._keys.unavailable)
                    entries, fields, items, unavailable = await pipe.execute()
            else:
                keys = [recent, profile, bought, self._keys.unavailable]
                ((entries, flat, items, unavailable),) = await self._run(
                    [(self._read, keys, [str(cap)])]
                )
                fields = dict(zip(flat[::2], flat[1::2], strict=True))
        return (
            parse_profile(visitor_id, entries, fields, items),
            frozenset(_text(item) for item in unavailable),
        )

    async def trending(self, limit: int) -> list[tuple[str, float]]:
        """Each shard sums its window's buckets server-side and returns its top ``limit``
        (one script call per shard, one pipeline); the merge of those is the exact top, since
        all of an item's counts are in one shard.

        The sum goes to a scratch key (short TTL) rather than ZUNION's reply, so a large
        catalog never crosses the wire; the script keeps concurrent callers apart.
        """
        if limit <= 0:
            return []
        limits, keys = self._limits, self._keys
        current = int(self._clock() // limits.trending_bucket_seconds)
        window = range(current - limits.trending_buckets + 1, current + 1)
        calls = [
            (self._trending,
             [keys.trending_union(shard), *(keys.trending(shard, b) for b in window)],
             [str(limit), str(_UNION_TTL_SECONDS)])
            for shard in range(keys.shards)
        ]  # fmt: skip
        with _unavailable("trending"):
            replies = await self._run(calls)
        top = [
            (_text(reply[i]), float(reply[i + 1]))
            for reply in replies
            for i in range(0, len(reply), 2)
        ]
        # ZREVRANGE's order: score, then member, both descending.
        top.sort(key=lambda pair: (pair[1], pair[0]), reverse=True)
        return top[:limit]

    async def unavailable(self) -> frozenset[str]:
        with _unavailable("unavailable"):
            members = await self._redis.smembers(self._keys.unavailable)
        return frozenset(_text(item) for item in members)

    async def events(self, count: int) -> list[dict[str, str]]:
        """The newest ``count`` stream entries, oldest first (fields only, no stream ids).

        With several shards, the newest ``count`` of each stream merged by entry id (the
        millisecond Redis stored it, then its sequence); entries of one millisecond on two
        shards come in shard order.
        """
        if count <= 0:
            return []
        with _unavailable("events"):
            async with self._redis.pipeline(transaction=False) as pipe:
                for stream in self._keys.streams:
                    pipe.xrevrange(stream, count=count)
                replies = await pipe.execute()
        entries = [
            (_stream_id(entry_id), shard, fields)
            for shard, reply in enumerate(replies)
            for entry_id, fields in reply or []
            if fields  # XREVRANGE has no deleted entries, but the reply type allows them
        ]
        entries.sort(key=lambda entry: entry[:2])
        return [{_text(k): _text(v) for k, v in fields.items()} for *_, fields in entries[-count:]]

    async def persistence(self) -> dict[str, str]:
        """Redis's ``appendonly`` and ``appendfsync`` settings: whether an acknowledged event
        survives a Redis restart. Empty when they cannot be read (Redis down, or CONFIG renamed
        away, as managed services often do). On a cluster, the first master found without the
        append-only file, else any master: one such master loses its share of the events."""
        try:
            replies: list[Any]
            if not self._cluster:
                replies = [await self._redis.config_get("append*")]
            else:
                by_node = await self._redis.config_get(
                    "append*", target_nodes=RedisCluster.PRIMARIES
                )
                replies = list(cast(dict[str, Any], by_node).values())  # one reply per master
        except (RedisError, OSError):
            return {}
        found: list[dict[str, str]] = [
            {
                _text(k): _text(v)
                for k, v in reply.items()
                if _text(k) in ("appendonly", "appendfsync")
            }
            for reply in replies
        ]
        return next((f for f in found if f.get("appendonly") == "no"), found[0] if found else {})

    async def ping(self) -> bool:
        """True if Redis answers; False instead of raising, for readiness probes."""
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        if self._pipelined is not None:
            await self._pipelined.close()
        if self._owns_client:
            await self._redis.aclose()
        for sentinel in self._sentinels:
            await sentinel.aclose()
