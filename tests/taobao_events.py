"""Real events for the export and training tests: the Taobao click stream as API events.

Behaviours map to event types (pv: view, fav: click, cart: add_to_cart, buy: purchase); a
visitor is a Taobao user, linked to a customer of the same id when the user id is even (a
logged-in shopper), anonymous otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pyarrow.csv as pv

from engine.profiles import Event
from engine.profiles.redis import RedisProfileStore

TYPES = {"pv": "view", "fav": "click", "cart": "add_to_cart", "buy": "purchase"}


def taobao_events(shared_data: Path, limit: int | None = None) -> list[Event]:
    path = shared_data / "taobao-userbehavior-head" / "user_behavior_head.csv.gz"
    table = pv.read_csv(path, convert_options=pv.ConvertOptions(strings_can_be_null=False))
    if limit is not None:
        table = table.slice(0, limit)
    rows = zip(
        table["user_id"].to_pylist(),
        table["item_id"].to_pylist(),
        table["behavior_type"].to_pylist(),
        table["timestamp"].to_pylist(),
        strict=True,
    )
    return [
        Event(
            event_id=f"tb{n}",
            visitor_id=f"v{user}",
            item_id=str(item),
            type=TYPES[behaviour],  # type: ignore[arg-type]
            timestamp=float(ts),
            customer_id=str(user) if user % 2 == 0 else None,
        )
        for n, (user, item, behaviour, ts) in enumerate(rows)
    ]


def record(store: RedisProfileStore, events: Sequence[Event], batch: int = 500) -> None:
    """Send events through the store as the API does, a batch per call."""

    async def send() -> None:
        try:
            for start in range(0, len(events), batch):
                await store.record(events[start : start + batch])
        finally:
            await store.close()

    asyncio.run(send())
