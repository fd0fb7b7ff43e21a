"""replay serve: the HTTP API on a real uvicorn over loopback, real DuckDB files, real jobs.

Checks the reads (traces, runs, steps windows, metrics against replay.analysis.metrics,
named queries), the SQL guard (one SELECT, no files/ATTACH/COPY/INSTALL, time
limit, row cap), jobs (ingest equals ``replay ingest``; a failed job changes
nothing), reads during an open write transaction, the token, the upload limit,
JSON errors, and the OpenAPI schema with schemathesis.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
import schemathesis
import uvicorn
import zstandard
from conftest import ERAS, run_cli
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from replay.analysis import metrics
from replay.cli.serve import bind_socket, is_loopback
from replay.service import ServiceConfig, create_app

TOKEN = "s3cret-token"


@dataclass
class Live:
    """A running server: its base URL, the app (for its Service) and a client."""

    url: str
    app: Any
    client: httpx.Client
    db: Path

    def job(self, job: dict[str, Any], timeout_s: float = 300) -> dict[str, Any]:
        """Poll a job until it finishes; returns its final view."""
        deadline = time.monotonic() + timeout_s
        while True:
            r = self.client.get(f"/api/jobs/{job['id']}")
            assert r.status_code == 200, r.text
            view = r.json()
            if view["status"] in ("done", "failed"):
                return view
            assert time.monotonic() < deadline, f"job did not finish: {view}"
            time.sleep(0.05)

    def sql(self, sql: str, **extra: Any) -> dict[str, Any]:
        r = self.client.post("/api/sql", json={"sql": sql, **extra})
        assert r.status_code == 200, r.text
        return r.json()


@contextlib.contextmanager
def live_server(config: ServiceConfig, token: str | None = None) -> Iterator[Live]:
    """uvicorn in a thread on a free loopback port, serving create_app(config)."""
    app = create_app(config)
    sock = bind_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    client = httpx.Client(base_url=url, timeout=120, headers=headers)
    try:
        yield Live(url, app, client, config.db)
    finally:
        client.close()
        server.should_exit = True
        thread.join(timeout=60)
        sock.close()


def make_store(db: Path, events: int = 40000) -> None:
    """A store with one synthetic trace ('kernel-build', a zone of 16384 pages)."""
    res = run_cli(
        "generate",
        "kernel-build",
        "--events",
        str(events),
        "--zone-pages",
        "16384",
        "--db",
        db,
        "-q",
    )
    assert res.code == 0, res.err


def submit_runs(live: Live) -> list[int]:
    """Replay the trace as buddy (every step) and mobility (counters every 10) via jobs."""
    ids = []
    for model, every in (("buddy", 1), ("mobility", 10)):
        r = live.client.post(
            "/api/jobs/run", json={"trace": "kernel-build", "model": model, "every": every}
        )
        assert r.status_code == 202, r.text
        view = live.job(r.json())
        assert view["status"] == "done", view
        ids.append(view["result"]["run_id"])
    return ids


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    db = tmp_path_factory.mktemp("serve") / "serve.duckdb"
    make_store(db)
    with live_server(ServiceConfig(db=db, sql_timeout_s=1.5, max_rows=2000)) as lv:
        yield lv


@pytest.fixture(scope="module")
def run_ids(live: Live) -> list[int]:
    return submit_runs(live)


# -- the CLI ------------------------------------------------------------------------------


def test_token_is_required_off_loopback(tmp_path: Path) -> None:
    res = run_cli("serve", "--host", "0.0.0.0", "--db", tmp_path / "x.duckdb")
    assert res.code == 2 and "--token" in res.err
    assert not (tmp_path / "x.duckdb").exists()  # refused before opening anything
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")


def test_serve_cli_starts_and_answers(tmp_path: Path) -> None:
    """``replay serve --port 0`` in a subprocess: prints its URL, serves, stops on SIGINT."""
    import signal
    import subprocess
    import sys

    db = tmp_path / "cli.duckdb"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "replay.cli.main",
            "serve",
            "--db",
            str(db),
            "--port",
            "0",
            "--quiet",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "replay serve:" in line and "http://127.0.0.1:" in line, line
        url = line.split(" at ")[1].split()[0].rstrip("/")
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(url + "/api/health", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert r.status_code == 200 and r.json()["status"] == "ok"
        assert httpx.get(url + "/api/traces", timeout=5).json() == {"traces": []}
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0


# -- reads ------------------------------------------------------------------------------------


def test_traces_and_summary(live: Live, run_ids: list[int]) -> None:
    traces = live.client.get("/api/traces").json()["traces"]
    assert [t["name"] for t in traces] == ["kernel-build"]
    t = traces[0]
    assert t["events"] == 40000 and t["zone_pages"] == 16384 and t["runs"] == len(run_ids)
    s = live.client.get("/api/traces/kernel-build").json()
    assert s["trace"]["events"] == 40000
    assert sum(o["allocs"] for o in s["orders"]) == t["allocs"]
    assert sum(e["count"] for e in s["event_types"]) == 40000
    assert {r["run_id"] for r in s["runs"]} == set(run_ids)
    assert live.client.get(f"/api/traces/{t['trace_id']}").json()["trace"]["name"] == t["name"]
    r = live.client.get("/api/traces/nope")
    assert r.status_code == 404 and "no trace named 'nope'" in r.json()["error"]


def test_runs(live: Live, run_ids: list[int]) -> None:
    runs = live.client.get("/api/runs").json()["runs"]
    assert [r["run_id"] for r in runs] == run_ids
    assert [r["model"] for r in runs] == ["buddy", "mobility"]
    assert live.client.get("/api/runs", params={"trace": "kernel-build"}).json()["runs"] == runs
    one = live.client.get(f"/api/runs/{run_ids[1]}").json()["run"]
    assert one["trace"] == "kernel-build" and one["every"] == 10
    assert one["config"]["preset"] == "mobility" and len(one["nr_free"]) == 11
    r = live.client.get("/api/runs/999")
    assert r.status_code == 404 and "999" in r.json()["error"]


def test_steps_window(live: Live, run_ids: list[int]) -> None:
    run = run_ids[0]
    res = live.client.get(
        f"/api/runs/{run}/steps", params={"seq_from": 1000, "seq_to": 1999, "every": 10}
    ).json()
    seqs = [r[res["columns"].index("seq")] for r in res["rows"]]
    assert seqs == list(range(1000, 2000, 10)) and not res["truncated"]
    # a pfn window: only allocations placed in it
    pfn = res["columns"].index("pfn")
    res = live.client.get(
        f"/api/runs/{run}/steps", params={"pfn_from": 4096, "pfn_to": 8191}
    ).json()
    assert res["rows"] and all(4096 <= r[pfn] <= 8191 for r in res["rows"])
    direct = live.sql(
        f"SELECT count(*) FROM steps WHERE run_id = {run} AND pfn BETWEEN 4096 AND 8191"
    )["rows"][0][0]
    assert res["truncated"] == (direct > 2000)
    assert res["row_count"] == min(direct, 2000)
    capped = live.client.get(f"/api/runs/{run}/steps", params={"limit": 7}).json()
    assert capped["row_count"] == 7 and capped["truncated"]
    r = live.client.get(f"/api/runs/{run}/steps", params={"every": 0})
    assert r.status_code == 422 and "every" in r.json()["error"]


def test_metrics_match_replay_metrics(live: Live, run_ids: list[int]) -> None:
    """The SQL macros' indices equal replay.analysis.metrics' Python functions on the same steps."""
    run = run_ids[1]
    res = live.client.get(f"/api/runs/{run}/metrics", params={"points": 25, "order": 4}).json()
    cols = res["columns"]
    rows = [dict(zip(cols, r, strict=True)) for r in res["rows"]]
    assert 2 <= len(rows) <= 25
    seqs = [r["seq"] for r in rows]
    assert seqs == sorted(seqs) and seqs[-1] == 39999
    nr = ", ".join(f"nr_free_{k}" for k in range(11))
    seq_list = ", ".join(map(str, seqs))
    counts = live.sql(
        f"SELECT seq, {nr} FROM steps WHERE run_id = {run} AND seq IN ({seq_list}) ORDER BY seq"
    )["rows"]
    for row, c in zip(rows, counts, strict=True):
        nr_free = c[1:]
        assert row["seq"] == c[0]
        assert row["free_pages"] == metrics.free_pages(nr_free)
        assert row["unusable_index"] == metrics.unusable_index(nr_free, 4)
        assert row["extfrag_for_order"] == metrics.extfrag_for_order(nr_free, 4)
        assert row["fragmentation_index"] == metrics.fragmentation_index(nr_free, 4)
        assert row["largest_free_order"] == metrics.largest_free_order(nr_free)


def test_named_queries(live: Live, run_ids: list[int]) -> None:
    listed = {q["name"]: q for q in live.client.get("/api/queries").json()["queries"]}
    assert "compare_runs" in listed and listed["failures_by_order"]["params"][0]["required"]
    res = live.client.get("/api/queries/compare_runs").json()
    assert [r[0] for r in res["rows"]] == run_ids
    res = live.client.get("/api/queries/failures_by_order", params={"run": run_ids[0]}).json()
    allocs = res["columns"].index("allocs")
    total = live.sql("SELECT allocs FROM traces")["rows"][0][0]
    assert sum(r[allocs] for r in res["rows"]) == total
    r = live.client.get("/api/queries/failures_by_order")
    assert r.status_code == 400 and "run" in r.json()["error"]
    r = live.client.get("/api/queries/compare_runs", params={"bogus": 1})
    assert r.status_code == 400 and "bogus" in r.json()["error"]
    r = live.client.get("/api/queries/no_such_query")
    assert r.status_code == 404 and "no query named" in r.json()["error"]
    assert live.client.get("/api/queries/..%2F..%2Fetc%2Fpasswd").status_code in (404, 422)


# -- SQL from clients ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "needle"),
    [
        ("DELETE FROM traces", "only SELECT"),
        ("DROP TABLE steps", "only SELECT"),
        ("SELECT 1; DELETE FROM traces", "exactly one statement"),
        ("ATTACH 'other.duckdb' AS o", "only SELECT"),
        ("COPY traces TO 'out.csv'", "only SELECT"),
        ("INSTALL httpfs", "only SELECT"),
        ("LOAD httpfs", "only SELECT"),
        ("SET enable_external_access = true", "only SELECT"),
        ("PRAGMA version", "only SELECT"),
        ("CALL checkpoint()", "only SELECT"),
        ("SELECT * FROM checkpoint()", "checkpoint() changes the database"),
        ("SELECT 1 FROM range(1), force_checkpoint()", "force_checkpoint() changes"),
        ("SELECT truncate_duckdb_logs()", "truncate_duckdb_logs() changes"),
        ("SELECT * FROM read_csv('/etc/passwd')", "disabled"),
        ("SELECT * FROM read_text('/etc/hostname')", "disabled"),
        ("SELECT * FROM glob('/*')", "disabled"),
        ("SELECT * FROM read_parquet('x.parquet')", "disabled"),
        ("SELECT * FROM query('DELETE FROM traces RETURNING *')", "SELECT"),
        ("SELEC 1", "cannot parse"),
        ("", "empty"),
    ],
)
def test_sql_guard(live: Live, sql: str, needle: str) -> None:
    before = live.sql("SELECT count(*) FROM traces")["rows"][0][0]
    r = live.client.post("/api/sql", json={"sql": sql})
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]
    assert live.sql("SELECT count(*) FROM traces")["rows"][0][0] == before


def test_sql_results(live: Live) -> None:
    res = live.sql("SELECT name, events FROM traces")
    assert res["columns"] == ["name", "events"] and res["types"] == ["VARCHAR", "BIGINT"]
    assert res["rows"] == [["kernel-build", 40000]] and not res["truncated"]
    # row cap: the server's (2000) and a smaller one asked for
    big = live.sql("SELECT * FROM range(5000)")
    assert big["row_count"] == 2000 and big["truncated"] and big["rows"][-1] == [1999]
    small = live.sql("SELECT * FROM range(5000)", max_rows=3)
    assert small["rows"] == [[0], [1], [2]] and small["truncated"]
    exact = live.sql("SELECT * FROM range(3)", max_rows=3)
    assert exact["row_count"] == 3 and not exact["truncated"]
    # values JSON cannot hold directly
    odd = live.sql(
        "SELECT 'nan'::DOUBLE AS n, TIMESTAMPTZ '2020-01-02 03:04:05+00' AS t, "
        "1.25::DECIMAL(5, 2) AS d, [1, 2] AS l, {'a': 1} AS s, MAP {'k': 2} AS m"
    )
    assert odd["rows"][0][0] is None and odd["rows"][0][1].startswith("2020-01-0")
    assert odd["rows"][0][2:] == [1.25, [1, 2], {"a": 1}, {"k": 2}]


def test_sql_time_limit(live: Live) -> None:
    t0 = time.perf_counter()
    r = live.client.post(
        "/api/sql", json={"sql": "SELECT count(*) FROM range(10000000000000) t(x) WHERE x % 7 = 3"}
    )
    took = time.perf_counter() - t0
    assert r.status_code == 400 and "time limit of 1.5 s" in r.json()["error"]
    assert 1.4 < took < 10
    # the server is fine afterwards
    assert live.sql("SELECT 42")["rows"] == [[42]]


# -- errors ------------------------------------------------------------------------------------


def test_errors_are_json(live: Live) -> None:
    for method, path, status in [
        ("GET", "/api/nowhere", 404),
        ("DELETE", "/api/traces", 405),
        ("GET", "/api/runs/abc", 422),
        ("GET", "/api/runs/1/metrics?order=11", 422),
        ("GET", "/api/report/data?runs=1;2", 400),
        ("GET", "/api/report/data?runs=12345", 404),
        ("GET", "/api/jobs/1-deadbeef", 404),
        ("GET", "/api/batches/nope/runs", 404),
        ("GET", "/static/%2e%2e/%2e%2e/serve.duckdb", 404),
        ("GET", "/assets/..%2Fstore.py", 404),
    ]:
        r = live.client.request(method, path)
        assert r.status_code == status, (path, r.text)
        assert r.headers["content-type"].startswith("application/json")
        body = r.json()
        assert set(body) == {"error", "detail"} and body["error"], body
    r = live.client.post(
        "/api/sql", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["error"].startswith("invalid request")


# -- reports ------------------------------------------------------------------------------------


def test_reports(live: Live, run_ids: list[int]) -> None:
    runs = ",".join(map(str, run_ids))
    data = live.client.get("/api/report/data", params={"runs": runs, "points": 50}).json()
    assert [r["run_id"] for r in data["runs"]] == run_ids
    assert all(len(r["series"]["seq"]) <= 50 for r in data["runs"])
    summary = live.client.get("/api/report/summary", params={"runs": runs}).json()
    assert [r[0] for r in summary["rows"]] == run_ids
    html = live.client.get("/api/report", params={"runs": runs, "title": "two models"})
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "two models" in html.text and "ReplayCharts" in html.text
    js = live.client.get("/assets/charts.js")
    assert js.status_code == 200 and "ReplayCharts" in js.text
    assert live.client.get("/assets/secrets.txt").status_code == 404


# -- jobs --------------------------------------------------------------------------------------


def _upload(live: Live, filename: str, data: bytes, **form: str) -> httpx.Response:
    files = {"file": (filename, io.BytesIO(data))}
    return live.client.post("/api/jobs/ingest", files=files, data=form)


def _counts(live: Live) -> list[Any]:
    return live.sql(
        "SELECT (SELECT count(*) FROM traces), (SELECT count(*) FROM events), "
        "(SELECT count(*) FROM aux_events), (SELECT count(*) FROM runs), "
        "(SELECT count(*) FROM steps)"
    )["rows"][0]


def test_ingest_job_equals_replay_ingest(live: Live, tmp_path: Path) -> None:
    text = (ERAS / "v6.18.txt").read_bytes()
    r = _upload(live, "v6.18.txt.zst", zstandard.ZstdCompressor().compress(text), name="era-618")
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["kind"] == "ingest" and job["status"] in ("queued", "running", "done")
    view = live.job(job)
    assert view["status"] == "done", view
    assert view["progress"]["fraction"] == 1.0
    ref = run_cli("ingest", ERAS / "v6.18.txt", "--db", tmp_path / "ref.duckdb", "-q", "-f", "json")
    assert ref.code == 0, ref.err
    want = ref.json()["ingested"]
    got = view["result"]
    for k in ("events", "aux_events", "allocs", "frees", "failed_allocs", "zone_pages"):
        assert got[k] == want[k], k
    row = live.client.get("/api/traces/era-618").json()["trace"]
    assert row["source"] == "upload:v6.18.txt.zst" and row["events"] == want["events"]


def test_ingest_parquet_upload(live: Live, tmp_path: Path) -> None:
    res = run_cli(
        "generate",
        "fragmenter",
        "--zone-pages",
        "4096",
        "--name",
        "frag",
        "--db",
        tmp_path / "g.duckdb",
        "-q",
    )
    assert res.code == 0, res.err
    out = tmp_path / "frag.parquet"
    assert run_cli("export", "frag", "-o", out, "--db", tmp_path / "g.duckdb").code == 0
    n = pq.ParquetFile(out).metadata.num_rows
    view = live.job(_upload(live, "frag.parquet", out.read_bytes()).json())
    assert view["status"] == "done", view
    assert view["params"]["kind"] == "parquet" and view["result"]["name"] == "frag"
    assert view["result"]["events"] == n


def test_failed_ingest_job_changes_nothing(live: Live) -> None:
    before = _counts(live)
    r = _upload(live, "bad_int.txt", (ERAS / "bad_int.txt").read_bytes())
    assert r.status_code == 202, r.text
    view = live.job(r.json())
    assert view["status"] == "failed"
    err = view["error"]
    assert err["kind"] == "bad_input" and err["exit_code"] == 65
    assert err["error"].startswith("bad_int.txt:") and "'order'" in err["error"]
    assert _counts(live) == before
    assert live.client.get("/api/traces/bad_int").status_code == 404
    assert not list(live.db.parent.glob(".replay-upload-*"))  # the upload was removed


def test_failed_run_job_changes_nothing(live: Live, run_ids: list[int]) -> None:
    before = _counts(live)
    r = live.client.post("/api/jobs/run", json={"trace": "kernel-build", "start": "observed"})
    view = live.job(r.json())
    assert view["status"] == "failed" and "observed" in view["error"]["error"]
    assert _counts(live) == before


def test_job_requests_are_validated(live: Live, run_ids: list[int]) -> None:
    before = _counts(live)
    r = live.client.post("/api/jobs/run", json={"trace": "kernel-build", "model": "/etc/x.toml"})
    assert r.status_code == 422 and "model" in r.json()["error"]
    r = live.client.post("/api/jobs/run", json={"trace": "nope"})
    assert r.status_code == 404
    r = live.client.post("/api/jobs/run", json={"trace": "../../x"})
    assert r.status_code == 422
    r = _upload(live, "t.txt", (ERAS / "v6.18.txt").read_bytes(), name="../evil")
    assert r.status_code == 400 and "invalid trace name" in r.json()["error"]
    r = _upload(live, "t.txt", (ERAS / "v6.18.txt").read_bytes(), name="kernel-build")
    assert r.status_code == 409 and "replace" in r.json()["error"]
    r = _upload(live, "x.bin", b"\x00\x01\x02 binary junk")
    assert r.status_code == 422 and r.json()["error"].startswith("x.bin:")
    r = _upload(live, "empty.txt", b"")
    assert r.status_code == 422 and "empty" in r.json()["error"]
    assert _counts(live) == before
    # a path in the file name is dropped: the upload lands in the server's temp folder
    view = live.job(_upload(live, "../../../escape.txt", (ERAS / "v5.15.txt").read_bytes()).json())
    assert view["status"] == "done" and view["params"]["file"] == "escape.txt"
    assert view["result"]["name"] == "escape"
    assert not (live.db.parent.parent / "escape.txt").exists()


def test_reads_proceed_inside_an_open_write_transaction(live: Live, run_ids: list[int]) -> None:
    """A reader cursor sees the last committed state while the writer's transaction is open."""
    svc = live.app.state.service
    assert svc.jobs.counts()["running"] == 0 and svc.jobs.counts()["queued"] == 0
    writer = svc.db.writer
    count = "SELECT count(*) FROM traces -- {}"  # a new text each time: never from the cache
    before = live.sql(count.format(1))["rows"][0][0]
    writer.run("BEGIN TRANSACTION")
    try:
        writer.run("INSERT INTO traces (trace_id, name) VALUES (9999, 'uncommitted')")
        assert writer.one("SELECT count(*) FROM traces")[0] == before + 1
        svc.cache.invalidate()
        t0 = time.perf_counter()
        res = live.client.get("/api/traces").json()
        names = [t["name"] for t in res["traces"]]
        assert "uncommitted" not in names and len(names) == before
        fresh = live.sql(count.format(2))
        assert fresh["rows"][0][0] == before and not fresh["cached"]
        assert time.perf_counter() - t0 < 5
    finally:
        writer.run("ROLLBACK")
    assert live.sql(count.format(3))["rows"][0][0] == before


def test_result_cache_ends_with_a_job(live: Live, run_ids: list[int]) -> None:
    """Identical reads are served from the cache until a job ends, then computed afresh."""
    q = "SELECT count(*) AS n FROM traces WHERE name LIKE 'cache-%'"
    first, second = live.sql(q), live.sql(q)
    assert not first["cached"] and second["cached"] and first["rows"] == second["rows"] == [[0]]
    view = live.job(
        _upload(live, "c.txt", (ERAS / "v4.19.txt").read_bytes(), name="cache-1").json()
    )
    assert view["status"] == "done", view
    after = live.sql(q)
    assert not after["cached"] and after["rows"] == [[1]]
    named = [live.client.get("/api/queries/compare_runs").json() for _ in range(2)]
    assert named[1]["cached"] and named[0]["rows"] == named[1]["rows"]


def test_reads_while_a_job_runs(live: Live, run_ids: list[int]) -> None:
    """Queries keep answering (no errors) while a replay job writes."""
    r = live.client.post("/api/jobs/run", json={"trace": "kernel-build", "model": "mobility+pcp"})
    job = r.json()
    statuses, answered = set(), 0
    while True:
        view = live.client.get(f"/api/jobs/{job['id']}").json()
        statuses.add(view["status"])
        res = live.client.get("/api/queries/compare_runs")
        assert res.status_code == 200, res.text
        answered += 1
        if view["status"] in ("done", "failed"):
            break
    assert view["status"] == "done", view
    assert answered >= 1
    runs = live.client.get("/api/runs").json()["runs"]
    assert runs[-1]["run_id"] == view["result"]["run_id"] and runs[-1]["model"] == "mobility+pcp"
    jobs = live.client.get("/api/jobs", params={"status": "done"}).json()["jobs"]
    assert job["id"] in [j["id"] for j in jobs]


# -- the token and the size limits ---------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    db = tmp_path_factory.mktemp("guarded") / "guarded.duckdb"
    cfg = ServiceConfig(db=db, token=TOKEN, max_upload_bytes=64 << 10, max_body_bytes=4 << 10)
    with live_server(cfg, token=TOKEN) as lv:
        yield lv


def test_token(guarded: Live) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        r = httpx.get(guarded.url + "/api/traces", headers=headers)
        assert r.status_code == 401 and "bearer token" in r.json()["error"]
        assert r.headers["www-authenticate"] == "Bearer"
    r = httpx.post(guarded.url + "/api/sql", json={"sql": "SELECT 1"})
    assert r.status_code == 401
    assert guarded.client.get("/api/traces").json() == {"traces": []}
    # the page and the schema need no token (the page asks for it)
    assert httpx.get(guarded.url + "/").status_code == 200
    assert httpx.get(guarded.url + "/openapi.json").status_code == 200


def test_upload_and_body_limits(guarded: Live) -> None:
    text = (ERAS / "v6.18.txt").read_bytes()
    big = text * (80_000 // len(text) + 1)  # > 64 KiB
    r = _upload(guarded, "big.txt", big)
    assert r.status_code == 413 and "too large" in r.json()["error"]
    assert r.json()["detail"] == {"limit_bytes": 64 << 10}

    # without a Content-Length (chunked): cut while streaming
    def chunks() -> Iterator[bytes]:
        boundary = b"--xyz\r\n"
        yield boundary + b'Content-Disposition: form-data; name="file"; filename="c.txt"\r\n\r\n'
        for _ in range(40):
            yield b"x" * 4096
        yield b"\r\n--xyz--\r\n"

    r = guarded.client.post(
        "/api/jobs/ingest",
        content=chunks(),
        headers={"content-type": "multipart/form-data; boundary=xyz"},
    )
    assert r.status_code == 413 and "too large" in r.json()["error"]
    r = guarded.client.post("/api/sql", json={"sql": "SELECT 1 -- " + "x" * 8000})
    assert r.status_code == 413
    # a small file still goes through, and nothing was left behind by the refused ones
    view = guarded.job(_upload(guarded, "ok.txt", text, replace="true").json())
    assert view["status"] == "done", view
    names = [t["name"] for t in guarded.client.get("/api/traces").json()["traces"]]
    assert names == ["ok"]
    assert not list(guarded.db.parent.glob(".replay-upload-*"))


# -- the OpenAPI schema, fuzzed -----------------------------------------------------------------


def make_fuzz_data(live: Live) -> None:
    """Give the fuzzed server a trace and a run, so reads reach their happy paths too."""
    if live.client.get("/api/runs").json()["runs"]:
        return
    if not any(t["name"] == "ok" for t in live.client.get("/api/traces").json()["traces"]):
        view = live.job(_upload(live, "ok.txt", (ERAS / "v6.18.txt").read_bytes()).json())
        assert view["status"] == "done", view
    view = live.job(live.client.post("/api/jobs/run", json={"trace": "ok"}).json())
    assert view["status"] == "done", view


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_openapi_conformance(guarded: Live, mode: GenerationMode) -> None:
    """schemathesis against the live /openapi.json (the job POSTs left out: they write).

    Every operation, with valid (positive) and invalid (negative) requests: no
    5xx, and status codes, content types and bodies as the schema declares.
    """
    make_fuzz_data(guarded)
    schema = schemathesis.openapi.from_url(guarded.url + "/openapi.json")
    schema = schema.exclude(method="POST", path_regex=r"^/api/jobs/")
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    operations = [r.ok() for r in schema.get_all_operations()]
    labels = {f"{op.method.upper()} {op.path}" for op in operations}
    assert {"POST /api/sql", "GET /api/runs/{run_id}/steps", "GET /api/report/data"} <= labels
    assert not any(label.startswith("POST /api/jobs") for label in labels)
    calls = []
    for op in operations:

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(
            max_examples=10, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def check(case: Any) -> None:
            response = case.call_and_validate(headers=auth, checks=checks)
            calls.append(response.status_code)

        check()
    assert len(calls) >= len(operations)
    assert all(c < 500 for c in calls)
    if mode == GenerationMode.POSITIVE:
        assert 200 in calls


def test_validate_job_measures_a_model_against_the_recorded_kernel(tmp_path: Path) -> None:
    """POST /api/jobs/validate is `replay validate TRACE --model M`: the job stores the
    observed and the model run and its result is the CLI's comparison, figure for figure;
    a trace with no capture snapshots fails the job with the CLI's usage error."""
    db = tmp_path / "v.duckdb"
    make_store(db)
    shipped = Path(__file__).resolve().parent.parent / "traces" / "small-calm-6.18"
    res = run_cli("ingest", shipped, "--name", "calm", "--db", db, "-q")
    assert res.code == 0, res.err
    cli_db = tmp_path / "cli.duckdb"
    shutil.copyfile(db, cli_db)
    with live_server(ServiceConfig(db=db)) as lv:
        r = lv.client.post("/api/jobs/validate", json={"trace": "calm", "every": 50})
        assert r.status_code == 202, r.text
        view = lv.job(r.json())
        assert view["status"] == "done" and view["kind"] == "validate", view
        got = view["result"]
        runs = lv.client.get("/api/runs").json()["runs"]
        bad = lv.job(lv.client.post("/api/jobs/validate", json={"trace": "kernel-build"}).json())
        assert lv.client.post("/api/jobs/validate", json={"trace": "nope"}).status_code == 404
        assert (
            lv.client.post(
                "/api/jobs/validate", json={"trace": "calm", "model": "/etc/x.toml"}
            ).status_code
            == 422
        )
    res = run_cli("validate", "calm", "--model", "kernel", "--every", "50", "--db", cli_db,
                  "-q", "-f", "json")  # fmt: skip
    assert res.code == 0, res.err
    want = res.json()
    assert got["model"] == "kernel" and got["failures_kernel_did_not_have"] == 0
    skip = {"observed_run", "model_run"}
    assert {k: v for k, v in got.items() if k not in skip} == {
        k: v for k, v in want.items() if k not in skip
    }
    assert {got["observed_run"], got["model_run"]} <= {r["run_id"] for r in runs}
    assert bad["status"] == "failed" and bad["error"]["kind"] == "usage", bad
    assert "snapshot" in bad["error"]["error"]


def test_explain_job_is_the_cli_explanation(tmp_path: Path) -> None:
    """POST /api/jobs/explain is `replay explain RUN --seq SEQ`: the job's result is the
    CLI's JSON, figure for figure (the forks are stored runs in both); without a seq the
    ranking; a run that does not exist fails the job as bad input."""
    db = tmp_path / "x.duckdb"
    shipped = Path(__file__).resolve().parent.parent / "traces" / "small-pressure-6.18"
    assert run_cli("ingest", shipped, "--name", "sp", "--db", db, "-q").code == 0
    assert run_cli("run", "sp", "--observed", "--db", db, "-q").code == 0
    seq = run_cli("explain", "1", "--top", "1", "--db", db, "-f", "json").json()[0]["seq"]
    cli_db = tmp_path / "cli.duckdb"
    shutil.copyfile(db, cli_db)
    body = {"run": 1, "seq": seq, "models": ["mobility"], "horizon": 20}
    with live_server(ServiceConfig(db=db)) as lv:
        view = lv.job(lv.client.post("/api/jobs/explain", json=body).json())
        ranked = lv.job(lv.client.post("/api/jobs/explain", json={"run": 1, "top": 3}).json())
        bad = lv.job(lv.client.post("/api/jobs/explain", json={"run": 99, "seq": seq}).json())
        assert lv.client.post("/api/jobs/explain", json={"run": 0}).status_code == 422
    assert view["status"] == "done" and view["kind"] == "explain", view
    res = run_cli("explain", "1", "--seq", str(seq), "--models", "mobility", "--horizon", "20",
                  "--db", cli_db, "-f", "json")  # fmt: skip
    assert res.code == 0, res.err
    assert view["result"] == res.json()
    assert view["result"]["request"]["outcome"] == "failed"
    assert ranked["result"]["ranked"][0]["seq"] == seq
    assert bad["status"] == "failed" and "no run 99" in bad["error"]["error"], bad
