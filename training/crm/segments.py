"""Customer value segments from a cleaned purchase log: RFM scores, the 80/20 view, win-back.

For each customer, over the purchases before ``as_of``:

- **recency**: calendar days from the last purchase day to the snapshot day (the day of the last
  second before ``as_of``; 0 = bought on the snapshot day);
- **frequency**: distinct baskets (purchase occasions), not lines;
- **monetary**: the sum of quantity x unit price; units bought when the log has no prices.

Each is scored 1..5 (5 best: most recent, most frequent, highest spend) by quintile of its
**mid-rank**: the customers sharing a value get the mean of the ranks they span, and the score is
``floor(5 * (mid_rank - 0.5) / n) + 1``. Distinct values give exact quintiles; equal values always
share a score instead of being split arbitrarily across two (so a quintile can stay empty when
one value covers more than a fifth of the customers, as "one basket" does in most shops).

Named segments come from R and FM = (F + M) / 2 rounded half up, on the usual RFM grid.
Win-back: a customer's usual gap is the median gap between their distinct purchase days (needs
two or more days); they are lapsed when the days since their last purchase exceed
``tolerance`` x that gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.vocab import Vocabulary
from training.dataset import LineCodes, basket_codes, group_medians

DAY = 86_400

SEGMENTS = (
    "champions",
    "loyal",
    "potential-loyalist",
    "new",
    "promising",
    "need-attention",
    "about-to-sleep",
    "at-risk",
    "cant-lose",
    "hibernating",
    "lost",
)

# Rows: R score 5 (bought recently) down to 1; columns: FM score 1..5. The widely used RFM map,
# with "lost" carved out of hibernating's corner: long gone, and little or rarely bought.
_GRID = np.array(
    [
        ["new", "potential-loyalist", "potential-loyalist", "champions", "champions"],
        ["promising", "potential-loyalist", "potential-loyalist", "loyal", "loyal"],
        ["about-to-sleep", "about-to-sleep", "need-attention", "loyal", "loyal"],
        ["hibernating", "hibernating", "at-risk", "at-risk", "cant-lose"],
        ["lost", "hibernating", "at-risk", "at-risk", "cant-lose"],
    ]
)


@dataclass(frozen=True)
class SegmentSummary:
    """One segment's row of the summary table; shares are fractions of all customers/revenue."""

    segment: str
    customers: int
    customer_share: float
    revenue: float
    revenue_share: float
    mean_recency_days: float
    mean_frequency: float
    mean_monetary: float
    win_back: int


@dataclass(frozen=True, eq=False)
class Segments:
    """RFM values, scores, segment and win-back flag per customer (parallel arrays)."""

    customers: np.ndarray  # str ids, in order of first purchase
    recency_days: np.ndarray  # int64
    frequency: np.ndarray  # int64: distinct baskets
    monetary: np.ndarray  # float64
    scores: np.ndarray  # int8 (n, 3): R, F, M
    segment: np.ndarray  # str, one of SEGMENTS
    usual_gap_days: np.ndarray  # float64, NaN with fewer than two purchase days
    lapsed: np.ndarray  # bool: due a win-back message
    as_of: int  # epoch seconds; purchases at or after it are ignored
    monetary_unit: str  # "revenue", or "units" for a log without prices
    tolerance: float
    lines_after_as_of: int  # log lines ignored because they are not before as_of

    @property
    def no_revenue(self) -> int:
        """Customers with no positive revenue (segmented with the lowest monetary score)."""
        return int(np.count_nonzero(self.monetary <= 0))

    def top_share_curve(self) -> np.ndarray:
        """Share of the monetary total from the top p % of customers, for p = 0..100.

        The top p % is the ``ceil(p * n / 100)`` customers who spent most; ``curve[20]`` is the
        80/20 figure (the Pareto view of the Lorenz curve).
        """
        n = len(self.monetary)
        cumulative = np.concatenate([[0.0], np.cumsum(np.sort(self.monetary)[::-1])])
        counts = -((-np.arange(101) * n) // 100)  # ceil without floats
        return np.asarray(cumulative[counts] / cumulative[-1], dtype=np.float64)

    @property
    def top20_share(self) -> float:
        """Share of the monetary total from the top 20 % of customers."""
        return float(self.top_share_curve()[20])

    def summary(self) -> list[SegmentSummary]:
        """One row per segment that has customers, in the order of SEGMENTS."""
        n, total = len(self.customers), float(self.monetary.sum())
        rows = []
        for name in SEGMENTS:
            mask = self.segment == name
            count = int(mask.sum())
            if count == 0:
                continue
            revenue = float(self.monetary[mask].sum())
            rows.append(
                SegmentSummary(
                    segment=name,
                    customers=count,
                    customer_share=count / n,
                    revenue=revenue,
                    revenue_share=revenue / total,
                    mean_recency_days=float(self.recency_days[mask].mean()),
                    mean_frequency=float(self.frequency[mask].mean()),
                    mean_monetary=float(self.monetary[mask].mean()),
                    win_back=int(self.lapsed[mask].sum()),
                )
            )
        return rows

    def table(self, *, win_back_only: bool = False) -> pa.Table:
        """The per-customer table to export; win-back lists put the biggest spenders first."""
        rows = np.arange(len(self.customers))
        if win_back_only:
            rows = rows[self.lapsed]
            rows = rows[np.argsort(-self.monetary[rows], kind="stable")]
        gap = self.usual_gap_days[rows]
        return pa.table(
            {
                "customer": pa.array(self.customers[rows].tolist(), pa.string()),
                "segment": pa.array(self.segment[rows].tolist(), pa.string()),
                "r": self.scores[rows, 0],
                "f": self.scores[rows, 1],
                "m": self.scores[rows, 2],
                "recency_days": self.recency_days[rows],
                "frequency": self.frequency[rows],
                "monetary": np.round(self.monetary[rows], 2),
                "usual_gap_days": pa.array(gap, pa.float64(), mask=np.isnan(gap)),
                "lapsed": self.lapsed[rows],
            }
        )

    def to_manifest(self) -> dict[str, Any]:
        """A JSON summary for the model manifest (the API reports segments from it)."""
        return {
            "as_of": self.as_of,
            "monetary": self.monetary_unit,
            "tolerance": self.tolerance,
            "customers": len(self.customers),
            "no_revenue": self.no_revenue,
            "top20_share": round(self.top20_share, 6),
            "segments": {
                row.segment: {
                    "customers": row.customers,
                    "revenue": round(row.revenue, 2),
                    "revenue_share": round(row.revenue_share, 6),
                    "win_back": row.win_back,
                }
                for row in self.summary()
            },
        }


def compute_segments(
    table: pa.Table,
    *,
    as_of: int | None = None,
    tolerance: float = 1.0,
    codes: LineCodes | None = None,
) -> Segments:
    """RFM segments of the customers in a cleaned log (LOG_SCHEMA), as of an epoch second.

    ``as_of`` defaults to one second after the last purchase, the model's own ``as_of``. Raises
    ValueError when there is nothing to segment: an empty log, or an ``as_of`` at or before the
    log's first purchase. ``codes``: the table's lines already encoded (the trainer's), used
    when every line comes before ``as_of``.
    """
    if not tolerance > 0:
        raise ValueError(f"the win-back tolerance must be positive, got {tolerance}")
    time = table["time"].cast(pa.timestamp("s")).cast(pa.int64()).to_numpy()
    if len(time) == 0:
        raise ValueError("the purchase log has no purchases to segment")
    first = int(time.min())
    if as_of is None:
        as_of = int(time.max()) + 1
    if as_of <= first:
        raise ValueError(
            f"as-of {_iso(as_of - 1)[:10]} is before the log's first purchase ({_iso(first)}): "
            "no customer to segment"
        )
    before = time < as_of
    # Only the columns used, and no copy at all when every line counts (a model's own as_of):
    # filtering the whole log would copy its descriptions too (3.1 s at 10M lines).
    kept = table.select(["user", "basket", "quantity", "price"])
    if not before.all():
        kept = kept.filter(pa.array(before))
    if codes is not None and before.all():
        users, user, baskets = codes.users, codes.user, codes.basket
    else:
        users, user = Vocabulary.encode(kept["user"])
        baskets = basket_codes(kept["basket"])
    n = len(users)
    monetary, unit = _monetary(kept, user, n)
    if not monetary.sum() > 0:
        raise ValueError("no customer has positive revenue: nothing to rank customers by")
    day = time[before] // DAY
    if np.any(day[1:] < day[:-1]):  # not in time order: put it in order (a cleaned log is)
        order = np.argsort(day, kind="stable")
        user, baskets, day = user[order], baskets[order], day[order]
    frequency, last_day, gap = _per_customer(user, baskets, day, n)
    recency = (as_of - 1) // DAY - last_day
    scores = np.stack(
        [_quintiles(-recency), _quintiles(frequency), _quintiles(monetary)], axis=1
    ).astype(np.int8)
    fm = (scores[:, 1].astype(np.int64) + scores[:, 2] + 1) // 2
    return Segments(
        customers=users.ids,
        recency_days=recency,
        frequency=frequency,
        monetary=monetary,
        scores=scores,
        segment=_GRID[5 - scores[:, 0], fm - 1],
        usual_gap_days=gap,
        lapsed=recency > tolerance * gap,  # NaN gaps compare False: never lapsed
        as_of=as_of,
        monetary_unit=unit,
        tolerance=tolerance,
        lines_after_as_of=int(len(time) - before.sum()),
    )


def _quintiles(values: np.ndarray) -> np.ndarray:
    """Score 1..5 by mid-rank quintile; equal values share a score (see the module doc)."""
    n = len(values)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # 1-based rank of the last customer with each value
    first = last - counts + 1
    score = (5 * (first + last - 1)) // (2 * n) + 1  # floor(5 * (mid - 0.5) / n) + 1, exactly
    return np.asarray(score[inverse.ravel()], dtype=np.int8)


@numba.njit(cache=True, nogil=True)
def _per_customer(
    user: np.ndarray, basket: np.ndarray, day: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per customer: distinct baskets, the last purchase day, and the median gap between
    consecutive distinct purchase days (NaN with fewer than two days). The lines must be in
    time order.

    One pass in line order: a basket counts for the first customer seen with it (the lines of
    any other customer in it, rare, are deduplicated apart), and a customer's day that differs
    from their last is a new distinct day, its gap noted; then the gaps' medians per customer
    (:func:`~training.dataset.group_medians`). Linear in the lines and reading them in order,
    where sorting every (customer, basket) and (customer, day) key took two sorts of the whole
    log (10M lines: 1.9 s for the segments).
    """
    no_day = np.iinfo(np.int64).min
    n_baskets = basket.max() + 1 if basket.shape[0] else 0
    first_customer = np.full(n_baskets, -1, np.int64)
    frequency = np.zeros(n, np.int64)
    others = np.empty(user.shape[0], np.int64)  # (customer, basket) keys of shared baskets
    n_others = 0
    last_day = np.full(n, no_day)
    gap_user = np.empty(user.shape[0], np.int64)
    gaps = np.empty(user.shape[0], np.float64)
    n_gaps = 0
    for p in range(user.shape[0]):
        u, b, d = user[p], basket[p], day[p]
        if first_customer[b] < 0:
            first_customer[b] = u
            frequency[u] += 1
        elif first_customer[b] != u:
            others[n_others] = u * n_baskets + b
            n_others += 1
        if d != last_day[u]:
            if last_day[u] != no_day:
                gap_user[n_gaps] = u
                gaps[n_gaps] = d - last_day[u]
                n_gaps += 1
            last_day[u] = d
    keys = np.sort(others[:n_others])
    for q in range(n_others):
        if q == 0 or keys[q] != keys[q - 1]:
            frequency[keys[q] // n_baskets] += 1
    return frequency, last_day, group_medians(gap_user[:n_gaps], gaps[:n_gaps], n)


def _monetary(table: pa.Table, user: np.ndarray, n: int) -> tuple[np.ndarray, str]:
    quantity = table["quantity"].to_numpy()
    price = table["price"]
    if price.null_count == len(price):
        return np.bincount(user, weights=quantity, minlength=n), "units"
    line = quantity * pc.fill_null(price, 0.0).to_numpy()
    return np.bincount(user, weights=line, minlength=n), "revenue"


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")
