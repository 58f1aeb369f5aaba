"""What the benchmarks share: where the real datasets are, and a model trained on one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from engine.artifacts import load_artifact, publish, write_artifact
from engine.profiles import EventType

if TYPE_CHECKING:
    from training.params import ModelParams
    from training.synthetic import ShopSpec

REPO = Path(__file__).resolve().parents[1]
# The same lookup as the tests: $PERSONALIZE_SHARED_DATA, else shared/data beside the checkout.
SHARED_DATA = Path(os.environ.get("PERSONALIZE_SHARED_DATA") or REPO.parent / "shared" / "data")
ONLINE_RETAIL = SHARED_DATA / "online-retail" / "online_retail.csv.gz"
TAOBAO = SHARED_DATA / "taobao-userbehavior-head" / "user_behavior_head.csv.gz"
# Taobao behaviours as the API's event types.
TAOBAO_EVENT_TYPES: dict[str, EventType] = {
    "pv": "view",
    "fav": "click",
    "cart": "add_to_cart",
    "buy": "purchase",
}


def retail_model(models_dir: Path) -> Path:
    """Train the default model on the shared Online Retail log into ``models_dir``; return it."""
    from training.logs import PRESETS, read_purchase_log
    from training.params import ModelParams
    from training.pipeline import train_model

    log = read_purchase_log(ONLINE_RETAIL, PRESETS["online-retail"])
    train_model(log, ModelParams(), models_dir=models_dir, run_evaluation=False)
    return models_dir


def large_shop_spec() -> ShopSpec:
    """A generated shop of about 100k items sold (100,410 of 140,000, 1.9M lines; trains in
    about 40 s): the large catalog of the compute and HTTP benchmarks."""
    from training.synthetic import ShopSpec

    return ShopSpec(customers=60_000, items=140_000, categories=200, seed=3)


def small_shop_spec() -> ShopSpec:
    """The generated shop the API's fuzzing, security and limits runs serve (trains in seconds)."""
    from training.synthetic import ShopSpec

    return ShopSpec(customers=300, items=200, days=120, seed=1)


def trained_shop(folder: Path, shop: pa.Table, params: ModelParams | None = None) -> Path:
    """Write ``shop``'s log, read it back with the trainer's reader, train the default model
    (or one of other ``params``); the models directory."""
    from training.logs import PRESETS, read_purchase_log
    from training.params import ModelParams
    from training.pipeline import train_model
    from training.synthetic import write_log

    write_log(shop, folder / "log.parquet")
    log = read_purchase_log(folder / "log.parquet", PRESETS["generic"])
    assert log.table.num_rows == shop.num_rows  # the generator writes only clean lines
    train_model(log, params or ModelParams(), models_dir=folder / "models", run_evaluation=False)
    return folder / "models"


def tiled_catalog(models: Path, out: Path, copies: int) -> Path:
    """The model with its catalog repeated ``copies`` times (ids ``<item>~<k>``), published."""
    artifact = load_artifact(models, verify=False)
    arrays = dict(artifact.arrays)
    n = len(arrays["items"])
    for name in ("item_factors", "popularity", "trending", "item_description", "item_category",
                 "item_price", "item_baskets"):  # fmt: skip
        arrays[name] = np.concatenate([arrays[name]] * copies)
    arrays["items"] = np.array(
        [f"{item}~{k}" for k in range(copies) for item in arrays["items"][:n]]
    )
    for name in ("history_counts", "history_last_time", "history_first_time"):
        arrays[f"{name}.shape"] = np.array([arrays[f"{name}.shape"][0], n * copies])
    for name in ("similarity", "together"):  # item x item: the copies get empty rows
        indptr = arrays[f"{name}.indptr"]
        arrays[f"{name}.indptr"] = np.concatenate(
            [indptr, np.full(n * (copies - 1), indptr[-1], dtype=indptr.dtype)]
        )
        arrays[f"{name}.shape"] = np.array([n * copies, n * copies])
    manifest = {k: v for k, v in artifact.manifest.items()
                if k not in ("format_version", "version", "created", "files")}  # fmt: skip
    version = write_artifact(out, arrays, manifest)
    publish(out, version.name)
    return out


def read_taobao(path: Path = TAOBAO) -> pa.Table:
    """The Taobao click log with string ids (as the API receives them); every behaviour must
    have an event type."""
    ids = {name: pa.string() for name in ("user_id", "item_id", "category_id")}
    convert = pacsv.ConvertOptions(column_types={**ids, "timestamp": pa.int64()})
    table = pacsv.read_csv(path, convert_options=convert)
    unknown = set(pc.unique(table["behavior_type"]).to_pylist()) - set(TAOBAO_EVENT_TYPES)
    if unknown:
        raise ValueError(f"{path}: behaviour types without an event type: {sorted(unknown)}")
    return table


def write_json(path: Path, result: dict[str, Any]) -> None:
    """A benchmark's results as indented JSON (its folder made if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
