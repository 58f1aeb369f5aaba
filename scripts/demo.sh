#!/usr/bin/env bash
# Install the engine into .venv, train the default model and serve it on http://127.0.0.1:8000
# with the embedded profile store (no Redis, no network needed). The log is the shared Online
# Retail file beside this checkout when present, else a generated shop; or pass your own:
#   scripts/demo.sh --log my_orders.parquet --format generic
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/_install.sh
install_engine "."

exec .venv/bin/personalize demo "$@"
