"""Consent as data: the ledger's decision at a moment, and the consent file reader."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.consent import Channel, ConsentLedger, ConsentRecord, Status
from training.campaign.consent_file import read_consent, write_consent
from training.logs import LogError

DAY = 86_400.0
T = 1_700_000_000.0
EMAIL = Channel.EMAIL


def _ledger(*records: tuple[str, str, str, float]) -> ConsentLedger:
    return ConsentLedger(ConsentRecord(c, Channel(ch), Status(st), at) for c, ch, st, at in records)


def test_withdrawn_after_given_is_withdrawn_from_then_on() -> None:
    ledger = _ledger(("a", "email", "given", T), ("a", "email", "withdrawn", T + DAY))
    assert ledger.allows("a", EMAIL, T)
    assert ledger.allows("a", EMAIL, T + DAY - 1)
    assert ledger.status("a", EMAIL, T + DAY) is Status.WITHDRAWN
    assert not ledger.allows("a", EMAIL, T + 365 * DAY)


def test_given_after_withdrawn_is_given_again() -> None:
    ledger = _ledger(("a", "email", "withdrawn", T), ("a", "email", "given", T + DAY))
    assert not ledger.allows("a", EMAIL, T + DAY / 2)
    assert ledger.allows("a", EMAIL, T + DAY)


def test_records_are_ordered_by_time_not_by_position() -> None:
    ledger = _ledger(("a", "email", "given", T + DAY), ("a", "email", "withdrawn", T))
    assert ledger.allows("a", EMAIL, T + 2 * DAY)


def test_before_the_first_record_there_is_no_consent() -> None:
    ledger = _ledger(("a", "email", "given", T))
    assert ledger.status("a", EMAIL, T - 1) is None
    assert not ledger.allows("a", EMAIL, T - 1)


def test_equal_timestamps_resolve_to_withdrawn() -> None:
    for order in (("given", "withdrawn"), ("withdrawn", "given")):
        ledger = _ledger(("a", "email", order[0], T), ("a", "email", order[1], T))
        assert ledger.status("a", EMAIL, T) is Status.WITHDRAWN
        assert not ledger.allows("a", EMAIL, T + DAY)


def test_channels_are_independent() -> None:
    ledger = _ledger(("a", "personalization", "given", T), ("a", "sms", "withdrawn", T))
    assert ledger.allows("a", Channel.PERSONALIZATION, T)
    assert ledger.status("a", EMAIL, T) is None
    assert not ledger.allows("a", "sms", T)
    assert ledger.allows("a", " Personalization ", T)  # names are parsed, not compared raw


def test_an_absent_customer_has_not_consented() -> None:
    ledger = _ledger(("a", "email", "given", T))
    assert ledger.status("nobody", EMAIL, T) is None
    assert not ledger.allows("nobody", EMAIL, T)
    assert ledger.customers == frozenset({"a"})
    assert len(ledger) == 1


def test_unknown_channel_is_an_error() -> None:
    ledger = _ledger(("a", "email", "given", T))
    with pytest.raises(ValueError, match=r"unknown consent channel 'fax' \(expected one of email"):
        ledger.allows("a", "fax", T)
    with pytest.raises(ValueError, match="unknown consent channel"):
        ConsentLedger([ConsentRecord("a", "fax", Status.GIVEN, T)])  # type: ignore[arg-type]


def test_unknown_status_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"unknown consent status 'maybe' \(expected one of given"):
        Status.parse("maybe")
    with pytest.raises(ValueError):
        ConsentLedger([ConsentRecord("a", EMAIL, "maybe", T)])  # type: ignore[arg-type]


# --- the consent file ----------------------------------------------------------------------------


def _csv(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "consent.csv"
    path.write_text("customer_id,channel,status,timestamp\n" + "\n".join(lines) + "\n")
    return path


def test_a_consent_csv_reads_iso_and_epoch_times(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        "a,email,given,2024-01-01T00:00:00",  # no offset: UTC
        "a,Email,withdrawn,2024-01-02T01:00:00+01:00",  # = 2024-01-02T00:00:00Z
        " b ,email,GIVEN,1704067200",  # epoch seconds = 2024-01-01T00:00:00Z
        "c,sms,given,2024-01-01",
    )
    ledger = read_consent(path)
    jan1, jan2 = 1_704_067_200.0, 1_704_153_600.0
    assert ledger.allows("a", EMAIL, jan1)
    assert ledger.allows("a", EMAIL, jan2 - 1)
    assert not ledger.allows("a", EMAIL, jan2)
    assert ledger.allows("b", EMAIL, jan1) and not ledger.allows("b", EMAIL, jan1 - 1)
    assert ledger.allows("c", Channel.SMS, jan1)
    assert ledger.customers == {"a", "b", "c"}


def test_bad_consent_rows_stop_the_read_with_their_line_numbers(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        "a,email,given,2024-01-01",  # line 2
        "b,fax,given,2024-01-01",  # line 3
        "c,email,maybe,2024-01-01",  # line 4
        "d,email,given,yesterday",  # line 5
        ",email,given,2024-01-01",  # line 6
        "e,fax,withdrawn,2024-01-01",  # line 7
    )
    with pytest.raises(LogError) as caught:
        read_consent(path)
    message = str(caught.value)
    assert "5 bad consent rows" in message
    assert "unknown consent channel 'fax' on lines 3, 7" in message
    assert "unknown consent status 'maybe' on lines 4" in message
    assert "unreadable timestamp on lines 5" in message
    assert "missing customer_id on lines 6" in message
    assert "no consent row is skipped" in message


def test_a_line_of_the_wrong_width_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LogError, match=r"1 line\(s\) with the wrong number of fields \(lines 3\)"):
        read_consent(_csv(tmp_path, "a,email,given,2024-01-01", "b,email,given"))


def test_a_consent_file_without_the_columns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "consent.csv"
    path.write_text("customer,channel,status,timestamp\na,email,given,2024-01-01\n")
    with pytest.raises(LogError, match="missing column 'customer_id'"):
        read_consent(path)


def test_a_consent_parquet_with_typed_columns(tmp_path: Path) -> None:
    path = tmp_path / "consent.parquet"
    table = pa.table(
        {
            "customer_id": pa.array([17850, 13047], pa.int64()),
            "channel": ["email", "email"],
            "status": ["given", "withdrawn"],
            "timestamp": pa.array([1_704_067_200_000, 1_704_067_200_000], pa.timestamp("ms")),
        }
    )
    pq.write_table(table, path)
    ledger = read_consent(path)
    assert ledger.allows("17850", EMAIL, 1_704_067_200.0)
    assert not ledger.allows("17850", EMAIL, 1_704_067_199.0)
    assert ledger.status("13047", EMAIL, 1_704_067_200.0) is Status.WITHDRAWN


def test_written_records_read_back_and_later_files_add_to_earlier_ones(tmp_path: Path) -> None:
    crm = _csv(tmp_path, "a,email,given,2023-11-14T00:00:00", "a,personalization,given,2023-11-14")
    storefront = tmp_path / "storefront.csv"
    at = T + 0.25  # sub-second times survive the file
    withdrawn = ConsentRecord("a", Channel.PERSONALIZATION, Status.WITHDRAWN, at)
    assert write_consent([withdrawn], storefront) == 1
    assert read_consent(storefront).status("a", Channel.PERSONALIZATION, at) is Status.WITHDRAWN
    assert read_consent(storefront).status("a", Channel.PERSONALIZATION, at - 0.1) is None

    both = read_consent(crm, storefront)
    assert both.allows("a", EMAIL, at)
    assert both.status("a", Channel.PERSONALIZATION, at - 1) is Status.GIVEN
    assert both.status("a", Channel.PERSONALIZATION, at) is Status.WITHDRAWN
