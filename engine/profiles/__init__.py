"""Visitor session profiles behind one store contract: in-memory (embedded) and Redis."""

from engine.profiles.base import (
    EVENT_TYPES,
    ID_PATTERN,
    Consent,
    Event,
    EventType,
    Profile,
    ProfileStore,
    RecentEvent,
    StoreLimits,
    StoreUnavailableError,
    valid_id,
)
from engine.profiles.keys import Keys
from engine.profiles.memory import MemoryProfileStore
from engine.profiles.redis import RedisProfileStore

__all__ = [
    "EVENT_TYPES",
    "ID_PATTERN",
    "Consent",
    "Event",
    "EventType",
    "Keys",
    "MemoryProfileStore",
    "Profile",
    "ProfileStore",
    "RecentEvent",
    "RedisProfileStore",
    "StoreLimits",
    "StoreUnavailableError",
    "valid_id",
]
