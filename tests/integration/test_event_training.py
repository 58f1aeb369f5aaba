"""The loop closed on real data: Taobao events recorded through the Redis store, exported with
``personalize export-events``, trained on with ``personalize train --events`` beside a purchase
log of the same shop, and a scheduled ``personalize retrain`` that publishes or refuses."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv
import pyarrow.parquet as pq
import pytest
from taobao_events import record, taobao_events

from engine.artifacts import current_version, list_versions
from engine.model import load_model
from engine.profiles.keys import Keys
from engine.profiles.redis import RedisProfileStore
from engine.session import EVENT_WEIGHTS
from personalize.cli import main

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]
DAY = 86_400
# Nine days of Taobao: hold out two, learn the fusion weights on the one before them.
WINDOWS = ("--holdout-days", "2", "--validation-days", "1", "--trend-days", "3")


@pytest.fixture(scope="module")
def shop(
    redis_url: str, shared_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Events exported from Redis, and the shop's order log: the purchases of linked customers
    (even Taobao user ids), whole and without its last two days."""
    folder = tmp_path_factory.mktemp("loop")
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    record(RedisProfileStore.from_url(redis_url, Keys(prefix)), taobao_events(shared_data))
    events = folder / "events"
    code = main(
        ["export-events", "--redis-url", redis_url, "--key-prefix", prefix, "--out", str(events)]
    )
    assert code == 0
    raw = pv.read_csv(shared_data / "taobao-userbehavior-head" / "user_behavior_head.csv.gz")
    linked = pc.equal(pc.bit_wise_and(raw["user_id"], 1), 0)
    buys = raw.filter(pc.and_(pc.equal(raw["behavior_type"], "buy"), linked))
    log = pa.table(
        {
            "user_id": buys["user_id"].cast(pa.string()),
            "item_id": buys["item_id"].cast(pa.string()),
            "timestamp": buys["timestamp"],
        }
    )
    pq.write_table(log, folder / "orders.parquet")
    # Two days ago: the orders, and the events exported, until then.
    cut = pc.max(log["timestamp"]).as_py() - 2 * DAY
    pq.write_table(log.filter(pc.less(log["timestamp"], cut)), folder / "orders_older.parquet")
    for path in events.glob("date=*/part-*.parquet"):
        part = pq.read_table(path)
        target = folder / "events_older" / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(part.filter(pc.less(part["ts"], cut)), target)
    return {"events_older": folder / "events_older", "folder": folder, "events": events,
            "log": folder / "orders.parquet",
            "older": folder / "orders_older.parquet", "buys": Path(str(buys.num_rows))}  # fmt: skip


def _train(models: Path, log: Path, *extra: str) -> int:
    return main(
        ["train", "--log", str(log), "--time-format", "unix", "--models", str(models),
         "--threads", "1", "--quiet", *WINDOWS, *extra]
    )  # fmt: skip


def _retrain(
    capsys: pytest.CaptureFixture[str], models: Path, log: Path, *extra: str
) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(
        ["retrain", "--log", str(log), "--time-format", "unix", "--models", str(models),
         "--threads", "1", "--quiet", *WINDOWS, *extra]
    )  # fmt: skip
    out, err = capsys.readouterr()
    return code, out, err


def test_training_with_exported_events(shop: dict[str, Path], tmp_path: Path) -> None:
    plain, with_events = tmp_path / "plain", tmp_path / "events"
    assert _train(plain, shop["log"]) == 0
    assert (
        _train(with_events, shop["log"], "--events", str(shop["events"]), "--view-weight", "0.1")
        == 0
    )
    manifest = load_model(with_events).manifest
    report = manifest["events"]
    assert report["log"]["rows_read"] == 84_475
    assert report["log"]["rows_kept"] == 84_475
    # Every linked customer's purchase event is already in the order log: none counted twice.
    assert report["purchases_already_in_log"] == int(shop["buys"].name)
    assert report["purchases_added"] == 0
    assert manifest["input"]["rows_kept"] == int(shop["buys"].name)
    assert report["weights"] == {**EVENT_WEIGHTS, "view": 0.1}
    # Anonymous visitors shape the factors and similarities without becoming model users.
    assert report["extra_rows"] > 0
    assert len(load_model(with_events).users) == len(load_model(plain).users)
    # Clicks, carts and views make the purchase predictions better on the same hold-out, most
    # of all for items the customer never bought (which purchase history cannot suggest).
    scores = {
        name: load_model(folder).manifest["evaluation"]["model"]
        for name, folder in (("plain", plain), ("events", with_events))
    }
    assert scores["events"]["ndcg@10"] > scores["plain"]["ndcg@10"], scores
    assert scores["events"]["ndcg@10_new"] > 2 * scores["plain"]["ndcg@10_new"], scores
    # Items only ever viewed are model items too (the vocabulary does not peek at the future).
    assert len(load_model(with_events).items) > 50 * len(load_model(plain).items)


def test_retrain_publishes_a_better_model_and_refuses_a_worse_one(
    shop: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = tmp_path / "models"
    events = ("--events", str(shop["events"]))
    # Live: yesterday's model, trained on the orders alone.
    assert _train(models, shop["older"]) == 0
    live = current_version(models)
    code, out, _ = _retrain(capsys, models, shop["log"], *events)
    assert code == 0, out
    new = current_version(models)
    assert new != live and out.strip().splitlines()[-1].startswith(f"published {new}: ndcg@10 ")
    evaluation = load_model(models).manifest["evaluation"]
    assert evaluation["model"]["ndcg@10"] >= evaluation["baselines"]["live"]["ndcg@10"]
    # The hold-out starts where the live model's data ended: it saw none of it.
    assert evaluation["split"]["cut"] >= load_model(models / live).as_of

    # Now live is strong (trained with the events of its days) and the candidate drops every
    # event type: it must not replace it.
    refuse = tmp_path / "refuse"
    assert _train(refuse, shop["older"], "--events", str(shop["events_older"])) == 0
    strong = current_version(refuse)
    code, out, err = _retrain(
        capsys, refuse, shop["log"], *events,
        "--view-weight", "0", "--click-weight", "0", "--cart-weight", "0",
    )  # fmt: skip
    assert code == 1, out
    assert f"not published, {strong} stays current: ndcg@10 " in err
    assert current_version(refuse) == strong
    versions = list_versions(refuse)
    assert len(versions) == 2  # the refused version is kept for inspection, not current
    refused = json.loads((refuse / max(versions) / "manifest.json").read_text())
    scores = refused["evaluation"]
    assert scores["model"]["ndcg@10"] < scores["baselines"]["live"]["ndcg@10"]


def test_retrain_with_nothing_new_keeps_the_live_model(
    shop: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = tmp_path / "models"
    assert _train(models, shop["log"]) == 0
    live = current_version(models)
    code, _, err = _retrain(capsys, models, shop["log"])
    assert code == 1
    assert f"nothing to compare on, {live} stays" in err
    assert list_versions(models) == [live]
