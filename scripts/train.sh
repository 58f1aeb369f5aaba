#!/usr/bin/env bash
# Install the engine into .venv, then train and evaluate the default model on a purchase log
# (default: the shared Online Retail log beside this checkout) and publish it under ./models.
#   scripts/train.sh                          # Online Retail, preset columns
#   scripts/train.sh --log my.csv --user-col customer --item-col sku --time-col ts
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .

if [ "$#" -eq 0 ]; then
    set -- --log ../shared/data/online-retail/online_retail.csv.gz --format online-retail
fi
exec .venv/bin/personalize train --out models "$@"
