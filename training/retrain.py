"""A scheduled retrain: train a new version, and publish it only if it serves no worse than the
live one on the same hold-out.

The hold-out starts at the later of "``holdout_days`` before the end of the log" and the live
model's ``as_of``, so the live model has seen none of it (scoring it on purchases it was trained
on would flatter it, and a daily retrain would never win). The candidate is fitted on everything
before that cut, the live model is scored as it is, on the same customers and the same purchases,
with the metric the trainer reports first (ndcg@k over all items). Customers the live model does
not know get its anonymous list, as they would when served.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.artifacts import ArtifactError, current_version, publish
from engine.model import Model, load_model
from engine.vocab import Vocabulary
from training.dataset import interactions_from_table
from training.evaluate import MAX_TEST_CUSTOMERS, HoldoutSplit, evaluate, holdout_cut
from training.events.feedback import EventInput
from training.logs import PurchaseLog
from training.params import ModelParams
from training.pipeline import TrainResult, train_model

LIVE = "live"


class LiveScorer:
    """The live model scoring the candidate's users and items: what it would serve them."""

    def __init__(self, model: Model, users: Vocabulary, items: Vocabulary) -> None:
        self._model = model
        self._rows = model.users.indices(users.ids.tolist())  # -1: a customer it does not know
        self._cols = model.items.indices(items.ids.tolist())  # -1: an item it cannot recommend
        self._n_items = len(items)

    @property
    def n_items(self) -> int:
        return self._n_items

    def score(self, users: np.ndarray, as_of: int) -> np.ndarray:
        rows = self._rows[users]
        known = rows >= 0
        live = np.empty((len(users), len(self._model.items)), dtype=np.float32)
        if known.any():
            live[known] = self._model.scorer.score(rows[known], as_of)
        live[~known] = self._model.trending_scores
        out = np.full((len(users), self._n_items), -np.inf, dtype=np.float32)
        have = self._cols >= 0
        out[:, have] = live[:, self._cols[have]]
        return out


@dataclass(frozen=True)
class RetrainOutcome:
    published: bool
    message: str
    result: TrainResult | None  # None when there was nothing to compare on


def retrain(
    log: PurchaseLog,
    params: ModelParams,
    *,
    models_dir: Path,
    event_input: EventInput | None = None,
    holdout_days: int = 30,
    k: int = 10,
    test_customers: int | None = MAX_TEST_CUSTOMERS,
    min_ratio: float = 1.0,
    threads: int = 0,
    progress: bool = False,
    say: Callable[[str], None] = lambda _: None,
) -> RetrainOutcome:
    """Train, compare with the live model, publish only if ndcg@k >= min_ratio x the live one."""
    live_version = current_version(models_dir)
    if live_version is None:
        result = train_model(
            log, params, models_dir=models_dir, holdout_days=holdout_days, k=k,
            test_customers=test_customers, threads=threads, progress=progress, say=say,
            event_input=event_input,
        )  # fmt: skip
        return RetrainOutcome(True, f"no live model: {result.version} published", result)
    try:
        live = load_model(models_dir)
    except ArtifactError as exc:
        raise ArtifactError(f"the live model cannot be compared with: {exc}") from None
    combined = log if event_input is None else event_input.with_log(log)
    events = interactions_from_table(
        combined.table, None if event_input is None else event_input.item_ids()
    )
    feedback = None if event_input is None else event_input.encode(events.users, events.items)
    cut = max(holdout_cut(events, holdout_days), live.as_of)
    try:
        split = HoldoutSplit.at(
            events,
            cut,
            f"after the live model's data ({live.manifest.get('as_of_iso', live.as_of)})",
            test_customers,
            params.seed,
        )
    except ValueError as exc:
        return RetrainOutcome(False, f"nothing to compare on, {live.version} stays: {exc}", None)
    metric = f"ndcg@{k}"
    say(f"comparing with the live model {live.version} on purchases from {cut} on ...")
    evaluation = evaluate(
        events,
        params,
        k=k,
        threads=threads,
        progress=progress,
        feedback=feedback,
        split=split,
        others={LIVE: LiveScorer(live, events.users, events.items)},
    )
    new, old = evaluation.model[metric], evaluation.baselines[LIVE][metric]
    accepted = new >= min_ratio * old
    result = train_model(
        log, params, models_dir=models_dir, holdout_days=holdout_days, k=k, threads=threads,
        progress=progress, say=say, event_input=event_input, evaluation=evaluation,
        publish_model=False,
    )  # fmt: skip
    verdict = f"{metric} {new:.4f} (new {result.version}) vs {old:.4f} (live {live.version})"
    if not accepted:
        return RetrainOutcome(
            False,
            f"not published, {live.version} stays current: {verdict}, "
            f"below {min_ratio:g} x the live model",
            result,
        )
    publish(models_dir, result.version)
    return RetrainOutcome(True, f"published {result.version}: {verdict}", result)
