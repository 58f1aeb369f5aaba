"""What a visitor did this session, and the store contract every backend meets.

The API records events and reads profiles through :class:`ProfileStore` only, so the embedded
in-memory store (local runs) and Redis (production) are interchangeable and pass one contract
suite (tests/contract/test_profile_stores.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, Protocol, get_args

EventType = Literal["view", "click", "add_to_cart", "purchase"]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)

# Ids become parts of store keys: bounded length, and no characters that could escape the key
# namespace or a Redis Cluster hash tag ({ } : * ? [ ] whitespace).
ID_PATTERN = r"^[A-Za-z0-9_.@|~=+-]{1,128}$"
_ID = re.compile(ID_PATTERN)


def valid_id(value: str) -> bool:
    return _ID.fullmatch(value) is not None  # fullmatch: "$" alone would allow a final "\n"


@dataclass(frozen=True)
class Event:
    """One thing a visitor did to an item."""

    event_id: str
    visitor_id: str
    item_id: str
    type: EventType
    timestamp: float  # epoch seconds
    customer_id: str | None = None

    def __post_init__(self) -> None:
        for name in ("event_id", "visitor_id", "item_id"):
            if not valid_id(getattr(self, name)):
                raise ValueError(f"{name} {getattr(self, name)!r} does not match {ID_PATTERN}")
        if self.customer_id is not None and not valid_id(self.customer_id):
            raise ValueError(f"customer_id {self.customer_id!r} does not match {ID_PATTERN}")
        if self.type not in EVENT_TYPES:
            raise ValueError(f"type {self.type!r} is not one of {', '.join(EVENT_TYPES)}")


class RecentEvent(NamedTuple):
    """One of a visitor's newest events, as the stores keep it.

    ``timestamp`` is in whole seconds (floored): the session decays over days and "recently
    viewed" orders by position, so the Redis entry does not spend bytes on fractions. A named
    tuple: twenty are built on every request served from Redis, where a frozen dataclass's
    ``__init__`` costs three times as much.
    """

    item_id: str
    type: EventType
    timestamp: float


@dataclass(frozen=True)
class Consent:
    """A visitor's statement about personalization: given or withdrawn, and when."""

    given: bool
    at: float  # epoch seconds


@dataclass(frozen=True)
class Profile:
    """A visitor's live session as the store holds it; empty for an unknown visitor."""

    visitor_id: str
    customer_id: str | None = None
    recent: tuple[RecentEvent, ...] = ()  # newest first, at most StoreLimits.recent_events
    counters: Mapping[str, int] = field(default_factory=dict)  # events by type
    bought: frozenset[str] = frozenset()  # items purchased while the profile lived
    first_seen: float | None = None
    last_seen: float | None = None
    consent: Consent | None = None  # personalization consent, if the visitor stated one

    @property
    def is_empty(self) -> bool:
        return not self.recent and self.customer_id is None


@dataclass(frozen=True)
class StoreLimits:
    """Every bound the store keeps: nothing it writes grows or lives without one."""

    # Newest events kept per visitor: the replayed Taobao clicks hit the top 10 more often with
    # 20 than with 30 or 50 (0.0198, 0.0175, 0.0171: python -m benchmarks.replay, 8,000 events).
    recent_events: int = 20
    profile_ttl_seconds: int = 30 * 86_400  # a visitor's keys expire this long after last event
    idempotency_ttl_seconds: int = 86_400  # how long a seen event id is remembered
    stream_max_events: int = 1_000_000  # approximate cap of the durable event stream
    trending_bucket_seconds: int = 3_600  # width of one trending counter bucket
    trending_buckets: int = 24  # buckets summed for "trending"; older buckets expire


class StoreUnavailableError(Exception):
    """The backing store cannot be reached; reads degrade, writes must not be acknowledged."""


class ProfileStore(Protocol):
    """Session profiles, trending counters, the event stream and item availability."""

    async def record(self, events: Sequence[Event]) -> list[bool]:
        """Store events durably; per event, True if new, False if its id was seen before.

        Returns only once every event is stored; raises StoreUnavailableError otherwise (then the
        caller must not acknowledge any of them: recording again is safe, ids make it idempotent).
        """
        ...

    async def profile(self, visitor_id: str) -> Profile: ...

    async def context(self, visitor_id: str) -> tuple[Profile, frozenset[str]]:
        """The visitor's profile and the unavailable items, in one round trip."""
        ...

    async def erase(self, visitor_id: str) -> int:
        """Delete every key of the visitor, and their events in the stream with those events'
        idempotency markers; the number of the visitor's own keys removed."""
        ...

    async def trending(self, limit: int) -> list[tuple[str, float]]:
        """Items by events over the trending window, most first."""
        ...

    async def set_consent(self, visitor_id: str, consent: Consent) -> bool:
        """Record the visitor's personalization consent (the profile's TTL applies).

        Statements can arrive out of order (two tabs, retries): one older than the stored one is
        ignored. True if stored, False if ignored as older.
        """
        ...

    async def customer_consents(self) -> list[tuple[str, Consent]]:
        """(customer_id, consent) of every visitor linked to a customer who stated consent:
        what the CRM needs so that a withdrawal on the storefront also stops e-mails."""
        ...

    async def set_availability(self, item_ids: Sequence[str], available: bool) -> None: ...

    async def unavailable(self) -> frozenset[str]: ...

    async def events(self, count: int) -> list[dict[str, str]]:
        """The newest ``count`` entries of the durable event stream, oldest first."""
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...
