"""Purchase-log reader: CSV (plain or compressed) and Parquet logs to one clean Arrow table.

Cleaning rules and their order are documented in training.logs.clean.
"""

from training.logs.canonical import LOG_SCHEMA
from training.logs.errors import LogError
from training.logs.formats import PRESETS, ItemCatalog, LogFormat, resolve_format
from training.logs.reader import PurchaseLog, read_purchase_log
from training.logs.report import LoadReport

__all__ = [
    "LOG_SCHEMA",
    "PRESETS",
    "ItemCatalog",
    "LoadReport",
    "LogError",
    "LogFormat",
    "PurchaseLog",
    "read_purchase_log",
    "resolve_format",
]
