"""The Slurm executor (issue 17, item 4): cells as submitit jobs, recorded by the driver alone.

The end-to-end tests run submitit's *local* cluster (each job a local process, the same pickling,
result files and polling as on Slurm); the parameter and interrupt tests use a tiny in-process
stand-in for the ``submitit`` module, so they need neither Slurm nor submitit.
"""

import functools
import sys
import types
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

import iwlab.results
from iwlab.cli import main, run_cmd
from iwlab.config import config_to_dict
from iwlab.executors import MAX_REQUEUES, CellJob, SlurmOptions, run_slurm
from iwlab.experiments import make_config
from iwlab.runner import run_sweep
from iwlab.runner.execute import _record, run_cell_task
from iwlab.store import Store

OVERRIDES = ["epochs=3", "n_per_class=16", "n_test_per_class=16", "grid_size=8", "weights=1,0.25", "models=logreg"]
GRID = ["lr_scale=1,2"]
LOCAL = functools.partial(SlurmOptions, cluster="local", poll_s=0.2)


class _Bar:
    def __init__(self, interrupt_at=None):
        self.n, self.interrupt_at = 0, interrupt_at

    def update(self, k=1):
        self.n += k
        if self.n == self.interrupt_at:
            raise KeyboardInterrupt


# -- end to end on submitit's local cluster -----------------------------------------------------------


def test_cli_sweep_on_slurm_equals_in_process(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    # the CLI builds SlurmOptions for a real cluster; the local one runs the same jobs as processes here
    monkeypatch.setattr(run_cmd, "SlurmOptions", LOCAL)
    ref = run_sweep(
        "synthetic", "quick", OVERRIDES, GRID, out=tmp_path / "ref", workers=1, progress=False, report=False
    )
    out = tmp_path / "slurm"
    args = ["sweep", "synthetic", *(f"--set={o}" for o in OVERRIDES), "--grid", GRID[0], "--out", str(out)]
    args += ["--executor", "slurm", "--slurm-time", "5", "--slurm-additional", "account=abc", "--no-progress"]
    assert main(args) == 0

    runs = Store(out / "results.db").runs()
    assert sorted(r["run_id"] for r in runs) == ["lr_scale=1.0/logreg", "lr_scale=2.0/logreg"]
    assert {r["status"] for r in runs} == {"done"}
    keys = ["run_id", "member", "name", "epoch"]
    a = iwlab.results.load(ref).sort_values(keys).reset_index(drop=True)
    b = iwlab.results.load(out).sort_values(keys).reset_index(drop=True)
    assert len(a) > 0
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    # one submitit job per cell, its logs and result under RUN_DIR/slurm; workers wrote their checkpoints
    assert len(list((out / "slurm").glob("*_result.pkl"))) == 2 and list((out / "slurm").glob("*_log.out"))
    assert len(list((out / "checkpoints").glob("*.pt"))) == 2
    assert (out / "report.html").exists()


def _crash_or_run(name, cfg_dict, cell_id, params, run_dir, device, progress, threads):
    if cell_id == "crash":
        raise RuntimeError("worker died")  # not caught: the whole job fails, as a lost node would
    return run_cell_task(name, cfg_dict, cell_id, params, run_dir, device, progress, threads)


def test_failed_and_crashed_cells_are_recorded_with_their_tracebacks(tmp_path):
    cloudpickle = pytest.importorskip("cloudpickle")
    pytest.importorskip("submitit")
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the local jobs cannot import this test file
    try:
        cfg = config_to_dict(make_config("synthetic", "quick", OVERRIDES))
        store = Store(tmp_path / "run" / "results.db")
        cells = ["logreg", "bad", "crash"]
        store.add_runs("synthetic", [(c, {}) for c in cells])
        # "bad" has no model: run_cell raises inside the worker, which reports the traceback
        todo = [("logreg", cfg, {"model": "logreg"}), ("bad", cfg, {}), ("crash", cfg, {"model": "logreg"})]
        bar = _Bar()
        run_slurm(store, "synthetic", todo, tmp_path / "run", "cpu", bar, _record, _crash_or_run, LOCAL())
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    runs = {r["run_id"]: r for r in store.runs()}
    assert runs["logreg"]["status"] == "done" and bar.n == 3
    assert runs["bad"]["status"] == "failed"
    assert runs["bad"]["error"].startswith("Traceback") and runs["bad"]["error"].rstrip().endswith("KeyError: 'model'")
    assert runs["crash"]["status"] == "failed" and "RuntimeError: worker died" in runs["crash"]["error"]


# -- requeue --------------------------------------------------------------------------------------------


def test_checkpoint_resubmits_the_same_cell_until_the_limit(tmp_path):
    submitit = pytest.importorskip("submitit")
    from submitit.core.job_environment import _checkpoint

    job = CellJob(max, (1, 7, 3))
    resub = job.checkpoint()
    assert isinstance(resub, submitit.helpers.DelayedSubmission)
    assert isinstance(resub.function, CellJob) and resub.function is not job
    assert resub.function.task_fn is max and resub.function.args == (1, 7, 3) and resub.function.requeues == 1
    assert resub.args == () and resub.kwargs == {}

    # submitit's own preemption path: it calls checkpoint() and dumps what the requeued job will run
    delayed = submitit.helpers.DelayedSubmission(job)
    assert _checkpoint(delayed, tmp_path / "submitted.pkl", countdown=3) == ""  # "" means: requeued
    again = submitit.helpers.DelayedSubmission.load(tmp_path / "submitted.pkl")
    assert again.result() == 7 and again.function.requeues == 1

    last = CellJob(max, (1, 7, 3), requeues=MAX_REQUEUES)
    assert last.checkpoint() is None  # past the limit: not requeued, the driver records a failure
    delayed = submitit.helpers.DelayedSubmission(last)
    assert _checkpoint(delayed, tmp_path / "last.pkl", countdown=3) == "checkpoint function returned None"


# -- a stand-in for submitit ------------------------------------------------------------------------------


class FakeSubmitit(types.ModuleType):
    """Runs each job at submission; every job is done at the first poll."""

    def __init__(self):
        super().__init__("submitit")
        self.executors, self.cancelled = [], []
        fake = self

        class Job:
            def __init__(self, fn):
                self.fn = fn

            def done(self):
                return True

            def result(self):
                return self.fn()

            def cancel(self, check=True):
                fake.cancelled.append(self)

        class AutoExecutor:
            def __init__(self, folder, cluster=None, **kw):
                self.folder, self.cluster, self.kw, self.params, self.jobs = Path(folder), cluster, kw, {}, []
                self.batched = False
                fake.executors.append(self)

            def update_parameters(self, **kw):
                self.params.update(kw)

            @contextmanager
            def batch(self):
                self.batched = True
                yield

            def submit(self, fn):
                assert self.batched  # one array job, not a job per cell
                self.jobs.append(fn)
                return Job(fn)

        self.AutoExecutor = AutoExecutor
        self.helpers = types.SimpleNamespace(DelayedSubmission=lambda fn: ("delayed", fn))


def _task(name, cfg_dict, cell_id, params, run_dir, device, progress, threads):
    return "ok", (cell_id, device, threads)


def _done(store, cell_id, status, payload, grid=None):
    store.set_status(cell_id, "done" if status == "ok" else "failed", error=None if status == "ok" else payload)


def _setup(tmp_path, cells):
    store = Store(tmp_path / "run" / "results.db")
    store.add_runs("synthetic", [(c, {}) for c in cells])
    return store, [(c, {"x": 1}, {"_grid": {"g": 1}}) for c in cells]


def test_fake_slurm_parameters(tmp_path, monkeypatch):
    fake = FakeSubmitit()
    monkeypatch.setitem(sys.modules, "submitit", fake)
    monkeypatch.setattr("iwlab.executors.shutil.which", lambda cmd: f"/usr/bin/{cmd}")
    monkeypatch.chdir(tmp_path)
    store, todo = _setup(tmp_path, ["a", "b"])
    opts = SlurmOptions(partition="gpu", time_min=30, mem_gb=16, array_parallelism=4, additional={"account": "abc"})
    run_slurm(store, "synthetic", todo, Path("run"), "cuda:1", _Bar(), _done, _task, opts, threads=2)
    (ex,) = fake.executors
    assert ex.folder == tmp_path / "run" / "slurm" and ex.cluster == "slurm"
    assert ex.kw == {"slurm_max_num_timeout": MAX_REQUEUES}
    assert ex.params == {
        "name": "iwlab-synthetic",
        "timeout_min": 30,
        "cpus_per_task": 1,
        "mem_gb": 16,
        "slurm_partition": "gpu",
        "slurm_gpus_per_task": 1,  # --device cuda asks one GPU per task by default
        "slurm_array_parallelism": 4,
        "slurm_additional_parameters": {"account": "abc"},
    }
    # each task gets the absolute run dir, sees its GPU as cuda (Slurm numbers a task's GPUs from 0)
    assert [j.args[4] for j in ex.jobs] == [str(tmp_path / "run")] * 2
    assert {j.args[5] for j in ex.jobs} == {"cuda"} and {j.args[7] for j in ex.jobs} == {2}
    assert store.status("a") == store.status("b") == "done"


def test_fake_slurm_interrupt_cancels_and_resets(tmp_path, monkeypatch):
    fake = FakeSubmitit()
    monkeypatch.setitem(sys.modules, "submitit", fake)
    store, todo = _setup(tmp_path, ["a", "b", "c"])
    with pytest.raises(KeyboardInterrupt):
        opts = SlurmOptions(cluster="local")
        run_slurm(store, "synthetic", todo, tmp_path / "run", "cpu", _Bar(interrupt_at=1), _done, _task, opts)
    assert [store.status(c) for c in "abc"] == ["done", "pending", "pending"]
    assert len(fake.cancelled) == 2


def test_missing_submitit_has_clear_message(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit -> ImportError
    store, todo = _setup(tmp_path, ["a"])
    with pytest.raises(ImportError, match=r"^the Slurm executor needs submitit: pip install 'iwlab\[slurm\]'$"):
        run_slurm(store, "synthetic", todo, tmp_path, "cpu", _Bar(), _done, _task, SlurmOptions())
    assert store.status("a") == "pending"


def test_cli_slurm_without_sbatch_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "submitit", FakeSubmitit())
    monkeypatch.setattr("iwlab.runner.placement.shutil.which", lambda cmd: None)
    args = ["run", "synthetic", *(f"--set={o}" for o in OVERRIDES), "--out", str(tmp_path / "d")]
    assert main([*args, "--executor", "slurm", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "iwlab: error: --executor slurm needs Slurm's sbatch on PATH: run iwlab on the cluster's login node"
    assert not (tmp_path / "d").exists()  # refused before the run directory is made


@pytest.mark.parametrize(
    "device, gpus, why",
    [("cuda", "0", "the tasks would have no GPU"), ("cpu", "2", "the cells would not use them")],
)
def test_cli_slurm_gpus_must_match_the_device(tmp_path, monkeypatch, capsys, device, gpus, why):
    monkeypatch.setitem(sys.modules, "submitit", FakeSubmitit())
    monkeypatch.setattr("iwlab.runner.placement.shutil.which", lambda cmd: "/usr/bin/sbatch")
    args = ["run", "synthetic", *(f"--set={o}" for o in OVERRIDES), "--out", str(tmp_path / "d")]
    code = main([*args, "--executor", "slurm", "--device", device, "--slurm-gpus-per-task", gpus, "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == f"iwlab: error: --slurm-gpus-per-task {gpus} with --device {device}: {why}"
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"time_min": 0}, "--slurm-time must be an integer >= 1, got 0"),
        ({"gpus_per_task": -1}, "--slurm-gpus-per-task must be an integer >= 0, got -1"),
        ({"mem_gb": 0.0}, "--slurm-mem-gb must be a finite number at least 1/1024 \\(1 MB\\), got 0.0"),
        ({"mem_gb": float("inf")}, "--slurm-mem-gb must be a finite number at least 1/1024 \\(1 MB\\), got inf"),
        ({"mem_gb": True}, "--slurm-mem-gb must be a finite number at least 1/1024 \\(1 MB\\), got True"),
        ({"mem_gb": "4"}, "--slurm-mem-gb must be a finite number at least 1/1024 \\(1 MB\\), got '4'"),
        ({"mem_gb": 0.0005}, "--slurm-mem-gb must be a finite number at least 1/1024 \\(1 MB\\), got 0.0005"),
        ({"mem_gb": 10**400}, "--slurm-mem-gb must be a finite number at least 1/1024"),
        ({"poll_s": None}, "poll_s must be a finite number > 0, got None"),
        ({"poll_s": -1.0}, "poll_s must be a finite number > 0, got -1.0"),
        ({"poll_s": float("nan")}, "poll_s must be a finite number > 0, got nan"),
        ({"array_parallelism": 2.5}, "--slurm-array-parallelism must be an integer >= 1, got 2.5"),
        ({"cluster": "pbs"}, "cluster must be 'slurm' or 'local', got 'pbs'"),
    ],
)
def test_slurm_options_are_checked(kw, message):
    with pytest.raises(ValueError, match=f"^{message}"):
        SlurmOptions(**kw)


def test_cli_slurm_additional_needs_key_value(capsys):
    assert main(["sweep", "synthetic", "--executor", "slurm", "--slurm-additional", "account"]) == 2
    assert capsys.readouterr().err.strip() == "iwlab: error: --slurm-additional expects KEY=VALUE, got 'account'"


def test_threads_per_worker_must_fit_the_task(monkeypatch):
    from iwlab.runner.execute import check_executor_options
    from iwlab.runner.rundir import RunError

    monkeypatch.setitem(sys.modules, "submitit", FakeSubmitit())
    monkeypatch.setattr("iwlab.runner.placement.shutil.which", lambda cmd: "/usr/bin/sbatch")
    with pytest.raises(RunError, match=r"^--threads-per-worker 4 exceeds the 1 CPU\(s\) each Slurm task asks for"):
        check_executor_options("slurm", "cpu", threads_per_worker=4)
    check_executor_options("slurm", "cpu", threads_per_worker=4, slurm=SlurmOptions(cpus_per_task=4))  # fits


def test_slurm_memory_accepts_numpy_numbers():
    import numpy as np

    assert SlurmOptions(mem_gb=np.int64(4)).parameters("cpu")["mem_gb"] == 4
