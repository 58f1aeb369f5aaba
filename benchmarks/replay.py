"""Click replay: what the live session buys, measured on a real click stream through the API.

    python -m benchmarks.replay [--quick] [--max-events N] [--max-seconds S] [--redis]
        [--json OUT]

The shared Taobao UserBehavior head (``user_id,item_id,category_id,behavior_type,timestamp``)
is split by time: the last ``HOLDOUT_DAYS`` (2) days before its last event are held out, the
rest (the few 2017-09 outliers included) trains the default model in-process with the generic
preset (``--time-format unix``, ``category_id`` as the item category; no quantity or price, so
every behaviour line counts as one interaction). Then ``personalize serve`` (embedded store, or
``--redis``: a private redis-server) gets the held-out events, each user's in time order, and
before each event the client asks for that user's top 10 in four arms:

* ``session``: an anonymous visitor (``visitor_id`` = the user) that receives every replayed
  event, so each list folds in the session so far;
* ``no session``: an anonymous visitor that never receives events (the trending list);
* ``customer+session``: ``customer_id`` = the user (when the model knows them) on a visitor that
  receives the events: history plus live session;
* ``customer``: the same customer on a visitor that never receives events: the model alone.

An event is a hit in an arm when its item is in that arm's list (reciprocal rank for MRR@10).
Behaviours map to event types as ``TAOBAO_EVENT_TYPES`` says (pv -> view, fav -> click, cart ->
add_to_cart, buy -> purchase); after the four requests the event is posted to both session
visitors. The lift is each session arm against its arm without the session.

The recommender never lists what this session has seen (and a customer's past items unless due
again), so a repeat interaction can never be a hit in the session arms. Metrics are therefore
reported over all events, over ``first in session`` events (the user's first held-out event
with that item) and over ``new to user`` events (first in session and not in the user's training
history either: no exclusion rule applies in any arm).

Time: the API ranks at wall-clock time (session events decay with a 7-day half-life, customer
features age from now), so the whole log is shifted by one constant that puts its end at the
start of the run: the model's ``as_of`` is then 2 days ago and every event is posted with its
original, shifted timestamp. Gaps between events are kept exactly; the replay compresses the
2 days into minutes, so each request sees the session up to 2 days "older" than it was (a
common decay factor of at least 2^(-2/7) = 0.82) and customer features up to 2 days later.

A request reads only its own visitor's profile and the fixed model, so users are replayed in
parallel (``CONCURRENCY`` connections, each user's events in order on one of them): the lists
are those of a single time-ordered replay. ``--max-events`` replays whole users' streams in a
seeded random order until that many events (the last stream cut short); ``--quick`` is
``QUICK_EVENTS``. ``--max-seconds`` bounds the replay; what it leaves out is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks import loadgen
from benchmarks.fixtures import TAOBAO, TAOBAO_EVENT_TYPES, read_taobao, write_json
from benchmarks.loadgen import Connection, get, post_json
from benchmarks.servers import (
    HOST,
    engine_server,
    free_port,
    private_redis,
    stop_servers_on_sigterm,
)
from engine.model import load_model

HOLDOUT_DAYS = 2
DAY = 86_400
K = 10
QUICK_EVENTS = 3_000
CONCURRENCY = 4  # connections: enough to keep one uvicorn worker busy on 2 cores
MAX_SECONDS = 1200.0  # the full replay takes ~10 minutes on a busy 2-core machine
SEED = 0
# A view says least, a purchase most (engine.session.EVENT_WEIGHTS); a favourite is a click.


@dataclass(frozen=True)
class Arm:
    name: str
    suffix: str  # visitor id = f"{user}-{suffix}"
    customer: bool  # sends customer_id (when the model knows the user)
    session: bool  # receives the replayed events


ARMS = (
    Arm("session", "s", customer=False, session=True),
    Arm("no session", "anon", customer=False, session=False),
    Arm("customer+session", "cs", customer=True, session=True),
    Arm("customer", "nosession", customer=True, session=False),
)
LIFTS = (("session", "no session"), ("customer+session", "customer"))
SUBSETS = ("all", "first in session", "new to user")


@dataclass(frozen=True)
class Held:
    """The held-out events in time order, timestamps already shifted."""

    user: list[str]
    item: list[str]
    type: list[str]
    time: np.ndarray  # int64 epoch seconds


def split(table: pa.Table, shift: int) -> tuple[pa.Table, Held, int]:
    """Shift every timestamp by ``shift``; the training rows, the held-out events, the cut."""
    table = table.set_column(
        table.schema.get_field_index("timestamp"),
        "timestamp",
        pc.add(table["timestamp"], shift),
    )
    cut = int(pc.max(table["timestamp"]).as_py()) + 1 - HOLDOUT_DAYS * DAY
    held = table.filter(pc.greater_equal(table["timestamp"], cut))
    held = held.take(np.argsort(held["timestamp"].to_numpy(), kind="stable"))
    train = table.filter(pc.less(table["timestamp"], cut))
    events = Held(
        user=held["user_id"].to_pylist(),
        item=held["item_id"].to_pylist(),
        type=[TAOBAO_EVENT_TYPES[b] for b in held["behavior_type"].to_pylist()],
        time=held["timestamp"].to_numpy(),
    )
    return train.drop_columns(["behavior_type"]), events, cut


def train(rows: pa.Table, work: Path) -> Path:
    """The default model on the training rows, through the trainer's own reader.

    The fusion's validation and trending windows are as long as the hold-out: their 30-day
    defaults span the whole 7-day training log, and the weights then come out all zero.
    """
    from training.logs import read_purchase_log, resolve_format
    from training.params import FusionParams, ModelParams
    from training.pipeline import train_model

    path = work / "train.parquet"
    pq.write_table(rows, path)
    fmt = resolve_format("generic", category_col="category_id", time_format="unix")
    log = read_purchase_log(path, fmt)
    models = work / "models"
    params = ModelParams(fusion=FusionParams(validation_days=HOLDOUT_DAYS, trend_days=HOLDOUT_DAYS))
    train_model(log, params, models_dir=models, run_evaluation=False)
    return models


def streams(events: Held, max_events: int | None) -> dict[str, list[int]]:
    """Whole users' event rows in a seeded random user order, until ``max_events`` rows."""
    by_user: dict[str, list[int]] = {}
    for row, user in enumerate(events.user):
        by_user.setdefault(user, []).append(row)
    order = np.random.default_rng(SEED).permutation(sorted(by_user))
    picked: dict[str, list[int]] = {}
    budget = len(events.user) if max_events is None else max_events
    for user in order.tolist():
        if budget <= 0:
            break
        picked[user] = by_user[user][:budget]
        budget -= len(picked[user])
    return picked


async def replay(
    port: int,
    events: Held,
    users: dict[str, list[int]],
    known: frozenset[str],
    deadline: float,
    include_seen: bool = False,
) -> tuple[np.ndarray, int]:
    """Ranks (events x arms; 0: not in the top K, -1: not replayed) and the requests sent."""
    rule = {"include_seen": "true"} if include_seen else {}
    ranks = np.full((len(events.user), len(ARMS)), -1, dtype=np.int8)
    queue = deque(users.items())
    sent = 0

    async def send(connection: Connection, request: bytes) -> Any:
        nonlocal sent
        response = await connection.send(request)
        sent += 1
        if not 200 <= response.status < 300:
            raise RuntimeError(f"HTTP {response.status}: {response.body[:300]!r}")
        return response.json()

    async def worker() -> None:
        connection = await Connection.open(HOST, port)
        try:
            while queue:
                user, rows = queue.popleft()
                customer = {"customer_id": user} if user in known else {}
                for row in rows:
                    if time.monotonic() > deadline:
                        return
                    item = events.item[row]
                    for a, arm in enumerate(ARMS):
                        params = {"visitor_id": f"{user}-{arm.suffix}", "k": str(K), **rule}
                        reply = await send(
                            connection,
                            get("/v1/recommendations", params | (customer if arm.customer else {})),
                        )
                        listed = [entry["item_id"] for entry in reply["items"]]
                        ranks[row, a] = listed.index(item) + 1 if item in listed else 0
                    body = [
                        {"visitor_id": f"{user}-{arm.suffix}", "item_id": item,
                         "type": events.type[row], "timestamp": float(events.time[row])}
                        for arm in ARMS if arm.session
                    ]  # fmt: skip
                    await send(connection, post_json("/v1/events", body))
        finally:
            await connection.close()

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return ranks, sent


def subsets(events: Held, train_pairs: set[tuple[str, str]]) -> dict[str, np.ndarray]:
    """Boolean masks over the held-out events: see the module docstring."""
    first = np.zeros(len(events.user), dtype=bool)
    seen: set[tuple[str, str]] = set()
    for row, pair in enumerate(zip(events.user, events.item, strict=True)):
        first[row] = pair not in seen
        seen.add(pair)
    new = first & np.array(
        [pair not in train_pairs for pair in zip(events.user, events.item, strict=True)],
        dtype=bool,
    )
    return {"all": np.ones_like(first), "first in session": first, "new to user": new}


def metrics(
    ranks: np.ndarray, masks: dict[str, np.ndarray], known_item: np.ndarray
) -> list[dict[str, Any]]:
    """Hit rate and MRR at K per subset and arm, over the events replayed."""
    done = ranks[:, 0] >= 0
    rows = []
    for subset in SUBSETS:
        chosen = done & masks[subset]
        for a, arm in enumerate(ARMS):
            r = ranks[chosen, a].astype(np.float64)
            n = len(r)
            rows.append({
                "arm": arm.name, "subset": subset, "events": n,
                "events_known_item": int(known_item[chosen].sum()), "hits": int((r > 0).sum()),
                "hit_rate@10": float((r > 0).mean()) if n else None,
                "mrr@10": float(np.divide(1.0, r, out=np.zeros_like(r), where=r > 0).mean())
                if n else None,
            })  # fmt: skip
    return rows


def lifts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each session arm's hit rate and MRR as a multiple of (and gain over) its arm without
    the session: the ratio is None when the arm without the session has no hit."""
    by = {(row["arm"], row["subset"]): row for row in rows}
    out = []
    for subset in SUBSETS:
        for arm, baseline in LIFTS:
            with_, without = by[arm, subset], by[baseline, subset]
            lift: dict[str, Any] = {"arm": arm, "baseline": baseline, "subset": subset}
            for metric in ("hit_rate@10", "mrr@10"):
                a, b = with_[metric], without[metric]
                lift[metric] = a / b if a is not None and b else None
                lift[f"{metric}_gain"] = a - b if a is not None and b is not None else None
            out.append(lift)
    return out


def run(
    quick: bool,
    work: Path,
    *,
    max_events: int | None = None,
    max_seconds: float = MAX_SECONDS,
    redis: bool = False,
    log: Path = TAOBAO,
    include_seen: bool = False,
) -> dict[str, Any]:
    """Train on the log before the cut, replay the held-out events through the API, score them.

    ``max_events`` (default: all, or ``QUICK_EVENTS`` when ``quick``) and ``max_seconds``
    bound the replay; ``redis`` serves from a private redis-server instead of the embedded store.
    """
    clock = time.perf_counter()
    table = read_taobao(log)
    # The log's last event lands now: see "Time" in the module docstring.
    shift = int(time.time()) - int(pc.max(table["timestamp"]).as_py())
    rows, events, cut = split(table, shift)
    models = train(rows, work)
    train_seconds = time.perf_counter() - clock
    model = load_model(models)
    known = frozenset(u for u in set(events.user) if u in model.users)
    known_item = np.array([item in model.items for item in events.item], dtype=bool)
    train_pairs = set(zip(rows["user_id"].to_pylist(), rows["item_id"].to_pylist(), strict=True))
    users = streams(events, QUICK_EVENTS if quick and max_events is None else max_events)

    def serve(redis_url: str | None) -> tuple[np.ndarray, int, float]:
        port = free_port()
        with engine_server(models, port, work / "server.log", redis_url):
            start = time.perf_counter()
            deadline = time.monotonic() + max_seconds
            ranks, sent = loadgen.run(replay(port, events, users, known, deadline, include_seen))
            return ranks, sent, time.perf_counter() - start

    if redis:
        with private_redis(work) as url:
            ranks, sent, seconds = serve(url)
    else:
        ranks, sent, seconds = serve(None)

    masks = subsets(events, train_pairs)
    done = ranks[:, 0] >= 0
    replayed = np.flatnonzero(done).tolist()
    planned = sum(len(r) for r in users.values())
    arms = {arm.name: {"customer_id": arm.customer, "live_session": arm.session} for arm in ARMS}
    table_rows = metrics(ranks, masks, known_item)
    return {
        "log": str(log),
        "holdout_days": HOLDOUT_DAYS,
        "cut_original": int(cut - shift),  # epoch seconds in the log's own time
        "clock_shift_seconds": shift,
        "train_rows": rows.num_rows,
        "model": model.version,
        "items": len(model.items),
        "customers": len(model.users),
        "fusion_weights": model.manifest["weights"],
        "store": "redis" if redis else "memory",
        "include_seen": include_seen,
        "event_types": TAOBAO_EVENT_TYPES,
        "arms": arms,
        "k": K,
        "events_held_out": len(events.user),
        "events_planned": planned,
        "events_replayed": len(replayed),
        "users_replayed": len({events.user[row] for row in replayed}),
        "truncated_by_time": len(replayed) < planned,
        "events_known_customer": sum(events.user[row] in known for row in replayed),
        "events_unknown_item": int((~known_item[done]).sum()),
        "repeat_share": float(1 - masks["first in session"][done].mean()) if replayed else None,
        "requests": sent,
        "train_seconds": train_seconds,
        "replay_seconds": seconds,
        "requests_per_second": sent / seconds if seconds else None,
        "metrics": table_rows,
        "lift": lifts(table_rows),
    }


def _cell(value: float | None, spec: str, width: int) -> str:
    return f"{value:{spec}}" if value is not None else "-".rjust(width)


def print_table(result: dict[str, Any]) -> None:
    print(f"{result['events_replayed']} of {result['events_held_out']} held-out events "
          f"({result['users_replayed']} users, {result['events_known_customer']} events by known "
          f"customers, {result['events_unknown_item']} on items the model does not know) in "
          f"{result['replay_seconds']:.1f} s, {result['requests']} requests "
          f"({result['store']} store); {100 * (result['repeat_share'] or 0):.1f} % of events "
          f"repeat an item already seen in the session")  # fmt: skip
    print("lift: against the same arm without the live session (x ratio, + gain in hit@10)")
    lift = {(row["arm"], row["subset"]): row for row in result["lift"]}
    print(f"{'subset':<17} {'arm':<17} {'events':>6} {'known':>6} {'hit@10':>7} {'MRR@10':>7} "
          f"{'x hit':>6} {'x MRR':>6} {'+ hit':>7}")  # fmt: skip
    for row in result["metrics"]:
        up = lift.get((row["arm"], row["subset"]), {})
        print(f"{row['subset']:<17} {row['arm']:<17} {row['events']:>6} "
              f"{row['events_known_item']:>6} {_cell(row['hit_rate@10'], '7.4f', 7)} "
              f"{_cell(row['mrr@10'], '7.4f', 7)} "
              + (f"{_cell(up['hit_rate@10'], '6.2f', 6)} {_cell(up['mrr@10'], '6.2f', 6)} "
                 f"{_cell(up['hit_rate@10_gain'], '+7.4f', 7)}" if up else ""))  # fmt: skip


def main() -> None:
    stop_servers_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_EVENTS} events only")
    parser.add_argument("--max-events", type=int, help="at most this many events (default all)")
    parser.add_argument(
        "--max-seconds", type=float, default=MAX_SECONDS, help="time limit of the replay"
    )
    parser.add_argument("--redis", action="store_true", help="serve from a private redis-server")
    parser.add_argument(
        "--include-seen", action="store_true", help="keep items seen this session in the lists"
    )
    parser.add_argument("--log", type=Path, default=TAOBAO, help="the Taobao UserBehavior file")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.max_events is not None and args.max_events < 1:
        parser.error("--max-events must be at least 1")
    if args.redis and shutil.which("redis-server") is None:
        parser.error("--redis needs redis-server on PATH")
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        result = run(
            args.quick,
            Path(tmp),
            max_events=args.max_events,
            max_seconds=args.max_seconds,
            redis=args.redis,
            log=args.log,
            include_seen=args.include_seen,
        )
    print_table(result)
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
