"""benchmarks/bench_dataloader.py runs end to end on generated data (its numbers are not asserted: speed
lives in benchmarks, not in tests)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_dataloader.py"), "--fixture", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )


@pytest.mark.slow
def test_speed_table_has_every_loader_and_worker_count():
    out = _run("--iterations", "1", "--rounds", "1", "--warmup", "1")
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [
        line.split() for line in out.stdout.splitlines() if line.split()[:1] in (["plain"], ["batch_sampler"], ["pool"])
    ]
    assert sorted((r[0], r[1]) for r in rows) == sorted(
        (k, w) for k in ("plain", "batch_sampler", "pool") for w in ("0", "2")
    )
    assert all(float(r[3]) > 0 for r in rows) and "load average after" in out.stdout


@pytest.mark.slow
def test_staleness_mode_reports_each_setting():
    out = _run("--staleness", "--steps", "3", "--seeds", "1")
    assert out.returncode == 0, out.stderr[-2000:]
    assert [line.split()[1] for line in out.stdout.splitlines() if line.startswith("staleness")] == ["0", "4", "32"]
