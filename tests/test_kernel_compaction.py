"""The kernel's real compact_memory next to the model's (replay.engine.kernel_compaction).

On the shipped capture: the kernel column equals independent SQL over the
recorded events and snapshots, the model ran on the Normal zone from the
observed state at the begin event and kept its own books (free pages
conserved, scanners met, every isolated page moved or counted as not
moved), the table has every row, and the CLI command prints it in the three
formats. Plus small hand-made cases for the pageblock typing.
"""

from __future__ import annotations

import csv
import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from conftest import run_cli

from replay.cli.compare_kernel import compare_kernel_compaction
from replay.engine.kernel_compaction import (
    SOURCES,
    VARIANTS,
    ObservedStart,
    compactions,
    compare,
    pageblock_types,
)
from replay.engine.observed import NF
from replay.errors import ReplayError, UsageError
from replay.models.internal import MIGRATE_MOVABLE, MIGRATE_UNMOVABLE
from replay.store import Store

TRACE = "compact"  # the name conftest's capture_db gives the shipped capture
NORMAL = 0x100000

ROWS = [
    "zone start pfn", "zone end pfn", "migrate scanner start pfn", "free scanner start pfn",
    "migrate scanner end pfn", "free scanner end pfn", "pages migrated",
    "pages isolated for migration", "pages isolated, not migrated", "pages failed migration",
    "large folios split", "migrate scanner pages scanned", "free scanner pages scanned",
    "free pages isolated as targets", "MOVABLE pageblocks", "free pages at begin",
    "free pages at end", *[f"free blocks order {k} at end" for k in range(NF)],
]  # fmt: skip


@pytest.fixture(scope="module")
def result(capture_db: Path) -> dict[str, Any]:
    with Store(capture_db, read_only=True) as store:
        return compare(store, TRACE)


@pytest.fixture(scope="module")
def by(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["metric"]: r for r in result["rows"]}


def _sql(db: Path, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    with Store(db, read_only=True) as store:
        rows = store.query(sql, params).to_pylist()
    return [tuple(r.values()) for r in rows]


def _normal_pair(db: Path) -> tuple[int, int]:
    """The Normal zone's begin line and the next end line, found without the module."""
    (begin,) = _sql(db, """
        SELECT line FROM aux_events a JOIN traces t USING (trace_id)
        WHERE t.name = 'compact' AND event = 'mm_compaction_begin'
          AND args->>'zone_start' = '0x100000'""")  # fmt: skip
    (end,) = _sql(db, """
        SELECT min(line) FROM aux_events a JOIN traces t USING (trace_id)
        WHERE t.name = 'compact' AND event = 'mm_compaction_end' AND line > $b""",
                  {"b": begin[0]})  # fmt: skip
    return int(begin[0]), int(end[0])


# ------------------------------------------------------------ the kernel column
def test_the_compaction_is_the_normal_zones(capture_db: Path, result: dict[str, Any]) -> None:
    begin, end = _normal_pair(capture_db)
    s = result["summary"]
    assert (s["begin_line"], s["end_line"]) == (begin, end) == (32296, 303286)
    assert s["zone"] == "Normal" and s["zone_start_pfn"] == NORMAL
    assert s["kernel_mode"] == "sync" and s["kernel_status"] == "complete"
    with Store(capture_db, read_only=True) as store:
        pairs = compactions(store, store.trace_id(TRACE))
    assert [p.zone_start for p in pairs] == [0x1, 0x1000, NORMAL]  # DMA, DMA32, Normal


def test_kernel_sums_equal_independent_sql(capture_db: Path, by: dict[str, Any]) -> None:
    begin, end = _normal_pair(capture_db)
    sums = dict(_sql(capture_db, """
        SELECT event || ':' || k, sum(CAST(args->>k AS BIGINT)) FROM (
          SELECT event, args, unnest(json_keys(args)) AS k
          FROM aux_events WHERE line > $b AND line < $e
            AND trace_id = (SELECT trace_id FROM traces WHERE name = 'compact')
            AND event IN ('mm_migrate_pages', 'mm_compaction_migratepages',
                          'mm_compaction_isolate_migratepages',
                          'mm_compaction_isolate_freepages'))
        WHERE k LIKE 'nr_%' GROUP BY 1""", {"b": begin, "e": end}))  # fmt: skip
    assert by["pages migrated"]["kernel"] == sums["mm_migrate_pages:nr_succeeded"] == 126_462
    assert by["pages failed migration"]["kernel"] == sums["mm_migrate_pages:nr_failed"]
    assert by["large folios split"]["kernel"] == sums["mm_migrate_pages:nr_split"]
    assert (
        by["pages isolated, not migrated"]["kernel"] == sums["mm_compaction_migratepages:nr_failed"]
    )
    assert sums["mm_compaction_migratepages:nr_migrated"] == sums["mm_migrate_pages:nr_succeeded"]
    assert (
        by["migrate scanner pages scanned"]["kernel"]
        == sums["mm_compaction_isolate_migratepages:nr_scanned"]
    )
    assert (
        by["pages isolated for migration"]["kernel"]
        == sums["mm_compaction_isolate_migratepages:nr_taken"]
    )
    assert (
        by["free scanner pages scanned"]["kernel"]
        == sums["mm_compaction_isolate_freepages:nr_scanned"]
    )
    assert (
        by["free pages isolated as targets"]["kernel"]
        == sums["mm_compaction_isolate_freepages:nr_taken"]
    )


def test_kernel_positions_and_after_buddyinfo(capture_db: Path, by: dict[str, Any]) -> None:
    _, end = _normal_pair(capture_db)
    ((mig, free, zend),) = _sql(capture_db, """
        SELECT args->>'migrate_pfn', args->>'free_pfn', args->>'zone_end' FROM aux_events
        WHERE line = $e AND trace_id = (SELECT trace_id FROM traces WHERE name = 'compact')""",
                                {"e": end})  # fmt: skip
    assert by["migrate scanner end pfn"]["kernel"] == int(mig, 16) == 0x124000
    assert by["free scanner end pfn"]["kernel"] == int(free, 16)
    assert by["zone end pfn"]["kernel"] == int(zend, 16)
    after = dict(_sql(capture_db, """
        SELECT "order", nr_free FROM snap_buddyinfo WHERE snapshot = 'after' AND zone = 'Normal'
          AND trace_id = (SELECT trace_id FROM traces WHERE name = 'compact')"""))  # fmt: skip
    for k in range(NF):
        assert by[f"free blocks order {k} at end"]["kernel"] == after[k]
    assert by["free pages at end"]["kernel"] == sum(n << k for k, n in after.items()) == 78_362
    ((movable,),) = _sql(
        capture_db,
        """
        SELECT nr_pageblocks FROM snap_pageblocks WHERE snapshot = 'before' AND zone = 'Normal'
          AND mt = 1 AND trace_id = (SELECT trace_id FROM traces WHERE name = 'compact')""",
    )
    assert by["MOVABLE pageblocks"]["kernel"] == movable == 1793


# ---------------------------------------------------------------- the model column
def test_model_ran_on_the_normal_zone(by: dict[str, Any]) -> None:
    for m in ("zone start pfn", "zone end pfn", "migrate scanner start pfn",
              "free scanner start pfn"):  # fmt: skip
        assert by[m]["model"] == by[m]["kernel"], m
    assert by["zone end pfn"]["model"] - by["zone start pfn"]["model"] == 1 << 20  # managed


def test_model_books_balance(result: dict[str, Any], by: dict[str, Any]) -> None:
    s = result["summary"]
    assert s["model_result"] == "COMPLETE"
    # free pages are conserved, and the start is the observed replay's state at the begin
    assert by["free pages at begin"]["model"] == by["free pages at begin"]["rebuilt"]
    assert by["free pages at end"]["model"] == by["free pages at begin"]["model"]
    for col in ("model", "rebuilt"):
        blocks = sum(by[f"free blocks order {k} at end"][col] << k for k in range(NF))
        assert blocks == by["free pages at end"][col]
    # the scanners met (compact_scanners_met), inside the zone
    mig, fr = by["migrate scanner end pfn"]["model"], by["free scanner end pfn"]["model"]
    assert fr >> 9 <= mig >> 9
    assert NORMAL < fr <= mig < NORMAL + (1 << 20)
    # every isolated page was moved or counted as not moved; a whole-zone scan of
    # [start, migrate end) stepped over every page once
    iso = by["pages isolated for migration"]["model"]
    assert iso == by["pages migrated"]["model"] + by["pages isolated, not migrated"]["model"]
    assert by["migrate scanner pages scanned"]["model"] == mig - NORMAL
    # every page of the zone was typed once
    assert sum(s["pages_by_source"].values()) == 1 << 20
    assert set(s["pages_by_source"]) == set(SOURCES)
    assert s["pages_by_source"]["free"] == by["free pages at begin"]["rebuilt"]


def test_model_variants(result: dict[str, Any], by: dict[str, Any]) -> None:
    var = {v["variant"]: v for v in result["variants"]}
    assert [v["variant"] for v in result["variants"]] == [v[0] for v in VARIANTS] + ["kernel"]
    main = var["model"]
    assert main["migrated"] == by["pages migrated"]["model"]
    assert main["migrate_end_pfn"] == by["migrate scanner end pfn"]["model"]
    assert main["order10_end"] == by["free blocks order 10 at end"]["model"]
    # calibrated pageblocks: exactly the snapshot's count; the vote finds fewer MOVABLE
    assert main["movable_pageblocks"] == var["kernel"]["movable_pageblocks"] == 1793
    assert var["vote pageblocks"]["movable_pageblocks"] < 1793
    # without folio units only the last batch can lack targets (when the scanners meet;
    # a batch is at most the rest of a pageblock, when the round finishes one); with
    # them, a folio without a free block of its order is split and its pages move
    assert var["no folio units"]["not_migrated"] < 512 and main["not_migrated"] < 512
    assert main["split"] > 100 and var["no folio units"]["split"] == 0
    assert var["kernel"]["split"] == 3170
    for v in result["variants"][:-1]:
        assert v["free_end_pfn"] >> 9 <= v["migrate_end_pfn"] >> 9


def test_the_table_has_every_row_and_every_gap(result: dict[str, Any]) -> None:
    assert [r["metric"] for r in result["rows"]] == ROWS
    assert all(set(r) == {"metric", "model", "kernel", "rebuilt", "source"}
               for r in result["rows"])  # fmt: skip
    gaps = [g["gap"] for g in result["gaps"]]
    assert len(gaps) == len(set(gaps)) >= 7
    assert all(len(g["why"]) > 80 for g in result["gaps"])
    json.dumps(result)  # plain JSON values only


# -------------------------------------------------------------- pageblock typing
def _obs(page_mt: list[int], blk: dict[int, int] | None = None) -> ObservedStart:
    pages = len(page_mt)
    b = np.full(pages, -1, np.int8)
    for o, k in (blk or {}).items():
        b[o] = k
    z = np.zeros(0, np.int64)
    return ObservedStart(0, pages, b, np.array(page_mt, np.int8), np.zeros(pages, np.int8),
                         z, z, z, z.astype(bool), 0, z)  # fmt: skip


def test_pageblock_types_vote_and_calibrated() -> None:
    U, Mv, F = MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, -1
    # four pageblocks: mostly unmovable, a 1/3 unmovable, all free, all movable
    mt = [U] * 400 + [Mv] * 112 + [U] * 100 + [Mv] * 200 + [F] * 212 + [F] * 512 + [Mv] * 512
    obs = _obs(mt, {1024: 9})
    assert pageblock_types(obs, None).tolist() == [U, Mv, Mv, Mv]
    assert pageblock_types(obs, 2).tolist() == [U, U, Mv, Mv]
    assert pageblock_types(obs, 0).tolist() == [Mv] * 4
    assert pageblock_types(obs, 9).tolist() == [U] * 4


def test_pageblock_types_order_10_block_spans_two() -> None:
    U, Mv = MIGRATE_UNMOVABLE, MIGRATE_MOVABLE
    mt = [U] * 512 + [-1] * 1024 + [Mv] * 512
    obs = _obs(mt, {512: 10})  # not aligned to 1024 here: only the rule is tested
    # ranked: pageblock 0 (all unmovable), 3 (no free pages), 1, 2; the block's second
    # pageblock takes its first one's type
    assert pageblock_types(obs, 3).tolist() == [U, U, U, U]
    assert pageblock_types(obs, 2).tolist() == [U, Mv, Mv, U]


# ------------------------------------------------------------------------- CLI
def _cli(*args: str | Path) -> tuple[int, str, str]:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(compare_kernel_compaction)
    app.command("other")(lambda: None)  # two commands: the name is required, as in replay
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            app(args=[str(a) for a in args], prog_name="replay")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0
        except ReplayError as exc:
            code = exc.exit_code
    return code, out.getvalue(), err.getvalue()


def test_cli_formats(capture_db: Path, result: dict[str, Any]) -> None:
    code, out, _ = _cli("compare-kernel-compaction", TRACE, "--db", capture_db, "-f", "json")
    assert code == 0
    js = json.loads(out)
    assert js["rows"] == result["rows"] and set(js) == {"summary", "rows", "variants", "gaps"}
    code, out, _ = _cli("compare-kernel-compaction", TRACE, "--db", capture_db, "-f", "csv")
    assert code == 0
    blocks = out.split("\n\n")
    assert [b.splitlines()[0] for b in blocks] == ["# compaction", "# comparison", "# variants",
                                                   "# gaps"]  # fmt: skip
    table = list(csv.DictReader(io.StringIO(blocks[1].split("\n", 1)[1])))
    assert [r["metric"] for r in table] == ROWS
    assert table[6]["kernel"] == "126462"
    code, out, _ = _cli("compare-kernel-compaction", TRACE, "--db", capture_db)
    assert code == 0 and "pages migrated" in out and "126,462" in out  # numbers for people
    code, out, _ = _cli("compare-kernel-compaction", "--help")
    assert code == 0 and "Example: replay compare-kernel-compaction" in " ".join(out.split())


def test_without_snapshots_is_a_usage_error(tmp_path: Path) -> None:
    plain = tmp_path / "plain.csv"
    plain.write_text("op,obj,order,pfn\nalloc,1,0,4096\nfree,1,0,4096\n")
    db = tmp_path / "p.duckdb"
    assert run_cli("ingest", plain, "--name", "plain", "--db", db, "--quiet").code == 0
    code, out, _ = _cli("compare-kernel-compaction", "plain", "--db", db)
    assert code == UsageError.exit_code == 2 and out == ""
    with Store(db, read_only=True) as store, pytest.raises(UsageError, match="Normal"):
        compare(store, "plain")
