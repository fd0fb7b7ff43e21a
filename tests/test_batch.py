"""Batch sweeps (``replay batch``): spec validation, results equal to ``replay run``'s,
re-runs, failing runs, recovery of unloaded partitions, and a real Dask LocalCluster.

Workers are real: spawned processes (the local pool) or Dask worker processes on
loopback, each loading numba's cached kernels.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest
from conftest import CAPTURE, run_cli

import replay.batch.sweep as batch
from replay.progress import Progress
from replay.store import RUN_TABLES

# Small traces: stress-highalloc and fragmenter on an 8192-page (32 MiB) zone.
TRACES = """
[[traces]]
scenario = "stress-highalloc"
seed = 1
zone_pages = 8192
events = 25000

[[traces]]
scenario = "fragmenter"
seed = 2
zone_pages = 8192
"""
HIGHALLOC = "stress-highalloc-s1-e25000-z8192"
FRAG = "fragmenter-s2-e14204-z8192"
MODEL_FILE = 'model = "buddy"\ncompaction = "direct"\n'  # = buddy+compaction
SPEC = f"""name = "pair"
[run]
every = 50
{TRACES}
[[models]]
preset = "buddy"
[[models]]
file = "models/compact.toml"
"""
# Columns of runs that depend on when and where a run ran, not on its results.
TIMING = ("run_id", "trace_id", "started", "wall_s", "replay_s", "events_per_s")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def runs_by_config(db: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Every stored run, keyed by (trace name, config JSON), without timing columns,
    with a digest (row count, hash sum) of its rows in every RUN_TABLES table and in the
    steps view over two of them."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        cur = con.execute("SELECT t.name AS trace, r.* FROM runs r JOIN traces t USING (trace_id)")
        names = [d[0] for d in cur.description]
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for row in cur.fetchall():
            r = dict(zip(names, row, strict=True))
            for t in ("steps", *RUN_TABLES):
                r[t] = con.execute(
                    f"SELECT count(*), sum(hash(x)::HUGEINT) FROM "
                    f"(SELECT * EXCLUDE (run_id) FROM {t} WHERE run_id = ?) x",
                    [r["run_id"]],
                ).fetchone()
            key = (r["trace"], r["config"])
            assert key not in out
            out[key] = {k: v for k, v in r.items() if k not in TIMING}
        return out
    finally:
        con.close()


def table_counts(db: Path) -> dict[str, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
    finally:
        con.close()


def query(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The 2 traces x 2 models batch, run once with --jobs 2, and a reference store
    holding the same traces replayed by `replay run`."""
    d = tmp_path_factory.mktemp("batch")
    write(d / "spec" / "models" / "compact.toml", MODEL_FILE)
    spec = write(d / "spec" / "pair.toml", SPEC)
    db = d / "batch.duckdb"
    res = run_cli("batch", spec, "--jobs", "2", "--db", db, "-f", "json", "-q")
    assert res.code == 0, res.err
    ref = d / "ref.duckdb"
    for scenario, name, extra in (
        ("stress-highalloc", HIGHALLOC, ["--seed", "1", "--events", "25000"]),
        ("fragmenter", FRAG, ["--seed", "2"]),
    ):
        r = run_cli("generate", scenario, *extra, "--zone-pages", "8192", "--name", name,
                    "--db", ref, "-q")  # fmt: skip
        assert r.code == 0, r.err
        for model in ("buddy", str(d / "spec" / "models" / "compact.toml")):
            r = run_cli("run", name, "--model", model, "--every", "50", "--db", ref, "-q")
            assert r.code == 0, r.err
    return {"dir": d, "spec": spec, "db": db, "ref": ref, "result": res.json()}


def test_batch_equals_replay_run(pair: dict[str, Any]) -> None:
    result = pair["result"]
    assert result["counts"] == {"done": 4}
    keys = [r["key"] for r in result["runs"]]
    assert keys == [f"{t}|{m}" for t in (HIGHALLOC, FRAG) for m in ("buddy", "models/compact.toml")]
    for r in result["runs"]:
        assert r["status"] == "done" and r["error"] is None and r["run_id"] >= 1
        assert r["events_per_s"] > 0 and r["wall_s"] > 0 and r["peak_rss_mib"] > 10
    # Two worker processes took the runs, neither of them this one.
    pids = {r["pid"] for r in result["runs"]}
    assert 1 <= len(pids) <= 2 and os.getpid() not in pids
    got, want = runs_by_config(pair["db"]), runs_by_config(pair["ref"])
    assert set(got) == set(want) and len(got) == 4
    for key in want:
        assert got[key] == want[key], key
    # Real results, not empty ones: the buddy run of stress-highalloc fails requests,
    # compaction runs (model_events rows), and steps hold every allocation.
    hb = got[(HIGHALLOC, '{"model": "buddy", "params": {}, "preset": "buddy"}')]
    assert hb["failures"] > 0 and hb["steps"][0] >= hb["allocs"]
    assert any(r["compactions"] > 0 and r["model_events"][0] > 0 for r in got.values())
    # batch_runs links every key to its run; the batch holds the spec's text.
    rows = query(pair["db"], "SELECT key, trace, model, run_id, status, error FROM batch_runs "
                 "JOIN batches USING (batch_id) WHERE name = 'pair' ORDER BY key")  # fmt: skip
    assert sorted(r[0] for r in rows) == sorted(keys)
    assert all(r[4] == "done" and r[5] is None for r in rows)
    assert {r[3] for r in rows} == {r[0] for r in query(pair["db"], "SELECT run_id FROM runs")}
    assert query(pair["db"], "SELECT spec FROM batches")[0][0] == pair["spec"].read_text()
    # Nothing is left in the work directory.
    assert not (pair["dir"] / "batch.duckdb.batch").exists()


def test_rerun_skips_finished_runs(pair: dict[str, Any]) -> None:
    before = table_counts(pair["db"])
    res = run_cli("batch", pair["spec"], "--db", pair["db"], "-f", "csv", "-q")
    assert res.code == 0, res.err
    lines = res.out.strip().splitlines()
    assert lines[0].startswith("key,trace,model,run_id,status") and len(lines) == 5
    assert all(",skipped," in line for line in lines[1:])
    assert table_counts(pair["db"]) == before


BAD_SPECS = [
    ("name = 'x'\n[[traces]\n", None, "not valid TOML"),
    (f"{TRACES}\n[[models]]\npreset = 'buddy'\n", "name", "name"),
    ("name = 'a b'\n", "name", "invalid name"),
    ("name = 'x'\nfoo = 1\n", "foo", "unknown key"),
    ("name = 'x'\n[run]\nevery = 0\n", "run.every", "at least 1"),
    ("name = 'x'\n[run]\nevery = '5'\n", "run.every", "must be an integer, not a string"),
    ("name = 'x'\n[run]\nspeed = 5\n", "run.speed", "unknown run option"),
    ("name = 'x'\n[run]\nstart = 'observed'\nzone_pages = 4096\n", "run.start", "observed"),
    ("name = 'x'\n[[models]]\npreset = 'buddy'\n", "traces", "at least one"),
    ("name = 'x'\n[[traces]]\nscenario = 'nope'\n", "traces[1].scenario", "unknown scenario"),
    ("name = 'x'\n[[traces]]\nscenario = 'fragmenter'\nseed = -1\n", "traces[1].seed", "seed"),
    ("name = 'x'\n[[traces]]\nscenario = 'fragmenter'\nzone_pages = 1000\n",
     "traces[1].zone_pages", "multiple of 1024"),
    ("name = 'x'\n[[traces]]\nscenario = 'stress-highalloc'\nevents = 1000\n",
     "traces[1].events", "at least"),
    ("name = 'x'\n[[traces]]\nname = 'a'\n[[traces]]\nfile = 'missing.csv'\n",
     "traces[2].file", "missing.csv: no such file"),
    ("name = 'x'\n[[traces]]\nname = 'a'\n[[traces]]\nname = 'a'\n", "traces[2].name",
     "already in the batch"),
    ("name = 'x'\n[[traces]]\nname = 'a'\ncolour = 1\n", "traces[1].colour", "unknown key"),
    ("name = 'x'\n[[traces]]\nname = 'a'\n", "models", "at least one"),
    ("name = 'x'\n[[traces]]\nname = 'a'\n[[models]]\npreset = 'turbo'\n", "models[1].preset",
     "unknown preset"),
    ("name = 'x'\n[[traces]]\nname = 'a'\n[[models]]\nfile = 'bad-model.toml'\n",
     "models[1].file", "bad-model.toml: field 'pcp_batch'"),
    ("name = 'x'\n[[traces]]\nname = 'a'\n[[models]]\npreset = 'buddy'\n[[models]]\n"
     "preset = 'buddy'\n", "models[2].label", "already in the batch"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "field", "message"), BAD_SPECS)
def test_bad_spec_is_rejected_naming_file_and_field(
    tmp_path: Path, text: str, field: str | None, message: str
) -> None:
    write(tmp_path / "bad-model.toml", 'model = "mobility"\npcp_batch = 0\n')
    spec = write(tmp_path / "spec.toml", text)
    db = tmp_path / "new.duckdb"
    res = run_cli("batch", spec, "--db", db, "-q")
    assert res.code == 65, (res.code, res.err)
    assert f"{spec}:" in res.err and message in res.err, res.err
    if field is not None:
        assert f"field '{field}'" in res.err, res.err
    assert not db.exists()  # nothing written, not even an empty database


def test_bad_spec_leaves_the_store_unchanged(pair: dict[str, Any], tmp_path: Path) -> None:
    db = tmp_path / "copy.duckdb"
    shutil.copy(pair["db"], db)
    before = table_counts(db)
    missing = write(tmp_path / "missing.toml",
                    "name = 'y'\n[[traces]]\nname = 'no-such-trace'\n[[models]]\n"
                    "preset = 'buddy'\n")  # fmt: skip
    res = run_cli("batch", missing, "--db", db, "-q")
    assert res.code == 65 and "field 'traces[1].name'" in res.err and "no-such-trace" in res.err
    # The same name with another spec is a usage error without --replace.
    changed_text = pair["spec"].read_text().replace("every = 50", "every = 100")
    write(tmp_path / "models" / "compact.toml", MODEL_FILE)
    changed = write(tmp_path / "pair.toml", changed_text)
    res = run_cli("batch", changed, "--db", db, "-q")
    assert res.code == 2 and "--replace" in res.err and "'pair'" in res.err
    assert table_counts(db) == before
    # A bad --jobs is a usage error before anything runs.
    assert run_cli("batch", pair["spec"], "--db", db, "--jobs", "0", "-q").code == 2
    assert run_cli("batch", pair["spec"], "--db", db, "--executor", "dask", "-q").code == 2
    assert table_counts(db) == before


def test_replace_runs_the_new_spec(pair: dict[str, Any], tmp_path: Path) -> None:
    db = tmp_path / "copy.duckdb"
    shutil.copy(pair["db"], db)
    spec = write(tmp_path / "one.toml", f'name = "pair"\n[run]\nevery = 1000\n[[traces]]\n'
                 f'name = "{FRAG}"\n[[models]]\npreset = "buddy"\n')  # fmt: skip
    res = run_cli("batch", spec, "--db", db, "--replace", "--jobs", "1", "-f", "json", "-q")
    assert res.code == 0, res.err
    assert [(r["key"], r["status"]) for r in res.json()["runs"]] == [(f"{FRAG}|buddy", "done")]
    # The old spec's four runs are gone; the new one is the only run, every = 1000.
    assert query(db, "SELECT count(*), min(every) FROM runs") == [(1, 1000)]
    assert query(db, "SELECT count(*) FROM steps WHERE run_id NOT IN (SELECT run_id FROM runs)")[
        0
    ] == (0,)
    assert query(db, "SELECT key, status FROM batch_runs") == [(f"{FRAG}|buddy", "done")]


def test_failing_runs_are_reported_and_the_others_land(tmp_path: Path) -> None:
    # A canonical trace without pfns or a zone ingests, but its run fails in the worker;
    # a CSV with a bad field fails to ingest. The scenario's run lands.
    write(tmp_path / "nozone.csv", "op,obj,order\nalloc,1,0\nalloc,2,1\nfree,1,0\n")
    write(tmp_path / "bad.csv", "op,obj,order\nalloc,1,zero\n")
    spec = write(tmp_path / "fail.toml",
                 "name = 'fail'\n[[traces]]\nscenario = 'fragmenter'\nzone_pages = 4096\n"
                 "[[traces]]\nfile = 'nozone.csv'\n[[traces]]\nfile = 'bad.csv'\n"
                 "[[models]]\npreset = 'buddy'\n")  # fmt: skip
    db = tmp_path / "f.duckdb"
    res = run_cli("batch", spec, "--db", db, "--jobs", "2", "-f", "json")
    assert res.code == 1, res.err
    runs = {r["key"]: r for r in res.json()["runs"]}
    ok = runs["fragmenter-s0-e7108-z4096|buddy"]
    assert ok["status"] == "done" and ok["run_id"] == 1
    assert runs["nozone|buddy"]["status"] == "failed"
    assert "no zone" in runs["nozone|buddy"]["error"]
    assert runs["bad|buddy"]["status"] == "failed"
    assert "bad.csv:2: field 'order'" in runs["bad|buddy"]["error"]
    assert "1 done, 2 failed" in res.err
    assert query(db, "SELECT key, status, run_id IS NULL, error IS NULL FROM batch_runs "
                 "ORDER BY key") == [("bad|buddy", "failed", True, False),
                                     ("fragmenter-s0-e7108-z4096|buddy", "done", False, True),
                                     ("nozone|buddy", "failed", True, False)]  # fmt: skip
    assert query(db, "SELECT count(*) FROM runs") == [(1,)]
    assert query(db, "SELECT name FROM traces ORDER BY name") == [
        ("fragmenter-s0-e7108-z4096",), ("nozone",)
    ]  # fmt: skip


class Killed(BaseException):
    """The coordinator dies (as if killed) right after a run finished."""


class InProcess:
    """An executor running each task (run_task itself) in this process, as submitted."""

    def __init__(self, jobs: int, client: Any) -> None:
        self.done: list[tuple[batch.Task, dict[str, Any]]] = []

    def submit(self, task: batch.Task) -> None:
        self.done.append((task, batch.run_task(task)))

    def results(self) -> Any:
        return iter(self.done)

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass  # the tasks ran as they were submitted: nothing is left running


class NoRuns(InProcess):
    def submit(self, task: batch.Task) -> None:
        raise AssertionError("the finished partition must be loaded, not run again")


def test_unloaded_partition_is_loaded_without_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (
        "name = 'k'\n[run]\nevery = 10\n[[traces]]\nscenario = 'fragmenter'\n"
        "zone_pages = 4096\n[[models]]\npreset = 'mobility'\n"
    )
    spec = write(tmp_path / "k.toml", text)
    db = tmp_path / "k.duckdb"
    # Run the task, then die before loading it.
    monkeypatch.setattr(batch, "_Executor", InProcess)

    def killed(*a: Any, **k: Any) -> None:
        raise Killed

    monkeypatch.setattr(batch._Coordinator, "load", killed)
    with pytest.raises(Killed):
        batch.run_batch(db, spec, jobs=1)
    parts = list((tmp_path / "k.duckdb.batch" / "k" / "runs").iterdir())
    assert len(parts) == 1 and batch.partition_complete(parts[0])
    assert query(db, "SELECT count(*) FROM runs") == [(0,)]
    monkeypatch.undo()
    monkeypatch.setattr(batch, "_Executor", NoRuns)
    calls: list[tuple[str, int]] = []
    progress = Progress(start=lambda d, n: calls.append((d, n)),
                        advance_to=lambda k: calls.append(("at", k)))  # fmt: skip
    result = batch.run_batch(db, spec, jobs=1, progress=progress)
    assert calls == [("batch k", 1), ("at", 1)]
    assert [(r["status"], r["run_id"]) for r in result.rows] == [("recovered", 1)]
    assert query(db, "SELECT count(*), min(every) FROM runs") == [(1, 10)]
    assert query(db, "SELECT status, run_id FROM batch_runs") == [("done", 1)]
    assert query(db, "SELECT count(*) > 0 FROM steps WHERE run_id = 1") == [(True,)]
    assert not (tmp_path / "k.duckdb.batch").exists()


def test_dask_local_cluster(pair: dict[str, Any], tmp_path: Path) -> None:
    from distributed import Client, LocalCluster

    write(tmp_path / "models" / "compact.toml", MODEL_FILE)
    spec = write(tmp_path / "pair.toml", SPEC)
    db = tmp_path / "dask.duckdb"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:  # fmt: skip
        res = run_cli("batch", spec, "--executor", "dask", "--address", cluster.scheduler_address,
                      "--db", db, "-f", "json", "-q")  # fmt: skip
        with Client(cluster) as client:
            worker_pids = set(client.run(os.getpid).values())
            assert client.nthreads() and set(client.nthreads().values()) == {1}
        assert len(worker_pids) == 2
    assert res.code == 0, res.err
    result = res.json()
    assert result["counts"] == {"done": 4}
    # Every run ran in one of the cluster's two worker processes.
    assert {r["pid"] for r in result["runs"]} <= worker_pids
    # The same results as the local pool's batch (and so as `replay run`'s).
    assert runs_by_config(db) == runs_by_config(pair["db"])


def test_unreachable_dask_scheduler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch, "DASK_TIMEOUT_S", 1.0)
    spec = write(tmp_path / "s.toml", "name = 's'\n[[traces]]\nscenario = 'fragmenter'\n"
                 "zone_pages = 4096\n[[models]]\npreset = 'buddy'\n")  # fmt: skip
    db = tmp_path / "s.duckdb"
    res = run_cli("batch", spec, "--db", db, "--executor", "dask", "--address",
                  "tcp://127.0.0.1:1", "-q")  # fmt: skip
    assert res.code == 1 and "cannot connect to the Dask scheduler at tcp://127.0.0.1:1" in res.err
    assert not db.exists()


def test_capture_with_snapshots_equals_replay_run(tmp_path: Path) -> None:
    # The real capture's snapshots (kpageflags, zoneinfo, pagetypeinfo, ...) reach the
    # worker through Parquet intact: a run from the kernel's observed start state and
    # one filled from the before-snapshot equal `replay run`'s in the same store.
    text = (
        "name = 'cap'\n[run]\nevery = 1000\nstart = 'observed'\n[[traces]]\n"
        f"file = '{CAPTURE}'\nname = 'compact'\n[[models]]\npreset = 'mobility'\n"
    )
    spec = write(tmp_path / "cap.toml", text)
    db = tmp_path / "cap.duckdb"
    res = run_cli("batch", spec, "--db", db, "--jobs", "1", "-f", "json", "-q")
    assert res.code == 0, res.err
    r = run_cli("run", "compact", "-m", "mobility", "--start", "observed", "--every", "1000",
                "--db", db, "-q")  # fmt: skip
    assert r.code == 0, r.err
    con = duckdb.connect(str(db), read_only=True)
    try:
        cur = con.execute("SELECT * EXCLUDE (run_id, started, wall_s, replay_s, events_per_s) "
                          "FROM runs ORDER BY run_id")  # fmt: skip
        rows = cur.fetchall()
        names = [d[0] for d in cur.description]
        steps = [
            con.execute("SELECT count(*), sum(hash(x)::HUGEINT) FROM "
                        "(SELECT * EXCLUDE (run_id) FROM steps WHERE run_id = ?) x",
                        [run_id]).fetchone()
            for run_id in (1, 2)
        ]  # fmt: skip
    finally:
        con.close()
    assert len(rows) == 2 and rows[0] == rows[1]
    start = names.index("start")
    assert rows[0][start] == "observed"
    assert steps[0] == steps[1] and steps[0][0] > 0
