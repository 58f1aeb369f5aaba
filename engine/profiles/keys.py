"""Every Redis key the profile store writes, defined in one place.

Per-visitor keys carry the hash tag ``{v:<visitor>}`` so one visitor's keys share a Redis Cluster
slot and one Lua script may touch them all; global keys share the tag ``{g}`` for the same reason.
Ids are validated before they become part of a key (see :data:`~engine.profiles.base.ID_PATTERN`),
so no id can escape its hash tag or the prefix.
"""

from __future__ import annotations

import re

from engine.profiles.base import ID_PATTERN, valid_id

DEFAULT_PREFIX = "p13n:"

# Characters that are special in a SCAN MATCH pattern (Redis glob syntax).
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def _checked(kind: str, value: str) -> str:
    if not valid_id(value):
        raise ValueError(f"{kind} {value!r} does not match {ID_PATTERN}")
    return value


class Keys:
    """Builds every key under one prefix.

    Args:
        prefix: prepended to every key; lets several deployments (or tests) share one Redis.
    """

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        # A brace in the prefix would become the hash tag and put every key in one slot.
        if "{" in prefix or "}" in prefix or any(c.isspace() for c in prefix):
            raise ValueError(f"key prefix {prefix!r} must not contain braces or whitespace")
        self.prefix = prefix
        self._g = f"{prefix}{{g}}:"

    # --- per visitor: all in the visitor's slot -------------------------------------------------

    def _visitor(self, visitor_id: str) -> str:
        return f"{self.prefix}{{v:{_checked('visitor_id', visitor_id)}}}:"

    def recent(self, visitor_id: str) -> str:
        """List of the visitor's newest events, newest first, capped."""
        return self._visitor(visitor_id) + "recent"

    def profile(self, visitor_id: str) -> str:
        """Hash: ``n_<type>`` counters, first_seen, last_seen, customer_id."""
        return self._visitor(visitor_id) + "profile"

    def bought(self, visitor_id: str) -> str:
        """Set of items the visitor purchased while the profile lived."""
        return self._visitor(visitor_id) + "bought"

    def visitor_keys(self, visitor_id: str) -> list[str]:
        """Every key a visitor owns, in the order the visitor script takes them."""
        base = self._visitor(visitor_id)
        return [base + "recent", base + "profile", base + "bought"]

    def visitor_match(self, visitor_id: str) -> str:
        """A SCAN MATCH pattern for every key of the visitor (erasure checks; never KEYS)."""
        return _GLOB_SPECIAL.sub(r"\\\1", self._visitor(visitor_id)) + "*"

    def profile_match(self) -> str:
        """A SCAN MATCH pattern for every visitor's profile hash."""
        return _GLOB_SPECIAL.sub(r"\\\1", self.prefix) + "{v:*}:profile"

    # --- global: all in the {g} slot ------------------------------------------------------------

    def seen(self, event_id: str) -> str:
        """Idempotency marker of one event id (``SET NX EX``)."""
        return f"{self._g}seen:{_checked('event_id', event_id)}"

    @property
    def stream(self) -> str:
        """The durable event stream (``XADD MAXLEN ~``)."""
        return f"{self._g}events"

    def streams(self) -> list[str]:
        """Every event stream key, for readers that must see them all (the exporter)."""
        return [self.stream]

    def trending(self, bucket: int) -> str:
        """Sorted set of item -> event count in one time bucket (epoch seconds // width)."""
        return f"{self._g}trending:{int(bucket)}"

    @property
    def trending_union(self) -> str:
        """Scratch key for summing the trending window; written with a short TTL."""
        return f"{self._g}trending:union"

    @property
    def unavailable(self) -> str:
        """Set of item ids that must not be recommended (bounded by the catalog)."""
        return f"{self._g}unavailable"

    def global_match(self) -> str:
        """A SCAN MATCH pattern for every global key under this prefix."""
        return _GLOB_SPECIAL.sub(r"\\\1", self._g) + "*"
