"""``personalize export-events`` against a real private Redis, with real Taobao events: every
event lands in the Parquet log exactly once, across a SIGKILL between write and acknowledgement,
a takeover by another consumer, and trimming of the stream."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from redis import Redis
from taobao_events import record, taobao_events

from engine.profiles import StoreLimits
from engine.profiles.keys import Keys
from engine.profiles.redis import RedisProfileStore
from personalize.cli import main

pytestmark = pytest.mark.shared_data

# Runs the exporter in a child process and SIGKILLs it right after its Nth durable write,
# before that batch is acknowledged: a crash at the worst moment, in a real process.
CRASHING_EXPORTER = """
import os, signal, sys
from pathlib import Path
from redis import Redis
from engine.profiles.keys import Keys
from training.events.export import StreamExporter

url, prefix, out, consumer, batch, crash_after = sys.argv[1:]
writes = []

def after_write(paths):
    writes.append(paths)
    if len(writes) == int(crash_after):
        os.kill(os.getpid(), signal.SIGKILL)

client = Redis.from_url(url, decode_responses=True)
StreamExporter(client, Keys(prefix).streams, Path(out), consumer=consumer, batch=int(batch),
               after_write=after_write).run()
"""


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}:"


def _fill(redis_url: str, prefix: str, events: list, limits: StoreLimits | None = None) -> None:
    record(RedisProfileStore.from_url(redis_url, Keys(prefix), limits), events)


def _crash(redis_url: str, prefix: str, out: Path, consumer: str, batch: int, after: int) -> None:
    child = subprocess.run(
        [sys.executable, "-c", CRASHING_EXPORTER, redis_url, prefix, str(out), consumer,
         str(batch), str(after)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert child.returncode == -signal.SIGKILL, child.stderr


def _logged_ids(out: Path) -> Counter[str]:
    ids: Counter[str] = Counter()
    for path in out.glob("date=*/part-*.parquet"):
        ids.update(pq.read_table(path, columns=["event_id"])["event_id"].to_pylist())
    return ids


def _pending(redis_url: str, prefix: str) -> int:
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        return int(client.xpending(Keys(prefix).stream(0), "export")["pending"])
    finally:
        client.close()


def _export(
    capsys: pytest.CaptureFixture[str], redis_url: str, prefix: str, out: Path, *argv: str
) -> tuple[int, str, str]:
    """``personalize export-events`` of the test's stream into ``out``: status, stdout, stderr."""
    code = main(["export-events", "--redis-url", redis_url, "--key-prefix", prefix,
                 "--out", str(out), *argv])  # fmt: skip
    out, err = capsys.readouterr()
    return code, out, err


def test_sigkill_between_write_and_ack_then_rerun_logs_every_event_once(
    redis_url: str,
    prefix: str,
    tmp_path: Path,
    shared_data: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    events = taobao_events(shared_data, limit=3000)
    _fill(redis_url, prefix, events)
    out = tmp_path / "log"
    _crash(redis_url, prefix, out, "worker", batch=250, after=3)
    # Three batches are on disk; the third was never acknowledged.
    assert sum(_logged_ids(out).values()) == 750
    assert _pending(redis_url, prefix) == 250
    # The rerun reads with other batch boundaries: the file names alone would not match.
    code, stdout, _ = _export(
        capsys, redis_url, prefix, out,
        "--consumer", "worker", "--batch", "100",
    )  # fmt: skip
    assert code == 0
    assert "exported 2,250 events" in stdout
    assert "250 redelivered events were already in the log" in stdout
    logged = _logged_ids(out)
    assert set(logged) == {e.event_id for e in events}
    assert max(logged.values()) == 1
    assert _pending(redis_url, prefix) == 0
    # Partitioned by the event's date (Taobao: late November, early December 2017).
    dates = {p.parent.name for p in out.glob("date=*/part-*.parquet")}
    assert "date=2017-11-25" in dates
    assert all(d.startswith("date=2017-") for d in dates)
    # Nothing new: a third run writes nothing.
    code, stdout, _ = _export(
        capsys, redis_url, prefix, out,
        "--consumer", "worker",
    )  # fmt: skip
    assert code == 0 and "exported 0 events" in stdout


def test_another_consumer_takes_over_a_crashed_ones_pending_events(
    redis_url: str,
    prefix: str,
    tmp_path: Path,
    shared_data: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    events = taobao_events(shared_data, limit=1200)
    _fill(redis_url, prefix, events[:800])
    out = tmp_path / "log"
    _crash(redis_url, prefix, out, "host-a", batch=300, after=2)
    _fill(redis_url, prefix, events[800:])  # the API goes on while the exporter is down
    code, stdout, _ = _export(
        capsys, redis_url, prefix, out,
        "--consumer", "host-b", "--claim-idle", "0",
    )  # fmt: skip
    assert code == 0
    assert "300 redelivered events were already in the log" in stdout
    logged = _logged_ids(out)
    assert set(logged) == {e.event_id for e in events}
    assert max(logged.values()) == 1
    assert _pending(redis_url, prefix) == 0


def test_events_trimmed_before_export_are_reported_once(
    redis_url: str,
    prefix: str,
    tmp_path: Path,
    shared_data: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    events = taobao_events(shared_data, limit=2000)
    small = StoreLimits(stream_max_events=200)
    out = tmp_path / "log"
    _fill(redis_url, prefix, events[:150], small)
    code, stdout, err = _export(capsys, redis_url, prefix, out)
    assert code == 0 and "exported 150 events" in stdout and err == ""
    _fill(redis_url, prefix, events[150:], small)  # 1,850 more into a stream capped near 200
    client = Redis.from_url(redis_url, decode_responses=True)
    kept = int(client.xlen(Keys(prefix).stream(0)))
    client.close()
    code, stdout, err = _export(capsys, redis_url, prefix, out)
    assert code == 0
    exported = int(stdout.split("exported ")[1].split(" events")[0].replace(",", ""))
    trimmed = 1850 - exported
    assert trimmed > 1000 and exported <= kept
    assert f"{trimmed:,} events were added to the stream after the last export but were " in err
    assert sum(_logged_ids(out).values()) == 150 + exported
    # Reported once: the next run finds no gap.
    code, stdout, err = _export(capsys, redis_url, prefix, out)
    assert code == 0 and "exported 0 events" in stdout and err == ""
