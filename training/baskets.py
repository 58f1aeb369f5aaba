"""Items bought together: pairs from the same basket with support, confidence and lift.

Only the pair counts (support) and the per-item basket counts are stored; confidence and lift
follow from them at read time (``engine.model``), so the artifact holds no derived numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp


@dataclass(frozen=True)
class BasketPairs:
    pairs: sp.csr_matrix  # items x items: baskets containing both (diagonal zero), top per item
    item_baskets: np.ndarray  # baskets containing each item
    baskets: int  # baskets in the log


def basket_pairs(
    baskets: pa.ChunkedArray,
    item_codes: np.ndarray,
    n_items: int,
    *,
    min_support: int = 3,
    per_item: int = 50,
) -> BasketPairs:
    """Count co-occurrences in baskets; keep pairs seen in >= ``min_support`` baskets, and for
    each item only its ``per_item`` partners with the highest support (bounds the artifact).

    ``baskets`` and ``item_codes`` are parallel: one basket id and one item index per line.
    """
    basket_codes = pc.dictionary_encode(baskets).combine_chunks().indices.to_numpy()
    n_baskets = int(basket_codes.max()) + 1 if len(basket_codes) else 0
    incidence = sp.csr_matrix(
        (np.ones(len(item_codes), dtype=np.float32), (basket_codes, item_codes)),
        shape=(n_baskets, n_items),
    )
    incidence.sum_duplicates()
    incidence.data[:] = 1.0  # presence in the basket, not the number of lines
    item_baskets = np.asarray(incidence.sum(axis=0)).ravel().astype(np.float32)
    co = (incidence.T @ incidence).tocsr()
    co.setdiag(0)
    co.data[co.data < min_support] = 0
    co.eliminate_zeros()
    return BasketPairs(_top_per_row(co, per_item), item_baskets, n_baskets)


def _top_per_row(m: sp.csr_matrix, n: int) -> sp.csr_matrix:
    """Keep each row's ``n`` largest entries (ties by column), vectorised over all rows.

    Rows with at most ``n`` entries are kept whole; only the entries of longer rows are sorted,
    on one int64 key (row, support descending, column): several times faster than a three-key
    lexsort of every entry, and the pairs step is a large part of training.
    """
    m = m.tocsr()
    m.sort_indices()  # kept entries stay in column order
    lengths = np.diff(m.indptr)
    rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), lengths)
    keep = lengths[rows] <= n
    long = np.flatnonzero(~keep)
    if len(long):
        support = m.data[long].astype(np.int64)  # whole basket counts
        top = int(support.max())
        col_bits, value_bits = int(m.shape[1]).bit_length(), top.bit_length()
        if int(m.shape[0]).bit_length() + value_bits + col_bits > 63:
            order = long[np.lexsort((m.indices[long], -support, rows[long]))]
        else:
            key = (rows[long] << (value_bits + col_bits)) | ((top - support) << col_bits)
            order = long[np.argsort(key | m.indices[long])]
        # Rank within the row: the position in ``order`` less where the row's group starts.
        position = np.arange(len(order))
        grouped = rows[order]
        starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
        rank = position - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
        keep[order[rank < n]] = True
    indptr = np.r_[0, np.cumsum(np.minimum(lengths, n))]
    return sp.csr_matrix((m.data[keep].astype(np.float32), m.indices[keep], indptr), m.shape)
