"""The embedded profile store: the default for local runs, same semantics as Redis, in-process.

Everything it keeps is bounded, like the Redis layout: recent events per visitor, the number of
profiles (least recently active evicted first), remembered event ids (by age and by number), the
event stream (a bounded deque) and the trending buckets (only the window is kept).

Concurrency: every method runs its critical section synchronously, with no ``await`` inside, so
on one event loop each call is atomic just as a Lua script is atomic in Redis. It is not meant to
be shared between threads or processes (each uvicorn worker would hold its own profiles: use
Redis when running more than one).
"""

from __future__ import annotations

import math
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import islice

from engine.profiles.base import (
    Consent,
    Event,
    Profile,
    RecentEvent,
    StoreLimits,
    valid_id,
)


def _checked_visitor(visitor_id: str) -> str:
    # Same rule as the Redis keys, so both stores refuse the same ids.
    if not valid_id(visitor_id):
        raise ValueError(f"visitor_id {visitor_id!r} is not a valid id")
    return visitor_id


@dataclass
class _Visitor:
    """What the Redis layout keeps under one visitor's three keys."""

    recent: deque[RecentEvent]  # newest first, whole seconds: an entry is its own identity
    counters: Counter[str] = field(default_factory=Counter)
    bought: set[str] = field(default_factory=set)
    customer_id: str | None = None
    first_seen: float | None = None
    last_seen: float | None = None
    consent: Consent | None = None
    expires_at: float = 0.0

    def key_count(self) -> int:
        """How many Redis keys this visitor would occupy (what erase() reports)."""
        return int(bool(self.recent)) + 1 + int(bool(self.bought))


class MemoryProfileStore:
    """In-process :class:`~engine.profiles.base.ProfileStore`.

    Args:
        limits: caps and TTLs, the same ones the Redis store honours.
        clock: epoch seconds; injectable so expiry and trending windows are testable.
        max_profiles: visitors kept at most; the least recently active is evicted beyond it.
        max_event_ids: event ids remembered for idempotency at most (oldest forgotten first).
    """

    def __init__(
        self,
        limits: StoreLimits | None = None,
        *,
        clock: Callable[[], float] = time.time,
        max_profiles: int = 100_000,
        max_event_ids: int = 1_000_000,
    ) -> None:
        if max_profiles < 1 or max_event_ids < 1:
            raise ValueError("max_profiles and max_event_ids must be positive")
        self._limits = limits or StoreLimits()
        self._clock = clock
        self._max_profiles = max_profiles
        self._max_event_ids = max_event_ids
        # Both ordered oldest first, so expiry and eviction pop from the front: amortised O(1)
        # per write instead of a periodic full scan.
        self._visitors: OrderedDict[str, _Visitor] = OrderedDict()
        self._seen: OrderedDict[str, float] = OrderedDict()  # event id -> expires at
        self._stream: deque[dict[str, str]] = deque(maxlen=self._limits.stream_max_events)
        self._trending: dict[int, Counter[str]] = {}
        self._unavailable: set[str] = set()

    @property
    def limits(self) -> StoreLimits:
        return self._limits

    # --- housekeeping ---------------------------------------------------------------------------

    def _sweep(self, now: float) -> None:
        """Drop expired ids and profiles from the old end; each entry is dropped once."""
        seen = self._seen
        while seen and next(iter(seen.values())) <= now:
            seen.popitem(last=False)
        visitors = self._visitors
        while visitors and next(iter(visitors.values())).expires_at <= now:
            visitors.popitem(last=False)

    def _live(self, visitor_id: str, now: float) -> _Visitor | None:
        """The visitor if present and not expired (lazy expiry on read)."""
        visitor = self._visitors.get(visitor_id)
        if visitor is not None and visitor.expires_at <= now:
            del self._visitors[visitor_id]
            return None
        return visitor

    def _bucket(self, now: float) -> int:
        return int(now // self._limits.trending_bucket_seconds)

    # --- the two halves of recording, mirroring the two Redis scripts ---------------------------

    def _apply_global(self, event: Event, now: float) -> bool:
        expires = self._seen.get(event.event_id)
        if expires is not None and expires > now:
            return False
        self._seen.pop(event.event_id, None)
        self._seen[event.event_id] = now + self._limits.idempotency_ttl_seconds
        while len(self._seen) > self._max_event_ids:
            self._seen.popitem(last=False)

        self._stream.append(
            {
                "event_id": event.event_id,
                "visitor_id": event.visitor_id,
                "customer_id": event.customer_id or "",
                "item_id": event.item_id,
                "type": event.type,
                "ts": repr(float(event.timestamp)),
            }
        )
        bucket = self._bucket(now)
        self._trending.setdefault(bucket, Counter())[event.item_id] += 1
        oldest = bucket - self._limits.trending_buckets + 1
        for stale in [b for b in self._trending if b < oldest]:
            del self._trending[stale]
        return True

    def _visitor_for_write(self, visitor_id: str, now: float) -> tuple[_Visitor, bool]:
        """The live visitor, or a new empty one; and whether it is new."""
        visitor = self._live(visitor_id, now)
        if visitor is not None:
            return visitor, False
        visitor = _Visitor(recent=deque(maxlen=self._limits.recent_events))
        self._visitors[visitor_id] = visitor
        return visitor, True

    def _touch(self, visitor_id: str, visitor: _Visitor, now: float) -> None:
        """Refresh the TTL and the eviction order, like EXPIRE on the visitor's keys."""
        visitor.expires_at = now + self._limits.profile_ttl_seconds
        self._visitors.move_to_end(visitor_id)
        while len(self._visitors) > self._max_profiles:
            self._visitors.popitem(last=False)

    def _apply_visitor_now(
        self, event: Event, now: float, in_call: set[tuple[str, RecentEvent]] | None = None
    ) -> bool:
        """As the Redis visitor script: the entry (type, item, whole second) is the event's
        identity, so a retry changes nothing and a double-fired event is one entry.

        ``in_call``: (visitor, entry) pairs applied by this record() call, which the Redis
        script also remembers beyond the recent list's cap.
        """
        visitor, new = self._visitor_for_write(event.visitor_id, now)
        ts = float(event.timestamp)
        recent = RecentEvent(
            item_id=event.item_id, type=event.type, timestamp=float(math.floor(ts))
        )
        if in_call is not None:
            if (event.visitor_id, recent) in in_call:
                return False
            in_call.add((event.visitor_id, recent))
        if not new and recent in visitor.recent:
            return False
        visitor.recent.appendleft(recent)
        visitor.counters[event.type] += 1
        if visitor.first_seen is None or ts < visitor.first_seen:
            visitor.first_seen = ts
        if visitor.last_seen is None or ts > visitor.last_seen:
            visitor.last_seen = ts
        if event.customer_id is not None:
            visitor.customer_id = event.customer_id  # login merge
        if event.type == "purchase":
            visitor.bought.add(event.item_id)
        self._touch(event.visitor_id, visitor, now)
        return True

    async def _apply_visitor(self, event: Event) -> bool:
        """Only the visitor half (what a retry after a partial failure does in Redis)."""
        return self._apply_visitor_now(event, self._clock())

    # --- the contract ---------------------------------------------------------------------------

    async def record(self, events: Sequence[Event]) -> list[bool]:
        now = self._clock()
        self._sweep(now)
        verdicts = [self._apply_global(event, now) for event in events]
        # Like Redis, the visitor half runs for repeated ids too; it is idempotent.
        in_call: set[tuple[str, RecentEvent]] = set()
        for event in events:
            self._apply_visitor_now(event, now, in_call)
        return verdicts

    def _profile(self, visitor_id: str, now: float) -> Profile:
        visitor = self._live(_checked_visitor(visitor_id), now)
        if visitor is None:
            return Profile(visitor_id=visitor_id)
        return Profile(
            visitor_id=visitor_id,
            customer_id=visitor.customer_id,
            recent=tuple(visitor.recent),
            counters=dict(visitor.counters),
            bought=frozenset(visitor.bought),
            first_seen=visitor.first_seen,
            last_seen=visitor.last_seen,
            consent=visitor.consent,
        )

    async def profile(self, visitor_id: str) -> Profile:
        return self._profile(visitor_id, self._clock())

    async def context(self, visitor_id: str) -> tuple[Profile, frozenset[str]]:
        return self._profile(visitor_id, self._clock()), frozenset(self._unavailable)

    async def erase(self, visitor_id: str) -> int:
        visitor = self._live(_checked_visitor(visitor_id), self._clock())
        theirs = [e["event_id"] for e in self._stream if e["visitor_id"] == visitor_id]
        if theirs:
            kept = (e for e in self._stream if e["visitor_id"] != visitor_id)
            self._stream = deque(kept, maxlen=self._stream.maxlen)
            for event_id in theirs:
                self._seen.pop(event_id, None)
        if visitor is None:
            return 0
        del self._visitors[visitor_id]
        return visitor.key_count()

    async def trending(self, limit: int) -> list[tuple[str, float]]:
        if limit <= 0:
            return []
        current = self._bucket(self._clock())
        oldest = current - self._limits.trending_buckets + 1
        total: Counter[str] = Counter()
        for bucket, counts in self._trending.items():
            if oldest <= bucket <= current:
                total.update(counts)
        # Ties broken like ZREVRANGE: member descending.
        ranked = sorted(total.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
        return [(item, float(count)) for item, count in ranked[:limit]]

    async def set_consent(self, visitor_id: str, consent: Consent) -> bool:
        now = self._clock()
        visitor, _ = self._visitor_for_write(_checked_visitor(visitor_id), now)
        stored = visitor.consent is None or consent.at >= visitor.consent.at
        if stored:
            visitor.consent = consent
        self._touch(visitor_id, visitor, now)
        return stored

    async def customer_consents(self) -> list[tuple[str, Consent]]:
        now = self._clock()
        return [
            (visitor.customer_id, visitor.consent)
            for visitor in self._visitors.values()
            if visitor.expires_at > now
            and visitor.customer_id is not None
            and visitor.consent is not None
        ]

    async def set_availability(self, item_ids: Sequence[str], available: bool) -> None:
        items = list(item_ids)
        for item in items:
            if not valid_id(item):
                raise ValueError(f"item_id {item!r} is not a valid id")
        if available:
            self._unavailable.difference_update(items)
        else:
            self._unavailable.update(items)

    async def unavailable(self) -> frozenset[str]:
        return frozenset(self._unavailable)

    async def events(self, count: int) -> list[dict[str, str]]:
        if count <= 0:
            return []
        newest = list(islice(reversed(self._stream), count))
        return [dict(entry) for entry in reversed(newest)]

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        """Nothing to release; the data lives as long as the process."""
