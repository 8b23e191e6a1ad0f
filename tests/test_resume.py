"""Runs survive SIGKILL and Ctrl-C: rerunning the same command gives the uninterrupted results.

Each test drives the real command line in a subprocess and interrupts it right after a chosen event
(a checkpoint written, a cell committed, every cell committed), observed by polling the run
directory; then it reruns the same command and compares ``iwlab results DIR --format csv`` with an
uninterrupted run of the same config.
"""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import iwlab.cli

SETTINGS = [
    "--set", "epochs=30",
    "--set", "n_per_class=32",
    "--set", "n_test_per_class=32",
    "--set", "grid_size=16",
    "--set", "weights=1,0.25",
]  # fmt: skip
SWEEP = ["sweep", "synthetic", "--profile", "quick", *SETTINGS, "--seeds", "2"]
RUN = ["run", "synthetic", "--profile", "quick", *SETTINGS, "--set", "seeds=2"]
N_CELLS = 3  # logreg, mlp, mlp_dropout
TIMEOUT = 120


def _iwlab(*args: str) -> list[str]:
    """The ``iwlab`` command line, run by this interpreter."""
    if (Path(iwlab.cli.__file__).parent / "__main__.py").exists():
        return [sys.executable, "-m", "iwlab.cli", *args]
    # iwlab.cli has no __main__.py, so `python -m iwlab.cli` cannot run it
    return [sys.executable, "-c", "import sys; from iwlab.cli import main; sys.exit(main())", *args]


# -- observing a run directory from outside --------------------------------------------------------


def _checkpoints(d: Path) -> dict[str, int]:
    out = {}
    for p in (d / "checkpoints").glob("*.pt"):
        try:
            out[p.name] = p.stat().st_mtime_ns
        except FileNotFoundError:  # replaced right now
            pass
    return out


def _statuses(d: Path) -> list[str]:
    db = d / "results.db"
    if not db.exists():
        return []
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return [s for (s,) in con.execute("SELECT status FROM runs")]
        finally:
            con.close()
    except sqlite3.Error:
        return []


def _snapshot(d: Path) -> dict:
    return {"ckpt": _checkpoints(d), "done": _statuses(d).count("done")}


EVENTS = {
    # a checkpoint was written (or rewritten) by this process: the kill lands mid-cell
    "checkpoint": lambda d, base: _checkpoints(d) != base["ckpt"],
    # a cell was committed to the store by this process
    "cell_done": lambda d, base: _statuses(d).count("done") > base["done"],
    # every cell is committed; the report may not be written yet
    "all_done": lambda d, base: _statuses(d).count("done") == N_CELLS,
}


# The driver records a finished cell, touches MARKER and then sleeps until a signal arrives: a run
# that is interrupted "right after a cell" cannot finish first however busy the machine is.
_BLOCK_AFTER_FIRST_CELL = """
import pathlib, sys, time
import iwlab.runner.execute as runner
from iwlab.cli import main
marker = pathlib.Path(sys.argv.pop(1))
record = runner._record
def blocking_record(*args, **kwargs):
    record(*args, **kwargs)
    marker.touch()
    runner._record = record
    time.sleep(3600)
runner._record = blocking_record
sys.exit(main())
"""


def _start(args: list[str], log: Path, block_marker: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = (
        _iwlab(*args)
        if block_marker is None
        else [sys.executable, "-c", _BLOCK_AFTER_FIRST_CELL, str(block_marker), *args]
    )
    with open(log, "ab") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)


def _interrupt_after(args: list[str], d: Path, event: str, sig: int, log: Path):
    """Start the command, send ``sig`` right after ``event``; returns (fired, returncode)."""
    base = _snapshot(d)
    proc = _start(args, log)
    t0 = time.monotonic()
    try:
        while proc.poll() is None:
            if EVENTS[event](d, base):
                proc.send_signal(sig)
                return True, proc.wait(timeout=60)
            if time.monotonic() - t0 > TIMEOUT:
                raise AssertionError(f"no '{event}' within {TIMEOUT} s; log:\n{log.read_text()}")
            time.sleep(0.005)
        return False, proc.returncode
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _complete(args: list[str], log: Path) -> None:
    proc = _start(args, log)
    rc = proc.wait(timeout=TIMEOUT)
    assert rc == 0, log.read_text()


def _csv(d: Path) -> pd.DataFrame:
    """``iwlab results D --format csv`` without columns that record times or paths."""
    out = d.parent / f"{d.name}.csv"
    assert iwlab.cli.main(["results", str(d), "--format", "csv", "--output", str(out)]) == 0
    df = pd.read_csv(out)
    drop = [c for c in df.columns if any(k in c for k in ("time", "path", "started", "finished"))]
    return df.drop(columns=drop)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> pd.DataFrame:
    """The uninterrupted sweep; `iwlab run` of the same config has the same cells and members."""
    d = tmp_path_factory.mktemp("reference") / "run"
    _complete([*SWEEP, "--out", str(d), "--workers", "1", "--no-progress"], d.parent / "log.txt")
    df = _csv(d)
    assert set(df.status) == {"done"} and df.run_id.nunique() == N_CELLS
    return df


# -- tests -----------------------------------------------------------------------------------------


def test_sweep_survives_sigkill(tmp_path, reference):
    """`iwlab sweep synthetic --profile quick --seeds 2 --out D`, SIGKILLed at five points."""
    d = tmp_path / "run"
    log = tmp_path / "log.txt"
    args = [*SWEEP, "--out", str(d), "--workers", "1", "--no-progress"]
    schedule = ["checkpoint", "cell_done", "checkpoint", "checkpoint", "all_done"]
    killed = []
    for event in schedule:
        fired, rc = _interrupt_after(args, d, event, signal.SIGKILL, log)
        if fired:
            assert rc == -signal.SIGKILL
            killed.append(event)
        else:  # the run finished before the event could be seen; nothing to resume then
            assert rc == 0, log.read_text()
    # all_done can race with the end of the process; the mid-run kills cannot
    assert killed[:4] == schedule[:4], killed
    _complete(args, log)
    assert (d / "report.md").exists()
    assert _statuses(d) == ["done"] * N_CELLS
    pd.testing.assert_frame_equal(_csv(d), reference, check_exact=True)


def test_run_sigint_exits_130_and_resumes(tmp_path, reference):
    """Ctrl-C on `iwlab run` (worker pool): exit code 130, a rerun hint, and a clean resume.

    The run blocks after its first cell until it is signalled (see _BLOCK_AFTER_FIRST_CELL), so the
    signal always lands mid-run, however slow or busy the machine.
    """
    d = tmp_path / "run"
    log = tmp_path / "log.txt"
    marker = tmp_path / "blocked"
    args = [*RUN, "--out", str(d), "--workers", "2", "--no-progress"]
    proc = _start(args, log, block_marker=marker)
    try:
        t0 = time.monotonic()
        while not marker.exists():
            assert proc.poll() is None, f"the run ended before it blocked:\n{log.read_text()}"
            assert time.monotonic() - t0 < TIMEOUT, f"no cell finished within {TIMEOUT} s:\n{log.read_text()}"
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert rc == 130, text
    assert "interrupted" in text and "rerun the same command to resume" in text
    assert "Traceback" not in text
    statuses = _statuses(d)
    assert len(statuses) == N_CELLS and set(statuses) <= {"done", "pending"}
    assert "pending" in statuses
    _complete(args, log)
    assert _statuses(d) == ["done"] * N_CELLS
    assert (d / "report.html").exists()
    pd.testing.assert_frame_equal(_csv(d), reference, check_exact=True)
