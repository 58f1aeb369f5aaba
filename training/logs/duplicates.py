"""Exact duplicate lines, found without comparing every line with every other.

Rules depend only on a row's canonical values, so identical rows share their
fate: a row repeating an earlier row of the whole log is kept by the other rules
exactly when that earlier row is. Duplicates can therefore be found on all rows,
concurrently with the other rules, and charged last.
"""

from __future__ import annotations

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from training.logs.convert import Column, plain

_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant (golden ratio) for hashing


def candidates(time: Column, item: pa.DictionaryArray, quantity: Column | None) -> np.ndarray:
    """Rows whose (time, item, quantity) occurs more than once: the only possible duplicates.

    One integer hash of the three per row (a collision only adds a candidate); the few
    repeated hashes are picked out (:func:`_repeated`) and every row looked up among them. At
    10M rows, alone and numba started: 1.4 s of hashing and argsort -> 0.4 s.
    """
    if len(item) < 2:
        return np.zeros(len(item), dtype=bool)
    seconds = pc.fill_null(time.cast(pa.int64()), 0).to_numpy()
    codes = pc.fill_null(item.indices, 0).to_numpy()
    units = (
        np.empty(0, dtype=np.int64)
        if quantity is None
        else pc.fill_null(quantity, 0.0).cast(pa.int64(), safe=False).to_numpy()
    )
    key = _row_keys(seconds, codes, units)
    return _members(key, _repeated(key))


@numba.njit(cache=True, nogil=True)
def _row_keys(seconds: np.ndarray, codes: np.ndarray, units: np.ndarray) -> np.ndarray:
    """One multiplicative hash per row (wrapping around); ``units`` empty: no quantity."""
    key = np.empty(seconds.shape[0], np.uint64)
    for row in range(seconds.shape[0]):
        value = np.uint64(seconds[row]) * _MIX + np.uint64(codes[row])
        if units.shape[0]:
            value = value * _MIX + np.uint64(units[row])
        key[row] = value
    return key


@numba.njit(cache=True, nogil=True)
def _repeated(key: np.ndarray) -> np.ndarray:
    """The hashes that occur more than once, each once, in ascending order.

    The hashes are spread over about ``len(key) / 64`` buckets by their top bits (a counting
    sort: two passes), then each bucket, small enough for the caches, is sorted and scanned for
    neighbours that are equal. 10M hashes: 0.36 s, where sorting them all with numpy took
    0.64-0.80 s on the same host (random hashes, two runs each).
    """
    n = key.shape[0]
    bits = 1
    while (1 << bits) < n // 64 and bits < 20:
        bits += 1
    shift = np.uint64(64 - bits)
    starts = np.zeros((1 << bits) + 1, np.int64)
    for i in range(n):
        starts[(key[i] >> shift) + np.uint64(1)] += 1
    for b in range(1 << bits):
        starts[b + 1] += starts[b]
    fill = starts[:-1].copy()
    grouped = np.empty(n, key.dtype)
    for i in range(n):
        b = key[i] >> shift
        grouped[fill[b]] = key[i]
        fill[b] += 1
    out = np.empty(n // 2, key.dtype)
    size = 0
    for b in range(1 << bits):
        bucket = np.sort(grouped[starts[b] : starts[b + 1]])
        for i in range(1, bucket.shape[0]):
            if bucket[i] == bucket[i - 1] and (size == 0 or out[size - 1] != bucket[i]):
                out[size] = bucket[i]
                size += 1
    return out[:size]


@numba.njit(cache=True, nogil=True)
def _members(key: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Whether each key is among the distinct ``values``: an open-addressing table of them,
    small enough to stay in cache (a binary search per row took 0.7 s at 10M rows)."""
    found = np.zeros(key.shape[0], np.bool_)
    if values.shape[0] == 0:
        return found
    bits = 4
    while (1 << bits) < 2 * values.shape[0]:
        bits += 1
    shift, mask = np.uint64(64 - bits), np.uint64((1 << bits) - 1)
    table = np.empty(1 << bits, np.uint64)
    used = np.zeros(1 << bits, np.bool_)
    for value in values:
        slot = (value * _MIX) >> shift
        while used[slot]:
            slot = (slot + np.uint64(1)) & mask
        table[slot], used[slot] = value, True
    for row in range(key.shape[0]):
        slot = (key[row] * _MIX) >> shift
        while used[slot]:
            if table[slot] == key[row]:
                found[row] = True
                break
            slot = (slot + np.uint64(1)) & mask
    return found


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
