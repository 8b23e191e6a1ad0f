"""Read a run directory's store into pandas, and export it.

Example (a run directory with one finished cell, as the runner writes it):
    >>> import tempfile
    >>> from iwlab.store.db import Store
    >>> run_dir = Path(tempfile.mkdtemp()); store = Store(run_dir / "results.db")
    >>> store.add_runs("synthetic", [("mlp", {})])
    >>> store.write_result("mlp", [{"weight": 0.5, "seed": 0}], [(1, 0, "frac_down_test", 0.25)])
    >>> store.close()
    >>> load(run_dir)[["run_id", "epoch", "name", "value", "weight", "status"]].values.tolist()
    [['mlp', 1, 'frac_down_test', 0.25, 0.5, 'done']]
    >>> export(run_dir).splitlines()[0]
    'run_id,member,epoch,name,value,diverged_epoch,seed,weight,status'
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal

import pandas as pd

from iwlab.store.db import check_schema, json_field, store_error


def _db_path(path: str | Path) -> Path:
    p = Path(path)
    db = p / "results.db" if p.is_dir() else p
    if not db.exists():
        raise FileNotFoundError(f"no results store at {db} (expected a run directory with results.db)")
    return db


def connect_readonly(db: Path) -> sqlite3.Connection:
    """Open ``db`` for reading without leaving ``-wal``/``-shm`` files behind.

    A store in WAL mode has a ``-wal`` file exactly while a connection holds it open (the driver of a
    running experiment). Without one, nobody is writing: open it ``immutable`` (SQLite then creates no
    side files). With one, open it read-only beside the writer; its side files exist already.

    Example:
        >>> import tempfile; from iwlab.store.db import Store
        >>> run_dir = Path(tempfile.mkdtemp()); Store(run_dir / "results.db").close()
        >>> con = connect_readonly(run_dir / "results.db"); con.execute("SELECT COUNT(*) FROM runs").fetchone()
        (0,)
        >>> con.close()
    """
    busy = db.with_name(db.name + "-wal").exists()
    uri = f"{db.resolve().as_uri()}?mode=ro" + ("" if busy else "&immutable=1")
    return sqlite3.connect(uri, uri=True)


def load(path: str | Path) -> pd.DataFrame:
    """Metrics of a run directory as one long DataFrame.

    Columns: ``run_id, member, epoch, name, value``, the run's ``status``, each member's labels as
    columns (e.g. ``weight``, ``seed``, ``model``, ``weight_decay``) and ``diverged_epoch``.

    Example:
        See the module's example; a typical query::

            df = iwlab.results.load("runs/synthetic-quick")
            df[df.name == "frac_down_test"].groupby(["weight", "epoch"]).value.mean()
    """
    db = _db_path(path)
    try:
        con = connect_readonly(db)
        try:
            check_schema(con, db, require=True)
            metrics = pd.read_sql_query("SELECT run_id, member, epoch, name, value FROM metrics", con)
            members = pd.read_sql_query("SELECT run_id, member, labels, diverged_epoch FROM members", con)
            runs = pd.read_sql_query("SELECT run_id, status FROM runs", con)
        finally:
            con.close()
    except (sqlite3.DatabaseError, pd.errors.DatabaseError) as e:
        raise store_error(db, e) from None
    keys = list(zip(members.run_id, members.member, strict=True))
    labels = pd.DataFrame(
        [
            json_field(s, db, f"table members, run {r} member {m}, column labels")
            for s, (r, m) in zip(members.pop("labels"), keys, strict=True)
        ],
        index=members.index,
    )
    members = pd.concat([members, labels.drop(columns=[c for c in ("run_id", "member") if c in labels])], axis=1)
    df = metrics.merge(members, on=["run_id", "member"], how="left").merge(runs, on="run_id", how="left")
    return df.sort_values(["run_id", "member", "name", "epoch"]).reset_index(drop=True)


def load_runs(path: str | Path) -> pd.DataFrame:
    """The run directory's cells, read-only: ``run_id, status, error, epoch`` (one row per cell).

    Raises:
        FileNotFoundError: no results.db there.
        StoreError: the store cannot be read (the message names the file).

    Example:
        >>> import tempfile; from iwlab.store.db import Store
        >>> run_dir = Path(tempfile.mkdtemp()); Store(run_dir / "results.db").close()
        >>> load_runs(run_dir).columns.tolist()
        ['run_id', 'status', 'error', 'epoch']
    """
    db = _db_path(path)
    try:
        con = connect_readonly(db)
        try:
            check_schema(con, db, require=True)
            return pd.read_sql_query("SELECT run_id, status, error, epoch FROM runs ORDER BY rowid", con)
        finally:
            con.close()
    except (sqlite3.DatabaseError, pd.errors.DatabaseError) as e:
        raise store_error(db, e) from None


def export(path: str | Path, fmt: Literal["csv", "parquet"] = "csv", output: str | Path | None = None) -> str | None:
    """Write :func:`load` as CSV or Parquet; returns CSV text when ``fmt="csv"`` and ``output`` is None.

    Parquet with no ``output`` goes to ``RUN_DIR/results.parquet``.

    Raises:
        ValueError: an unknown ``fmt``, or an ``output`` that is one of the run's own files or a folder.
        ImportError: Parquet without pyarrow (the message names the install command).
        StoreError: the store cannot be read (the message names the file).

    Example:
        >>> import tempfile; from iwlab.store.db import Store
        >>> run_dir = Path(tempfile.mkdtemp()); Store(run_dir / "results.db").close()
        >>> export(run_dir, "csv", run_dir / "metrics.csv") is None, (run_dir / "metrics.csv").exists()
        (True, True)
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"format must be csv or parquet, got '{fmt}'")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401  (optional dependency, needed by pandas' to_parquet)
        except ImportError:
            raise ImportError("parquet export needs pyarrow: pip install 'iwlab[parquet]'") from None
    if output is not None:
        _check_output(path, output)
    df = load(path)
    if fmt == "csv":
        if output is None:
            return df.to_csv(index=False)
        df.to_csv(output, index=False)
        return None
    df.to_parquet(default_parquet_path(path) if output is None else output, index=False)
    return None


# files of a run directory an export must never overwrite (the metrics themselves, the run's record)
_RUN_FILES = ("results.db", "results.db-wal", "results.db-shm", "config.json", "provenance.json")


def _check_output(path: str | Path, output: str | Path) -> None:
    """Refuse an ``output`` that is one of the run directory's own files (``--output RUN/results.db``)."""
    run_dir = _db_path(path).parent.resolve()
    out = Path(output).resolve()
    if out.parent == run_dir and out.name in _RUN_FILES:
        raise ValueError(f"--output {output} would overwrite the run's own {out.name}; choose another file")
    if out.is_dir():
        raise ValueError(f"--output {output} is a directory; give a file name")


def default_parquet_path(path: str | Path) -> Path:
    """Where :func:`export` writes Parquet when no output is given: ``RUN_DIR/results.parquet``.

    Example:
        >>> import tempfile; from iwlab.store.db import Store
        >>> run_dir = Path(tempfile.mkdtemp()); Store(run_dir / "results.db").close()
        >>> default_parquet_path(run_dir) == run_dir / "results.parquet"
        True
    """
    return _db_path(path).parent / "results.parquet"
