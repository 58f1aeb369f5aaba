"""Every Redis key the profile store writes, defined in one place.

Per-visitor keys carry the hash tag ``{v:<visitor>}``: one visitor's keys share a Redis Cluster
slot, so one Lua script may touch them all, and visitors spread over every slot.

Global keys are sharded by item over ``shards`` hash tags, ``{g:0}`` .. ``{g:N-1}`` (just
``{g}`` when N = 1, the single-server default). An event's id (in the set of the ids seen in its
idempotency window), its stream entry and its trending count all live in the shard of its item
(``crc32(item_id) % N``), so the script that records them keeps to one slot and is atomic; on a
cluster the shards spread the stream and trending writes, which would make one key hot, over
the masters. All counts of one item are in one shard, so the top trending items are exactly the
merge of each shard's top. The unavailable-items set stays in ``{g}``: written rarely, read
whole.

Ids are validated before they become part of a key (see :data:`~engine.profiles.base.ID_PATTERN`),
so no id can escape its hash tag or the prefix.
"""

from __future__ import annotations

import re
import zlib

from engine.profiles.base import ID_PATTERN, valid_id

DEFAULT_PREFIX = "p13n:"
MAX_SHARDS = 1024
# Shards for a Redis Cluster: several per master, so resharding can move them one by one.
CLUSTER_SHARDS = 16

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
        shards: how many hash tags the global keys are spread over (see the module docstring).
            Every process that writes or reads one deployment must use the same number.
    """

    def __init__(self, prefix: str = DEFAULT_PREFIX, shards: int = 1) -> None:
        # A brace in the prefix would become the hash tag and put every key in one slot.
        if "{" in prefix or "}" in prefix or any(c.isspace() for c in prefix):
            raise ValueError(f"key prefix {prefix!r} must not contain braces or whitespace")
        if not 1 <= shards <= MAX_SHARDS:
            raise ValueError(f"shards must be between 1 and {MAX_SHARDS}, not {shards}")
        self.prefix = prefix
        self.shards = shards
        self._g = f"{prefix}{{g}}:"
        self._shard_bases = (
            [self._g] if shards == 1 else [f"{prefix}{{g:{k}}}:" for k in range(shards)]
        )

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

    # --- global: sharded by item over {g:0}..{g:N-1} ({g} when N = 1) ---------------------------

    def shard(self, item_id: str) -> int:
        """The global shard of an item's events (stable across processes and restarts)."""
        return zlib.crc32(item_id.encode()) % self.shards

    def seen(self, shard: int, window: int) -> str:
        """Set of the event ids one shard recorded in one idempotency window
        (epoch seconds // idempotency TTL); see record_global.lua."""
        return f"{self._shard_bases[shard]}seen:{int(window)}"

    def stream(self, shard: int) -> str:
        """One shard's durable event stream (``XADD MAXLEN ~``)."""
        return f"{self._shard_bases[shard]}events"

    @property
    def streams(self) -> list[str]:
        """Every event stream, index = shard: what a reader (consumer group, export) follows.

        Each stream is ordered; across streams, order by entry id (milliseconds, then sequence).
        """
        return [self.stream(shard) for shard in range(self.shards)]

    def trending(self, shard: int, bucket: int) -> str:
        """Sorted set of item -> event count in one time bucket (epoch seconds // width)."""
        return f"{self._shard_bases[shard]}trending:{int(bucket)}"

    def trending_union(self, shard: int) -> str:
        """Scratch key for summing one shard's trending window; written with a short TTL."""
        return f"{self._shard_bases[shard]}trending:union"

    @property
    def unavailable(self) -> str:
        """Set of item ids that must not be recommended (bounded by the catalog); in ``{g}``."""
        return f"{self._g}unavailable"

    def global_match(self) -> str:
        """A SCAN MATCH pattern for every global key under this prefix (every shard)."""
        return _GLOB_SPECIAL.sub(r"\\\1", self.prefix) + "{g*"
