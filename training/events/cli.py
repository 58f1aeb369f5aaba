"""``personalize export-events``: append the API's event stream to the Parquet event log."""

from __future__ import annotations

import argparse
import re
import socket
import sys
from pathlib import Path

from redis import Redis, RedisCluster
from redis.exceptions import RedisError

from engine.profiles.keys import DEFAULT_PREFIX, Keys
from training.events.export import (
    DEFAULT_BATCH,
    DEFAULT_CLAIM_IDLE_MS,
    DEFAULT_GROUP,
    StreamExporter,
)

Subparsers = argparse._SubParsersAction  # argparse exposes no public name for it


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "export-events",
        help="append the event stream to a date-partitioned Parquet event log, exactly once",
        description="Read the API's event stream through a Redis consumer group and append "
        "every event, exactly once, to DIR/date=YYYY-MM-DD/part-*.parquet. Entries are "
        "acknowledged only once their file is durable; a run after a crash finishes the "
        "interrupted batch without writing anything twice. Events trimmed from the stream "
        "before they were exported are counted and reported. Train on the log with "
        "`personalize train --events DIR`.",
    )
    p.add_argument("--redis-url", required=True, help="the API's Redis, e.g. redis://host:6379/0")
    p.add_argument(
        "--key-prefix",
        default=DEFAULT_PREFIX,
        help=f"the API's key prefix (PERSONALIZE_KEY_PREFIX; default {DEFAULT_PREFIX})",
    )
    p.add_argument(
        "--shards",
        type=int,
        default=1,
        help="the API's event streams (its PERSONALIZE_REDIS_SHARDS: 1 on one Redis, "
        "16 by default on a cluster)",
    )
    p.add_argument("--cluster", action="store_true", help="the URL is a Redis Cluster node")
    p.add_argument("--out", required=True, type=Path, help="event log directory")
    p.add_argument(
        "--group", default=DEFAULT_GROUP, help=f"consumer group (default {DEFAULT_GROUP})"
    )
    p.add_argument(
        "--consumer",
        help="consumer name; keep it stable so a rerun resumes its own pending entries "
        "(default: the host name)",
    )
    p.add_argument(
        "--batch",
        type=int,
        default=DEFAULT_BATCH,
        help=f"entries per read and acknowledgement (default {DEFAULT_BATCH})",
    )
    p.add_argument(
        "--claim-idle",
        type=float,
        default=DEFAULT_CLAIM_IDLE_MS / 1000,
        help="take over another consumer's pending entries once idle this many seconds "
        f"(default {DEFAULT_CLAIM_IDLE_MS // 1000})",
    )
    p.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    consumer = args.consumer or re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:64]
    client: Redis | RedisCluster = (
        RedisCluster.from_url(args.redis_url, decode_responses=True)
        if args.cluster
        else Redis.from_url(args.redis_url, decode_responses=True)
    )
    try:
        exporter = StreamExporter(
            client,
            Keys(args.key_prefix, args.shards).streams,  # read one by one: one slot each
            args.out,
            group=args.group,
            consumer=consumer,
            batch=args.batch,
            claim_idle_ms=int(args.claim_idle * 1000),
        )
        report = exporter.run()
    except RedisError as exc:
        raise ValueError(f"redis at {args.redis_url}: {exc}") from None
    finally:
        client.close()
    for warning in report.warnings():
        print(f"personalize: warning: {warning}", file=sys.stderr)
    print(f"{report.summary()} to {args.out}")
    return 0
