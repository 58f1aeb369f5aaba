"""A trained model as the serving side sees it: loaded from an artifact, ready to recommend.

The artifact is written by the trainer (``training.pipeline``); this module only reads it, so the
API and batch jobs depend on the artifact format, never on training code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.artifacts import Artifact, ArtifactError, csr_from_arrays, load_artifact
from engine.matrix import PurchaseHistory
from engine.models import FactorScorer, ItemKnnScorer, RepeatAwareScorer
from engine.scoring import top_k
from engine.vocab import Vocabulary

ALGORITHM = "repeat-aware"


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    score: float
    reason: str
    description: str = ""
    price: float | None = None


class Model:
    """The default repeat-aware model with its vocabularies and item metadata."""

    def __init__(self, artifact: Artifact) -> None:
        manifest = artifact.manifest
        if manifest.get("algorithm") != ALGORITHM:
            raise ArtifactError(
                f"{artifact.path}: algorithm {manifest.get('algorithm')!r} is not {ALGORITHM!r}"
            )
        a = artifact.arrays
        try:
            self.users = Vocabulary(a["users"])
            self.items = Vocabulary(a["items"])
            history = PurchaseHistory(
                csr_from_arrays(a, "history_counts"), csr_from_arrays(a, "history_last_time")
            )
            _check_sizes(a, history, len(self.users), len(self.items))
            self.scorer = RepeatAwareScorer(
                history,
                a["popularity"],
                a["trending"],
                FactorScorer(a["user_factors"], a["item_factors"]),
                ItemKnnScorer(history.counts, csr_from_arrays(a, "similarity")),
                manifest["weights"],
            )
        except (KeyError, ValueError) as exc:
            raise ArtifactError(f"{artifact.path}: inconsistent model arrays: {exc}") from exc
        self.artifact = artifact
        self.as_of: int = int(manifest["as_of"])
        # Anonymous visitors get what is trending, ties broken by what sells overall. Not the
        # fused item prior: its popularity weights are corrections learned next to the customer
        # features and can be negative, which on its own ranks the least-sold items first.
        popularity = self.scorer.popularity.astype(np.float64)
        self._trending_scores = self.scorer.trending + popularity / (popularity.max(initial=0) + 1)
        self._description = a["item_description"]
        self._price = a["item_price"]

    @property
    def version(self) -> str:
        return self.artifact.version

    @property
    def manifest(self) -> dict[str, Any]:
        return self.artifact.manifest

    def recommend(
        self,
        customer_id: str | None,
        k: int = 10,
        *,
        exclude_bought: bool = False,
        now: int | None = None,
    ) -> list[Recommendation]:
        """Top ``k`` items for a customer; an unknown or absent customer gets what is trending."""
        as_of = self.as_of if now is None else now
        row = None if customer_id is None else self.users.index(customer_id)
        history = self.scorer.history
        if row is None:
            scores = self._trending_scores[None, :].copy()
            exclude = None
        else:
            scores = self.scorer.score(np.array([row]), as_of)
            exclude = history.counts[[row]] if exclude_bought else None
        picked = top_k(scores, k, exclude)[0]
        bought = (
            {}
            if row is None
            else dict(
                zip(history.items_of(row).tolist(), history.counts[row].data.tolist(), strict=True)
            )
        )
        return [
            self._describe(int(i), float(scores[0, i]), bought, known=row is not None)
            for i in picked
            if i >= 0
        ]

    def _describe(
        self, item: int, score: float, bought: dict[int, float], *, known: bool
    ) -> Recommendation:
        times = bought.get(item)
        if times is not None:
            reason = f"you bought it {int(times)} time{'s' if times != 1 else ''} before"
        elif known:
            reason = "customers who buy what you buy chose it"
        else:
            reason = f"trending: {int(self.scorer.trending[item])} customers bought it recently"
        price = float(self._price[item])
        return Recommendation(
            item_id=str(self.items.ids[item]),
            score=score,
            reason=reason,
            description=str(self._description[item]),
            price=None if np.isnan(price) else price,
        )


def _check_sizes(
    arrays: Mapping[str, np.ndarray], history: PurchaseHistory, n_users: int, n_items: int
) -> None:
    """Every per-user and per-item array must match the vocabularies, or requests would fail."""
    expected = {
        "user_factors": (n_users, "users"),
        "item_factors": (n_items, "items"),
        "popularity": (n_items, "items"),
        "trending": (n_items, "items"),
        "item_description": (n_items, "items"),
        "item_price": (n_items, "items"),
    }
    for name, (rows, what) in expected.items():
        if len(arrays[name]) != rows:
            raise ValueError(f"{name} has {len(arrays[name])} rows for {rows} {what}")
    for name, matrix in (
        ("history_counts", history.counts),
        ("history_last_time", history.last_time),
    ):
        if matrix.shape != (n_users, n_items):
            raise ValueError(f"{name} is {matrix.shape}, the vocabularies {(n_users, n_items)}")


def load_model(path: str | Path, *, verify: bool = True) -> Model:
    """Load and validate a model from a models dir (its ``current``) or a version directory."""
    return Model(load_artifact(path, verify=verify))
