"""Memory: Redis bytes per active visitor, and resident memory per API worker.

    python -m benchmarks.memory [--quick] [--models DIR] [--json OUT]

* ``redis``: the shared Taobao UserBehavior head (real click streams with purchases) is replayed
  in time order through ``RedisProfileStore.record`` (batches of 1000, one call at a time, so
  every visitor's events keep their order) into a private redis-server on a free 127.0.0.1 port.
  Event ids are what the API assigns when a storefront sends none (``uuid4().hex``); behaviours
  map pv -> view, fav -> click, cart -> add_to_cart, buy -> purchase. Then ``MEMORY USAGE ...
  SAMPLES 0`` (exact) and ``OBJECT ENCODING`` of every visitor's keys: bytes per visitor (mean,
  p50, p99, max, total; target <= 1 KiB), per key kind, and the recent entries' length by field,
  which says where the bytes go. Global keys (idempotency markers, stream, trending) are
  reported apart: limits bound them, not visitors. ``--quick`` replays the first 200 users only.
* ``workers``: ``personalize serve --workers 2 --redis-url ...`` on the model (``--models``, or
  one trained on the shared Online Retail log), and, unless ``--quick``, with 1, 2 and 4 workers
  on the same model with its catalog tiled 28 times (~100k items), where the arrays are large
  enough to see. After a few hundred recommendation requests (known customers, so every worker
  scores with the factors), each worker's ``/proc/<pid>/smaps_rollup`` (Rss, Pss, shared and
  private pages) and the ``item_factors.npy`` / ``user_factors.npy`` mappings in
  ``/proc/<pid>/smaps``: Pss about Rss / 2 with two workers means the mapped pages are shared,
  not copied. Workers are the processes that map the factors: the ``serve`` process itself with
  one worker, else its descendants (:func:`benchmarks.servers.descendants`). The scaling summary
  says what each worker past the first costs: its private pages (anonymous memory: the
  interpreter, the libraries' heaps and what the model builds per process, such as the id -> row
  maps and the item rows) against the model's size on disk, which the workers share.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import redis

from benchmarks import loadgen
from benchmarks.fixtures import (
    TAOBAO,
    TAOBAO_EVENT_TYPES,
    read_taobao,
    retail_model,
    tiled_catalog,
    write_json,
)
from benchmarks.servers import (
    HOST,
    descendants,
    engine_server,
    free_port,
    redis_server,
    stop_servers_on_sigterm,
)
from engine.model import load_model
from engine.profiles import Event, RedisProfileStore
from engine.profiles.keys import Keys

QUICK_USERS = 200
REPLAY_BATCH = 1000
TARGET_BYTES = 1024
PIPELINE = 1000  # Redis commands per round trip when inspecting keys
SCALING_WORKERS = (1, 2, 4)  # worker counts measured on the ~100k-item catalog

# --- Redis bytes per visitor ----------------------------------------------------------------


def taobao_events(quick: bool) -> list[Event]:
    """The Taobao head as events in time order (ties keep file order)."""
    table = read_taobao()
    if quick:
        first = pc.unique(table["user_id"]).slice(0, QUICK_USERS)
        table = table.filter(pc.is_in(table["user_id"], value_set=first))
    table = table.take(pc.sort_indices(table, [("timestamp", "ascending")]))
    return [
        Event(event_id=uuid.uuid4().hex, visitor_id=user, item_id=item,
              type=TAOBAO_EVENT_TYPES[kind], timestamp=float(ts))
        for user, item, kind, ts in zip(
            table["user_id"].to_pylist(), table["item_id"].to_pylist(),
            table["behavior_type"].to_pylist(), table["timestamp"].to_pylist(), strict=True)
    ]  # fmt: skip


async def replay(url: str, events: list[Event]) -> float:
    """Record every event in order; the wall time in seconds."""
    store = RedisProfileStore.from_url(url, socket_timeout=10.0)
    start = time.perf_counter()
    try:
        for i in range(0, len(events), REPLAY_BATCH):
            await store.record(events[i : i + REPLAY_BATCH])
    finally:
        await store.close()
    return time.perf_counter() - start


def pipelined(client: redis.Redis, commands: list[tuple[Any, ...]]) -> list[Any]:
    """Run commands PIPELINE at a time; replies in order."""
    replies: list[Any] = []
    for i in range(0, len(commands), PIPELINE):
        pipe = client.pipeline(transaction=False)
        for command in commands[i : i + PIPELINE]:
            pipe.execute_command(*command)
        replies += pipe.execute()
    return replies


def _stats(values: list[int]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(array.mean()),
        "p50": float(np.percentile(array, 50)),
        "p99": float(np.percentile(array, 99)),
        "max": float(array.max()),
        "total": float(array.sum()),
    }


def visitor_memory(client: redis.Redis, visitors: list[str]) -> dict[str, Any]:
    """Exact bytes and encodings of every visitor's keys, and the recent entries' make-up."""
    keys = Keys()
    names = ("recent", "profile", "bought")
    owned = [key for visitor in visitors for key in keys.visitor_keys(visitor)]
    sizes = pipelined(client, [("MEMORY", "USAGE", key, "SAMPLES", "0") for key in owned])
    encodings = pipelined(client, [("OBJECT", "ENCODING", key) for key in owned])
    per_visitor = [sum(s or 0 for s in sizes[i : i + 3]) for i in range(0, len(owned), 3)]
    kinds: dict[str, Any] = {}
    for k, name in enumerate(names):
        present = [s for s in sizes[k::3] if s is not None]
        kinds[name] = {
            "keys": len(present),
            "mean_bytes": float(np.mean(present)) if present else 0.0,
            "encodings": dict(Counter(e.decode() for e in encodings[k::3] if e is not None)),
        }
    entries = [
        entry.decode()
        for reply in pipelined(client, [("LRANGE", keys.recent(v), 0, -1) for v in visitors])
        for entry in reply
    ]
    # "<type code><item_id> <seconds since t0>" (record_visitor.lua)
    fields = [(e[:1], *e[1:].split(" ")) for e in entries]
    lengths = {
        name: float(np.mean([len(f[i]) for f in fields]))
        for i, name in enumerate(("type", "item_id", "seconds"))
    }
    return {
        "visitors": len(visitors),
        "bytes_per_visitor": _stats(per_visitor),
        "over_target": int(sum(b > TARGET_BYTES for b in per_visitor)),
        "keys": kinds,
        "recent_entries": len(entries),
        "recent_entry_mean_chars": float(np.mean([len(e) for e in entries])),
        "recent_entry_mean_chars_by_field": lengths,
        "list_max_listpack_size": client.config_get("list-max-listpack-size"),
    }


def global_memory(client: redis.Redis) -> dict[str, Any]:
    """Bytes of every global key by kind: bounded by limits and TTLs, not by visitors."""
    keys = Keys()
    found = [k.decode() for k in client.scan_iter(match=keys.global_match(), count=1000)]
    sizes = pipelined(client, [("MEMORY", "USAGE", key, "SAMPLES", "0") for key in found])
    kinds: dict[str, dict[str, float]] = {}
    for key, size in zip(found, sizes, strict=True):
        kind = "stream" if key in keys.streams else key.removeprefix(keys.prefix + "{g}:")
        kind = re.sub(r":.*", "", kind)  # seen:<id> -> seen, trending:<bucket> -> trending
        entry = kinds.setdefault(kind, {"keys": 0, "bytes": 0.0})
        entry["keys"] += 1
        entry["bytes"] += size or 0
    return kinds


def redis_part(quick: bool, url: str, client: redis.Redis) -> dict[str, Any]:
    events = taobao_events(quick)
    used_before = int(client.info("memory")["used_memory"])
    seconds = asyncio.run(replay(url, events))
    visitors = sorted({e.visitor_id for e in events})
    result = {
        "log": str(TAOBAO),
        "events": len(events),
        "replay_seconds": seconds,
        "used_memory_delta": int(client.info("memory")["used_memory"]) - used_before,
        "per_visitor": visitor_memory(client, visitors),
        "global": global_memory(client),
    }
    client.flushall()
    return result


# --- resident memory per worker -------------------------------------------------------------

FACTOR_FILES = ("item_factors.npy", "user_factors.npy")


def _kb(lines: list[str]) -> dict[str, int]:
    """``Key:   N kB`` lines of smaps as bytes."""
    out: dict[str, int] = {}
    for line in lines:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB":
            out[name] = int(parts[0]) * 1024
    return out


def rollup(pid: int) -> dict[str, int]:
    fields = ("Rss", "Pss", "Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty",
              "Anonymous")  # fmt: skip
    values = _kb(Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines())
    return {name: values.get(name, 0) for name in fields}


def factor_mappings(pid: int) -> dict[str, dict[str, int]]:
    """Rss / Pss / shared / private bytes of the factor files' mappings, summed per file."""
    result: dict[str, dict[str, int]] = {}
    current: str | None = None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if head and re.fullmatch(r"[0-9a-f]+-[0-9a-f]+", head[0]):
            name = Path(head[-1]).name if len(head) >= 6 else ""
            current = name if name in FACTOR_FILES else None
        elif current is not None:
            for key, value in _kb([line]).items():
                if key in ("Size", "Rss", "Pss", "Shared_Clean", "Private_Clean", "Private_Dirty"):
                    entry = result.setdefault(current, {})
                    entry[key] = entry.get(key, 0) + value
    return result


def serve_master(port: int) -> int:
    """The ``personalize serve`` process listening on ``port`` (our own child, by cmdline)."""
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:  # not a process, or gone
            continue
        flag = argv.index(b"--port") if b"serve" in argv and b"--port" in argv else None
        if flag is not None and argv[flag + 1] == str(port).encode():
            return int(proc.name)
    raise RuntimeError(f"no personalize serve process for port {port}")


def workers_of(port: int, workers: int) -> list[int]:
    """The processes that map the factor files: the master itself when it is the one worker,
    else its descendants (the uvicorn workers)."""
    master = serve_master(port)
    found = []
    for pid in [master] if workers == 1 else descendants(master):
        try:
            if FACTOR_FILES[0] in Path(f"/proc/{pid}/maps").read_text():
                found.append(pid)
        except OSError:
            continue
    return sorted(found)


def customers_and_shapes(models: Path, n: int) -> tuple[list[str], dict[str, list[int]]]:
    """Known customers and the factor shapes, read in a function so that this process's own
    mappings of the files close on return (they would add a third sharer to every Pss)."""
    model = load_model(models, verify=False)
    arrays = model.artifact.arrays
    shapes = {f: list(arrays[f.removesuffix(".npy")].shape) for f in FACTOR_FILES}
    ids = model.users.ids
    return [str(c) for c in ids[:: max(len(ids) // n, 1)]], shapes  # spread over the file


def worker_memory(models: Path, url: str, work: Path, name: str, workers: int = 2
                  ) -> dict[str, Any]:  # fmt: skip
    customers, shapes = customers_and_shapes(models, 200)
    port = free_port()

    def request(i: int) -> loadgen.Request:
        customer = customers[i % len(customers)]
        return loadgen.get("/v1/recommendations", {"visitor_id": f"m-{i}", "customer_id": customer})

    with engine_server(models, port, work / f"{name}.log", url, workers=workers):
        pids: list[int] = []
        for _round in range(20):  # every worker loads the model and serves: bounded wait
            stats = loadgen.run(loadgen.load(HOST, port, request, 200, 8, time.monotonic() + 30))
            pids = workers_of(port, workers)
            served = all(factor_mappings(p).get(FACTOR_FILES[1], {}).get("Rss") for p in pids)
            if len(pids) == workers and served and stats["errors"] == 0:
                break
            time.sleep(0.5)
        if len(pids) != workers:
            raise RuntimeError(f"found {len(pids)} workers mapping the factors, not {workers}")
        per_worker = [{"pid": pid, "smaps_rollup": rollup(pid), "factors": factor_mappings(pid)}
                      for pid in pids]  # fmt: skip
        ours = FACTOR_FILES[0] in Path("/proc/self/maps").read_text()
    version = models / "current"
    return {
        "models": str(models),
        "model_bytes": sum(f.stat().st_size for f in version.iterdir()),
        "factor_bytes": sum((version / f).stat().st_size for f in FACTOR_FILES),
        "factor_shapes": shapes,
        "workers": per_worker,
        "bench_process_maps_factors": ours,
    }


def private(rollup_: dict[str, int]) -> int:
    """Pages no other process maps: what this process alone adds to the machine's memory."""
    return rollup_["Private_Clean"] + rollup_["Private_Dirty"]


def worker_scaling(runs: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Per worker count: the workers' summed Pss (shared pages split between their sharers) and
    what each worker past the first added to it, against the model's size on disk."""
    first = runs[min(runs)]
    total_one = sum(w["smaps_rollup"]["Pss"] for w in first["workers"])
    rows = []
    for n, entry in sorted(runs.items()):
        rolls = [w["smaps_rollup"] for w in entry["workers"]]
        total = sum(r["Pss"] for r in rolls)
        rows.append({
            "workers": n,
            "pss_total": total,
            "pss_per_extra_worker": (total - total_one) / (n - 1) if n > 1 else None,
            "rss_mean": float(np.mean([r["Rss"] for r in rolls])),
            "private_mean": float(np.mean([private(r) for r in rolls])),
        })  # fmt: skip
    return {
        "model_bytes": first["model_bytes"],
        "factor_bytes": first["factor_bytes"],
        "rows": rows,
    }


# --- the run --------------------------------------------------------------------------------


def run(
    quick: bool, work: Path, models: Path | None = None, workers: bool = True
) -> dict[str, Any]:
    """Replay real sessions into a private Redis, then measure two engine workers."""
    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError("redis-server not found on PATH: install redis-server (Debian)")
    if models is None and workers:
        models = retail_model(work / "models")
    port = free_port()
    url = f"redis://{HOST}:{port}/0"
    (work / "redis").mkdir()
    with redis_server(server, port, work / "redis"), redis.Redis(host=HOST, port=port) as client:
        result: dict[str, Any] = {"quick": quick, "redis": redis_part(quick, url, client)}
        result["workers"] = {}
        if not workers or models is None:
            return result
        result["workers"]["model"] = worker_memory(models, url, work, "model")
        if not quick:
            tiled = tiled_catalog(models, work / "tiled", copies=28)
            runs = {n: worker_memory(tiled, url, work, f"tiled-{n}", workers=n)
                    for n in SCALING_WORKERS}  # fmt: skip
            for n, entry in runs.items():
                result["workers"][f"tiled_catalog, {n} worker{'s' if n > 1 else ''}"] = entry
            result["worker_scaling"] = worker_scaling(runs)
    return result


def print_report(result: dict[str, Any]) -> None:
    r = result["redis"]
    v = r["per_visitor"]
    b = v["bytes_per_visitor"]
    print(f"redis: {r['events']} events replayed in {r['replay_seconds']:.1f} s, "
          f"{v['visitors']} visitors")  # fmt: skip
    print(f"  bytes per visitor: mean {b['mean']:.0f}  p50 {b['p50']:.0f}  p99 {b['p99']:.0f}  "
          f"max {b['max']:.0f}  total {b['total']:.0f}  "
          f"(> {TARGET_BYTES} B: {v['over_target']} of {v['visitors']})")  # fmt: skip
    for name, kind in v["keys"].items():
        print(f"  {name:<8} {kind['keys']:>6} keys  mean {kind['mean_bytes']:7.0f} B  "
              f"{kind['encodings']}")  # fmt: skip
    fields = ", ".join(f"{k} {n:.1f}" for k, n in v["recent_entry_mean_chars_by_field"].items())
    print(f"  recent entry: {v['recent_entry_mean_chars']:.1f} chars ({fields})")
    for name, kind in r["global"].items():
        print(f"  global {name:<10} {kind['keys']:>6} keys  {kind['bytes']:>10.0f} B")
    for name, entry in result["workers"].items():
        print(f"workers ({name}: factors {entry['factor_shapes']}):")
        for w in entry["workers"]:
            roll = {k: f"{v / 2**20:.1f}" for k, v in w["smaps_rollup"].items()}
            print(f"  pid {w['pid']}: MiB {roll}")
            for file, m in w["factors"].items():
                print(f"    {file}: Size {m.get('Size', 0) / 2**20:.2f} MiB  "
                      f"Rss {m.get('Rss', 0) / 2**20:.2f}  Pss {m.get('Pss', 0) / 2**20:.2f}  "
                      f"Shared_Clean {m.get('Shared_Clean', 0) / 2**20:.2f}")  # fmt: skip
    scaling = result.get("worker_scaling")
    if scaling:
        print(f"workers on the ~100k-item catalog: model {scaling['model_bytes'] / 2**20:.1f} "
              f"MiB on disk, factors {scaling['factor_bytes'] / 2**20:.1f} MiB")  # fmt: skip
        for row in scaling["rows"]:
            extra = row["pss_per_extra_worker"]
            print(f"  {row['workers']} worker(s): Pss total {row['pss_total'] / 2**20:7.1f} MiB  "
                  f"per extra worker {'-' if extra is None else f'{extra / 2**20:.1f}':>6} MiB  "
                  f"Rss mean {row['rss_mean'] / 2**20:.1f}  "
                  f"private mean {row['private_mean'] / 2**20:.1f}")  # fmt: skip


def main() -> None:
    stop_servers_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 users; no tiled catalog")
    parser.add_argument("--models", type=Path, help="a models directory (default: train one)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--redis-only", action="store_true", help="skip the workers' memory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        models = args.models.resolve() if args.models else None
        result = run(args.quick, Path(tmp), models, workers=not args.redis_only)
    print_report(result)
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
