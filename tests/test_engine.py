"""The what-if engine: placements, outcomes, pre-existing objects, --every,
atomic runs, and agreement with a pure-Python replay over the reference model."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest
from conftest import run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

import replay.engine.whatif as engine
from replay.engine.results import steps_batch
from replay.errors import UsageError
from replay.models.config import load_model
from replay.models.plain_buddy import BuddyZone
from replay.store import Store
from replay.trace.ingest import ingest


def _csv(tmp_path: Path, rows: list[str], name: str = "t") -> Path:
    p = tmp_path / f"{name}.csv"
    p.write_text("op,obj,order,offset,pfn\n" + "\n".join(rows) + "\n")
    return p


def _steps(db: Path, run_id: int) -> list[dict]:
    con = duckdb.connect(str(db), read_only=True)
    cur = con.execute("SELECT * FROM steps WHERE run_id = ? ORDER BY seq", [run_id])
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    con.close()
    return rows


def test_hand_worked_run(tmp_path: Path, db: Path) -> None:
    # A 16-page zone at pfn 0: one order-4 block.
    #  seq 0 alloc A order 0 -> 0   (splits: 8 on list 3, 4 on 2, 2 on 1, 1 on 0)
    #  seq 1 alloc B order 1 -> 2   (head of list 1)
    #  seq 2 alloc C order 3 -> 8
    #  seq 3 alloc D order 3 -> fails (only 1 on list 0 and 4 on list 2 are free)
    #  seq 4 free D            -> ignored
    #  seq 5 free B (upper half, offset 1, order 0) -> page 3 freed, buddy 2 busy
    #  seq 6 free A            -> merges with 1 -> order-1 block at 0
    p = _csv(tmp_path, ["alloc,1,0,,", "alloc,2,1,,", "alloc,3,3,,", "alloc,4,3,,",
                        "free,4,3,,", "free,2,0,1,", "free,1,0,0,"])  # fmt: skip
    with Store(db) as s:
        ingest(s, p)
        r = engine.run(s, "t", load_model("buddy"), zone_pages=16)
    assert (r.allocs, r.frees, r.failures, r.ignored_frees) == (4, 3, 1, 1)
    steps = _steps(db, r.run_id)
    assert [x["pfn"] for x in steps] == [0, 2, 8, -1, None, None, None]
    assert [x["outcome"] for x in steps] == ["ok", "ok", "ok", "failed", "ignored", "ok", "ok"]
    # free pages: 15, 13, 5, 5, 5, 6, 7
    assert [x["free_pages"] for x in steps] == [15, 13, 5, 5, 5, 6, 7]
    last = steps[-1]
    # free: order-1 block at 0, page 3 (order 0), order-2 block at 4
    assert [last[f"nr_free_{k}"] for k in range(4)] == [1, 1, 1, 0]
    assert last["largest_free_order"] == 2
    assert [x["failures"] for x in steps] == [0, 0, 0, 1, 1, 1, 1]
    assert r.nr_free[:4] == [1, 1, 1, 0]


def test_preexisting_objects_are_allocated_first(tmp_path: Path, db: Path) -> None:
    # Objects 7 and 8 are freed without an alloc (pages from before the trace, with a pfn).
    p = _csv(tmp_path, ["free,7,1,0,100", "alloc,1,0,,", "free,8,0,0,300", "free,1,0,,"])
    with Store(db) as s:
        ingest(s, p)
        r = engine.run(s, "t", load_model("buddy"), zone_pages=8)
    assert r.preexisting == 2
    # 7 takes pfn 0-1 and 8 takes pfn 2 first, so the first alloc gets pfn 3.
    assert _steps(db, r.run_id)[1]["pfn"] == 3
    assert r.free_pages == 8 and r.nr_free[3] == 1


def test_every_keeps_placements_and_last(tmp_path: Path, db: Path) -> None:
    rows = [f"alloc,{i},0,," for i in range(10)] + [f"free,{i},0,," for i in range(10)]
    p = _csv(tmp_path, rows)
    with Store(db) as s:
        ingest(s, p)
        r = engine.run(s, "t", load_model("buddy"), zone_pages=64, every=4)
    steps = _steps(db, r.run_id)
    assert [x["seq"] for x in steps] == [*range(10), 12, 16, 19]
    assert [x["seq"] for x in steps if x["free_pages"] is not None] == [0, 4, 8, 12, 16, 19]
    assert steps[-1]["free_pages"] == 64


def test_failed_run_leaves_nothing(
    tmp_path: Path, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [f"alloc,{i},0,," for i in range(50)]
    p = _csv(tmp_path, rows)
    with Store(db) as s:
        ingest(s, p)
        engine.run(s, "t", load_model("buddy"), zone_pages=64)
    monkeypatch.setattr(engine, "CHUNK_EVENTS", 10)
    real = steps_batch
    calls = {"n": 0}

    def failing(*a: object, **kw: bool) -> object:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk full")
        return real(*a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "steps_batch", failing)
    with Store(db) as s, pytest.raises(Exception, match="disk full"):
        engine.run(s, "t", load_model("buddy"), zone_pages=64)
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM runs").fetchall() == [(1,)]
    assert con.execute("SELECT count(*) FROM steps").fetchall() == [(50,)]
    con.close()


def test_zone_required_and_models(tmp_path: Path, db: Path) -> None:
    p = _csv(tmp_path, ["alloc,1,0,,"])
    with Store(db) as s:
        ingest(s, p)
        with pytest.raises(UsageError, match="--zone-pages"):
            engine.run(s, "t", load_model("buddy"))
    with pytest.raises(UsageError, match="unknown model"):
        load_model("slab")
    toml = tmp_path / "m.toml"
    toml.write_text('model = "buddy"\n')
    assert load_model(str(toml)).model == "buddy"
    toml.write_text('model = "buddy"\nbatch = 3\n')
    res = run_cli("run", "t", "--model", toml, "--zone-pages", "8", "--db", db)
    assert res.code == 65 and "batch" in res.err


def test_cli_run_json_and_runs(tmp_path: Path, db: Path) -> None:
    p = _csv(tmp_path, ["alloc,1,2,,", "free,1,2,,"])
    assert run_cli("ingest", p, "--db", db, "-q").code == 0
    res = run_cli("run", "t", "--zone-pages", "1024", "--db", db, "-q", "--format", "json")
    assert res.code == 0, res.err
    out = res.json()
    assert {"run_id", "events", "events_per_s", "failures"} <= set(out)
    assert out["events"] == 2 and out["failures"] == 0 and out["events_per_s"] > 0
    listing = run_cli("runs", "--db", db, "-f", "json").json()
    assert listing[0]["run_id"] == out["run_id"] and listing[0]["trace"] == "t"


def test_capture_run(capture_db: Path, tmp_path: Path) -> None:
    db = tmp_path / "cap.duckdb"
    db.write_bytes(capture_db.read_bytes())
    res = run_cli("run", "compact", "--db", db, "-q", "-f", "json", "--every", "1000")
    assert res.code == 0, res.err
    out = res.json()
    assert out["preexisting"] == 119106 and out["events"] == 160577 and out["failures"] == 0
    # Conservation: pages in use at the end = allocated - freed + the pre-existing
    # objects' pages (the trace frees them but never allocates them).
    con = duckdb.connect(str(db), read_only=True)
    net = con.execute(
        """SELECT sum(CASE WHEN op = 'alloc' THEN 1::BIGINT << "order"
                      ELSE -(1::BIGINT << "order") END) FROM events"""
    ).fetchall()[0][0]
    con.close()
    assert out["zone_pages"] - out["free_pages"] == net + _pre_pages(db) == 103181


def _pre_pages(db: Path) -> int:
    con = duckdb.connect(str(db), read_only=True)
    n = con.execute(
        """SELECT coalesce(sum(1::BIGINT << "order"), 0) FROM events
           WHERE op = 'free' AND obj NOT IN (SELECT obj FROM events WHERE op = 'alloc')"""
    ).fetchall()[0][0]
    con.close()
    return int(n)


@settings(max_examples=60, deadline=None)
@given(
    zone=st.integers(1, 300),
    ops=st.lists(st.tuples(st.booleans(), st.integers(0, 5), st.integers(0, 1000)), max_size=80),
)
def test_engine_matches_a_plain_python_replay(
    tmp_path_factory: pytest.TempPathFactory, zone: int, ops: list[tuple[bool, int, int]]
) -> None:
    """The engine's placements equal replaying the same events one by one on BuddyZone."""
    rows: list[str] = []
    live: list[tuple[int, int]] = []
    nxt = 0
    for is_alloc, order, pick in ops:
        if is_alloc or not live:
            rows.append(f"alloc,{nxt},{order},,")
            live.append((nxt, order))
            nxt += 1
        else:
            obj, o = live.pop(pick % len(live))
            rows.append(f"free,{obj},{o},0,")
    if not rows:
        return
    d = tmp_path_factory.mktemp("e")
    p = _csv(d, rows)
    db = d / "e.duckdb"
    with Store(db) as s:
        ingest(s, p)
        r = engine.run(s, "t", load_model("buddy"), zone_pages=zone)
    z = BuddyZone(0, zone)
    placed: dict[int, int] = {}
    want = []
    for line in rows:
        op, obj_s, order_s, _, _ = line.split(",")
        obj, order = int(obj_s), int(order_s)
        if op == "alloc":
            placed[obj] = z.alloc(order)
            want.append(placed[obj])
        else:
            if placed[obj] >= 0:
                z.free(placed[obj], order)
            want.append(None)
    got = [x["pfn"] for x in _steps(db, r.run_id)]
    assert got == want
    assert r.nr_free == [int(v) for v in z.nr_free]


@given(st.lists(st.integers(-1, 5), max_size=64), st.booleans())
def test_type_flags_follow_the_migratetype(mts: list[int], kswapd_movable: bool) -> None:
    """The flags of an object known by its type only, by the rule: movable when MOVABLE,
    reclaimable when RECLAIMABLE (and MOVABLE, when kswapd evicts movable pages); no
    type (-1) and the other types: none."""
    from replay.models.internal import (
        F_MOVABLE,
        F_RECLAIM,
        MIGRATE_MOVABLE,
        MIGRATE_RECLAIMABLE,
    )

    want = [
        (F_MOVABLE if m == MIGRATE_MOVABLE else 0)
        | (F_RECLAIM if m == MIGRATE_RECLAIMABLE or (kswapd_movable and m == MIGRATE_MOVABLE)
           else 0)
        for m in mts
    ]  # fmt: skip
    got = engine.type_flags(np.array(mts, np.int8), kswapd_movable)
    assert got.dtype == np.int8 and got.tolist() == want
