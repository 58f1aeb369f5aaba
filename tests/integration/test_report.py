"""``personalize report``: one self-contained HTML page, with the model's own figures."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from engine.model import load_model
from personalize.cli import main
from personalize.report import rfm_grid
from training.crm.pairs import bought_together, top_pairs
from training.logs import PRESETS, read_purchase_log
from training.params import ModelParams
from training.pipeline import train_model
from training.synthetic import ShopSpec, generate_shop, write_log

pytest.importorskip("matplotlib", reason="the report's plots need matplotlib")

BENCHMARKS = {
    "started": "2026-12-01T23:18:23+00:00",
    "quick": True,
    "sections": {
        "http": {"cases": [{"case": "GET /v1/recommendations", "p99_ms": 4.25, "errors": 0,
                            "error_kinds": {}}]},
        "memory": {"error": "redis-server not found"},
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated shop's model trained with its hold-out evaluation stored."""
    folder = tmp_path_factory.mktemp("report")
    write_log(generate_shop(ShopSpec(customers=300, items=200, days=120, seed=1)), folder / "l.pq")
    log = read_purchase_log(folder / "l.pq", PRESETS["generic"])
    train_model(log, ModelParams(), models_dir=folder / "models", threads=1)
    return folder / "models"


def report(models: Path, out: Path, benchmarks: Path) -> str:
    assert main(["report", "--models", str(models), "--out", str(out),
                 "--benchmarks", str(benchmarks)]) == 0  # fmt: skip
    return out.read_text()


def test_the_report_shows_the_models_own_figures_in_one_file(
    evaluated: Path, tmp_path: Path
) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps(BENCHMARKS))
    page = report(evaluated, tmp_path / "report.html", results)
    model = load_model(evaluated)
    evaluation = model.manifest["evaluation"]

    assert page.count("<svg") == 5  # quality, segment sizes, segment map, 80/20, coverage
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # nothing fetched
    assert f"{evaluation['model']['ndcg@10']:.4f}" in page
    for baseline in evaluation["baselines"]:
        assert f"<th>{baseline}</th>" in page
    coverage = evaluation["model"]["coverage@10"]
    assert f"the model {coverage:.1%}" in page
    for name, row in model.manifest["segments"]["segments"].items():
        assert f'<td>{name}</td><td class="n">{row["customers"]:,}</td>' in page
    assert f"bring {model.manifest['segments']['top20_share']:.1%} of the revenue" in page
    strongest = top_pairs(bought_together(model), 1).to_pylist()[0]
    assert f"<td>{strongest['item_description']}</td>" in page
    assert '<td>GET /v1/recommendations</td><td class="n">4.25</td>' in page
    assert "failed: redis-server not found" in page
    assert "error_kinds" not in page  # nested values are left to results.json


def test_the_segment_map_counts_every_customer_in_their_score_cell(evaluated: Path) -> None:
    model = load_model(evaluated)
    counts, names = rfm_grid(model)
    assert counts.sum() == len(model.users)
    r, f = int(model.rfm[0, 0]), int(model.rfm[0, 1])
    in_cell = (model.rfm[:, 0] == r) & (model.rfm[:, 1] == f)
    assert counts[f - 1, r - 1] == in_cell.sum()
    segments, n = np.unique(model.segments[in_cell], return_counts=True)
    assert names[f - 1][r - 1] in set(segments[n == n.max()])
    assert all(name == "" for row, cells in zip(counts, names, strict=True)
               for count, name in zip(row, cells, strict=True) if count == 0)  # fmt: skip


def test_without_an_evaluation_or_benchmarks_the_report_says_so(tmp_path: Path) -> None:
    models = tmp_path / "models"
    write_log(generate_shop(ShopSpec(customers=150, items=80, days=90, seed=2)), tmp_path / "l.pq")
    log = read_purchase_log(tmp_path / "l.pq", PRESETS["generic"])
    train_model(log, ModelParams(), models_dir=models, run_evaluation=False, threads=1)
    page = report(models, tmp_path / "report.html", tmp_path / "missing.json")
    assert "trained without an evaluation" in page
    assert "No benchmark results found" in page
    assert page.count("<svg") == 3  # segment sizes, segment map and the 80/20 curves


def test_a_damaged_model_is_refused_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--models", str(tmp_path), "--out", str(tmp_path / "r.html")]) == 2
    assert capsys.readouterr().err.startswith("personalize: error:")
    assert not (tmp_path / "r.html").exists()
