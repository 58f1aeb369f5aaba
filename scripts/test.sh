#!/usr/bin/env bash
# Install the engine with its test extras into .venv (and, as root, Debian's redis-server and
# Chromium and Node for the Redis and browser tests when missing), then run every check CI runs:
# ruff (lint + format), mypy, then pytest; with CI set, also `python -m benchmarks --quick`.
# Safe to run again: it reuses .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/_install.sh
# spark: tests/integration/test_spark_trainer.py trains in Spark local mode (Java 17+ is on
# these machines; without java those tests skip and say why).
install_engine ".[dev,spark]"
ensure_redis_server
ensure_browser

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy

set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure, not a pass" >&2
    exit 1
fi
if [ "$status" -eq 0 ] && [ -n "${CI:-}" ]; then
    # CI also runs the whole benchmark suite on a small budget, so that it cannot rot.
    .venv/bin/python -m benchmarks --quick
fi
exit "$status"
