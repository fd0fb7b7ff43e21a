"""The CLI: every command documented with an example, exit codes, output formats,
and the shipped queries checked against independent computations."""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from pathlib import Path

import pytest
import zstandard
from conftest import CAPTURE, ERAS, run_cli

from replay.cli.main import app

COMMANDS = sorted(
    c.name or c.callback.__name__.replace("_", "-")  # type: ignore[union-attr]
    for c in app.registered_commands
)


def test_commands_are_all_there() -> None:
    assert {"ingest", "traces", "show", "sql", "query", "export", "version"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command: str) -> None:
    res = run_cli(command, "--help")
    assert res.code == 0
    assert "Example: replay " + command in " ".join(res.out.split()), res.out


def test_top_level_help() -> None:
    res = run_cli("--help")
    assert res.code == 0 and "ingest" in res.out and "Example" in res.out


def test_exit_codes(db: Path, tmp_path: Path) -> None:
    assert run_cli("ingest", ERAS / "v6.18.txt", "--db", db, "-q").code == 0
    # usage: unknown option, unknown command, name taken
    assert run_cli("ingest", "--bogus").code == 2
    assert run_cli("frobnicate").code == 2
    taken = run_cli("ingest", ERAS / "v6.18.txt", "--db", db, "-q")
    assert taken.code == 2 and "--replace" in taken.err
    # bad input data
    bad = run_cli("ingest", ERAS / "bad_int.txt", "--db", db, "-q")
    assert bad.code == 65 and "bad_int.txt:" in bad.err and "'order'" in bad.err
    unknown = tmp_path / "x.bin"
    unknown.write_bytes(b"\x00\x01\x02garbage")
    res = run_cli("ingest", unknown, "--db", db, "-q")
    assert res.code == 65 and "format" in res.err
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert run_cli("ingest", empty, "--db", db, "-q").code == 65
    # runtime failure: unknown trace, failing SQL
    assert run_cli("show", "nope", "--db", db).code == 1
    assert run_cli("sql", "SELECT * FROM no_such_table", "--db", db).code == 1
    assert run_cli("ingest", tmp_path / "missing.txt", "--db", db).code == 2
    # nothing on stdout when failing
    assert run_cli("show", "nope", "--db", db).out == ""


def test_skip_bad(db: Path) -> None:
    res = run_cli("ingest", ERAS / "bad_garbage.txt", "--db", db, "-q", "--skip-bad", "-f", "json")
    assert res.code == 0
    data = res.json()
    assert data["ingested"]["skipped_bad"] == 1
    assert "line" in data["skipped"][0]["example"]


def test_formats(capture_db: Path) -> None:
    js = run_cli("traces", "--db", capture_db, "--format", "json")
    assert js.code == 0 and js.json()[0]["name"] == "compact"
    cs = run_cli("traces", "--db", capture_db, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(cs.out)))
    assert rows[0]["name"] == "compact" and rows[0]["events"] == "160577"
    tb = run_cli("traces", "--db", capture_db)
    assert "compact" in tb.out and tb.code == 0


def test_show_sections(capture_db: Path) -> None:
    res = run_cli("show", "compact", "--db", capture_db, "--format", "json")
    assert res.code == 0, res.err
    data = res.json()
    assert set(data) >= {
        "summary",
        "event types",
        "orders",
        "migratetypes",
        "processes",
        "compaction",
    }
    s = data["summary"]
    assert (s["allocs"], s["frees"], s["batched"], s["lost_events"]) == (30368, 130209, 8556, 0)
    types = {r["event"]: r["count"] for r in data["event types"]}
    assert types["mm_page_pcpu_drain"] == 108596 and types["alloc (canonical)"] == 30368
    orders = {r["order"]: r for r in data["orders"]}
    assert orders[9]["allocs"] == 239 and orders[9]["alloc_pages"] == 239 * 512
    comp = data["compaction"]
    assert len(comp) == 3 and comp[2]["zone_start"] == "0x100000"


def _perl_counts(text: str) -> dict[str, dict[str, int]]:
    """trace-pagealloc-postprocess.pl's per-process counting, re-done line by line."""
    line_re = re.compile(r"^\s*(.*?-\d+)\s+(?:\(.*?\)\s+)?\[\d+\]\s+\S*\s*[\d.]+:\s+(\w+):\s*(.*)$")
    stats: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for line in text.splitlines():
        m = line_re.match(line)
        if not m:
            continue
        proc, tp, _details = m.groups()
        st = stats[proc]
        key = {"mm_page_alloc": "pages_allocd", "mm_page_free": "freed_direct",
               "mm_page_free_batched": "freed_pagevec", "mm_page_pcpu_drain": "pcpu_drain_pages",
               "mm_page_alloc_zone_locked": "allocd_under_lock",
               "mm_page_alloc_extfrag": "extfrag_fallback"}.get(tp)  # fmt: skip
        if key:
            st[key] += 1
        if tp == "mm_page_pcpu_drain":
            st["_drained"] = 1
        if tp == "mm_page_alloc_zone_locked":
            st["_refilled"] = 1
        if st["_drained"] and tp != "mm_page_pcpu_drain":
            st["pcpu_drains"] += 1
            st["_drained"] = 0
        if st["_refilled"] and tp != "mm_page_alloc_zone_locked":
            st["pcpu_refills"] += 1
            st["_refilled"] = 0
    for st in stats.values():
        if st["_drained"]:
            st["pcpu_drains"] += 1
        if st["_refilled"]:
            st["pcpu_refills"] += 1
    return stats


def test_per_process_matches_the_perl_scripts_counting(capture_db: Path) -> None:
    text = (
        zstandard.ZstdDecompressor()
        .decompressobj()
        .decompress((CAPTURE / "trace.txt.zst").read_bytes())
        .decode()
    )
    want = _perl_counts(text)
    res = run_cli(
        "query", "per_process", "--param", "trace=compact", "--db", capture_db, "-f", "json"
    )
    assert res.code == 0, res.err
    got = {r["process"]: r for r in res.json()}
    assert set(got) == set(want)
    cols = ("pages_allocd", "allocd_under_lock", "freed_direct", "freed_pagevec",
            "pcpu_drain_pages", "pcpu_drains", "pcpu_refills", "extfrag_fallback")  # fmt: skip
    for proc, st in want.items():
        for c in cols:
            assert got[proc][c] == st[c], (proc, c)


def test_extfrag_query_on_old_era(db: Path) -> None:
    assert run_cli("ingest", ERAS / "v2.6.35.txt", "--name", "old", "--db", db, "-q").code == 0
    res = run_cli("query", "extfrag_by_type", "-p", "trace=old", "--db", db, "-f", "json")
    assert res.code == 0, res.err
    rows = res.json()
    assert sum(r["events"] for r in rows) == 1
    per = run_cli("query", "per_process", "-p", "trace=old", "--db", db, "-f", "json").json()
    assert sum(r["extfrag_fallback"] for r in per) == 1
    # pre-3.3: mm_pagevec_free frees count as pagevec, not direct
    text = (ERAS / "v2.6.35.txt").read_text()
    assert sum(r["freed_pagevec"] for r in per) == text.count(" mm_pagevec_free:")
    assert sum(r["freed_direct"] for r in per) == text.count(" mm_page_free_direct:")


def test_query_list_params_and_errors(capture_db: Path) -> None:
    listing = run_cli("query", "--db", capture_db, "-f", "json").json()
    names = {q["name"] for q in listing}
    assert {"per_process", "order_histogram", "extfrag_by_type", "lifetimes"} <= names
    hist = run_cli("query", "order_histogram", "-p", "trace=compact", "-p", "bucket_ms=1000",
                   "--db", capture_db, "-f", "json").json()  # fmt: skip
    assert sum(r["allocs"] for r in hist) == 30368
    assert {r["start_ms"] for r in hist} <= {0, 1000, 2000}
    life = run_cli(
        "query", "lifetimes", "-p", "trace=compact", "--db", capture_db, "-f", "json"
    ).json()
    assert sum(r["objects"] for r in life) == 30368
    assert sum(r["objects"] for r in life if r["lifetime"] == "live at end") == 19265
    assert run_cli("query", "lifetimes", "--db", capture_db).code == 2  # missing param
    assert run_cli("query", "lifetimes", "-p", "nope=1", "--db", capture_db).code == 2
    assert run_cli("query", "../etc/passwd", "--db", capture_db).code == 2
    # a run that does not exist: an error, not an empty table
    res = run_cli("query", "failures_by_order", "-p", "run=999", "--db", capture_db)
    assert res.code == 1 and "no run 999" in res.err and res.out == ""


def test_sql_is_read_only(capture_db: Path) -> None:
    res = run_cli("sql", "DELETE FROM events", "--db", capture_db)
    assert res.code == 1 and "read-only" in res.err.lower()
    ok = run_cli("sql", 'SELECT "order", count(*) AS n FROM events GROUP BY ALL ORDER BY 1',
                 "--db", capture_db, "-f", "json")  # fmt: skip
    assert ok.json()[0] == {"order": 0, "n": 158213}


def test_default_db_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLAY_DB", str(tmp_path / "env.duckdb"))
    assert run_cli("ingest", ERAS / "v5.15.txt", "-q").code == 0
    assert (tmp_path / "env.duckdb").exists()
    monkeypatch.delenv("REPLAY_DB")
    monkeypatch.chdir(tmp_path)
    assert run_cli("ingest", ERAS / "v5.15.txt", "-q").code == 0
    assert (tmp_path / "replay.duckdb").exists()


def test_progress_goes_to_stderr_data_to_stdout(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --quiet a progress bar is drawn (forced terminal) on stderr only."""
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    res = run_cli("ingest", CAPTURE, "--name", "p", "--db", db, "--format", "json")
    assert res.code == 0, res.err
    assert res.json()["ingested"]["events"] == 160577  # stdout is clean JSON
    assert "ingest trace.txt.zst" in res.err
    quiet = run_cli("ingest", CAPTURE, "--name", "q", "--db", db, "--format", "json", "--quiet")
    assert quiet.code == 0 and quiet.err == ""
    run = run_cli("run", "p", "--db", db, "--format", "json", "--every", "10000")
    assert run.code == 0 and run.json()["events"] == 160577 and "replay p" in run.err
