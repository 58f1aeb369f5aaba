"""The one contract every scorer meets."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Scorer(Protocol):
    """Scores every item for a block of known users (rows of the model's user vocabulary)."""

    @property
    def n_items(self) -> int: ...

    def score(self, users: np.ndarray, as_of: int) -> np.ndarray:
        """(len(users), n_items) float scores, higher is better.

        ``as_of`` is the moment of recommending (epoch seconds): recency is measured from it.
        """
        ...
