"""Time-ordered hold-out evaluation of the default model against the baselines.

The last ``holdout_days`` of the log are the test period; everything is fitted on what came
before. Test users are customers seen before the cut who bought in the test period. Metrics are
reported twice (after Li et al., "A Next Basket Recommendation Reality Check", TOIS 2023):

* all items: the list as served, scored against everything the customer bought;
* new items: the list of items the customer never bought before (what a "discover" slot shows),
  scored against the new items they bought, over customers who bought at least one.

Beyond :data:`MAX_TEST_CUSTOMERS` test customers a seeded sample of them is scored.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from engine.matrix import SECONDS_PER_DAY, Interactions, PurchaseHistory
from engine.models import BuyAgainScorer, PopularityScorer, Scorer
from engine.scoring import top_k
from training.device import Device
from training.events.feedback import Feedback
from training.fit import Signals
from training.fusion import fit_repeat_aware
from training.metrics import ranking_metrics
from training.params import ModelParams

# Test customers scored per block. A block's dense scores are read again by the selection right
# after the scorer writes them: 128 customers x 10k items of float64 (10 MB) stay closer to the
# core than 512 (39 MB). The same metrics; evaluation 10.0-10.3 -> 8.6-9.0 s at 1.17M lines and
# 67.2 -> 61.0 s at 10M, no change on Online Retail (a throwaway script, runs interleaved).
_USER_BLOCK = 128
# Test customers scored at most. Scoring is the model's and four baselines' every item for each
# of them, most of an evaluation of a large log (10M lines: 235 -> 74 s). The metrics are means
# over customers: one customer's ndcg@10 varies with a standard deviation of 0.23-0.29 (Online
# Retail, a generated 1M-line shop), so over 20,000 the mean's standard error is about 0.002,
# and 0.001 for the difference between the model and plain ALS on the same customers.
MAX_TEST_CUSTOMERS = 20_000


def holdout_cut(events: Interactions, days: int) -> int:
    """The start of the last ``days`` of ``events``, counted back from the moment a refit on all
    of them is as of (the last event's second + 1): then a refit's validation window of as many
    days starts at the cut, and the refit reuses the hold-out's fit (``Evaluation.signals``)."""
    return int(events.time.max()) + 1 - days * SECONDS_PER_DAY


@dataclass(frozen=True)
class HoldoutSplit:
    train: Interactions
    test: Interactions
    cut: int  # epoch seconds: train < cut <= test
    users: np.ndarray  # test users scored: active in both periods (a sample, past a maximum)
    eligible: int  # test users before sampling

    @classmethod
    def last_days(
        cls, events: Interactions, days: int, max_users: int | None = None, seed: int = 0
    ) -> HoldoutSplit:
        if len(events) == 0:
            raise ValueError("no purchases to evaluate on")
        return cls.at(events, holdout_cut(events, days), f"within the last {days} days",
                      max_users, seed)  # fmt: skip

    @classmethod
    def at(
        cls,
        events: Interactions,
        cut: int,
        period: str = "after the cut",
        max_users: int | None = None,
        seed: int = 0,
    ) -> HoldoutSplit:
        """Train on the events before ``cut``, test on those from it on; past ``max_users``
        test users, a uniform sample of them drawn with ``seed``."""
        train, test = events.before(cut), events.between(cut, None)
        users = np.intersect1d(train.active_users(), test.active_users(), assume_unique=True)
        if len(users) == 0:
            raise ValueError(
                f"no customer bought both before and {period}: "
                "choose a shorter --holdout-days or a longer log"
            )
        eligible = len(users)
        if max_users is not None and eligible > max_users:
            users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
        return cls(train, test, cut, users, eligible)

    def summary(self) -> dict[str, Any]:
        return {
            "cut": int(self.cut),
            "train_rows": len(self.train),
            "test_rows": len(self.test),
            "test_users": len(self.users),
            "test_users_eligible": self.eligible,
        }


@dataclass
class Evaluation:
    model: dict[str, float]
    baselines: dict[str, dict[str, float]]
    split: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    # The model's signals fitted on the events before the cut: a refit whose validation window
    # starts at the cut fits its weights on them (``fit_repeat_aware(earlier_fit=...)``).
    signals: Signals | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "baselines": self.baselines, "split": self.split}


def evaluate(
    events: Interactions,
    params: ModelParams,
    *,
    holdout_days: int = 30,
    k: int = 10,
    threads: int = 0,
    progress: bool = False,
    feedback: Feedback | None = None,
    split: HoldoutSplit | None = None,
    others: Mapping[str, Scorer] | None = None,
    device: Device = "auto",
    test_customers: int | None = MAX_TEST_CUSTOMERS,
) -> Evaluation:
    """Fit on the period before the hold-out and score the default model and every baseline.

    ``split``: a hold-out chosen by the caller instead of the last ``holdout_days``.
    ``test_customers``: test customers scored at most (a sample seeded by ``params.seed``;
    None: all).
    ``others``: more scorers of the split's users and items, scored beside the baselines (the
    live model, when a retrain decides whether to replace it).
    """
    split = split or HoldoutSplit.last_days(events, holdout_days, test_customers, params.seed)
    signals, weights = fit_repeat_aware(
        split.train,
        params,
        as_of=split.cut,
        threads=threads,
        progress=progress,
        feedback=feedback,
        device=device,
    )
    scorers: Mapping[str, Scorer] = {
        "popularity": PopularityScorer(signals.popularity),
        "buy_again": BuyAgainScorer(signals.history, signals.popularity),
        params.factors.algorithm: signals.factors,  # "als" (default) or "bpr"
        "item_knn": signals.knn,
        **(others or {}),
    }
    # The model and each baseline scored side by side, one BLAS thread each: most of their
    # work (products, selections) releases the GIL. 1.17M lines: 2.4 -> 1.5 s on 2 cores.
    every = {"model": signals.scorer(weights), **scorers}
    with threadpool_limits(1, "blas"), ThreadPoolExecutor(threads or os.cpu_count()) as pool:
        metrics = pool.map(lambda s: score_holdout(s, split, signals.history, k), every.values())
        scored = dict(zip(every, metrics, strict=True))
    return Evaluation(
        model=scored.pop("model"),
        baselines=scored,
        split=split.summary(),
        weights=weights,
        signals=signals,
    )


def score_holdout(
    scorer: Scorer, split: HoldoutSplit, history: PurchaseHistory, k: int
) -> dict[str, float]:
    """All-items and new-items metrics of one scorer on a hold-out."""
    truth = _truth(split.test)[split.users]
    seen = history.counts[split.users]
    seen.data[:] = 1.0
    new = (truth - truth.multiply(seen)).tocsr()
    new.eliminate_zeros()
    has_new = np.diff(new.indptr) > 0
    top_all, top_new = _rank(scorer, split.users, split.cut, k, seen, has_new)
    metrics = ranking_metrics(top_all, truth, scorer.n_items)
    metrics_new = ranking_metrics(top_new, new[has_new], scorer.n_items)
    return {**metrics, **{f"{name}_new": value for name, value in metrics_new.items()}}


def _rank(
    scorer: Scorer,
    users: np.ndarray,
    as_of: int,
    k: int,
    seen: sp.csr_matrix,
    has_new: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` of every user over all items, and of the users who ``has_new`` over the
    items they had not ``seen``: both from one scoring of each block (scoring each list apart
    scored most customers twice)."""
    every: list[np.ndarray] = []
    unseen: list[np.ndarray] = []
    for start in range(0, len(users), _USER_BLOCK):
        rows = slice(start, start + _USER_BLOCK)
        scores = scorer.score(users[rows], as_of)
        every.append(top_k(scores, k))  # leaves the scores as they are
        new = has_new[rows]
        unseen.append(top_k(scores[new], k, seen[rows][new]))  # a copy, masked in place
    if not every:
        return np.empty((0, k), dtype=np.int64), np.empty((0, k), dtype=np.int64)
    return np.concatenate(every), np.concatenate(unseen)


def _truth(test: Interactions) -> sp.csr_matrix:
    shape = (len(test.users), len(test.items))
    m = sp.csr_matrix((np.ones(len(test), np.float32), (test.user, test.item)), shape=shape)
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def format_table(evaluation: Evaluation, k: int) -> str:
    """Model and baselines side by side, all items then new items."""
    columns = {"model": evaluation.model, **evaluation.baselines}
    names = [f"{m}@{k}" for m in ("ndcg", "precision", "recall", "map", "hit_rate", "coverage")]
    rows = [*names, *(f"{n}_new" for n in names)]
    width = max(len(r) for r in rows) + 2
    lines = ["".join([f"{'metric':<{width}}", *(f"{c:>12}" for c in columns)])]
    for row in rows:
        cells = (f"{col.get(row, float('nan')):>12.4f}" for col in columns.values())
        lines.append(f"{row:<{width}}" + "".join(cells))
    users = evaluation.model.get("users", 0)
    users_new = evaluation.model.get("users_new", 0)
    scored, eligible = (evaluation.split.get(f) for f in ("test_users", "test_users_eligible"))
    sampled = eligible is not None and scored != eligible
    sample = f", a sample of the {eligible:,} test customers" if sampled else ""
    lines.append(f"(all items over {users} customers; new items over {users_new}{sample})")
    return "\n".join(lines)
