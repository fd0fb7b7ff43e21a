"""What the recorded kernel did, as the kernel model's inputs (replay.engine.recorded):
its compaction passes batch by batch, and the migrations the ptes do not name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from replay.engine import recorded
from replay.engine import whatif as engine
from replay.engine.environment import first_taken, taken_pageblock_types, zone_environment
from replay.engine.observed import fork_state, run_observed
from replay.models.config import load_model
from replay.models.internal import GIVEN_COLS, GIVEN_LINEAR, MIGRATE_MOVABLE
from replay.store import Store
from replay.trace.ingest import ingest

TRACES = Path(__file__).resolve().parent.parent / "traces"


def _events(s: Store, tid: int) -> int:
    """Trace ``tid``'s event count (a run's hi_seq bound: its last seq + 1)."""
    return int(s.one("SELECT events FROM traces WHERE trace_id = $t", {"t": tid})[0])


def _ingested(s: Store, trace: Path, name: str) -> tuple[int, int]:
    """Ingest ``trace`` as ``name``: its trace id and event count."""
    ingest(s, trace, name=name)
    tid = s.trace_id(name)
    return tid, _events(s, tid)


def _greedy(src: list[int], dst: list[int]) -> tuple[list[bool], list[int]]:
    """The matching as a loop: each destination takes the next source if it came first."""
    i, matched, taken = 0, [], []
    for d in dst:
        ok = i < len(src) and src[i] < d
        matched.append(ok)
        if ok:
            taken.append(i)
            i += 1
    return matched, taken


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 400), st.booleans()), max_size=60, unique_by=lambda t: t[0])
)
def test_fifo_match_is_the_greedy_loop(events: list[tuple[int, bool]]) -> None:
    src = sorted(s for s, is_src in events if is_src)
    dst = sorted(s for s, is_src in events if not is_src)
    matched, taken = recorded.fifo_match(np.array(src, np.int64), np.array(dst, np.int64))
    want_m, want_t = _greedy(src, dst)
    assert matched.tolist() == want_m and taken.tolist() == want_t


def test_recorded_passes_run_batch_by_batch(capture_db: Path) -> None:
    """The shipped capture's Normal-zone compact_memory pass: a begin, a step at each of
    its task's mm_compaction_migratepages with the running sum of nr_migrated, an end
    with the total; the actions are in seq order."""
    with Store(capture_db) as s:
        tid = s.trace_id("compact")
        env = zone_environment(s, tid, load_model("kernel"), None)
        total = _events(s, tid)
        acts = recorded.recorded_compactions(s, tid, env, 0, total, total)
        migrated = (
            s.query(
                """SELECT TRY_CAST(args->>'nr_migrated' AS BIGINT) AS n FROM aux_events
               WHERE trace_id = $t AND event = 'mm_compaction_migratepages'
                 AND line > (SELECT line FROM aux_events WHERE trace_id = $t
                               AND event = 'mm_compaction_begin'
                               AND hexint(args->>'zone_start') = $zs)
               ORDER BY line""",
                {"t": tid, "zs": env.start_pfn},
            )
            .column("n")
            .to_pylist()
        )
    phases = [a[2][1] for a in acts]
    assert phases[0] == recorded.PASS_BEGIN and phases[-1] == recorded.PASS_END
    outer = [a for a in acts[1:-1] if a[2][1] != recorded.PASS_INSIDE]
    assert [a[2][1] for a in outer] == [recorded.PASS_STEP] * len(migrated)
    budgets = [a[2][4] for a in [*outer, acts[-1]]]
    assert budgets[:-1] == np.cumsum(migrated).tolist() and budgets[-1] == sum(migrated)
    seqs = [a[0] for a in acts if a[0] != recorded.AFTER_LAST]
    assert seqs == sorted(seqs) and len(set(a[2][0] for a in acts)) == 1
    assert sum(migrated) > 100_000
    # each batch's migration range: the last isolate_migratepages that took pages
    # before its migratepages event, carried by the batch's first action (later ones in
    # the same batch: lo -1); /proc's pass scans linearly, so they ascend
    steps = [a[2] for a in acts if a[2][1] in (recorded.PASS_STEP, recorded.PASS_INSIDE)]
    ranges = [(arg[11], arg[12]) for arg in steps if arg[11] >= 0]
    assert len(ranges) == len(migrated) and all(0 <= lo < hi for lo, hi in ranges)
    assert [lo for lo, _ in ranges] == sorted(lo for lo, _ in ranges)
    # Inside a batch, before another task's allocation: the pages its task had freed
    # (the batch's old folios) added to the budget before the batch, short of its end's
    inside = [a for a in acts if a[2][1] == recorded.PASS_INSIDE]
    assert len(inside) > 100
    mid = [a[2] for a in acts[1:-1]]
    ends = [next(b[4] for b in mid[i:] if b[1] == recorded.PASS_STEP) for i in range(len(mid))]
    before = 0
    for arg, end in zip(mid, ends, strict=True):
        if arg[1] == recorded.PASS_STEP:
            before = arg[4]
        else:
            assert before < arg[4] < end
    with Store(capture_db) as s:
        pid = int(s.one("SELECT pid FROM aux_events WHERE trace_id = $t AND line = $l",
                        {"t": tid, "l": acts[0][2][0]})[0])  # fmt: skip
        takers = s.query(
            "SELECT seq, op, pid FROM events WHERE trace_id = $t AND list_contains($s, seq)",
            {"t": tid, "s": [a[0] for a in inside]},
        ).to_pylist()
    assert len(takers) == len({a[0] for a in inside})
    assert all(q["op"] == "alloc" and q["pid"] != pid for q in takers)
    with Store(capture_db) as s:
        first = s.query(
            """SELECT args->>'range' AS r FROM aux_events
               WHERE trace_id = $t AND event = 'mm_compaction_isolate_migratepages'
                 AND TRY_CAST(args->>'nr_taken' AS BIGINT) > 0
                 AND line > (SELECT line FROM aux_events WHERE trace_id = $t
                               AND event = 'mm_compaction_begin'
                               AND hexint(args->>'zone_start') = $zs)
               ORDER BY line LIMIT 1""",
            {"t": tid, "zs": env.start_pfn},
        ).to_pylist()[0]["r"]
    lo, hi = (int(x, 16) for x in first.strip("()").split("~"))
    assert ranges[0] == (lo, hi)
    # /proc's whole-zone pass (order -1) captures nothing
    assert all(arg[10] == -1 for arg in steps)


def test_recorded_passes_carry_the_kernels_free_scanner(capture_db: Path) -> None:
    """Each action of the shipped capture's compact_memory pass but its begin ends with
    the free-scanner isolations its task made since the pass's previous action (count,
    then kind, start, stop, pages taken of each): together every
    mm_compaction_isolate_freepages of the pass that took pages, in line order, their
    pages the pass's (here exactly the pages it migrated), all linear scans (a whole-zone
    pass runs no fast search), each inside one pageblock and descending pageblock by
    pageblock."""
    with Store(capture_db) as s:
        tid = s.trace_id("compact")
        env = zone_environment(s, tid, load_model("kernel"), None)
        total = _events(s, tid)
        acts = recorded.recorded_compactions(s, tid, env, 0, total, total)
        want = s.query(
            """SELECT args->>'range' AS r, TRY_CAST(args->>'nr_taken' AS BIGINT) AS n
               FROM aux_events
               WHERE trace_id = $t AND event = 'mm_compaction_isolate_freepages'
                 AND TRY_CAST(args->>'nr_taken' AS BIGINT) > 0
                 AND line > (SELECT line FROM aux_events WHERE trace_id = $t
                               AND event = 'mm_compaction_begin'
                               AND hexint(args->>'zone_start') = $zs)
               ORDER BY line""",
            {"t": tid, "zs": env.start_pfn},
        ).to_pylist()
    assert acts[0][2][1] == recorded.PASS_BEGIN and len(acts[0][2]) == 13
    got: list[tuple[int, ...]] = []
    for _seq, _kind, arg in acts[1:]:
        n = arg[13]
        entries = arg[14:]
        assert len(entries) == n * GIVEN_COLS
        got += [tuple(entries[i : i + GIVEN_COLS]) for i in range(0, len(entries), GIVEN_COLS)]
    assert len(got) == len(want) > 500
    for g, w in zip(got, want, strict=True):
        lo, hi = (int(x, 16) for x in w["r"].strip("()").split("~"))
        assert g == (GIVEN_LINEAR, lo, hi, w["n"])
        assert lo >> 9 == (hi - 1) >> 9
    assert sum(g[3] for g in got) == acts[-1][2][4] == 126_462
    blocks = [g[1] >> 9 for g in got]
    assert blocks == sorted(blocks, reverse=True)


def test_the_models_pass_moves_when_the_kernels_did(capture_db: Path, tmp_path: Path) -> None:
    """Along the pass the model has migrated at most what the kernel's migrate_pages
    calls had so far (at most one batch more: under 32 pages, plus the unit that crossed
    32, at most a pageblock), from the kernel's batch ranges, not everything at the
    begin. With the kernel's pcp bulk frees as inputs the pages on the model's pcp lists
    follow the kernel's all along (within 4% of the kernel's mean count: 3.3% with
    batches finishing their pageblock as the kernel's do, 2.1% with rounds of 32 pages;
    19% without the bulk frees; 1.4% with the split folios' pages migrated at once). With
    those pages after the batch, as migrate_pages moves them, the pass migrates all
    the kernel's pages (126,462; 683 fewer when they moved at once)."""
    db = tmp_path / "steps.duckdb"
    shutil.copyfile(capture_db, db)
    with Store(db) as s:
        tid = s.trace_id("compact")
        r = engine.run(s, "compact", load_model("kernel"), start="observed", every=1)
        env = zone_environment(s, tid, load_model("kernel"), None)
        total = _events(s, tid)
        acts = recorded.recorded_compactions(s, tid, env, r.start_seq, total, total)
        rows = s.query(
            "SELECT seq, migrated FROM steps WHERE run_id = $r AND migrated IS NOT NULL",
            {"r": r.run_id},
        ).to_pylist()
        obs = run_observed(s, "compact", every=1, pageblock_every=0)
        pcp = s.query(
            """SELECT o.pcp_pages AS k, m.pcp_pages AS m FROM steps o JOIN steps m
               ON m.run_id = $m AND m.seq = o.seq AND m.pcp_pages IS NOT NULL
               WHERE o.run_id = $o AND o.pcp_pages IS NOT NULL""",
            {"m": r.run_id, "o": int(obs["run_id"])},
        ).to_pylist()
    k_pcp = np.array([q["k"] for q in pcp], np.int64)
    m_pcp = np.array([q["m"] for q in pcp], np.int64)
    # the page cache's large folios the pass found no free block of their order for are
    # split and their pages migrated one by one (1 here; the kernel split 3,170 folios:
    # its targets in the ranges it scanned were order-0 and order-1 blocks, where the
    # model's, taken from the same ranges, are larger blocks of pages whose neighbours
    # sat on the kernel's pcp lists; 41 with the model's own free scanner)
    assert 0 < r.folios_split < 3170
    assert k_pcp.shape[0] > 1000
    assert np.abs(m_pcp - k_pcp).mean() < 0.04 * k_pcp.mean()
    seqs = np.array([q["seq"] for q in rows], np.int64)
    migrated = np.array([q["migrated"] for q in rows], np.int64)
    # after the last step before each replayed event: the kernel's running total there
    # (a step's seq may be an event the run leaves out: it runs before the next one)
    budget: dict[int, int] = {}
    for a in acts:
        if a[2][1] == recorded.PASS_STEP:
            budget[int(seqs[np.searchsorted(seqs, a[0])])] = a[2][4]
    moved = dict(zip(seqs.tolist(), migrated.tolist(), strict=True))
    assert len(budget) > 100
    slack = 31 + 512
    # Never ahead of the kernel's running total by more than a batch. Each batch scans
    # only the range the kernel's isolate_migratepages recorded for it, so where the
    # model holds fewer movable pages there than the kernel did it falls behind (it
    # never scans past the kernel's range to catch up): by at most 5% of the pass's
    # pages here.
    bad = [(q, budget[q], moved[q]) for q in budget if moved[q] > budget[q] + slack]
    assert not bad, bad[:10]
    deficit = [budget[q] - moved[q] for q in sorted(budget)]
    assert max(deficit) <= 0.05 * max(budget.values())
    assert moved[min(budget)] < max(budget.values()) // 4  # not all at the begin
    assert max(moved.values()) == max(budget.values())  # the kernel's whole count


def test_unnamed_migrations_pair_old_folios_with_new_homes(capture_db: Path) -> None:
    """compact_memory migrated ~126k pages, mostly unmapped page cache the ptes do not
    name (few of them freed again before the trace ends): each pair is a free by the
    compacting task inside its pass of an allocated folio, and a later free, outside
    any pass of its task, of a never-allocated folio of the same order on pages free
    at the fork."""
    with Store(capture_db) as s:
        tid = s.trace_id("compact")
        env = zone_environment(s, tid, load_model("kernel"), None)
        total = _events(s, tid)
        fork = fork_state(s, tid, env.start_pfn, env.pages)
        free = fork.page_mt < 0
        named = recorded.migration_links(s, tid, fork.seq)
        m = recorded.migration_map(s, tid, fork.seq, total, env.start_pfn, fork.page_mt)
        y, x, _ = recorded.unnamed_migrations(s, tid, fork.seq, total, env.start_pfn, fork.page_mt,
                                              named[2], named[0])  # fmt: skip
        ev = s.query(
            """SELECT obj, seq, pid, pfn, "order", line FROM events WHERE trace_id = $t
                 AND op = 'free' AND obj IN (SELECT unnest($o::BIGINT[]))""",
            {"t": tid, "o": np.concatenate([x, y]).tolist()},
        ).to_pylist()
        allocated = set(
            s.query("SELECT obj FROM events WHERE trace_id = $t AND op = 'alloc'", {"t": tid})
            .column("obj").to_pylist()
        )  # fmt: skip
        prev_op = {
            q["obj"]: q["op"]
            for q in s.query(
                """SELECT y.obj, p.op FROM events y ASOF LEFT JOIN
                     (SELECT seq, pfn, op FROM events WHERE trace_id = $t AND seq >= $lo
                        AND pfn IS NOT NULL) p ON p.pfn = y.pfn AND p.seq < y.seq
                   WHERE y.trace_id = $t AND y.op = 'free'
                     AND y.obj IN (SELECT unnest($o::BIGINT[]))""",
                {"t": tid, "lo": fork.seq, "o": y.tolist()[:2000]},
            ).to_pylist()
        }
        begin = s.one("""SELECT line, pid FROM aux_events WHERE trace_id = $t AND
                         event = 'mm_compaction_begin' AND hexint(args->>'zone_start') = $zs""",
                      {"t": tid, "zs": env.start_pfn})  # fmt: skip
        end = s.one(
            """SELECT min(line) FROM aux_events WHERE trace_id = $t AND
                       event = 'mm_compaction_end' AND line > $l""",
            {"t": tid, "l": begin[0]},
        )
    by_obj = {e["obj"]: e for e in ev}
    assert m.named == named[0].shape[0] and m.unnamed == y.shape[0] > 0
    # the old folios' frees left out: the pte-named ones and ~110k more
    assert m.seqs.shape[0] > named[2].shape[0] + 100_000
    assert set(y.tolist()) <= set(m.y_obj.tolist())
    assert not set(y.tolist()) & allocated and not set(y.tolist()) & set(named[0].tolist())
    for yo, xo in zip(y.tolist()[:2000], x.tolist()[:2000], strict=True):
        a, b = by_obj[xo], by_obj[yo]
        assert a["pid"] == begin[1] and begin[0] < a["line"] < end[0]  # inside the pass
        assert a["order"] == b["order"] and a["seq"] < b["seq"]
        # the new home's page was free just before its free: the last event at its pfn
        # since the fork freed it, or there is none and it was free at the fork
        prev = prev_op.get(yo)
        assert prev == "free" or (prev is None and free[b["pfn"] - env.start_pfn])
        assert xo in allocated or not free[a["pfn"] - env.start_pfn]
    assert len(set(x.tolist())) == x.shape[0]  # each migrated folio has one new home


def test_kswapds_reclaim_limits_the_pcp_lists(tmp_path: Path) -> None:
    """The shipped pressure capture's kswapd woke 164 times: each balance_pgdat is a
    window of ZONE_RECLAIM_ACTIVE (set, then cleared, in seq order). Where the model
    makes its own bulk frees and refills (recorded_pcp_frees and recorded_pcp_refills
    off), inside the windows it holds fewer pages on its pcp lists, nearer the kernel's
    count than without the windows. With the kernel's bulk frees and refills as inputs
    (the kernel preset) it is no further off,
    over the whole run (this capture's Normal zone has few of them; the compact capture's
    pcp lists follow the kernel's: test_the_models_pass_moves_when_the_kernels_did)."""
    db = tmp_path / "k.duckdb"
    name = "small-pressure-6.18"
    with Store(db) as s:
        tid, total = _ingested(s, TRACES / name, name)
        acts = recorded.kswapd_reclaim(s, tid, 0, total)
        obs = run_observed(s, name, every=10, pageblock_every=0)

        def without(*names: str) -> int:
            toml = tmp_path / ("no-" + "-".join(names) + ".toml")
            cfg = {"model": "mobility"} | {
                k: v for k, v in load_model("kernel").params.items() if k not in names
            }
            toml.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in cfg.items()))
            return engine.run(s, name, load_model(str(toml)), start="observed", every=10).run_id

        k = without("recorded_pcp_frees", "recorded_pcp_refills")
        off = without("recorded_pcp_frees", "recorded_pcp_refills", "recorded_kswapd")
        full = engine.run(s, name, load_model("kernel"), start="observed", every=10).run_id

        def pcp(run_id: int) -> dict[int, int]:
            rows = s.query("SELECT seq, pcp_pages FROM steps WHERE run_id = $r AND "
                           "pcp_pages IS NOT NULL", {"r": run_id}).to_pylist()  # fmt: skip
            return {q["seq"]: q["pcp_pages"] for q in rows}

        p_obs, p_k, p_off, p_full = pcp(int(obs["run_id"])), pcp(k), pcp(off), pcp(full)
    flags = [a[2][0] for a in acts]
    assert 20 < flags.count(1) <= 164 and flags == [1, 0] * (len(flags) // 2) + [1] * (
        len(flags) % 2
    )
    seqs = [a[0] for a in acts]
    assert seqs == sorted(seqs)
    both = [q for q in p_obs if q in p_k and q in p_off and q in p_full]
    inside = [q for q in both
              if any(seqs[i] <= q < seqs[i + 1] for i in range(0, len(seqs) - 1, 2))]  # fmt: skip
    assert len(inside) > 100

    def mean(p: dict[int, int], at: list[int]) -> float:
        return sum(p[q] for q in at) / len(at)

    def off_by(p: dict[int, int], at: list[int]) -> float:
        return sum(abs(p[q] - p_obs[q]) for q in at) / len(at)

    assert abs(mean(p_k, inside) - mean(p_obs, inside)) < abs(
        mean(p_off, inside) - mean(p_obs, inside)
    )
    assert mean(p_k, inside) < 0.8 * mean(p_off, inside)
    assert off_by(p_full, both) <= off_by(p_k, both)


def _line(task: str, cpu: int, ts: float, event: str, body: str) -> str:
    return f"{task:>16} [{cpu:03d}] .....  {ts:.6f}: {event}: {body}\n"


class _Trace:
    """A hand-made ftrace text trace: each line ``step`` seconds (10 us) after the last,
    from 100 s."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.ts = 100.0

    def add(self, task: str, cpu: int, event: str, body: str, step: float = 1e-5) -> None:
        self.ts += step
        self.lines.append(_line(task, cpu, self.ts, event, body))

    def alloc(self, task: str, cpu: int, pfn: int, order: int) -> None:
        """A movable user allocation of ``1 << order`` pages at ``pfn``."""
        self.add(task, cpu, "mm_page_alloc",
                 f"page=00000000deadbeef pfn={pfn:#x} order={order} migratetype=1 "
                 "gfp_flags=GFP_HIGHUSER_MOVABLE")  # fmt: skip

    def write(self, path: Path) -> Path:
        path.write_text("".join(self.lines))
        return path


def test_drain_all_after_direct_reclaim_is_an_input(tmp_path: Path) -> None:
    """A task whose direct reclaim left its request unserved drains every cpu's pcp
    lists (__alloc_pages_direct_reclaim -> drain_all_pages): its drains right after its
    mm_vmscan_direct_reclaim_end are one drain_all, replayed before its retry; another
    task's drains (trimming its own list) are not. With recorded_drains the model's pcp
    lists are empty there, the other cpu's included."""
    t = _Trace()
    gfp = "gfp_flags=GFP_HIGHUSER_MOVABLE"
    for i in range(60):  # cpu 0 allocates and frees 60 pages: they sit on its pcp list
        t.add("a-10", 0, "mm_page_alloc", f"page=0 pfn={0x1000 + i:#x} order=0 migratetype=1 {gfp}")
    for i in range(60):
        t.add("a-10", 0, "mm_page_free", f"page=0 pfn={0x1000 + i:#x} order=0")
    # another task trims its own list: not a drain_all
    t.add("c-30", 0, "mm_page_pcpu_drain", "page=0 pfn=0x1000 order=0 migratetype=1")
    t.add("c-30", 0, "mm_page_alloc", f"page=0 pfn=0x2000 order=0 migratetype=1 {gfp}")
    t.add("b-20", 1, "mm_vmscan_direct_reclaim_begin", f"order=0 {gfp}")
    t.add("b-20", 1, "mm_vmscan_direct_reclaim_end", "nr_reclaimed=0")
    for i in range(1, 60):  # drain_all_pages from cpu 1: cpu 0's list
        t.add("b-20", 1, "mm_page_pcpu_drain", f"page=0 pfn={0x1000 + i:#x} order=0 migratetype=1",
              step=1e-6)  # fmt: skip
    t.add("b-20", 1, "mm_page_alloc", f"page=0 pfn=0x1005 order=0 migratetype=1 {gfp}")  # retry
    t.add("a-10", 0, "mm_page_free", "page=0 pfn=0x2000 order=0")
    trace = t.write(tmp_path / "drain.txt")
    db = tmp_path / "d.duckdb"
    with Store(db) as s:
        tid, total = _ingested(s, trace, "drain")
        retry = int(s.one("SELECT seq FROM events WHERE trace_id = $t AND pid = 20 AND "
                          "op = 'alloc'", {"t": tid})[0])  # fmt: skip
        assert recorded.recorded_drains(s, tid, 0, total) == [(retry, "drain_all", ())]
        assert recorded.recorded_drains(s, tid, retry, total) == []  # before the range
        base = {"model": "mobility", "pcp": True}
        runs = {}
        for on in (False, True):
            toml = tmp_path / f"d{on}.toml"
            cfg = base | {"recorded_drains": on}
            toml.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in cfg.items()))
            r = engine.run(s, "drain", load_model(str(toml)), zone_pages=4096, every=1)
            runs[on] = {q["seq"]: q["pcp_pages"] for q in s.query(
                "SELECT seq, pcp_pages FROM steps WHERE run_id = $r", {"r": r.run_id}
            ).to_pylist()}  # fmt: skip
    before = retry - 1
    assert runs[True][before] == runs[False][before] > 50  # cpu 0's list, as the kernel's
    # with the drain only what the retry's refill left on cpu 1's list (at most a batch);
    # without, cpu 0's list is still there
    assert runs[True][retry] <= 63 and runs[False][retry] >= runs[False][before]
    assert runs[False][retry] - runs[True][retry] >= runs[True][before] - 1


def test_first_takes_show_list_order_cpu_and_pageblock_type(tmp_path: Path) -> None:
    """first_taken and taken_pageblock_types on hand-made rows: each block's first take
    after the fork (an allocation, or the buddy's refill of a pcp list, which comes
    before event seq) gives its place, its cpu and its request type; a pageblock whose
    first evidence is a fallback (mm_page_alloc_extfrag) is of the fallback's type;
    takes before the fork and untouched pageblocks tell nothing."""
    from types import SimpleNamespace
    from typing import Any, cast

    with Store(tmp_path / "t.duckdb") as s:
        ev = [  # seq, op, pfn, order, migratetype, cpu
            (5, "alloc", 4096 + 520, 0, 0, 0),  # before the fork: ignored
            (10, "alloc", 4096 + 5, 0, 1, 1),  # pageblock 0: MOVABLE, on cpu 1
            (11, "alloc", 4096 + 1024, 0, 0, 0),  # pageblock 2: UNMOVABLE
            (12, "alloc", 4096 + 520, 0, 1, 0),  # pageblock 1: a MOVABLE fallback...
            (13, "alloc", 4096 + 7, 0, 1, 0),
        ]
        for q, op, pfn, k, mt, cpu in ev:
            s.run("""INSERT INTO events (trace_id, seq, ts_ns, op, obj, "offset", "order",
                     migratetype, pfn, cpu) VALUES (1, $q, $q, $op, $q, 0, $k, $mt, $pfn, $cpu)""",
                  {"q": q, "op": op, "k": k, "mt": mt, "pfn": pfn, "cpu": cpu})  # fmt: skip
        s.run("""INSERT INTO aux_events (trace_id, seq, event, pfn, "order", migratetype, args)
                 VALUES (1, 12, 'mm_page_alloc_extfrag', $p, 9, NULL,
                         '{"alloc_migratetype":"1","fallback_migratetype":"2"}'),
                        (1, 13, 'mm_page_alloc_zone_locked', $q, 0, 1, NULL)""",
              {"p": 4096 + 512, "q": 4096 + 1536})  # fmt: skip
        env = cast(Any, SimpleNamespace(start_pfn=4096, pages=2048))
        offs = np.array([0, 512, 1024, 1536, 1600], np.int64)
        orders = np.array([9, 9, 0, 0, 0], np.int64)
        takes = first_taken(s, 1, env, 8, offs, orders)
        first, cpu, mt = takes.first, takes.cpu, takes.mt
        types = taken_pageblock_types(s, 1, env, takes)
    never = np.iinfo(np.int64).max
    assert first.tolist() == [21, 25, 23, 26, never]  # 2 * seq + 1; a refill 2 * seq
    assert cpu.tolist() == [1, 0, 0, -1, -1] and mt.tolist() == [1, 1, 0, 1, -1]
    assert types.tolist() == [1, 2, 0, 1]  # ... of a RECLAIMABLE pageblock


def _pcp_runs(s: Store, name: str, key: str, tmp_path: Path) -> dict[bool, dict[Any, int]]:
    """A small mobility+pcp model (high 32, batch 8) run over trace ``name`` with the
    recorded input ``key`` off and on: per run, each step's pcp pages by seq, and under
    "bulk" the run's pcp bulk frees."""
    runs: dict[bool, dict[Any, int]] = {}
    for on in (False, True):
        toml = tmp_path / f"{name}-{on}.toml"
        cfg = {"model": "mobility", "pcp": True, "pcp_high": 32, "pcp_batch": 8, key: on}
        toml.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in cfg.items()))
        r = engine.run(s, name, load_model(str(toml)), zone_pages=1 << 15, every=1)
        runs[on] = {q["seq"]: q["pcp_pages"] for q in s.query(
            "SELECT seq, pcp_pages FROM steps WHERE run_id = $r", {"r": r.run_id}
        ).to_pylist()}  # fmt: skip
        bulk = s.one("SELECT pcp_bulk_frees FROM runs WHERE run_id = $r", {"r": r.run_id})
        runs[on]["bulk"] = int(bulk[0])
    return runs


def test_the_kernels_pcp_bulk_frees_are_an_input(tmp_path: Path) -> None:
    """Each run of mm_page_pcpu_drain on one cpu with no page event of that cpu between
    (one free_pcppages_bulk) is a recorded bulk free: on that cpu, that many pages, the
    list of its first page first, before the cpu's next page event. Runs in no modelled
    zone, and drain_all_pages after direct reclaim, are not. With recorded_pcp_frees
    the model's lists give pages back there and only there: past pcp->high they keep
    growing, as the kernel's did."""
    t = _Trace()
    add, alloc = t.add, t.alloc
    gfp = "gfp_flags=GFP_HIGHUSER_MOVABLE"

    def drain(task: str, cpu: int, pfn: int, order: int = 0) -> None:
        add(task, cpu, "mm_page_pcpu_drain", f"page=0 pfn={pfn:#x} order={order} migratetype=1")

    for i in range(60):  # cpu 0: 60 pages allocated, then freed onto its pcp list
        alloc("a-10", 0, 0x1000 + i, 0)
    for i in range(60):
        add("a-10", 0, "mm_page_free", f"page=0 pfn={0x1000 + i:#x} order=0")
    for i in range(20):  # the last free found the list at high: 20 pages back
        drain("a-10", 0, 0x1000 + i)
    add("b-20", 1, "mm_page_free", "page=0 pfn=0x3000 order=1")  # cpu 1: cpu 0's run goes on
    alloc("a-10", 0, 0x2000, 0)
    drain("b-20", 1, 0x3000, 1)
    drain("b-20", 1, 0x9000000)  # outside the zone
    add("b-20", 1, "mm_vmscan_direct_reclaim_begin", f"order=0 {gfp}")
    add("b-20", 1, "mm_vmscan_direct_reclaim_end", "nr_reclaimed=0")
    drain("b-20", 1, 0x9000001)  # drain_all_pages from cpu 1, another zone's lists first:
    for i in range(20, 30):  # not a bulk free of cpu 1's lists, in any zone
        drain("b-20", 1, 0x1000 + i)
    alloc("b-20", 1, 0x1020, 0)
    add("a-10", 0, "mm_page_free", "page=0 pfn=0x2000 order=0")
    trace = t.write(tmp_path / "bulk.txt")
    with Store(tmp_path / "b.duckdb") as s:
        tid, total = _ingested(s, trace, "bulk")

        def seq_of(pid: int, pfn: int, op: str = "alloc") -> int:
            q = "SELECT seq FROM events WHERE trace_id = $t AND pid = $p AND pfn = $f AND op = $o"
            return int(s.one(q, {"t": tid, "p": pid, "f": pfn, "o": op})[0])

        zone = ((0, 1 << 20),)
        got = recorded.recorded_pcp_frees(s, tid, 0, total, zone)
        # cpu 0's run goes before the next page event (cpu 1's free of 0x3000, which
        # does not end the run); cpu 1's order-1 page (pindex 4) before the retry after
        # reclaim; its drain_all is not here, nor the page outside the zone
        after_run = seq_of(20, 0x3000, "free")
        assert got == [(after_run, "pcp_bulk", (0, 0, 20, 1)),
                       (seq_of(20, 0x1020), "pcp_bulk", (0, 1, 2, 4))]  # fmt: skip
        assert recorded.recorded_pcp_frees(s, tid, after_run, total, zone) == got[1:]
        runs = _pcp_runs(s, "bulk", "recorded_pcp_frees", tmp_path)
    # without: the list never holds more than pcp->high; with: all 60 frees stay on it
    # (with what the allocations' refills left) until the kernel's bulk free gives 20
    # back, before cpu 1's free adds its order-1 page
    last_free = after_run - 1
    assert runs[False][last_free] < 32 and runs[False]["bulk"] > 2
    assert runs[True][last_free] >= 60
    assert runs[True][after_run] == runs[True][last_free] - 20 + 2
    assert runs[True]["bulk"] == 2


def test_the_kernels_pcp_refills_are_an_input(tmp_path: Path) -> None:
    """Each run of mm_page_alloc_zone_locked with percpu_refill=1 on one cpu with no page
    event of that cpu between (one rmqueue_bulk) is a recorded refill: that cpu's list of
    the run's order and type takes that many blocks from the buddy before the cpu's next
    page event. Runs in no modelled zone, and zone-locked allocations that are no refill,
    are not. With recorded_pcp_refills the model's lists take exactly those blocks; a
    list the model finds empty without one takes a single block, not a batch."""
    t = _Trace()
    add, alloc = t.add, t.alloc

    def locked(task: str, cpu: int, pfn: int, order: int = 0, refill: int = 1) -> None:
        add(task, cpu, "mm_page_alloc_zone_locked",
            f"page=0 pfn={pfn:#x} order={order} migratetype=1 percpu_refill={refill}")  # fmt: skip

    alloc("c-30", 1, 0x6000, 4)  # no pcp order: from the buddy (an action needs a seq > 0)
    for i in range(5):  # cpu 0: rmqueue_bulk takes 5 order-0 blocks, the request one
        locked("a-10", 0, 0x1000 + i)
    alloc("a-10", 0, 0x1000, 0)
    for i in range(3):  # cpu 1: 3 order-1 blocks; cpu 0's allocation does not end the run
        locked("b-20", 1, 0x2000 + 2 * i, 1)
        if i == 0:
            alloc("a-10", 0, 0x1001, 0)
    alloc("b-20", 1, 0x2000, 1)
    locked("b-20", 1, 0x9000000)  # outside the zone
    locked("b-20", 1, 0x3000, 2, refill=0)  # rmqueue_buddy: no refill
    alloc("b-20", 1, 0x3000, 2)
    alloc("a-10", 0, 0x4000, 0)  # the kernel's list had pages: no refill traced
    alloc("b-20", 1, 0x4100, 0)  # nor here, where the model's list is empty
    trace = t.write(tmp_path / "refill.txt")
    with Store(tmp_path / "r.duckdb") as s:
        tid, total = _ingested(s, trace, "refill")

        def seq_of(pid: int, pfn: int) -> int:
            q = "SELECT seq FROM events WHERE trace_id = $t AND pid = $p AND pfn = $f"
            return int(s.one(q, {"t": tid, "p": pid, "f": pfn})[0])

        zone = ((0, 1 << 20),)
        got = recorded.recorded_pcp_refills(s, tid, 0, total, zone)
        assert got == [(seq_of(10, 0x1000), "pcp_refill", (0, 0, 0, 1, 5)),
                       (seq_of(20, 0x2000), "pcp_refill", (0, 1, 1, 1, 3))]  # fmt: skip
        assert recorded.recorded_pcp_refills(s, tid, seq_of(10, 0x1000), total, zone) == got[1:]
        runs = _pcp_runs(s, "refill", "recorded_pcp_refills", tmp_path)
        first, second, last = seq_of(10, 0x1000), seq_of(20, 0x2000), seq_of(10, 0x4000)
        empty = seq_of(20, 0x4100)
    # without: a batch of 8 blocks for cpu 0's first request (7 left); with: the
    # kernel's 5 (4 left), then cpu 0's second request takes one (3 left) and cpu 1's
    # order-1 list the kernel's 3 blocks (2 left, 4 pages); cpu 0's last request takes
    # one more of its list
    assert runs[False][first] == 7 and runs[True][first] == 4
    assert runs[True][second] == 3 + 2 * 2
    assert runs[True][last] == runs[True][second] - 1
    # a list the model finds empty with no refill recorded: one block, taken at once
    assert runs[True][empty] == runs[True][last] and runs[False][empty] > runs[False][last]


def test_a_released_part_of_an_isolated_block_is_no_migration(tmp_path: Path) -> None:
    """At a pass's end the compacting task gives back the free pages it isolated and did
    not use (``release_free_list``): a part of a block whose last event (its free) named
    the block's first page only. The page was free just before, though no event names
    its own pfn, so its free is a free, not a migration; the allocated folio the task
    frees in the pass is one."""
    t = _Trace()
    gfp = "gfp_flags=GFP_HIGHUSER_MOVABLE"

    def add(task: str, event: str, body: str) -> None:
        t.add(task, 0, event, body)

    zone = "zone_start=0x0 migrate_pfn=0x0 free_pfn=0x7e00 zone_end=0x8000,"
    add("u-10", "mm_page_alloc", f"page=00000000deadbeef pfn=0x1000 order=0 migratetype=1 {gfp}")
    add("u-10", "mm_page_alloc", f"page=00000000deadbeef pfn=0x6000 order=3 migratetype=1 {gfp}")
    add("u-10", "mm_page_free", "page=0 pfn=0x6000 order=3")  # [0x6000, 0x6008) free
    add("c-30", "mm_compaction_begin", f"{zone} mode=sync")
    add("c-30", "mm_page_free", "page=0 pfn=0x1000 order=0")  # the migrated folio's old page
    add("c-30", "mm_page_free", "page=0 pfn=0x6004 order=2")  # released: isolated, unused
    add("c-30", "mm_compaction_end", f"{zone} mode=sync status=complete")
    trace = t.write(tmp_path / "release.txt")
    with Store(tmp_path / "r.duckdb") as s:
        tid, total = _ingested(s, trace, "release")
        frees = s.query("SELECT seq, pfn FROM events WHERE trace_id = $t AND op = 'free'"
                        " AND pid = 30 ORDER BY seq", {"t": tid}).to_pylist()  # fmt: skip
        page_mt = np.full(1 << 15, MIGRATE_MOVABLE, np.int8)  # all allocated at the fork
        _y, _x, seqs = recorded.unnamed_migrations(
            s, tid, 0, total, 0, page_mt, np.zeros(0, np.int64), np.zeros(0, np.int64)
        )
    assert [f["pfn"] for f in frees] == [0x1000, 0x6004]
    assert seqs.tolist() == [frees[0]["seq"]]


def test_the_kernels_compaction_deferral_is_an_input(tmp_path: Path) -> None:
    """mm_compaction_defer_compaction / _deferred / _defer_reset trace the zone's
    compact_considered, 1 << compact_defer_shift and compact_order_failed after changing
    them; with recorded_deferrals the model's zone takes that state there. A zone half
    free in order-0 holes: an order-9 request needs direct compaction, which the model
    runs on its own, skips where the kernel had deferred it (order_failed 9, limit 64),
    and runs again after the kernel's reset."""
    t = _Trace()
    for p in range(0, 4096):
        t.alloc("a-10", 0, p, 0)
    for p in range(0, 4096, 2):
        t.add("a-10", 0, "mm_page_free", f"page=0 pfn={p:#x} order=0")
    defer = "node=0 zone=Normal order=9 order_failed=9 consider=0 limit=64"
    reset = "node=0 zone=Normal order=9 order_failed=10 consider=0 limit=1"
    t.add("b-20", 1, "mm_compaction_defer_compaction", defer)
    t.alloc("b-20", 1, 0x2000, 9)  # the kernel's pfn: outside the holes, the model's own
    t.add("b-20", 1, "mm_compaction_defer_reset", reset)
    t.alloc("b-20", 1, 0x2200, 9)
    trace = t.write(tmp_path / "defer.txt")
    with Store(tmp_path / "d.duckdb") as s:
        tid, total = _ingested(s, trace, "defer")
        first, second = (int(r["seq"]) for r in s.query(
            "SELECT seq FROM events WHERE trace_id = $t AND \"order\" = 9 ORDER BY seq",
            {"t": tid}).to_pylist())  # fmt: skip
        acts = recorded.recorded_deferrals(s, tid, 0, total + 1, (None,))
        assert acts == [(first, "defer_state", (0, 0, 6, 9)),
                        (second, "defer_state", (0, 0, 0, 10))]  # fmt: skip
        assert recorded.recorded_deferrals(s, tid, 0, total + 1, ("DMA32",)) == []
        outcomes = {}
        for on in (False, True):
            toml = tmp_path / f"defer-{on}.toml"
            cfg = {"model": "mobility", "compaction": "direct", "recorded_deferrals": on}
            toml.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in cfg.items()))
            r = engine.run(s, "defer", load_model(str(toml)), zone_pages=4096, every=1)
            outcomes[on] = [q["outcome"] for q in s.query(
                "SELECT outcome FROM steps WHERE run_id = $r AND seq IN ($a, $b) ORDER BY seq",
                {"r": r.run_id, "a": first, "b": second}).to_pylist()]  # fmt: skip
    assert outcomes[False] == ["ok", "ok"]  # the model's own compaction, never deferred
    assert outcomes[True] == ["failed", "ok"]  # deferred as the kernel's, then reset


def test_a_refill_counts_the_blocks_only_extfrag_traces(tmp_path: Path) -> None:
    """rmqueue_bulk's blocks that ``__rmqueue_steal`` took trace only
    mm_page_alloc_extfrag (6.15+; its alloc_migratetype is the list's type): they belong
    to the refill run as the zone_locked ones do. A claim's extfrag right after its
    page's zone_locked is the same block, counted once; a steal of a non-pcp order is no
    refill."""
    t = _Trace()

    def locked(pfn: int) -> None:
        t.add("a-10", 0, "mm_page_alloc_zone_locked",
              f"page=0 pfn={pfn:#x} order=0 migratetype=1 percpu_refill=1")  # fmt: skip

    def extfrag(pfn: int, order: int = 0) -> None:
        t.add("a-10", 0, "mm_page_alloc_extfrag",
              f"page=0 pfn={pfn:#x} alloc_order={order} fallback_order=8 pageblock_order=9 "
              "alloc_migratetype=1 fallback_migratetype=2 fragmenting=1 "
              "change_ownership=1")  # fmt: skip

    t.alloc("c-30", 1, 0x6000, 4)  # an action needs a seq > 0
    locked(0x1000)
    locked(0x1001)
    extfrag(0x1001)  # the claim of part of a pageblock: its zone_locked is the block
    for i in range(3):
        extfrag(0x2000 + i)  # steals
    extfrag(0x3000, 4)  # a steal for the caller (order 4): not a pcp block
    t.alloc("a-10", 0, 0x1000, 0)
    trace = t.write(tmp_path / "steal.txt")
    with Store(tmp_path / "s.duckdb") as s:
        tid, total = _ingested(s, trace, "steal")
        seq = int(s.one("SELECT seq FROM events WHERE trace_id = $t AND pfn = 4096", {"t": tid})[0])
        got = recorded.recorded_pcp_refills(s, tid, 0, total, ((0, 1 << 20),))
    assert got == [(seq, "pcp_refill", (0, 0, 0, 1, 5))]
