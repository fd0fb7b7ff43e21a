"""Canonical inputs (CSV, Parquet, Arrow IPC): filling in, validation, round trip."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.feather as feather
import pytest
from conftest import ERAS, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

from replay.errors import BadInputError
from replay.ingest import ingest
from replay.store import Store


def _events(db: Path, name: str) -> list[dict]:
    with Store(db, read_only=True) as s:
        t = s.query(
            'SELECT seq, ts_ns, op, obj, "offset", "order", migratetype, pfn FROM events e '
            "JOIN traces USING (trace_id) WHERE name = $n ORDER BY seq",
            {"n": name},
        )
    return t.to_pylist()


def test_minimal_csv_is_filled_in(tmp_path: Path, db: Path) -> None:
    p = tmp_path / "min.csv"
    p.write_text("op,obj,order,offset\nalloc,1,3,\nalloc,2,0,\nfree,1,2,0\nfree,1,2,4\n")
    with Store(db) as s:
        row = ingest(s, p)
    assert row["name"] == "min" and row["allocs"] == 2 and row["frees"] == 2
    assert row["partial_frees"] == 2 and row["live_at_end"] == 1
    ev = _events(db, "min")
    assert [e["offset"] for e in ev] == [0, 0, 0, 4]
    assert [e["seq"] for e in ev] == [0, 1, 2, 3]
    assert [e["ts_ns"] for e in ev] == [0, 1, 2, 3]
    assert [e["migratetype"] for e in ev] == [1, 1, 1, 1]
    assert all(e["pfn"] is None for e in ev)


def test_free_without_order_frees_whole_object(tmp_path: Path, db: Path) -> None:
    p = tmp_path / "w.csv"
    p.write_text("op,obj,order,migratetype\nalloc,7,4,0\nfree,7,,\n")
    with Store(db) as s:
        row = ingest(s, p)
    assert row["partial_frees"] == 0 and row["live_at_end"] == 0
    assert _events(db, "w")[1]["order"] == 4
    assert _events(db, "w")[1]["migratetype"] == 0


@pytest.mark.parametrize(
    ("body", "line", "field", "msg"),
    [
        ("alloc,1,3\nfree,2,3\n", 3, "obj", "unknown object 2"),
        ("alloc,1,11\n", 2, "order", "outside 0..10"),
        ("alloc,1,3\nfree,1,3\nfree,1,3\n", 4, "obj", "freed twice"),
        ("alloc,1,3\nalloc,1,2\n", 3, "obj", "allocated twice"),
        ("alloc,1,x\n", 2, "order", "expected an integer"),
        ("alloc,1,2\nmove,1,2\n", 3, "op", "'alloc' or 'free'"),
        ("free,1,0\nalloc,1,0\n", 2, "obj", "unknown object 1"),
        ("alloc,1,2\nfree,1,3\n", 3, "offset", "not an aligned part"),
    ],
)
def test_csv_errors_name_line_and_field(
    tmp_path: Path, db: Path, body: str, line: int, field: str, msg: str
) -> None:
    p = tmp_path / "bad.csv"
    p.write_text("op,obj,order\n" + body)
    with Store(db) as s, pytest.raises(BadInputError, match=msg) as ei:
        ingest(s, p)
    assert (ei.value.file, ei.value.line, ei.value.field) == (str(p), line, field)
    res = run_cli("ingest", p, "--db", db, "--quiet")
    assert res.code == 65 and f"{p}:{line}:" in res.err and f"'{field}'" in res.err


def test_missing_column(tmp_path: Path, db: Path) -> None:
    p = tmp_path / "m.parquet"
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"op": ["alloc"], "obj": [1]}), p)
    with Store(db) as s, pytest.raises(BadInputError, match="order"):
        ingest(s, p)


def test_export_round_trip_parquet_and_arrow(tmp_path: Path, db: Path) -> None:
    with Store(db) as s:
        ingest(s, ERAS / "v6.18.txt", name="orig")
    out = tmp_path / "orig.parquet"
    assert run_cli("export", "orig", "-o", out, "--db", db).code == 0
    arrow = tmp_path / "orig.arrow"
    import pyarrow.parquet as pq

    feather.write_feather(pq.read_table(out), arrow)
    with Store(db) as s:
        back = ingest(s, out, name="back")
        back2 = ingest(s, arrow, name="back2")
    assert _events(db, "back") == _events(db, "orig") == _events(db, "back2")
    with Store(db, read_only=True) as s:
        orig = s.trace_row("orig")
    # The trace metadata travels in the Parquet schema.
    assert back["kind"] == orig["kind"] == "ftrace"
    assert back["format"] == "canonical parquet"
    assert back["meta"]["file_metadata"]["format"] == orig["format"]
    assert (
        back["zone_pages"] == orig["zone_pages"]
        and back["zone_start_pfn"] == orig["zone_start_pfn"]
    )
    assert back["lost_events"] == orig["lost_events"] == 42
    assert back2["allocs"] == back["allocs"] == orig["allocs"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.booleans()), min_size=1, max_size=30))
def test_random_canonical_histories_accepted(
    tmp_path_factory: pytest.TempPathFactory, spec: list[tuple[int, bool]]
) -> None:
    """Alloc every object, free some whole or in aligned halves: always valid."""
    rows = ["op,obj,order,offset"]
    rows += [f"alloc,{i},{order}," for i, (order, _) in enumerate(spec)]
    frees = partial = live = 0
    for i, (order, free) in enumerate(spec):
        if not free:
            live += 1
        elif order > 0:  # free the upper half only: a partial free, object stays live
            rows.append(f"free,{i},{order - 1},{1 << (order - 1)}")
            frees += 1
            partial += 1
            live += 1
        else:
            rows.append(f"free,{i},0,0")
            frees += 1
    d = tmp_path_factory.mktemp("c")
    p = d / "h.csv"
    p.write_text("\n".join(rows) + "\n")
    with Store(d / "h.duckdb") as s:
        row = ingest(s, p)
    assert row["allocs"] == len(spec) and row["frees"] == frees
    assert row["partial_frees"] == partial and row["live_at_end"] == live
