"""The run path a new user meets (issue 10): config checks against the store, failed cells, progress, provenance.

CLI cases call ``iwlab.cli.main`` in-process on a tiny synthetic config (seconds).
"""

import dataclasses
import json
import re
import shutil

import pytest

import iwlab.experiments.synthetic as synthetic
import iwlab.plots.synthetic as synthetic_plots
from iwlab.cli import main
from iwlab.provenance import portable_command
from iwlab.runner import eta_text, parse_grid, run_experiment

TINY = [
    "--set", "epochs=3",
    "--set", "n_per_class=16",
    "--set", "n_test_per_class=16",
    "--set", "grid_size=8",
    "--set", "weights=1,0.25",
    "--set", "weight_decay=0",
    "--set", "models=logreg",
]  # fmt: skip


def _run(out, *extra, workers="1"):
    return main(["run", "synthetic", *TINY, *extra, "--out", str(out), "--workers", workers, "--no-progress"])


def _patch_experiment(monkeypatch, **changes):
    """Swap parts of the registered synthetic experiment (the registry reads ``EXPERIMENT`` on each lookup)."""
    monkeypatch.setattr(synthetic, "EXPERIMENT", dataclasses.replace(synthetic.EXPERIMENT, **changes))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    assert _run(out) == 0
    return out


# -- item 3: the store's own copy of the config is checked -------------------------------------------


def test_missing_config_json_does_not_let_another_config_in(finished, tmp_path, capsys):
    d = tmp_path / "run"
    shutil.copytree(finished, d)
    (d / "config.json").unlink()
    assert _run(d, "--set", "epochs=4") == 2
    err = capsys.readouterr().err
    assert "results.db holds results of a different config (keys differ: epochs (3 there, 4 here))" in err
    # the same config resumes (nothing to do) and config.json is written back
    assert _run(d) == 0
    assert json.loads((d / "config.json").read_text())["config"]["epochs"] == 3


def test_results_db_copied_into_a_fresh_directory_is_caught(finished, tmp_path, capsys):
    d = tmp_path / "fresh"
    d.mkdir()
    shutil.copy(finished / "results.db", d / "results.db")
    assert _run(d, "--set", "weights=1,0.5") == 2
    assert "holds results of a different config (keys differ: weights" in capsys.readouterr().err
    assert not (d / "report.md").exists()


# -- item 4: a repeated --grid key -----------------------------------------------------------------


def test_repeated_grid_key_merges_its_values():
    cfg = synthetic.Config()
    _, points = parse_grid(cfg, ["lr_scale=1,2", "lr_scale=3"])
    assert points == [{"lr_scale": 1.0}, {"lr_scale": 2.0}, {"lr_scale": 3.0}]
    _, points = parse_grid(cfg, ["lr_scale=1,2", "epochs=5", "lr_scale=2,3"])  # repeats swept once
    assert points == [{"lr_scale": s, "epochs": 5} for s in (1.0, 2.0, 3.0)]
    packed, points = parse_grid(cfg, ["weights=1,0.5", "weights=0.25,0.5"], ["weights"])
    assert packed == {"weights": (1.0, 0.5, 0.25)} and points == [{}]


def test_repeated_values_within_one_grid_spec_are_swept_once():
    _, points = parse_grid(synthetic.Config(), ["lr_scale=1,1.0,1/1,2"])
    assert points == [{"lr_scale": 1.0}, {"lr_scale": 2.0}]


def test_sweep_members_keep_their_own_labels(tmp_path):
    """Found by the bad-input hunt: grid values overwrote the members' labels (seed 11 labelled 10, lr 0.2 as 0.1)."""
    from iwlab.store import load

    out = tmp_path / "sw"
    args = [
        "sweep",
        "synthetic",
        *TINY,
        "--set",
        "lr_scale=2",
        "--grid",
        "seed=0,10",
        "--grid",
        "lr=0.1",
        "--seeds",
        "2",
    ]
    assert main([*args, "--out", str(out), "--workers", "1", "--no-progress"]) == 0
    m = load(out).drop_duplicates(["run_id", "member"])
    assert sorted(set(m.seed)) == [0, 1, 10, 11]  # what was trained, not the grid's seed
    assert set(m.lr) == {0.2}  # lr 0.1 x lr_scale 2
    assert set(m.grid_point) == {"seed=0,lr=0.1", "seed=10,lr=0.1"}
    md = (out / "report.md").read_text()
    assert "sweep: one section per grid point" in md and "(no results yet)" not in md


def test_sweep_over_a_tuple_valued_key_reports_every_point(tmp_path):
    out = tmp_path / "sw"
    args = ["sweep", "synthetic", *TINY, "--grid", "datasets=separable;moons"]
    assert main([*args, "--out", str(out), "--workers", "1", "--no-progress"]) == 0
    md = (out / "report.md").read_text()
    assert "(no results yet)" not in md and md.count("| logreg |") >= 2


def test_fixture_runs_say_so_before_any_number(tmp_path):
    out = run_experiment("cifar_binary", "ci", ["variants=plain", "epochs=1"], out=tmp_path / "c", progress=False)
    md = (out / "report.md").read_text()
    results = md.split("## Results", 1)[1]
    assert results.lstrip().startswith("**Data: a generated stand-in (fixture=true), not the real dataset.**")


def test_sweep_with_a_repeated_grid_key_runs_every_value(tmp_path, monkeypatch):
    ran = []

    def run_cell(cfg, cell_id, params, ctx):
        ran.append(cfg.lr_scale)
        raise RuntimeError("not training in this test")

    _patch_experiment(monkeypatch, run_cell=run_cell)
    args = ["sweep", "synthetic", *TINY, "--grid", "lr_scale=1,2", "--grid", "lr_scale=3"]
    assert main([*args, "--out", str(tmp_path / "sw"), "--workers", "1", "--no-progress"]) == 1
    assert sorted(ran) == [1.0, 2.0, 3.0]


# -- item 8: cells that fail --------------------------------------------------------------------------


def test_every_cell_failing_gives_reasons_a_report_and_exit_1(tmp_path, monkeypatch, capsys):
    def run_cell(cfg, cell_id, params, ctx):
        raise ValueError(f"simulated failure of {cell_id}")

    _patch_experiment(monkeypatch, run_cell=run_cell)
    out = tmp_path / "run"
    assert _run(out, "--set", "models=logreg,mlp") == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "iwlab: cell logreg failed: ValueError: simulated failure of logreg" in err
    assert "iwlab: cell mlp failed: ValueError: simulated failure of mlp" in err
    md = (out / "report.md").read_text()
    assert "## Failed cells (2 of 2)" in md and "| mlp | ValueError: simulated failure of mlp |" in md
    assert "every cell failed" in md
    assert (out / "report.html").exists()
    # iwlab results says so too
    assert main(["results", str(out)]) == 0
    assert "2 of 2 cells failed" in capsys.readouterr().err


def test_a_figure_error_is_noted_in_the_report_not_a_traceback(tmp_path, monkeypatch, capsys):
    def figures(run_dir, df, cfg, fmt="png"):
        raise KeyError("no such column")

    monkeypatch.setattr(synthetic_plots, "figures", figures, raising=False)
    out = tmp_path / "run"
    assert _run(out) == 0
    err = capsys.readouterr().err
    assert "figures could not be drawn: KeyError" in err and "Traceback" not in err
    assert "figures could not be drawn: KeyError" in (out / "report.md").read_text()
    with pytest.raises(KeyError):
        main(["run", "synthetic", *TINY, "--out", str(out), "--workers", "1", "--no-progress", "--debug"])


# -- item 17: progress ---------------------------------------------------------------------------------


def test_resumed_run_says_how_many_cells_are_done_and_when_figures_render(finished, tmp_path, capsys):
    d = tmp_path / "run"
    shutil.copytree(finished, d)
    assert main(["run", "synthetic", *TINY, "--out", str(d), "--workers", "1"]) == 0
    err = capsys.readouterr().err
    assert "iwlab: 1 of 1 cells already done; nothing left to train, rewriting the report" in err
    assert "iwlab: drawing figures ..." in err and re.search(r"iwlab: \d+ figures in \d+ s", err)


def test_eta_counts_only_measured_progress():
    # one cell done 10 s after the first report: 3 cells left take 30 s, whatever the start-up took
    assert eta_text(10.0, 1.0, 3.0) == "ETA 0:30"
    assert eta_text(0.5, 0.1, 3.0) == "ETA ..."  # too early to say
    assert eta_text(30.0, 0.0, 3.0) == "ETA ..."
    assert eta_text(3600.0, 1.0, 2.0) == "ETA 2:00:00"


# -- item 22: portable provenance and published docs ---------------------------------------------------


def test_provenance_command_is_portable(finished):
    prov = json.loads((finished / "provenance.json").read_text())
    # (here the "program" is pytest's; the run directory still appears only relative to itself)
    assert str(finished) not in prov["command"] and not any(w.startswith("/") for w in prov["command"].split())
    assert portable_command(["/usr/x/bin/iwlab", "run", "synthetic", "--out", str(finished)], finished) == (
        "iwlab run synthetic --out ."
    )
    cli = "/somewhere/site-packages/iwlab/cli/__main__.py"
    assert portable_command([cli, "run", "x", "--out", "/nope/r"], "/nope/r") == "iwlab run x --out ."
