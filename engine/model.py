"""A trained model as the serving side sees it: the artifact's arrays behind named fields.

The artifact is written by the trainer (``training.pipeline``); this module only reads and
validates it, so the API and batch jobs depend on the artifact format, never on training code.
Ranking, rules and reasons live in ``engine.recommender``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from engine.artifacts import Artifact, ArtifactError, csr_from_arrays, load_artifact
from engine.candidates import check_lists
from engine.matrix import PurchaseHistory
from engine.models import FactorScorer, ItemKnnScorer, RepeatAwareScorer
from engine.vocab import Vocabulary

ALGORITHM = "repeat-aware"

# The artifact's arrays indexed by item: along their first axis, as the columns of a users x
# items CSR matrix, and on both axes of an items x items one. A trainer that renumbers the
# items (``training.candidate_lists.ordered_by_lists``) must renumber exactly these.
ITEM_ROWS = (
    "items",
    "item_factors",
    "popularity",
    "trending",
    "item_description",
    "item_category",
    "item_price",
    "item_baskets",
)
ITEM_COLUMNS = ("history_counts", "history_last_time", "history_first_time")
ITEM_BY_ITEM = ("similarity", "together")


class Model:
    """The default repeat-aware model with its vocabularies, item metadata, basket pairs and
    each customer's value segment (RFM, as of the end of the training log)."""

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
                csr_from_arrays(a, "history_counts"),
                csr_from_arrays(a, "history_last_time"),
                csr_from_arrays(a, "history_first_time"),
            )
            self.together = csr_from_arrays(a, "together")
            self.segments: np.ndarray = a["user_segment"]  # segment name per user row
            self.rfm: np.ndarray = a["user_rfm"]  # int8 (users, 3): R, F, M scores 1..5
            _check_sizes(a, history, self.together, len(self.users), len(self.items))
            # A large catalog's lists (engine.candidates), if the trainer made them.
            self.has_candidate_lists = check_lists(a, len(self.items), a["item_factors"].shape[1])
            self.scorer = RepeatAwareScorer(
                history,
                a["popularity"],
                a["trending"],
                FactorScorer(a["user_factors"], a["item_factors"]),
                ItemKnnScorer(history.counts, csr_from_arrays(a, "similarity")),
                manifest["weights"],
            )
            self.artifact = artifact
            self.as_of: int = int(manifest["as_of"])
            # Anonymous visitors get what is trending, ties broken by what sells overall. Not the
            # fused item prior: its popularity weights are corrections learned next to the customer
            # features and can be negative, which on its own ranks the least-sold items first.
            popularity = self.scorer.popularity.astype(np.float64)
            self.trending_scores = self.scorer.trending + popularity / (
                popularity.max(initial=0) + 1
            )
            self.description: np.ndarray = a["item_description"]
            self.category: np.ndarray = a["item_category"]
            self.price: np.ndarray = a["item_price"]
            self.item_baskets: np.ndarray = a["item_baskets"]  # baskets containing each item
            self.baskets = int(manifest["input"]["baskets"])  # baskets in the training log
            self.regularization = float(manifest["params"]["factors"]["regularization"])
            self.confidence_scale = float(manifest["confidence_scale"])
        except (KeyError, ValueError, TypeError) as exc:
            # TypeError: a manifest field of the wrong JSON type (its checksums cover the
            # arrays, not the manifest itself), e.g. "as_of": null.
            raise ArtifactError(f"{artifact.path}: inconsistent model: {exc}") from exc

    @property
    def version(self) -> str:
        return self.artifact.version

    def segment_of(self, customer_id: str) -> str | None:
        """The customer's value segment, or None for a customer the model does not know."""
        row = self.users.index(customer_id)
        return None if row is None else str(self.segments[row])

    @property
    def manifest(self) -> dict[str, Any]:
        return self.artifact.manifest


def _check_sizes(
    arrays: Mapping[str, np.ndarray],
    history: PurchaseHistory,
    together: sp.csr_matrix,
    n_users: int,
    n_items: int,
) -> None:
    """Every per-user and per-item array must match the vocabularies, or requests would fail."""
    expected = {
        "user_factors": (n_users, "users"),
        "user_segment": (n_users, "users"),
        "user_rfm": (n_users, "users"),
        **{name: (n_items, "items") for name in ITEM_ROWS if name != "items"},
    }
    for name, (rows, what) in expected.items():
        if len(arrays[name]) != rows:
            raise ValueError(f"{name} has {len(arrays[name])} rows for {rows} {what}")
    if arrays["user_rfm"].shape[1:] != (3,):
        raise ValueError(f"user_rfm is {arrays['user_rfm'].shape}, expected (users, 3)")
    for name, matrix in (
        ("history_counts", history.counts),
        ("history_last_time", history.last_time),
        ("history_first_time", history.first_time),
    ):
        if matrix.shape != (n_users, n_items):
            raise ValueError(f"{name} is {matrix.shape}, the vocabularies {(n_users, n_items)}")
    if together.shape != (n_items, n_items):
        raise ValueError(f"together is {together.shape} for {n_items} items")


def load_model(path: str | Path, *, verify: bool = True) -> Model:
    """Load and validate a model from a models dir (its ``current``) or a version directory."""
    return Model(load_artifact(path, verify=verify))
