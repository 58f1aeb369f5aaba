"""Schemathesis against the API's own OpenAPI document: every operation, valid and invalid input.

    python -m benchmarks.fuzz_api [--examples N] [--seed S] [--json OUT]

The app runs in-process (ASGI) on the embedded store with a small generated shop and an API key,
which schemathesis sends from the document's security scheme, so keyed routes are reached with a
valid key while invalid input may drop or corrupt it. Per operation, ``--examples`` (default 500)
valid cases and as many invalid ones; each answer is checked: no 5xx, status code, content type,
headers and body as documented, invalid input refused with a 4xx, a missing key refused. Writes a
JSON summary to ``benchmarks/results/fuzz_api.json``; not part of ``python -m benchmarks``. CI runs
the same on a small budget (tests/integration/test_schema_fuzz.py).

One check stays off: ``positive_data_acceptance`` (schema-valid input must be accepted). Some
rules cannot be written in JSON Schema and are 422s by design: ``min_price <= max_price``, a
``target_segment`` the serving model knows, a ``boost`` factor within bounds, a timestamp not in
the future.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from hypothesis.strategies import SearchStrategy
from schemathesis import Case, GenerationMode
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.result import Err
from schemathesis.python.asgi import shutdown_lifespans

from api.main import create_app
from api.settings import ApiSettings
from benchmarks.fixtures import REPO, small_shop_spec, trained_shop, write_json
from training.synthetic import generate_shop

FUZZ_KEY = "fuzz-key-7c1e"
DEFAULT_JSON = REPO / "benchmarks" / "results" / "fuzz_api.json"


def _config(api_key: str, unready: bool) -> schemathesis.Config:
    # Unready (no model yet), the model's routes answer 503 by design: no other 5xx is.
    server_errors = ["2xx", "3xx", "4xx", *(["503"] if unready else [])]
    return schemathesis.Config.from_dict(
        {
            "auth": {"openapi": {"APIKeyHeader": {"api_key": api_key}}},
            "checks": {
                "positive_data_acceptance": {"enabled": False},
                "not_a_server_error": {"expected-statuses": server_errors},
            },
        }
    )


def _run_operation(
    operation: schemathesis.APIOperation, mode: GenerationMode, examples: int, seed: int
) -> dict[str, Any]:
    """``examples`` cases of one operation in one mode; failures collected, not raised.

    Valid input starts with the document's own examples: they name things the shop has (a known
    item, a segment), which generated strings only reach by chance (hypothesis also draws on the
    source's literals, so that chance moved with unrelated edits to the code).
    """
    statuses: Counter[int] = Counter()
    failures: dict[str, dict[str, Any]] = {}

    def check(case: Case) -> None:
        try:
            statuses[case.call_and_validate().status_code] += 1
        except (Failure, FailureGroup) as exc:
            for failure in exc.exceptions if isinstance(exc, FailureGroup) else [exc]:
                found = failures.setdefault(
                    failure.title, {"count": 0, "message": failure.message, "example": ""}
                )
                found["count"] += 1
                found["example"] = found["example"] or case.as_curl_command()

    def run(strategy: SearchStrategy[Case], cases: int) -> None:
        @hypothesis_seed(seed)
        @settings(
            max_examples=cases,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def cases_of(case: Case) -> None:
            check(case)

        cases_of()

    result: dict[str, Any] = {"operation": operation.label, "mode": mode.value}
    documented = operation.get_strategies_from_examples()
    if mode is GenerationMode.POSITIVE and documented:
        run(st.one_of(documented), len(documented))
    try:
        run(operation.as_strategy(generation_mode=mode), examples)
    except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
        result["skipped"] = "no invalid input possible"
    result["statuses"] = {str(code): n for code, n in sorted(statuses.items())}
    result["failures"] = failures
    return result


def fuzz(models: Path, *, examples: int, seed: int = 0, unready: bool = False) -> dict[str, Any]:
    """Fuzz every operation of an app serving ``models``, keyed with :data:`FUZZ_KEY`.

    ``unready``: ``models`` has no published version, and 503 is the expected answer of the
    routes that need one.
    """
    app = create_app(ApiSettings(models_dir=models, api_keys=[FUZZ_KEY], watch_seconds=0))
    config = _config(FUZZ_KEY, unready)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    start = time.perf_counter()
    results = []
    try:
        for loaded in schema.get_all_operations():
            if isinstance(loaded, Err):  # the app's own schema: a bug to report, not to skip
                raise RuntimeError(f"an operation of the API's schema is invalid: {loaded.err()}")
            operation = loaded.ok()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                results.append(_run_operation(operation, mode, examples, seed))
    finally:
        shutdown_lifespans()  # schemathesis started the app's lifespan; stop it now
    return {
        "examples_per_operation": examples,
        "seed": seed,
        "seconds": time.perf_counter() - start,
        "cases": sum(sum(r["statuses"].values()) for r in results),
        "failures": sum(f["count"] for r in results for f in r["failures"].values()),
        "operations": results,
    }


def print_summary(summary: dict[str, Any]) -> None:
    for r in summary["operations"]:
        statuses = " ".join(f"{code}x{n}" for code, n in r["statuses"].items())
        print(f"{r['operation']:<42} {r['mode']:<9} {r.get('skipped') or statuses}")
        for title, failure in r["failures"].items():
            print(f"    FAILED {failure['count']}x {title}: {failure['message']}")
            print(f"        {failure['example']}")
    print(f"{summary['cases']} cases in {summary['seconds']:.1f} s, {summary['failures']} failures")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=500, help="cases per operation and mode")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="write the summary here")
    args = parser.parse_args(argv)
    if args.examples < 1:
        parser.error("--examples must be at least 1")
    with tempfile.TemporaryDirectory(prefix="bench-fuzz-") as tmp:
        models = trained_shop(Path(tmp), generate_shop(small_shop_spec()))
        summary = fuzz(models, examples=args.examples, seed=args.seed)
    print_summary(summary)
    write_json(args.json, summary)
    print(f"wrote {args.json}")
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
