"""The bought-together export on ten baskets whose support, confidence and lift were counted
by hand: lift = support x baskets / (baskets(a) x baskets(b))."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from engine.vocab import Vocabulary
from training.baskets import basket_pairs
from training.crm.pairs import bought_together, top_pairs
from training.dataset import basket_codes

BASKETS = {
    "b1": "xy", "b2": "xy", "b3": "xyz", "b4": "xz", "b5": "z",
    "b6": "zw", "b7": "w", "b8": "w", "b9": "z", "b10": "y",
}  # fmt: skip
# Baskets holding each item: x 4 (b1-b4), y 4 (b1 b2 b3 b10), z 5 (b3 b4 b5 b6 b9), w 3 (b6-b8).
# Pairs: x+y 3 (b1 b2 b3), x+z 2 (b3 b4), y+z 1 (b3), z+w 1 (b6).
LIFT_XY = 3 * 10 / (4 * 4)  # 1.875
LIFT_XZ = 2 * 10 / (4 * 5)  # 1.0
LIFT_YZ = 1 * 10 / (4 * 5)  # 0.5
LIFT_ZW = 1 * 10 / (5 * 3)  # 0.667


@dataclass
class Pairs:
    """The fields of engine.model.Model that the export reads."""

    items: Vocabulary
    description: np.ndarray
    together: sp.csr_matrix
    item_baskets: np.ndarray
    baskets: int


@pytest.fixture(scope="module")
def model() -> Pairs:
    lines = [(basket, item) for basket, items in BASKETS.items() for item in items]
    items, codes = Vocabulary.encode(pa.chunked_array([[item for _, item in lines]]))
    counted = basket_pairs(
        basket_codes(pa.chunked_array([[basket for basket, _ in lines]])),
        codes,
        len(items),
        min_support=1,
    )
    assert counted.baskets == 10
    description = np.array([f"product {i}" for i in items.ids])
    return Pairs(items, description, counted.pairs, counted.item_baskets, counted.baskets)


def _rows(table: pa.Table) -> list[tuple[str, str]]:
    return list(zip(table["item"].to_pylist(), table["partner"].to_pylist(), strict=True))


def test_support_confidence_and_lift_match_the_hand_count(model: Pairs) -> None:
    table = bought_together(model)
    assert table.num_rows == 8  # four pairs, both directions
    got = {pair: row for pair, row in zip(_rows(table), table.to_pylist(), strict=True)}
    xy, zx = got[("x", "y")], got[("z", "x")]
    assert (xy["support"], xy["item_baskets"], xy["partner_baskets"]) == (3, 4, 4)
    assert xy["confidence"] == pytest.approx(3 / 4)
    assert xy["lift"] == pytest.approx(LIFT_XY)
    assert xy["reason"] == "bought together in 3 baskets, lift 1.9"
    assert xy["item_description"] == "product x"
    assert xy["partner_description"] == "product y"
    assert zx["confidence"] == pytest.approx(2 / 5)  # P(x | z): not symmetric
    assert zx["lift"] == pytest.approx(LIFT_XZ)  # lift is
    assert got[("y", "z")]["lift"] == pytest.approx(LIFT_YZ)
    assert got[("w", "z")]["lift"] == pytest.approx(LIFT_ZW)
    assert got[("w", "z")]["reason"] == "bought together in 1 baskets, lift 0.7"


def test_each_items_partners_come_by_support_then_lift(model: Pairs) -> None:
    # Items in model order (x y z w); z's partners of support 1: w (lift 0.67) before y (0.5).
    assert _rows(bought_together(model)) == [
        ("x", "y"), ("x", "z"), ("y", "x"), ("y", "z"), ("z", "x"), ("z", "w"), ("z", "y"),
        ("w", "z"),
    ]  # fmt: skip


def test_min_support_per_item_and_one_item(model: Pairs) -> None:
    assert _rows(bought_together(model, min_support=2)) == [
        ("x", "y"), ("x", "z"), ("y", "x"), ("z", "x"),
    ]  # fmt: skip
    assert _rows(bought_together(model, per_item=1)) == [
        ("x", "y"), ("y", "x"), ("z", "x"), ("w", "z"),
    ]  # fmt: skip
    assert _rows(bought_together(model, item="z")) == [("z", "x"), ("z", "w"), ("z", "y")]


def test_top_pairs_show_each_pair_once_from_its_less_bought_item(model: Pairs) -> None:
    top = top_pairs(bought_together(model), 10)
    # x+y: a tie on confidence, shown from x; x+z from x (4 baskets, z has 5); then support 1:
    # w->z (confidence 1/3) before y->z (1/4).
    assert _rows(top) == [("x", "y"), ("x", "z"), ("w", "z"), ("y", "z")]
    assert _rows(top_pairs(bought_together(model), 1)) == [("x", "y")]


def test_bad_filters_are_refused(model: Pairs) -> None:
    with pytest.raises(ValueError, match="not in the model"):
        bought_together(model, item="nope")
    with pytest.raises(ValueError, match="--min-support must be at least 1"):
        bought_together(model, min_support=0)
    with pytest.raises(ValueError, match="--per-item must be at least 1"):
        bought_together(model, per_item=0)
