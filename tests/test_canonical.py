"""Canonical inputs (CSV, Parquet, Arrow IPC): filling in, validation, round trip."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from conftest import ERAS, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st
from ref_canonical import canonicalise as ref_canonicalise
from ref_canonical import read_table as ref_read_table

from replay.errors import BadInputError
from replay.store import Store
from replay.trace import canonical
from replay.trace.canonical import CanonicalStream, canonicalise, open_file
from replay.trace.ingest import ingest
from replay.trace.schema import EVENT_SCHEMA


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
    pq.write_table(pa.table({"op": ["alloc"], "obj": [1]}), p)
    with Store(db) as s, pytest.raises(BadInputError, match="order"):
        ingest(s, p)


def test_export_round_trip_parquet_and_arrow(tmp_path: Path, db: Path) -> None:
    with Store(db) as s:
        ingest(s, ERAS / "v6.18.txt", name="orig")
    out = tmp_path / "orig.parquet"
    assert run_cli("export", "orig", "-o", out, "--db", db).code == 0
    arrow = tmp_path / "orig.arrow"
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


# -- the streaming ingester against the polars reference (tests/ref_canonical.py) ----------
OPTIONAL = ("migratetype", "offset", "ts_ns", "pfn", "cpu", "pid", "comm", "gfp", "region", "vpn",
            "movable", "batched", "seq")  # fmt: skip
INT_TYPES = {"obj": pa.int64(), "order": pa.int64(), "offset": pa.int64(), "ts_ns": pa.int64(),
             "migratetype": pa.int8(), "pfn": pa.int64(), "cpu": pa.int16(), "pid": pa.int32(),
             "region": pa.int64(), "vpn": pa.int64(), "seq": pa.int64()}  # fmt: skip
ALLOC_SPELLINGS = ("alloc", "Alloc", " ALLOC", "alloc ")
FREE_SPELLINGS = ("free", "FREE", " Free ", "free")
BATCH_SIZES = (1, 2, 3, 5, 64, 1 << 18)
EXTRA_VALUES: dict[str, list[Any]] = {
    "cpu": [None, 0, 1, 7],
    "pid": [None, 1, 4242],
    "comm": [None, "kswapd0", "bash", "a b"],
    "gfp": [None, "GFP_KERNEL"],
    "region": [None, 3, -1],
    "vpn": [None, 1 << 40],
    "movable": [None, True, False],
    "batched": [None, True, False],
}


@dataclass
class History:
    """Rows in replay order (dicts; a missing key is a null) and the columns the table has."""

    rows: list[dict[str, Any]]
    cols: set[str]
    shuffle: bool = False
    strings: set[str] = field(default_factory=set)  # int columns written as strings
    dict_op: bool = False


def _history(rng: random.Random) -> History:
    """A valid canonical history: allocs, whole, partial (aligned) and order-less frees,
    frees of objects allocated before tracing (with a pfn), optional columns with nulls."""
    cols = {c for c in OPTIONAL if rng.random() < 0.5}
    timeline: list[tuple[float, dict[str, Any]]] = []
    n_obj = rng.randint(1, 16)
    ids = rng.sample(range(-(10**12), 10**12), n_obj + 5)
    for x in ids[:n_obj]:
        k = rng.randint(0, 4)
        t = rng.random()
        alloc: dict[str, Any] = {"op": rng.choice(ALLOC_SPELLINGS), "obj": x, "order": k}
        if "migratetype" in cols:
            alloc["migratetype"] = rng.choice([None, -1, 0, 1, 2, 3, 4, 5])
        if "pfn" in cols and rng.random() < 0.5:
            alloc["pfn"] = rng.randint(0, 1 << 30)
        timeline.append((t, alloc))
        plan = rng.random()
        if plan < 0.3:
            continue  # live at the end
        parts = [(0, k)]
        if plan > 0.6:  # split into aligned parts, free some of them
            for _ in range(rng.randint(0, 4)):
                i = rng.randrange(len(parts))
                off, kk = parts[i]
                if kk:
                    parts[i : i + 1] = [(off, kk - 1), (off + (1 << (kk - 1)), kk - 1)]
            if "offset" not in cols:
                parts = [p for p in parts if p[0] == 0]
            parts = rng.sample(parts, rng.randint(1, len(parts)))
        for off, kk in parts:
            free: dict[str, Any] = {"op": rng.choice(FREE_SPELLINGS), "obj": x, "order": kk}
            if off == 0 and kk == k and rng.random() < 0.4:
                free["order"] = None  # the whole object
            if "offset" in cols and (off or rng.random() < 0.5):
                free["offset"] = off
            if "migratetype" in cols:
                free["migratetype"] = rng.choice([None, 0, 1, 5])  # ignored: the object's
            if "pfn" in cols and rng.random() < 0.5:
                free["pfn"] = rng.randint(0, 1 << 30)
            timeline.append((t + rng.random(), free))
    if "pfn" in cols:
        for x in ids[n_obj : n_obj + rng.randint(0, 5)]:
            pre = {"op": rng.choice(FREE_SPELLINGS), "obj": x, "order": rng.randint(0, 4),
                   "pfn": rng.randint(0, 1 << 30)}  # fmt: skip
            if "offset" in cols and rng.random() < 0.5:
                pre["offset"] = 0
            timeline.append((rng.random() * 2, pre))
    timeline.sort(key=lambda e: e[0])
    rows = [r for _, r in timeline]
    for r in rows:
        if "ts_ns" in cols:
            r["ts_ns"] = rng.randint(0, 10**12)
        for c, vals in EXTRA_VALUES.items():
            if c in cols:
                r[c] = rng.choice(vals)
    strings = {c for c in INT_TYPES if c in cols | {"obj", "order"} and rng.random() < 0.15}
    return History(rows, cols, shuffle=rng.random() < 0.5, strings=strings,
                   dict_op=rng.random() < 0.3)  # fmt: skip


def _table(h: History, rng: random.Random) -> tuple[pa.Table, list[int]]:
    """The history as a table (seq assigned in replay order, rows maybe shuffled);
    the file row of each replay-order row."""
    rows = h.rows
    for r in rows:
        if "ts_ns" in h.cols and "ts_ns" not in r:  # rows a fault added
            r["ts_ns"] = 5
    if "seq" in h.cols:
        s = rng.randint(-1000, 1000)
        for r in rows:
            if "seq" not in r:  # (a seq fault sets it beforehand)
                r["seq"] = s
            s += rng.randint(1, 3)
    order = list(range(len(rows)))
    if h.shuffle and "seq" in h.cols:
        rng.shuffle(order)  # file row j holds replay row order[j]
    file_row = [0] * len(rows)
    for j, i in enumerate(order):
        file_row[i] = j
    data: dict[str, pa.Array] = {}
    for c in ("op", "obj", "order", *sorted(h.cols)):
        vals = [rows[i].get(c) for i in order]
        if c in h.strings:
            data[c] = pa.array([None if v is None else str(v) for v in vals], pa.string())
        elif c == "op":
            arr = pa.array(vals, pa.string())
            data[c] = arr.dictionary_encode() if h.dict_op else arr
        elif c in INT_TYPES:
            data[c] = pa.array(vals, INT_TYPES[c])
        elif c in ("movable", "batched"):
            data[c] = pa.array(vals, pa.bool_())
        else:
            data[c] = pa.array(vals, pa.string())
    return pa.table(data), file_row


def _both(table: pa.Table, batch_rows: int) -> tuple[Any, Any]:
    """(ref result or error, new result or error)."""
    out = []
    for fn in (
        lambda: ref_canonicalise(table, Path("t.arrow"), "arrow"),
        lambda: canonicalise(table, Path("t.arrow"), "arrow", batch_rows=batch_rows),
    ):
        try:
            out.append(fn())
        except BadInputError as exc:
            out.append(exc)
    return out[0], out[1]


@settings(max_examples=300, deadline=None)
@given(st.randoms(use_true_random=False), st.sampled_from(BATCH_SIZES))
def test_streaming_matches_reference_on_valid_tables(rng: random.Random, batch_rows: int) -> None:
    """Random valid tables: every output column and every count agree with polars."""
    h = _history(rng)
    table, _ = _table(h, rng)
    with pytest.MonkeyPatch.context() as mp:  # the object table and pool grow from tiny
        mp.setattr(canonical.ObjectTable, "CAPACITY", 2)
        mp.setattr(canonical.ObjectTable, "POOL_WORDS", 1)
        ref, new = _both(table, batch_rows)
    assert not isinstance(ref, Exception), ref
    assert not isinstance(new, Exception), new
    assert new[1] == ref[1]
    assert new[0].schema == ref[0].schema
    assert new[0].to_pylist() == ref[0].to_pylist()


def _free_of_allocated(h: History, rng: random.Random) -> tuple[int, int]:
    """(alloc row, free row) of some allocated object, adding a whole free if none."""
    allocs = {r["obj"]: i for i, r in enumerate(h.rows) if r["op"].strip().lower() == "alloc"}
    frees = [i for i, r in enumerate(h.rows)
             if r["op"].strip().lower() == "free" and r["obj"] in allocs]  # fmt: skip
    if frees:
        f = rng.choice(frees)
        return allocs[h.rows[f]["obj"]], f
    a = rng.choice(list(allocs.values()))
    f = rng.randint(a + 1, len(h.rows))
    h.rows.insert(f, {"op": "free", "obj": h.rows[a]["obj"], "order": h.rows[a]["order"]})
    return a, f


FAULTS = ("op", "obj_null", "order_range", "alloc_null_order", "mt_range", "not_int",
          "alloc_twice", "unknown_free", "free_before_alloc", "pre_twice", "part", "freed_twice",
          "ts_null", "seq_dup", "seq_null", "seq_not_int")  # fmt: skip


def _inject(h: History, fault: str, rng: random.Random) -> tuple[Any, str]:
    """Make one fault in a valid history; (the bad row, as a dict, or a pair of them; field)."""
    rows = h.rows
    i = rng.randrange(len(rows))
    r = rows[i]
    if fault == "op":
        r["op"] = rng.choice(["move", "allocate", None])
        return r, "op"
    if fault == "obj_null":
        r["obj"] = None
        return r, "obj"
    if fault == "order_range":
        r["order"] = rng.choice([11, -1, 99])
        return r, "order"
    if fault == "alloc_null_order":
        a = rng.choice([x for x in rows if x["op"].strip().lower() == "alloc"])
        a["order"] = None
        return a, "order"
    if fault == "mt_range":
        h.cols.add("migratetype")
        r["migratetype"] = rng.choice([6, -2, 100])
        return r, "migratetype"
    if fault == "not_int":
        col = rng.choice(["obj", "order", *sorted(c for c in h.cols if c in INT_TYPES)])
        h.strings.add(col)
        r[col] = rng.choice(["x", "1.5", "0x", "", "-"])
        return r, col
    if fault == "alloc_twice":
        a = rng.choice([x for x in rows if x["op"].strip().lower() == "alloc"])
        dup = {"op": "alloc", "obj": a["obj"], "order": rng.randint(0, 4)}
        rows.insert(rng.randint(rows.index(a) + 1, len(rows)), dup)
        return dup, "obj"
    if fault == "unknown_free":
        bad = {"op": "free", "obj": 10**13 + rng.randint(0, 99), "order": rng.choice([None, 0])}
        rows.insert(rng.randint(0, len(rows)), bad)
        return bad, "obj"
    if fault == "free_before_alloc":
        a, f = _free_of_allocated(h, rng)
        free = rows.pop(f)
        if free.get("pfn") is not None:  # then a whole free with its order (see canonical.py)
            free.update(order=rows[a]["order"], offset=0 if "offset" in free else None)
        rows.insert(rng.randint(0, a), free)
        return free, "obj"
    if fault == "pre_twice":
        pres = [x for x in rows if x.get("pfn") is not None
                and x["op"].strip().lower() == "free"
                and not any(y["obj"] == x["obj"] for y in rows if y is not x)]  # fmt: skip
        if not pres:
            h.cols.add("pfn")
            pres = [{"op": "free", "obj": -(10**13), "order": 2, "pfn": 5}]
            rows.insert(rng.randint(0, len(rows)), pres[0])
        p = rng.choice(pres)
        dup = dict(p)
        rows.insert(rng.randint(rows.index(p) + 1, len(rows)), dup)
        return dup, "obj"
    if fault == "part":
        a, f = _free_of_allocated(h, rng)
        free, k = rows[f], rows[a]["order"]
        how = rng.choice(["beyond", "negative", "bigger"] + ["misaligned"] * 3 * (k >= 2))
        if how == "bigger":
            free.update(order=k + 1, offset=0)
        elif how == "misaligned":  # inside the object, not aligned to its size
            kk = rng.randint(1, k - 1)
            free.update(order=kk, offset=(1 << (kk - 1)) * rng.choice([1, 3]))
        else:
            kk = rng.randint(0, k)
            free.update(order=kk, offset=(1 << k) if how == "beyond" else -(1 << kk))
        h.cols.add("offset")
        return free, "offset"
    if fault == "freed_twice":
        _, f = _free_of_allocated(h, rng)
        dup = dict(rows[f])
        rows.insert(rng.randint(f + 1, len(rows)), dup)
        return dup, "obj"
    if fault == "ts_null":
        if "ts_ns" not in h.cols:
            h.cols.add("ts_ns")
            for x in rows:
                x["ts_ns"] = 7
        r["ts_ns"] = None
        return r, "ts_ns"
    # seq faults: seq values are set here, _table keeps them.
    h.cols.add("seq")
    if len(rows) == 1:
        rows.append({"op": "alloc", "obj": 10**13, "order": 0})
    for n, x in enumerate(rows):
        x["seq"] = 3 * n
    i = rng.randrange(len(rows))
    r = rows[i]
    if fault == "seq_null":
        r["seq"] = None
        return r, "seq"
    if fault == "seq_not_int":
        h.strings.add("seq")
        r["seq"] = "x"
        return r, "seq"
    other = rows[rng.choice([j for j in range(len(rows)) if j != i])]
    r["seq"] = other["seq"]
    return (r, other), "seq"


@settings(max_examples=400, deadline=None)
@given(st.randoms(use_true_random=False), st.sampled_from(FAULTS), st.sampled_from(BATCH_SIZES))
def test_streaming_matches_reference_on_single_faults(
    rng: random.Random, fault: str, batch_rows: int
) -> None:
    """One fault of each kind in a valid table: both reject it, naming the same field;
    the streaming ingester names the faulty row's line."""
    h = _history(rng)
    bad, fieldname = _inject(h, fault, rng)
    table, file_row = _table(h, rng)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(canonical.ObjectTable, "CAPACITY", 2)
        mp.setattr(canonical.ObjectTable, "POOL_WORDS", 1)
        ref, new = _both(table, batch_rows)
    assert isinstance(ref, BadInputError), (fault, ref)
    assert isinstance(new, BadInputError), (fault, new)
    assert ref.field == new.field == fieldname, (fault, str(ref), str(new))
    bad_rows = bad if isinstance(bad, tuple) else (bad,)
    index = [next(i for i, r in enumerate(h.rows) if r is b) for b in bad_rows]
    assert new.line == min(file_row[i] for i in index) + 1, (fault, str(new))
    assert new.file == "t.arrow"


def _write(table: pa.Table, path: Path, fmt: str, rows_per_batch: int) -> str:
    """Write ``table`` as ``fmt``; the kind ingest detects for it."""
    if fmt == "parquet":
        pq.write_table(table, path, row_group_size=rows_per_batch)
        return "parquet"
    if fmt == "csv":
        plain = table.set_column(0, "op", table["op"].cast(pa.string()))
        pacsv.write_csv(plain, path)
        return "csv"
    new = ipc.new_file if fmt == "arrow-file" else ipc.new_stream
    with new(path, table.schema) as w:
        for b in table.to_batches(max_chunksize=rows_per_batch):
            w.write_batch(b)
    return "arrow"


def _stream_file(path: Path, kind: str, batch_rows: int) -> tuple[pa.Table, dict[str, int]]:
    """A file through the streaming reader and checker, as one EVENT_SCHEMA table."""
    stream = CanonicalStream(open_file(path, kind), batch_rows=batch_rows)
    part = pa.Table.from_batches(list(stream.batches()), schema=stream.schema)
    cols = [
        part[f.name] if f.name in part.column_names else pa.nulls(part.num_rows, f.type)
        for f in EVENT_SCHEMA
    ]
    return pa.Table.from_arrays(cols, schema=EVENT_SCHEMA), stream.counts


@pytest.mark.parametrize("fmt", ["parquet", "arrow-file", "arrow-stream", "csv"])
@settings(max_examples=30, deadline=None)
@given(st.randoms(use_true_random=False), st.sampled_from(BATCH_SIZES))
def test_streamed_files_match_reference(
    tmp_path_factory: pytest.TempPathFactory, fmt: str, rng: random.Random, batch_rows: int
) -> None:
    """Parquet (row groups), Arrow IPC file and stream (record batches) and CSV (blocks):
    the streaming reader and checker give what the polars reference gives on the file."""
    table, _ = _table(_history(rng), rng)
    path = tmp_path_factory.mktemp("f") / f"t.{fmt}"
    kind = _write(table, path, fmt, rng.choice([1, 3, 1000]))
    ref_table, meta = ref_read_table(path, kind)
    want, want_counts = ref_canonicalise(ref_table, path, kind)
    got, counts = _stream_file(path, kind, batch_rows)
    assert counts == want_counts
    assert got.to_pylist() == want.to_pylist()
    assert open_file(path, kind).meta == meta


def test_bad_row_late_in_a_big_file_rolls_back(tmp_path: Path) -> None:
    """A bad row after several chunks went to DuckDB: the error names it, nothing is kept,
    and DuckDB's thread count is back to what it was."""
    n = 3 * (1 << 18) + 10
    obj = np.arange(n, dtype=np.int64)
    obj[-2] = 5  # object 5 allocated twice, at row n - 1
    p = tmp_path / "big.parquet"
    pq.write_table(pa.table({"op": ["alloc"] * n, "obj": obj, "order": np.zeros(n, np.int8)}), p)
    db = tmp_path / "keep.duckdb"
    with Store(db) as s:
        ingest(s, ERAS / "v6.18.txt", name="first")
        threads = s.one("SELECT current_setting('threads')")
        with pytest.raises(BadInputError, match="object 5 is allocated twice") as ei:
            ingest(s, p)
        assert (ei.value.line, ei.value.field) == (n - 1, "obj")
        assert s.one("SELECT current_setting('threads')") == threads
        assert s.one("SELECT count(*) FROM traces")[0] == 1
        assert s.one("SELECT count(*) FROM events WHERE trace_id <> 1")[0] == 0
        obj[-2] = n + 1
        pq.write_table(pa.table({"op": ["alloc"] * n, "obj": obj, "order": np.zeros(n, np.int8)}),
                       p)  # fmt: skip
        row = ingest(s, p)
    assert row["events"] == row["allocs"] == row["live_at_end"] == n


def test_unsorted_seq_is_replayed_in_seq_order(tmp_path: Path, db: Path) -> None:
    p = tmp_path / "u.csv"
    p.write_text("seq,op,obj,order\n30,free,1,\n10,alloc,1,2\n20,alloc,2,0\n")
    with Store(db) as s:
        row = ingest(s, p)
    assert row["allocs"] == 2 and row["frees"] == 1 and row["live_at_end"] == 1
    with Store(db, read_only=True) as s:
        lines = s.query("SELECT line FROM events ORDER BY seq").column("line").to_pylist()
    assert lines == [3, 4, 2]
    p.write_text("seq,op,obj,order\n30,free,1,\n10,alloc,1,2\n30,alloc,2,0\n")
    with Store(db) as s, pytest.raises(BadInputError, match="seq must be unique") as ei:
        ingest(s, p, name="dup")
    assert (ei.value.line, ei.value.field) == (2, "seq")


def test_csv_lines_across_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CSV read in many small blocks: lines still count from the header."""
    monkeypatch.setattr(canonical, "CSV_BLOCK_BYTES", 256)
    body = "".join(f"alloc,{i},0,\n" for i in range(500)) + "free,7,,\nfree,9,0,1\n"
    p = tmp_path / "blocks.csv"
    p.write_text("op,obj,order,offset\n" + body)
    with pytest.raises(BadInputError, match="not an aligned part of object 9") as ei:
        _stream_file(p, "csv", 7)
    assert (ei.value.line, ei.value.field) == (503, "offset")
    p.write_text("op,obj,order,offset\n" + body.replace("alloc,321,0,", "alloc,321,zero,"))
    with pytest.raises(BadInputError, match="expected an integer, got 'zero'") as ei:
        _stream_file(p, "csv", 1 << 18)
    assert (ei.value.line, ei.value.field) == (323, "order")


@pytest.mark.parametrize("fmt", ["parquet", "arrow-file", "arrow-stream", "csv"])
def test_no_rows(tmp_path: Path, fmt: str) -> None:
    table = pa.table({c: pa.array([], pa.string() if c == "op" else pa.int64())
                      for c in ("op", "obj", "order", "seq")})  # fmt: skip
    p = tmp_path / f"empty.{fmt}"
    kind = _write(table, p, fmt, 10)
    with pytest.raises(BadInputError, match="no events"):
        _stream_file(p, kind, 10)


def _rows_table(rows: list[tuple[str, int, int, int]]) -> pa.Table:
    """(op, obj, order, offset) rows as a table."""
    return pa.table({name: [r[i] for r in rows] for i, name in enumerate(("op", "obj", "order",
                                                                          "offset"))})  # fmt: skip


@pytest.mark.parametrize("tiny", [False, True])
def test_partial_frees_of_many_objects(tiny: bool) -> None:
    """Objects freed in many parts (bitmaps of freed offsets, one to 16 words), the
    bitmap pool and the object table growing in between; then the same part again."""
    rows: list[tuple[str, int, int, int]] = []
    for x in range(300):
        rows.append(("alloc", x, x % 11, 0))
    for x in range(300):
        k = x % 11
        for off in range(0, 1 << k, max(1, (1 << k) // 4))[:3]:  # three parts, not all
            part = max(0, k - 2)
            rows.append(("free", x, part, off))
    good = _rows_table(rows)
    for x, off_index in ((7, 0), (299, 2), (150, 1)):
        k = x % 11
        step = max(1, (1 << k) // 4)
        again = ("free", x, max(0, k - 2), off_index * step)
        bad = _rows_table([*rows, again])
        with pytest.MonkeyPatch.context() as mp:
            if tiny:
                mp.setattr(canonical.ObjectTable, "CAPACITY", 2)
                mp.setattr(canonical.ObjectTable, "POOL_WORDS", 1)
            out, counts = canonicalise(good, Path("p.arrow"), batch_rows=37)
            with pytest.raises(BadInputError, match=f"object {x} is freed twice") as ei:
                canonicalise(bad, Path("p.arrow"), batch_rows=37)
        assert ei.value.line == len(rows) + 1
        with pytest.raises(BadInputError, match=f"object {x} is freed twice"):
            ref_canonicalise(bad, Path("p.arrow"), "arrow")
    want, want_counts = ref_canonicalise(good, Path("p.arrow"), "arrow")
    assert counts == want_counts
    assert out.to_pylist() == want.to_pylist()
