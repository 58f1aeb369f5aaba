"""Visitor session profiles behind one store contract: in-memory (embedded) and Redis."""

from engine.profiles.base import (
    EVENT_TYPES,
    ID_PATTERN,
    Event,
    EventType,
    Profile,
    ProfileStore,
    RecentEvent,
    StoreLimits,
    StoreUnavailableError,
    valid_id,
)

__all__ = [
    "EVENT_TYPES",
    "ID_PATTERN",
    "Event",
    "EventType",
    "Profile",
    "ProfileStore",
    "RecentEvent",
    "StoreLimits",
    "StoreUnavailableError",
    "valid_id",
]
