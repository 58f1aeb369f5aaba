#!/usr/bin/env bash
# Install the engine into .venv, then train and evaluate the default model on a purchase log and
# publish it under ./models. With no arguments it uses the shared Online Retail log beside this
# checkout, or, when that is absent, a generated shop (written to data/generated-shop.parquet).
#   scripts/train.sh                          # Online Retail, or the generated shop
#   scripts/train.sh --log my.csv --user-col customer --item-col sku --time-col ts
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/_install.sh
install_engine "."

retail=../shared/data/online-retail/online_retail.csv.gz
if [ "$#" -eq 0 ] && [ -f "$retail" ]; then
    set -- --log "$retail" --format online-retail
elif [ "$#" -eq 0 ]; then
    echo "no $retail here: training on a generated shop instead" >&2
    .venv/bin/personalize generate-shop --out data/generated-shop.parquet
    set -- --log data/generated-shop.parquet
fi
exec .venv/bin/personalize train --out models "$@"
