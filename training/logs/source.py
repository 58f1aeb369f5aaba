"""Turn a file on disk (CSV, compressed CSV or Parquet) into an Arrow table of named columns.

Every way a file can fail to be a table becomes a one-line LogError here, so the
cleaning code only ever sees well-formed columns. CSV must be UTF-8, and values
should not contain line breaks: Arrow's fast parallel parser splits blocks at line
breaks without tracking quotes (tracking them costs a third more time).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from tqdm import tqdm
from tqdm.utils import CallbackIOWrapper

from training.logs.errors import LogError, first_line
from training.logs.lines import physical_lines

_MAGIC: dict[bytes, str] = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bz2",
    b"\x28\xb5\x2f\xfd": "zstd",
}
_PARQUET_MAGIC = b"PAR1"
_SNIFF_BYTES = 1 << 16
_NUL_SHARE_OF_BINARY = 100  # more than 1 byte in 100 being NUL


@dataclass(frozen=True)
class RawTable:
    """The requested columns as stored, plus the lines that could not be split into fields."""

    table: pa.Table  # CSV columns are strings; Parquet columns keep their stored types
    path: Path
    compression: str | None = None
    is_csv: bool = True
    skipped: int = 0  # lines of the wrong width, left out of the table
    skipped_rows: list[int] = field(default_factory=list)  # their row numbers (header = 1)

    def line_numbers(self, rows: np.ndarray, limit: int) -> list[int]:
        """The first `limit` line numbers among the skipped lines and the given table rows.

        CSV lines are numbered as in the file (header = 1); Parquet rows from 1.
        """
        first = 2 if self.is_csv else 1
        skipped = np.asarray(self.skipped_rows, dtype=np.int64)
        rows_before_skip = skipped - first - np.arange(len(skipped))
        rows = rows[:limit]
        numbers = rows + first + np.searchsorted(rows_before_skip, rows, side="right")
        merged = sorted({*self.skipped_rows[:limit], *numbers.tolist()})[:limit]
        if not (self.is_csv and merged):
            return merged
        return physical_lines(self.path, self.compression, merged)


def fingerprint(path: Path) -> str:
    """sha256 of the file bytes, so a model manifest can name exactly what it was trained on."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def read_columns(
    path: Path,
    columns: Mapping[str, str],
    *,
    optional: frozenset[str] = frozenset(),
    delimiter: str = ",",
    progress: bool = False,
) -> RawTable:
    """Read `columns` (name -> what it is for, used in errors) from a CSV or Parquet file.

    Columns in `optional` are left out when the file lacks them; any other
    missing column is a LogError that lists what the file does have.
    """
    head = _head(path)
    if head.startswith(_PARQUET_MAGIC):
        return _read_parquet(path, columns, optional)
    compression = next((kind for magic, kind in _MAGIC.items() if head.startswith(magic)), None)
    header = _csv_header(path, compression, delimiter)
    names = _select(path, header, columns, optional)
    with tqdm(
        total=path.stat().st_size,
        unit="B",
        unit_scale=True,
        desc=f"reading {path.name}",
        disable=not progress,
    ) as bar:
        table, skipped = _parse_csv(path, compression, names, delimiter, bar if progress else None)
    if None in skipped:
        # The threaded parser does not know line numbers; ask the serial one, only for bad files.
        table, skipped = _parse_csv(path, compression, names, delimiter, None, threads=False)
    if table.num_rows == 0 and not skipped:
        raise LogError(f"{path}: has a header line but no data lines")
    numbers = sorted(line for line in skipped if line is not None)
    return RawTable(table, path, compression, skipped=len(skipped), skipped_rows=numbers)


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            head = handle.read(len(_PARQUET_MAGIC))
    except FileNotFoundError:
        raise LogError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise LogError(f"{path}: is a directory, expected a purchase log file") from None
    except OSError as exc:
        raise LogError(f"{path}: cannot open ({exc.strerror})") from None
    if not head:
        raise LogError(f"{path}: is empty, expected a purchase log (CSV or Parquet)")
    return head


def _csv_header(path: Path, compression: str | None, delimiter: str) -> list[str]:
    """Column names from the first line, after checking the content is text at all."""
    try:
        with pa.input_stream(str(path), compression=compression) as stream:
            head = stream.read(_SNIFF_BYTES)
    except (OSError, pa.ArrowException) as exc:
        raise LogError(f"{path}: cannot decompress ({first_line(exc)})") from None
    if not head.strip():
        raise LogError(f"{path}: is empty, expected a purchase log (CSV or Parquet)")
    text = _utf8_text(head)
    if text is None:
        raise LogError(
            f"{path}: is not a text CSV file (binary or not UTF-8); "
            "expected CSV (plain, gzip, bz2 or zstd, UTF-8) or Parquet"
        )
    first = (text.splitlines() or [""])[0]
    return next(csv.reader([first], delimiter=delimiter), [])


def _utf8_text(head: bytes) -> str | None:
    """Decode the start of a file, or None if it is binary or not UTF-8.

    A stray NUL byte is a damaged line (counted as unparsable); many of them
    (UTF-16, images, archives) mean the file is not text at all.
    """
    if head.count(0) > len(head) // _NUL_SHARE_OF_BINARY:
        return None
    try:
        return codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=False)
    except UnicodeDecodeError:
        return None


def _select(
    path: Path, available: list[str], columns: Mapping[str, str], optional: frozenset[str]
) -> list[str]:
    for name, purpose in columns.items():
        if name not in available and name not in optional:
            raise LogError(
                f"{path}: missing column {name!r} ({purpose}); "
                f"the file has columns: {', '.join(available) or '(none)'}"
            )
    return [name for name in columns if name in available]


def _parse_csv(
    path: Path,
    compression: str | None,
    names: list[str],
    delimiter: str,
    bar: tqdm | None,
    *,
    threads: bool = True,
) -> tuple[pa.Table, list[int | None]]:
    """Parse with every kept column as a string, skipping (and noting) lines of the wrong width."""
    skipped: list[int | None] = []

    def skip(row: pacsv.InvalidRow) -> str:
        skipped.append(row.number)
        return "skip"

    options = {
        "read_options": pacsv.ReadOptions(use_threads=threads),
        "parse_options": pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=skip),
        "convert_options": pacsv.ConvertOptions(
            include_columns=names, column_types=dict.fromkeys(names, pa.string())
        ),
    }
    try:
        if bar is None:
            return pacsv.read_csv(pa.input_stream(str(path), compression), **options), skipped
        with path.open("rb") as handle:
            stream = pa.input_stream(CallbackIOWrapper(bar.update, handle, "read"), compression)
            return pacsv.read_csv(stream, **options), skipped
    except (OSError, pa.ArrowException) as exc:
        raise LogError(f"{path}: cannot read as CSV ({first_line(exc)})") from None


def _read_parquet(path: Path, columns: Mapping[str, str], optional: frozenset[str]) -> RawTable:
    try:
        available = pq.read_schema(path).names
        names = _select(path, available, columns, optional)
        table = pq.read_table(path, columns=names)
    except (OSError, pa.ArrowException) as exc:
        raise LogError(f"{path}: not a readable Parquet file ({first_line(exc)})") from None
    if table.num_rows == 0:
        raise LogError(f"{path}: Parquet file has no rows")
    return RawTable(table, path, is_csv=False)
