"""Exact duplicate lines, found without comparing every line with every other.

Rules depend only on a row's canonical values, so identical rows share their
fate: a row repeating an earlier row of the whole log is kept by the other rules
exactly when that earlier row is. Duplicates can therefore be found on all rows,
concurrently with the other rules, and charged last.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from training.logs.convert import Column, plain

_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant (golden ratio) for hashing


def candidates(time: Column, item: pa.DictionaryArray, quantity: Column | None) -> np.ndarray:
    """Rows whose (time, item, quantity) occurs more than once: the only possible duplicates.

    Sorting one integer hash of the three finds them cheaply (a collision only adds
    a candidate); only these rows are then compared on every column.
    """
    repeated = np.zeros(len(item), dtype=bool)
    if len(item) < 2:
        return repeated
    parts = [pc.fill_null(time.cast(pa.int64()), 0), pc.fill_null(item.indices, 0)]
    if quantity is not None:
        parts.append(pc.fill_null(quantity, 0.0).cast(pa.int64(), safe=False))
    key = np.zeros(len(item), dtype=np.uint64)
    for part in parts:
        key = key * _MIX + part.to_numpy().astype(np.uint64)  # wraps around: still a hash
    order = np.argsort(key)
    ordered = key[order]
    same_as_next = ordered[1:] == ordered[:-1]
    shared = np.zeros(len(key), dtype=bool)
    shared[1:] |= same_as_next
    shared[:-1] |= same_as_next
    repeated[order[shared]] = True
    return repeated


def duplicates(columns: dict[str, Column | pa.Array], candidate: np.ndarray) -> np.ndarray:
    """Rows equal in every column to an earlier row; the first occurrence is not a duplicate."""
    duplicate = np.zeros(len(candidate), dtype=bool)
    if not candidate.any():
        return duplicate
    rows = np.flatnonzero(candidate)
    subset = {name: plain(column.take(rows)) for name, column in columns.items()}
    table = pa.table({**subset, "row": rows})
    firsts = table.group_by(list(subset), use_threads=False).aggregate([("row", "min")])
    duplicate[candidate] = True
    duplicate[firsts["row_min"].to_numpy()] = False
    return duplicate
