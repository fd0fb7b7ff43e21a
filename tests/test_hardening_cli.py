"""The CLI under interrupts and kills (issue 18): exit codes, cleanup, nothing left behind.

Real subprocesses, real signals (SIGINT, SIGKILL), real DuckDB files.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import ERAS, run_cli
from test_hardening_service import serve_process

from replay.spool import MIN_AGE_S, NEW_SUFFIX

REPLAY = [sys.executable, "-m", "replay.cli.main"]


def write_trace(path: Path, lines: int) -> Path:
    """ftrace text of ``lines`` order-1 allocations then their frees, 50,000 at a time."""
    alloc = ("       bash-1234    [000] .....   {ts:.6f}: mm_page_alloc: page=00000000bb4a5e59 "
             "pfn=0x{pfn:x} order=1 migratetype=1 gfp_flags=GFP_KERNEL\n")  # fmt: skip
    free = ("       bash-1234    [000] .....   {ts:.6f}: mm_page_free: page=00000000bb4a5e59 "
            "pfn=0x{pfn:x} order=1\n")  # fmt: skip
    with open(path, "w") as f:
        for i in range(lines):
            fmt = alloc if (i // 50000) % 2 == 0 else free
            f.write(fmt.format(ts=100 + i * 1e-6, pfn=0x100000 + (i % 50000) * 2))
    return path


@pytest.fixture(scope="module")
def big_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trace whose ingest takes a second or more (600,000 lines, 70 MB)."""
    return write_trace(tmp_path_factory.mktemp("big") / "big.txt", 600_000)


def traces_of(db: Path) -> list[list[Any]]:
    res = run_cli("sql", "SELECT name, events, allocs FROM traces ORDER BY name", "--db", db,
                  "-f", "json")  # fmt: skip
    assert res.code == 0, res.err
    return [list(r.values()) for r in res.json()]


def wait_for(cond: Callable[[], Any], timeout_s: float = 60, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := cond()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return value


def start(*args: str | Path) -> subprocess.Popen[str]:
    """``replay ARGS`` in a subprocess that takes SIGINT as a terminal's Ctrl-C would."""
    return subprocess.Popen(
        [*REPLAY, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def spools(db: Path, prefix: str = ".replay-") -> list[Path]:
    return sorted(p for p in db.parent.glob(f"{prefix}*") if p.is_dir())


def age(paths: list[Path]) -> None:
    """Make leftovers older than MIN_AGE_S (as they would be by the next command)."""
    old = time.time() - 10 * MIN_AGE_S
    for p in paths:
        os.utime(p, (old, old))


# -- item 12: Ctrl-C ----------------------------------------------------------------------------


def test_sigint_during_ingest_exits_130_with_one_line(tmp_path: Path, big_trace: Path) -> None:
    db = tmp_path / "i.duckdb"
    assert run_cli("ingest", ERAS / "v6.18.txt", "--name", "first", "--db", db, "-q").code == 0
    before = traces_of(db)
    proc = start("ingest", big_trace, "--db", db, "-q")
    wait_for(lambda: spools(db, ".replay-ingest-"), what="the ingest's spool")
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err == "interrupted\n", err
    assert out == ""
    assert traces_of(db) == before  # the transaction was rolled back
    assert not spools(db)  # and its spool removed


def test_sigint_while_loading_exits_130(tmp_path: Path) -> None:
    """Ctrl-C before the command even started (its modules loading) is one line too."""
    # `run` imports numba, DuckDB and Arrow before it starts: that takes longer (a light
    # command such as `traces` may be done by then)
    proc = start("run", "x", "--db", tmp_path / "none.duckdb")
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err == "interrupted\n", (proc.returncode, err)


def test_sigint_during_a_run_stores_no_run(tmp_path: Path) -> None:
    db = tmp_path / "r.duckdb"
    res = run_cli("generate", "kernel-build", "--events", "3000000", "--zone-pages", "65536",
                  "--name", "kb", "--db", db, "-q")  # fmt: skip
    assert res.code == 0, res.err
    proc = start("run", "kb", "--model", "mobility", "--db", db, "-q")
    ps = psutil.Process(proc.pid)
    # past imports and loading the kernels (about 0.6 s of CPU), well before the end of
    # the run (about 3.5 s of CPU; 1.5M events had ended by 2 s once start-up got lazy)
    wait_for(lambda: ps.cpu_times().user > 1.5, what="the run to compute")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err == "interrupted\n", (proc.returncode, err)
    res = run_cli("sql", "SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM steps)",
                  "--db", db, "-f", "csv")  # fmt: skip
    assert res.code == 0 and res.out.splitlines()[1:] == ["0,0"], res.out
    assert not spools(db, ".replay-run-")  # the interrupted run removed its own spool


def test_killed_run_spool_is_removed_by_the_next_command(tmp_path: Path) -> None:
    """A run spools its model events, pageblocks and checkpoints beside the database
    (``.replay-run-*``, locked while it runs); a run killed with SIGKILL leaves it, and
    the next command removes it."""
    db = tmp_path / "r.duckdb"
    res = run_cli("generate", "kernel-build", "--events", "3000000", "--zone-pages", "65536",
                  "--name", "kb", "--db", db, "-q")  # fmt: skip
    assert res.code == 0, res.err
    proc = start("run", "kb", "--model", "mobility", "--db", db, "-q")
    left = wait_for(lambda: spools(db, ".replay-run-"), what="the run's spool")
    proc.kill()
    proc.wait()
    assert spools(db, ".replay-run-") == left
    age(left)
    assert run_cli("runs", "--db", db, "-f", "json").code == 0
    assert not spools(db, ".replay-run-")


# -- item 13: leftovers of killed processes are removed by the next command -----------------------


def test_killed_ingest_spool_is_removed_by_the_next_command(
    tmp_path: Path, big_trace: Path
) -> None:
    db = tmp_path / "k.duckdb"
    assert run_cli("ingest", ERAS / "v6.18.txt", "--name", "first", "--db", db, "-q").code == 0
    before = traces_of(db)
    proc = start("ingest", big_trace, "--db", db, "-q")
    left = wait_for(lambda: spools(db, ".replay-ingest-"), what="the ingest's spool")
    proc.kill()
    proc.wait()
    assert spools(db) == left
    age(left)
    assert traces_of(db) == before  # the next command opens the store: removed
    assert not spools(db)


def test_live_spool_is_not_removed(tmp_path: Path, big_trace: Path) -> None:
    """Another process's spool (it holds its lock) stays while that process runs."""
    from replay.spool import Spool, remove_leftovers

    db = tmp_path / "l.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from replay.spool import Spool; "
         f"s = Spool({str(tmp_path)!r}, '.replay-ingest-'); print(s.path, flush=True); "
         "sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdin is not None
    live = Path(holder.stdout.readline().strip())
    mine = Spool(tmp_path, ".replay-upload-")
    age([live, mine.path])
    assert remove_leftovers(db) == []
    assert live.is_dir() and mine.path.is_dir()
    holder.kill()  # (an owner that exits normally removes its spool itself)
    holder.wait()
    assert remove_leftovers(db) == [live]  # its owner is gone
    mine.remove()
    assert not spools(db)


def test_killed_first_ingest_leaves_no_database(tmp_path: Path, big_trace: Path) -> None:
    """The first ingest into a new file, killed: the next command finds no database."""
    db = tmp_path / "new.duckdb"
    proc = start("ingest", big_trace, "--db", db, "-q")
    wait_for(lambda: spools(db, ".replay-ingest-"), what="the ingest's spool")
    proc.kill()
    proc.wait()
    assert db.exists() and Path(f"{db}{NEW_SUFFIX}").exists()  # the schema, committed
    res = run_cli("traces", "--db", db)
    assert res.code == 2 and "no such database" in res.err, res.err
    assert not db.exists() and not Path(f"{db}.wal").exists()
    assert not Path(f"{db}{NEW_SUFFIX}").exists()
    # an ingest after it starts from nothing
    assert run_cli("ingest", ERAS / "v6.18.txt", "--name", "era", "--db", db, "-q").code == 0
    assert [r[0] for r in traces_of(db)] == ["era"]
    assert not Path(f"{db}{NEW_SUFFIX}").exists()


def test_a_new_empty_database_closed_on_purpose_stays(tmp_path: Path) -> None:
    """A failed first ingest removes its file; ``replay serve`` on a new file keeps it."""
    db = tmp_path / "e.duckdb"
    res = run_cli("ingest", ERAS / "bad_int.txt", "--db", db, "-q")
    assert res.code == 65 and not db.exists() and not Path(f"{db}{NEW_SUFFIX}").exists()
    with serve_process(db) as served:
        assert served.client.get("/api/traces").json() == {"traces": []}
    assert db.exists() and not Path(f"{db}{NEW_SUFFIX}").exists()
    assert traces_of(db) == []


def test_killed_server_uploads_are_removed(tmp_path: Path, big_trace: Path) -> None:
    db = tmp_path / "s.duckdb"
    assert run_cli("ingest", ERAS / "v6.18.txt", "--name", "first", "--db", db, "-q").code == 0
    before = traces_of(db)
    with serve_process(db) as served:
        with open(big_trace, "rb") as f:
            r = served.client.post("/api/jobs/ingest", files={"file": ("big.txt", f)})
        assert r.status_code == 202, r.text
        job = r.json()["id"]

        def running() -> bool:
            view = served.client.get(f"/api/jobs/{job}").json()
            assert view["status"] in ("queued", "running"), view
            return view["status"] == "running" and bool(spools(db, ".replay-ingest-"))

        wait_for(running, what="the ingest job")
        served.proc.kill()
        served.proc.wait()
        left = spools(db)
        assert [p.name[:15] for p in left] == [".replay-ingest-", ".replay-upload-"], left
    age(left)
    assert traces_of(db) == before
    assert not spools(db)


# -- item 16: the database held by replay serve --------------------------------------------------


def test_database_held_by_the_server_says_so(tmp_path: Path) -> None:
    db = tmp_path / "held.duckdb"
    with serve_process(db) as served:
        res = run_cli("traces", "--db", db)
        assert res.code == 1, res.err
        line = res.err.strip()
        assert "\n" not in line
        assert f"is held by replay serve (PID {served.proc.pid})" in line, line
        assert "its API" in line and "POST /api/jobs/ingest" in line, line
        res = run_cli("ingest", ERAS / "v6.18.txt", "--db", db, "-q")
        assert res.code == 1 and f"PID {served.proc.pid}" in res.err
        assert served.client.get("/api/traces").json() == {"traces": []}


def test_database_held_by_another_process_names_it(tmp_path: Path) -> None:
    db = tmp_path / "other.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         f"import duckdb, sys; c = duckdb.connect({str(db)!r}); print('ok', flush=True); "
         "sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdin is not None
    try:
        assert holder.stdout.readline().strip() == "ok"
        res = run_cli("sql", "SELECT 1", "--db", db)
        assert res.code == 1, res.err
        assert f"in use by another process (PID {holder.pid}: " in res.err, res.err
        assert "replay serve" not in res.err
    finally:
        holder.stdin.close()
        holder.wait()
    assert run_cli("sql", "SELECT 1", "--db", db).code == 0


# -- item 14: batch workers die with their coordinator ------------------------------------------


BATCH_SPEC = """name = "long"
[run]
every = 1000
[[traces]]
scenario = "kernel-build"
seed = 1
events = {events}
zone_pages = 65536
[[models]]
preset = "buddy"
[[models]]
preset = "mobility"
"""


def _batch(tmp_path: Path, events: int) -> tuple[subprocess.Popen[str], list[psutil.Process]]:
    """``replay batch`` of two long runs on two workers, once both workers compute."""
    spec = tmp_path / "long.toml"
    spec.write_text(BATCH_SPEC.format(events=events))
    proc = start("batch", spec, "--jobs", "2", "--db", tmp_path / "b.duckdb", "-q")
    coordinator = psutil.Process(proc.pid)

    def busy() -> list[psutil.Process]:
        kids = coordinator.children(recursive=True)  # workers and the resource tracker
        workers = [p for p in kids if "resource_tracker" not in " ".join(p.cmdline())]
        # both have imported and are computing (not the spawn bootstrap any more)
        return kids if len(workers) == 2 and all(p.cpu_times().user > 1.0 for p in workers) else []

    kids = wait_for(busy, timeout_s=120, what="two busy workers")
    return proc, kids


def _gone(procs: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    _, alive = psutil.wait_procs(procs, timeout=timeout_s)
    return alive


def test_batch_workers_die_with_a_killed_coordinator(tmp_path: Path) -> None:
    proc, kids = _batch(tmp_path, 3_000_000)
    proc.kill()
    proc.wait()
    alive = _gone(kids, 10)
    for p in alive:
        p.kill()
    assert not alive, [p.cmdline() for p in alive]


def test_sigint_stops_a_batch_and_its_workers(tmp_path: Path) -> None:
    proc, kids = _batch(tmp_path, 3_000_000)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    alive = _gone(kids, 10)
    for p in alive:
        p.kill()
    assert proc.returncode == 130 and err == "interrupted\n", (proc.returncode, err)
    assert not alive, [p.cmdline() for p in alive]
