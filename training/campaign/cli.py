"""The ``personalize email-batch`` command: a consent-aware personalised e-mail batch."""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from engine.consent import Channel, ConsentRecord, Status
from engine.model import load_model
from engine.profiles import StoreUnavailableError
from engine.profiles.keys import DEFAULT_PREFIX, Keys
from engine.profiles.redis import RedisProfileStore
from training.campaign.consent_file import parse_time, read_consent, write_consent
from training.campaign.email import (
    SUFFIXES,
    EmailSpec,
    append_send_log,
    build_batch,
    read_send_log,
    write_batch,
)
from training.cli import Subparsers, _progress, _say, _with_settings
from training.logs.source import read_columns
from training.settings import TrainerSettings


def register(sub: Subparsers) -> None:
    """Add ``email-batch`` to the ``personalize`` parser."""
    p = sub.add_parser(
        "email-batch",
        help="personalised e-mail batch: top-k items per consenting customer, with a holdout",
        description="Write one row per customer with consent for e-mail at send time: their "
        "top k items (description, price, reason) under the serving rules (past purchases "
        "only when due, no unavailable item), none mailed to them in the last --no-repeat-days, "
        "nobody mailed twice within --frequency-days (from the send log, which this command "
        "appends to), and a seeded holdout group (group=holdout: recorded, not to be mailed). "
        "Parquet output keeps list columns; CSV has item_<rank>_id/description/price/reason.",
    )
    p.add_argument(
        "--models", dest="models_dir", type=Path, help="models directory or a version directory"
    )
    p.add_argument(
        "--consent",
        required=True,
        type=Path,
        action="append",
        help="consent records: customer_id,channel,status,timestamp (CSV or Parquet); "
        "repeatable, e.g. the CRM's file and the storefront's (personalize consent-export)",
    )
    p.add_argument("--out", required=True, type=Path, help="output file: .csv or .parquet")
    p.add_argument("--segment", help="only this customer segment of the model (e.g. at-risk)")
    p.add_argument("-k", "--k", dest="k", type=int, default=5, help="items per customer (5)")
    p.add_argument(
        "--send-log",
        type=Path,
        help="JSON-lines send log, read for the caps and appended to "
        "(default: send_log.jsonl beside --out)",
    )
    p.add_argument(
        "--frequency-days",
        type=float,
        default=7.0,
        help="nobody is mailed twice within this many days (default 7)",
    )
    p.add_argument(
        "--no-repeat-days",
        type=float,
        default=30.0,
        help="no item mailed to a customer within this many days is sent again (default 30)",
    )
    p.add_argument(
        "--holdout", type=float, default=0.1, help="share of customers held out (default 0.1)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the holdout draw (default 0)")
    p.add_argument("--campaign", help="campaign id (default email-<send time>)")
    p.add_argument(
        "--unavailable",
        type=Path,
        help="items not to offer: one id per line, or a CSV with an item_id column",
    )
    p.add_argument(
        "--as-of",
        type=_time,
        help="send time, ISO 8601 (UTC unless an offset is given; default: now)",
    )
    p.add_argument("--quiet", action="store_true", default=None, help="no progress output")
    p.set_defaults(handler=_with_settings(_email_batch))

    export = sub.add_parser(
        "consent-export",
        help="the storefront's consent statements (from Redis) as a consent file",
        description="Write every personalization consent statement that visitors linked to a "
        "customer made through the API (PUT /v1/visitors/{id}/consent) as a consent file "
        "(customer_id,channel,status,timestamp), for email-batch --consent: a withdrawal on the "
        "storefront then stops the personalised e-mails too.",
    )
    export.add_argument("--redis-url", required=True, help="the API's Redis")
    export.add_argument("--key-prefix", default=DEFAULT_PREFIX, help="its key prefix (p13n:)")
    export.add_argument("--out", required=True, type=Path, help="consent file to write (.csv)")
    export.set_defaults(handler=_consent_export)


def _email_batch(args: argparse.Namespace, settings: TrainerSettings) -> int:
    if args.out.suffix not in SUFFIXES:
        raise ValueError(f"{args.out}: output must end in {' or '.join(SUFFIXES)}")
    now = time.time() if args.as_of is None else args.as_of
    campaign = args.campaign or f"email-{datetime.fromtimestamp(now, UTC):%Y%m%dT%H%M%SZ}"
    spec = EmailSpec(
        campaign=campaign,
        now=now,
        k=args.k,
        segment=args.segment,
        frequency_days=args.frequency_days,
        no_repeat_days=args.no_repeat_days,
        holdout=args.holdout,
        seed=args.seed,
    )
    send_log = args.send_log or args.out.with_name("send_log.jsonl")
    model = load_model(settings.models_dir)
    consent = read_consent(*args.consent)
    unavailable = _unavailable(args.unavailable) if args.unavailable else []
    clock = time.perf_counter()
    with tqdm(
        total=len(model.users), unit="customers", desc="ranking", disable=not _progress(settings)
    ) as bar:
        batch = build_batch(model, consent, spec, read_send_log(send_log), unavailable, bar.update)
    _say(settings, f"ranked in {time.perf_counter() - clock:.2f}s")
    write_batch(batch.table, args.out)
    append_send_log(send_log, batch.sends)
    print(f"campaign {campaign}, model {model.version}, k={spec.k}")
    print("\n".join(batch.summary.lines()))
    print(f"wrote {batch.table.num_rows:,} customers to {args.out}; send log {send_log}")
    return 0


def _consent_export(args: argparse.Namespace) -> int:
    if args.out.suffix != ".csv":
        raise ValueError(f"{args.out}: the consent file must end in .csv")
    written = asyncio.run(export_consents(args.redis_url, args.key_prefix, args.out))
    print(f"wrote {written:,} consent statements to {args.out}")
    return 0


async def export_consents(redis_url: str, key_prefix: str, out: Path) -> int:
    """The store's (customer, consent) statements as ``personalization`` consent records."""
    store = RedisProfileStore.from_url(redis_url, keys=Keys(key_prefix))
    try:
        statements = await store.customer_consents()
    except StoreUnavailableError as exc:
        raise ValueError(str(exc)) from None  # one line, no traceback
    finally:
        await store.close()
    records = (
        ConsentRecord(customer, Channel.PERSONALIZATION,
                      Status.GIVEN if consent.given else Status.WITHDRAWN, consent.at)
        for customer, consent in statements
    )  # fmt: skip
    return write_consent(records, out)


def _time(text: str) -> float:
    try:
        return parse_time(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None


def _unavailable(path: Path) -> list[str]:
    """Item ids from a CSV's ``item_id`` column, or from a text file with one id per line."""
    if path.suffix in (".csv", ".gz", ".parquet"):
        column = read_columns(path, {"item_id": "the unavailable item"}).table["item_id"]
        return [str(v).strip() for v in column.to_pylist() if v is not None and str(v).strip()]
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror})") from None
    return [line.strip() for line in lines if line.strip()]
