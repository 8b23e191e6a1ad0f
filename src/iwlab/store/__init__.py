"""Results store: SQLite in each run directory, read back as pandas DataFrames."""

from iwlab.store.db import STATUSES, Store
from iwlab.store.frames import export, load

__all__ = ["STATUSES", "Store", "export", "load"]
