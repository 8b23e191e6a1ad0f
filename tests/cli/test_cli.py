"""The ``iwlab`` command line, called in-process: user errors are one line on stderr and exit code 2."""

import pytest

from iwlab.cli import build_parser, main


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("synthetic"))
    assert "profiles:" in line and "quick" in line and "paper" in line


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
