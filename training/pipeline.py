"""The trainer's main job: a cleaned purchase log in, an evaluated, versioned artifact out."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from engine.artifacts import csr_arrays, publish, write_artifact
from engine.matrix import SECONDS_PER_DAY, Interactions
from engine.model import ALGORITHM
from engine.vocab import Vocabulary
from training.baskets import BasketPairs, basket_pairs
from training.candidate_lists import candidate_lists, ordered_by_lists
from training.crm.segments import Segments, compute_segments
from training.dataset import LineCodes, basket_codes, interactions_from_table, item_metadata
from training.device import Device, resolve_device
from training.evaluate import MAX_TEST_CUSTOMERS, Evaluation, evaluate
from training.events.feedback import EventInput
from training.fit import Signals
from training.fusion import fit_repeat_aware
from training.logs import PurchaseLog
from training.logs.report import LoadReport
from training.params import ModelParams


@dataclass(frozen=True)
class TrainResult:
    path: Path
    version: str
    published: bool
    evaluation: Evaluation | None
    seconds: dict[str, float]


def train_model(
    log: PurchaseLog,
    params: ModelParams,
    *,
    models_dir: Path,
    holdout_days: int = 30,
    k: int = 10,
    test_customers: int | None = MAX_TEST_CUSTOMERS,
    run_evaluation: bool = True,
    publish_model: bool = True,
    threads: int = 0,
    progress: bool = False,
    device: Device = "auto",
    say: Callable[[str], None] = lambda _: None,
    event_input: EventInput | None = None,
    evaluation: Evaluation | None = None,
) -> TrainResult:
    """Evaluate on a hold-out, refit on the whole log, write the artifact and publish it.

    ``event_input``: exported events; their purchases join the log, the rest is feedback.
    ``evaluation``: one the caller already ran (a retrain's comparison), recorded as is.
    ``test_customers``: hold-out customers the evaluation scores at most (None: all).
    ``device`` is where the factor model is fitted (:mod:`training.device`); the manifest records
    the one used.
    """
    resolved = resolve_device(device)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    if event_input is not None:
        log = event_input.with_log(log)
    events = interactions_from_table(
        log.table, None if event_input is None else event_input.item_ids(), log.ids
    )
    feedback = None if event_input is None else event_input.encode(events.users, events.items)
    if run_evaluation and evaluation is None:
        say(f"evaluating on the last {holdout_days} days held out ...")
        evaluation = evaluate(
            events,
            params,
            holdout_days=holdout_days,
            k=k,
            threads=threads,
            progress=progress,
            feedback=feedback,
            device=resolved,
            test_customers=test_customers,
        )
        seconds["evaluate"] = time.perf_counter() - clock
    clock = time.perf_counter()
    say("fitting on the whole log ...")
    as_of = int(events.time.max()) + 1
    # The hold-out's fit is of the events before the validation window when the two periods
    # are as long (the default): the refit fits its weights on it instead of fitting again.
    earlier_fit = None
    if evaluation is not None and evaluation.signals is not None:
        earlier_fit = evaluation.signals
        evaluation = replace(evaluation, signals=None)  # not kept past the fit
        if earlier_fit.as_of != as_of - params.fusion.validation_days * SECONDS_PER_DAY:
            earlier_fit = None
    # What the log gives besides the fit (segments, bought-together pairs, item details) is
    # computed beside it, on the cores its ALS leaves idle: at 10M lines these 7.4 s then added
    # 1.5 s to the fit and the write (the train step 40.9 -> 34.6 s, one run).
    with ThreadPoolExecutor(1, thread_name_prefix="log-tables") as pool:
        tables = pool.submit(_log_tables, log, events, params, as_of)
        signals, weights = fit_repeat_aware(
            events,
            params,
            as_of=as_of,
            threads=threads,
            progress=progress,
            feedback=feedback,
            device=resolved,
            earlier_fit=earlier_fit,
        )
        del earlier_fit
        seconds["fit"] = time.perf_counter() - clock
        clock = time.perf_counter()
        segments, together, meta = tables.result()
    manifest = model_manifest(
        log.report, params, weights, as_of, evaluation, holdout_days, k, seconds
    )
    manifest.update(
        confidence_scale=signals.confidence_scale,
        trainer={"name": "implicit", "device": resolved},
        segments=segments.to_manifest(),
    )
    if event_input is not None:
        manifest["events"] = event_input.report
    arrays = model_arrays(events.users, events.items, signals, meta, together, segments, params)
    path = write_artifact(models_dir, arrays, manifest)
    version = path.name
    if publish_model:
        publish(models_dir, version)
    seconds["write"] = time.perf_counter() - clock
    say(f"wrote {path}" + (" and published it as current" if publish_model else ""))
    return TrainResult(path, version, publish_model, evaluation, seconds)


def _log_tables(
    log: PurchaseLog, events: Interactions, params: ModelParams, as_of: int
) -> tuple[Segments, BasketPairs, dict[str, np.ndarray]]:
    """The customers' segments, the bought-together pairs and the items' details."""
    codes = LineCodes(
        events.users, events.user, basket_codes(log.table["basket"], log.ids.get("basket"))
    )
    segments = compute_segments(log.table, as_of=as_of, codes=codes)
    together = basket_pairs(
        codes.basket,
        events.item,
        len(events.items),
        min_support=params.baskets.min_support,
        per_item=params.baskets.per_item,
    )
    return segments, together, item_metadata(log.table, events.item, len(events.items))


def model_arrays(
    users: Vocabulary,
    items: Vocabulary,
    signals: Signals,
    meta: dict[str, np.ndarray],
    together: BasketPairs,
    segments: Segments,
    params: ModelParams,
) -> dict[str, np.ndarray]:
    """The artifact's arrays (what ``engine.model`` reads), whichever trainer fitted them; a
    large catalog's with its candidate lists, its items numbered list by list."""
    item_factors = signals.factors.item_factors
    arrays = {
        **_user_segments(users, segments),
        "item_baskets": together.item_baskets,
        **csr_arrays("together", together.pairs),
        "users": users.ids,
        "items": items.ids,
        "user_factors": signals.factors.user_factors,
        "item_factors": item_factors,
        "popularity": signals.popularity,
        "trending": signals.trending,
        "item_description": meta["description"],
        "item_category": meta["category"],
        "item_price": meta["price"],
        **csr_arrays("history_counts", signals.history.counts),
        **csr_arrays("history_last_time", signals.history.last_time),
        **csr_arrays("history_first_time", signals.history.first_time),
        **csr_arrays("similarity", signals.knn.similarity),
    }
    lists = candidate_lists(item_factors, params.candidates, params.seed)
    return ordered_by_lists(arrays, lists) if lists else arrays


def _user_segments(users: Vocabulary, segments: Segments) -> dict[str, np.ndarray]:
    """Segment and R, F, M scores in the model's user order (every user bought before as_of)."""
    if np.array_equal(segments.customers, users.ids):
        # Both number customers by first purchase in the same log: no lookup (0.17 s at 10M).
        return {"user_segment": segments.segment, "user_rfm": segments.scores}
    rows = users.indices(segments.customers)
    if len(rows) != len(users) or np.any(rows < 0):
        raise ValueError("customer segments do not cover the model's customers")
    segment = np.empty(len(rows), dtype=segments.segment.dtype)
    rfm = np.empty_like(segments.scores)
    segment[rows] = segments.segment
    rfm[rows] = segments.scores
    return {"user_segment": segment, "user_rfm": rfm}


def model_manifest(
    report: LoadReport,
    params: ModelParams,
    weights: dict[str, float],
    as_of: int,
    evaluation: Evaluation | None,
    holdout_days: int,
    k: int,
    seconds: dict[str, float],
) -> dict[str, Any]:
    """The manifest's description of the run; the caller adds what its trainer knows."""
    return {
        "algorithm": ALGORITHM,
        "params": params.model_dump(mode="json"),
        "weights": weights,
        "as_of": as_of,
        "as_of_iso": datetime.fromtimestamp(as_of, UTC).isoformat(),
        "input": {
            "source": report.source,
            "fingerprint": report.fingerprint,
            "format": report.format,
            "rows_read": report.rows_read,
            "rows_kept": report.rows_kept,
            "users": report.users,
            "items": report.items,
            "baskets": report.baskets,
        },
        "load_report": report.to_dict(),
        "evaluation": None
        if evaluation is None
        else {**evaluation.to_dict(), "holdout_days": holdout_days, "k": k},
        "seconds": {name: round(value, 3) for name, value in seconds.items()},
    }
