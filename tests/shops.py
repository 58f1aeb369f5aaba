"""Generated shops trained into models directories: the fixtures several test modules build."""

from pathlib import Path

import pyarrow as pa

from engine.artifacts import list_versions
from training.logs import PRESETS, read_purchase_log
from training.params import ModelParams
from training.pipeline import train_model
from training.synthetic import ShopSpec, generate_shop, write_log


def trained_shop(folder: Path, shop: pa.Table) -> Path:
    """Write ``shop``'s log, read it back with the trainer's reader, train the default model;
    the models directory."""
    write_log(shop, folder / "log.parquet")
    log = read_purchase_log(folder / "log.parquet", PRESETS["generic"])
    assert log.table.num_rows == shop.num_rows  # the generator writes only clean lines
    train_model(log, ModelParams(), models_dir=folder / "models", run_evaluation=False)
    return folder / "models"


def two_version_shop(folder: Path) -> Path:
    """A small generated shop's models dir: v1 published, v2 (another seed) written but not
    published, so that tests can switch, damage and reload versions."""
    write_log(
        generate_shop(ShopSpec(customers=300, items=200, days=120, seed=1)), folder / "log.parquet"
    )
    log = read_purchase_log(folder / "log.parquet", PRESETS["generic"])
    models = folder / "models"
    for params, publish in ((ModelParams(), True), (ModelParams(seed=7), False)):
        train_model(
            log, params, models_dir=models, run_evaluation=False, publish_model=publish, threads=1
        )
    assert len(list_versions(models)) == 2
    return models
