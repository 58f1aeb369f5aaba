"""Train on a synthetic purchase log, write the artifact, load it back and recommend from it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from engine.artifacts import ArtifactError, load_artifact, write_artifact
from engine.model import ALGORITHM, Model, load_model
from engine.models import FEATURES
from engine.profiles import Profile
from engine.recommender import Query, Recommendations, Recommender, trending_reason
from training.logs import LOG_SCHEMA, LoadReport, PurchaseLog
from training.params import FactorParams, FusionParams, KnnParams, ModelParams
from training.pipeline import train_model

START = datetime(2024, 1, 1, tzinfo=UTC)
DAYS = 120
N_GROUP_USERS = 25
N_GROUP_ITEMS = 15

PARAMS = ModelParams(
    factors=FactorParams(factors=8, iterations=10, regularization=0.1),
    knn=KnnParams(neighbours=20),
    fusion=FusionParams(validation_days=30, trend_days=30, negatives_per_user=40),
    seed=1,
)


@dataclass(frozen=True)
class Shop:
    log: PurchaseLog
    staple: dict[str, str]  # customer -> the item they re-buy every week
    bought: dict[str, set[str]]  # customer -> everything they bought
    price: dict[str, float]


def _item(group: int, i: int) -> str:
    return f"{'AB'[group]}{i:02d}"


def _shop() -> Shop:
    """Two groups of customers, each buying from its own items; everyone has a weekly staple."""
    rng = np.random.default_rng(42)
    price = {
        _item(g, i): round(1.0 + g + 0.25 * i, 2) for g in (0, 1) for i in range(N_GROUP_ITEMS)
    }
    rows: list[tuple[datetime, str, str, float]] = []
    staple: dict[str, str] = {}
    for g in (0, 1):
        for u in range(N_GROUP_USERS):
            user = f"c{g}{u:02d}"
            staple[user] = _item(g, u % N_GROUP_ITEMS)
            offset = int(rng.integers(0, 7))
            for day in range(offset, DAYS, 7):  # the staple, every week, 1-3 units
                rows.append((START + timedelta(days=day, hours=9), user, staple[user], 2.0))
            for _ in range(12):  # occasional other items of the group
                day = int(rng.integers(0, DAYS))
                item = _item(g, int(rng.integers(0, N_GROUP_ITEMS)))
                rows.append((START + timedelta(days=day, hours=15), user, item, 1.0))
    rows.sort()
    n = len(rows)
    table = pa.table(
        {
            "user": [r[1] for r in rows],
            "item": [r[2] for r in rows],
            "time": pa.array([r[0].replace(tzinfo=None) for r in rows], pa.timestamp("s")),
            "quantity": [r[3] for r in rows],
            "price": [price[r[2]] for r in rows],
            "basket": [f"{r[1]}@{r[0]:%Y%m%d%H}" for r in rows],
            "description": [f"product {r[2]}" for r in rows],
            "category": [f"group {r[2][0]}" for r in rows],
        },
        schema=LOG_SCHEMA,
    )
    report = LoadReport(
        source="synthetic.csv",
        fingerprint="0" * 64,
        format="canonical",
        rows_read=n,
        rows_kept=n,
        dropped={},
        unparsable_lines=[],
        users=2 * N_GROUP_USERS,
        items=2 * N_GROUP_ITEMS,
        baskets=len(set(table["basket"].to_pylist())),
        time_min=rows[0][0].isoformat(),
        time_max=rows[-1][0].isoformat(),
    )
    bought: dict[str, set[str]] = {}
    for _, user, item, _ in rows:
        bought.setdefault(user, set()).add(item)
    return Shop(PurchaseLog(table, report), staple, bought, price)


@pytest.fixture(scope="module")
def shop() -> Shop:
    return _shop()


@pytest.fixture(scope="module")
def models_dir(shop: Shop, tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("models")
    result = train_model(shop.log, PARAMS, models_dir=models, holdout_days=30, k=10, threads=1)
    assert result.published
    assert result.path.parent == models
    return models


@pytest.fixture(scope="module")
def model(models_dir: Path) -> Model:
    return load_model(models_dir)


def test_manifest_records_how_the_model_was_made(model: Model, shop: Shop) -> None:
    manifest = model.manifest
    assert manifest["algorithm"] == ALGORITHM
    assert manifest["params"] == PARAMS.model_dump(mode="json")
    assert ModelParams.model_validate(manifest["params"]) == PARAMS
    assert set(manifest["weights"]) == set(FEATURES)
    assert all(np.isfinite(list(manifest["weights"].values())))
    assert manifest["load_report"] == shop.log.report.to_dict()
    assert manifest["input"]["rows_kept"] == shop.log.table.num_rows
    last = shop.log.table["time"].cast(pa.int64()).to_numpy().max()
    assert manifest["as_of"] == int(last) + 1
    evaluation = manifest["evaluation"]
    assert evaluation["holdout_days"] == 30
    assert evaluation["k"] == 10
    assert set(evaluation["baselines"]) == {"popularity", "buy_again", "als", "item_knn"}
    assert evaluation["split"]["test_users"] > 0
    # The planted weekly staple is easy: the model must beat the same list for everyone.
    assert evaluation["model"]["ndcg@10"] > evaluation["baselines"]["popularity"]["ndcg@10"]


def test_model_relies_on_the_repeat_signal(model: Model) -> None:
    weights = model.manifest["weights"]
    assert weights["log_count"] > 0 or weights["bought"] > 0


DAY = 86_400
NEXT_FORTNIGHT = 14 * DAY  # every weekly staple is due again two weeks after the log ends


def _recommend(
    model: Model, customer: str | None, k: int, now: float | None = None, visitor: str = "v"
) -> Recommendations:
    """What the API serves a visitor linked to ``customer`` with no live session."""
    return Recommender(model).recommend(
        Query(k=k, customer_id=customer),
        Profile(visitor_id=visitor),
        now=model.as_of + NEXT_FORTNIGHT if now is None else now,
    )


def _bought_once(shop: Shop, customer: str) -> set[str]:
    table = shop.log.table
    items = [i for u, i in zip(table["user"].to_pylist(), table["item"].to_pylist(), strict=True)
             if u == customer]  # fmt: skip
    return {item for item in set(items) if items.count(item) == 1}


def test_recommend_puts_the_heavy_repeat_item_first(model: Model, shop: Shop) -> None:
    for customer in ("c000", "c013", "c107", "c124"):
        result = _recommend(model, customer, k=10)
        recs = result.items
        assert result.strategy == "customer"
        assert result.model_version == model.version
        assert len(recs) == 10
        assert len({r.item_id for r in recs}) == 10
        assert all(r.reason for r in recs)
        assert [r.score for r in recs] == sorted((r.score for r in recs), reverse=True)
        first = recs[0]
        assert first.item_id == shop.staple[customer], customer
        assert first.reason.startswith("you bought it ")
        assert first.description == f"product {first.item_id}"
        assert first.category == f"group {first.item_id[0]}"
        assert first.price == pytest.approx(shop.price[first.item_id])


def test_the_staple_is_not_offered_again_before_it_is_due(model: Model, shop: Shop) -> None:
    # At the end of the log every staple was bought within the last week: not due yet.
    for customer in ("c000", "c013", "c107", "c124"):
        recs = _recommend(model, customer, k=10, now=model.as_of).items
        assert shop.staple[customer] not in {r.item_id for r in recs}, customer


def test_recommend_prefers_the_customers_group(model: Model) -> None:
    for customer, letter in (("c003", "A"), ("c118", "B")):
        recs = _recommend(model, customer, k=2 * N_GROUP_ITEMS).items
        groups = [r.item_id[0] for r in recs]
        # Whatever of their own group may be shown comes before anything of the other group.
        assert groups[0] == letter, customer
        assert groups == sorted(groups, key=lambda g: g != letter), customer


def test_reasons_name_the_customers_own_purchases(model: Model, shop: Shop) -> None:
    customer = "c005"
    for rec in _recommend(model, customer, k=30).items:
        if rec.item_id in shop.bought[customer]:
            assert rec.reason.startswith("you bought it ")
        else:
            assert rec.reason == "customers who buy what you buy chose it"


def test_purchased_items_return_only_when_due(model: Model, shop: Shop) -> None:
    for customer in ("c000", "c011", "c109", "c120"):
        row = model.users.index(customer)
        assert row is not None
        once = _bought_once(shop, customer)
        assert once, customer
        for now in (model.as_of, model.as_of + NEXT_FORTNIGHT, model.as_of + 365 * DAY):
            due = {str(model.items.ids[i]) for i in model.scorer.history.due(row, now)}
            recs = _recommend(model, customer, k=10, now=now).items
            shown = {r.item_id for r in recs}
            assert recs, customer
            assert not shown & once, customer  # a once-bought item is never recommended back
            assert shown & shop.bought[customer] <= due, customer
            # Only so many items are not bought-and-not-due: no padding, no repeats.
            allowed = 2 * N_GROUP_ITEMS - len(shop.bought[customer]) + len(due)
            assert len(recs) == min(10, allowed)
            assert len(shown) == len(recs)


def test_unknown_customer_gets_the_trending_list(model: Model) -> None:
    trending = np.asarray(model.scorer.trending)
    popularity = np.asarray(model.scorer.popularity)
    # Most customers in the trend window first, ties by customers overall, then by index.
    expected = np.lexsort((np.arange(len(trending)), -popularity, -trending))[:5]
    assert trending[expected[0]] == trending.max()
    for customer in ("nobody", None):
        result = _recommend(model, customer, k=5)
        assert result.strategy == "trending"
        assert [r.item_id for r in result.items] == model.items.ids[expected].tolist()
        for rec in result.items:
            n = int(trending[model.items.index(rec.item_id)])
            assert rec.reason == trending_reason(n)
    # Not personalised: the same list whoever asks, whenever.
    assert _recommend(model, "x", k=5, visitor="v1") == _recommend(
        model, "y", k=5, now=model.as_of, visitor="v2"
    )


def test_recommend_more_than_the_catalog(model: Model, shop: Shop) -> None:
    row = model.users.index("c000")
    assert row is not None
    now = model.as_of + NEXT_FORTNIGHT
    due = model.scorer.history.due(row, now)
    recs = _recommend(model, "c000", k=1000, now=now).items
    # Everything the customer may be shown, once each: all but the bought items not due.
    assert len(recs) == 2 * N_GROUP_ITEMS - len(shop.bought["c000"]) + len(due)
    assert len({r.item_id for r in recs}) == len(recs)


def test_a_damaged_artifact_is_refused(models_dir: Path, tmp_path: Path) -> None:
    # Copy the published version so the shared model stays intact for the other tests.
    source = load_artifact(models_dir)
    copy = write_artifact(
        tmp_path,
        {name: np.asarray(arr) for name, arr in source.arrays.items()},
        {k: v for k, v in source.manifest.items() if k not in {"format_version", "version",
                                                               "created", "files"}},
    )  # fmt: skip
    load_model(copy)  # the copy is sound
    target = copy / "item_factors.npy"
    data = bytearray(target.read_bytes())
    data[-3] ^= 0x40  # a bit inside the float data; header, size and shape stay valid
    target.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"item_factors\.npy.*sha256"):
        load_model(copy)


def test_a_model_of_another_algorithm_is_refused(tmp_path: Path) -> None:
    version = write_artifact(tmp_path, {"x": np.zeros(3)}, {"algorithm": "als"})
    with pytest.raises(ArtifactError, match="not 'repeat-aware'"):
        load_model(version)


def _copy_parts(models_dir: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The published model's arrays and manifest, ready to be altered and written again."""
    source = load_artifact(models_dir)
    arrays = {n: np.asarray(arr) for n, arr in source.arrays.items()}
    manifest = {
        k: v
        for k, v in source.manifest.items()
        if k not in {"format_version", "version", "created", "files"}
    }
    return arrays, manifest


@pytest.mark.parametrize(
    "name",
    ["user_factors", "item_factors", "trending", "item_price", "item_category", "item_baskets"],
)
def test_an_artifact_with_inconsistent_arrays_is_refused(
    models_dir: Path, tmp_path: Path, name: str
) -> None:
    # Checksums cannot catch a trainer that wrote arrays of the wrong length: such a model
    # would load and then fail every request, so loading must refuse it.
    arrays, manifest = _copy_parts(models_dir)
    arrays[name] = arrays[name][:-1]  # one row short of its vocabulary
    with pytest.raises(ArtifactError, match=f"inconsistent.*{name} has"):
        load_model(write_artifact(tmp_path, arrays, manifest))


@pytest.mark.parametrize("matrix", ["together", "history_first_time"])
@pytest.mark.parametrize("part", ["data", "indices", "indptr", "shape", "*"])
def test_an_artifact_missing_a_matrix_is_refused(
    models_dir: Path, tmp_path: Path, matrix: str, part: str
) -> None:
    # Artifacts of the previous format had neither basket pairs nor first purchase times.
    arrays, manifest = _copy_parts(models_dir)
    gone = [n for n in arrays if n.startswith(f"{matrix}.") and part in ("*", n.split(".")[-1])]
    assert gone
    for name in gone:
        del arrays[name]
    with pytest.raises(ArtifactError, match=rf"{matrix}\.\w+\.npy: missing from artifact"):
        load_model(write_artifact(tmp_path, arrays, manifest))


def test_basket_pairs_of_the_wrong_shape_are_refused(models_dir: Path, tmp_path: Path) -> None:
    arrays, manifest = _copy_parts(models_dir)
    n_items = len(arrays["items"])
    arrays["together.shape"] = np.array([n_items + 1, n_items + 1], dtype=np.int64)
    arrays["together.indptr"] = np.r_[arrays["together.indptr"], arrays["together.indptr"][-1]]
    with pytest.raises(ArtifactError, match=r"inconsistent.*together is"):
        load_model(write_artifact(tmp_path, arrays, manifest))


@pytest.mark.parametrize(("field", "value"), [("as_of", None), ("input", []), ("weights", 1)])
def test_a_manifest_field_of_the_wrong_type_is_refused(
    models_dir: Path, tmp_path: Path, field: str, value: Any
) -> None:
    # The checksums cover the arrays, not the manifest: a field of the wrong JSON type must
    # still be a refusal naming the artifact, never a TypeError out of the loader.
    arrays, manifest = _copy_parts(models_dir)
    manifest[field] = value
    with pytest.raises(ArtifactError, match="inconsistent model"):
        load_model(write_artifact(tmp_path, arrays, manifest))


@pytest.mark.parametrize(("holdout_days", "fits"), [(30, 3), (20, 4)])
def test_a_refit_fits_its_weights_on_the_holdout_fit_when_their_periods_agree(
    shop: Shop,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    holdout_days: int,
    fits: int,
) -> None:
    # The hold-out's fit (validation and final ALS) is of the events before the refit's 30-day
    # validation window when the hold-out is 30 days too: the refit then runs its final ALS
    # alone. With another hold-out length it fits its validation signals itself.
    from implicit.cpu.als import AlternatingLeastSquares

    calls: list[int] = []
    fit = AlternatingLeastSquares.fit

    def counted(self: AlternatingLeastSquares, *args: Any, **kwargs: Any) -> None:
        calls.append(self.iterations)
        fit(self, *args, **kwargs)

    monkeypatch.setattr(AlternatingLeastSquares, "fit", counted)
    result = train_model(
        shop.log, PARAMS, models_dir=tmp_path, holdout_days=holdout_days, k=10, threads=1
    )
    assert len(calls) == fits
    assert result.evaluation is not None and result.evaluation.signals is None  # not kept
