"""replay serve's web page in headless Chromium (tests/browser.py) against a live server.

The traces and runs lists load, ticking two runs draws the report's charts
(charts.js sets data-drawn), the SQL box and a named query fill the results
table, a refused statement shows its message, an upload through the form
becomes a trace, the token form unlocks a guarded server; no console errors
besides the HTTP errors provoked on purpose. Screenshot: test-artifacts/serve.png.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import chromium_page
from conftest import ERAS, ROOT
from test_serve import TOKEN, Live, live_server, make_store, submit_runs

from replay.service import ServiceConfig

ARTIFACTS = ROOT / "test-artifacts"
# Chromium logs every 4xx response as a console error; these are the provoked ones.
PROVOKED = re.compile(r"Failed to load resource: the server responded with a status of (400|401)")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    db = tmp_path_factory.mktemp("page") / "page.duckdb"
    make_store(db)
    with live_server(ServiceConfig(db=db, sql_timeout_s=5)) as lv:
        submit_runs(lv)
        yield lv


def unexpected(errors: list[str]) -> list[str]:
    return [e for e in errors if not PROVOKED.search(e)]


def test_page(live: Live) -> None:
    api_runs = live.client.get("/api/runs").json()["runs"]
    with chromium_page(1280, 900) as (page, log):
        page.goto(live.url + "/")
        page.wait_for_selector("body[data-ready='1']")
        # traces and runs
        rows = page.locator("#traces tbody tr")
        assert rows.count() == 1 and "kernel-build" in rows.first.inner_text()
        assert page.locator("#runs tbody tr").count() == len(api_runs) == 2
        rows.first.click()
        page.wait_for_function(
            "document.querySelector('#runs-filter').textContent.includes('kernel-build')"
        )
        assert page.locator("#runs tbody tr").count() == 2
        # compare two runs: the report's charts are drawn
        assert page.locator("#compare").is_disabled()
        for r in api_runs:
            page.check(f"input[data-run='{r['run_id']}']")
        page.click("#compare")
        page.wait_for_selector("#report[data-drawn='1']", timeout=30_000)
        drawn = page.locator("#report [data-chart][data-drawn='1']")
        assert drawn.count() >= 6
        assert page.locator("#report [data-chart='free_pages'] .rc-line").count() == 2
        title = page.locator("#report h1").inner_text()
        assert "buddy vs mobility on kernel-build" in title
        # SQL: a result table
        page.fill("#sql-input", "SELECT run_id, model FROM runs ORDER BY run_id")
        page.click("#sql-run")
        page.wait_for_selector("#sql-table[data-loaded='1']")
        head = page.locator("#sql-table thead th").all_inner_texts()
        assert head == ["run_id", "model"]
        cells = page.locator("#sql-table tbody tr").all_inner_texts()
        assert [c.split("\t") for c in cells] == [["1", "buddy"], ["2", "mobility"]]
        assert page.locator("#sql-error").is_hidden()
        # a refused statement: its message, no table
        page.fill("#sql-input", "DELETE FROM runs")
        page.click("#sql-run")
        page.wait_for_selector("#sql-error:not([hidden])")
        assert "only SELECT statements are allowed" in page.inner_text("#sql-error")
        assert page.locator("#sql-table tr").count() == 0
        # a named query with a parameter
        page.select_option("#query-select", "failures_by_order")
        page.fill("#query-params input[data-param='run']", "1")
        page.click("#query-run")
        page.wait_for_selector("#sql-table[data-loaded='1']")
        assert "allocs" in page.locator("#sql-table thead").inner_text()
        assert page.locator("#sql-table tbody tr").count() >= 1
        # an upload through the form becomes a trace
        page.set_input_files("#ingest-file", str(ERAS / "v6.18.txt"))
        page.fill("#ingest-name", "uploaded")
        page.click("#ingest-form button[type=submit]")
        page.wait_for_selector("#jobs tbody tr[data-status='done']", timeout=60_000)
        page.wait_for_selector("#traces tbody tr[data-trace='uploaded']", timeout=10_000)
        page.locator("#report-section").scroll_into_view_if_needed()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "serve.png"), full_page=True)
        provoked = [e for e in log.console_errors if PROVOKED.search(e)]
        assert len(provoked) == 1  # the refused DELETE
    assert unexpected(log.errors) == [], log.errors
    assert (ARTIFACTS / "serve.png").stat().st_size > 10_000


def test_page_asks_for_the_token(tmp_path: Path) -> None:
    db = tmp_path / "guarded.duckdb"
    make_store(db, events=40000)
    with live_server(ServiceConfig(db=db, token=TOKEN)) as lv, chromium_page() as (page, log):
        page.goto(lv.url + "/")
        page.wait_for_selector("#token-form:not([hidden])")
        assert "bearer token" in page.inner_text("#message")
        page.fill("#token-input", TOKEN)
        page.click("#token-form button[type=submit]")
        page.wait_for_selector("body[data-ready='1']")
        assert page.locator("#traces tbody tr").count() == 1
        assert page.locator("#token-form").is_hidden()
        # the token in the URL fragment works too (and is removed from the address bar)
        page.evaluate("sessionStorage.clear()")
        page.goto("about:blank")
        page.goto(lv.url + "/#token=" + TOKEN)
        page.wait_for_selector("body[data-ready='1']")
        assert "token" not in page.url
    assert unexpected(log.errors) == [], log.errors


def test_page_explains_an_allocation(live: Live) -> None:
    """The explain form: a run and a seq give the request, the state, the candidates and
    the forked models (a job); an empty seq ranks the run's allocations; a free's seq
    shows the server's reason."""
    rows = live.client.post(
        "/api/sql", json={"sql": "SELECT min(seq) AS a, max(seq) FILTER (WHERE op = 'free') "
                          "AS f FROM events WHERE op = 'alloc' OR op = 'free'"}
    ).json()["rows"]  # fmt: skip
    seq = live.client.post(
        "/api/sql", json={"sql": "SELECT min(seq) FROM events WHERE op = 'alloc' AND seq > 20000"}
    ).json()["rows"][0][0]
    free_seq = rows[0][1]
    with chromium_page(1280, 1400) as (page, log):
        page.goto(live.url + "/")
        page.wait_for_selector("body[data-ready='1']")
        page.fill("#explain-run", "2")
        page.fill("#explain-seq", str(seq))
        page.fill("#explain-models", "mobility+compaction")
        page.fill("#explain-horizon", "50")
        page.click("#explain-form button[type=submit]")
        page.wait_for_selector("#explain[data-loaded='1']", timeout=60_000)
        for part in ("request", "state", "candidates", "counterfactuals"):
            assert page.locator(f"#explain h3[data-part='{part}']").count() == 1
        text = page.inner_text("#explain")
        assert "compaction_suitable" in text and "mobility+compaction" in text
        # the candidates drawn in their pageblocks, one map each
        n_cands = page.locator("#explain h3[data-part='candidates'] + div tbody tr").count()
        assert n_cands > 0
        assert page.locator("#explain-maps svg.rc-blockmap").count() == n_cands
        # the own run, its model forked, and the asked model
        assert page.locator("#explain h3[data-part='counterfactuals'] + div tbody tr").count() == 3
        page.locator("#explain-section").scroll_into_view_if_needed()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "explain.png"), full_page=True)
        page.fill("#explain-seq", "")
        page.click("#explain-form button[type=submit]")
        page.wait_for_selector("#explain h3[data-part='ranked']", timeout=60_000)
        assert page.locator("#explain tbody tr").count() >= 1
        page.fill("#explain-seq", str(free_seq))
        page.click("#explain-form button[type=submit]")
        page.wait_for_selector("#explain[data-loaded='error']", timeout=60_000)
        assert "not an allocation" in page.inner_text("#explain")
    assert unexpected(log.errors) == [], log.errors


def test_a_failure_on_a_chart_opens_its_explanation(live: Live) -> None:
    """A run that fails allocations (buddy in a zone too small for the trace), compared on
    the page: its failures are marks on the failures chart and rows of the Failures table;
    clicking one explains that allocation below."""
    r = live.client.post("/api/jobs/run", json={"trace": "kernel-build", "model": "buddy",
                                                 "zone_pages": 4096, "every": 10})  # fmt: skip
    assert r.status_code == 202, r.text
    view = live.job(r.json())
    assert view["status"] == "done" and view["result"]["failures"] > 0, view
    run_id = view["result"]["run_id"]
    with chromium_page(1280, 1400) as (page, log):
        page.goto(live.url + "/")
        page.wait_for_selector("body[data-ready='1']")
        page.locator(f"#runs input[type=checkbox][data-run='{run_id}']").check()
        page.click("#compare")
        page.wait_for_selector("#report[data-drawn='1']", timeout=60_000)
        marks = page.locator("#report [data-chart='failures'] line.rc-mark")
        assert marks.count() > 0
        assert page.locator("#report [data-chart='failures'][data-clickable='1']").count() == 1
        row = page.locator("#report [data-chart='failed-allocations'] tbody tr").first
        seq = int(row.locator("td").nth(1).inner_text().replace(",", ""))
        row.click()
        page.wait_for_selector("#explain[data-loaded]", timeout=60_000)
        assert page.get_attribute("#explain", "data-loaded") == "1", page.inner_text("#explain")
        assert page.input_value("#explain-run") == str(run_id)
        assert page.input_value("#explain-seq") == str(seq)
        assert "failed" in page.inner_text("#explain [data-part='request'] + div")
        # and a click on the chart explains the failure nearest the pointer
        page.evaluate("document.getElementById('explain').removeAttribute('data-loaded')")
        chart = page.locator("#report [data-chart='failures'] svg.rc-svg")
        chart.scroll_into_view_if_needed()
        box = chart.bounding_box()
        assert box is not None
        chart.click(position={"x": box["width"] * 0.9, "y": box["height"] / 2})
        page.wait_for_selector("#explain[data-loaded]", timeout=60_000)
        assert page.get_attribute("#explain", "data-loaded") == "1", page.inner_text("#explain")
        assert page.input_value("#explain-run") == str(run_id)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "explain-failure.png"), full_page=True)
    assert unexpected(log.errors) == [], log.errors


def test_page_addresses_downloads_and_tables(live: Live) -> None:
    """Every view has an address: the compared runs, a named query (its SQL shown and
    editable, an edited copy run with the parameters), a page of the table browser;
    opening the address again shows the same result, and back goes to the previous one.
    The tables download as CSV and JSON."""
    api_runs = [r["run_id"] for r in live.client.get("/api/runs").json()["runs"]][:2]
    want_total = live.sql("SELECT count(*) FROM steps WHERE run_id = 2")["rows"][0][0]
    # steps is a view (replay.store): the browser pages it by all its columns, run_id, seq
    page2 = live.sql("SELECT seq FROM steps WHERE run_id = 2 ORDER BY seq LIMIT 50 OFFSET 50")
    with chromium_page(1280, 1000) as (page, log):
        page.goto(live.url + "/")
        page.wait_for_selector("body[data-ready='1']")
        for r in api_runs:
            page.check(f"input[data-run='{r}']")
        page.click("#compare")
        page.wait_for_selector("#report[data-drawn='1']", timeout=30_000)
        assert "runs=" + "%2C".join(map(str, api_runs)) in page.url
        # a named query: its SQL in the box; run as it is, then an edited copy
        page.select_option("#query-select", "failures_by_order")
        sql = page.input_value("#sql-input")
        assert "$run" in sql and sql.lstrip().startswith("--")
        page.fill("#query-params input[data-param='run']", "2")
        page.click("#query-run")
        page.wait_for_selector("#sql-table[data-loaded='1']")
        full = page.locator("#sql-table tbody tr").count()
        assert full >= 2 and "query=failures_by_order" in page.url and "p.run=2" in page.url
        page.fill("#sql-input", sql.rstrip().rstrip(";") + "\nLIMIT 1")
        page.click("#query-run")
        page.wait_for_function("document.querySelector('#sql-status').textContent"
                               ".startsWith('1 row ')")  # fmt: skip
        assert page.locator("#sql-table tbody tr").count() == 1
        edited_url = page.url
        assert "sql=" in edited_url and "LIMIT+1" in edited_url
        # the result table downloads as CSV and JSON
        head = page.locator("#sql-table thead th").all_inner_texts()
        with page.expect_download() as got:
            page.click(".rc-downloads[data-for='sql-table'] a[data-format='csv']")
        csv_lines = Path(got.value.path()).read_text().splitlines()
        with page.expect_download() as got:
            page.click(".rc-downloads[data-for='sql-table'] a[data-format='json']")
        json_rows = json.loads(Path(got.value.path()).read_text())
        assert csv_lines[0].split(",") == head and len(csv_lines) == 2
        assert len(json_rows) == 1 and list(json_rows[0]) == head
        for t in ("traces", "runs", "jobs"):
            assert page.locator(f".rc-downloads[data-for='{t}'] a").count() == 2
        # the table browser: a page at a time, with a condition
        page.select_option("#table-select", "steps")
        page.wait_for_selector("#browse-table[data-loaded='1']")
        page.fill("#browse-where", "run_id = 2")
        page.click("#browse-form button[type=submit]")
        status = "(t) => document.querySelector('#browse-status').textContent.startsWith(t)"
        page.wait_for_function(status, arg=f"{want_total:,} rows · page 1 of")
        page.click("#browse-next")
        page.wait_for_selector("#browse-table[data-page='2']")
        assert "table=steps" in page.url and "page=2" in page.url
        seqs = page.locator("#browse-table tbody tr td:nth-child(2)").all_inner_texts()
        head = page.locator("#browse-table thead th").all_inner_texts()
        assert head[1] == "seq"
        assert [int(v.replace(",", "")) for v in seqs] == [r[0] for r in page2["rows"]]
        assert "OFFSET 50" in page.inner_text("#browse-sql")
        browse_url = page.url
        page.go_back()
        page.wait_for_selector("#browse-table[data-page='1']")
        # each address opens the same views on a fresh page
        page.goto(edited_url)
        page.wait_for_selector("#report[data-drawn='1']", timeout=30_000)
        page.wait_for_selector("#sql-table[data-loaded='1']")
        assert page.locator("#sql-table tbody tr").count() == 1
        assert page.input_value("#query-params input[data-param='run']") == "2"
        for r in api_runs:
            assert page.is_checked(f"input[data-run='{r}']")
        page.goto(browse_url)
        page.wait_for_selector("#browse-table[data-page='2']")
        assert page.input_value("#browse-where") == "run_id = 2"
        page.locator("#tables-section").scroll_into_view_if_needed()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "serve-tables.png"), full_page=True)
    assert unexpected(log.errors) == [], log.errors


def test_page_explain_form_has_an_address(live: Live) -> None:
    """The explain form's fields go into the address; the address fills and runs it."""
    seq = live.sql("SELECT min(seq) FROM events WHERE op = 'alloc' AND seq > 30000")["rows"][0][0]
    with chromium_page(1280, 900) as (page, log):
        page.goto(f"{live.url}/?explain=1&seq={seq}&models=buddy&horizon=20")
        page.wait_for_selector("#explain[data-loaded]", timeout=60_000)
        assert page.get_attribute("#explain", "data-loaded") == "1", page.inner_text("#explain")
        assert page.input_value("#explain-seq") == str(seq)
        assert page.input_value("#explain-models") == "buddy"
        assert page.locator("#explain h3[data-part='request']").count() == 1
        page.fill("#explain-seq", "")
        page.click("#explain-form button[type=submit]")
        page.wait_for_selector("#explain h3[data-part='ranked']", timeout=60_000)
        assert "explain=1" in page.url and "seq=" not in page.url
    assert unexpected(log.errors) == [], log.errors


def test_page_run_form_sends_what_the_api_takes(live: Live) -> None:
    """The run form sends start, fork point, until, fill from snapshot, pageblock interval
    and zone pages: a run stopped early with its snapshots, and a fork from the kernel's
    state on a trace without snapshots failing with the server's reason."""
    with chromium_page(1280, 1200) as (page, log):
        page.goto(live.url + "/")
        page.wait_for_selector("body[data-ready='1']")
        page.select_option("#run-trace", "kernel-build")
        page.select_option("#run-model", "mobility")
        page.fill("#run-every", "5")
        page.fill("#run-until", "12000")
        page.fill("#run-pageblock-every", "4000")
        page.fill("#run-zone-pages", "16384")
        assert page.is_disabled("#run-at")
        page.click("#run-form button[type=submit]")
        page.wait_for_selector("#jobs tbody tr[data-status='done'] >> text=until 12000",
                               timeout=60_000)  # fmt: skip
        jobs = live.client.get("/api/jobs").json()["jobs"]
        job = next(j for j in jobs if j["kind"] == "run" and j["params"].get("until") == 12000)
        assert job["params"]["every"] == 5 and job["params"]["pageblock_every"] == 4000
        assert job["params"]["zone_pages"] == 16384 and job["params"]["start"] == "empty"
        rid = job["result"]["run_id"]
        last = live.sql(f"SELECT max(seq), count(DISTINCT seq) FILTER (seq % 5 = 0) "
                        f"FROM steps WHERE run_id = {rid}")["rows"][0]  # fmt: skip
        assert last[0] == 11999
        snaps = live.sql(f"SELECT list(DISTINCT seq ORDER BY seq) FROM pageblocks "
                         f"WHERE run_id = {rid}")["rows"][0][0]  # fmt: skip
        assert 3 <= len(snaps) <= 6 and max(snaps) <= 11999
        # observed start: the fork point goes with it, and the server's reason comes back
        page.select_option("#run-start", "observed")
        page.fill("#run-at", "100")
        page.check("#run-fill")
        page.click("#run-form button[type=submit]")
        page.wait_for_selector("#jobs tbody tr[data-status='failed'] >> text=kernel's state",
                               timeout=60_000)  # fmt: skip
        failed = next(j for j in live.client.get("/api/jobs").json()["jobs"]
                      if j["status"] == "failed" and j["kind"] == "run")  # fmt: skip
        assert failed["params"]["at"] == 100 and failed["params"]["start"] == "observed"
        assert failed["params"]["fill_from_snapshot"] is True
        text = page.inner_text(f"#jobs tbody tr[data-job='{failed['id']}']")
        assert failed["error"]["error"][:40] in text
        page.locator("#jobs-section").scroll_into_view_if_needed()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "serve-run-form.png"), full_page=True)
    assert unexpected(log.errors) == [], log.errors
