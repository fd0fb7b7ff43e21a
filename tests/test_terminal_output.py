"""Output for people in a terminal (issue 19, items 1, 2, 3 and 5): tables fit $COLUMNS,
numbers carry separators and sensible rounding (JSON and CSV stay raw), replay show
lists the top processes, replay compare puts a run per column, and an observed run
counts its allocations as the kernel had them. On a real capture in a real store."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import duckdb
import pytest
from conftest import ROOT, run_cli

from replay.cli.output import human

PRESSURE = ROOT / "traces" / "small-pressure-6.18"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The small pressure capture (it has failed and inconsistent allocations), its
    observed run and a buddy run."""
    db = tmp_path_factory.mktemp("terminal") / "t.duckdb"
    res = run_cli("ingest", PRESSURE, "--name", "pressure", "--db", db, "-q")
    assert res.code == 0, res.err
    observed = run_cli("run", "pressure", "--observed", "--db", db, "-q", "-f", "json")
    assert observed.code == 0, observed.err
    buddy = run_cli("run", "pressure", "-m", "buddy", "--db", db, "-q", "-f", "json")
    assert buddy.code == 0, buddy.err
    sparse = run_cli("run", "pressure", "-m", "buddy", "--every", "100", "--db", db, "-q",
                     "-f", "json")  # fmt: skip
    assert sparse.code == 0, sparse.err
    return {"db": db, "observed": observed.json()["run_id"], "buddy": buddy.json()["run_id"],
            "sparse": sparse.json()["run_id"]}  # fmt: skip


def _fits(out: str, width: int) -> None:
    lines = out.splitlines()
    assert lines, "no output"
    widest = max(lines, key=len)
    assert len(widest) <= width, f"{len(widest)} > {width}: {widest!r}"


def _processes_rows(out: str) -> list[str]:
    """The data lines of show's processes table."""
    part = out[out.index("\nprocesses") :].split("\n\n")[0].splitlines()
    start = next(i for i, line in enumerate(part) if line.startswith("━"))
    return [line for line in part[start + 1 :] if "│" in line]


@pytest.mark.parametrize("width", [120, 80])
def test_show_fits_the_terminal(
    store: dict[str, Any], monkeypatch: pytest.MonkeyPatch, width: int
) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    res = run_cli("show", "pressure", "--db", store["db"])
    assert res.code == 0, res.err
    _fits(res.out, width)
    rows = _processes_rows(res.out)
    assert len(rows) == 10
    n_all = len(run_cli("show", "pressure", "--db", store["db"], "-f", "json").json()["processes"])
    assert n_all > 100 and f"10 of {n_all:,} processes" in " ".join(res.out.split())
    # the columns that did not fit are named; 80 columns keeps fewer than 120
    assert "not shown to fit" in res.out and "(--format csv)" in res.out
    top = run_cli("show", "pressure", "--top", "3", "--db", store["db"])
    assert len(_processes_rows(top.out)) == 3
    _fits(top.out, width)
    every = run_cli("show", "pressure", "--all", "--db", store["db"])
    assert len(_processes_rows(every.out)) == n_all
    _fits(every.out, width)


def test_show_json_and_csv_keep_every_process_and_raw_numbers(
    store: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    out = run_cli("show", "pressure", "--top", "2", "--db", store["db"], "-f", "json").json()
    procs = out["processes"]
    assert len(procs) > 100 and len(procs[0]) == 13  # the script's 12 counts and the name
    assert isinstance(procs[0]["pages_allocd"], int) and procs[0]["pages_allocd"] > 1000
    csv = run_cli("show", "pressure", "--db", store["db"], "-f", "csv").out
    block = csv.split("# processes\n")[1].split("\n\n")[0].splitlines()
    assert block[0].startswith("process,pages_allocd,") and len(block) == len(procs) + 1
    assert f",{procs[0]['pages_allocd']}," in block[1]  # no separators in CSV
    # the table shows the same top process with separators
    table = run_cli("show", "pressure", "--db", store["db"])
    first = _processes_rows(table.out)[0]
    assert first.startswith(procs[0]["process"]) and f"{procs[0]['pages_allocd']:,}" in first


@pytest.mark.parametrize("width", [120, 80])
def test_compare_is_a_run_per_column(
    store: dict[str, Any], monkeypatch: pytest.MonkeyPatch, width: int
) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    obs, buddy = store["observed"], store["buddy"]
    res = run_cli("compare", str(obs), str(buddy), str(obs), "--db", store["db"])
    assert res.code == 0, res.err
    _fits(res.out, width)
    raw = run_cli("compare", str(obs), str(buddy), "--db", store["db"], "-f", "json").json()
    # a row per metric in groups, the runs' models in the header
    for group in ("outcomes", "fragmentation at the end", "cost (pages)"):
        assert re.search(rf"^{re.escape(group)}\s", res.out, re.M), group
    assert "observed" in res.out and "buddy" in res.out
    line = next(x for x in res.out.splitlines() if x.startswith("  failures "))
    cells = [c.strip() for c in line.split("│")]
    # the first run's value, then the second's with its change against the first
    assert cells[1] == f"{raw[0]['failures']:,}"
    f0, f1 = raw[0]["failures"], raw[1]["failures"]
    want = "=" if f0 == f1 else ("new" if f0 == 0 else f"{100.0 * (f1 - f0) / f0:+,.1f}%")
    assert cells[2].split() == [f"{f1:,}", want]
    pct = next(x for x in res.out.splitlines() if x.startswith("  success_pct "))
    p0, p1 = raw[0]["success_pct"], raw[1]["success_pct"]
    d = "=" if p0 == p1 else f"{p1 - p0:+,.2f}"
    assert [c.strip() for c in pct.split("│")][2].split() == [f"{p1:.2f}", d]


def test_compare_too_many_runs_for_the_width_continues_below(
    store: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    ids = [str(store[k]) for k in ("observed", "buddy", "sparse")]
    res = run_cli("compare", *ids, "--db", store["db"])
    assert res.code == 0, res.err
    _fits(res.out, 60)
    # two blocks, each starting with the first run: 1 and 2, then 1 and 3
    heads = [x for x in res.out.splitlines() if x.startswith("run_id ")]
    assert [h.split("┃")[1:] for h in heads] == [[" " * 9 + "1 ", " " * 20 + "2"],
                                                  [" " * 9 + "1 ", " " * 20 + "3"]]  # fmt: skip


def test_numbers_for_people() -> None:
    assert human(4102128.8694140264, "events_per_s") == "4,102,129"
    assert human(179.6376115460007, "wall_s") == "179.638"
    assert human(0.012345678, "seconds") == "0.0123"
    assert human(99.123456, "success_pct") == "99.12"
    assert human(1234567, "allocs") == "1,234,567"
    # what people copy into a command or compare with hex stays as it is
    for col in ("run_id", "seq", "first_failure_seq", "pfn_min", "pid", "line", "order"):
        assert human(1234567, col) == "1234567", col
    assert human(None, "allocs") == "" and human(True, "failed") == "True"
    assert human(0.000123456789, "ratio") == "0.0001235"


def test_runs_table_rounds_and_json_stays_raw(
    store: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    table = run_cli("runs", "--db", store["db"])
    assert table.code == 0, table.err
    _fits(table.out, 120)
    assert not re.search(r"\d+\.\d{4,}", table.out), table.out  # no long fractions
    rows = run_cli("runs", "--db", store["db"], "-f", "json").json()
    rate = rows[0]["events_per_s"]
    assert isinstance(rate, float)


def test_a_wide_sql_result_prints_as_records(
    store: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    res = run_cli("sql", "SELECT * FROM runs ORDER BY run_id", "--db", store["db"])
    assert res.code == 0, res.err
    _fits(res.out, 80)
    assert "-[ row 1 ]" in res.out and "-[ row 2 ]" in res.out
    assert re.search(r"^model\s+observed$", res.out, re.M)


def test_observed_outcomes_as_the_kernel_had_them(store: dict[str, Any]) -> None:
    """The kernel served every allocation it did not fail: an inconsistent step (the
    rebuilt state could not explain the block the kernel handed out) is a success."""
    obs = store["observed"]
    res = run_cli("query", "failures_by_order", "-p", f"run={obs}", "--db", store["db"],
                  "-f", "json")  # fmt: skip
    assert res.code == 0, res.err
    rows = res.json()
    con = duckdb.connect(str(store["db"]), read_only=True)
    try:
        kernel = {
            (o, mt): (n, failed)
            for o, mt, n, failed in con.execute(
                """SELECT "order", mt_name(migratetype), count(*),
                          count(*) FILTER (coalesce(failed, false))
                   FROM events WHERE op = 'alloc' GROUP BY ALL"""
            ).fetchall()
        }
    finally:
        con.close()
    assert sum(r["inconsistent"] for r in rows) > 0  # the capture has some
    for r in rows:
        n, failed = kernel[(r["order"], r["migratetype"])]
        assert (r["allocs"], r["failures"]) == (n, failed), r
        assert r["success_pct"] == round(100.0 * (n - failed) / n, 2), r
    # where the kernel failed nothing, an order with inconsistent steps is at 100%
    assert any(r["inconsistent"] and not r["failures"] and r["success_pct"] == 100 for r in rows)
    cmp = run_cli("query", "compare_runs", "-p", f"runs={obs}", "--db", store["db"], "-f", "json")
    (row,) = cmp.json()
    total = sum(n for n, _ in kernel.values())
    failed = sum(f for _, f in kernel.values())
    assert row["success_pct"] == round(100.0 * (total - failed) / total, 3)
    # the report and replay compare count them the same way
    rep = run_cli("compare", str(obs), "--db", store["db"], "-f", "json")
    assert rep.code == 0, rep.err
    (summary,) = rep.json()
    assert summary["success_pct"] == round(100.0 * (total - failed) / total, 3), summary


def test_every_line_fits_across_commands(
    store: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    for args in (["traces"], ["runs"], ["query"], ["query", "per_process", "-p", "trace=pressure"],
                 ["query", "failures_by_order", "-p", f"run={store['buddy']}"]):  # fmt: skip
        res = run_cli(*args, "--db", store["db"])
        assert res.code == 0, (args, res.err)
        _fits(res.out, 120)
