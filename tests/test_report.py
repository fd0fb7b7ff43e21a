"""``replay report`` and ``replay compare``: the summary table, the downsampled chart data,
the self-contained HTML page in a real headless Chromium, and the CLI's errors.

Runs are made quickly in a temporary store: two small synthetic traces
(``replay generate``'s scenarios) replayed through buddy, mobility, buddy with
direct compaction, buddy with virtual compound fallback (degraded successes)
and mobility with sparse counters (``--every``) and dense pageblock
snapshots. Every number the report shows is checked against counts made here
independently: raw SQL over steps/events/extfrag/pageblocks and the scalar
Python metrics of replay.analysis.metrics (not the DuckDB macros the report uses).
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from browser import chromium_page
from conftest import ROOT, run_cli

import replay.report.html as report
from replay.analysis import metrics
from replay.engine import whatif as engine
from replay.models.config import RunConfig, load_model
from replay.scenarios.workloads import generate
from replay.store import Store
from replay.trace.ingest import ingest_table

ZONE = 8192  # pages: 16 pageblocks
COSTLY = 3
COSTS = ("migrated", "scanned", "evicted", "exchanged")
NF = [f"nr_free_{k}" for k in range(11)]
SERIES = ("free_pages", "largest_free_order", "unusable_index", "fragmentation_score", "nr_free")
LAST_COSTS_SQL = """SELECT migrated, scanned, evicted, coalesce(exchanged, 0) FROM steps
                    WHERE run_id = ? ORDER BY seq DESC LIMIT 1"""
COUNTER_ROWS_SQL = f"""SELECT seq, {", ".join(NF)} FROM steps
                       WHERE run_id = ? AND free_pages IS NOT NULL"""
LAST_NR_FREE_SQL = (
    COUNTER_ROWS_SQL.replace("SELECT seq, ", "SELECT ") + " ORDER BY seq DESC LIMIT 1"
)
LAST_PAGEBLOCKS_SQL = """SELECT migratetype, unmovable, movable, reclaimable FROM pageblocks
    WHERE run_id = ? AND seq = (SELECT max(seq) FROM pageblocks WHERE run_id = ?)"""
PAGEBLOCKS_SQL = """SELECT seq, pageblock, migratetype, unmovable, movable, reclaimable, free_pages
                    FROM pageblocks WHERE run_id = ?"""


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Runs 1-4 on stress-highalloc, run 5 on fragmenter (sparse counters, many snapshots)."""
    path = tmp_path_factory.mktemp("report") / "r.duckdb"
    with Store(path) as store:
        for scenario, name, events in (("stress-highalloc", "sh", 25000),
                                       ("fragmenter", "frag", None)):  # fmt: skip
            table, meta = generate(scenario, seed=1, events=events, zone_pages=ZONE)
            ingest_table(store, table, meta, name=name, source=f"<scenario {scenario}>")
        vc = RunConfig(model="buddy", preset=None, params={"vcompound_order": 1})
        for trace, config, kw in (
            ("sh", load_model("buddy"), {}),
            ("sh", load_model("mobility"), {}),
            ("sh", load_model("buddy+compaction"), {}),
            ("sh", vc, {}),
            ("frag", load_model("mobility"), {"every": 7, "pageblock_every": 50}),
        ):
            engine.run(store, trace, config, **kw)
    return path


RUNS = [1, 2, 3, 4, 5]
LINE_CHARTS = ("free_pages", "largest_free_order", "unusable_index", "fragmentation_score",
               "failures", "moved", "scanned")  # fmt: skip


def rows(store: Store, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    return store.con.execute(sql, list(params)).fetchall()


def mixed(mt: int, unmovable: int, movable: int, reclaimable: int) -> bool:
    return (mt != 0 and unmovable > 0) or (mt != 1 and movable > 0) or (mt != 2 and reclaimable > 0)


# -- the summary table ----------------------------------------------------------------------


def test_summary_matches_independent_counts(db: Path) -> None:
    with Store(db, read_only=True) as store:
        table = report.summary_table(store, RUNS)
        got = {r["run_id"]: r for r in table.to_pylist()}
        assert [r["run_id"] for r in table.to_pylist()] == RUNS
        for rid in RUNS:
            r = got[rid]
            outcomes = rows(store, """
                SELECT e."order", s.outcome, count(*) FROM steps s JOIN runs USING (run_id)
                JOIN events e ON e.trace_id = runs.trace_id AND e.seq = s.seq
                WHERE s.run_id = ? AND e.op = 'alloc' GROUP BY ALL""", rid)  # fmt: skip
            by_order: dict[int, Counter[str]] = {}
            for order, outcome, n in outcomes:
                by_order.setdefault(order, Counter())[outcome] += n
            n_allocs = rows(store, "SELECT count(*) FROM events e JOIN runs USING (trace_id) "
                                   "WHERE run_id = ? AND op = 'alloc'", rid)[0][0]  # fmt: skip
            assert r["allocs"] == n_allocs == sum(sum(c.values()) for c in by_order.values())
            ok = sum(c["ok"] + c["degraded"] for c in by_order.values())
            assert r["successes"] == ok
            assert r["degraded"] == sum(c["degraded"] for c in by_order.values())
            assert r["failures"] == sum(c["failed"] for c in by_order.values())
            assert r["success_pct"] == pytest.approx(100 * ok / n_allocs, abs=1e-3)
            for order, c in by_order.items():
                want = 100 * (c["ok"] + c["degraded"]) / sum(c.values())
                assert r[f"success_pct_o{order}"] == pytest.approx(want, abs=0.005)
            hi = [c for o, c in by_order.items() if o > COSTLY]
            if hi:
                want = 100 * sum(c["ok"] + c["degraded"] for c in hi) / sum(
                    sum(c.values()) for c in hi)  # fmt: skip
                assert r["high_order_success_pct"] == pytest.approx(want, abs=0.005)
            else:
                assert r["high_order_success_pct"] is None
            # costs: the last steps row holds the run's cumulative counters
            last = rows(store, LAST_COSTS_SQL, rid)[0]
            assert tuple(r[c] for c in COSTS) == tuple(last)
            assert r["cost_pages"] == sum(last)
            ext = rows(store, "SELECT count(*), count(*) FILTER (fragmenting) FROM extfrag "
                              "WHERE run_id = ?", rid)[0]  # fmt: skip
            assert (r["extfrag_events"], r["extfrag_fragmenting"]) == ext
            # the final state: the last steps row's free lists, through the Python metrics
            nr = list(rows(store, LAST_NR_FREE_SQL, rid)[0])
            free = metrics.free_pages(nr)
            assert r["free_pages"] == free
            assert r["largest_free_order"] == metrics.largest_free_order(nr)
            assert r["unusable_index"] == metrics.unusable_index(nr, 9)
            assert r["fragmentation_index"] == metrics.fragmentation_index(nr, 9)
            assert r["extfrag_for_order"] == metrics.extfrag_for_order(nr, 9)
            assert r["fragmentation_score"] == metrics.fragmentation_score([(ZONE, nr)])
            high = sum(n << k for k, n in enumerate(nr) if k >= 9)
            assert r["free_high_pct"] == pytest.approx(100 * high / free, abs=0.005)
            pbs = rows(store, LAST_PAGEBLOCKS_SQL, rid, rid)
            assert r["mixed_pageblocks"] == sum(mixed(*p) for p in pbs)
            assert r["pageblocks"] == ZONE // 512
        # the runs show what they should: the test data is not trivial
        assert got[1]["failures"] > 0 and got[1]["model"] == "buddy"
        assert got[2]["failures"] == 0 and got[2]["extfrag_events"] > 0
        assert got[3]["scanned"] > 0 and got[3]["model"] == "buddy+compaction"
        assert got[4]["degraded"] > 0 and got[4]["failures"] == 0
        assert got[4]["model"] == "buddy vcompound_order=1"
        assert got[1]["mixed_pageblocks"] > got[2]["mixed_pageblocks"]  # buddy does not group
        # other orders: the indices follow --order
        t3 = report.summary_table(store, [2, 1], order=3).to_pylist()
        assert [r["run_id"] for r in t3] == [2, 1]
        nr = rows(store, "SELECT nr_free FROM runs WHERE run_id = 2")[0][0]
        assert t3[0]["unusable_index"] == metrics.unusable_index(nr, 3)


# -- the chart data ---------------------------------------------------------------------------


@pytest.mark.parametrize("points", [400, 37])
def test_series_are_downsampled_in_sql(db: Path, points: int) -> None:
    with Store(db, read_only=True) as store:
        data = report.report_data(store, RUNS, points=points)
        assert json.loads(json.dumps(data)) == data  # JSON-able as it is
        assert [r["run_id"] for r in data["runs"]] == RUNS
        for run in data["runs"]:
            rid, s, c = run["run_id"], run["series"], run["counters"]
            n_steps = rows(store, "SELECT max(seq) + 1 FROM steps WHERE run_id = ?", rid)[0][0]
            kept = {row[0]: row[1:] for row in rows(store, COUNTER_ROWS_SQL, rid)}
            assert 0 < len(s["seq"]) <= points and len(c["seq"]) <= points
            for k in SERIES:
                assert len(s[k]) == len(s["seq"]), k
            last_of_bucket: dict[int, int] = {}
            for q in kept:
                b = q * points // n_steps
                last_of_bucket[b] = max(q, last_of_bucket.get(b, q))
            # one point per bucket of seq, in order: the last step that kept its counters
            assert s["seq"] == [last_of_bucket[b] for b in sorted(last_of_bucket)]
            for i, q in enumerate(s["seq"]):
                nr = list(kept[q])
                assert s["nr_free"][i] == nr
                assert s["free_pages"][i] == metrics.free_pages(nr)
                assert s["largest_free_order"][i] == metrics.largest_free_order(nr)
                assert s["unusable_index"][i] == metrics.unusable_index(nr, 9)
                assert s["fragmentation_score"][i] == metrics.fragmentation_score([(ZONE, nr)])
            assert s["seq"][-1] == max(kept)
            last = rows(store, "SELECT failures, migrated + scanned + evicted "
                               "+ coalesce(exchanged, 0) FROM steps WHERE run_id = ? "
                               "ORDER BY seq DESC LIMIT 1", rid)[0]  # fmt: skip
            assert (c["failures"][-1], c["cost"][-1]) == last
            assert c["seq"][-1] == n_steps - 1
            assert c["failures"] == sorted(c["failures"])  # cumulative
        frag = data["runs"][4]
        assert all(q % 7 == 0 or q == frag["series"]["seq"][-1] for q in frag["series"]["seq"])


def test_pageblock_map_aggregates_rows_and_snapshots(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "PAGEBLOCK_ROWS", 5)
    monkeypatch.setattr(report, "PAGEBLOCK_COLS", 7)
    with Store(db, read_only=True) as store:
        data = report.report_data(store, [2, 5], points=50)
        for run in data["runs"]:
            m = run["pageblocks"]
            raw = rows(store, PAGEBLOCKS_SQL, run["run_id"])
            snaps = sorted({r[0] for r in raw})
            assert len(snaps) > 7  # there is something to aggregate
            per_row = -(-16 // 5)  # 16 pageblocks in at most 5 rows: 4 per row
            assert (m["rows"], m["pageblocks_per_row"], m["first_pageblock"]) == (4, per_row, 0)
            want_seqs = [max(q for j, q in enumerate(snaps) if j * 7 // len(snaps) == col)
                         for col in range(7)]  # fmt: skip
            assert m["seq"] == want_seqs
            assert len(m["mt"]) == len(m["mixed"]) == len(m["free"]) == 7 * 4
            for col, q in enumerate(want_seqs):
                for row in range(4):
                    group = [r for r in raw if r[0] == q and r[1] // per_row == row]
                    count = Counter(r[2] for r in group)
                    top = max(count.values())
                    i = col * 4 + row
                    assert m["mt"][i] == min(t for t, k in count.items() if k == top)
                    n_mixed = sum(mixed(*r[2:6]) for r in group)
                    assert m["mixed"][i] == round(100 * n_mixed / len(group))
                    free = sum(r[6] for r in group)
                    assert m["free"][i] == round(100 * free / (512 * len(group)))


# -- the HTML page ---------------------------------------------------------------------------


def blob(html: str) -> dict[str, Any]:
    found = re.findall(r'<script type="application/json" id="replay-report-data">(.*?)</script>',
                       html, re.S)  # fmt: skip
    assert len(found) == 1
    return json.loads(found[0])


def test_render_is_self_contained(db: Path) -> None:
    with Store(db, read_only=True) as store:
        html = report.render_report(store, [1, 2, 3], title="a <b>&</b> title</script>")
        data = report.report_data(store, [1, 2, 3])
    assert html.startswith("<!DOCTYPE html>")
    # nothing fetched from anywhere: no URL at all, no external script, style or image
    assert not re.search(r"https?:", html)
    assert not re.search(r"""<[a-z][^>]*\s(?:src|href)\s*=\s*(?!["']?data:)""", html, re.I)
    assert re.search(r"""<[a-z][^>]*\s(?:src|href)\s*=\s*(?!["']?data:)""", '<img src="x.png">')
    assert "<script src" not in html and 'rel="stylesheet"' not in html
    assert "default-src 'none'" in html  # the page may not load anything
    assert "<title>a &lt;b&gt;&amp;&lt;/b&gt; title&lt;/script&gt;</title>" in html
    got = blob(html)
    assert got["title"] == "a <b>&</b> title</script>"  # escaped inside the blob, intact after
    assert got["runs"] == data["runs"] and got["summary"] == data["summary"]
    assert "window.ReplayCharts" in html or "global.ReplayCharts" in html
    assert report.asset("charts.js") in html  # the same file another page can load
    assert len(html.encode()) < 1_000_000


def test_report_in_headless_chromium(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    res = run_cli("report", *map(str, RUNS), "-o", out, "--db", db)
    assert res.code == 0, res.err
    assert res.out == "" and "wrote" in res.err and str(out) in res.err
    html = out.read_text()
    assert len(blob(html)["runs"]) == len(RUNS)
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with chromium_page() as (page, log):
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(out.as_uri())
        page.wait_for_selector('#replay-report[data-drawn="1"]', timeout=60_000)
        charts = page.evaluate("""() => Array.from(document.querySelectorAll('[data-chart]'))
            .map(e => ({name: e.dataset.chart, drawn: e.dataset.drawn || '',
                        empty: e.dataset.empty || '',
                        paths: e.querySelectorAll('svg path').length,
                        marks: e.querySelectorAll('svg rect, svg circle, svg path').length,
                        cells: e.querySelectorAll('td').length}))""")
        page.screenshot(path=str(artifacts / "report.png"), full_page=True)
        # hovering a chart shows its values
        box = page.locator('#replay-report [data-chart="free_pages"] svg.rc-svg').bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        tip = page.locator('#replay-report [data-chart="free_pages"] .rc-tip').inner_text()
        # the chart layer works on another page's element too (the web service's use)
        n_again = page.evaluate("""() => {
            const div = document.createElement('div'); document.body.appendChild(div);
            const data = JSON.parse(document.getElementById('replay-report-data').textContent);
            window.ReplayCharts.render(div, data);
            return div.querySelectorAll('[data-chart][data-drawn="1"]').length; }""")
    assert log.errors == [], log.errors
    assert requests == [out.as_uri()], requests  # nothing but the file itself
    names = [c["name"] for c in charts]
    want = {"summary", "free_pages", "largest_free_order", "unusable_index",
            "fragmentation_score", "failures", "moved", "scanned", "cost-success", "cost-free",
            "scan-success", "failed-allocations"}  # fmt: skip
    want |= {f"buddyinfo-{r}" for r in RUNS} | {f"pageblocks-{r}" for r in RUNS}
    # the first failure of each run that failed: its candidate blocks in their pageblocks
    failed = blob(html)["failures"]
    assert failed["maps"] and {m["run_id"] for m in failed["maps"]} == set(failed["run_ids"])
    want |= {f"candidates-{m['run_id']}" for m in failed["maps"]}
    assert set(names) == want and len(names) == len(want)
    # the failures table: the first failed allocations of the runs that had some
    assert failed["rows"] and failed["columns"][:2] == ["run", "seq"]
    cells = next(c["cells"] for c in charts if c["name"] == "failed-allocations")
    assert cells == len(failed["rows"]) * len(failed["columns"])
    assert n_again == len(want)
    for c in charts:
        assert c["drawn"] == "1" and c["empty"] == "", c
        if c["name"] == "summary":
            assert c["cells"] > len(RUNS) * 20
        elif c["name"] == "failed-allocations":
            assert c["cells"] > 0
        else:
            assert c["marks"] > 0, c
    lines = {c["name"]: c["paths"] for c in charts}
    for name in LINE_CHARTS:
        assert lines[name] == len(RUNS), name  # one line per run
    assert "#1 buddy on sh" in tip and "seq" in tip
    # each candidate map: a square per page of its pageblocks, the block outlined
    for m in failed["maps"]:
        c = next(c for c in charts if c["name"] == f"candidates-{m['run_id']}")
        pages = sum(len(x["map"]) for x in m["candidates"])
        assert c["marks"] == pages + len(m["candidates"]), c
    assert (artifacts / "report.png").stat().st_size > 10_000


# -- the CLI -------------------------------------------------------------------------------


def test_compare_formats(db: Path) -> None:
    res = run_cli("compare", "2", "1", "--db", db, "--format", "json")
    assert res.code == 0, res.err
    with Store(db, read_only=True) as store:
        want = report.summary_table(store, [2, 1]).to_pylist()
    assert res.json() == want
    csv = run_cli("compare", "1", "2", "--db", db, "-f", "csv")
    assert csv.code == 0 and csv.out.splitlines()[0].startswith("run_id,trace,model,")
    assert "success_pct_o9" in csv.out.splitlines()[0] and len(csv.out.splitlines()) == 3
    table = run_cli("compare", "3", "--db", db)
    assert table.code == 0 and "buddy+compaction" in table.out


def test_cli_errors(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    res = run_cli("report", "1", "99", "-o", out, "--db", db, "-q")
    assert res.code == 1 and "no run 99" in res.err and res.out == ""
    assert not out.exists()  # nothing written on failure
    out.write_text("old")
    for args, code, text in (
        (["report", "98", "-o", out], 1, "no run 98"),
        (["report", "--batch", "nope", "-o", out], 1, "no batch named 'nope'"),
        (["report", "-o", out], 2, "no runs given"),
        (["report", "1", "--order", "11", "-o", out], 2, "--order"),
        (["report", "1", "--points", "1", "-o", out], 2, "--points"),
        (["report", "1", "-o", tmp_path / "missing" / "r.html"], 2, "no such directory"),
        (["compare", "97"], 1, "no run 97"),
        (["compare", "--batch", "nope"], 1, "no batch"),
        (["compare"], 2, "no runs given"),
        (["compare", "1", "--order", "-1"], 2, "--order"),
    ):
        res = run_cli(*args, "--db", db, "-q") if args[0] == "report" else run_cli(
            *args, "--db", db)  # fmt: skip
        assert res.code == code, (args, res.err)
        assert text in res.err and res.out == "", (args, res.err)
    assert out.read_text() == "old"  # a failed report leaves the old file alone
    assert list(tmp_path.iterdir()) == [out]  # and no temporary file behind


def test_batch(db: Path, tmp_path: Path) -> None:
    # a private copy: the batch rows are written into it
    copy = tmp_path / "b.duckdb"
    copy.write_bytes(db.read_bytes())
    with Store(copy) as store:
        store.run("INSERT INTO batches VALUES (1, 'cmp', 'spec', now()), "
                  "(2, 'broken', 'spec', now())")  # fmt: skip
        store.run("""INSERT INTO batch_runs VALUES
            (1, 'sh x mobility', 'sh', 'mobility', 2, 'done', NULL, now()),
            (1, 'sh x buddy+compaction', 'sh', 'buddy+compaction', 3, 'done', NULL, now()),
            (1, 'sh x bad', 'sh', 'bad.toml', NULL, 'failed', 'boom', now()),
            (1, 'sh x later', 'sh', 'mobility+pcp', NULL, NULL, NULL, NULL),
            (2, 'sh x bad', 'sh', 'bad.toml', NULL, 'failed', 'boom', now())""")
        assert report.runs_of_batch(store, "cmp") == [2, 3]
    res = run_cli("compare", "--batch", "cmp", "--db", copy, "-f", "json")
    assert res.code == 0, res.err
    assert [r["run_id"] for r in res.json()] == [2, 3]
    both = run_cli("compare", "1", "2", "--batch", "cmp", "--db", copy, "-f", "json")
    assert [r["run_id"] for r in both.json()] == [2, 3, 1]
    out = tmp_path / "batch.html"
    assert run_cli("report", "-b", "cmp", "-o", out, "--db", copy, "-q").code == 0
    assert [r["run_id"] for r in blob(out.read_text())["runs"]] == [2, 3]
    broken = run_cli("compare", "--batch", "broken", "--db", copy)
    assert broken.code == 1 and "no finished runs" in broken.err


# -- time, failures, costs: the data behind the charts' views (issue 19) --------------------


def test_seconds_failure_rug_and_costs_apart(db: Path) -> None:
    """Every point's ``t`` is its event's ts_ns less the trace's first, in seconds; the
    failure rug holds every failed step (bucketed: the first of each bucket, and how
    many); the cost counters come apart (migrated, scanned, ...) and ``moved_pages``
    leaves the scanned pages out."""
    with Store(db, read_only=True) as store:
        data = report.report_data(store, RUNS, points=60, failure_maps=False)
        for run in data["runs"]:
            rid = run["run_id"]
            ts = dict(rows(store, """SELECT e.seq, (e.ts_ns - min(e.ts_ns) OVER ()) / 1e9
                FROM events e JOIN runs r USING (trace_id) WHERE r.run_id = ?""", rid))  # fmt: skip
            for part in ("series", "counters"):
                got = run[part]
                assert len(got["t"]) == len(got["seq"]) > 0
                for q, t in zip(got["seq"], got["t"], strict=True):
                    assert t == pytest.approx(ts[q], abs=1e-6), (rid, part, q)
                known = [t for t in got["t"] if t is not None]
                assert known == sorted(known)
            sql = "SELECT seq FROM steps WHERE run_id = ? AND outcome = 'failed' ORDER BY seq"
            failed = [r[0] for r in rows(store, sql, rid)]
            rug = run["failure_rug"]
            assert sum(rug["n"]) == len(failed)
            assert set(rug["seq"]) <= set(failed) and rug["seq"] == sorted(rug["seq"])
            if failed:
                assert rug["seq"][0] == failed[0]
                assert rug["t"][0] == pytest.approx(ts[failed[0]], abs=1e-6)
            assert len(rug["seq"]) <= report.RUG_BUCKETS
            last = rows(store, "SELECT migrated, scanned, evicted, exchanged FROM steps "
                               "WHERE run_id = ? ORDER BY seq DESC LIMIT 1", rid)[0]  # fmt: skip
            c = run["counters"]
            assert tuple(c[k][-1] for k in COSTS) == last
            cb = run["cost_benefit"]
            assert cb["moved_pages"] == (last[0] or 0) + (last[2] or 0) + (last[3] or 0)
            assert cb["scanned"] == last[1]
            m = run["pageblocks"]
            assert len(m["t"]) == len(m["seq"])
            assert all(t is None or t == pytest.approx(ts[q], abs=1e-6)
                       for q, t in zip(m["seq"], m["t"], strict=True))  # fmt: skip
        assert data["runs"][2]["cost_benefit"]["scanned"] > 0  # buddy+compaction scans
        assert sum(data["runs"][0]["failure_rug"]["n"]) > 0  # buddy fails


def _round_step(step: float) -> bool:
    """A tick step people read: 1, 2, 2.5 or 5 times a power of ten."""
    mag = 10 ** math.floor(math.log10(step))
    return any(math.isclose(step, f * mag, rel_tol=1e-6) for f in (1, 2, 2.5, 5, 10))


def _tick_value(label: str) -> float:
    mult = {"k": 1e3, "M": 1e6, "G": 1e9}
    return float(label[:-1]) * mult[label[-1]] if label[-1] in mult else float(label)


CHART_STATE = """(name) => {
    const fig = document.querySelector(`#replay-report [data-chart="${name}"]`);
    const svg = fig.querySelector('svg.rc-svg');
    const texts = Array.from(svg.querySelectorAll('.rc-axis > text:not(.rc-label)'));
    const ys = texts.filter(t => t.getAttribute('text-anchor') === 'end');
    const xs = texts.filter(t => t.getAttribute('text-anchor') === 'middle');
    return {x: fig.dataset.x, log: fig.dataset.log, zoomed: fig.dataset.zoomed,
            coincide: fig.dataset.coincide || '', clickable: fig.dataset.clickable || '',
            xticks: xs.map(t => t.textContent), yticks: ys.map(t => t.textContent),
            labels: Array.from(svg.querySelectorAll('.rc-label')).map(t => t.textContent),
            marks: svg.querySelectorAll('line.rc-mark').length,
            markers: svg.querySelectorAll('.rc-marker').length,
            lines: svg.querySelectorAll('path.rc-line').length,
            legend: fig.querySelector('.rc-legend').innerText};
}"""


def test_report_views_in_chromium(db: Path) -> None:
    """The report's charts over time: runs drawing the same line are named in the legend
    and carry markers; every series chart has the failure rug; the x axis switches to
    seconds of trace time; a drag zooms every chart, typed bounds too, a double-click
    zooms out; the log scale; the buddyinfo maps' ticks are round; scatter labels do not
    overlap; the summary table downloads as CSV and JSON."""
    ids = [1, 2, 3, 5]
    with Store(db, read_only=True) as store:
        html = report.render_report(store, ids, points=120)
        span = rows(store, "SELECT (max(ts_ns) - min(ts_ns)) / 1e9 FROM events e JOIN runs r "
                           "USING (trace_id) WHERE r.run_id = 5")[0][0]  # fmt: skip
    data = blob(html)
    # which runs draw the same free_pages line, from the data
    sig: dict[str, list[str]] = {}
    for r in data["runs"]:
        key = json.dumps([r["series"]["seq"], r["series"]["free_pages"]])
        sig.setdefault(key, []).append(f"#{r['run_id']}")
    same = sorted(" ".join(g) for g in sig.values() if len(g) > 1)
    assert same, "the test data should have runs drawing the same line"
    n_rug = sum(len(r["failure_rug"]["seq"]) for r in data["runs"])
    assert n_rug > 0
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    path = artifacts / "report-views.html"
    path.write_text(html)
    with chromium_page(1280, 1000) as (page, log):
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(path.as_uri())
        page.wait_for_selector('#replay-report[data-drawn="1"]', timeout=60_000)
        state = {n: page.evaluate(CHART_STATE, n) for n in LINE_CHARTS}
        fp = state["free_pages"]
        assert sorted(fp["coincide"].split("; ")) == same
        assert "same line as" in fp["legend"]
        assert fp["markers"] > 0 and fp["lines"] == len(ids)
        for name, st in state.items():
            assert st["marks"] == n_rug, name  # the rug of every run's failures
            assert st["x"] == "seq" and st["log"] == "0", name
        # seconds of trace time
        page.select_option('[data-control="x"]', "t")
        for name in LINE_CHARTS:
            st = page.evaluate(CHART_STATE, name)
            assert st["x"] == "t" and "trace time (s)" in st["labels"], name
            values = [_tick_value(t) for t in st["xticks"]]
            assert values and 0 <= min(values) and max(values) <= span + 1e-9
            assert st["marks"] == n_rug
        hm = page.evaluate("""() => document.querySelector(
            '[data-chart="buddyinfo-5"]').dataset.x""")
        assert hm == "t"
        page.screenshot(path=str(artifacts / "report-seconds.png"), full_page=False)
        page.select_option('[data-control="x"]', "seq")
        # a drag across a chart zooms every chart to that range
        svg = page.locator('[data-chart="free_pages"] svg.rc-svg')
        svg.scroll_into_view_if_needed()
        box = svg.bounding_box()
        assert box is not None
        y = box["y"] + box["height"] / 2
        page.mouse.move(box["x"] + box["width"] * 0.3, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.45, y, steps=4)
        page.mouse.move(box["x"] + box["width"] * 0.6, y, steps=4)
        page.mouse.up()
        lo = float(page.input_value('[data-control="lo"]'))
        hi = float(page.input_value('[data-control="hi"]'))
        assert 0 < lo < hi
        for name in LINE_CHARTS:
            st = page.evaluate(CHART_STATE, name)
            assert st["zoomed"] == "1", name
            ticks = [_tick_value(t) for t in st["xticks"]]
            assert ticks and lo <= min(ticks) and max(ticks) <= hi, (name, ticks, lo, hi)
        page.screenshot(path=str(artifacts / "report-zoom.png"), full_page=False)
        svg.dblclick(position={"x": box["width"] / 2, "y": box["height"] / 2})
        assert page.evaluate(CHART_STATE, "moved")["zoomed"] == "0"
        assert page.input_value('[data-control="lo"]') == ""
        # typed bounds zoom too
        page.fill('[data-control="lo"]', "20000")
        page.fill('[data-control="hi"]', "24,000")
        page.press('[data-control="hi"]', "Enter")
        ticks = [_tick_value(t) for t in page.evaluate(CHART_STATE, "failures")["xticks"]]
        assert ticks and 20000 <= min(ticks) and max(ticks) <= 24000
        page.click('[data-control="reset"]')
        # the log scale, on the charts of counts that start at 0
        page.check('[data-control="log"]')
        for name in LINE_CHARTS:
            st = page.evaluate(CHART_STATE, name)
            want = "0" if name == "largest_free_order" else "1"
            assert st["log"] == want, name
            if want == "1":
                assert any("(log scale)" in t for t in st["labels"])
                # ticks at 0, 1, 10, 100, ... (with 2 and 5 between them on short ranges)
                values = [_tick_value(t) for t in st["yticks"]]
                assert len(values) >= 2 and values == sorted(values), (name, values)
                assert all(v == 0 or (_round_step(v) and v >= 1) for v in values), (name, values)
        page.uncheck('[data-control="log"]')
        # the buddyinfo maps: ticks at round values, evenly spaced
        for r in ids:
            labels = page.evaluate("""(r) => Array.from(document.querySelectorAll(
                `[data-chart="buddyinfo-${r}"] .rc-axis > text[text-anchor="middle"]`))
                .filter(t => !t.classList.contains('rc-label'))
                .map(t => t.textContent)""", r)  # fmt: skip
            values = [_tick_value(t) for t in labels]
            assert len(values) >= 3, labels
            steps = {round(b - a, 6) for a, b in itertools.pairwise(values)}
            assert len(steps) == 1 and _round_step(steps.pop()), labels
        # scatter labels do not overlap one another
        boxes = page.evaluate("""() => Array.from(document.querySelectorAll(
            '[data-chart^="cost-"], [data-chart="scan-success"]')).map(f =>
            Array.from(f.querySelectorAll('.rc-dotlabel')).map(t => {
                const b = t.getBoundingClientRect();
                return [b.left, b.top, b.right, b.bottom]; }))""")
        assert sum(len(b) for b in boxes) >= 3
        for chart in boxes:
            for a, b in itertools.combinations(chart, 2):
                apart = a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
                assert apart, (a, b)
        # downloads of the summary table
        with page.expect_download() as got:
            page.click('[data-chart="summary"] .rc-downloads a[data-format="csv"]')
        csv_text = Path(got.value.path()).read_text()
        with page.expect_download() as got:
            page.click('[data-chart="summary"] .rc-downloads a[data-format="json"]')
        json_rows = json.loads(Path(got.value.path()).read_text())
    assert log.errors == [], log.errors
    assert requests == [path.as_uri()], requests  # the file, nothing else
    lines = csv_text.splitlines()
    assert lines[0].split(",") == data["summary"]["columns"]
    assert len(lines) == 1 + len(ids)
    assert [r["run_id"] for r in json_rows] == ids
    assert json_rows[0]["allocs"] == data["summary"]["rows"][0][
        data["summary"]["columns"].index("allocs")]  # fmt: skip


def test_pageblock_map_without_types(db: Path, tmp_path: Path) -> None:
    """Pageblocks whose migratetype the run did not record (an observed run of a capture
    without a kpageflags snapshot stores NULL) are drawn, shaded by their free pages,
    not left out (the map was axes only)."""
    copy = tmp_path / "untyped.duckdb"
    copy.write_bytes(db.read_bytes())
    with Store(copy) as store:
        store.run("UPDATE pageblocks SET migratetype = NULL WHERE run_id = 5")
        html = report.render_report(store, [5], points=50)
    m = blob(html)["runs"][0]["pageblocks"]
    assert set(m["mt"]) == {-1} and sum(m["blocks"]) > 0
    out = tmp_path / "untyped.html"
    out.write_text(html)
    with chromium_page() as (page, log):
        page.goto(out.as_uri())
        page.wait_for_selector('#replay-report[data-drawn="1"]', timeout=60_000)
        fig = page.locator('[data-chart="pageblocks-5"]')
        assert fig.get_attribute("data-empty") is None
        assert fig.locator("svg.rc-svg rect").count() > 0
        assert fig.locator('[data-unknown="1"]').count() == 1
        fig.screenshot(path=str(ROOT / "test-artifacts" / "pageblocks-untyped.png"))
    assert log.errors == [], log.errors
