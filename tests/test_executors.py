"""The Ray executor: same metrics as the local one; interrupt, crash and import handling.

The interrupt/crash tests use a tiny in-process stand-in for the ``ray`` module, so they run without
ray installed; the equality test runs a real local Ray instance.
"""

import sys
import types
from pathlib import Path

import pandas as pd
import pytest

from iwlab.store import Store

OVERRIDES = ["epochs=3", "n_per_class=32", "n_test_per_class=32", "grid_size=16", "weights=1,0.25"]
GRID = ["lr_scale=1,2"]


def test_ray_equals_local(tmp_path):
    pytest.importorskip("ray")
    import ray

    import iwlab.results
    from iwlab.runner import run_sweep

    kw = dict(seeds=2, progress=False)
    local = run_sweep("synthetic", "quick", OVERRIDES, GRID, out=tmp_path / "local", workers=1, **kw)
    assert not ray.is_initialized()
    remote = run_sweep("synthetic", "quick", OVERRIDES, GRID, out=tmp_path / "ray", executor="ray", workers=2, **kw)
    assert not ray.is_initialized()  # we started it, so we shut it down

    a, b = iwlab.results.load(local), iwlab.results.load(remote)
    assert len(a) > 0 and set(a.status) == {"done"}
    keys = ["run_id", "member", "name", "epoch"]
    a = a.sort_values(keys).reset_index(drop=True)
    b = b.sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert sorted(a.run_id.unique()) == [
        f"lr_scale={s}/{m}" for s in (1.0, 2.0) for m in ("logreg", "mlp", "mlp_dropout")
    ]
    runs = Store(remote / "results.db").runs()
    assert [r["status"] for r in runs] == ["done"] * 6
    # workers wrote their checkpoints into the (shared) run directory
    assert len(list((remote / "checkpoints").glob("*.pt"))) == 6


# -- a stand-in for the ray module -----------------------------------------------------------------


class _Ref:
    def __init__(self, value=None, error=None):
        self.value, self.error = value, error


class FakeRay(types.ModuleType):
    """Runs tasks eagerly at submission; ``wait`` returns one ref at a time."""

    def __init__(self, interrupt_after=None, crash_cells=(), initialized=False):
        super().__init__("ray")
        self.interrupt_after = interrupt_after
        self.crash_cells = set(crash_cells)
        self.initialized = initialized
        self.init_kwargs = None
        self.shutdown_called = False
        self.cancelled = []
        self.submitted = []
        self.remote_opts = None
        self.n_wait = 0

    def is_initialized(self):
        return self.initialized

    def init(self, **kwargs):
        self.init_kwargs = kwargs
        self.initialized = True

    def shutdown(self):
        self.shutdown_called = True
        self.initialized = False

    def remote(self, **opts):
        self.remote_opts = opts
        fake = self

        class Remote:
            def __init__(self, fn):
                self.fn = fn

            def remote(self, *args):
                fake.submitted.append(args)
                if args[2] in fake.crash_cells:
                    return _Ref(error=RuntimeError("worker died"))
                return _Ref(value=self.fn(*args))

        return Remote

    def wait(self, refs, num_returns=1):
        self.n_wait += 1
        if self.interrupt_after is not None and self.n_wait > self.interrupt_after:
            raise KeyboardInterrupt
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        if ref.error is not None:
            raise ref.error
        return ref.value

    def cancel(self, ref, force=False):
        self.cancelled.append((ref, force))


class _Bar:
    def __init__(self):
        self.n = 0

    def update(self, k=1):
        self.n += k


def _task(name, cfg_dict, cell_id, params, run_dir, device, progress, threads):
    if cell_id == "bad":
        return "failed", "Traceback (most recent call last):\nValueError: bad cell"
    return "ok", {"cell": cell_id, "run_dir": run_dir, "threads": threads}


def _record(store, cell_id, status, payload, grid=None):
    if status == "ok":
        store.set_status(cell_id, "done")
    else:
        store.set_status(cell_id, "failed", error=payload)


def _setup(tmp_path, cells):
    store = Store(tmp_path / "run" / "results.db")
    store.add_runs("synthetic", [(c, {}) for c in cells])
    todo = [(c, {"x": 1}, {"_grid": {"g": 1}}) for c in cells]
    return store, todo


def _run(fake, tmp_path, monkeypatch, cells, address=None, run_dir=None):
    from iwlab.executors import run_ray

    monkeypatch.setitem(sys.modules, "ray", fake)
    store, todo = _setup(tmp_path, cells)
    bar = _Bar()
    run_dir = run_dir if run_dir is not None else tmp_path / "run"
    run_ray(store, "synthetic", todo, run_dir, "cpu", 3, address, bar, _record, _task)
    return store, bar


def test_fake_ray_records_everything(tmp_path, monkeypatch):
    fake = FakeRay()
    monkeypatch.chdir(tmp_path)
    store, bar = _run(fake, tmp_path, monkeypatch, ["a", "bad", "c"], run_dir=Path("run"))
    assert {c: store.status(c) for c in "a c".split()} == {"a": "done", "c": "done"}
    runs = {r["run_id"]: r for r in store.runs()}
    assert runs["bad"]["status"] == "failed" and "ValueError: bad cell" in runs["bad"]["error"]
    assert bar.n == 3
    assert fake.init_kwargs == {"num_cpus": 3, "include_dashboard": False, "log_to_driver": False}
    assert fake.shutdown_called
    assert fake.remote_opts["num_cpus"] == 1
    # the run directory goes to the workers as an absolute path; one thread per task
    assert {a[4] for a in fake.submitted} == {str(tmp_path / "run")}
    assert {a[7] for a in fake.submitted} == {1}


def test_fake_ray_existing_cluster_is_left_alone(tmp_path, monkeypatch):
    fake = FakeRay(initialized=True)
    _run(fake, tmp_path, monkeypatch, ["a"])
    assert fake.init_kwargs is None and not fake.shutdown_called


def test_fake_ray_address(tmp_path, monkeypatch):
    fake = FakeRay()
    _run(fake, tmp_path, monkeypatch, ["a"], address="ray://head:10001")
    assert fake.init_kwargs["address"] == "ray://head:10001" and fake.shutdown_called


def test_fake_ray_cuda_requests_gpu_share(tmp_path, monkeypatch):
    from iwlab.executors import run_ray

    fake = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    store, todo = _setup(tmp_path, ["a", "b"])
    run_ray(store, "synthetic", todo, tmp_path, "cuda:1", 4, None, _Bar(), _record, _task)
    assert fake.remote_opts["num_gpus"] == 0.25 and fake.remote_opts["num_cpus"] == 1
    assert {a[5] for a in fake.submitted} == {"cuda"}  # Ray shows each task its GPU as cuda:0
    assert store.status("a") == store.status("b") == "done"


def test_fake_ray_worker_crash_is_recorded(tmp_path, monkeypatch):
    fake = FakeRay(crash_cells={"b"})
    store, bar = _run(fake, tmp_path, monkeypatch, ["a", "b", "c"])
    runs = {r["run_id"]: r for r in store.runs()}
    assert runs["b"]["status"] == "failed" and "worker died" in runs["b"]["error"]
    assert runs["a"]["status"] == runs["c"]["status"] == "done" and bar.n == 3


def test_fake_ray_interrupt_cancels_and_resets(tmp_path, monkeypatch):
    fake = FakeRay(interrupt_after=1)
    with pytest.raises(KeyboardInterrupt):
        _run(fake, tmp_path, monkeypatch, ["a", "b", "c"])
    store = Store(tmp_path / "run" / "results.db")
    assert [store.status(c) for c in "abc"] == ["done", "pending", "pending"]
    assert len(fake.cancelled) == 2 and all(force for _, force in fake.cancelled)
    assert fake.shutdown_called


def test_missing_ray_has_clear_message(tmp_path, monkeypatch):
    from iwlab.executors import run_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    store, todo = _setup(tmp_path, ["a"])
    with pytest.raises(ImportError, match=r"the Ray executor needs ray: pip install 'iwlab\[ray\]'"):
        run_ray(store, "synthetic", todo, tmp_path, "cpu", 1, None, _Bar(), _record, _task)
    assert store.status("a") == "pending"


def test_cli_sweep_without_ray_is_one_line(tmp_path, monkeypatch, capsys):
    from iwlab.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)
    args = [
        "sweep",
        "synthetic",
        "--out",
        str(tmp_path / "d"),
        "--executor",
        "ray",
        "--no-progress",
    ]
    args += [f"--set={o}" for o in OVERRIDES]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err == "iwlab: error: the Ray executor needs ray: pip install 'iwlab[ray]'"
