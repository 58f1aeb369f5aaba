"""Top-k ranking metrics for a block of recommendation lists against what was really bought."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

METRICS = ("precision", "recall", "map", "ndcg", "hit_rate")


def ranking_metrics(top: np.ndarray, truth: sp.csr_matrix, n_items: int) -> dict[str, float]:
    """Mean metrics at k = ``top.shape[1]`` over the rows of ``top``.

    Args:
        top: (n_users, k) item indices, best first; -1 marks an empty slot (never a hit).
        truth: (n_users, n_items) relevant items per row; every row must have at least one.
        n_items: catalog size, for coverage.

    Returns:
        ``{"precision@k", "recall@k", "map@k", "ndcg@k", "hit_rate@k", "coverage@k", "users"}``
    """
    n_users, k = top.shape
    relevant = np.diff(truth.indptr)
    if truth.shape[0] != n_users:
        raise ValueError(f"{n_users} lists but {truth.shape[0]} truth rows")
    if n_users == 0:
        return {**{f"{m}@{k}": 0.0 for m in (*METRICS, "coverage")}, "users": 0}
    if (relevant == 0).any():
        raise ValueError("every user needs at least one relevant item")
    hits = _hits(top, truth)
    ideal_len = np.minimum(relevant, k)
    precision_at_i = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    n_hits = hits.sum(axis=1)
    recommended = np.unique(top[top >= 0])
    return {
        f"precision@{k}": float(np.mean(n_hits / k)),
        f"recall@{k}": float(np.mean(n_hits / relevant)),
        f"map@{k}": float(np.mean((precision_at_i * hits).sum(axis=1) / ideal_len)),
        f"ndcg@{k}": float(np.mean(_ndcg(hits, relevant))),
        f"hit_rate@{k}": float(np.mean(n_hits > 0)),
        f"coverage@{k}": len(recommended) / n_items if n_items else 0.0,
        "users": int(n_users),
    }


def ndcg_per_row(top: np.ndarray, truth: sp.csr_matrix) -> np.ndarray:
    """ndcg@k of each row of ``top`` (arguments as for :func:`ranking_metrics`): the per-customer
    values behind its mean, for comparisons paired by customer."""
    return _ndcg(_hits(top, truth), np.diff(truth.indptr))


def _ndcg(hits: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    k = hits.shape[1]
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    idcg = np.cumsum(discount)[np.minimum(relevant, k) - 1]
    return (hits * discount).sum(axis=1) / idcg


def _hits(top: np.ndarray, truth: sp.csr_matrix) -> np.ndarray:
    """(n_users, k) 0/1: whether each recommended item is in that user's truth row."""
    n_users = top.shape[0]
    rows = np.repeat(np.arange(n_users), np.diff(truth.indptr))
    relevant_keys = np.sort(rows.astype(np.int64) * truth.shape[1] + truth.indices)
    keys = np.arange(n_users, dtype=np.int64)[:, None] * truth.shape[1] + top
    return (isin_sorted(keys, relevant_keys) & (top >= 0)).astype(np.float64)


def isin_sorted(values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """``np.isin(values, keys)`` for ascending ``keys``: a binary search per value, where isin
    sorts both together (the fusion weights' 300k sampled cells on Online Retail: 65 -> 13 ms)."""
    if not len(keys):
        return np.zeros(np.shape(values), dtype=bool)
    at = np.minimum(np.searchsorted(keys, values), len(keys) - 1)
    return keys[at] == values
