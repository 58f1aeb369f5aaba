"""Recommendations for many known customers at once: e-mail batches, exports, precomputation.

The serving path (``engine.recommender``) ranks one visitor per request; a batch ranks whole
blocks of customers with one matrix product per block. Memory stays bounded (one score block per
worker), both cores are used by scoring blocks in parallel threads with BLAS held to one thread
each (numpy releases the GIL in the product, the reductions and the partitions), and only the
chosen items are explained.

The selection is exact: every list equals a full sort of the allowed items by score, equal
scores by item index (:func:`engine.scoring.select_top_k`).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from engine.matrix import PurchaseHistory
from engine.recommender import COLLABORATIVE_REASON, bought_reason
from engine.scoring import select_top_k

ScoreBlock = Callable[[np.ndarray], np.ndarray]
"""Scores of a block of user rows: a fresh (len(rows), n_items) float32 array (modified)."""

BLOCK_FLOATS = 1 << 23  # scores per block (32 MiB of float32): big enough for BLAS to run at speed


@dataclass(frozen=True)
class BatchRanking:
    """The top k of each customer of a batch, in the order the customers were given."""

    users: np.ndarray  # (n,) user rows
    items: np.ndarray  # (n, k) int64 item indices, best first; -1 where fewer were allowed
    scores: np.ndarray  # (n, k) float32; -inf where ``items`` is -1


def rank_batch(
    score_block: ScoreBlock,
    users: np.ndarray,
    n_items: int,
    k: int,
    *,
    excluded: sp.csr_matrix | None = None,
    unavailable: np.ndarray | None = None,
    block_size: int | None = None,
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
) -> BatchRanking:
    """Exact top ``k`` allowed items for every user row in ``users``.

    Args:
        score_block: scores a block of user rows (for a model:
            ``lambda rows: model.scorer.score(rows, as_of)``).
        users: user rows to rank, in output order.
        n_items: catalog size (the width of every score block).
        k: items per user.
        excluded: (len(users), n_items) sparse mask of items each user must not get (bought and
            not due, sent recently...), row ``i`` for ``users[i]``.
        unavailable: item indices nobody gets.
        block_size: users per block; default keeps a block near :data:`BLOCK_FLOATS` scores.
        workers: blocks scored in parallel (one BLAS thread each).
        progress: called with the number of users of each finished block, in order.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    users = np.asarray(users, dtype=np.int64)
    if excluded is not None and excluded.shape != (len(users), n_items):
        raise ValueError(f"excluded is {excluded.shape}, expected {(len(users), n_items)}")
    size = block_size or max(1, min(1024, BLOCK_FLOATS // max(n_items, 1)))
    gone = np.empty(0, np.int64) if unavailable is None else np.asarray(unavailable, np.int64)
    k = min(k, n_items)

    def run(start: int) -> tuple[np.ndarray, np.ndarray]:
        stop = min(start + size, len(users))
        scores = score_block(users[start:stop])
        if excluded is not None:
            block = excluded[start:stop]
            rows = np.repeat(np.arange(stop - start), np.diff(block.indptr))
            scores[rows, block.indices] = -np.inf
        scores[:, gone] = -np.inf
        return select_top_k(scores, k)

    items = np.full((len(users), k), -1, dtype=np.int64)
    values = np.full((len(users), k), -np.inf, dtype=np.float32)
    starts = range(0, len(users), size)
    with threadpool_limits(1), ThreadPoolExecutor(max(1, workers)) as pool:
        for start, (block_items, block_values) in zip(starts, pool.map(run, starts), strict=True):
            items[start : start + len(block_items)] = block_items
            values[start : start + len(block_items)] = block_values
            if progress is not None:
                progress(len(block_items))
    return BatchRanking(users, items, values)


def bought_not_due(history: PurchaseHistory, users: np.ndarray, now: float) -> sp.csr_matrix:
    """(len(users), n_items) mask of what each user bought and is not due to buy again: the
    serving rule (``PurchaseHistory.not_due``) applied to a batch."""
    rows, cols = [], []
    for i, user in enumerate(np.asarray(users).tolist()):
        keep = history.not_due(user, now)
        rows.append(np.full(len(keep), i, dtype=np.int64))
        cols.append(keep)
    return _mask(rows, cols, (len(users), history.shape[1]))


def item_mask(per_user: list[np.ndarray], n_items: int) -> sp.csr_matrix:
    """A (len(per_user), n_items) mask from one array of item indices per user."""
    rows = [np.full(len(items), i, dtype=np.int64) for i, items in enumerate(per_user)]
    return _mask(rows, [np.asarray(items, np.int64) for items in per_user], (len(rows), n_items))


def _mask(rows: list[np.ndarray], cols: list[np.ndarray], shape: tuple[int, int]) -> sp.csr_matrix:
    r = np.concatenate(rows) if rows else np.empty(0, np.int64)
    c = np.concatenate(cols) if cols else np.empty(0, np.int64)
    mask = sp.csr_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=shape)
    mask.sum_duplicates()
    return mask


def reasons(history: PurchaseHistory, ranking: BatchRanking) -> list[list[str]]:
    """Why each chosen item was chosen, in the serving wording, for the chosen items only."""
    counts = history.counts
    out = []
    for user, items in zip(ranking.users.tolist(), ranking.items, strict=True):
        lo, hi = counts.indptr[user], counts.indptr[user + 1]
        bought = dict(zip(counts.indices[lo:hi].tolist(), counts.data[lo:hi].tolist(), strict=True))
        out.append(
            [
                bought_reason(bought[i]) if i in bought else COLLABORATIVE_REASON
                for i in items.tolist()
                if i >= 0
            ]
        )
    return out
