"""Local execution on several GPUs and worker threads (issue 17, item 4): GPU slots, what a spawned worker
really sees, the option checks, and the network file system warning.

No GPU is needed: the pool tests spawn CPU workers and read back the environment and thread count each
one was given.
"""

import multiprocessing as mp
import os
from collections import Counter
from pathlib import Path

import pytest
import torch

from iwlab.cli import main
from iwlab.runner import rundir
from iwlab.runner.execute import check_executor_options, gpu_slots, make_pool, visible_gpus
from iwlab.runner.rundir import RunError, filesystem_type, network_fs_warning, preflight

# -- GPU slots ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "visible, n, k, expected",
    [
        (["0", "1"], 4, 2, ["0", "1", "0", "1"]),
        (["0", "1", "2"], 2, None, ["0", "1"]),
        (["3"], 3, 3, ["3", "3", "3"]),
        (["GPU-a", "GPU-b"], 3, None, ["GPU-a", "GPU-b", "GPU-a"]),  # uuids pass through
    ],
)
def test_gpu_slots_round_robin(visible, n, k, expected):
    assert gpu_slots(visible, n, k) == expected


@pytest.mark.parametrize("n_gpus, k", [(1, 1), (2, 3), (3, 2), (4, 1)])
def test_gpu_slots_never_put_more_than_k_on_a_gpu_and_balance(n_gpus, k):
    visible = [str(i) for i in range(n_gpus)]
    for n in range(1, n_gpus * k + 1):
        load = Counter(gpu_slots(visible, n, k))
        assert sum(load.values()) == n and set(load) <= set(visible)
        assert max(load.values()) <= k
        # round robin: loads differ by at most one, and the first GPUs fill first
        assert [load.get(g, 0) for g in visible] == [n // n_gpus + (i < n % n_gpus) for i in range(n_gpus)]


def test_gpu_slots_errors():
    with pytest.raises(ValueError, match=r"--workers 5 with --cells-per-gpu 2 needs 3 GPUs; 2 visible \(0,1\)"):
        gpu_slots(["0", "1"], 5, 2)
    with pytest.raises(ValueError, match="visible: no GPU"):
        gpu_slots([], 1, 1)
    with pytest.raises(ValueError, match="n_workers must be >= 1"):
        gpu_slots(["0"], 0)


def test_visible_gpus_follow_the_drivers_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 5,")
    assert visible_gpus() == ["2", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert visible_gpus() == [str(i) for i in range(torch.cuda.device_count())]


# -- what a spawned worker sees ----------------------------------------------------------------------


def _probe(barrier):
    # the barrier holds every worker until all have a task, so each task runs in its own worker
    barrier.wait(timeout=120)
    return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES"), torch.get_num_threads()


def _probe_all(pool, n):
    with mp.get_context("spawn").Manager() as manager:
        barrier = manager.Barrier(n)
        return [f.result(timeout=180) for f in [pool.submit(_probe, barrier) for _ in range(n)]]


def test_spawned_workers_get_their_gpu_slot_and_threads(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")  # the driver's own: each worker must replace it
    slots = gpu_slots(["0", "1"], 2, 1)
    with make_pool(2, threads=3, slots=slots) as pool:
        seen = _probe_all(pool, 2)
    assert len({pid for pid, _, _ in seen}) == 2 and os.getpid() not in {pid for pid, _, _ in seen}
    assert sorted(env for _, env, _ in seen) == ["0", "1"]
    assert {threads for _, _, threads in seen} == {3}


def test_workers_default_to_one_thread(monkeypatch):
    # a spawned process would start torch with OMP_NUM_THREADS=2 threads; the pool makes it 1
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with make_pool(1) as pool:
        ((_, env, threads),) = _probe_all(pool, 1)
    assert threads == 1 and env is None  # no slots: the driver's environment is left alone


def test_make_pool_needs_one_slot_per_worker():
    with pytest.raises(ValueError, match="slots: need 2 entries"):
        make_pool(2, slots=["0"])


# -- option checks -----------------------------------------------------------------------------------


def test_cells_per_gpu_with_cpu_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "d"
    code = main(["run", "synthetic", "--device", "cpu", "--cells-per-gpu", "2", "--out", str(out), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err == "iwlab: error: --cells-per-gpu needs --device cuda (got --device cpu)"
    assert not out.exists()  # refused before the run directory is made


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"executor": "dask"}, "unknown executor 'dask'; valid: local, ray, slurm"),
        ({"threads_per_worker": 0}, "--threads-per-worker must be an integer >= 1, got 0"),
        ({"cells_per_gpu": 0, "device": "cuda"}, "--cells-per-gpu must be an integer >= 1, got 0"),
        ({"cells_per_gpu": 2, "device": "cuda", "executor": "slurm"}, "--cells-per-gpu applies to --executor local"),
        # cuda:N pins every cell to GPU N: --cells-per-gpu would be ignored, so it is refused
        ({"cells_per_gpu": 1, "device": "cuda:0", "workers": 4}, "--cells-per-gpu spreads cells over the visible GPUs"),
        ({"address": "auto"}, "--address names a Ray cluster; it needs --executor ray (got --executor local)"),
    ],
)
def test_executor_option_checks(kw, message):
    kw = {"executor": "local", "device": "cpu", **kw}
    with pytest.raises(RunError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_executor_options(kw.pop("executor"), kw.pop("device"), **kw)


def test_slurm_options_need_the_slurm_executor(tmp_path, capsys):
    args = ["sweep", "synthetic", "--slurm-partition", "gpu", "--out", str(tmp_path / "d"), "--no-progress"]
    assert main(args) == 2
    assert (
        capsys.readouterr().err.strip()
        == "iwlab: error: --slurm-* options need --executor slurm (got --executor local)"
    )


# -- network file systems ----------------------------------------------------------------------------

MOUNTS = r"""/dev/sda1 / ext4 rw,relatime 0 0
proc /proc proc rw 0 0
server:/export/home /home nfs4 rw,vers=4.2 0 0
/dev/sdb1 /home2 xfs rw 0 0
mds@tcp:/lfs /scratch lustre rw 0 0
/dev/sdc1 /scratch/local ext4 rw 0 0
//nas/share /mnt/my\040share cifs rw 0 0
tmpfs /mnt/over tmpfs rw 0 0
ceph-mon:/ /mnt/over cephfs rw 0 0
"""


@pytest.mark.parametrize(
    "path, expected",
    [
        ("/home/me/runs/x", "nfs4"),
        ("/home", "nfs4"),  # the mount point itself
        ("/home2/runs", "xfs"),  # /home is not a prefix of /home2
        ("/scratch/u/run", "lustre"),
        ("/scratch/local/run", "ext4"),  # the longest mount point wins
        ("/mnt/my share/run", "cifs"),  # \040 in /proc/mounts is a space
        ("/mnt/over/run", "cephfs"),  # a later mount on the same point hides the earlier one
        ("/opt/x", "ext4"),  # only / contains it
    ],
)
def test_filesystem_type_from_fake_mounts(path, expected):
    assert filesystem_type(path, MOUNTS) == expected


def test_filesystem_type_follows_symlinks(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    mounts = f"/dev/sda1 / ext4 rw 0 0\nserver:/x {real} nfs rw 0 0\n"
    assert filesystem_type(tmp_path / "link" / "run", mounts) == "nfs"
    assert filesystem_type(tmp_path / "other", mounts) == "ext4"
    assert filesystem_type("/x", "") is None


def test_real_mounts_parse():
    if not Path("/proc/mounts").exists():
        pytest.skip("no /proc/mounts on this system")
    assert filesystem_type("/") == filesystem_type("/", Path("/proc/mounts").read_text()) is not None


@pytest.mark.parametrize("fs, warns", [("nfs4", True), ("lustre", True), ("beegfs", True), ("9p", True)])
def test_preflight_warns_once_on_network_fs(tmp_path, monkeypatch, capsys, fs, warns):
    monkeypatch.setattr(rundir, "filesystem_type", lambda path, mounts_text=None: fs)
    preflight(tmp_path / "run")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("iwlab: warning: ")
    assert str(tmp_path / "run") in lines[0] and f"({fs})" in lines[0] and "SQLite" in lines[0]


@pytest.mark.parametrize("fs", ["ext4", "xfs", "tmpfs", None])
def test_preflight_is_quiet_on_local_fs(tmp_path, monkeypatch, capsys, fs):
    monkeypatch.setattr(rundir, "filesystem_type", lambda path, mounts_text=None: fs)
    preflight(tmp_path / "run")
    assert capsys.readouterr().err == "" and network_fs_warning(tmp_path, fs) is None


def test_ray_missing_is_refused_before_the_run_dir(tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    out = tmp_path / "d"
    assert main(["sweep", "synthetic", "--executor", "ray", "--out", str(out), "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == "iwlab: error: the Ray executor needs ray: pip install 'iwlab[ray]'"
    assert not out.exists()
