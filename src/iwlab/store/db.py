"""SQLite results store in the run directory: runs, members, metrics (long form) and artifacts.

One file, ``results.db``, in WAL mode so that readers never block the writer and two writer
processes serialise instead of failing (each write is a short transaction with a busy timeout). In a
run, only the driver writes; workers return their rows.

Schema:
    meta(key, value)                                    experiment, profile, config, provenance (JSON)
    runs(run_id, experiment, cell, config, provenance, status, error, epoch, started, finished)
        status is one of pending, running, done, failed, diverged
    members(run_id, member, labels, diverged_epoch)    one row per model of a cell's ensemble
    metrics(run_id, member, epoch, name, value)         long form; (run_id, member, epoch, name) unique
    artifacts(run_id, kind, path, created)              figures, grids, checkpoints

Example:
    >>> import tempfile, pathlib
    >>> store = Store(pathlib.Path(tempfile.mkdtemp()) / "results.db")
    >>> store.add_runs("synthetic", [("cell-a", {"lr": 0.1})])
    >>> store.write_metrics("cell-a", [(1, 0, "train_loss", 0.3)])
    >>> store.status("cell-a")
    'pending'
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

STATUSES = ("pending", "running", "done", "failed", "diverged")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, experiment TEXT, cell TEXT, config TEXT, provenance TEXT,
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'done', 'failed', 'diverged')),
    error TEXT, epoch INTEGER, started REAL, finished REAL);
CREATE TABLE IF NOT EXISTS members (
    run_id TEXT, member INTEGER, labels TEXT, diverged_epoch INTEGER,
    PRIMARY KEY (run_id, member));
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT, member INTEGER, epoch INTEGER, name TEXT, value REAL,
    PRIMARY KEY (run_id, member, epoch, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS artifacts (
    run_id TEXT, kind TEXT, path TEXT, created REAL, PRIMARY KEY (run_id, path));
"""


# the columns every table must have; a file whose tables differ was not written by iwlab
COLUMNS = {
    "meta": ("key", "value"),
    "runs": ("run_id", "experiment", "cell", "config", "provenance", "status", "error", "epoch", "started", "finished"),
    "members": ("run_id", "member", "labels", "diverged_epoch"),
    "metrics": ("run_id", "member", "epoch", "name", "value"),
    "artifacts": ("run_id", "kind", "path", "created"),
}


class StoreError(RuntimeError):
    """``results.db`` is not a readable iwlab results store (corrupt, truncated, another file); names the file."""


def store_error(path: str | Path, err: BaseException) -> StoreError:
    """A one-line :class:`StoreError` for an SQLite (or pandas-wrapped SQLite) error on ``path``.

    Example:
        >>> str(store_error("runs/x/results.db", sqlite3.DatabaseError("file is not a database")))
        'runs/x/results.db is not a readable iwlab results store (file is not a database); move it aside (a new run can use another --out)'
    """  # noqa: E501
    reason = str(err).split(": ", 1)[-1] if "Execution failed on sql" in str(err) else str(err)
    return StoreError(
        f"{path} is not a readable iwlab results store ({reason}); move it aside (a new run can use another --out)"
    )


def json_field(text: str, path: str | Path, where: str) -> Any:
    """``json.loads(text)``, or a :class:`StoreError` naming the file and the table/key that holds bad JSON."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError) as e:
        raise StoreError(f"{path}: {where} is not valid JSON ({e}); the store is damaged") from None


def check_schema(conn: sqlite3.Connection, path: str | Path, *, require: bool = False) -> None:
    """Raise :class:`StoreError` if a table of :data:`COLUMNS` lacks a column (or, with ``require``, is missing).

    Example:
        >>> check_schema(sqlite3.connect(":memory:"), "x.db")  # an empty database is a new store
    """
    for table, cols in COLUMNS.items():
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if not have and not require:
            continue
        missing = [c for c in cols if c not in have]
        if missing:
            what = f"has no table '{table}'" if not have else f"table '{table}' lacks columns {', '.join(missing)}"
            raise StoreError(
                f"{path} was not written by iwlab ({what}); move it aside (a new run can use another --out)"
            )


def failure_reason(error: str | None) -> str:
    r"""The one-line reason of a stored traceback: its last line (``"ValueError: ..."``).

    Example:
        >>> failure_reason("Traceback (most recent call last):\n  ...\nValueError: lr must be > 0\n")
        'ValueError: lr must be > 0'
    """
    lines = [ln.strip() for ln in (error or "").strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no reason recorded"


class Store:
    """A handle on one ``results.db``; cheap to open, safe to open from several processes.

    Raises:
        StoreError: the file is not a readable SQLite database, or its tables are not iwlab's
            (one line, naming the file).

    Example:
        >>> import tempfile; store = Store(Path(tempfile.mkdtemp()) / "results.db")
        >>> store.runs()
        []
    """

    def __init__(self, path: str | Path, timeout: float = 60.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and not self.path.is_file():
            raise StoreError(f"{self.path} is not a file; move it aside (a new run can use another --out)")
        try:
            self._conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process kills
            self._conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            check_schema(self._conn, self.path)
            with self._tx() as c:
                for stmt in SCHEMA.split(";"):
                    if stmt.strip():
                        c.execute(stmt)
            # a truncated file opens fine and fails on the first page it lacks: read every table once
            for table in COLUMNS:
                self._conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
        except sqlite3.DatabaseError as e:
            raise store_error(self.path, e) from None

    @contextmanager
    def _tx(self):  # noqa: ANN202 - internal
        # BEGIN IMMEDIATE takes the write lock up front, so concurrent writers queue on busy_timeout
        # instead of failing half-way through a transaction.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def close(self) -> None:
        """Close the connection.

        Example:
            >>> import tempfile; store = Store(Path(tempfile.mkdtemp()) / "results.db")
            >>> store.close()
        """
        self._conn.close()

    # -- meta ------------------------------------------------------------------------------------
    def set_meta(self, **items: Any) -> None:
        """Store JSON values under keys (experiment, profile, config, provenance, ...).

        Example:
            >>> import tempfile; store = Store(Path(tempfile.mkdtemp()) / "results.db")
            >>> store.set_meta(experiment="synthetic", profile="quick")
            >>> store.meta()["profile"]
            'quick'
        """
        with self._tx() as c:
            c.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in items.items()],
            )

    def meta(self) -> dict[str, Any]:
        """All meta entries, JSON-decoded.

        Example:
            >>> import tempfile; store = Store(Path(tempfile.mkdtemp()) / "results.db")
            >>> store.set_meta(config={"epochs": 3}); store.meta()["config"]
            {'epochs': 3}
        """
        rows = self._conn.execute("SELECT key, value FROM meta")
        return {k: json_field(v, self.path, f"table meta, key {k}") for k, v in rows}

    # -- runs ------------------------------------------------------------------------------------
    def add_runs(
        self,
        experiment: str,
        cells: Iterable[tuple[str, dict[str, Any]]],
        provenance: dict | None = None,
    ) -> None:
        """Register cells as pending; cells already present keep their status (this is how resume works).

        Example:
            >>> import tempfile; store = Store(Path(tempfile.mkdtemp()) / "results.db")
            >>> store.add_runs("synthetic", [("separable/mlp", {"model": "mlp"})])
            >>> store.status("separable/mlp")
            'pending'
        """
        rows = [
            (rid, experiment, rid, json.dumps(cfg, sort_keys=True), json.dumps(provenance or {})) for rid, cfg in cells
        ]
        with self._tx() as c:
            c.executemany(
                "INSERT OR IGNORE INTO runs (run_id, experiment, cell, config, provenance) VALUES (?,?,?,?,?)",
                rows,
            )

    def set_status(self, run_id: str, status: str, *, error: str | None = None, epoch: int | None = None) -> None:
        """Move a run to ``status`` (one of :data:`STATUSES`), with an optional error text and epoch.

        Example:
            >>> import tempfile; store = Store(Path(tempfile.mkdtemp()) / "results.db")
            >>> store.add_runs("synthetic", [("separable/mlp", {})])
            >>> store.set_status("separable/mlp", "failed", error="ValueError: bad")
            >>> store.status("separable/mlp")
            'failed'
        """
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}; got '{status}'")
        now = time.time()
        with self._tx() as c:
            c.execute(
                "UPDATE runs SET status=?, error=?, epoch=COALESCE(?, epoch),"
                " started=CASE WHEN ?='running' THEN ? ELSE started END,"
                " finished=CASE WHEN ? IN ('done','failed','diverged') THEN ? ELSE finished END"
                " WHERE run_id=?",
                (status, error, epoch, status, now, status, now, run_id),
            )

    def status(self, run_id: str) -> str | None:
        """Status of one run, ``None`` if unknown.

        Example:
            >>> import tempfile; store = Store(Path(tempfile.mkdtemp()) / "results.db")
            >>> store.status("separable/mlp") is None
            True
        """
        row = self._conn.execute("SELECT status FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return row[0] if row else None

    def runs(self) -> list[dict[str, Any]]:
        """All runs as dicts (config and provenance decoded).

        Example:
            >>> import tempfile; store = Store(Path(tempfile.mkdtemp()) / "results.db")
            >>> store.add_runs("synthetic", [("a", {}), ("b", {})])
            >>> [r["status"] for r in store.runs()]
            ['pending', 'pending']
        """
        cur = self._conn.execute("SELECT * FROM runs ORDER BY rowid")
        cols = [d[0] for d in cur.description]
        out = []
        for row in cur:
            r = dict(zip(cols, row, strict=True))
            r["config"] = json_field(r["config"] or "{}", self.path, f"table runs, run {r['run_id']}, column config")
            r["provenance"] = json_field(
                r["provenance"] or "{}", self.path, f"table runs, run {r['run_id']}, column provenance"
            )
            out.append(r)
        return out

    # -- results ---------------------------------------------------------------------------------
    def write_result(
        self,
        run_id: str,
        members: Sequence[dict[str, Any]],
        rows: Iterable[tuple[int, int, str, float]],
        *,
        diverged: Sequence[int] | None = None,
        artifacts: Iterable[tuple[str, str]] = (),
        status: str = "done",
        epoch: int | None = None,
        error: str | None = None,
    ) -> None:
        """Write a finished cell in ONE transaction: members, metrics, artifacts and status.

        ``epoch`` and ``error`` note why a cell is not plainly done (e.g. the first divergence).
        A kill mid-write leaves the cell as it was (not done), so a rerun redoes it; metrics are
        upserted, so a redo writes the same rows again without duplicates.

        Example:
            >>> import tempfile; store = Store(Path(tempfile.mkdtemp()) / "results.db")
            >>> store.add_runs("synthetic", [("separable/mlp", {})])
            >>> store.write_result("separable/mlp", [{"weight": 1.0}], [(1, 0, "train_loss", 0.3)])
            >>> store.status("separable/mlp"), store.query("SELECT name, value FROM metrics")
            ('done', [('train_loss', 0.3)])
        """
        now = time.time()
        div = list(diverged) if diverged is not None else [-1] * len(members)
        with self._tx() as c:
            c.executemany(
                "INSERT OR REPLACE INTO members VALUES (?,?,?,?)",
                [
                    (run_id, i, json.dumps(lab, sort_keys=True), None if d < 0 else int(d))
                    for i, (lab, d) in enumerate(zip(members, div, strict=True))
                ],
            )
            c.executemany(
                "INSERT OR REPLACE INTO metrics VALUES (?,?,?,?,?)",
                ((run_id, int(m), int(e), n, float(v)) for e, m, n, v in rows),
            )
            c.executemany(
                "INSERT OR REPLACE INTO artifacts VALUES (?,?,?,?)",
                [(run_id, k, p, now) for k, p in artifacts],
            )
            c.execute(
                "UPDATE runs SET status=?, error=?, epoch=COALESCE(?, epoch), finished=? WHERE run_id=?",
                (status, error, epoch, now, run_id),
            )

    def write_metrics(self, run_id: str, rows: Iterable[tuple[int, int, str, float]]) -> None:
        """Upsert metric rows ``(epoch, member, name, value)``.

        Example:
            >>> import tempfile; store = Store(Path(tempfile.mkdtemp()) / "results.db")
            >>> store.write_metrics("cell", [(10, 3, "angle", 0.01)])
            >>> store.query("SELECT epoch, member, name FROM metrics")
            [(10, 3, 'angle')]
        """
        with self._tx() as c:
            c.executemany(
                "INSERT OR REPLACE INTO metrics VALUES (?,?,?,?,?)",
                ((run_id, int(m), int(e), n, float(v)) for e, m, n, v in rows),
            )

    def add_artifact(self, run_id: str, kind: str, path: str) -> None:
        """Record a file (figure, grid, checkpoint) that belongs to a run; paths are relative to the run dir.

        Example:
            >>> import tempfile; store = Store(Path(tempfile.mkdtemp()) / "results.db")
            >>> store.add_artifact("", "figure", "figures/fig1.png")
            >>> [a["path"] for a in store.artifacts("figure")]
            ['figures/fig1.png']
        """
        with self._tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO artifacts VALUES (?,?,?,?)",
                (run_id, kind, path, time.time()),
            )

    def artifacts(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Artifacts as dicts, optionally of one kind.

        Example:
            >>> import tempfile; store = Store(Path(tempfile.mkdtemp()) / "results.db")
            >>> store.artifacts("figure")
            []
        """
        q, args = "SELECT run_id, kind, path, created FROM artifacts", ()
        if kind is not None:
            q, args = q + " WHERE kind=?", (kind,)
        return [
            dict(zip(("run_id", "kind", "path", "created"), r, strict=True))
            for r in self._conn.execute(q + " ORDER BY rowid", args)
        ]

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        """Read-only SQL escape hatch.

        Example:
            >>> import tempfile; store = Store(Path(tempfile.mkdtemp()) / "results.db")
            >>> store.query("SELECT COUNT(*) FROM metrics")
            [(0,)]
        """
        return self._conn.execute(sql, args).fetchall()
