"""read_purchase_log: a log file -> a cleaned, time-sorted table in LOG_SCHEMA plus a LoadReport."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from training.logs import duplicates
from training.logs.canonical import canonical_table
from training.logs.clean import Rows, apply_rules, drop_duplicates
from training.logs.convert import to_ids, to_numbers, to_text, to_times
from training.logs.errors import LogError, first_line
from training.logs.formats import LogFormat
from training.logs.report import LoadReport
from training.logs.source import fingerprint, read_columns

_ROLES = ("user", "item", "time", "quantity", "price", "basket", "description", "category")
_REQUIRED = ("user", "item", "time")
_LINES_REPORTED = 10


@dataclass(frozen=True)
class PurchaseLog:
    """A cleaned log in LOG_SCHEMA, sorted by time (stable), and how it was obtained.

    ``ids``: the reader's dictionary encoding of the table's id columns (``user``, ``item``,
    ``basket``; those the file had), row for row, so the trainer does not hash 10M ids again
    (``training.dataset``). A log built otherwise has none.
    """

    table: pa.Table
    report: LoadReport
    ids: Mapping[str, pa.DictionaryArray] = field(default_factory=dict)


def read_purchase_log(
    path: str | os.PathLike[str], fmt: LogFormat, *, progress: bool = False
) -> PurchaseLog:
    """Load, convert and clean a purchase log; raise LogError if it is not one.

    `progress` draws a byte progress bar on stderr while the file is parsed.
    Independent column work runs on a thread pool (Arrow and numpy release the
    GIL), which keeps loading close to the cost of Arrow's own CSV parse.
    """
    source = Path(path)
    mapping = _column_mapping(fmt)
    with ThreadPoolExecutor(max_workers=pa.cpu_count()) as pool:
        digest = pool.submit(fingerprint, source)
        # numba's one-time setup (about 0.2 s of imports and registries, holding the GIL) while
        # Arrow parses, which releases it; the first compiled call would otherwise wait on it.
        pool.submit(_count_distinct, np.empty(0, np.int32), np.empty(0, np.bool_), 0)
        raw = read_columns(
            source,
            {column: _purpose(role, fmt) for role, column in mapping.items()},
            optional=frozenset(getattr(fmt, field) for field in fmt.lenient_cols),
            delimiter=fmt.delimiter,
            progress=progress,
        )
        rows, duplicate = _convert(raw.table, mapping, fmt, source, pool)
        keep, dropped = apply_rules(rows, fmt)
        dropped["unparsable"] += raw.skipped
        ids = {"users": rows.user, "items": rows.item, "baskets": rows.basket}
        counts = {
            name: pool.submit(_distinct, column, keep)
            for name, column in ids.items()
            if column is not None
        }
        keep = drop_duplicates(keep, dropped, duplicate.result())
        table, encoded_ids = canonical_table(rows, keep, source, fmt, pool)
        report = LoadReport(
            source=str(path),
            fingerprint=digest.result(),
            format=fmt.name,
            rows_read=raw.table.num_rows + raw.skipped,
            rows_kept=table.num_rows,
            dropped=dropped,
            unparsable_lines=raw.line_numbers(np.flatnonzero(rows.unparsable), _LINES_REPORTED),
            users=counts["users"].result(),
            items=counts["items"].result(),
            baskets=counts["baskets"].result() if "baskets" in counts else _count(table["basket"]),
            time_min=_iso(table["time"], 0),
            time_max=_iso(table["time"], -1),
        )
    del raw, rows, ids, counts, duplicate
    # What the parse and the conversions freed, Arrow's allocator keeps mapped until it purges
    # by itself, which the fit's numpy work does not prompt: at 10M lines about 1 GB, resident
    # through the fit (its peak 2.8 -> 3.8 GB once the trainer stopped hashing the ids again).
    pa.default_memory_pool().release_unused()
    return PurchaseLog(table, report, encoded_ids)


def _column_mapping(fmt: LogFormat) -> dict[str, str]:
    """Canonical role -> column name in the file, for the roles this format maps."""
    named = {role: getattr(fmt, f"{role}_col") for role in _ROLES}
    return {role: column for role, column in named.items() if column}


def _purpose(role: str, fmt: LogFormat) -> str:
    fix = f"pick another --format or set --{role}-col"
    if role not in _REQUIRED:
        fix += " ('' if the log has none)"
    return f"the {role} column of format {fmt.name!r}; {fix}"


def _convert(
    raw: pa.Table, mapping: dict[str, str], fmt: LogFormat, source: Path, pool: Executor
) -> tuple[Rows, Future[np.ndarray]]:
    """Canonical types for every row, plus the duplicate mask still being computed.

    Values that do not convert mark their row unparsable.
    """
    columns = {role: raw[name] for role, name in mapping.items() if name in raw.column_names}
    label = {role: f"{source}: column {mapping[role]!r}" for role in columns}
    # One task per column, slowest first so that the pool drains evenly: those the duplicate
    # search needs, then the ids with the most distinct values (baskets, customers), then the
    # search itself (it waits on the item ids), then the rest. At 10M lines the baskets' ids
    # (0.9 s) came last and left one worker idle for as long: 2.6 -> 2.2 s to convert.
    plan: dict[str, Callable[[pa.ChunkedArray], Any]] = {
        "time": lambda column: to_times(column, fmt.time_format, label["time"]),
        "item": lambda column: to_ids(column, upper=fmt.upper_items, numeric=fmt.numeric_ids),
        "quantity": lambda column: to_numbers(column, label["quantity"]),
        "basket": lambda column: to_ids(column, numeric=fmt.numeric_ids),
        "user": lambda column: to_ids(column, numeric=fmt.numeric_ids),
        "description": to_text,
        "category": to_text,
        "price": lambda column: to_numbers(column, label["price"]),
    }
    first = [r for r in ("time", "item", "quantity", "basket", "user") if r in columns]
    tasks: dict[str, Future[Any]] = {role: pool.submit(plan[role], columns[role]) for role in first}
    candidates = pool.submit(
        lambda: duplicates.candidates(
            tasks["time"].result()[0],
            tasks["item"].result(),
            tasks["quantity"].result()[0] if "quantity" in tasks else None,
        )
    )
    for role, convert in plan.items():
        if role in columns and role not in tasks:
            tasks[role] = pool.submit(convert, columns[role])
    done = {role: _result(task, label[role]) for role, task in tasks.items()}
    unparsable = np.zeros(raw.num_rows, dtype=bool)
    for role in ("time", "quantity", "price"):
        if role in done:
            done[role], failed = done[role]
            unparsable |= failed.to_numpy()
    if fmt.price_is_total and "price" in done and "quantity" in done:
        done["price"] = pc.divide(done["price"], done["quantity"])
    rows = Rows(**{role: done.get(role) for role in _ROLES}, unparsable=unparsable)
    duplicate = pool.submit(lambda: duplicates.duplicates(rows.present(), candidates.result()))
    return rows, duplicate


def _result(task: Future[Any], label: str) -> Any:
    """A conversion's result; a column of a type that cannot convert is bad input too."""
    try:
        return task.result()
    except pa.ArrowException as exc:
        raise LogError(f"{label}: cannot convert its values ({first_line(exc)})") from None


def _distinct(ids: pa.DictionaryArray, keep: np.ndarray) -> int:
    """Distinct ids among kept rows (a missing one is none), counted on dictionary codes rather
    than strings."""
    codes = ids.indices if ids.null_count == 0 else pc.fill_null(ids.indices, -1)
    return _count_distinct(codes.to_numpy(), keep, len(ids.dictionary))


@numba.njit(cache=True, nogil=True)
def _count_distinct(codes: np.ndarray, keep: np.ndarray, n: int) -> int:
    """Distinct codes (in [0, n); negative: none) on the rows ``keep`` marks, in one pass: no
    copy of the kept rows' codes nor a count per code (10M lines: 0.3-0.4 s a column before)."""
    seen = np.zeros(n, np.bool_)
    count = 0
    for p in range(codes.shape[0]):
        code = codes[p]
        if keep[p] and code >= 0 and not seen[code]:
            seen[code] = True
            count += 1
    return count


def _count(values: pa.ChunkedArray) -> int:
    return int(pc.count_distinct(values).as_py())


def _iso(times: pa.ChunkedArray, index: int) -> str:
    return times[index].as_py().isoformat() if len(times) else ""
