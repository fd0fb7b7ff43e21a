"""Allocations the recorded kernel failed are requests: canonical rows a model is asked.

A failed ``mm_page_alloc`` (``page=(null)``/``pfn=0``) becomes an alloc row
of its own object with ``failed`` true and no pfn (tests/test_ftrace.py and
the era fixtures cover the parser). Here: a canonical file may carry the
column, and bad uses of it are refused with the file, line and field; a
what-if model is asked the request, and serving it is the what-if answer
(outcome ok, ``served_kernel_failures``) with the block given straight
back.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from replay.engine import whatif as engine
from replay.errors import BadInputError
from replay.models.config import load_model
from replay.store import Store
from replay.trace.ingest import ingest


def _csv(tmp_path: Path, rows: list[str]) -> Path:
    p = tmp_path / "t.csv"
    p.write_text("op,obj,order,offset,pfn,failed\n" + "\n".join(rows) + "\n")
    return p


def _steps(db: Path, run_id: int) -> list[dict]:
    con = duckdb.connect(str(db), read_only=True)
    cur = con.execute(
        "SELECT seq, pfn, outcome, free_pages, failures FROM steps WHERE run_id = ? ORDER BY seq",
        [run_id],
    )
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    con.close()
    return rows


def test_canonical_failed_rows_are_counted_apart(tmp_path: Path, db: Path) -> None:
    p = _csv(tmp_path, ["alloc,1,0,,,", "alloc,2,3,,,true", "free,1,0,,,"])
    with Store(db) as s:
        row = ingest(s, p)
        failed = s.query("SELECT obj, pfn FROM events WHERE failed").to_pylist()
    assert (row["events"], row["allocs"], row["frees"], row["failed_allocs"]) == (3, 1, 1, 1)
    assert row["live_at_end"] == 0
    assert failed == [{"obj": 2, "pfn": None}]


@pytest.mark.parametrize(
    ("rows", "line", "field", "words"),
    [
        (["alloc,1,0,,,", "free,1,0,,,true"], 3, "failed", "on a free"),
        (["alloc,1,0,,4096,true"], 2, "failed", "with a pfn"),
        (["alloc,1,0,,,true", "alloc,2,0,,,", "free,1,0,,,"], 4, "obj", "has no pages"),
    ],
    ids=["on-a-free", "with-a-pfn", "freed-later"],
)
def test_bad_failed_rows_name_file_line_and_field(
    tmp_path: Path, db: Path, rows: list[str], line: int, field: str, words: str
) -> None:
    p = _csv(tmp_path, rows)
    with Store(db) as s, pytest.raises(BadInputError) as ei:
        ingest(s, p)
    if db.exists():  # a new file whose first ingest failed is removed; else it is unchanged
        with Store(db, read_only=True) as s:
            assert s.one("SELECT count(*) FROM events")[0] == 0  # nothing half-written
    assert ei.value.file == str(p)
    assert ei.value.line == line
    assert ei.value.field == field
    assert words in str(ei.value)


def test_a_model_is_asked_what_the_kernel_failed(tmp_path: Path, db: Path) -> None:
    # A 16-page zone: A takes 8 pages, B (failed by the kernel, order 2) fits, so
    # the model serves it and gives it straight back; C (failed, order 4) cannot fit.
    p = _csv(tmp_path, ["alloc,1,3,,,", "alloc,2,2,,,true", "alloc,3,4,,,true", "free,1,3,,,"])
    with Store(db) as s:
        ingest(s, p)
        r = engine.run(s, "t", load_model("buddy"), zone_pages=16)
    steps = _steps(db, r.run_id)
    assert [x["outcome"] for x in steps] == ["ok", "ok", "failed", "ok"]
    assert [x["pfn"] for x in steps] == [0, 8, -1, None]
    # B went straight back: the zone is as free after it as before it
    assert [x["free_pages"] for x in steps] == [8, 8, 8, 16]
    assert (r.failures, r.served_kernel_failures) == (1, 1)
    with Store(db, read_only=True) as s:
        assert s.one("SELECT served_kernel_failures FROM runs WHERE run_id = $r",
                     {"r": r.run_id})[0] == 1  # fmt: skip


def test_served_kernel_failures_with_compaction_and_pcp(tmp_path: Path, db: Path) -> None:
    """The give-back also holds with pcp lists and a model that keeps units."""
    rows = [f"alloc,{i},0,,," for i in range(8)] + ["alloc,100,1,,,true"]
    rows += [f"free,{i},0,,," for i in range(8)]
    p = _csv(tmp_path, rows)
    with Store(db) as s:
        ingest(s, p)
        r = engine.run(s, "t", load_model("mobility+compaction"), zone_pages=64)
        r2 = engine.run(s, "t", load_model("mobility+pcp"), zone_pages=64)
    assert r.served_kernel_failures == 1 and r.failures == 0
    assert r2.served_kernel_failures == 1 and r2.failures == 0
    assert r.free_pages == 64 and r2.free_pages + r2.pcp_pages == 64
