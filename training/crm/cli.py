"""The CRM commands of ``personalize``: segments (RFM, 80/20, win-back) and bought-together.

Both write their full table to CSV or Parquet (chosen by suffix) and print a short view of it.
"""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from engine.model import load_model
from training.cli import Subparsers, _log_args, _read, _say, _with_settings
from training.crm.pairs import bought_together, top_pairs
from training.crm.segments import DAY, Segments, compute_segments
from training.settings import TrainerSettings

_SUFFIXES = (".csv", ".parquet")


def register(sub: Subparsers) -> None:
    """Add the ``segments`` and ``bought-together`` commands to the ``personalize`` parser."""
    seg = sub.add_parser(
        "segments",
        help="customer value segments (RFM), the 80/20 view and win-back lists",
        description="Score every customer of a purchase log on recency, frequency and "
        "monetary value (quintiles, 5 best), name their segment, flag those overdue by their "
        "own usual gap between purchases, write one row per customer and print the summary.",
    )
    _log_args(seg)
    seg.add_argument(
        "--as-of",
        type=_day,
        help="YYYY-MM-DD: segment as at the end of this day, ignoring later purchases "
        "(default: the log's last purchase)",
    )
    seg.add_argument(
        "--tolerance",
        type=float,
        default=1.0,
        help="lapsed when days since the last purchase exceed this x the usual gap (default 1)",
    )
    seg.add_argument(
        "--win-back",
        action="store_true",
        help="write only the lapsed customers, biggest spenders first",
    )
    seg.add_argument("--out", required=True, type=Path, help="output file: .csv or .parquet")
    seg.add_argument("--quiet", action="store_true", default=None, help="no progress output")
    seg.set_defaults(handler=_with_settings(_segments))

    pairs = sub.add_parser(
        "bought-together",
        help="item pairs bought in the same baskets, with support, confidence and lift",
        description="Read a model's bought-together pairs (kept at training time: see train "
        "--min-support), print the top pairs or one item's partners, and optionally export "
        "them all.",
    )
    pairs.add_argument(
        "--models", dest="models_dir", type=Path, help="models directory or a version directory"
    )
    pairs.add_argument(
        "--min-support", type=int, default=1, help="drop pairs seen in fewer baskets"
    )
    pairs.add_argument("--per-item", type=int, help="keep each item's top N partners")
    pairs.add_argument("--item", help="only this item's partners")
    pairs.add_argument("--top", type=int, default=10, help="pairs to print (default 10)")
    pairs.add_argument("--out", type=Path, help="also write every pair: .csv or .parquet")
    pairs.set_defaults(handler=_with_settings(_bought_together))


def _segments(args: argparse.Namespace, settings: TrainerSettings) -> int:
    _check_suffix(args.out)
    log = _read(args, settings)
    _say(settings, log.report.format_table())
    as_of = None if args.as_of is None else _end_of(args.as_of)
    segments = compute_segments(log.table, as_of=as_of, tolerance=args.tolerance)
    table = segments.table(win_back_only=args.win_back)
    write_table(table, args.out)
    print(format_summary(segments))
    what = "lapsed customers" if args.win_back else "customers"
    print(f"wrote {table.num_rows:,} {what} to {args.out}")
    return 0


def _bought_together(args: argparse.Namespace, settings: TrainerSettings) -> int:
    if args.out is not None:
        _check_suffix(args.out)
    model = load_model(settings.models_dir)
    table = bought_together(
        model, min_support=args.min_support, per_item=args.per_item, item=args.item
    )
    shown = table.slice(0, args.top) if args.item is not None else top_pairs(table, args.top)
    scope = f"partners of {args.item}" if args.item is not None else "pairs by support"
    print(f"model {model.version}: {table.num_rows:,} item-partner rows; top {scope}")
    for rank, row in enumerate(shown.to_pylist(), 1):
        print(
            f"{rank:>3}. {row['item']:<7} {row['item_description'][:32]:<32} + "
            f"{row['partner']:<7} {row['partner_description'][:32]:<32} "
            f"conf {row['confidence']:.2f}  {row['reason']}"
        )
    if args.out is not None:
        write_table(table, args.out)
        print(f"wrote {table.num_rows:,} rows to {args.out}")
    return 0


def format_summary(segments: Segments) -> str:
    """The per-segment table, its total, and the 80/20 line."""
    money = "revenue" if segments.monetary_unit == "revenue" else "units"
    header = (
        f"{'segment':<19}{'customers':>10}{'share':>8}{money:>14}{'share':>8}"
        f"{'recency':>9}{'freq':>7}{'monetary':>11}{'win-back':>10}"
    )
    lines = [
        f"customer segments as of {_iso_day(segments.as_of - 1)} "
        f"(recency in days, frequency in baskets, means per customer)",
        header,
    ]
    for row in segments.summary():
        lines.append(
            f"{row.segment:<19}{row.customers:>10,}{row.customer_share:>8.1%}"
            f"{row.revenue:>14,.0f}{row.revenue_share:>8.1%}{row.mean_recency_days:>9.1f}"
            f"{row.mean_frequency:>7.1f}{row.mean_monetary:>11,.1f}{row.win_back:>10,}"
        )
    n, lapsed = len(segments.customers), int(segments.lapsed.sum())
    lines.append(
        f"{'total':<19}{n:>10,}{1:>8.1%}{segments.monetary.sum():>14,.0f}{1:>8.1%}"
        f"{segments.recency_days.mean():>9.1f}{segments.frequency.mean():>7.1f}"
        f"{segments.monetary.mean():>11,.1f}{lapsed:>10,}"
    )
    top = -(-20 * n // 100)
    lines.append(
        f"80/20: the top 20 % of customers ({top:,}) bring {segments.top20_share:.1%} of {money}"
    )
    lines.append(
        f"win-back: {lapsed:,} customers past {segments.tolerance:g}x their usual gap; "
        f"{segments.no_revenue:,} customers with no positive {money}; "
        f"{segments.lines_after_as_of:,} log lines after the as-of day ignored"
    )
    return "\n".join(lines)


def write_table(table: pa.Table, path: Path) -> None:
    """Write CSV or Parquet by suffix; an unwritable path is a one-line ValueError."""
    _check_suffix(path)
    try:
        if path.suffix.lower() == ".csv":
            pa_csv.write_csv(table, path)
        else:
            pq.write_table(table, path)
    except OSError as exc:
        raise ValueError(f"{path}: cannot write ({exc})") from exc


def _check_suffix(path: Path) -> None:
    if path.suffix.lower() not in _SUFFIXES:
        raise ValueError(f"{path}: output must end in .csv or .parquet, not {path.suffix!r}")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def _end_of(day: date) -> int:
    """The exclusive epoch-second bound of a day, so that the day's own purchases count."""
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) + DAY


def _iso_day(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d")
