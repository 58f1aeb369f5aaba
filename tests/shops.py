"""Generated shops trained into models directories: the fixtures several test modules build.

``trained_shop`` is defined beside the benchmarks (``benchmarks.fixtures``), which train the
same small shop.
"""

from pathlib import Path

from benchmarks.fixtures import small_shop_spec, trained_shop
from engine.artifacts import list_versions
from training.logs import PRESETS, read_purchase_log
from training.params import ModelParams
from training.pipeline import train_model
from training.synthetic import generate_shop, write_log

__all__ = ["trained_shop", "two_version_shop"]


def two_version_shop(folder: Path) -> Path:
    """A small generated shop's models dir: v1 published, v2 (another seed) written but not
    published, so that tests can switch, damage and reload versions."""
    write_log(generate_shop(small_shop_spec()), folder / "log.parquet")
    log = read_purchase_log(folder / "log.parquet", PRESETS["generic"])
    models = folder / "models"
    for params, publish in ((ModelParams(), True), (ModelParams(seed=7), False)):
        train_model(
            log, params, models_dir=models, run_evaluation=False, publish_model=publish, threads=1
        )
    assert len(list_versions(models)) == 2
    return models
