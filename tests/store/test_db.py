"""SQLite results store: round trips, resume semantics, DataFrame export and concurrent writers."""

import io
import multiprocessing as mp
import sqlite3
import time

import pandas as pd
import pytest

from iwlab.store import STATUSES, Store, StoreError, export, load


def _filled(tmp_path):
    store = Store(tmp_path / "results.db")
    store.set_meta(experiment="synthetic", profile="quick", config={"epochs": 3, "weights": [1.0, 0.25]})
    store.add_runs(
        "synthetic", [("logreg", {"model": "logreg"}), ("mlp", {"model": "mlp"})], provenance={"git": {"commit": "abc"}}
    )
    members = [
        {"dataset": "separable", "weight": 1.0, "seed": 0, "model": "logreg"},
        {"dataset": "separable", "weight": 0.25, "seed": 0, "model": "logreg"},
    ]
    rows = [
        (1, 0, "train_loss", 0.5),
        (1, 1, "train_loss", 0.25),
        (2, 0, "train_loss", 0.4),
        (2, 1, "train_loss", 0.2),
        (2, 1, "frac_down_test", 0.125),
    ]
    store.write_result("logreg", members, rows, diverged=[-1, 2], artifacts=[("surfaces", "artifacts/logreg")])
    return store


def test_round_trip(tmp_path):
    store = _filled(tmp_path)
    assert store.meta() == {
        "experiment": "synthetic",
        "profile": "quick",
        "config": {"epochs": 3, "weights": [1.0, 0.25]},
    }
    runs = {r["run_id"]: r for r in store.runs()}
    assert list(runs) == ["logreg", "mlp"]
    assert runs["logreg"]["status"] == "done" and runs["logreg"]["finished"] is not None
    assert runs["mlp"]["status"] == "pending"
    assert runs["mlp"]["config"] == {"model": "mlp"}
    assert runs["mlp"]["provenance"] == {"git": {"commit": "abc"}}
    assert runs["logreg"]["experiment"] == "synthetic" and runs["logreg"]["cell"] == "logreg"
    assert store.status("logreg") == "done" and store.status("nope") is None
    assert store.query("SELECT COUNT(*) FROM metrics") == [(5,)]
    assert store.query("SELECT member, diverged_epoch FROM members WHERE run_id='logreg' ORDER BY member") == [
        (0, None),
        (1, 2),
    ]
    art = store.artifacts()
    assert [(a["run_id"], a["kind"], a["path"]) for a in art] == [("logreg", "surfaces", "artifacts/logreg")]
    store.add_artifact("", "figure", "figures/a.png")
    assert [a["path"] for a in store.artifacts("figure")] == ["figures/a.png"]
    assert len(store.artifacts()) == 2
    # metrics are upserted: rewriting a row replaces it instead of duplicating it
    store.write_metrics("logreg", [(1, 0, "train_loss", 0.75), (3, 0, "train_loss", 0.1)])
    assert store.query("SELECT value FROM metrics WHERE run_id='logreg' AND member=0 AND epoch=1") == [(0.75,)]
    assert store.query("SELECT COUNT(*) FROM metrics") == [(6,)]
    store.close()
    # a second handle sees everything
    again = Store(tmp_path / "results.db")
    assert again.status("logreg") == "done" and again.meta()["profile"] == "quick"
    again.close()


def test_set_status_lifecycle(tmp_path):
    store = Store(tmp_path / "results.db")
    store.add_runs("e", [("a", {})])
    assert store.status("a") == "pending"
    store.set_status("a", "running")
    r = store.runs()[0]
    assert r["status"] == "running" and r["started"] is not None and r["finished"] is None
    store.set_status("a", "failed", error="Traceback: boom", epoch=7)
    r = store.runs()[0]
    assert (r["status"], r["error"], r["epoch"]) == ("failed", "Traceback: boom", 7)
    assert r["finished"] is not None
    store.set_status("a", "diverged")  # no epoch given: the old one is kept
    assert store.runs()[0]["epoch"] == 7
    for s in STATUSES:
        store.set_status("a", s)
        assert store.status("a") == s
    store.close()


def test_add_runs_keeps_existing_status(tmp_path):
    store = Store(tmp_path / "results.db")
    store.add_runs("e", [("a", {"x": 1}), ("b", {"x": 2})])
    store.set_status("a", "done")
    store.set_status("b", "failed", error="e")
    store.add_runs("e", [("a", {"x": 1}), ("b", {"x": 2}), ("c", {"x": 3})])
    assert [(r["run_id"], r["status"]) for r in store.runs()] == [("a", "done"), ("b", "failed"), ("c", "pending")]
    store.close()


def test_invalid_status(tmp_path):
    store = Store(tmp_path / "results.db")
    store.add_runs("e", [("a", {})])
    with pytest.raises(ValueError) as e:
        store.set_status("a", "finished")
    assert "finished" in str(e.value) and all(s in str(e.value) for s in STATUSES)
    assert store.status("a") == "pending"
    # the schema itself refuses other statuses too
    with pytest.raises(sqlite3.IntegrityError):
        store.write_result("a", [], [], status="bogus")
    assert store.status("a") == "pending"
    store.close()


def test_write_result_is_atomic(tmp_path):
    store = Store(tmp_path / "results.db")
    store.add_runs("e", [("a", {})])
    # a bad row half-way (member labels and diverged lists of different length) rolls everything back
    with pytest.raises(ValueError):
        store.write_result("a", [{"w": 1}, {"w": 2}], [(1, 0, "m", 1.0)], diverged=[-1])
    assert store.query("SELECT COUNT(*) FROM metrics") == [(0,)]
    assert store.query("SELECT COUNT(*) FROM members") == [(0,)]
    assert store.status("a") == "pending"
    store.close()


def test_load_frame(tmp_path):
    _filled(tmp_path).close()
    df = load(tmp_path)
    assert len(df) == 5
    for col in (
        "run_id",
        "member",
        "epoch",
        "name",
        "value",
        "status",
        "diverged_epoch",
        "dataset",
        "weight",
        "seed",
        "model",
    ):
        assert col in df.columns, col
    r = df[(df.member == 1) & (df.epoch == 2) & (df.name == "frac_down_test")]
    assert len(r) == 1
    r = r.iloc[0]
    assert (r.value, r.weight, r.dataset, r.seed, r.model, r.status, r.diverged_epoch) == (
        0.125,
        0.25,
        "separable",
        0,
        "logreg",
        "done",
        2,
    )
    assert df[df.member == 0].diverged_epoch.isna().all()
    loss = df[df.name == "train_loss"].set_index(["member", "epoch"]).value.to_dict()
    assert loss == {(0, 1): 0.5, (0, 2): 0.4, (1, 1): 0.25, (1, 2): 0.2}
    # the db file itself is accepted too
    assert len(load(tmp_path / "results.db")) == 5


def test_load_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results store"):
        load(tmp_path / "nothing")


def test_export_csv_text_and_file(tmp_path):
    _filled(tmp_path).close()
    text = export(tmp_path, "csv")
    df = pd.read_csv(io.StringIO(text))
    assert len(df) == 5 and {"weight", "value", "name", "epoch"} <= set(df.columns)
    assert df[(df.member == 1) & (df.name == "frac_down_test")].value.tolist() == [0.125]
    out = tmp_path / "m.csv"
    assert export(tmp_path, "csv", out) is None
    assert out.read_text() == text
    with pytest.raises(ValueError, match="csv or parquet"):
        export(tmp_path, "xlsx")


def test_export_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    _filled(tmp_path).close()
    out = tmp_path / "m.parquet"
    export(tmp_path, "parquet", out)
    df = pd.read_parquet(out)
    assert len(df) == 5
    assert sorted(df[df.name == "train_loss"].value.tolist()) == [0.2, 0.25, 0.4, 0.5]


# -- concurrent writers ------------------------------------------------------------------------

N_CALLS, ROWS_PER_CALL = 200, 10


def _writer(path, run_id, barrier, times):
    store = Store(path, timeout=60.0)
    barrier.wait(60)  # both processes are up and connected: start writing together
    t0 = time.time()
    for c in range(N_CALLS):
        store.write_metrics(run_id, [(c, m, "loss", c + m / 100) for m in range(ROWS_PER_CALL)])
        if c % 50 == 0:
            store.set_status(run_id, "running", epoch=c)
    times.put((run_id, t0, time.time()))
    store.close()


def test_concurrent_writers(tmp_path):
    path = tmp_path / "results.db"
    store = Store(path)
    store.add_runs("e", [("w0", {}), ("w1", {})])
    ctx = mp.get_context("spawn")
    barrier, times = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(path), f"w{i}", barrier, times)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    (_, s0, e0), (_, s1, e1) = times.get(timeout=5), times.get(timeout=5)
    assert max(s0, s1) < min(e0, e1), "the two writers did not overlap in time"
    for rid in ("w0", "w1"):
        assert store.query("SELECT COUNT(*) FROM metrics WHERE run_id=?", (rid,)) == [(N_CALLS * ROWS_PER_CALL,)]
        got = store.query("SELECT epoch, member, value FROM metrics WHERE run_id=? ORDER BY epoch, member", (rid,))
        assert got == [(c, m, c + m / 100) for c in range(N_CALLS) for m in range(ROWS_PER_CALL)]
    assert store.query("SELECT COUNT(*) FROM metrics") == [(2 * N_CALLS * ROWS_PER_CALL,)]
    store.close()


# -- issue 10 item 9: a corrupt results.db is a one-line error naming the file ----------------------


def _corrupt(tmp_path, kind):
    d = tmp_path / kind
    d.mkdir()
    db = d / "results.db"
    if kind == "directory":
        db.mkdir()
        return d
    if kind == "foreign_sqlite":  # an SQLite file of some other program
        con = sqlite3.connect(db)
        con.execute("CREATE TABLE runs (id INTEGER, what TEXT)")
        con.commit()
        con.close()
        return d
    (tmp_path / "src").mkdir(exist_ok=True)
    _filled(tmp_path / "src").close()
    blob = (tmp_path / "src" / "results.db").read_bytes()
    payload = {
        "truncated": blob[: len(blob) // 2],
        "random_bytes": bytes(range(256)) * 40,
        "plain_text": b"epoch,value\n1,0.5\n" * 50,
    }[kind]
    db.write_bytes(payload)
    return d


CORRUPT = ["truncated", "random_bytes", "plain_text", "directory", "foreign_sqlite"]


@pytest.mark.parametrize("kind", CORRUPT)
def test_corrupt_store_gives_one_line_naming_the_file(tmp_path, kind):
    d = _corrupt(tmp_path, kind)
    db = d / "results.db"
    for call in (lambda: Store(db), lambda: load(d), lambda: export(d, "csv")):
        with pytest.raises(StoreError) as e:
            call()
        msg = str(e.value)
        assert str(db) in msg and "\n" not in msg, msg


@pytest.mark.parametrize("kind", CORRUPT)
def test_corrupt_store_via_cli_exits_2_without_traceback(tmp_path, kind, capsys):
    from iwlab.cli import main

    d = _corrupt(tmp_path, kind)
    for args in (["results", str(d)], ["run", "synthetic", "--out", str(d), "--no-progress", "--set", "epochs=1"]):
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("iwlab: error: ") and str(d / "results.db") in err[0], err


# -- issue 10 item 18: exports ------------------------------------------------------------------------


def test_export_opens_the_store_read_only_and_leaves_no_side_files(tmp_path):
    _filled(tmp_path).close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.db"]
    export(tmp_path, "csv")
    load(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.db"]
    # while a writer holds the store, a reader sees its committed rows
    writer = Store(tmp_path / "results.db")
    writer.write_metrics("mlp", [(1, 0, "train_loss", 0.75)])
    assert (load(tmp_path).value == 0.75).sum() == 1
    writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.db"]


def test_parquet_without_output_goes_to_the_run_directory(tmp_path, capsys):
    pytest.importorskip("pyarrow")
    from iwlab.cli import main

    _filled(tmp_path).close()
    assert main(["results", str(tmp_path), "--format", "parquet"]) == 0
    assert f"wrote {tmp_path / 'results.parquet'}" in capsys.readouterr().err
    assert len(pd.read_parquet(tmp_path / "results.parquet")) == 5


def test_parquet_without_pyarrow_names_the_install_command(tmp_path, capsys, monkeypatch):
    import sys

    from iwlab.cli import main

    _filled(tmp_path).close()
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import fails
    assert main(["results", str(tmp_path), "--format", "parquet"]) == 2
    assert "pip install 'iwlab[parquet]'" in capsys.readouterr().err
    assert not (tmp_path / "results.parquet").exists()


def test_results_says_how_many_cells_failed(tmp_path, capsys):
    from iwlab.cli import main

    store = _filled(tmp_path)
    store.set_status("mlp", "failed", error="Traceback (most recent call last):\n  ...\nValueError: lr is bad\n")
    store.close()
    assert main(["results", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("run_id,")
    assert "iwlab: 1 of 2 cells failed (no metrics from them): mlp: ValueError: lr is bad" in captured.err


def test_damaged_json_in_the_store_names_the_file_and_the_place(tmp_path):
    store = _filled(tmp_path)
    store._conn.execute("UPDATE meta SET value='{bad' WHERE key='config'")
    store._conn.execute("UPDATE members SET labels='[1,' WHERE member=1")
    with pytest.raises(StoreError, match=r"results.db: table meta, key config is not valid JSON"):
        store.meta()
    store.close()
    with pytest.raises(StoreError, match=r"results.db: table members, run logreg member 1, column labels is not valid"):
        load(tmp_path)


@pytest.mark.parametrize("name", ["results.db", "config.json", "provenance.json"])
def test_export_never_overwrites_the_runs_own_files(tmp_path, name, capsys):
    from iwlab.cli import main

    _filled(tmp_path).close()
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "provenance.json").write_text("{}")
    before = (tmp_path / name).read_bytes()
    assert main(["results", str(tmp_path), "--output", str(tmp_path / name)]) == 2
    assert f"would overwrite the run's own {name}" in capsys.readouterr().err
    assert (tmp_path / name).read_bytes() == before
