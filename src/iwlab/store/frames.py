"""Read a run directory's store into pandas, and export it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Literal

import pandas as pd


def _db_path(path: str | Path) -> Path:
    p = Path(path)
    db = p / "results.db" if p.is_dir() else p
    if not db.exists():
        raise FileNotFoundError(f"no results store at {db} (expected a run directory with results.db)")
    return db


def load(path: str | Path) -> pd.DataFrame:
    """Metrics of a run directory as one long DataFrame.

    Columns: ``run_id, member, epoch, name, value``, the run's ``status``, each member's labels as
    columns (e.g. ``weight``, ``seed``, ``model``, ``l2``) and ``diverged_epoch``.

    Example:
        >>> # df = iwlab.results.load("runs/synthetic-quick")
        >>> # df[df.name == "frac_down_test"].groupby(["weight", "epoch"]).value.mean()
    """
    con = sqlite3.connect(f"file:{_db_path(path)}?mode=ro", uri=True)
    try:
        metrics = pd.read_sql_query("SELECT run_id, member, epoch, name, value FROM metrics", con)
        members = pd.read_sql_query("SELECT run_id, member, labels, diverged_epoch FROM members", con)
        runs = pd.read_sql_query("SELECT run_id, status FROM runs", con)
    finally:
        con.close()
    labels = pd.DataFrame([json.loads(s) for s in members.pop("labels")], index=members.index)
    members = pd.concat([members, labels.drop(columns=[c for c in ("run_id", "member") if c in labels])], axis=1)
    df = metrics.merge(members, on=["run_id", "member"], how="left").merge(runs, on="run_id", how="left")
    return df.sort_values(["run_id", "member", "name", "epoch"]).reset_index(drop=True)


def export(path: str | Path, fmt: Literal["csv", "parquet"] = "csv", output: str | Path | None = None) -> str | None:
    """Write :func:`load` as CSV or Parquet to ``output``; with no output, return CSV text.

    Example:
        >>> # export("runs/synthetic-quick", "csv", "metrics.csv")
    """
    df = load(path)
    if fmt == "csv":
        if output is None:
            return df.to_csv(index=False)
        df.to_csv(output, index=False)
        return None
    if fmt == "parquet":
        if output is None:
            raise ValueError("parquet export needs an output file (--output FILE)")
        try:
            df.to_parquet(output, index=False)
        except ImportError as e:
            raise ImportError("parquet export needs pyarrow: pip install 'iwlab[parquet]'") from e
        return None
    raise ValueError(f"format must be csv or parquet, got '{fmt}'")
