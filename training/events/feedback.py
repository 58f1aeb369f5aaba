"""Exported events as training input beside the purchase log.

Who is who: an event of a visitor linked to a customer (on that event or any of the visitor's
others; the latest link wins) belongs to the customer. The model's users are the purchase log's
customers, so:

* a linked customer's purchase event is a purchase: it joins the log (unless the log already
  has that customer buying that item that day: a shop's order log usually holds its web orders);
* every other event (views, clicks, carts; and anonymous visitors' purchases) is *feedback*: a
  weighted signal added to the matrices that the latent factors and the item similarities are
  learned from, never to purchase history (repeat-buying features, the hold-out's truth);
* an anonymous visitor (or a customer with no purchase) is not a model user (online, the
  session fold-in serves them), but their events form extra rows that shape item factors and
  similarities, then are dropped.

Items that only events mention (viewed, never bought) join the model's items: they get factors
and neighbours and can be recommended. Weights default to the engine's online
``EVENT_WEIGHTS``, so a click weighs the same offline and in a live session.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from engine.session import EVENT_WEIGHTS
from engine.vocab import Vocabulary
from training.logs import LOG_SCHEMA, PurchaseLog


@dataclass(frozen=True)
class Feedback:
    """Weighted non-purchase events, in the model's vocabularies.

    Rows below ``n_users`` are the model's users; the ``n_extra`` rows after them are other
    people (anonymous visitors), fitted alongside and dropped.
    """

    n_users: int
    n_extra: int
    n_items: int
    row: np.ndarray  # int32
    item: np.ndarray  # int32
    time: np.ndarray  # int64 epoch seconds
    weight: np.ndarray  # float32, a purchase = 1

    def matrix(self, as_of: int) -> sp.csr_matrix:
        """Summed weights of the events before ``as_of``: (n_users + n_extra) x n_items."""
        keep = self.time < as_of
        shape = (self.n_users + self.n_extra, self.n_items)
        m = sp.csr_matrix(
            (self.weight[keep], (self.row[keep], self.item[keep])), shape=shape, dtype=np.float32
        )
        m.sum_duplicates()
        return m


@dataclass(frozen=True)
class EventInput:
    """Exported events split into purchases (rows for the log) and feedback (by external id)."""

    purchases: pa.Table  # LOG_SCHEMA rows to append to the purchase log
    people: list[tuple[str, str]]  # per feedback row: ("c", customer) or ("v", visitor)
    items: np.ndarray  # item id per feedback row
    time: np.ndarray
    weight: np.ndarray
    report: dict[str, Any]

    def with_log(self, log: PurchaseLog) -> PurchaseLog:
        """The purchase log with the event purchases appended, sorted by time."""
        if self.purchases.num_rows == 0:
            return log
        table = pa.concat_tables([log.table, self.purchases])
        table = table.take(pc.sort_indices(table, [("time", "ascending")]))
        return PurchaseLog(table, log.report)

    def item_ids(self) -> pa.Array:
        """The items feedback mentions: the model's vocabulary must hold them all."""
        return pa.array(self.items.tolist(), pa.string())

    def encode(self, users: Vocabulary, items: Vocabulary) -> Feedback:
        """Feedback rows in the model's vocabularies (built with :meth:`item_ids`)."""
        item = items.indices(self.items.tolist())
        if np.any(item < 0):
            raise ValueError("the item vocabulary lacks items of the exported events")
        customer = users.indices(pid if kind == "c" else "" for kind, pid in self.people)
        extra: dict[tuple[str, str], int] = {}
        row = np.empty(len(self.people), dtype=np.int64)
        for i, person in enumerate(self.people):
            row[i] = customer[i] if customer[i] >= 0 else -1 - extra.setdefault(person, len(extra))
        row = np.where(row >= 0, row, len(users) + (-1 - row))
        self.report["feedback_rows"] = len(row)
        self.report["extra_rows"] = len(extra)
        return Feedback(
            n_users=len(users),
            n_extra=len(extra),
            n_items=len(items),
            row=row.astype(np.int32),
            item=item.astype(np.int32),
            time=self.time,
            weight=self.weight,
        )


def event_weights(overrides: Mapping[str, float | None]) -> dict[str, float]:
    """The engine's online weights, with any given override; each must be in [0, 1]."""
    weights = dict(EVENT_WEIGHTS)
    for kind, value in overrides.items():
        if value is not None:
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"the {kind} weight must be between 0 and 1, got {value}")
            weights[kind] = value
    return weights


def split_events(events: pa.Table, log: PurchaseLog, weights: Mapping[str, float]) -> EventInput:
    """Map visitors to customers and split the events into purchases and feedback."""
    visitor = events["visitor_id"].to_pylist()
    customer = events["customer_id"].to_pylist()
    linked: dict[str, str] = {}
    for v, c in zip(visitor, customer, strict=True):  # sorted by time: the latest link wins
        if c is not None:
            linked[v] = c
    people = [("c", c) if c is not None else ("c", linked[v]) if v in linked else ("v", v)
              for v, c in zip(visitor, customer, strict=True)]  # fmt: skip
    kinds = events["type"].to_pylist()
    item_ids = events["item_id"].to_pylist()
    seconds = np.floor(events["ts"].to_numpy()).astype(np.int64)
    known = set(
        zip(
            log.table["user"].to_pylist(),
            log.table["item"].to_pylist(),
            (log.table["time"].cast(pa.int64()).to_numpy() // 86_400).tolist(),
            strict=True,
        )
    )
    buys: list[int] = []
    duplicate = 0
    feedback: list[int] = []
    for i, kind in enumerate(kinds):
        who, pid = people[i]
        if kind == "purchase" and who == "c":
            if (pid, item_ids[i], int(seconds[i]) // 86_400) in known:
                duplicate += 1
            else:
                buys.append(i)
        elif weights[kind] > 0:
            feedback.append(i)
    index = np.asarray(buys, dtype=np.int64)
    users = [people[i][1] for i in buys]
    times = pa.array(seconds[index], pa.int64()).cast(pa.timestamp("s"))
    n = len(buys)
    purchases = pa.table(
        {
            "user": pa.array(users, pa.string()),
            "item": pa.array([item_ids[i] for i in buys], pa.string()),
            "time": times,
            "quantity": pa.array(np.ones(n), pa.float64()),
            "price": pa.nulls(n, pa.float64()),
            "basket": pc.binary_join_element_wise(
                pa.array(users, pa.string()), times.cast(pa.string()), "@"
            ),
            "description": pa.nulls(n, pa.string()),
            "category": pa.nulls(n, pa.string()),
        },
        schema=LOG_SCHEMA,
    )
    fb = np.asarray(feedback, dtype=np.int64)
    report = {
        "weights": dict(weights),
        "purchases_added": n,
        "purchases_already_in_log": duplicate,
        "linked_visitors": len(linked),
    }
    return EventInput(
        purchases=purchases,
        people=[people[i] for i in feedback],
        items=np.asarray([item_ids[i] for i in feedback], dtype=object),
        time=seconds[fb],
        weight=np.asarray([weights[kinds[i]] for i in feedback], dtype=np.float32),
        report=report,
    )
