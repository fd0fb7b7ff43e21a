"""replay serve under hostile load (issue 18): bounded memory, bounded answers, bounded queues.

Real servers on loopback: ``replay serve`` in a subprocess where its memory is
measured (RSS from /proc), uvicorn in a thread elsewhere; real DuckDB files.
"""

from __future__ import annotations

import contextlib
import io
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ERAS, run_cli
from test_serve import Live, live_server

from replay.service import ServiceConfig
from replay.service.cache import ResultCache

MIB = 1 << 20


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, bytes (VmRSS of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


class Served:
    """``replay serve`` in a subprocess: its pid, URL and a client."""

    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url
        self.client = httpx.Client(base_url=url, timeout=120)

    def sql(self, sql: str) -> httpx.Response:
        return self.client.post("/api/sql", json={"sql": sql})


@contextlib.contextmanager
def serve_process(db: Path, *args: str) -> Iterator[Served]:
    """``replay serve --db DB --port 0 ARGS`` until the block ends (then SIGINT)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "replay.cli.main", "serve", "--db", str(db), "--port", "0",
         "--quiet", *args],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert " at http://" in line, line + proc.stderr.read()
        served = Served(proc, line.split(" at ")[1].split()[0].rstrip("/"))
        deadline = time.monotonic() + 60
        while True:
            try:
                served.client.get("/api/health")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not answer"
                time.sleep(0.1)
        yield served
        served.client.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    db = tmp_path_factory.mktemp("hostile") / "hostile.duckdb"
    with serve_process(db, "--max-result-mb", "8", "--cache-mb", "32") as s:
        yield s


# -- item 2: the result cache is bounded in bytes -----------------------------------------------


def test_result_cache_is_bounded_in_bytes(served: Served) -> None:
    """Distinct 6 MB answers: the cache keeps at most its 32 MiB, the server does not grow."""
    served.sql("SELECT repeat('y', 1000000) AS s FROM range(6) -- warm-up")
    before = rss_bytes(served.proc.pid)
    for i in range(16):
        r = served.sql(f"SELECT repeat('y', 1000000) AS s FROM range(6) -- v{i}")
        assert r.status_code == 200 and r.json()["row_count"] == 6, r.text[:200]
    cache = served.client.get("/api/health").json()["cache"]
    assert 0 < cache["bytes"] <= cache["max_bytes"] == 32 * MIB, cache
    assert 1 <= cache["entries"] <= 5, cache
    grown = rss_bytes(served.proc.pid) - before
    # all 16 kept (rows and body: 12 MB each) would be about 190 MB
    assert grown < 100 * MIB, f"the server grew by {grown / MIB:.0f} MiB"
    small = [served.sql("SELECT 42 AS n -- small").json() for _ in range(2)]
    assert not small[0]["cached"] and small[1]["cached"]


def test_cache_keeps_no_result_over_a_quarter_of_its_bytes() -> None:
    """A result larger than a quarter of the budget is computed every time, never kept."""
    cache = ResultCache(entries=100, max_bytes=1000)
    calls = []

    def compute(n: int) -> bytes:
        calls.append(n)
        return b"x" * n

    assert cache.get("big", lambda: compute(300)) == (b"x" * 300, False)
    assert cache.get("big", lambda: compute(300))[1] is False and len(calls) == 2
    for i in range(10):  # 200-byte results (233 bytes of memory): four fit in 1000 bytes
        cache.get(i, lambda: compute(200))
    stats = cache.stats()
    assert stats["entries"] == 1000 // sys.getsizeof(b"x" * 200) == 4, stats
    assert stats["bytes"] <= 1000, stats
    assert cache.get(9, lambda: compute(200))[1] is True  # the newest are kept
    assert cache.get(0, lambda: compute(200))[1] is False  # the oldest went first


# -- item 3: the bytes of an answer are capped ---------------------------------------------------


def test_answer_bytes_are_capped(served: Served) -> None:
    """Rows past the byte cap are cut (``truncated``); a row alone over it is refused."""
    r = served.sql("SELECT repeat('x', 1000000) AS s FROM range(100)")
    assert r.status_code == 200, r.text[:200]
    assert len(r.content) <= 8 * MIB
    body = r.json()
    assert body["truncated"] and 4 <= body["row_count"] < 9, body["row_count"]
    assert all(len(row[0]) == 1_000_000 for row in body["rows"])
    assert r.headers["content-type"] == "application/json"
    # the statement: ten rows of 20 MB, each alone over the cap
    r = served.sql("SELECT repeat('x', 20000000) FROM range(10)")
    assert r.status_code == 400 and len(r.content) < 4096
    assert "larger than the limit of 8388608 bytes" in r.json()["error"]
    # the cap does not cut what fits
    r = served.sql("SELECT repeat('x', 1000) AS s FROM range(1000)")
    assert r.status_code == 200 and r.json()["row_count"] == 1000 and not r.json()["truncated"]


# -- item 4: the time limit covers fetching and converting --------------------------------------


@pytest.fixture(scope="module")
def slow_fetch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A server whose answers may be large (1 GiB), with a time limit of 0.5 s."""
    db = tmp_path_factory.mktemp("slowfetch") / "slow.duckdb"
    cfg = ServiceConfig(db=db, sql_timeout_s=0.5, max_result_bytes=1 << 30)
    with live_server(cfg) as lv:
        yield lv


def test_time_limit_covers_fetching_the_result(slow_fetch: Live) -> None:
    """A statement that runs fast but whose rows take seconds to convert stops at the limit.

    Converting all of these rows to Python takes about 26 s here; the answer comes after
    about 1.6 s (the statement's own run, then slices up to the limit). The bound leaves
    room for a busy machine (the other test worker compiling): the smaller result this
    test used before took 2.8 s to convert whole, and once 6.2 s to answer under load."""
    t0 = time.perf_counter()
    r = slow_fetch.client.post(
        "/api/sql", json={"sql": "SELECT list(range(2000)) AS l FROM range(50000)"}
    )
    took = time.perf_counter() - t0
    assert r.status_code == 400, (r.status_code, len(r.content))
    assert "time limit of 0.5 s" in r.json()["error"]
    assert took < 8, f"answered after {took:.1f} s"
    assert slow_fetch.sql("SELECT 7 AS n")["rows"] == [[7]]


def test_runaway_query_is_interrupted_while_health_answers(slow_fetch: Live) -> None:
    """A query that runs forever is stopped at the limit; /api/health answers meanwhile."""
    result: dict[str, Any] = {}

    def runaway() -> None:
        t0 = time.perf_counter()
        result["response"] = slow_fetch.client.post(
            "/api/sql",
            json={"sql": "SELECT count(*) FROM range(10000000000000) t(x) WHERE x % 7 = 3"},
        )
        result["took"] = time.perf_counter() - t0

    th = threading.Thread(target=runaway)
    th.start()
    waits = []
    while th.is_alive():
        t0 = time.perf_counter()
        assert slow_fetch.client.get("/api/health").status_code == 200
        waits.append(time.perf_counter() - t0)
        time.sleep(0.02)
    th.join()
    r = result["response"]
    assert r.status_code == 400 and "time limit of 0.5 s" in r.json()["error"]
    assert 0.4 < result["took"] < 3
    assert waits and max(waits) < 1.0, waits


# -- item 5: the job queue and the disk its uploads hold are bounded ------------------------------


@pytest.fixture
def blocked(tmp_path: Path) -> Iterator[tuple[Live, threading.Event]]:
    """A server whose writer thread is busy until the event is set (or the server stops).

    Queues at most 3 jobs; uploads up to 100 KiB; waiting uploads hold at most 150 KiB.
    """
    db = tmp_path / "queue.duckdb"
    assert run_cli("ingest", ERAS / "v6.18.txt", "--name", "t", "--db", db, "-q").code == 0
    cfg = ServiceConfig(db=db, max_queued_jobs=3, max_upload_bytes=100 << 10,
                        max_queued_upload_bytes=150 << 10)  # fmt: skip
    release = threading.Event()
    with live_server(cfg) as lv:
        started = threading.Event()

        def busy(progress: Any) -> dict[str, Any]:
            started.set()
            release.wait(120)
            return {}

        lv.app.state.service.jobs.submit("run", {"blocker": True}, busy)
        assert started.wait(30)
        try:
            yield lv, release
        finally:
            # the queued jobs fail at shutdown ("the server shut down before the job started")
            threading.Timer(0.5, release.set).start()


def _upload(live: Live, filename: str, data: bytes, **form: str) -> httpx.Response:
    return live.client.post(
        "/api/jobs/ingest", files={"file": (filename, io.BytesIO(data))}, data=form
    )


def _trace_text(nbytes: int) -> bytes:
    """Valid ftrace text of about ``nbytes`` bytes (the v6.18 era file, repeated)."""
    text = (ERAS / "v6.18.txt").read_bytes()
    return text * max(1, nbytes // len(text))


def test_job_queue_and_upload_disk_are_bounded(
    blocked: tuple[Live, threading.Event],
) -> None:
    live, _ = blocked
    uploads = live.db.parent.glob
    data = _trace_text(60 << 10)
    # two 60 KiB uploads wait on disk (120 KiB); a third would pass the 150 KiB
    for i in range(2):
        r = _upload(live, f"u{i}.txt", data, name=f"u{i}")
        assert r.status_code == 202 and r.json()["status"] == "queued", r.text
    r = _upload(live, "u2.txt", data, name="u2")
    assert r.status_code == 507, r.text
    msg = r.json()["error"]
    assert "uploads waiting to be ingested hold" in msg and str(150 << 10) in msg, msg
    assert r.headers["retry-after"]
    assert len(list(uploads(".replay-upload-*"))) == 2  # the refused one left nothing
    health = live.client.get("/api/health").json()
    assert health["jobs"]["queued"] == 2 and health["jobs"]["running"] == 1
    assert 2 * len(data) <= health["queue"]["upload_bytes"] < (150 << 10), health
    # one run job fills the queue (3); the next job of any kind is refused, 429
    r = live.client.post("/api/jobs/run", json={"trace": "t"})
    assert r.status_code == 202, r.text
    r = live.client.post("/api/jobs/run", json={"trace": "t"})
    assert r.status_code == 429, r.text
    assert "the job queue is full: 3 jobs are waiting" in r.json()["error"]
    assert r.headers["retry-after"]
    r = _upload(live, "small.txt", _trace_text(1000), name="small")
    assert r.status_code == 429 and "queue is full" in r.json()["error"]
    assert len(list(uploads(".replay-upload-*"))) == 2
    assert live.client.get("/api/health").json()["jobs"]["queued"] == 3


def test_queue_frees_up_as_jobs_finish(blocked: tuple[Live, threading.Event]) -> None:
    """Once the writer takes the waiting jobs, the queue and the upload disk accept again."""
    live, release = blocked
    data = _trace_text(60 << 10)
    views = [_upload(live, f"w{i}.txt", data, name=f"w{i}").json() for i in range(2)]
    assert _upload(live, "w2.txt", data, name="w2").status_code == 507
    release.set()
    for v in views:
        assert live.job(v)["status"] == "done", v
    assert not list(live.db.parent.glob(".replay-upload-*"))
    assert live.client.get("/api/health").json()["queue"]["upload_bytes"] == 0
    view = live.job(_upload(live, "w2.txt", data, name="w2").json())
    assert view["status"] == "done", view


# -- item 17: server paths only for token holders ------------------------------------------------


def _store_with_paths(folder: Path) -> Path:
    """A store with a trace ingested from inside its folder and one from elsewhere."""
    db = folder / "paths.duckdb"
    (folder / "traces").mkdir()
    inside = folder / "traces" / "inside.txt"
    inside.write_bytes((ERAS / "v6.18.txt").read_bytes())
    assert run_cli("ingest", inside, "--db", db, "-q").code == 0
    assert run_cli("ingest", ERAS / "v5.15.txt", "--name", "outside", "--db", db, "-q").code == 0
    return db


def test_trace_sources_hide_server_paths_without_a_token(tmp_path: Path) -> None:
    db = _store_with_paths(tmp_path)
    with live_server(ServiceConfig(db=db)) as lv:
        traces = lv.client.get("/api/traces")
        sources = {t["name"]: t["source"] for t in traces.json()["traces"]}
        assert sources == {"inside": "traces/inside.txt", "outside": "v5.15.txt"}
        summary = lv.client.get("/api/traces/outside")
        assert summary.json()["trace"]["source"] == "v5.15.txt"
        health = lv.client.get("/api/health")
        assert health.json()["db"] == "paths.duckdb"
        missing = lv.client.get("/api/traces/nope")
        assert missing.status_code == 404 and "paths.duckdb" in missing.json()["error"]
        for r in (traces, summary, health, missing):
            assert str(tmp_path) not in r.text and str(ERAS) not in r.text, r.text[:300]
        # an upload is named by its file name, as before
        view = lv.job(_upload(lv, "up.txt", _trace_text(1000), name="up").json())
        assert view["status"] == "done", view
        sources = {t["name"]: t["source"] for t in lv.client.get("/api/traces").json()["traces"]}
        assert sources["up"] == "upload:up.txt"


def test_token_holders_see_server_paths(tmp_path: Path) -> None:
    db = _store_with_paths(tmp_path)
    with live_server(ServiceConfig(db=db, token="t0ken"), token="t0ken") as lv:
        sources = {t["name"]: t["source"] for t in lv.client.get("/api/traces").json()["traces"]}
        assert sources["inside"] == str(tmp_path / "traces" / "inside.txt")
        assert sources["outside"] == str((ERAS / "v5.15.txt").resolve())
        assert lv.client.get("/api/health").json()["db"] == str(db)
