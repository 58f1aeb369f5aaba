"""Schemathesis on every operation of the app's own OpenAPI document, on a bounded budget.

The larger run is ``python -m benchmarks.fuzz_api --examples 500``; both use one harness.
"""

from __future__ import annotations

import json
from pathlib import Path

from api.main import create_app
from api.settings import ApiSettings
from benchmarks.fuzz_api import fuzz

EXAMPLES = 15  # per operation and mode: about 10 s for the whole document


def test_every_operation_answers_as_documented(small_shop: Path) -> None:
    summary = fuzz(small_shop, examples=EXAMPLES)
    failed = [r for r in summary["operations"] if r["failures"]]
    assert not failed, json.dumps(failed, indent=2)

    by_mode = {(r["operation"], r["mode"]): r for r in summary["operations"]}
    operations = {operation for operation, _ in by_mode}
    document = create_app(ApiSettings(models_dir=small_shop)).openapi()
    assert operations == {
        f"{method.upper()} {path}"
        for path, methods in document["paths"].items()
        for method in methods
    }  # every operation of the document was fuzzed
    for operation in operations:
        statuses = by_mode[operation, "positive"]["statuses"]
        # Reached with the configured key: valid input gets through on every route.
        assert any(code.startswith("2") for code in statuses), (operation, statuses)
        assert not {"401", "403"} & set(statuses), (operation, statuses)
    invalid = [r for r in summary["operations"] if r["mode"] == "negative" and "skipped" not in r]
    assert all(code.startswith("4") for r in invalid for code in r["statuses"] if code != "200")
    # Invalid input that drops the key reaches the key check: it answers 401, documented.
    assert "401" in by_mode["POST /v1/events", "negative"]["statuses"]


def test_without_a_model_every_operation_answers_as_documented(tmp_path: Path) -> None:
    """Unready (nothing published yet): the model's routes answer 503, as documented."""
    summary = fuzz(tmp_path, examples=5, unready=True)
    failed = [r for r in summary["operations"] if r["failures"]]
    assert not failed, json.dumps(failed, indent=2)
    positive = {r["operation"]: r["statuses"] for r in summary["operations"]
                if r["mode"] == "positive"}  # fmt: skip
    for operation in ("GET /v1/recommendations", "GET /v1/trending", "GET /v1/segments"):
        assert set(positive[operation]) == {"503"}, positive[operation]
