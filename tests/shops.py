"""A generated shop trained into a models directory: the fixture several test modules build."""

from pathlib import Path

import pyarrow as pa

from training.logs import PRESETS, read_purchase_log
from training.params import ModelParams
from training.pipeline import train_model
from training.synthetic import write_log


def trained_shop(folder: Path, shop: pa.Table) -> Path:
    """Write ``shop``'s log, read it back with the trainer's reader, train the default model;
    the models directory."""
    write_log(shop, folder / "log.parquet")
    log = read_purchase_log(folder / "log.parquet", PRESETS["generic"])
    assert log.table.num_rows == shop.num_rows  # the generator writes only clean lines
    train_model(log, ModelParams(), models_dir=folder / "models", run_evaluation=False)
    return folder / "models"
