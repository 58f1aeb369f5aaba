"""The ``personalize`` command end to end: real logs in, artifacts out, one-line errors."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.artifacts import current_version, list_versions
from engine.model import load_model
from personalize.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def online_retail(shared_data: Path) -> str:
    return str(shared_data / "online-retail" / "online_retail.csv.gz")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """One full training run on Online Retail, shared by the tests that read its artifact."""
    models = tmp_path_factory.mktemp("models")
    code = main(
        ["train", "--log", online_retail(shared_data), "--format", "online-retail",
         "--out", str(models), "--quiet"]
    )  # fmt: skip
    assert code == 0
    return models


@pytest.mark.shared_data
@pytest.mark.slow
def test_train_writes_published_evaluated_artifact(trained: Path) -> None:
    versions = list_versions(trained)
    assert len(versions) == 1
    assert current_version(trained) == versions[0]
    model = load_model(trained)
    manifest = model.manifest
    assert manifest["input"]["rows_read"] == 541_909
    assert manifest["load_report"]["rows_kept"] == manifest["input"]["rows_kept"]
    assert set(manifest["weights"]) == {
        "log_count", "bought", "recency", "log_popularity", "log_trending", "factor_score",
        "knn_score",
    }  # fmt: skip
    evaluation = manifest["evaluation"]
    baselines = evaluation["baselines"]
    assert set(baselines) == {"popularity", "buy_again", "als", "item_knn"}
    # The repeat-aware default must beat every baseline on both views of the hold-out.
    best_all = max(b["ndcg@10"] for b in baselines.values())
    best_new = max(b["ndcg@10_new"] for b in baselines.values())
    assert evaluation["model"]["ndcg@10"] > best_all
    assert evaluation["model"]["ndcg@10_new"] > best_new


@pytest.mark.shared_data
@pytest.mark.slow
def test_recommend_prints_a_customers_list(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = load_model(trained)
    customer = str(model.users.ids[0])
    code, out, _ = run(
        capsys, "recommend", "--models", str(trained), "--customer", customer, "-k", "5"
    )
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].endswith(f"top 5 for {customer}")
    assert len(lines) == 6
    assert any("you bought it" in line for line in lines[1:])


@pytest.mark.shared_data
@pytest.mark.slow
def test_second_train_without_publish_keeps_current(
    trained: Path, shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = current_version(trained)
    code, out, _ = run(
        capsys, "train", "--log", online_retail(shared_data), "--format", "online-retail",
        "--out", str(trained), "--no-evaluate", "--no-publish", "--quiet",
    )  # fmt: skip
    assert code == 0
    assert "(current)" not in out
    assert current_version(trained) == before
    assert len(list_versions(trained)) == 2
    new = max(list_versions(trained))
    code, out, _ = run(capsys, "publish", new, "--models", str(trained))
    assert code == 0
    assert f"{new} is now current" in out
    assert current_version(trained) == new


@pytest.mark.shared_data
@pytest.mark.slow
def test_evaluate_json_shape(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = shared_data / "completejourney-sample" / "transactions_sample.csv.gz"
    code, out, _ = run(
        capsys, "evaluate", "--log", str(log), "--format", "complete-journey", "--json", "--quiet"
    )
    assert code == 0
    result = json.loads(out)
    assert {"model", "baselines", "data"} <= set(result)
    for key in ("ndcg@10", "ndcg@10_new", "precision@10", "recall@10", "map@10", "hit_rate@10",
                "coverage@10"):  # fmt: skip
        assert 0.0 <= result["model"][key] <= 1.0
        for baseline in ("popularity", "buy_again", "als", "item_knn"):
            assert 0.0 <= result["baselines"][baseline][key] <= 1.0
    assert result["data"]["rows_read"] == 75_000
    assert result["split"]["test_users"] == result["split"]["test_users_eligible"]


@pytest.mark.shared_data
def test_evaluate_scores_at_most_the_test_customers_asked_for(
    shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = shared_data / "online-retail" / "online_retail.csv.gz"
    args = ["evaluate", "--log", str(log), "--format", "online-retail", "--quiet"]
    code, out, _ = run(capsys, *args, "--json", "--test-customers", "300")
    assert code == 0
    result = json.loads(out)
    assert result["split"]["test_users"] == result["model"]["users"] == 300
    assert result["split"]["test_users_eligible"] > 300
    code, out, _ = run(capsys, *args, "--test-customers", "300")
    assert code == 0
    eligible = f"{result['split']['test_users_eligible']:,}"
    assert "all items over 300 customers;" in out and f"a sample of the {eligible}" in out


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.csv", b"", "empty"),
        ("binary.csv", bytes(range(256)) * 8, ""),
        ("columns.csv", b"a,b,c\n1,2,3\n", "user_id"),
        ("bad.csv.gz", gzip.compress(b"user_id,item_id\n")[:10], ""),
    ],
)
def test_bad_log_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: bytes, expected: str
) -> None:
    path = _write(tmp_path / name, content)
    code, out, err = run(capsys, "evaluate", "--log", path, "--quiet")
    assert code == 2
    assert out == ""
    assert err.startswith("personalize: error: ")
    assert err.count("\n") == 1
    assert expected in err


def test_missing_log_names_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.csv"
    code, _, err = run(capsys, "train", "--log", str(missing), "--out", str(tmp_path), "--quiet")
    assert code == 2
    assert str(missing) in err


def test_invalid_hyperparameter_names_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = _write(tmp_path / "log.csv", b"user_id,item_id,timestamp\nu1,i1,2020-01-01\n")
    code, _, err = run(capsys, "evaluate", "--log", log, "--factors", "0", "--quiet")
    assert code == 2
    assert "factors" in err


def test_too_short_log_explains_the_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = _write(tmp_path / "log.csv", b"user_id,item_id,timestamp\nu1,i1,2020-01-01\n")
    code, _, err = run(capsys, "evaluate", "--log", log, "--quiet")
    assert code == 2
    assert "--holdout-days" in err


def test_damaged_model_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "recommend", "--models", str(tmp_path))
    assert code == 2
    assert "no model published" in err


def test_console_script_help_for_every_command() -> None:
    commands = (
        "train",
        "evaluate",
        "models",
        "publish",
        "recommend",
        "generate-shop",
        "demo",
        "serve",
        "report",
    )
    for command in ([], *([name] for name in commands)):
        done = subprocess.run(
            [sys.executable, "-m", "personalize", *command, "--help"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "usage: personalize" in done.stdout
