"""The ``iwlab`` command line, called in-process: user errors are one line on stderr and exit code 2."""

import subprocess
import sys
import time

import pytest

import iwlab
from iwlab.cli import build_parser, main


def test_list(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    i = next(i for i, ln in enumerate(lines) if ln.startswith("synthetic"))
    assert "profiles:" in lines[i + 1] and "quick" in lines[i + 1] and "paper" in lines[i + 1]


def test_run_unknown_experiment(capsys, tmp_path):
    assert main(["run", "nosuch", "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("iwlab: error:")
    assert (
        "unknown experiment 'nosuch'" in err
        and "Available:" in err
        and "cifar_binary" in err.split("Available:")[1]
        and "synthetic" in err.split("Available:")[1]
    )
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()  # nothing was created


def test_run_bad_value_type(capsys, tmp_path):
    assert main(["run", "synthetic", "--set", "epochs=x", "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "epochs: expected an int, got 'x'" in err
    assert not (tmp_path / "r").exists()


def test_run_unknown_key(capsys, tmp_path):
    assert main(["run", "synthetic", "--set", "epoch=3", "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Did you mean 'epochs'" in err
    assert not (tmp_path / "r").exists()


def test_run_bad_profile(capsys, tmp_path):
    assert main(["run", "synthetic", "--profile", "huge", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "unknown profile 'huge'" in err and "quick" in err and "paper" in err


def test_run_bad_dataset_value(capsys, tmp_path):
    assert main(["run", "synthetic", "--set", "datasets=foo", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "foo" in err and "separable" in err and "moons" in err and "gaussians" in err


def test_results_missing_dir(capsys, tmp_path):
    assert main(["results", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("iwlab: error:") and "no results store" in err


def test_results_debug_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        main(["results", str(tmp_path / "missing"), "--debug"])


def test_parser_requires_a_command(capsys):
    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        build_parser().parse_args(["results", "x", "--format", "xlsx"])


# -- issue 10: the command line a new user meets --------------------------------------------------


def _run_iwlab(*args, env=None):
    code = "import sys; from iwlab.cli import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120)


def test_negative_lr_exits_2_quickly_with_one_line_naming_the_key(tmp_path):
    """Acceptance: `iwlab run synthetic --set lr=-1` exits 2 within 2 s with one line naming the key.

    The 2 s are measured on an idle machine (see the closing note); under load the bound here is loose.
    """
    t0 = time.monotonic()
    p = _run_iwlab("run", "synthetic", "--set", "lr=-1", "--out", str(tmp_path / "r"))
    elapsed = time.monotonic() - t0
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == ["iwlab: error: lr: must be > 0 (or 'auto'), got -1."]
    assert not (tmp_path / "r").exists()
    assert elapsed < 20, elapsed


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"iwlab {iwlab.__version__}"


def test_list_puts_profiles_on_their_own_line(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    i = next(i for i, ln in enumerate(lines) if ln.startswith("mrpc "))
    assert "profiles" not in lines[i] and "MRPC" in lines[i]
    assert lines[i + 1].split() == ["profiles:", "quick,", "cpu_hour,", "paper,", "ci"]


@pytest.mark.parametrize("cmd", ["run", "sweep"])
def test_help_lists_every_experiments_real_profiles_and_the_workers_default(capsys, cmd):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    rows = {ln.split()[0]: ln for ln in out.split("experiments and their profiles")[1].splitlines()[1:] if ln.strip()}
    assert "cpu_hour" in rows["mrpc"] and "ci" in rows["importance_sampling_mnist"] and "ci" in rows["cifar_binary"]
    assert rows["synthetic"].split()[1:] == ["quick,", "paper"]
    assert "one per CPU core" in " ".join(out.split())


def test_results_help_has_help_texts(capsys):
    with pytest.raises(SystemExit):
        main(["results", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "a run directory (holding results.db)" in out and "RUN_DIR/results.parquet" in out and "pyarrow" in out


def test_unexpected_error_is_one_line_without_debug(capsys, monkeypatch):
    from iwlab.cli import list_cmd

    def boom(args):
        raise KeyError("surprise")

    monkeypatch.setattr(list_cmd, "main", boom)
    assert main(["list"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("iwlab: internal error: KeyError:") and "--debug" in err[0]


def test_unknown_device_is_refused_before_anything_runs(capsys, tmp_path):
    assert main(["run", "synthetic", "--device", "tpu", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("iwlab: error: --device 'tpu' is not a device torch knows")
    assert not (tmp_path / "r").exists()


def test_a_key_given_with_both_set_and_grid_is_refused(capsys, tmp_path):
    assert main(["sweep", "synthetic", "--grid", "epochs=1", "--set", "epochs=5", "--out", str(tmp_path / "r")]) == 2
    assert "epochs: given both with --set and with --grid" in capsys.readouterr().err
