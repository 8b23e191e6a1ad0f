"""Results store: SQLite in each run directory, read back as pandas DataFrames."""

from iwlab.store.db import STATUSES, Store, StoreError, failure_reason
from iwlab.store.frames import default_parquet_path, export, load, load_runs

__all__ = ["STATUSES", "Store", "StoreError", "default_parquet_path", "export", "failure_reason", "load", "load_runs"]
