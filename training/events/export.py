"""Export the API's event stream(s) to a date-partitioned Parquet log, exactly once.

Reading goes through a Redis consumer group, so the group remembers how far the log got and
every entry is delivered until it is acknowledged. An entry is acknowledged (XACK) only after
the file holding it is durable: written under a temporary name, fsynced, renamed, and the
directory fsynced. A crash between the rename and the XACK leaves the entries pending; the next
run gets them again (its own pending entries first, then those of consumers idle for longer than
``claim_idle_ms``, through XAUTOCLAIM) and finds them already in the log: files are named by the
stream-id range they hold, so only the files whose range overlaps a batch are read (their
``stream_id`` column), and only entries not found there are written. Whatever the batch
boundaries were before the crash, each entry lands in the log once.

Trimming: the stream is capped (``XADD MAXLEN ~``). Entries added after the last export that
were trimmed (or erased on request) before this one are counted and reported, never silently
skipped: before each read the group's read counter is compared with the stream's counter of
entries ever added, and after a gap the group's counter is set past it (XGROUP SETID
ENTRIESREAD) so each gap is reported once.

One exporter per group at a time (a cron job or a systemd timer guarantees it); a second
consumer name is for taking over after a crash, not for running side by side.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from redis import Redis, RedisCluster
from redis.exceptions import ResponseError

from engine.artifacts import fsync_dir
from training.events.schema import (
    EVENT_LOG_SCHEMA,
    decode_entry,
    id_key,
    partition_date,
)

DEFAULT_GROUP = "export"
DEFAULT_BATCH = 1000
DEFAULT_CLAIM_IDLE_MS = 600_000  # far longer than writing one batch takes
_PART = re.compile(r"^part-(?P<tag>[0-9a-f]{8})-(?P<first>\d+-\d+)-(?P<last>\d+-\d+)\.parquet$")

Entries = list[tuple[str, dict[str, Any]]]


def stream_tag(key: str) -> str:
    """A short, stable name of a stream key for file names (ids of two streams may coincide)."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


@dataclass
class ExportReport:
    """What one run did: nothing the stream held is unaccounted for."""

    exported: int = 0  # rows written to new files
    already_logged: int = 0  # redelivered entries found in the log (an interrupted run's)
    trimmed: int = 0  # added after the last export, gone from the stream before this one
    trimmed_pending: list[str] = field(default_factory=list)  # delivered, then gone unwritten
    unknown_gap: bool = False  # the group's read counter is unknown: gaps cannot be counted
    files: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"exported {self.exported:,} events in {len(self.files)} files"]
        if self.already_logged:
            parts.append(f"{self.already_logged:,} redelivered events were already in the log")
        return "; ".join(parts)

    def warnings(self) -> list[str]:
        out = []
        if self.trimmed:
            out.append(
                f"{self.trimmed:,} events were added to the stream after the last export but "
                "were trimmed (MAXLEN) or erased before this one: export more often or raise "
                "the stream's cap"
            )
        if self.trimmed_pending:
            out.append(
                f"{len(self.trimmed_pending):,} delivered events were trimmed before they were "
                f"written (first {self.trimmed_pending[0]})"
            )
        if self.unknown_gap:
            out.append(
                "the consumer group's read counter is unknown (group created without "
                "ENTRIESREAD): entries trimmed before export cannot be counted"
            )
        return out


class EventLogDir:
    """The Parquet log on disk: durable writes and the index of which stream ids it holds."""

    def __init__(self, root: Path, consumer: str) -> None:
        self.root = root
        self._consumer = consumer
        root.mkdir(parents=True, exist_ok=True)
        self._parts: list[tuple[str, tuple[int, int], tuple[int, int], Path]] = []
        for path in root.glob("date=*/part-*.parquet"):
            match = _PART.match(path.name)
            if match:
                first, last = id_key(match["first"]), id_key(match["last"])
                self._parts.append((match["tag"], first, last, path))
        # A temporary file of this consumer is a write that a crash interrupted: never renamed,
        # never acknowledged, so its entries are still pending. (Other consumers' are theirs.)
        for stale in root.glob(f"date=*/.part-*.{consumer}.tmp"):
            stale.unlink()

    def logged(self, tag: str, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` (one stream's) some file already holds."""
        keys = [id_key(i) for i in ids]
        lo, hi = min(keys), max(keys)
        found: set[str] = set()
        for part_tag, first, last, path in self._parts:
            if part_tag == tag and first <= hi and last >= lo:
                column = pq.read_table(path, columns=["stream_id"])["stream_id"]
                found.update(column.to_pylist())
        return found & set(ids)

    def write(self, tag: str, rows: list[dict[str, Any]]) -> list[Path]:
        """Write rows (sorted by stream id), one file per date partition, each durably."""
        by_date: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_date.setdefault(partition_date(row), []).append(row)
        paths = []
        for date, part in sorted(by_date.items()):
            first, last = part[0]["stream_id"], part[-1]["stream_id"]
            folder = self.root / f"date={date}"
            new_folder = not folder.exists()
            folder.mkdir(exist_ok=True)
            if new_folder:
                fsync_dir(self.root)
            name = f"part-{tag}-{first}-{last}.parquet"
            tmp = folder / f".{name}.{self._consumer}.tmp"
            table = pa.Table.from_pylist(part, schema=EVENT_LOG_SCHEMA)
            with tmp.open("wb") as out:
                pq.write_table(table, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, folder / name)
            fsync_dir(folder)
            self._parts.append((tag, id_key(first), id_key(last), folder / name))
            paths.append(folder / name)
        return paths


class StreamExporter:
    """Drains stream(s) into an :class:`EventLogDir` through one consumer group.

    Args:
        client: a synchronous Redis client with ``decode_responses=True``.
        streams: the stream keys to export (``Keys.streams``), each read on its own, so a
            key per Redis Cluster slot works too.
        after_write: called with a batch's files once they are durable and before the batch is
            acknowledged: the point a crash test kills the process at.
    """

    def __init__(
        self,
        client: Redis | RedisCluster,
        streams: Sequence[str],
        out: Path,
        *,
        group: str = DEFAULT_GROUP,
        consumer: str,
        batch: int = DEFAULT_BATCH,
        claim_idle_ms: int = DEFAULT_CLAIM_IDLE_MS,
        after_write: Callable[[list[Path]], None] | None = None,
    ) -> None:
        if batch < 1:
            raise ValueError("--batch must be at least 1")
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", consumer):
            raise ValueError(f"consumer name {consumer!r}: use letters, digits, '_', '.', '-'")
        self._redis = client
        self._streams = list(streams)
        self._log = EventLogDir(out, consumer)
        self._group = group
        self._consumer = consumer
        self._batch = batch
        self._claim_idle_ms = claim_idle_ms
        self._after_write = after_write
        self.report = ExportReport()

    def run(self) -> ExportReport:
        for stream in self._streams:
            self._export(stream)
        return self.report

    def _export(self, stream: str) -> None:
        try:
            self._redis.xgroup_create(stream, self._group, id="0", mkstream=True, entries_read=0)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        # 1. This consumer's own pending entries (a crash of an earlier run under this name).
        start = "0"
        while entries := self._read(stream, start):
            self._handle(stream, entries)
            start = entries[-1][0]
        # 2. Pending entries of consumers idle for long (a crashed run under another name).
        cursor = "0-0"
        while True:
            cursor, claimed, deleted = self._redis.xautoclaim(
                stream, self._group, self._consumer, self._claim_idle_ms, cursor, count=self._batch
            )
            self.report.trimmed_pending += deleted
            if claimed:
                self._handle(stream, claimed)
            if cursor == "0-0":
                break
        # 3. New entries, checking for a trimmed gap before each read.
        while True:
            self._check_gap(stream)
            entries = self._read(stream, ">")
            if not entries:
                return
            self._handle(stream, entries)

    def _read(self, stream: str, start: str) -> Entries:
        reply: Any = self._redis.xreadgroup(
            self._group, self._consumer, {stream: start}, count=self._batch
        )  # [[stream, [(id, fields), ...]]], or [] when nothing is there (RESP2)
        return list(reply[0][1]) if reply else []

    def _handle(self, stream: str, entries: Entries) -> None:
        tag = stream_tag(stream)
        # A pending entry the stream no longer holds comes back with no fields.
        gone = [entry_id for entry_id, fields in entries if not fields]
        self.report.trimmed_pending += gone
        present = [(entry_id, fields) for entry_id, fields in entries if fields]
        ids = [entry_id for entry_id, _ in present]
        logged = self._log.logged(tag, ids) if ids else set()
        rows = [decode_entry(i, fields) for i, fields in present if i not in logged]
        rows.sort(key=lambda row: id_key(row["stream_id"]))
        paths = self._log.write(tag, rows) if rows else []
        self.report.exported += len(rows)
        self.report.already_logged += len(logged)
        self.report.files += paths
        if self._after_write is not None:
            self._after_write(paths)
        self._redis.xack(stream, self._group, *(entry_id for entry_id, _ in entries))

    def _check_gap(self, stream: str) -> None:
        """Count entries trimmed between the group's position and the stream's first entry."""
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.xinfo_stream(stream)
            pipe.xinfo_groups(stream)
            info, groups = pipe.execute()
        group = next(g for g in groups if g["name"] == self._group)
        read = group.get("entries-read")
        if read is None:
            self.report.unknown_gap = True
            return
        first = info.get("first-entry")
        delivered = group["last-delivered-id"]
        if first is not None and id_key(first[0]) <= id_key(delivered):
            return  # the head of the stream is behind the group: nothing unread was trimmed
        missing = int(info["entries-added"]) - int(read) - int(info["length"])
        if missing > 0:
            self.report.trimmed += missing
            # Move the group's counter past the gap, so it is reported once and lag is right.
            self._redis.xgroup_setid(
                stream, self._group, delivered, entries_read=int(read) + missing
            )
