"""The personalised e-mail batch: who gets a mail, with which items, and what was sent.

Customers are chosen in this order, each one left out counted under the first reason that
applies: the segment (``--segment``), consent for the ``email`` channel at send time (no record
at all, or withdrawn), a withdrawal of ``personalization`` consent, the frequency cap (a mail
sent to them within ``frequency_days``, from the send log), and finally an empty list
(everything they could get is excluded). Customers of the consent file whom the model does not
know are counted too: they cannot be personalised.

The chosen customers are split by a seeded hash of their id into a holdout group (about
``holdout`` of them) and the treatment group. Both are written, with a ``group`` column: the
holdout rows carry the items they *would* have been sent, so uplift can later be measured on
the same items, and **only treatment rows are to be mailed**. A customer's group depends only
on the seed and their id, so it is the same across campaigns with one seed.

Each list is the customer's exact top k under the serving rules: past purchases only when due
again, no unavailable item, and no item mailed to them (treatment) within ``no_repeat_days``.

The send log is JSON lines, one object per customer and campaign (``campaign``, ``sent_at``,
``customer_id``, ``group``, ``items``), appended after the output is written; holdout lines
record the draw but count for neither the frequency cap nor the repeats, as nothing was sent.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from engine.batch import bought_not_due, item_mask, rank_batch, reasons
from engine.consent import Channel, ConsentLedger, Status
from engine.matrix import SECONDS_PER_DAY
from engine.model import Model
from training.campaign.consent_file import parse_time

TREATMENT = "treatment"
HOLDOUT = "holdout"
SUFFIXES = (".csv", ".parquet")


@dataclass(frozen=True)
class EmailSpec:
    """What one batch is: when it is sent, to whom, how many items, under which caps."""

    campaign: str
    now: float  # send time, epoch seconds
    k: int = 5
    segment: str | None = None
    frequency_days: float = 7.0
    no_repeat_days: float = 30.0
    holdout: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")
        if not 0.0 <= self.holdout < 1.0:
            raise ValueError(f"holdout must be in [0, 1), got {self.holdout}")
        if self.frequency_days < 0 or self.no_repeat_days < 0:
            raise ValueError("frequency and no-repeat windows must not be negative")


@dataclass(frozen=True)
class Send:
    """One line of the send log: one customer in one campaign."""

    campaign: str
    sent_at: float
    customer_id: str
    group: str
    items: tuple[str, ...]

    def to_json(self) -> str:
        when = datetime.fromtimestamp(self.sent_at, UTC).isoformat()
        return json.dumps(
            {"campaign": self.campaign, "sent_at": when, "customer_id": self.customer_id,
             "group": self.group, "items": list(self.items)}
        )  # fmt: skip


@dataclass
class Summary:
    """Counts of one batch: every customer considered ends in exactly one of them."""

    customers: int  # in the model
    in_segment: int
    treatment: int = 0
    holdout: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> customers
    consent_not_in_model: int = 0  # customers of the consent file the model does not know
    unknown_unavailable: int = 0  # ids of the unavailable list the model does not know

    def lines(self) -> list[str]:
        counts = [("customers in model", self.customers), ("in segment", self.in_segment)]
        counts += [(f"skipped: {reason}", n) for reason, n in self.skipped.items()]
        counts += [
            ("selected", self.treatment + self.holdout),
            ("  treatment (to mail)", self.treatment),
            ("  holdout (not mailed)", self.holdout),
            ("consent, not in model", self.consent_not_in_model),
        ]
        if self.unknown_unavailable:
            counts.append(("unavailable, not in model", self.unknown_unavailable))
        width = max(len(label) for label, _ in counts) + 2
        return [f"{label:<{width}}{n:>8,}" for label, n in counts]


@dataclass(frozen=True)
class EmailBatch:
    table: pa.Table  # one row per chosen customer
    sends: list[Send]
    summary: Summary


def build_batch(
    model: Model,
    consent: ConsentLedger,
    spec: EmailSpec,
    history: Sequence[Send] = (),
    unavailable: Iterable[str] = (),
    progress: Callable[[int], None] | None = None,
) -> EmailBatch:
    """Choose the customers, rank their items and record the sends (nothing is written).

    ``progress`` is called with numbers of model customers done, adding up to all of them.
    """
    summary = Summary(customers=len(model.users), in_segment=0)
    rows = _chosen(model, consent, spec, history, summary)
    if progress is not None:
        progress(len(model.users) - len(rows))  # everyone not ranked is done at once
    recent = _treatment_sends(history, spec.now, spec.no_repeat_days)
    ids = model.users.ids
    sent_items = [model.items.indices(recent.get(str(ids[r]), ())) for r in rows.tolist()]
    excluded = bought_not_due(model.scorer.history, rows, spec.now)
    excluded = excluded + item_mask([i[i >= 0] for i in sent_items], len(model.items))
    gone = model.items.indices(set(unavailable))
    summary.unknown_unavailable = int((gone < 0).sum())
    ranking = rank_batch(
        lambda block: model.scorer.score(block, int(spec.now)),
        rows,
        len(model.items),
        spec.k,
        excluded=excluded.tocsr(),
        unavailable=gone[gone >= 0],
        progress=progress,
    )
    filled = (ranking.items >= 0).any(axis=1)
    summary.skipped["nothing to offer"] = int((~filled).sum())
    customers = [str(ids[r]) for r in rows[filled].tolist()]
    groups = [HOLDOUT if _draw(spec.seed, c) < spec.holdout else TREATMENT for c in customers]
    summary.holdout = groups.count(HOLDOUT)
    summary.treatment = len(groups) - summary.holdout
    why = reasons(model.scorer.history, ranking)
    lists = [items[items >= 0] for items in ranking.items[filled]]
    table = pa.table(
        {
            "campaign": pa.array([spec.campaign] * len(customers), pa.string()),
            "customer_id": pa.array(customers, pa.string()),
            "group": pa.array(groups, pa.string()),
            "segment": pa.array([str(model.segments[r]) for r in rows[filled]], pa.string()),
            **_item_columns(model, lists),
            "reasons": pa.array([why[i] for i in np.flatnonzero(filled)], pa.list_(pa.string())),
        }
    )
    sends = [
        Send(spec.campaign, spec.now, c, g, tuple(model.items.ids[i].tolist()))
        for c, g, i in zip(customers, groups, lists, strict=True)
    ]
    return EmailBatch(table, sends, summary)


def _chosen(
    model: Model,
    consent: ConsentLedger,
    spec: EmailSpec,
    history: Sequence[Send],
    summary: Summary,
) -> np.ndarray:
    """User rows in the segment, with e-mail consent at send time, not mailed too recently;
    everyone else counted in ``summary``."""
    rows = _segment_rows(model, spec.segment)
    summary.in_segment = len(rows)
    summary.consent_not_in_model = sum(c not in model.users for c in consent.customers)
    ids = model.users.ids
    status = [consent.status(str(ids[r]), Channel.EMAIL, spec.now) for r in rows.tolist()]
    summary.skipped["no email consent"] = sum(s is None for s in status)
    summary.skipped["withdrawn"] = sum(s is Status.WITHDRAWN for s in status)
    rows = rows[np.array([s is Status.GIVEN for s in status], dtype=bool)]
    # The mail is personalised: a customer who withdrew personalization gets none (no record
    # means no objection, as in serving; e-mail itself needs an explicit opt-in above).
    personal = [consent.status(str(ids[r]), Channel.PERSONALIZATION, spec.now) for r in rows]
    objected = np.array([s is Status.WITHDRAWN for s in personal], dtype=bool)
    summary.skipped["withdrew personalization"] = int(objected.sum())
    rows = rows[~objected]
    mailed = _treatment_sends(history, spec.now, spec.frequency_days)
    capped = np.array([str(ids[r]) in mailed for r in rows.tolist()], dtype=bool)
    summary.skipped["frequency cap"] = int(capped.sum())
    return rows[~capped]


def _item_columns(model: Model, lists: list[np.ndarray]) -> dict[str, pa.Array]:
    prices = [[None if np.isnan(p) else float(p) for p in model.price[i]] for i in lists]
    return {
        "item_ids": pa.array([model.items.ids[i].tolist() for i in lists], pa.list_(pa.string())),
        "descriptions": pa.array(
            [model.description[i].tolist() for i in lists], pa.list_(pa.string())
        ),
        "prices": pa.array(prices, pa.list_(pa.float64())),
    }


def _segment_rows(model: Model, segment: str | None) -> np.ndarray:
    if segment is None:
        return np.arange(len(model.users))
    known = sorted(set(np.asarray(model.segments).tolist()))
    if segment not in known:
        raise ValueError(f"unknown segment {segment!r}; the model has: {', '.join(known)}")
    return np.flatnonzero(np.asarray(model.segments) == segment)


def _treatment_sends(history: Sequence[Send], now: float, days: float) -> dict[str, set[str]]:
    """Items mailed to each customer within ``days`` of ``now`` (either side: a replay at an
    earlier time must not double a mail that was sent after it)."""
    window = days * SECONDS_PER_DAY
    out: dict[str, set[str]] = {}
    for send in history:
        if send.group == TREATMENT and abs(now - send.sent_at) < window:
            out.setdefault(send.customer_id, set()).update(send.items)
    return out


def _draw(seed: int, customer_id: str) -> float:
    """A uniform number in [0, 1) fixed by the seed and the customer id alone."""
    digest = hashlib.blake2b(f"{seed}:{customer_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


# --- files -------------------------------------------------------------------------------------


def write_batch(table: pa.Table, path: Path) -> None:
    """Parquet keeps the list columns; CSV gets numbered columns ``item_<rank>_<field>``.

    Written to a temporary file and renamed into place, so a reader never sees half a batch.
    """
    if path.suffix not in SUFFIXES:
        raise ValueError(f"{path}: output must end in {' or '.join(SUFFIXES)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    if path.suffix == ".parquet":
        pq.write_table(table, partial)
    else:
        pa_csv.write_csv(_numbered(table), partial)
    os.replace(partial, path)


def _numbered(table: pa.Table) -> pa.Table:
    """The list columns as ``item_1_id, item_1_description, ...`` (empty past a short list)."""
    lists = {name: table[name].to_pylist() for name in ("item_ids", "descriptions", "prices",
                                                        "reasons")}  # fmt: skip
    k = max((len(items) for items in lists["item_ids"]), default=0)
    columns = {name: table[name] for name in ("campaign", "customer_id", "group", "segment")}
    for rank in range(k):
        for field_name, source in (
            ("id", "item_ids"), ("description", "descriptions"), ("price", "prices"),
            ("reason", "reasons"),
        ):  # fmt: skip
            values = [row[rank] if rank < len(row) else None for row in lists[source]]
            columns[f"item_{rank + 1}_{field_name}"] = pa.array(
                values, pa.float64() if source == "prices" else pa.string()
            )
    return pa.table(columns)


def read_send_log(path: Path) -> list[Send]:
    """Every send recorded so far; none yet when the file does not exist."""
    if not path.exists():
        return []
    sends = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                sends.append(
                    Send(str(d["campaign"]), parse_time(d["sent_at"]),
                         str(d["customer_id"]), str(d["group"]), tuple(map(str, d["items"])))
                )  # fmt: skip
                if sends[-1].group not in (TREATMENT, HOLDOUT):
                    raise ValueError(f"group {sends[-1].group!r}")
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}: line {number} is not a send record ({exc})") from None
    return sends


def append_send_log(path: Path, sends: Iterable[Send]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.writelines(send.to_json() + "\n" for send in sends)
