"""A live session as model input: event weights with recency decay, and the ALS fold-in."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from engine.matrix import SECONDS_PER_DAY
from engine.profiles import RecentEvent
from engine.session import EVENT_WEIGHTS, SESSION_HALF_LIFE_DAYS, FoldIn, session_weights
from engine.vocab import Vocabulary

NOW = 1_700_000_000.0
HALF_LIFE = SESSION_HALF_LIFE_DAYS * SECONDS_PER_DAY
ITEMS = Vocabulary(["a", "b", "c", "d"])


def _weights(events: list[RecentEvent], now: float = NOW) -> dict[str, float]:
    indices, values = session_weights(events, ITEMS, now)
    assert indices.dtype == np.int64
    assert values.dtype == np.float64
    assert len(set(indices.tolist())) == len(indices)  # one entry per item
    return {str(ITEMS.ids[i]): float(w) for i, w in zip(indices, values, strict=True)}


def test_event_types_weigh_in_order_of_intent() -> None:
    assert list(EVENT_WEIGHTS) == ["view", "click", "add_to_cart", "purchase"]
    values = list(EVENT_WEIGHTS.values())
    assert values == sorted(values)
    assert EVENT_WEIGHTS["purchase"] == 1.0


def test_weights_by_type_are_summed_per_item() -> None:
    events = [
        RecentEvent("a", "view", NOW),
        RecentEvent("b", "purchase", NOW),
        RecentEvent("a", "click", NOW),
        RecentEvent("a", "add_to_cart", NOW),
        RecentEvent("c", "view", NOW),
        RecentEvent("c", "view", NOW),
    ]
    assert _weights(events) == pytest.approx(
        {
            "a": EVENT_WEIGHTS["view"] + EVENT_WEIGHTS["click"] + EVENT_WEIGHTS["add_to_cart"],
            "b": EVENT_WEIGHTS["purchase"],
            "c": 2 * EVENT_WEIGHTS["view"],
        }
    )


def test_unknown_items_are_skipped() -> None:
    events = [
        RecentEvent("new-in-catalog", "purchase", NOW),
        RecentEvent("b", "click", NOW),
        RecentEvent("also-new", "view", NOW),
    ]
    assert _weights(events) == pytest.approx({"b": EVENT_WEIGHTS["click"]})
    indices, values = session_weights([RecentEvent("zzz", "click", NOW)], ITEMS, NOW)
    assert indices.tolist() == [] and values.tolist() == []


def test_an_empty_session_has_no_items() -> None:
    indices, values = session_weights([], ITEMS, NOW)
    assert indices.shape == (0,) and values.shape == (0,)


@pytest.mark.parametrize(("half_lives", "factor"), [(0, 1.0), (1, 0.5), (2, 0.25), (0.5, 2**-0.5)])
def test_recency_decay_halves_per_half_life(half_lives: float, factor: float) -> None:
    event = RecentEvent("c", "add_to_cart", NOW - half_lives * HALF_LIFE)
    assert _weights([event]) == pytest.approx({"c": EVENT_WEIGHTS["add_to_cart"] * factor})


def test_decayed_events_of_one_item_add_up() -> None:
    events = [RecentEvent("d", "purchase", NOW), RecentEvent("d", "purchase", NOW - HALF_LIFE)]
    assert _weights(events) == pytest.approx({"d": 1.5})


def test_an_event_stamped_after_now_counts_as_now() -> None:
    # Clocks of the storefront and the API drift: a future event is not worth more than a new one.
    assert _weights([RecentEvent("a", "click", NOW + 3600)]) == pytest.approx(
        {"a": EVENT_WEIGHTS["click"]}
    )


# --- FoldIn ------------------------------------------------------------------------------------

REGULARIZATION = 0.1


@pytest.fixture(scope="module")
def user_items() -> sp.csr_matrix:
    """A seeded 40 users x 25 items confidence matrix, every stored value >= 1."""
    rng = np.random.default_rng(7)
    dense = (rng.random((40, 25)) < 0.25) * rng.integers(1, 6, (40, 25))
    dense[np.arange(40), rng.integers(0, 25, 40)] = 1  # no user without items
    return sp.csr_matrix(dense.astype(np.float32))


@pytest.fixture(scope="module")
def als(user_items: sp.csr_matrix) -> AlternatingLeastSquares:
    # implicit warns (an error under pytest) unless BLAS runs single-threaded around it.
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=8, regularization=REGULARIZATION, iterations=5, random_state=0
        )
        model.fit(user_items, show_progress=False)
    return model


@pytest.mark.parametrize("user", [0, 3, 17, 39])
def test_fold_in_equals_implicits_recalculate_user(
    als: AlternatingLeastSquares, user_items: sp.csr_matrix, user: int
) -> None:
    row = user_items[[user]]
    with threadpool_limits(1, "blas"):
        expected = als.recalculate_user(user, row)
    folded = FoldIn(als.item_factors, REGULARIZATION, scale=1.0).user_vector(row.indices, row.data)
    assert folded.shape == (8,)
    assert folded.dtype == np.float32
    np.testing.assert_allclose(folded, expected, rtol=1e-3, atol=1e-5)


def test_scale_multiplies_the_session_weights_into_confidences(
    als: AlternatingLeastSquares, user_items: sp.csr_matrix
) -> None:
    # scale is what one purchase weighed in training: weights w fold in like confidences w*scale.
    row = user_items[[5]]
    with threadpool_limits(1, "blas"):
        expected = als.recalculate_user(5, 2.5 * row)
    folded = FoldIn(als.item_factors, REGULARIZATION, scale=2.5).user_vector(row.indices, row.data)
    np.testing.assert_allclose(folded, expected, rtol=1e-3, atol=1e-5)


def test_an_empty_session_folds_in_to_the_zero_vector(als: AlternatingLeastSquares) -> None:
    folded = FoldIn(als.item_factors, REGULARIZATION, scale=1.0).user_vector(
        np.empty(0, np.int64), np.empty(0, np.float64)
    )
    assert folded.shape == (8,)
    assert folded.dtype == np.float32
    assert not folded.any()
