"""The e-mail batch: consent, frequency cap, no repeats, holdout, segments, files, command."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from shops import trained_shop

from engine.consent import Channel, ConsentLedger, ConsentRecord, Status
from engine.model import Model, load_model
from personalize.cli import main
from training.campaign.email import (
    HOLDOUT,
    TREATMENT,
    EmailBatch,
    EmailSpec,
    Send,
    append_send_log,
    build_batch,
    read_send_log,
    write_batch,
)
from training.synthetic import ShopSpec, generate_shop

DAY = 86_400.0


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    shop = generate_shop(ShopSpec(customers=200, items=120, seed=5))
    return trained_shop(tmp_path_factory.mktemp("shop"), shop)


@pytest.fixture(scope="module")
def model(models_dir: Path) -> Model:
    return load_model(models_dir)


@pytest.fixture(scope="module")
def now(model: Model) -> float:
    return float(model.as_of) + DAY


@pytest.fixture(scope="module")
def customers(model: Model) -> list[str]:
    return [str(c) for c in model.users.ids]


def _everyone(customers: list[str], at: float) -> ConsentLedger:
    return ConsentLedger(ConsentRecord(c, Channel.EMAIL, Status.GIVEN, at) for c in customers)


def _batch(model: Model, consent: ConsentLedger, now: float, *sends: Send, **spec: object
           ) -> EmailBatch:  # fmt: skip
    return build_batch(model, consent, EmailSpec(campaign="c", now=now, **spec), sends)  # type: ignore[arg-type]


def _mailed(batch: EmailBatch) -> dict[str, list[str]]:
    return {
        row["customer_id"]: row["item_ids"]
        for row in batch.table.to_pylist()
        if row["group"] == TREATMENT
    }


def test_only_customers_consenting_at_send_time_are_chosen(
    model: Model, customers: list[str], now: float
) -> None:
    given, withdrawn, later, sms, silent = (customers[i::5] for i in range(5))
    records = [ConsentRecord(c, Channel.EMAIL, Status.GIVEN, now - 30 * DAY) for c in given]
    for c in withdrawn:  # given, then withdrawn before the send
        records += [ConsentRecord(c, Channel.EMAIL, Status.GIVEN, now - 30 * DAY),
                    ConsentRecord(c, Channel.EMAIL, Status.WITHDRAWN, now - DAY)]  # fmt: skip
    records += [ConsentRecord(c, Channel.EMAIL, Status.GIVEN, now + DAY) for c in later]
    records += [ConsentRecord(c, Channel.SMS, Status.GIVEN, now - DAY) for c in sms]
    records += [
        ConsentRecord(f"ghost{i}", Channel.EMAIL, Status.GIVEN, now - DAY) for i in range(3)
    ]
    batch = _batch(model, ConsentLedger(records), now, holdout=0.0)
    assert set(batch.table["customer_id"].to_pylist()) == set(given)
    s = batch.summary
    assert s.skipped["withdrawn"] == len(withdrawn)
    assert s.skipped["no email consent"] == len(later) + len(sms) + len(silent)
    assert s.consent_not_in_model == 3  # customers absent from the model are counted
    assert s.customers == s.in_segment == len(customers)
    assert s.treatment == len(given) and s.holdout == 0
    assert s.in_segment == sum(s.skipped.values()) + s.treatment + s.holdout


def test_a_withdrawal_of_personalization_stops_the_personalised_mail(
    model: Model, customers: list[str], now: float
) -> None:
    opted_in, objecting = customers[:6], customers[6:9]
    records = [ConsentRecord(c, Channel.EMAIL, Status.GIVEN, now - 30 * DAY) for c in opted_in]
    records += [ConsentRecord(c, Channel.EMAIL, Status.GIVEN, now - 30 * DAY) for c in objecting]
    records += [
        ConsentRecord(c, Channel.PERSONALIZATION, Status.WITHDRAWN, now - DAY) for c in objecting
    ]
    batch = _batch(model, ConsentLedger(records), now, holdout=0.0)
    assert set(batch.table["customer_id"].to_pylist()) == set(opted_in)
    assert batch.summary.skipped["withdrew personalization"] == len(objecting)


def test_lists_follow_the_serving_rules_and_exclude_unavailable_items(
    model: Model, customers: list[str], now: float
) -> None:
    gone = model.items.ids[:3].tolist()
    batch = build_batch(model, _everyone(customers, now - DAY),
                        EmailSpec(campaign="c", now=now, k=4), (), [*gone, "unknown"])  # fmt: skip
    assert batch.summary.unknown_unavailable == 1
    history = model.scorer.history
    for row in batch.table.to_pylist():
        user = model.users.index(row["customer_id"])
        assert user is not None
        items = row["item_ids"]
        assert 0 < len(items) <= 4 and len(set(items)) == len(items)
        assert not set(items) & set(gone)
        bought = set(model.items.ids[history.items_of(user)].tolist())
        due = set(model.items.ids[history.due(user, now)].tolist())
        assert set(items) & bought <= due
        index = [model.items.index(i) for i in items]
        assert row["descriptions"] == [str(model.description[i]) for i in index]
        assert row["prices"] == pytest.approx([float(model.price[i]) for i in index])
        assert all(r.startswith("you bought it") == (i in bought)
                   for i, r in zip(items, row["reasons"], strict=True))  # fmt: skip


def test_the_frequency_cap_reads_the_send_log(
    model: Model, customers: list[str], now: float
) -> None:
    a, b, c, d = customers[:4]
    sends = [
        Send("old", now - 3 * DAY, a, TREATMENT, ()),  # mailed 3 days ago: capped
        Send("old", now - 8 * DAY, b, TREATMENT, ()),  # 8 days ago: may be mailed again
        Send("old", now - 3 * DAY, c, HOLDOUT, ()),  # held out, not mailed: no cap
        Send("new", now + 2 * DAY, d, TREATMENT, ()),  # a replay before a later send: capped
    ]
    batch = _batch(model, _everyone(customers, now - DAY), now, *sends, holdout=0.0)
    chosen = set(batch.table["customer_id"].to_pylist())
    assert a not in chosen and d not in chosen
    assert {b, c} <= chosen
    assert batch.summary.skipped["frequency cap"] == 2
    looser = _batch(model, _everyone(customers, now - DAY), now, *sends, holdout=0.0,
                    frequency_days=2.0)  # fmt: skip
    assert {a, d} <= set(looser.table["customer_id"].to_pylist())


def test_items_mailed_recently_are_not_repeated(
    model: Model, customers: list[str], now: float
) -> None:
    consent = _everyone(customers, now - DAY)
    first = _mailed(_batch(model, consent, now, holdout=0.0))
    sends = [Send("first", now, c, TREATMENT, tuple(items)) for c, items in first.items()]
    later = now + 10 * DAY
    second = _mailed(_batch(model, consent, later, *sends, holdout=0.0))
    assert second
    for customer, items in second.items():
        assert not set(items) & set(first[customer]), customer
    # Once the window has passed, the best items may come back.
    much_later = _mailed(_batch(model, consent, later, *sends, holdout=0.0, no_repeat_days=5.0))
    assert much_later == _mailed(_batch(model, consent, later, holdout=0.0))


def test_the_holdout_is_recorded_and_fixed_by_the_seed(
    model: Model, customers: list[str], now: float
) -> None:
    consent = _everyone(customers, now - DAY)

    def groups(seed: int, holdout: float = 0.3) -> dict[str, str]:
        batch = _batch(model, consent, now, seed=seed, holdout=holdout)
        assert [s.group for s in batch.sends] == batch.table["group"].to_pylist()
        return dict(zip(batch.table["customer_id"].to_pylist(),
                        batch.table["group"].to_pylist(), strict=True))  # fmt: skip

    once, again, other = groups(7), groups(7), groups(8)
    assert once == again
    assert once != other
    share = sum(g == HOLDOUT for g in once.values()) / len(once)
    assert 0.15 < share < 0.45
    # A larger holdout only moves customers from treatment to holdout, never back.
    bigger = groups(7, holdout=0.5)
    assert {c for c, g in once.items() if g == HOLDOUT} <= {
        c for c, g in bigger.items() if g == HOLDOUT
    }
    assert set(groups(7, holdout=0.0).values()) == {TREATMENT}


def test_a_segment_filters_and_an_unknown_one_is_an_error(
    model: Model, customers: list[str], now: float
) -> None:
    consent = _everyone(customers, now - DAY)
    segments = np.asarray(model.segments)
    name = str(segments[0])
    batch = _batch(model, consent, now, segment=name)
    assert set(batch.table["segment"].to_pylist()) == {name}
    assert batch.summary.in_segment == int((segments == name).sum())
    known = ", ".join(sorted(set(segments.tolist())))
    with pytest.raises(ValueError, match=f"unknown segment 'vip'; the model has: {known}$"):
        _batch(model, consent, now, segment="vip")


def test_bad_specs_are_refused() -> None:
    with pytest.raises(ValueError, match="holdout"):
        EmailSpec(campaign="c", now=0.0, holdout=1.0)
    with pytest.raises(ValueError, match="k must be"):
        EmailSpec(campaign="c", now=0.0, k=0)


def test_output_files_and_the_send_log(
    model: Model, customers: list[str], now: float, tmp_path: Path
) -> None:
    batch = _batch(model, _everyone(customers, now - DAY), now, k=3)
    write_batch(batch.table, tmp_path / "out.parquet")
    assert pq.read_table(tmp_path / "out.parquet").equals(batch.table)
    write_batch(batch.table, tmp_path / "out.csv")
    flat = pa_csv.read_csv(tmp_path / "out.csv")
    assert flat.column_names[:4] == ["campaign", "customer_id", "group", "segment"]
    assert flat.column_names[4:8] == ["item_1_id", "item_1_description", "item_1_price",
                                      "item_1_reason"]  # fmt: skip
    first = batch.table.slice(0, 1).to_pylist()[0]
    assert str(flat["item_2_id"][0]) == first["item_ids"][1]
    with pytest.raises(ValueError, match=r"must end in \.csv or \.parquet"):
        write_batch(batch.table, tmp_path / "out.xlsx")
    log = tmp_path / "log" / "send_log.jsonl"
    assert read_send_log(log) == []
    append_send_log(log, batch.sends)
    append_send_log(log, batch.sends[:2])
    assert read_send_log(log) == [*batch.sends, *batch.sends[:2]]
    with log.open("a") as handle:
        handle.write('{"campaign": "x"}\n')
    with pytest.raises(ValueError, match=rf"line {len(batch.sends) + 3} is not a send record"):
        read_send_log(log)


def test_the_command_writes_the_batch_and_keeps_the_send_log(
    models_dir: Path, customers: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    consent = tmp_path / "consent.csv"
    lines = [f"{c},email,given,2000-01-01" for c in customers[:40]]
    consent.write_text("customer_id,channel,status,timestamp\n" + "\n".join(lines) + "\n")
    unavailable = tmp_path / "gone.txt"
    unavailable.write_text("nothing-like-this\n")
    args = ["email-batch", "--models", str(models_dir), "--consent", str(consent),
            "--unavailable", str(unavailable), "--quiet"]  # fmt: skip
    assert main([*args, "--as-of", "2030-01-01T08:00:00", "--out", str(tmp_path / "a.csv")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^selected +40$", out, re.M)
    assert re.search(r"^unavailable, not in model +1$", out, re.M)
    sends = read_send_log(tmp_path / "send_log.jsonl")
    assert len(sends) == 40 and {s.customer_id for s in sends} == set(customers[:40])
    # The next day everyone mailed is capped; the holdout is drawn again.
    assert main([*args, "--as-of", "2030-01-02", "--out", str(tmp_path / "b.parquet")]) == 0
    treated = sum(s.group == TREATMENT for s in sends)
    assert re.search(rf"^skipped: frequency cap +{treated}$", capsys.readouterr().out, re.M)


def test_the_command_refuses_bad_input(
    models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    consent = tmp_path / "consent.csv"
    consent.write_text("customer_id,channel,status,timestamp\nx,email,perhaps,2020-01-01\n")
    args = ["email-batch", "--models", str(models_dir), "--consent", str(consent), "--quiet"]
    assert main([*args, "--out", str(tmp_path / "a.csv")]) == 2
    assert "unknown consent status 'perhaps' on lines 2" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "a.json")]) == 2
    assert "must end in .csv or .parquet" in capsys.readouterr().err
    consent.write_text("customer_id,channel,status,timestamp\nx,email,given,2020-01-01\n")
    assert main([*args, "--out", str(tmp_path / "a.csv"), "--segment", "vip"]) == 2
    assert "unknown segment 'vip'" in capsys.readouterr().err


def test_progress_adds_up_to_every_customer(model: Model, customers: list[str], now: float) -> None:
    seen: list[int] = []
    consent = _everyone(customers[::3], now - DAY)
    build_batch(model, consent, EmailSpec(campaign="c", now=now), progress=seen.append)
    assert sum(seen) == len(customers)
