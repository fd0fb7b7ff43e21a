"""What-if runs under the ``buddy``/``mobility``/``pcp`` models, end to end.

The engine (replay/engine.py: CLI ``replay run``, DuckDB tables runs, steps,
extfrag, pageblocks) against the pure-Python references tests/ref_mobility.py
and tests/ref_buddy.py on random canonical CSV streams; per-step page
accounting; pageblock snapshots; TOML model files; watermarks, CPUs and pcp
sizes taken from the real capture; ``--fill-from-snapshot``; atomic runs;
and the run queries (run_extfrag, compare_runs, pageblock_mix).
"""

from __future__ import annotations

import json
import math
import random
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pytest
from conftest import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ref_buddy import RefBuddy
from ref_mobility import RefMobility, request_type

import replay.engine.whatif as engine
from replay.models.config import load_model
from replay.models.internal import C_EF, EF_MAX_PER_ALLOC
from replay.models.watermarks import (
    calculate_min_free_kbytes,
    setup_per_zone_wmarks,
    zone_batchsize,
    zone_highsize,
)
from replay.store import Store

PB = 512  # pages per pageblock
ORDERS = [0] * 12 + [1] * 3 + [2] * 2 + [3] * 2 + [4, 5, 6, 9, 9, 10]
CSV_HEADER = "op,obj,order,offset,pfn,migratetype,cpu"

# -- random canonical streams -------------------------------------------------------------

Row = tuple[str, int, int, int, int | None, int | None, int]  # op obj order offset pfn mt cpu
Op = tuple[int, int, int, int, int, int]  # kind, order, mt, cpu, pick, split


@dataclass
class Trace:
    """A canonical event stream: rows in seq order (seq = row index)."""

    rows: list[Row] = field(default_factory=list)

    def write(self, path: Path) -> Path:
        def cell(v: int | None) -> str:
            return "" if v is None else str(v)

        lines = [CSV_HEADER]
        for op, obj, order, off, pfn, mt, cpu in self.rows:
            lines.append(f"{op},{obj},{order},{off},{cell(pfn)},{cell(mt)},{cpu}")
        path.write_text("\n".join(lines) + "\n")
        return path

    @property
    def allocated(self) -> set[int]:
        return {r[1] for r in self.rows if r[0] == "alloc"}


def build_trace(ops: list[Op], pre_orders: list[int], base: int = 0) -> Trace:
    """Allocs (random order, type 0-2, cpu 0-2) and frees of live objects.

    Some frees are partial: one aligned piece of a (non-compound) block, the
    other pieces staying allocated and freed later. ``pre_orders`` are objects
    allocated before the trace began: they are only freed (with a pfn), whole.
    """
    t = Trace()
    live: list[tuple[int, int, int, bool]] = [  # obj, offset, order, pre-existing
        (base + 1_000_000 + i, 0, k, True) for i, k in enumerate(pre_orders)
    ]
    nxt = 0
    for kind, order, mt, cpu, pick, split in ops:
        if kind < 55 or not live:
            obj = base + nxt
            nxt += 1
            t.rows.append(("alloc", obj, order, 0, None, mt, cpu))
            live.append((obj, 0, order, False))
            continue
        obj, off, k, pre = live.pop(pick % len(live))
        if pre:
            t.rows.append(("free", obj, k, 0, 4096 + 8 * (obj % 1000), None, cpu))
        elif k > 0 and split < 3:
            j = k - 1 - (pick >> 8) % min(k, 3)
            pieces = [off + (m << j) for m in range(1 << (k - j))]
            chosen = pieces[(pick >> 4) % len(pieces)]
            live += [(obj, p, j, False) for p in pieces if p != chosen]
            t.rows.append(("free", obj, j, chosen, None, None, cpu))
        else:
            t.rows.append(("free", obj, k, off, None, None, cpu))
    return t


def random_ops(rng: random.Random, n: int) -> list[Op]:
    return [
        (
            rng.randrange(100),
            rng.choice(ORDERS),
            rng.randrange(3),
            rng.randrange(3),
            rng.randrange(1 << 16),
            rng.randrange(10),
        )
        for _ in range(n)
    ]


OPS = st.lists(
    st.tuples(
        st.integers(0, 99),
        st.sampled_from(ORDERS),
        st.sampled_from([0, 1, 2]),
        st.integers(0, 2),
        st.integers(0, 1 << 16),
        st.integers(0, 9),
    ),
    min_size=1,
    max_size=220,
)
PRE = st.lists(st.sampled_from([0, 0, 1, 2, 3]), max_size=3)


# -- the same stream through a reference, as the engine replays it ------------------------


class BuddyAdapter:
    """RefBuddy with the mobility API (grouping off: types only accounted by the caller)."""

    def __init__(self, start_pfn: int, pages: int) -> None:
        self.z = RefBuddy(start_pfn, pages)
        self.start_pfn, self.pages = start_pfn, pages
        self.extfrag: list[tuple] = []
        self.drains = 0

    def alloc(self, order: int, mt: int, cpu: int = 0) -> int:
        return self.z.alloc(order)

    def free(self, pfn: int, order: int, mt: int, cpu: int = 0) -> None:
        self.z.free(pfn, order)

    @property
    def nr_free(self) -> list[int]:
        return [int(v) for v in self.z.nr_free]

    def free_pages(self) -> int:
        return self.z.free_pages()

    def pcp_pages(self) -> int:
        return 0


@dataclass
class RefRun:
    steps: list[tuple[int, int | None, str]]  # seq, pfn (None for frees), outcome
    counters: list[tuple[int, ...]]  # per seq: as STEP_COUNTERS
    extfrag: list[tuple]  # (seq, pfn, alloc_order, fallback_order, alloc_mt, fallback_mt, ...)
    owner: list[int]  # per page: request type (0..2) of the live allocation, or -1
    snaps: dict[int, list[tuple[int, ...]]]  # seq -> [(pageblock, type, free, u, m, r, pcp)]
    failures: int
    zone: Any


def ref_snapshot(z: RefMobility) -> list[tuple[int, ...]]:
    pb0 = z.start_pfn >> 9
    return [
        (pb0 + i, t, *c)
        for i, (t, c) in enumerate(zip(z.pageblock_types(), z.pageblock_counts(), strict=True))
    ]


def replay_ref(trace: Trace, zone: Any, ncpus: int, snap_at: set[int] | None = None) -> RefRun:
    """Replay ``trace`` one event at a time as docs/engine.py describe: pre-existing objects
    first (order of appearance, type unknown, cpu 0), then every event; a free of an object
    whose allocation failed is ignored."""
    owner = [-1] * zone.pages
    placed: dict[int, int] = {}
    obj_mt: dict[int, int] = {}
    ef: list[tuple] = []
    steps: list[tuple[int, int | None, str]] = []
    counters: list[tuple[int, ...]] = []
    snaps: dict[int, list[tuple[int, ...]]] = {}
    failures = 0

    def alloc(seq: int, obj: int, order: int, mt: int, cpu: int) -> int:
        n0 = len(zone.extfrag)
        pfn = zone.alloc(order, mt, cpu)
        ef.extend((seq, *e) for e in zone.extfrag[n0:])
        placed[obj], obj_mt[obj] = pfn, mt
        if pfn >= 0:
            o = pfn - zone.start_pfn
            owner[o : o + (1 << order)] = [request_type(mt)] * (1 << order)
        return pfn

    allocated = trace.allocated
    for op, obj, order, _, _, _, _ in trace.rows:
        if op == "free" and obj not in allocated and obj not in placed:
            failures += alloc(-1, obj, order, -1, 0) < 0
    # the run's counters are of the trace's events: a drain retry while placing the
    # pre-existing objects is not one (whatif resets its counters there too)
    zone.drains = 0
    if snap_at is not None:
        snaps[-1] = ref_snapshot(zone)
    for seq, (op, obj, order, off, _, mt, cpu) in enumerate(trace.rows):
        if op == "alloc":
            assert mt is not None
            pfn = alloc(seq, obj, order, mt, cpu % ncpus)
            failures += pfn < 0
            steps.append((seq, pfn, "ok" if pfn >= 0 else "failed"))
        elif placed[obj] < 0:
            steps.append((seq, None, "ignored"))
        else:
            pfn = placed[obj] + off
            zone.free(pfn, order, obj_mt[obj], cpu % ncpus)
            o = pfn - zone.start_pfn
            owner[o : o + (1 << order)] = [-1] * (1 << order)
            steps.append((seq, None, "ok"))
        nr = [int(v) for v in zone.nr_free]
        largest = max((k for k, v in enumerate(nr) if v), default=-1)
        counters.append((seq, failures, len(ef), zone.free_pages(), zone.pcp_pages(), largest, *nr))
        if snap_at is not None and seq in snap_at:
            snaps[seq] = ref_snapshot(zone)
    return RefRun(steps, counters, ef, owner, snaps, failures, zone)


def owner_counts(owner: list[int], npb: int) -> list[list[int]]:
    """Allocated pages per pageblock and request type, from a per-page owner list."""
    out = [[0, 0, 0] for _ in range(npb)]
    for i, t in enumerate(owner):
        if t >= 0:
            out[i // PB][t] += 1
    return out


# -- store and CLI helpers ------------------------------------------------------------------


def q(db: Path, sql: str, params: list[Any] | None = None) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def run_row(db: Path, run_id: int) -> dict[str, Any]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        cur = con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id])
        names = [d[0] for d in cur.description]
        rows = cur.fetchall()
    finally:
        con.close()
    assert len(rows) == 1
    return dict(zip(names, rows[0], strict=True))


def cli_run(db: Path, trace: str, *args: str | Path) -> dict[str, Any]:
    res = run_cli("run", trace, "--db", db, "-q", "-f", "json", *args)
    assert res.code == 0, res.err
    return res.json()


def toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def ingest(db: Path, trace: Trace, name: str = "t") -> None:
    p = trace.write(db.parent / f"{name}.csv")
    res = run_cli("ingest", p, "--name", name, "--db", db, "-q")
    assert res.code == 0, res.err


def steps_of(db: Path, run_id: int) -> list[tuple[int, int | None, str]]:
    return q(db, "SELECT seq, pfn, outcome FROM steps WHERE run_id = ? ORDER BY seq", [run_id])


STEP_COUNTERS = "seq, failures, fallbacks, free_pages, pcp_pages, largest_free_order, " + ", ".join(
    f"nr_free_{k}" for k in range(11)
)


def counters_of(db: Path, run_id: int) -> list[tuple[int, ...]]:
    return q(db, f"SELECT {STEP_COUNTERS} FROM steps WHERE run_id = ? ORDER BY seq", [run_id])


def extfrag_of(db: Path, run_id: int) -> list[tuple]:
    return q(
        db,
        """SELECT seq, pfn, alloc_order, fallback_order, alloc_migratetype,
                  fallback_migratetype, fragmenting, change_ownership
           FROM extfrag WHERE run_id = ? ORDER BY rowid""",
        [run_id],
    )


def pageblocks_at(db: Path, run_id: int, seq: int) -> list[tuple]:
    return q(
        db,
        """SELECT pageblock, migratetype, free_pages, unmovable, movable, reclaimable, pcp_pages
           FROM pageblocks WHERE run_id = ? AND seq = ? ORDER BY pageblock""",
        [run_id, seq],
    )


# -- 1. mobility / pcp engine runs equal the reference ----------------------------------


def check_against_ref(db: Path, run: dict[str, Any], ref: RefRun) -> None:
    rid = run["run_id"]
    assert steps_of(db, rid) == ref.steps
    assert counters_of(db, rid) == ref.counters
    assert extfrag_of(db, rid) == ref.extfrag
    final = pageblocks_at(db, rid, len(ref.steps) - 1)
    assert final == ref_snapshot(ref.zone)
    r = run_row(db, rid)
    assert r["fallbacks"] == r["claims"] + r["steals"] == len(ref.extfrag)
    assert r["failures"] == ref.failures
    assert r["free_pages"] == ref.zone.free_pages()
    assert r["pcp_pages"] == ref.zone.pcp_pages()
    assert r["nr_free"] == list(ref.zone.nr_free)
    assert r["drain_retries"] == ref.zone.drains


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=OPS,
    pre=PRE,
    base=st.sampled_from([0, 1 << 40, -(1 << 40)]),
    zone=st.sampled_from([2048, 1800, 3000, 40]),
    batch=st.sampled_from([1, 3, 7, 63]),
    high=st.sampled_from([4, 12, 40, 252]),
    nofragment=st.booleans(),
    ncpus=st.sampled_from([3, 3, 2, 1]),
)
def test_mobility_runs_equal_the_reference(
    tmp_path_factory: pytest.TempPathFactory,
    ops: list[Op],
    pre: list[int],
    base: int,
    zone: int,
    batch: int,
    high: int,
    nofragment: bool,
    ncpus: int,
) -> None:
    """Per allocation seq the same pfn (and per step the same counters), the same extfrag
    events, each with its allocation's seq, and the same final pageblocks, for ``--model
    mobility`` and for a TOML model with pcp (on 3 CPUs, or fewer: the trace's cpus fold
    onto them). Pre-existing objects (allocated first) and 64-bit object ids included."""
    trace = build_trace(ops, pre, base)
    d = tmp_path_factory.mktemp("mob")
    db = d / "t.duckdb"
    ingest(db, trace)

    run = cli_run(db, "t", "--model", "mobility", "--zone-pages", str(zone))
    check_against_ref(db, run, replay_ref(trace, RefMobility(0, zone, ncpus=3), 3))

    spec = toml(
        d / "pcp.toml",
        f'model = "mobility"\npcp = true\npcp_batch = {batch}\npcp_high = {high}\n'
        f"ncpus = {ncpus}\nnofragment = {str(nofragment).lower()}\n",
    )
    run = cli_run(db, "t", "--model", spec, "--zone-pages", str(zone))
    kw = {"pcp": True, "ncpus": ncpus, "batch": batch, "high": high, "nofragment": nofragment}
    check_against_ref(db, run, replay_ref(trace, RefMobility(0, zone, **kw), ncpus))
    r = run_row(db, run["run_id"])
    assert (r["ncpus"], r["pcp_batch"], r["pcp_high"]) == (ncpus, batch, high)


def test_short_streams_reach_fallbacks_and_failures() -> None:
    """Streams like the hypothesis ones reach the interesting paths (else the test above
    proves little): the reference claims pageblocks, fragments, fails and ignores frees."""
    seen: Counter[str] = Counter()
    for seed in range(6):
        trace = build_trace(random_ops(random.Random(seed), 220), [1, 0])
        seen["partial"] += any(r[0] == "free" and r[3] > 0 for r in trace.rows)
        for z in (
            RefMobility(0, 2048, ncpus=3),
            RefMobility(0, 2048, pcp=True, ncpus=3, batch=7, high=40, nofragment=False),
        ):
            ref = replay_ref(trace, z, 3)
            seen["fragmenting"] += any(e[6] for e in ref.extfrag)
            seen["claim"] += any(e[7] for e in ref.extfrag)
            seen["failed"] += ref.failures > 0
            seen["ignored"] += any(s[2] == "ignored" for s in ref.steps)
    assert all(seen[k] > 0 for k in ("fragmenting", "claim", "failed", "ignored", "partial"))


@pytest.mark.parametrize("seed", [0, 1])
def test_long_streams_equal_the_reference(tmp_path: Path, seed: int) -> None:
    """1500-event streams, which also steal (change_ownership false) and drain pcp lists."""
    trace = build_trace(random_ops(random.Random(seed), 1500), [1, 0])
    db = tmp_path / "t.duckdb"
    ingest(db, trace)
    run = cli_run(db, "t", "--model", "mobility", "--zone-pages", "2048")
    plain = replay_ref(trace, RefMobility(0, 2048, ncpus=3), 3)
    check_against_ref(db, run, plain)
    spec = toml(
        tmp_path / "m.toml",
        'model = "mobility"\npcp = true\npcp_batch = 7\npcp_high = 40\nncpus = 3\n'
        "nofragment = false\n",
    )
    run = cli_run(db, "t", "--model", spec, "--zone-pages", "2048")
    kw = {"pcp": True, "ncpus": 3, "batch": 7, "high": 40, "nofragment": False}
    pcp = replay_ref(trace, RefMobility(0, 2048, **kw), 3)
    check_against_ref(db, run, pcp)
    for ref in (plain, pcp):
        assert any(not e[7] for e in ref.extfrag) and any(e[7] for e in ref.extfrag)
        assert any(e[6] for e in ref.extfrag) and ref.failures > 0
    assert pcp.zone.drains > 0  # (runs.drain_retries equals it: check_against_ref)


def test_trace_zone_away_from_pfn_0(tmp_path: Path) -> None:
    """Without --zone-pages the zone comes from the trace's pfns (here [3072, 6144)): the
    mobility+pcp preset with its derived batch/high equals the reference on that zone, and
    pageblocks are numbered pfn >> 9 (6..11)."""
    trace = build_trace(random_ops(random.Random(21), 900), [0, 2])
    # only the pre-existing objects' frees carry pfns: they span the zone
    pre_rows = [i for i, r in enumerate(trace.rows) if r[4] is not None]
    for i, pfn in zip(pre_rows, (3100, 6000), strict=True):
        trace.rows[i] = (*trace.rows[i][:4], pfn, *trace.rows[i][5:])
    db = tmp_path / "t.duckdb"
    ingest(db, trace)
    assert q(db, "SELECT zone_start_pfn, zone_pages FROM traces") == [(3072, 3072)]
    run = cli_run(db, "t", "--model", "mobility+pcp", "--pageblock-every", "100")
    r = run_row(db, run["run_id"])
    w = setup_per_zone_wmarks([3072], calculate_min_free_kbytes(3072), 10)[0]
    assert (r["wmark_min"], r["wmark_low"], r["wmark_high"]) == (w.min, w.low, w.high)
    batch = max(1, zone_batchsize(3072))
    high = zone_highsize(w.low, batch, 3)
    assert (r["ncpus"], r["pcp_batch"], r["pcp_high"]) == (3, batch, high)
    ref = RefMobility(3072, 3072, pcp=True, ncpus=3, batch=batch, high=high)
    rr = replay_ref(trace, ref, 3, snap_at=set(range(0, len(trace.rows), 100)))
    check_against_ref(db, run, rr)
    assert rr.snaps[-1][0][0] == 6 and len(rr.snaps[-1]) == 6
    for s_, want in rr.snaps.items():
        assert pageblocks_at(db, run["run_id"], s_) == want, s_


def test_preexisting_objects_that_do_not_fit(tmp_path: Path) -> None:
    """In an 8-page zone only the first pre-existing object fits: the others are failures
    (in runs and in every step's cumulative count) and their frees are ignored."""
    trace = build_trace(random_ops(random.Random(4), 120), [3, 3, 2])
    db = tmp_path / "t.duckdb"
    ingest(db, trace)
    run = cli_run(db, "t", "--model", "mobility+pcp", "--zone-pages", "8")
    r = run_row(db, run["run_id"])
    ref = replay_ref(
        trace, RefMobility(0, 8, pcp=True, ncpus=3, batch=r["pcp_batch"], high=r["pcp_high"]), 3
    )
    check_against_ref(db, run, ref)
    pre_ignored = sum(
        1
        for (seq, _, out) in ref.steps
        if out == "ignored" and trace.rows[seq][1] not in trace.allocated
    )
    assert run["preexisting"] == 3 and pre_ignored == 2
    assert counters_of(db, run["run_id"])[0][1] >= 2  # failures before the first event


def table_rows(db: Path, run_id: int) -> dict[str, list[tuple]]:
    """Everything a run wrote, without its id and timings."""
    skip = {"run_id", "started", "wall_s", "replay_s", "events_per_s"}
    r = {k: v for k, v in run_row(db, run_id).items() if k not in skip}
    return {
        "runs": [tuple(sorted(r.items()))],
        "steps": q(
            db, "SELECT * EXCLUDE (run_id) FROM steps WHERE run_id = ? ORDER BY seq", [run_id]
        ),
        "extfrag": q(
            db, "SELECT * EXCLUDE (run_id) FROM extfrag WHERE run_id = ? ORDER BY rowid", [run_id]
        ),
        "pageblocks": q(
            db,
            "SELECT * EXCLUDE (run_id) FROM pageblocks WHERE run_id = ? ORDER BY seq, pageblock",
            [run_id],
        ),
    }


def test_chunks_and_extfrag_flushes_do_not_change_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tiny event chunks and an extfrag buffer that fills every couple of allocations
    (the kernel stops early, the engine flushes and resumes) give the same tables."""
    trace = build_trace(random_ops(random.Random(8), 1500), [1, 3])
    db = tmp_path / "t.duckdb"
    ingest(db, trace)
    spec = toml(
        tmp_path / "m.toml",
        'model = "mobility"\npcp = true\npcp_batch = 7\n'
        "pcp_high = 24\nncpus = 3\nnofragment = false\n",
    )
    args = ("--model", spec, "--zone-pages", "2048", "--every", "5", "--pageblock-every", "11")
    whole = cli_run(db, "t", *args)
    assert whole["fallbacks"] > 20

    monkeypatch.setattr(engine, "CHUNK_EVENTS", 37)
    real_init = engine._Replay.__init__
    flushes: Counter[str] = Counter()

    def small_ef(self: Any, *a: Any, **kw: Any) -> None:
        real_init(self, *a, **kw)
        self.ef = self.ef[: EF_MAX_PER_ALLOC + 1]

    real_flush = engine._Replay.flush_extfrag

    def count_flush(self: Any) -> None:
        flushes["rows"] += int(self.zone.counters[C_EF] > 0)
        real_flush(self)

    monkeypatch.setattr(engine._Replay, "__init__", small_ef)
    monkeypatch.setattr(engine._Replay, "flush_extfrag", count_flush)
    chunked = cli_run(db, "t", *args)
    assert flushes["rows"] > 10
    assert table_rows(db, chunked["run_id"]) == table_rows(db, whole["run_id"])


# -- 2. the buddy preset is RefBuddy, types only accounted ----------------------------------


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, pre=PRE, zone=st.sampled_from([2048, 1800, 3000, 40]))
def test_buddy_run_equals_ref_buddy(
    tmp_path_factory: pytest.TempPathFactory, ops: list[Op], pre: list[int], zone: int
) -> None:
    trace = build_trace(ops, pre)
    d = tmp_path_factory.mktemp("buddy")
    db = d / "t.duckdb"
    ingest(db, trace)
    run = cli_run(db, "t", "--model", "buddy", "--zone-pages", str(zone))
    ref = replay_ref(trace, BuddyAdapter(0, zone), 3)
    rid = run["run_id"]
    assert steps_of(db, rid) == ref.steps
    assert counters_of(db, rid) == ref.counters
    assert extfrag_of(db, rid) == []
    r = run_row(db, rid)
    assert (r["fallbacks"], r["failures"]) == (0, ref.failures)
    assert r["nr_free"] == [int(v) for v in ref.zone.z.nr_free]
    # grouping off: every pageblock stays MOVABLE in every snapshot ...
    assert q(db, "SELECT DISTINCT migratetype FROM pageblocks WHERE run_id = ?", [rid]) == [(1,)]
    # ... while allocated pages are counted by the type of the request that made them
    npb = (zone + PB - 1) // PB
    free = [0] * npb
    for k, lst in enumerate(ref.zone.z.free_lists()):
        for p in lst:
            for q_ in range(p, p + (1 << k)):
                free[q_ // PB] += 1
    want = [(b, 1, free[b], *c, 0) for b, c in enumerate(owner_counts(ref.owner, npb))]
    assert pageblocks_at(db, rid, len(trace.rows) - 1) == want


# -- 3. per-step page accounting ------------------------------------------------------------

LIVE_SQL = """
WITH a AS (
    SELECT e.obj, s.outcome FROM events e JOIN steps s ON s.run_id = $r AND s.seq = e.seq
    WHERE e.trace_id = $t AND e.op = 'alloc'),
d AS (
    SELECT e.seq,
           CASE WHEN e.op = 'alloc' THEN CASE WHEN a.outcome = 'ok' THEN 1 ELSE 0 END
                ELSE CASE WHEN coalesce(a.outcome, 'ok') = 'ok' THEN -1 ELSE 0 END
           END * (1::BIGINT << e."order") AS delta
    FROM events e LEFT JOIN a USING (obj) WHERE e.trace_id = $t),
live AS (SELECT seq, sum(delta) OVER (ORDER BY seq ROWS UNBOUNDED PRECEDING) AS live FROM d),
pre AS (
    SELECT coalesce(sum(1::BIGINT << "order"), 0) AS pages FROM events
    WHERE trace_id = $t AND op = 'free'
      AND obj NOT IN (SELECT obj FROM events WHERE trace_id = $t AND op = 'alloc'))
SELECT s.seq, s.free_pages, s.pcp_pages, live.live + pre.pages AS held
FROM steps s JOIN live USING (seq), pre
WHERE s.run_id = $r AND s.free_pages IS NOT NULL
ORDER BY s.seq
"""


def check_accounting(db: Path, run_id: int, every: int) -> list[tuple]:
    r = run_row(db, run_id)
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(LIVE_SQL, {"r": run_id, "t": r["trace_id"]}).fetchall()
        failed = con.execute(
            "SELECT count(*) FROM steps WHERE run_id = ? AND outcome = 'failed'", [run_id]
        ).fetchall()[0][0]
    finally:
        con.close()
    assert failed == r["failures"]  # no pre-existing object failed: they all hold pages
    n = r["events"]
    assert [x[0] for x in rows] == sorted({*range(0, n, every), n - 1})
    bad = [x for x in rows if x[1] + x[2] + x[3] != r["zone_pages"]]
    assert not bad, bad[:5]
    return rows


def test_pcp_step_accounting(tmp_path: Path) -> None:
    """free_pages + pcp_pages + pages held by live objects == zone pages at every kept step."""
    trace = build_trace(random_ops(random.Random(3), 2500), [2, 0, 1])
    db = tmp_path / "t.duckdb"
    ingest(db, trace)
    spec = toml(
        tmp_path / "m.toml",
        'model = "mobility"\npcp = true\npcp_batch = 7\npcp_high = 40\nncpus = 3\n',
    )
    run = cli_run(db, "t", "--model", spec, "--zone-pages", "2048", "--every", "3")
    rows = check_accounting(db, run["run_id"], 3)
    assert run["failures"] > 0 and run["ignored_frees"] > 0  # frees of failed allocs matter
    assert sum(1 for x in rows if x[2] > 0) > len(rows) // 2  # pcp lists do hold pages


def test_pcp_step_accounting_on_the_capture(cap: Path) -> None:
    run = cli_run(
        cap, "compact", "--model", "mobility+pcp", "--every", "997", "--pageblock-every", "0"
    )
    rows = check_accounting(cap, run["run_id"], 997)
    assert run["preexisting"] > 0 and sum(x[2] > 0 for x in rows) > len(rows) // 2


# -- 4. --pageblock-every ---------------------------------------------------------------


def snapshot_seqs(db: Path, run_id: int) -> list[int]:
    return [
        r[0]
        for r in q(
            db, "SELECT DISTINCT seq FROM pageblocks WHERE run_id = ? ORDER BY seq", [run_id]
        )
    ]


def test_pageblock_every(tmp_path: Path) -> None:
    trace = build_trace(random_ops(random.Random(11), 1037), [3])
    n = len(trace.rows)
    assert n == 1037
    db = tmp_path / "t.duckdb"
    ingest(db, trace)
    zone = 2000  # 4 pageblocks, the last one partial (464 pages)
    npb = 4
    spec = toml(
        tmp_path / "m.toml",
        'model = "mobility"\npcp = true\npcp_batch = 7\npcp_high = 40\nncpus = 3\n',
    )
    runs = {}
    for pbe in (None, 0, 7, 1000, 5000):
        args = [] if pbe is None else ["--pageblock-every", str(pbe)]
        runs[pbe] = cli_run(db, "t", "--model", spec, "--zone-pages", str(zone), *args)["run_id"]
    default = math.ceil(n / 100)
    want = {
        None: sorted({-1, *range(0, n, default), n - 1}),
        0: [-1, n - 1],
        7: sorted({-1, *range(0, n, 7), n - 1}),
        1000: [-1, 0, 1000, n - 1],
        5000: [-1, 0, n - 1],
    }
    for pbe, rid in runs.items():
        assert snapshot_seqs(db, rid) == want[pbe], pbe
        assert run_row(db, rid)["pageblock_every"] == (default if pbe is None else pbe)
    assert 95 <= len(want[None]) - 1 <= 102  # "about 100" after the initial one
    # every snapshot: one row per pageblock of the zone, all of its pages accounted for
    per = q(
        db,
        """SELECT run_id, seq, count(*), list(pageblock ORDER BY pageblock),
                  list(free_pages + unmovable + movable + reclaimable + pcp_pages
                       ORDER BY pageblock)
           FROM pageblocks GROUP BY ALL""",
    )
    assert len(per) == sum(len(w) for w in want.values())
    for _, _, cnt, blocks, pages in per:
        assert (cnt, blocks, pages) == (npb, [0, 1, 2, 3], [512, 512, 512, 464])
    # the snapshot at seq s is the state after step s (-1: after the pre-existing pass)
    ref = RefMobility(0, zone, pcp=True, ncpus=3, batch=7, high=40)
    rr = replay_ref(trace, ref, 3, snap_at=set(want[7]))
    for s in want[7]:
        assert pageblocks_at(db, runs[7], s) == rr.snaps[s], s
    assert rr.snaps[-1] != ref_snapshot(RefMobility(0, zone))  # the pre-existing pages
    res = run_cli("run", "t", "--db", db, "--zone-pages", "64", "--pageblock-every", "-1")
    assert res.code == 2 and "--pageblock-every" in res.err


# -- 5. TOML model files --------------------------------------------------------------------


@pytest.fixture
def tiny_db(tmp_path: Path) -> Path:
    db = tmp_path / "t.duckdb"
    ingest(db, build_trace(random_ops(random.Random(1), 40), []))
    return db


@pytest.fixture(scope="module")
def bad_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store that the bad-model tests share: none of them may add a run to it."""
    db = tmp_path_factory.mktemp("bad") / "t.duckdb"
    ingest(db, build_trace(random_ops(random.Random(1), 40), []))
    return db


@pytest.mark.parametrize(
    ("text", "fieldname"),
    [
        ('model = "mobility"\nbatch = 3\n', "batch"),
        ('model = "mobility"\npcp = 1\n', "pcp"),
        ('model = "mobility"\npcp = "yes"\n', "pcp"),
        ('model = "mobility"\npcp_batch = "x"\n', "pcp_batch"),
        ('model = "mobility"\npcp_batch = true\n', "pcp_batch"),
        ('model = "mobility"\npcp_high = 1.5\n', "pcp_high"),
        ('model = "mobility"\nncpus = [2]\n', "ncpus"),
        ('model = "mobility"\npcp_batch = 0\n', "pcp_batch"),
        ('model = "mobility"\npcp_high = -4\n', "pcp_high"),
        ('model = "mobility"\nncpus = 0\n', "ncpus"),
        ('model = "mobility"\nmin_free_kbytes = -1\n', "min_free_kbytes"),
        ('model = "mobility"\nwatermark_scale_factor = 0\n', "watermark_scale_factor"),
        ('model = "slab"\n', "model"),
        ("model = 3\n", "model"),
        ("pcp = true\n", "model"),
    ],
)
def test_bad_toml_fields(tmp_path: Path, bad_db: Path, text: str, fieldname: str) -> None:
    spec = toml(tmp_path / "bad.toml", text)
    res = run_cli("run", "t", "--model", spec, "--zone-pages", "1024", "--db", bad_db)
    assert res.code == 65, (res.code, res.err)
    assert str(spec) in res.err and f"field '{fieldname}'" in res.err, res.err
    assert q(bad_db, "SELECT count(*) FROM runs") == [(0,)]


@pytest.mark.parametrize(
    "text",
    [
        'model = "mobility"\npcp = \n',
        'model = "mobility\n',
        "[pcp\n",
        'model = "mobility"\nmodel = "buddy"\n',
    ],
)
def test_bad_toml_syntax(tmp_path: Path, bad_db: Path, text: str) -> None:
    spec = toml(tmp_path / "syntax.toml", text)
    res = run_cli("run", "t", "--model", spec, "--zone-pages", "1024", "--db", bad_db)
    assert res.code == 65, (res.code, res.err)
    assert str(spec) in res.err and "TOML" in res.err, res.err
    assert q(bad_db, "SELECT count(*) FROM runs") == [(0,)]


def test_model_file_not_utf8(tmp_path: Path, bad_db: Path) -> None:
    spec = tmp_path / "latin1.toml"
    spec.write_bytes(b'model = "mobility"\n# caf\xe9\n')
    res = run_cli("run", "t", "--model", spec, "--zone-pages", "1024", "--db", bad_db)
    assert res.code == 65 and str(spec) in res.err


def test_pcp_high_beyond_int32(tmp_path: Path, tiny_db: Path) -> None:
    spec = toml(tmp_path / "big.toml", 'model = "mobility"\npcp = true\npcp_high = 2147483648\n')
    res = run_cli("run", "t", "--model", spec, "--zone-pages", "1024", "--db", tiny_db, "-q")
    # rejected up front as bad input, before any replay
    assert res.code == 65, (res.code, res.err)
    assert str(spec) in res.err and "field 'pcp_high'" in res.err
    for bad in ("ncpus = 100000", "watermark_scale_factor = 3001"):
        spec = toml(tmp_path / "big2.toml", f'model = "mobility"\n{bad}\n')
        res = run_cli("run", "t", "--model", spec, "--zone-pages", "1024", "--db", tiny_db)
        assert res.code == 65 and f"field '{bad.split()[0]}'" in res.err, res.err


def test_missing_model_file_and_unknown_preset(tmp_path: Path, bad_db: Path) -> None:
    res = run_cli(
        "run", "t", "--model", tmp_path / "nope.toml", "--zone-pages", "64", "--db", bad_db
    )
    assert res.code == 2 and "nope.toml" in res.err
    res = run_cli("run", "t", "--model", "mobility+thp", "--zone-pages", "64", "--db", bad_db)
    assert res.code == 2 and "mobility+thp" in res.err and "mobility+pcp" in res.err


def test_good_toml_config_is_stored(tmp_path: Path, tiny_db: Path) -> None:
    spec = toml(
        tmp_path / "good.toml",
        'model = "mobility"\npcp = true\nnofragment = false\npcp_batch = 5\n'
        "pcp_high = 30\nncpus = 4\nmin_free_kbytes = 0\nwatermark_scale_factor = 25\n",
    )
    run = cli_run(tiny_db, "t", "--model", spec, "--zone-pages", "1024")
    r = run_row(tiny_db, run["run_id"])
    assert json.loads(r["config"]) == {
        "model": "mobility",
        "preset": None,
        "params": {
            "pcp": True,
            "nofragment": False,
            "pcp_batch": 5,
            "pcp_high": 30,
            "ncpus": 4,
            "min_free_kbytes": 0,
            "watermark_scale_factor": 25,
        },
    }
    w = setup_per_zone_wmarks([1024], 0, 25)[0]
    assert (r["model"], r["ncpus"], r["pcp_batch"], r["pcp_high"]) == ("mobility", 4, 5, 30)
    assert (r["wmark_min"], r["wmark_low"], r["wmark_high"]) == (w.min, w.low, w.high)
    run = cli_run(tiny_db, "t", "--model", "mobility+pcp", "--zone-pages", "1024")
    assert json.loads(run_row(tiny_db, run["run_id"])["config"]) == {
        "model": "mobility",
        "preset": "mobility+pcp",
        "params": {"pcp": True},
    }
    # A TOML buddy with pcp is a valid model too.
    spec = toml(tmp_path / "bp.toml", 'model = "buddy"\npcp = true\n')
    run = cli_run(tiny_db, "t", "--model", spec, "--zone-pages", "1024")
    assert run_row(tiny_db, run["run_id"])["model"] == "buddy"


# -- 6. watermarks and the environment on the capture -----------------------------------


@pytest.fixture(scope="module")
def cap(capture_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the capture store (runs are added to it)."""
    path = tmp_path_factory.mktemp("cap") / "cap.duckdb"
    shutil.copyfile(capture_db, path)
    return path


def capture_env(db: Path) -> dict[str, Any]:
    ((tid, start, pages),) = q(
        db, "SELECT trace_id, zone_start_pfn, zone_pages FROM traces WHERE name = 'compact'"
    )
    zi = q(
        db,
        """SELECT zone, "min", low, high FROM snap_zoneinfo
           WHERE trace_id = ? AND snapshot = 'before' AND start_pfn = ?""",
        [tid, start],
    )
    assert len(zi) == 1
    (maxcpu,) = q(db, "SELECT max(cpu) FROM events WHERE trace_id = ?", [tid])[0]
    return {
        "tid": tid,
        "start": start,
        "pages": pages,
        "zone": zi[0][0],
        "wmark": tuple(zi[0][1:]),
        "ncpus": maxcpu + 1,
    }


def test_capture_watermarks_and_environment(cap: Path, tmp_path: Path) -> None:
    env = capture_env(cap)
    assert env["zone"] == "Normal" and env["ncpus"] == 2
    batch = max(1, zone_batchsize(env["pages"]))
    few = ("--every", "5000", "--pageblock-every", "0")
    plain = cli_run(cap, "compact", "--model", "mobility", *few)
    r = run_row(cap, plain["run_id"])
    assert (r["zone_start_pfn"], r["zone_pages"]) == (env["start"], env["pages"])
    assert (r["wmark_min"], r["wmark_low"], r["wmark_high"]) == env["wmark"]
    assert r["ncpus"] == env["ncpus"]
    assert r["pcp_batch"] == batch == 63
    assert r["pcp_high"] == zone_highsize(env["wmark"][1], batch, env["ncpus"])
    # pageblock rows are numbered pfn >> 9 over the zone
    pb0, npb = env["start"] >> 9, env["pages"] // PB
    assert q(
        cap,
        """SELECT seq, count(*), min(pageblock), max(pageblock) FROM pageblocks
           WHERE run_id = ? GROUP BY seq ORDER BY seq""",
        [r["run_id"]],
    ) == [(-1, npb, pb0, pb0 + npb - 1), (r["events"] - 1, npb, pb0, pb0 + npb - 1)]

    spec = toml(tmp_path / "mfk.toml", 'model = "mobility"\nmin_free_kbytes = 67584\n')
    mfk = cli_run(cap, "compact", "--model", spec, *few)
    r2 = run_row(cap, mfk["run_id"])
    # pages_min is shared among every lowmem zone of the snapshot by managed pages:
    # the machine's own min_free_kbytes gives back the machine's own watermarks
    managed = [
        m
        for (m,) in q(
            cap,
            "SELECT managed FROM snap_zoneinfo WHERE snapshot = 'before' AND managed > 0 "
            "ORDER BY node, start_pfn",
        )
    ]
    i = managed.index(env["pages"])
    w = setup_per_zone_wmarks(managed, 67584, 10)[i]
    assert (r2["wmark_min"], r2["wmark_low"], r2["wmark_high"]) == (w.min, w.low, w.high)
    assert (w.min, w.low, w.high) == (9706, 12132, 14558)
    assert r2["pcp_high"] == zone_highsize(w.low, batch, env["ncpus"])
    # watermarks only count: the same placements; with min above the zone size
    # every allocation is made below both marks
    huge = toml(tmp_path / "huge.toml", 'model = "mobility"\nmin_free_kbytes = 2000000000\n')
    r5 = run_row(cap, cli_run(cap, "compact", "--model", huge, *few)["run_id"])
    assert r5["wmark_min"] == setup_per_zone_wmarks(managed, 2000000000, 10)[i].min
    assert steps_of(cap, plain["run_id"]) == steps_of(cap, mfk["run_id"])
    assert steps_of(cap, plain["run_id"]) == steps_of(cap, r5["run_id"])
    assert r["below_low"] <= r5["below_low"] and r5["below_low"] == r5["below_min"] == r5["allocs"]

    spec = toml(tmp_path / "cpus.toml", 'model = "mobility"\npcp = true\nncpus = 5\n')
    r3 = run_row(cap, cli_run(cap, "compact", "--model", spec, *few)["run_id"])
    assert (r3["ncpus"], r3["pcp_high"]) == (5, zone_highsize(env["wmark"][1], batch, 5))

    # --zone-pages: a zone at pfn 0 with the kernel's formula, no snapshot
    r4 = run_row(cap, cli_run(cap, "compact", "--zone-pages", "8192", *few)["run_id"])
    w = setup_per_zone_wmarks([8192], calculate_min_free_kbytes(8192), 10)[0]
    assert (r4["zone_start_pfn"], r4["zone_pages"]) == (0, 8192)
    assert (r4["wmark_min"], r4["wmark_low"], r4["wmark_high"]) == (w.min, w.low, w.high)
    assert r4["pcp_batch"] == max(1, zone_batchsize(8192))


# -- 7. --fill-from-snapshot --------------------------------------------------------------


def expected_background(db: Path, env: dict[str, Any]) -> dict[int, int]:
    """background_pages' docstring, recomputed from the snapshot tables."""
    t, z = env["tid"], env["zone"]
    free = dict(
        q(
            db,
            """SELECT mt, sum(nr_free * (1::BIGINT << "order")) FROM snap_pagetypeinfo
               WHERE trace_id = ? AND snapshot = 'before' AND zone = ? GROUP BY mt""",
            [t, z],
        )
    )
    blocks = dict(
        q(
            db,
            """SELECT mt, sum(nr_pageblocks) FROM snap_pageblocks
               WHERE trace_id = ? AND snapshot = 'before' AND zone = ? GROUP BY mt""",
            [t, z],
        )
    )
    (pre,) = q(
        db,
        """SELECT sum(1::BIGINT << "order") FROM events
           WHERE trace_id = ? AND op = 'free' AND obj NOT IN
             (SELECT obj FROM events WHERE trace_id = ? AND op = 'alloc')""",
        [t, t],
    )[0]
    used = env["pages"] - sum(free.values()) - pre
    share = {mt: max(0, blocks.get(mt, 0) * PB - free.get(mt, 0)) for mt in (0, 1, 2)}
    out = {mt: used * v // sum(share.values()) for mt, v in share.items()}
    out[max(share, key=share.__getitem__)] += used - sum(out.values())
    return out


def test_fill_from_snapshot(cap: Path, tmp_path: Path) -> None:
    env = capture_env(cap)
    want = expected_background(cap, env)
    assert all(v > 0 for v in want.values())
    plain = cli_run(cap, "compact", "--model", "mobility", "--every", "5000")
    fill = cli_run(cap, "compact", "--model", "mobility", "--every", "5000", "--fill-from-snapshot")
    r0, r1 = run_row(cap, plain["run_id"]), run_row(cap, fill["run_id"])
    assert r1["background"] == fill["background"] == sum(want.values())
    assert r0["background"] == 0
    # per type: the initial snapshot holds the background pages on top of the pre-existing
    by_type = (
        "SELECT sum(unmovable), sum(movable), sum(reclaimable) FROM pageblocks "
        "WHERE run_id = ? AND seq = -1"
    )
    a, b = q(cap, by_type, [r0["run_id"]])[0], q(cap, by_type, [r1["run_id"]])[0]
    assert [y - x for x, y in zip(a, b, strict=True)] == [want[0], want[1], want[2]]
    # nothing failed in either run, so the background is missing from the final free pages
    assert r0["failures"] == r1["failures"] == 0
    assert r0["free_pages"] - r1["free_pages"] == r1["background"]
    assert r1["free_pages"] + r1["background"] + r1["pcp_pages"] <= env["pages"]
    # the background pass's fallbacks are extfrag rows at seq -1; the run's counters
    # are of the trace's events only
    sql = "SELECT count(*) FILTER (seq < 0), count(*) FILTER (seq >= 0) FROM extfrag "
    sql += "WHERE run_id = ?"
    n_bg, n_trace = q(cap, sql, [r1["run_id"]])[0]
    assert n_bg > 0 and r1["fallbacks"] == n_trace

    before = q(cap, "SELECT count(*) FROM runs")
    res = run_cli("run", "compact", "--db", cap, "--fill-from-snapshot", "--zone-pages", "4096")
    assert res.code == 2 and "--fill-from-snapshot" in res.err and "--zone-pages" in res.err
    assert q(cap, "SELECT count(*) FROM runs") == before

    # a CSV trace has a zone (from its pfns) but no snapshots
    db = tmp_path / "csv.duckdb"
    trace = Trace(
        [
            ("alloc", 1, 0, 0, 100, 1, 0),
            ("alloc", 2, 3, 0, 4000, 0, 1),
            ("free", 1, 0, 0, None, None, 0),
        ]
    )
    ingest(db, trace)
    assert q(db, "SELECT zone_pages IS NOT NULL FROM traces") == [(True,)]
    cli_run(db, "t")  # the zone is usable without the option
    res = run_cli("run", "t", "--db", db, "--fill-from-snapshot")
    assert res.code == 2 and "--fill-from-snapshot" in res.err and "snapshot" in res.err
    res = run_cli("run", "t", "--db", db, "--fill-from-snapshot", "--zone-pages", "64")
    assert res.code == 2 and "--fill-from-snapshot" in res.err
    assert q(db, "SELECT count(*) FROM runs") == [(1,)]


# -- 8. atomic runs -----------------------------------------------------------------------


def digests(db: Path) -> dict[str, tuple]:
    return {
        t: q(
            db,
            f"""SELECT count(*), md5(coalesce(string_agg(CAST(x AS VARCHAR), '|'
                                              ORDER BY CAST(x AS VARCHAR)), ''))
                FROM {t} x""",
        )[0]
        for t in ("runs", "steps", "extfrag", "pageblocks")
    }


@pytest.mark.parametrize("where", ["kernel", "pageblocks", "runs"])
def test_failed_run_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    trace = build_trace(random_ops(random.Random(5), 600), [1])
    db = tmp_path / "t.duckdb"
    ingest(db, trace)
    first = cli_run(db, "t", "--model", "mobility+pcp", "--zone-pages", "2048")
    cli_run(db, "t", "--model", "buddy", "--zone-pages", "2048")
    before = digests(db)
    assert before["extfrag"][0] > 0 and before["steps"][0] == 2 * len(trace.rows)

    calls: Counter[str] = Counter()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    if where == "kernel":
        chunk = 64
        monkeypatch.setattr(engine, "CHUNK_EVENTS", chunk)
        real_chunk = engine.replay_chunk

        def failing_chunk(i0: int, i1: int, ev: tuple, *a: Any) -> Any:
            if ev[0].shape[0] and ev[0][0] >= chunk:  # a later chunk of the trace's events
                raise RuntimeError("disk full")
            calls["chunk"] += ev[0].shape[0] > 1 and ev[0][0] == 0  # not warm_up's
            return real_chunk(i0, i1, ev, *a)

        monkeypatch.setattr(engine, "replay_chunk", failing_chunk)
    elif where == "pageblocks":
        real_parquet = Store.append_parquet

        def failing_parquet(self: Store, table: str, *a: Any, **kw: Any) -> None:
            calls[table] += 1
            if table == "pageblocks":
                raise RuntimeError("disk full")
            real_parquet(self, table, *a, **kw)

        monkeypatch.setattr(Store, "append_parquet", failing_parquet)
    else:
        real_record: Callable[..., Any] = engine._record_run

        def failing_record(store: Store, run_id: int, *a: Any) -> Any:
            real_record(store, run_id, *a)
            row = store.one("SELECT count(*) FROM runs WHERE run_id = $r", {"r": run_id})
            calls["runs"] = row[0] if row else 0
            raise RuntimeError("disk full")

        monkeypatch.setattr(engine, "_record_run", failing_record)

    with Store(db) as s, pytest.raises(RuntimeError, match="disk full"):
        engine.run(s, "t", load_model("mobility+pcp"), zone_pages=2048)
    # the failure really happened mid-run, after rows were written in the transaction
    assert {
        "kernel": calls["chunk"] >= 1,
        "pageblocks": calls["extfrag"] == 1,
        "runs": calls["runs"] == 1,
    }[where]
    assert digests(db) == before
    assert list(tmp.iterdir()) == []  # the spool files are gone too
    monkeypatch.undo()
    again = cli_run(db, "t", "--model", "mobility+pcp", "--zone-pages", "2048")
    assert again["run_id"] == 3
    assert steps_of(db, 3) == steps_of(db, first["run_id"])
    assert extfrag_of(db, 3) == extfrag_of(db, first["run_id"])


# -- 9. the run queries -------------------------------------------------------------------


def query(db: Path, name: str, *params: str) -> list[dict[str, Any]]:
    args: list[str | Path] = ["query", name, "--db", db, "--format", "json"]
    for p in params:
        args += ["-p", p]
    res = run_cli(*args)
    assert res.code == 0, res.err
    return res.json()


def test_run_queries(tmp_path: Path, cap: Path) -> None:
    trace = build_trace(random_ops(random.Random(9), 800), [])
    db = tmp_path / "t.duckdb"
    ingest(db, trace)
    ids = [
        cli_run(db, "t", "--model", m, "--zone-pages", "2048", "--every", "10")["run_id"]
        for m in ("mobility", "buddy", "mobility+pcp")
    ]
    for rid in ids:
        r = run_row(db, rid)
        ev = query(db, "run_extfrag", f"run={rid}")
        assert sum(x["events"] for x in ev) == r["fallbacks"]
        ef = extfrag_of(db, rid)
        assert sum(x["fragmenting"] for x in ev) == sum(1 for e in ef if e[3] < 9)
        names = {0: "Unmovable", 1: "Movable", 2: "Reclaimable"}
        assert Counter(
            {(x["alloc_migratetype"], x["fallback_migratetype"]): x["events"] for x in ev}
        ) == Counter((names[e[4]], names[e[5]]) for e in ef)
    assert run_row(db, ids[0])["fallbacks"] > 0 and run_row(db, ids[1])["fallbacks"] == 0

    cmp = query(db, "compare_runs", f"runs={ids[0]},{ids[2]}")
    assert [x["run_id"] for x in cmp] == [ids[0], ids[2]]
    assert cmp[0]["mixed_pageblocks"] > 0
    assert [x["run_id"] for x in query(db, "compare_runs", f"runs={ids[1]}")] == [ids[1]]
    for x in cmp:
        r = run_row(db, x["run_id"])
        assert x["model"] == json.loads(r["config"])["preset"]
        assert (x["fallbacks"], x["failures"], x["free_pages"], x["pcp_pages"]) == (
            r["fallbacks"],
            r["failures"],
            r["free_pages"],
            r["pcp_pages"],
        )
        nz = [k for k, n in enumerate(r["nr_free"]) if n > 0]
        assert x["largest_free_order"] == (max(nz) if nz else -1)
        final = pageblocks_at(db, x["run_id"], len(trace.rows) - 1)
        mixed = sum(1 for b in final if any(b[3 + t] > 0 and b[1] != t for t in range(3)))
        assert x["mixed_pageblocks"] == mixed
    assert [x["run_id"] for x in query(db, "compare_runs")] == ids

    for rid in ids:
        mix = query(db, "pageblock_mix", f"run={rid}")
        per_seq: dict[int, list[dict]] = {}
        for x in mix:
            per_seq.setdefault(x["seq"], []).append(x)
        assert per_seq and set(per_seq) == set(snapshot_seqs(db, rid))
        free_at = dict(
            q(
                db,
                "SELECT seq, free_pages FROM steps WHERE run_id = ? AND free_pages IS NOT NULL",
                [rid],
            )
        )
        for s, xs in per_seq.items():
            assert sum(x["pageblocks"] for x in xs) == 4
            if s in free_at:  # two independent counts of free pages agree
                assert sum(x["free_pages"] for x in xs) == free_at[s]

    # the capture with the background: fallbacks before the first event are reported
    few = ("--every", "5000", "--pageblock-every", "0", "--fill-from-snapshot")
    fill = cli_run(cap, "compact", "--model", "mobility", *few)
    ev = query(cap, "run_extfrag", f"run={fill['run_id']}")
    sql = "SELECT count(*) FROM extfrag WHERE run_id = ? AND seq < 0"
    (n_bg,) = q(cap, sql, [fill["run_id"]])[0]
    assert sum(x["events"] - x["before_first_event"] for x in ev) == fill["fallbacks"]
    assert sum(x["before_first_event"] for x in ev) == n_bg > 0
    mix = query(cap, "pageblock_mix", f"run={fill['run_id']}")
    assert {x["seq"]: 0 for x in mix}.keys() == {-1, fill["events"] - 1}
    for s in (-1, fill["events"] - 1):
        assert sum(x["pageblocks"] for x in mix if x["seq"] == s) == 2048


def test_scale_factor_alone_keeps_the_snapshot_min(tmp_path: Path, cap: Path) -> None:
    # __setup_per_zone_wmarks with the machine's min (9706 pages in the capture's Normal
    # zone): tmp = max(min >> 2, mult_frac(1048576, 100, 10000)) = max(2426, 10485) = 10485
    spec = toml(tmp_path / "wsf.toml", 'model = "mobility"\nwatermark_scale_factor = 100\n')
    r = run_row(
        cap,
        cli_run(cap, "compact", "--model", spec, "--every", "100000")["run_id"],
    )
    assert (r["wmark_min"], r["wmark_low"], r["wmark_high"]) == (9706, 20191, 30676)


def test_a_model_warns_when_the_trace_lacks_what_it_needs(tmp_path: Path) -> None:
    """Exchange pages works on regions; ftrace's kmem events carry none, so on a real
    capture mobility+exchange says so (stderr, and the result's warnings) instead of
    silently exchanging nothing; a trace with regions gets no warning."""
    from conftest import run_cli

    db = tmp_path / "w.duckdb"
    traces = Path(__file__).resolve().parent.parent / "traces"
    assert run_cli("ingest", traces / "small-calm-6.18", "--name", "calm", "--db", db,
                   "-q").code == 0  # fmt: skip
    r = run_cli("run", "calm", "-m", "mobility+exchange", "--db", db, "-q", "-f", "json")
    assert r.code == 0, r.err
    assert "warning: exchange_at: the trace has no regions" in r.err
    assert r.json()["warnings"] and r.json()["exchanged"] == 0
    assert run_cli("generate", "vma", "--zone-pages", "16384", "--db", db, "-q").code == 0
    r = run_cli("run", "vma", "-m", "mobility+exchange", "--db", db, "-q", "-f", "json")
    assert r.code == 0, r.err
    assert "warning" not in r.err and r.json()["warnings"] == []
    assert r.json()["exchanged"] > 0
