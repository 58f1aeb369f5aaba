"""External ids <-> dense row indices.

Every customer, visitor and item id crosses this boundary exactly once, so no row index from
implicit or numpy ever leaks out of the engine and no external id is ever used as an index.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class Vocabulary:
    """An ordered set of external string ids; position in the set is the row index."""

    __slots__ = ("_ids", "_index")

    def __init__(self, ids: np.ndarray | Sequence[str], *, distinct: bool = False) -> None:
        """``distinct``: the ids are known to be (a dictionary's values), so no check sorts
        them (280k customer ids: 0.14 s)."""
        arr = np.asarray(ids, dtype=str)
        if arr.ndim != 1:
            raise ValueError("vocabulary ids must be one-dimensional")
        self._ids = arr
        self._index: dict[str, int] | None = None
        if not distinct and len(np.unique(arr)) != len(arr):
            raise ValueError("vocabulary ids must be unique")

    @classmethod
    def encode(cls, values: pa.ChunkedArray | pa.Array) -> tuple[Vocabulary, np.ndarray]:
        """Build a vocabulary from a column of ids and return it with each value's index.

        Ids are ordered by first appearance, so a log sorted by time gives a stable order.
        """
        encoded = pc.dictionary_encode(values).combine_chunks()
        vocab = cls(encoded.dictionary.to_numpy(zero_copy_only=False), distinct=True)
        return vocab, encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32)

    @property
    def ids(self) -> np.ndarray:
        """The ids in index order (a fixed-width unicode array, safe to save without pickle)."""
        return self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, ext_id: object) -> bool:
        return ext_id in self._lookup()

    def index(self, ext_id: str) -> int | None:
        """Row index of one id, or None when the id is unknown."""
        return self._lookup().get(ext_id)

    def indices(self, ext_ids: Iterable[str]) -> np.ndarray:
        """Row indices of many ids; unknown ids map to -1."""
        lookup = self._lookup()
        return np.fromiter((lookup.get(i, -1) for i in ext_ids), dtype=np.int64)

    def build_index(self) -> None:
        """Build the id -> index map now, so that no request pays for it (serving, at load)."""
        self._lookup()

    def _lookup(self) -> dict[str, int]:
        # Built on first use: training never needs it, serving builds it once at model load.
        if self._index is None:
            self._index = {str(v): i for i, v in enumerate(self._ids)}
        return self._index
