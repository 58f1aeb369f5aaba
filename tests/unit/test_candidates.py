"""The candidate lists of large catalogs: the trainer's lists, the artifact's checks, and the
pages served from them against exact ones.

A generated shop of 4,000 items is trained through the real pipeline with candidate lists (made
from 50,000 items by default); the recommender is built twice on it, ranking every item and
ranking candidates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from shops import trained_shop

from engine.artifacts import ArtifactError, load_artifact, write_artifact
from engine.candidates import CandidateIndex
from engine.model import Model, load_model
from engine.profiles import Profile, RecentEvent
from engine.recommender import Query, Recommender
from training.candidate_lists import candidate_lists, ordered_by_lists
from training.params import CandidateParams, ModelParams
from training.synthetic import ShopSpec, generate_shop

SPEC = ShopSpec(customers=1_500, items=4_000, categories=40, days=120, seed=5)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    params = ModelParams(candidates=CandidateParams(from_items=1))
    return trained_shop(tmp_path_factory.mktemp("shop"), generate_shop(SPEC), params)


@pytest.fixture(scope="module")
def model(models_dir: Path) -> Model:
    return load_model(models_dir)


@pytest.fixture(scope="module")
def exact(model: Model) -> Recommender:
    return Recommender(model, candidates=False)


@pytest.fixture(scope="module")
def indexed(model: Model) -> Recommender:
    return Recommender(model)


def _visitors(model: Model, n: int) -> list[tuple[Query, Profile]]:
    """Anonymous sessions, customers without a session, customers with one."""
    rng = np.random.default_rng(2)
    now = float(model.as_of)
    popular = np.argsort(-model.scorer.popularity)[:600]
    out = []
    for i in range(n):
        clicks = model.items.ids[rng.choice(popular, 5, replace=False)]
        recent = tuple(RecentEvent(str(it), "view", now - 60 * j) for j, it in enumerate(clicks))
        session = Profile(visitor_id=f"v{i}", recent=recent)
        customer = str(model.users.ids[rng.integers(len(model.users))])
        out += [
            (Query(k=10), session),
            (Query(k=10, customer_id=customer), Profile(visitor_id=f"c{i}")),
            (Query(k=10, customer_id=customer), session),
        ]
    return out


def _ids(rec: Recommender, query: Query, profile: Profile, now: float) -> list[str]:
    return [item.item_id for item in rec.recommend(query, profile, now=now).items]


def test_lists_are_made_from_the_size_set(model: Model) -> None:
    factors = np.asarray(model.scorer.factors.item_factors)
    n = len(factors)
    assert candidate_lists(factors, CandidateParams(from_items=n + 1), seed=0) == {}
    assert set(candidate_lists(factors, CandidateParams(from_items=n), seed=0)) == {
        "candidate_centroids", "candidate_items", "candidate_indptr"}  # fmt: skip
    assert model.has_candidate_lists


def test_every_item_is_in_exactly_one_list_and_probes_follow_the_centroids(model: Model) -> None:
    factors = model.scorer.factors.item_factors
    index = CandidateIndex(model.artifact.arrays, probe_share=0.1)
    assert index.lists == round(np.sqrt(len(factors)))
    assert sorted(index.items.tolist()) == list(range(len(factors)))
    vector = factors[7] + factors[99]
    lists = np.searchsorted(index.indptr, np.arange(len(factors)), side="right") - 1
    owner = np.empty(len(factors), np.int64)
    owner[index.items] = lists  # each item's list
    centroid_scores = index.centroids @ vector
    for lowest in (False, True):
        probed = index.probe_items(vector, highest=not lowest, lowest=lowest)
        chosen = np.unique(owner[probed])
        assert len(chosen) == index.probe
        assert len(probed) == np.isin(owner, chosen).sum()  # whole lists
        rest = np.setdiff1d(np.arange(index.lists), chosen)
        if lowest:
            assert centroid_scores[chosen].max() <= centroid_scores[rest].min()
        else:
            assert centroid_scores[chosen].min() >= centroid_scores[rest].max()
    both = index.probe_items(vector, lowest=True)  # one scoring of the centroids, both ends
    ends = [index.probe_items(vector), index.probe_items(vector, highest=False, lowest=True)]
    assert both.tolist() == np.concatenate(ends).tolist()


def test_probing_every_list_serves_the_exact_pages(model: Model, exact: Recommender) -> None:
    """With every list probed the candidates hold every item: the same items, in the same
    order, with the same scores, for every kind of visitor."""
    everything = Recommender(model, probe_share=1.0)
    now = float(model.as_of)
    for query, profile in _visitors(model, 10):
        want = exact.recommend(query, profile, now=now).items
        got = everything.recommend(query, profile, now=now).items
        assert got == want


def test_the_lists_probed_for_a_customer_hold_their_best_items_by_factor_score(
    model: Model,
) -> None:
    """A few of the lists hold most of a customer's ten best items by factor score (lists
    picked at random would hold about the share probed)."""
    factors = model.scorer.factors
    index = CandidateIndex(model.artifact.arrays)
    found, probed = [], []
    for vector in factors.user_factors[:100]:
        best = np.argsort(-(factors.item_factors @ vector))[:10]
        items = index.probe_items(vector)
        found.append(np.isin(best, items).mean())
        probed.append(len(items) / len(factors.item_factors))
    assert np.mean(probed) <= 0.15
    assert np.mean(found) >= 0.9, np.mean(found)


def test_the_default_probe_finds_the_exact_top_ten(
    model: Model, exact: Recommender, indexed: Recommender
) -> None:
    now = float(model.as_of)
    overlap = [
        len(set(_ids(exact, q, p, now)) & set(_ids(indexed, q, p, now))) / 10
        for q, p in _visitors(model, 40)
    ]
    assert np.mean(overlap) >= 0.95, np.mean(overlap)


def test_pages_of_the_candidates_agree(model: Model, indexed: Recommender) -> None:
    now = float(model.as_of)
    for query, profile in _visitors(model, 5):
        whole = _ids(indexed, Query(k=20, customer_id=query.customer_id), profile, now)
        first = _ids(indexed, Query(k=10, customer_id=query.customer_id), profile, now)
        second = _ids(indexed, Query(k=10, offset=10, customer_id=query.customer_id), profile, now)
        assert first + second == whole


def test_rules_that_leave_too_few_candidates_rank_every_item(
    model: Model, exact: Recommender, indexed: Recommender
) -> None:
    """A filter most candidates fail (one small category), campaign pages (boosts, pins, a
    diversity cap): the exact pages, never a short one."""
    now = float(model.as_of)
    categories, sizes = np.unique(model.category, return_counts=True)
    rare = str(categories[np.argmin(sizes)])
    _, profile = _visitors(model, 1)[0]
    boosted = str(model.items.ids[123])
    for rules in (
        Query(k=10, include_categories=frozenset({rare})),
        Query(k=10, boost={boosted: 50.0}),
        Query(k=10, pin=(boosted,)),
        Query(k=10, max_per_category=1),
    ):
        want = _ids(exact, rules, profile, now)
        assert _ids(indexed, rules, profile, now) == want
        assert len(want) == (min(10, int(sizes.min())) if rules.include_categories else 10)


def test_the_artifact_numbers_its_items_list_by_list(model: Model) -> None:
    """Each list holds consecutive items, so a probe reads runs of the factors."""
    index = CandidateIndex(model.artifact.arrays)
    assert index.items.tolist() == list(range(len(model.items)))


def test_renumbering_the_items_serves_the_same_model(
    models_dir: Path, model: Model, exact: Recommender, tmp_path: Path
) -> None:
    """The trained artifact's items put in a random order through ``ordered_by_lists`` (one
    list holding them all, shuffled): every item keeps its metadata and every visitor's score
    of it, every page its items and reasons. A per-item array left out of the renumbering
    would move some item's score or reason."""
    artifact = load_artifact(models_dir, verify=False)
    n = len(model.items)
    shuffle = np.random.default_rng(3).permutation(n).astype(np.int64)
    lists = {
        "candidate_centroids": np.asarray(model.artifact.arrays["candidate_centroids"][:1]),
        "candidate_items": shuffle,
        "candidate_indptr": np.array([0, n], np.int64),
    }
    manifest = {k: v for k, v in artifact.manifest.items()
                if k not in ("format_version", "version", "created", "files")}  # fmt: skip
    other = load_model(write_artifact(tmp_path, ordered_by_lists(artifact.arrays, lists), manifest))
    assert other.items.ids.tolist() == model.items.ids[shuffle].tolist()
    for name in ("description", "category", "price", "item_baskets"):
        np.testing.assert_array_equal(getattr(other, name), getattr(model, name)[shuffle])
    now = float(model.as_of)
    moved = Recommender(other, candidates=False)
    for item in model.items.ids[np.argsort(-model.item_baskets)[:20]]:  # every partner: ties
        assert set(moved.bought_together(str(item), n)) == set(exact.bought_together(str(item), n))
    context = str(model.items.ids[np.argmax(model.item_baskets)])  # reasons from the baskets
    for query, profile in _visitors(model, 8):
        for q in (query, Query(k=10, customer_id=query.customer_id, context_item=context)):
            want = exact.recommend(q, profile, now=now).items
            got = moved.recommend(q, profile, now=now).items
            assert [(r.item_id, r.reason) for r in got] == [(r.item_id, r.reason) for r in want]
            np.testing.assert_allclose([r.score for r in got], [r.score for r in want], rtol=1e-6)


@pytest.mark.parametrize(
    "damage",
    [
        "an item listed twice",
        "a list past the catalog",
        "centroids of other factors",
        "a missing array",
    ],
)
def test_an_artifact_with_broken_lists_is_refused(
    models_dir: Path, tmp_path: Path, damage: str
) -> None:
    """Checked at load: lists that named an item twice would serve some items twice and never
    others; the loader refuses the version (and the API keeps serving the one before)."""
    artifact = load_artifact(models_dir, verify=False)
    arrays = {name: np.array(values) for name, values in artifact.arrays.items()}
    if damage == "an item listed twice":
        arrays["candidate_items"][1] = arrays["candidate_items"][0]
    elif damage == "a list past the catalog":
        arrays["candidate_indptr"][-1] += 1
    elif damage == "centroids of other factors":
        arrays["candidate_centroids"] = arrays["candidate_centroids"][:, :-1]
    else:
        del arrays["candidate_indptr"]
    manifest = {k: v for k, v in artifact.manifest.items()
                if k not in ("format_version", "version", "created", "files")}  # fmt: skip
    broken = write_artifact(tmp_path, arrays, manifest)
    with pytest.raises(ArtifactError, match="candidate"):
        load_model(broken)
