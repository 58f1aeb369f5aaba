"""Compute per recommendation request, without HTTP or the store, on one thread.

    python -m benchmarks.recommend_compute [--models DIR] [--requests N] [--json OUT]

Trains the default model on the shared Online Retail log when ``--models`` is not given. Each
case is timed per call (median and 99th percentile over ``--requests`` calls) with BLAS and
OpenMP limited to one thread, as in a serving worker:

* ``anonymous, 5 clicks``: fold-in of a 5-click session + scoring + rules + top-10;
* ``customer, 5 clicks``: a known customer with the median history: fused score + the
  session term + rules; ``customer, 20 clicks``; ``customer, diversity cap`` (max 2 per
  category); ``heaviest customer``: the customer with the longest history;
* floors in the same run: one ``item_factors @ vector`` product and one top-10 selection over
  the catalog, the two operations no ranking can skip;
* ``--large``: a generated shop of 100k items (trained here, about 40 s), ranked exactly and
  from the candidate lists (``engine.candidates``): both timings over 300 visitors of each kind
  taking turns, and the share of the exact top 10 that the candidates' top 10 holds (anonymous
  5 clicks, customers with and without);
  then the same on the Taobao click log taken as purchases (55k items, real and sparse).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from threadpoolctl import threadpool_limits

from benchmarks.fixtures import (
    large_shop_spec,
    read_taobao,
    retail_model,
    trained_shop,
    write_json,
)
from engine.model import Model, load_model
from engine.profiles import Profile, RecentEvent
from engine.recommender import Query, Recommender
from training.candidate_lists import candidate_lists
from training.logs import PRESETS, read_purchase_log
from training.params import CandidateParams, FusionParams, ModelParams
from training.pipeline import train_model
from training.synthetic import ShopSpec, generate_shop


def timed(fn: Callable[[], object], n: int) -> dict[str, float]:
    for _ in range(min(50, n)):  # warm caches and page in the memory-mapped arrays
        fn()
    samples = np.empty(n)
    for i in range(n):
        start = time.perf_counter()
        fn()
        samples[i] = time.perf_counter() - start
    return {
        "p50_ms": float(np.percentile(samples, 50) * 1e3),
        "p99_ms": float(np.percentile(samples, 99) * 1e3),
    }


def _numpy_top10(scores: np.ndarray) -> np.ndarray:
    """The plain numpy selection a request could not do with less: partition, sort ten."""
    part = np.argpartition(-scores, 9)[:10]
    return part[np.argsort(-scores[part], kind="stable")]


def session(model: Model, clicks: int, rng: np.random.Generator, now: float) -> Profile:
    popular = np.argsort(-model.scorer.popularity)[:500]
    items = model.items.ids[rng.choice(popular, clicks, replace=False)]
    recent = tuple(RecentEvent(str(i), "click", now - 60 * n) for n, i in enumerate(items))
    return Profile(visitor_id="bench", recent=recent)


def run(model: Model, requests: int) -> dict[str, Any]:
    # Objects left by whatever ran before in this process (the suite trains and evaluates
    # first) would make every garbage collection during the timing slower than a serving
    # worker's: freeze them out of the collector's view.
    gc.collect()
    gc.freeze()
    rec = Recommender(model)
    rng = np.random.default_rng(0)
    now = float(model.as_of)
    sizes = np.diff(model.scorer.history.counts.indptr)
    typical = str(model.users.ids[int(np.argsort(sizes)[len(sizes) // 2])])  # median history
    heaviest = str(model.users.ids[int(np.argmax(sizes))])
    five, twenty = session(model, 5, rng, now), session(model, 20, rng, now)
    vector = np.ones(model.scorer.factors.item_factors.shape[1], dtype=np.float32)
    scores = model.scorer.factors.item_factors @ vector
    cases = {
        "anonymous, 5 clicks": lambda: rec.recommend(Query(k=10), five, now=now),
        "customer, 5 clicks": lambda: rec.recommend(
            Query(k=10, customer_id=typical), five, now=now
        ),
        "customer, 20 clicks": lambda: rec.recommend(
            Query(k=10, customer_id=typical), twenty, now=now
        ),
        "customer, diversity cap": lambda: rec.recommend(
            Query(k=10, customer_id=typical, max_per_category=2), five, now=now
        ),
        "heaviest customer, 5 clicks": lambda: rec.recommend(
            Query(k=10, customer_id=heaviest), five, now=now
        ),
        "floor: factors @ vector": lambda: model.scorer.factors.item_factors @ vector,
        "floor: top-10 selection": lambda: _numpy_top10(scores),
    }
    with threadpool_limits(1):
        results = {name: timed(fn, requests) for name, fn in cases.items()}
    return {"model": model.version, "items": len(model.items), "requests": requests,
            "cases": results}  # fmt: skip


def _timed_in_turn(
    rec: Recommender, visitors: list[tuple[Query, Profile]], now: float, n: int
) -> dict[str, float]:
    """``n`` requests, the visitors taking turns: how many candidates a probe collects varies
    with the visitor's vectors, so one visitor's timing would be one draw of it."""
    turn = itertools.count()

    def request() -> None:
        query, profile = visitors[next(turn) % len(visitors)]
        rec.recommend(query, profile, now=now)

    return timed(request, n)


# How deep the exact ranking is read for the items tied with its 10th (top10_overlap_ties).
TIE_DEPTH = 50

# Candidate lists whatever the catalog's size.
LISTED = ModelParams(candidates=CandidateParams(from_items=1))


def generated_shop(spec: ShopSpec) -> Callable[[Path], Path]:
    """Train a generated shop (with candidate lists) into a folder: its models directory."""
    return lambda folder: trained_shop(folder, generate_shop(spec), LISTED)


def taobao_shop(folder: Path) -> Path:
    """The Taobao click log taken as a purchase log (each event a purchase), trained with
    candidate lists: a real catalog of 55k items, so sparse that most items' factors rest on
    one or two events. Its nine days call for a 2-day validation and trend window."""
    params = LISTED.model_copy(update={"fusion": FusionParams(validation_days=2, trend_days=2)})
    clicks = read_taobao()
    log = pa.table({
        "user_id": clicks["user_id"],
        "item_id": clicks["item_id"],
        "timestamp": pc.cast(pc.multiply(clicks["timestamp"], 1000), pa.timestamp("ms")),
        "category": clicks["category_id"],
    })  # fmt: skip
    pq.write_table(log, folder / "log.parquet")
    train_model(read_purchase_log(folder / "log.parquet", PRESETS["generic"]), params,
                models_dir=folder / "models", run_evaluation=False)  # fmt: skip
    return folder / "models"


def candidates(train: Callable[[Path], Path], requests: int, visitors: int = 300) -> dict[str, Any]:
    """A catalog (what ``train`` writes into a folder) ranked exactly and among the candidate
    lists' items: p50/p99 of each, and the overlap of the two top-10 lists over ``visitors``
    visitors per case."""
    gc.collect()
    gc.freeze()
    params = LISTED
    with tempfile.TemporaryDirectory(prefix="bench-large-") as folder:
        model = load_model(train(Path(folder)))
        start = time.perf_counter()  # what the trainer spent on the lists, again
        candidate_lists(model.scorer.factors.item_factors, params.candidates, params.seed)
        build_s = time.perf_counter() - start
        with threadpool_limits(1):
            exact = Recommender(model, candidates=False)
            indexed = Recommender(model)
            rng = np.random.default_rng(1)
            now = float(model.as_of)
            customers = model.users.ids[rng.choice(len(model.users), visitors)]
            sessions = [session(model, 5, rng, now) for _ in range(visitors)]
            empty = Profile(visitor_id="bench")
            kinds: dict[str, Callable[[int], tuple[Query, Profile]]] = {
                "anonymous, 5 clicks": lambda i: (Query(k=10), sessions[i]),
                "customer, no session": lambda i: (Query(k=10, customer_id=customers[i]), empty),
                "customer, 5 clicks": lambda i: (
                    Query(k=10, customer_id=customers[i]),
                    sessions[i],
                ),
            }
            cases: dict[str, Any] = {}
            for kind, visitor in kinds.items():
                pairs = [visitor(i) for i in range(visitors)]
                overlap, tied = [], []
                for query, profile in pairs:
                    deeper = exact.recommend(replace(query, k=TIE_DEPTH), profile, now=now).items
                    want = deeper[: query.k]
                    got = {r.item_id for r in indexed.recommend(query, profile, now=now).items}
                    overlap.append(len({r.item_id for r in want} & got) / max(len(want), 1))
                    # Items scoring as high as the exact page's last one are as right as it is:
                    # which of tied items a page shows is their numbering's accident.
                    equal = {r.item_id for r in deeper if want and r.score >= want[-1].score}
                    tied.append(min(len(equal & got), len(want)) / max(len(want), 1))
                cases[kind] = {
                    "exact": _timed_in_turn(exact, pairs, now, requests),
                    "candidates": _timed_in_turn(indexed, pairs, now, requests),
                    "top10_overlap": float(np.mean(overlap)),
                    "top10_overlap_ties": float(np.mean(tied)),
                }
    index = indexed.candidate_index
    assert index is not None
    return {"items": len(model.items), "lists": index.lists, "probed": index.probe,
            "index_build_s": build_s, "visitors": visitors, "cases": cases}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, help="a models directory (default: train one)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--large", action="store_true", help="the 100k-item candidate index")
    args = parser.parse_args()
    if args.large:
        for train in (generated_shop(large_shop_spec()), taobao_shop):
            large = candidates(train, args.requests)
            print(f"{large['items']:,} items, {large['lists']} lists, {large['probed']} probed")
            for name, case in large["cases"].items():
                print(f"{name:<24} exact p50 {case['exact']['p50_ms']:.3f} ms, candidates p50 "
                      f"{case['candidates']['p50_ms']:.3f} ms, top-10 overlap "
                      f"{case['top10_overlap']:.3f} ({case['top10_overlap_ties']:.3f} "
                      "counting ties)")  # fmt: skip
        return
    if args.models is None:
        args.models = retail_model(Path(tempfile.mkdtemp(prefix="bench-models-")))
    result = run(load_model(args.models), args.requests)
    print(f"{result['items']} items, {result['requests']} calls per case, one thread")
    for name, stats in result["cases"].items():
        print(f"{name:<28} p50 {stats['p50_ms']:7.3f} ms   p99 {stats['p99_ms']:7.3f} ms")
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
