"""Compiled loops for scoring blocks of customers: the trainer's weights, evaluation, batches.

Each replaces scipy or numpy calls whose result was then read densely or at a few cells only.
scipy's sparse product counts its entries in one pass, fills them in another, and is then sorted
or densified; the kNN terms here are summed straight into dense rows, in scipy's order of
summation, so the values are the same to the bit (tested against scipy).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _add_product_row(
    a_indptr: np.ndarray,
    a_indices: np.ndarray,
    a_data: np.ndarray,
    row: int,
    b_indptr: np.ndarray,
    b_indices: np.ndarray,
    b_data: np.ndarray,
    out: np.ndarray,
) -> None:
    """``out += (a @ b)[row]`` for CSR ``a`` and ``b`` given by their arrays, summed as scipy does
    (over ``a``'s entries of the row in order, each over its row of ``b``)."""
    for p in range(a_indptr[row], a_indptr[row + 1]):
        j = a_indices[p]
        value = a_data[p]
        for q in range(b_indptr[j], b_indptr[j + 1]):
            out[b_indices[q]] += value * b_data[q]


@numba.njit(cache=True, nogil=True)
def product_rows(
    a_indptr: np.ndarray,
    a_indices: np.ndarray,
    a_data: np.ndarray,
    rows: np.ndarray,
    b_indptr: np.ndarray,
    b_indices: np.ndarray,
    b_data: np.ndarray,
    out: np.ndarray,
) -> None:
    """``out[r] += (a @ b)[rows[r]]`` for each ``r``: rows of a sparse product as a dense block
    (customers' kNN scores: each one's bought items' similarity rows summed)."""
    for r in range(rows.shape[0]):
        _add_product_row(a_indptr, a_indices, a_data, rows[r], b_indptr, b_indices, b_data, out[r])


@numba.njit(cache=True, nogil=True)
def scaled_product_at(
    a_indptr: np.ndarray,
    a_indices: np.ndarray,
    a_data: np.ndarray,
    rows: np.ndarray,
    b_indptr: np.ndarray,
    b_indices: np.ndarray,
    b_data: np.ndarray,
    pair_rows: np.ndarray,
    pair_columns: np.ndarray,
    scratch: np.ndarray,
) -> np.ndarray:
    """float32 ``(a @ b)[rows[pair_rows], pair_columns]``, each divided by the maximum of its
    whole product row where that is positive: a customer's kNN scores at a few items, scaled as
    the full row would be, with one row held at a time (``scratch``: zeros, one per column of
    ``b``, of the product's dtype; left zeroed)."""
    n_pairs = pair_rows.shape[0]
    starts = np.zeros(rows.shape[0] + 1, np.int64)
    for p in range(n_pairs):
        starts[pair_rows[p] + 1] += 1
    for r in range(rows.shape[0]):
        starts[r + 1] += starts[r]
    order = np.empty(n_pairs, np.int64)
    fill = starts[:-1].copy()
    for p in range(n_pairs):
        order[fill[pair_rows[p]]] = p
        fill[pair_rows[p]] += 1
    out = np.empty(n_pairs, np.float32)
    for r in range(rows.shape[0]):
        if starts[r] == starts[r + 1]:
            continue
        _add_product_row(a_indptr, a_indices, a_data, rows[r], b_indptr, b_indices, b_data, scratch)
        top = scratch.max()
        for s in range(starts[r], starts[r + 1]):
            p = order[s]
            value = np.float32(scratch[pair_columns[p]])  # then divided as numpy would
            out[p] = value / top if top > 0 else value
        scratch[:] = 0
    return out


@numba.njit(cache=True, nogil=True)
def entry_positions(
    indptr: np.ndarray,
    indices: np.ndarray,
    rows: np.ndarray,
    pair_rows: np.ndarray,
    pair_columns: np.ndarray,
) -> np.ndarray:
    """Where ``(rows[pair_rows[p]], pair_columns[p])`` is stored in a canonical CSR matrix (sorted
    columns in each row), -1 where it has no entry: a binary search per pair, where scipy's
    fancy indexing copies the rows first and looks each pair up again per matrix."""
    out = np.empty(pair_rows.shape[0], np.int64)
    for p in range(pair_rows.shape[0]):
        row = rows[pair_rows[p]]
        lo, hi = indptr[row], indptr[row + 1]
        at = lo + np.searchsorted(indices[lo:hi], pair_columns[p])
        out[p] = at if at < hi and indices[at] == pair_columns[p] else -1
    return out


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def pair_dots(
    left: np.ndarray, right: np.ndarray, left_rows: np.ndarray, right_rows: np.ndarray
) -> np.ndarray:
    """float32 ``left[left_rows[p]] . right[right_rows[p]]`` for each pair ``p``: factor scores
    of sampled (customer, item) pairs without gathering their factors into copies first."""
    out = np.empty(left_rows.shape[0], np.float32)
    for p in range(left_rows.shape[0]):
        a, b = left[left_rows[p]], right[right_rows[p]]
        total = np.float32(0.0)
        for f in range(a.shape[0]):
            total += a[f] * b[f]
        out[p] = total
    return out
