"""Batch ranking for e-mail campaigns: whole customer bases, against floors in the same run.

    python -m benchmarks.email_batch [--models DIR] [--users N] [--json OUT]

* ``online retail``: every customer of a model trained on the shared Online Retail log (unless
  ``--models``): the engine's batch (the fused score, past purchases unless due, exact top 10,
  reasons) and the whole e-mail job without file I/O (consent for everyone, caps, holdout).
* ``100k items``: a synthetic catalog of 100,000 items with random 64-dimensional float32
  factors, ``--users`` customers with 20 purchases each and 100 unavailable items; customers/s
  with exact top 10 on all cores, against the floor measured in the same run with the same
  blocks and threads: ``user_factors @ item_factors.T`` plus one ``argpartition`` per row,
  nothing else. Also the full repeat-aware scorer on that catalog (kNN with 20 neighbours per
  item), and, if hnswlib is installed (``pip install personalize[ann]``), an HNSW index:
  build time, customers/s and recall@10 against the exact lists.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from benchmarks.fixtures import retail_model, write_json
from engine.batch import BLOCK_FLOATS, bought_not_due, rank_batch, reasons
from engine.consent import Channel, ConsentLedger, ConsentRecord, Status
from engine.matrix import PurchaseHistory
from engine.model import Model, load_model
from engine.models import FactorScorer, ItemKnnScorer, RepeatAwareScorer
from training.campaign.email import EmailSpec, build_batch

K = 10
WORKERS = os.cpu_count() or 1
DAY = 86_400


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """Fastest of ``repeat`` runs after one warm-up (page faults, caches), in seconds."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def online_retail(model: Model, repeat: int) -> dict[str, Any]:
    users = np.arange(len(model.users))
    now = float(model.as_of)
    history = model.scorer.history

    def batch() -> None:
        ranking = rank_batch(
            lambda rows: model.scorer.score(rows, int(now)),
            users,
            len(model.items),
            K,
            excluded=bought_not_due(history, users, now),
            workers=WORKERS,
        )
        reasons(history, ranking)

    consent = ConsentLedger(
        ConsentRecord(str(c), Channel.EMAIL, Status.GIVEN, now - DAY) for c in model.users.ids
    )
    spec = EmailSpec(campaign="bench", now=now, k=K)
    return {
        "customers": len(users),
        "items": len(model.items),
        "seconds": {
            "batch (score, rules, top-10, reasons)": best_of(batch, repeat),
            "email job without I/O": best_of(lambda: build_batch(model, consent, spec), repeat),
        },
    }


def synthetic(
    n_users: int, repeat: int, ann: bool, n_items: int = 100_000, dims: int = 64
) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    item_factors = rng.standard_normal((n_items, dims), dtype=np.float32) / np.float32(
        np.sqrt(dims)
    )
    user_factors = rng.standard_normal((n_users, dims), dtype=np.float32)
    users = np.arange(n_users)
    history = _history(rng, n_users, n_items, per_user=20)
    excluded = bought_not_due(history, users, 0.0)
    unavailable = rng.choice(n_items, 100, replace=False)
    size = max(1, min(1024, BLOCK_FLOATS // n_items))

    def factors(rows: np.ndarray) -> np.ndarray:
        return user_factors[rows] @ item_factors.T

    def floor_block(start: int) -> np.ndarray:
        scores = factors(users[start : start + size])
        return np.argpartition(scores, n_items - K, axis=1)[:, n_items - K :]

    def floor() -> None:
        with threadpool_limits(1), ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(floor_block, range(0, n_users, size)))

    def exact() -> np.ndarray:
        return rank_batch(factors, users, n_items, K, excluded=excluded,
                          unavailable=unavailable, workers=WORKERS).items  # fmt: skip

    scorer = _repeat_aware(rng, history, item_factors, user_factors)
    fused_users = users[: max(1, n_users // 4)]  # slower: a quarter of the customers is enough

    def fused() -> None:
        rank_batch(lambda rows: scorer.score(rows, 0), fused_users, n_items, K,
                   excluded=excluded[: len(fused_users)], unavailable=unavailable,
                   workers=WORKERS)  # fmt: skip

    seconds = {
        "floor: product + argpartition": best_of(floor, repeat),
        "exact top-10, masks": best_of(exact, repeat),
    }
    rate = {name: n_users / s for name, s in seconds.items()}
    rate["repeat-aware scorer, exact top-10, masks"] = len(fused_users) / best_of(fused, repeat)
    out: dict[str, Any] = {
        "customers": n_users,
        "items": n_items,
        "dims": dims,
        "block_users": size,
        "workers": WORKERS,
        "customers_per_second": rate,
        "exact / floor": rate["exact top-10, masks"] / rate["floor: product + argpartition"],
    }
    if ann:
        plain = rank_batch(factors, users, n_items, K, workers=WORKERS).items
        out["ann"] = _hnsw(item_factors, user_factors, plain, repeat=1)  # slow at high ef
    return out


def _history(
    rng: np.random.Generator, n_users: int, n_items: int, per_user: int
) -> PurchaseHistory:
    """``per_user`` distinct items per user (one per stripe of the catalog), bought once or
    twice over the past year."""
    rows = np.repeat(np.arange(n_users), per_user)
    stripe = n_items // per_user
    cols = (rng.integers(0, stripe, (n_users, per_user)) + np.arange(per_user) * stripe).ravel()
    counts = rng.integers(1, 3, len(rows)).astype(np.float32)
    last = -rng.uniform(0, 365 * DAY, len(rows))
    first = last - (counts - 1) * rng.uniform(1, 60 * DAY, len(rows))

    def matrix(values: np.ndarray) -> sp.csr_matrix:
        m = sp.csr_matrix((values, (rows, cols)), shape=(n_users, n_items))
        m.sort_indices()
        return m

    return PurchaseHistory(matrix(counts), matrix(last), matrix(first))


def _repeat_aware(
    rng: np.random.Generator,
    history: PurchaseHistory,
    item_factors: np.ndarray,
    user_factors: np.ndarray,
    neighbours: int = 20,
) -> RepeatAwareScorer:
    n_items = item_factors.shape[0]
    similarity = sp.csr_matrix(
        (
            rng.uniform(0, 1, n_items * neighbours).astype(np.float32),
            (
                np.repeat(np.arange(n_items), neighbours),
                rng.integers(0, n_items, n_items * neighbours),
            ),
        ),
        shape=(n_items, n_items),
    )
    popularity = np.asarray(rng.pareto(1.5, n_items), dtype=np.float32)
    weights = {"log_count": 1.0, "bought": 0.5, "recency": 0.5, "log_popularity": 0.2,
               "log_trending": 0.2, "factor_score": 1.0, "knn_score": 0.5}  # fmt: skip
    return RepeatAwareScorer(
        history,
        popularity,
        popularity / 4,
        FactorScorer(user_factors, item_factors),
        ItemKnnScorer(history.counts, similarity),
        weights,
    )


def _hnsw(
    item_factors: np.ndarray, user_factors: np.ndarray, exact: np.ndarray, repeat: int
) -> dict[str, Any]:
    try:
        import hnswlib  # an optional extra: personalize[ann]
    except ImportError:
        return {"skipped": "hnswlib not installed (pip install personalize[ann])"}
    n_items, dims = item_factors.shape
    start = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=dims)
    index.init_index(max_elements=n_items, ef_construction=200, M=32, random_seed=0)
    index.set_num_threads(WORKERS)
    index.add_items(item_factors, np.arange(n_items))
    build = time.perf_counter() - start
    runs = {}
    for ef in (50, 100, 200, 400):
        index.set_ef(ef)
        seconds = best_of(lambda: index.knn_query(user_factors, k=K), repeat)
        labels, _ = index.knn_query(user_factors, k=K)
        hits = sum(
            len(set(a) & set(b)) for a, b in zip(labels.tolist(), exact.tolist(), strict=True)
        )
        runs[f"ef={ef}"] = {
            "customers_per_second": len(user_factors) / seconds,
            "recall@10": hits / exact.size,
        }
    return {"index": "hnswlib HNSW, inner product, M=32, ef_construction=200",
            "build_seconds": build, "queries": runs}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, help="a models directory (default: train one)")
    parser.add_argument("--users", type=int, default=20_000, help="synthetic customers")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--ann", action=argparse.BooleanOptionalAction, default=True, help="time hnswlib too"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.models is None:
        args.models = retail_model(Path(tempfile.mkdtemp(prefix="bench-models-")))
    retail = online_retail(load_model(args.models), args.repeat)
    print(f"Online Retail: {retail['customers']:,} customers x {retail['items']:,} items")
    for name, seconds in retail["seconds"].items():
        print(f"  {name:<40} {seconds:6.3f} s")
    synth = synthetic(args.users, args.repeat, args.ann)
    print(f"{synth['items']:,} items x {synth['dims']} dims, {synth['customers']:,} customers, "
          f"blocks of {synth['block_users']}, {synth['workers']} workers")  # fmt: skip
    for name, rate in synth["customers_per_second"].items():
        print(f"  {name:<40} {rate:8,.0f} customers/s")
    print(f"  exact / floor {synth['exact / floor']:.2f}")
    for name, run in synth.get("ann", {}).get("queries", {}).items():
        print(f"  hnswlib {name:<32} {run['customers_per_second']:8,.0f} customers/s, "
              f"recall@10 {run['recall@10']:.3f}")  # fmt: skip
    if args.json:
        # Other work on the machine slows every case alike; the load says how much there was.
        machine = {"cpus": os.cpu_count(), "load_average_1m_after": os.getloadavg()[0]}
        result = {"online_retail": retail, "synthetic": synth, "machine": machine}
        write_json(args.json, result)


if __name__ == "__main__":
    main()
