"""What the benchmarks share: where the real datasets are, and a model trained on one."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The same lookup as the tests: $PERSONALIZE_SHARED_DATA, else shared/data beside the checkout.
SHARED_DATA = Path(os.environ.get("PERSONALIZE_SHARED_DATA") or REPO.parent / "shared" / "data")
ONLINE_RETAIL = SHARED_DATA / "online-retail" / "online_retail.csv.gz"


def retail_model(models_dir: Path) -> Path:
    """Train the default model on the shared Online Retail log into ``models_dir``; return it."""
    from training.logs import PRESETS, read_purchase_log
    from training.params import ModelParams
    from training.pipeline import train_model

    log = read_purchase_log(ONLINE_RETAIL, PRESETS["online-retail"])
    train_model(log, ModelParams(), models_dir=models_dir, run_evaluation=False)
    return models_dir
