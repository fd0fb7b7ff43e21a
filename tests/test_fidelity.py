"""How closely a model reproduces the recorded kernel (``replay validate --model``).

The figures of replay/analysis/fidelity.py on the shipped captures of this
machine, the kernel preset's recorded inputs (its compaction where the
kernel compacted), and the comparison itself (a run against itself is
exact).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

from replay.analysis.fidelity import compare_runs
from replay.engine import recorded
from replay.engine import whatif as engine
from replay.engine.environment import first_taken, taken_pageblock_types, zone_environment
from replay.engine.observed import first_fork_seq, fork_state
from replay.models.config import load_model
from replay.store import Store
from replay.trace.ingest import ingest

TRACES = Path(__file__).resolve().parent.parent / "traces"


@pytest.fixture(scope="module")
def small_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("fid") / "f.duckdb"
    with Store(db) as s:
        for name in ("small-calm-6.18", "small-pressure-6.18"):
            ingest(s, TRACES / name, name=name)
    return db


def test_a_run_compared_with_itself_is_exact(small_db: Path, tmp_path: Path) -> None:
    db = tmp_path / "self.duckdb"
    shutil.copyfile(small_db, db)
    with Store(db) as s:
        r = engine.run(s, "small-calm-6.18", load_model("mobility+pcp"), start="observed",
                       every=50)  # fmt: skip
        f = compare_runs(s, r.run_id, r.run_id)
    assert f["failures_kernel_did_not_have"] == 0
    assert f["order3_diff_pct"] == 0 and f["order9_diff_pct"] == 0 and f["end_diff_pct"] == 0
    assert f["pcp_diff_pct"] == 0
    assert f["same_pfn_pct"] == 100.0 and f["allocations_compared"] > 1000


def test_kernel_preset_on_a_calm_capture_meets_the_targets(small_db: Path, tmp_path: Path) -> None:
    """Issue 14's targets: no failure the kernel did not have, order >= 9 and end-state
    differences at most 10%, pageblock type counts within 5%."""
    db = tmp_path / "calm.duckdb"
    shutil.copyfile(small_db, db)
    res = run_cli("validate", "small-calm-6.18", "--model", "kernel", "--db", db, "-q",
                  "-f", "json")  # fmt: skip
    assert res.code == 0, res.err
    f = res.json()
    assert f["model"] == "kernel" and f["kernel_failures"] == 0
    assert f["failures_kernel_did_not_have"] == 0
    assert f["order9_diff_pct"] <= 10 and f["end_diff_pct"] <= 10
    assert f["pageblock_worst_diff_pct"] <= 5
    # the pages on its pcp lists follow the kernel's (0.8% here with the kernel's bulk
    # frees and refills as inputs; 13.4% with its bulk frees alone, 18.6% with neither)
    assert f["pcp_diff_pct"] <= 2


def test_kernel_preset_under_pressure(small_db: Path, tmp_path: Path) -> None:
    """Under memory pressure the kernel preset is asked the kernel's 157 failed requests
    and, with the zone the kernel chose as an input, fails almost only those; a plain
    mobility model fails ten times more (docs/fidelity.md). With recorded_compaction the
    model compacts where the kernel did: every compaction of the zone after the fork."""
    db = tmp_path / "pressure.duckdb"
    shutil.copyfile(small_db, db)
    with Store(db) as s:
        from replay.analysis.fidelity import model_fidelity

        k = model_fidelity(s, "small-pressure-6.18", load_model("kernel"), every=100)
        m = model_fidelity(s, "small-pressure-6.18", load_model("mobility"), every=100)
        toml = tmp_path / "recorded.toml"
        toml.write_text('model = "mobility"\nzone_choice = "trace"\nrecorded_compaction = true\n')
        rc = engine.run(s, "small-pressure-6.18", load_model(str(toml)), start="observed",
                        every=100)  # fmt: skip
        recorded = s.one(
            """SELECT count(*) FROM model_events WHERE run_id = $r AND kind = 'compact_recorded'""",
            {"r": rc.run_id},
        )[0]
        begins = s.one(
            """SELECT count(*) FROM aux_events a JOIN traces t USING (trace_id)
               WHERE t.name = 'small-pressure-6.18' AND a.event = 'mm_compaction_begin'
                 AND hexint(a.args->>'zone_start') = t.zone_start_pfn
                 AND a.line > (SELECT min(line) FROM events e WHERE e.trace_id = t.trace_id
                               AND e.seq = $s)""",
            {"s": k["start_seq"]},
        )[0]
    assert k["kernel_failures"] == 157
    assert k["failures_kernel_did_not_have"] <= 10 < 10 * 10 <= m["failures_kernel_did_not_have"]
    assert k["order3_diff_pct"] < m["order3_diff_pct"] and k["order3_diff_pct"] <= 10
    # with the recorded passes' batch ranges and their captures (24% before)
    assert k["order9_diff_pct"] <= 10
    assert k["pageblock_worst_diff_pct"] <= 5
    assert recorded == begins > 0  # every compaction the kernel ran in this zone


def _kernel_passes(s: Store, name: str) -> tuple[int, Any, int, list[Any]]:
    """Trace ``name``'s id, the kernel preset's zone for it, its event count and the
    actions of every recorded compaction pass over the whole trace."""
    tid = s.trace_id(name)
    env = zone_environment(s, tid, load_model("kernel"), None)
    total = int(s.one("SELECT events FROM traces WHERE trace_id = $t", {"t": tid})[0])
    return tid, env, total, recorded.recorded_compactions(s, tid, env, 0, total, total)


def test_recorded_direct_compactions_capture_for_the_kernels_allocation(
    small_db: Path, tmp_path: Path
) -> None:
    """The user tasks' direct compactions on the pressure capture capture (not
    kcompactd's); the allocation each task made right after its pass is flagged to take
    the captured block, and the kernel preset puts at least half of those on the pfn the
    kernel gave them (the captured block just behind the kernel's migration scanner)."""
    db = tmp_path / "cap.duckdb"
    shutil.copyfile(small_db, db)
    name = "small-pressure-6.18"
    with Store(db) as s:
        tid, _env, _total, acts = _kernel_passes(s, name)
        begins = s.query(
            "SELECT line, comm FROM aux_events WHERE trace_id = $t "
            "AND event = 'mm_compaction_begin'",
            {"t": tid},
        ).to_pylist()
        comm = {q["line"]: q["comm"] for q in begins}
        ends = [a[2] for a in acts if a[2][1] == recorded.PASS_END]
        for arg in ends:
            assert (arg[10] != -1) == (arg[2] > 0 and not recorded.is_kthread(comm[arg[0]]))
        takers = sorted({arg[10] for arg in ends if arg[10] >= 0})
        assert len(takers) >= 5
        r = engine.run(s, name, load_model("kernel"), start="observed", every=100)
        q = ",".join(map(str, takers))
        kernel = {
            x["seq"]: x["pfn"]
            for x in s.query(
                f"SELECT seq, pfn FROM events WHERE trace_id = {tid} AND seq IN ({q})"
            ).to_pylist()
        }
        model = {
            x["seq"]: x["pfn"]
            for x in s.query(
                f"SELECT seq, pfn FROM steps WHERE run_id = {r.run_id} AND seq IN ({q})"
            ).to_pylist()
        }
    same = sum(1 for x in takers if kernel[x] == model[x])
    assert 2 * same >= len(takers), (same, len(takers))


def test_recorded_compaction_follows_the_kernels_migrations(
    capture_db: Path, tmp_path: Path
) -> None:
    """The shipped capture's compact_memory pass: with recorded_compaction the model
    compacts there itself; of the frees the echo task made inside the pass (126k
    migrated pages' old homes), those of folios the ptes name (set_/remove_migration_pte)
    and those of the unmapped folios the pass migrated (replay.engine.recorded) are not
    frees of the model's objects, and such an object is freed where the trace frees its
    new pfn."""
    db = tmp_path / "c.duckdb"
    shutil.copyfile(capture_db, db)
    toml = tmp_path / "rc.toml"
    toml.write_text('model = "mobility"\nrecorded_compaction = true\n')
    with Store(db) as s:
        r = engine.run(s, "compact", load_model(str(toml)), start="observed")
        # each pass: a begin and the next end of the same task (any zone)
        marks = s.query(
            """SELECT pid, line, event FROM aux_events
               WHERE event IN ('mm_compaction_begin', 'mm_compaction_end') ORDER BY line"""
        ).to_pylist()
        windows, open_at = [], {}
        for m in marks:
            if m["event"] == "mm_compaction_begin":
                open_at[m["pid"]] = m["line"]
            elif m["pid"] in open_at:
                windows.append((m["pid"], open_at.pop(m["pid"]), m["line"]))
        frees = s.query(
            "SELECT pid, line, seq FROM events WHERE op = 'free' AND seq >= $lo",
            {"lo": r.start_seq},
        ).to_pylist()
        inside = {
            f["seq"] for f in frees
            if any(f["pid"] == pid and b < f["line"] < e for pid, b, e in windows)
        }  # fmt: skip
        tid = s.trace_id("compact")
        _y, _x, dropped = recorded.migration_links(s, tid)
        env = zone_environment(s, tid, load_model(str(toml)), None)
        fork = fork_state(s, tid, env.start_pfn, env.pages)
        total = int(s.one("SELECT events FROM traces WHERE trace_id = $t", {"t": tid})[0])
        every = recorded.migration_map(s, tid, fork.seq, total, env.start_pfn, fork.page_mt)
        steps = s.one(
            "SELECT count(*) FROM steps WHERE run_id = $r AND pfn IS NULL", {"r": r.run_id}
        )[0]
        kinds = (
            s.query("SELECT DISTINCT kind FROM model_events WHERE run_id = $r", {"r": r.run_id})
            .column("kind")
            .to_pylist()
        )
    assert len(inside) > 100_000
    run_dropped = {int(q) for q in dropped if q >= r.start_seq}
    # the frees of the old folios the ptes name are left out (all inside the pass here)
    assert 1000 < len(run_dropped) < len(inside) and run_dropped <= inside
    # and those of the folios no pte names (page cache), matched by the pass's frees
    all_dropped = set(every.seqs.tolist())
    assert run_dropped < all_dropped <= inside and len(all_dropped) > 100_000
    assert steps == len(frees) - len(all_dropped)  # free steps: pfn is NULL
    assert "compact_recorded" in kinds


def test_migrated_objects_are_freed_at_their_new_pfn(small_db: Path, tmp_path: Path) -> None:
    """Under pressure the kernel migrated mapped pages and later freed some at their new
    pfns: those frees name objects never allocated in the trace; the kernel preset frees
    the migrated objects there, where a run without recorded compaction cannot place
    them (an ignored free)."""
    db = tmp_path / "links.duckdb"
    shutil.copyfile(small_db, db)
    toml = tmp_path / "norec.toml"
    toml.write_text('model = "mobility"\npcp = true\npcp_tuning = true\n'
                    'zone_choice = "trace"\ncompaction = "direct"\n')  # fmt: skip
    with Store(db) as s:
        tid = s.trace_id("small-pressure-6.18")
        y_obj, x_obj, dropped = recorded.migration_links(s, tid)
        allocated = set(
            s.query("SELECT DISTINCT obj FROM events WHERE trace_id = $t AND op = 'alloc'",
                    {"t": tid}).column("obj").to_pylist()
        )  # fmt: skip
        # every left-out free is a free (of an old folio, by the task that migrated it)
        kinds = (
            s.query(
                """SELECT DISTINCT op FROM events WHERE trace_id = $t AND seq IN
               (SELECT unnest($q::BIGINT[]))""",
                {"t": tid, "q": dropped.tolist()},
            )
            .column("op")
            .to_pylist()
        )
        k = engine.run(s, "small-pressure-6.18", load_model("kernel"), start="observed")
        off = engine.run(s, "small-pressure-6.18", load_model(str(toml)), start="observed")
        # the new homes' frees in the run's zone, after the fork
        y_run, _x, _d = recorded.migration_links(s, tid, k.start_seq)
        y_seqs = s.query(
            """SELECT seq FROM events WHERE trace_id = $t AND op = 'free' AND pfn >= $zs
                 AND pfn < $ze AND obj IN (SELECT unnest($y::BIGINT[]))""",
            {"t": tid, "y": y_run.tolist(), "zs": k.zone_start_pfn,
             "ze": k.zone_start_pfn + k.zone_pages},
        ).column("seq").to_pylist()  # fmt: skip

        def outcomes(run_id: int) -> list[str]:
            return (
                s.query(
                    "SELECT outcome FROM steps WHERE run_id = $r AND seq IN "
                    "(SELECT unnest($q::BIGINT[])) ORDER BY seq",
                    {"r": run_id, "q": y_seqs},
                )
                .column("outcome")
                .to_pylist()
            )

        got_k, got_off = outcomes(k.run_id), outcomes(off.run_id)
    assert len(y_obj) > 50 and len(dropped) >= len(set(x_obj.tolist()))
    assert not set(y_obj.tolist()) & allocated  # the new homes: never allocated in the trace
    assert set(x_obj.tolist()).isdisjoint(set(y_obj.tolist()))  # chains followed
    assert kinds == ["free"]
    assert y_seqs and set(got_k) == {"ok"} and set(got_off) == {"ignored"}


def _bad_capture(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    shutil.copytree(TRACES / "small-calm-6.18", folder)
    return folder


def _set_zone_field(path: Path, zone: str, field: str, value: int) -> None:
    """Rewrite one zone's ``field`` (spanned, or start_pfn) in a zoneinfo file."""
    out, current = [], None
    for ln in path.read_text().splitlines():
        if ln.startswith("Node "):
            current = ln.split()[-1]
        words = ln.split()
        if current == zone and words and words[0].rstrip(":") == field:
            ln = ln[: ln.index(words[1])] + str(value)
        out.append(ln)
    path.write_text("\n".join(out) + "\n")


def test_snapshots_of_another_machine_are_refused(tmp_path: Path) -> None:
    """Snapshots that cannot be of the machine that recorded the trace: a clear error
    naming the file, the line and the field, exit 65, and no trace stored."""
    db = tmp_path / "bad.duckdb"
    # the after-zoneinfo's Normal zone starts elsewhere
    moved = _bad_capture(tmp_path, "moved")
    _set_zone_field(moved / "after.zoneinfo", "Normal", "start_pfn", 0x80000)
    # a smaller machine's zoneinfo: the trace's pfns lie past every zone
    small = _bad_capture(tmp_path, "small")
    for when in ("before", "after"):
        _set_zone_field(small / f"{when}.zoneinfo", "Normal", "spanned", 1 << 18)
    # a kpageflags shorter than the zones (read from a smaller machine)
    short = _bad_capture(tmp_path, "short")
    (short / "before.kpageflags.zst").unlink()
    (short / "before.kpageflags").write_bytes(bytes(8 * 4096))
    res = run_cli("ingest", moved, "--name", "m", "--db", db, "-q")
    assert res.code == 65 and "after.zoneinfo" in res.err and "'start_pfn'" in res.err
    assert "Normal" in res.err and "Traceback" not in res.err
    res = run_cli("ingest", small, "--name", "s", "--db", db, "-q")
    assert res.code == 65 and "trace.txt.zst:" in res.err and "'pfn'" in res.err
    assert "in no zone of before.zoneinfo and after.zoneinfo" in res.err
    line = int(res.err.split("trace.txt.zst:")[1].split(":")[0])
    assert line > 1
    res = run_cli("ingest", short, "--name", "k", "--db", db, "-q")
    assert res.code == 65 and "before.kpageflags" in res.err and "4096 pfns" in res.err
    assert not db.exists() or run_cli("list", "--db", db, "-f", "json").json() == []


def test_kernel_model_without_zoneinfo_is_a_clear_error(tmp_path: Path) -> None:
    """The kernel model starts from the kernel's state: a capture without zoneinfo
    snapshots cannot give it, and validate says so (exit 2), naming what is missing."""
    folder = _bad_capture(tmp_path, "nozi")
    for when in ("before", "after"):
        (folder / f"{when}.zoneinfo").unlink()
    db = tmp_path / "nozi.duckdb"
    assert run_cli("ingest", folder, "--name", "nozi", "--db", db, "-q").code == 0
    res = run_cli("validate", "nozi", "--model", "kernel", "--db", db, "-q")
    assert res.code == 2 and "zoneinfo" in res.err and "Traceback" not in res.err


def test_an_observed_start_has_the_kernels_list_order(small_db: Path, tmp_path: Path) -> None:
    """The rebuilt state's free and pcp lists start in the order the kernel took from
    them (environment.first_taken: its first allocation, or buddy-to-pcp refill, of each
    block after the fork), each pcp block on the cpu that allocated it where nothing
    before the fork names one: on the calm capture the kernel preset puts at least half
    of its first 100 allocations on the kernel's pfn (none with pfn-ordered lists)."""
    import numpy as np

    db = tmp_path / "order.duckdb"
    shutil.copyfile(small_db, db)
    name = "small-calm-6.18"
    with Store(db) as s:
        tid = s.trace_id(name)
        r = engine.run(s, name, load_model("kernel"), start="observed", every=1)
        same = [q["same"] for q in s.query(
            """SELECT st.pfn = e.pfn AS same FROM steps st JOIN events e
               ON e.trace_id = $t AND e.seq = st.seq
               WHERE st.run_id = $r AND e.op = 'alloc' ORDER BY st.seq LIMIT 100""",
            {"t": tid, "r": r.run_id},
        ).to_pylist()]  # fmt: skip
        env = zone_environment(s, tid, load_model("kernel"), None)
        fork = fork_state(s, tid, env.start_pfn, env.pages, r.start_seq)
        takes = recorded.fork_first_takes(s, tid, env, r.start_seq, fork)
        order = recorded.free_list_order(takes, fork.blk)
        heads = np.flatnonzero(fork.blk >= 0)
        first = first_taken(s, tid, env, r.start_seq, heads, fork.blk[heads]).first
        pcp_at = np.flatnonzero(fork.pcp > 0)
        taker = first_taken(s, tid, env, r.start_seq, pcp_at,
                            fork.pcp[pcp_at].astype(np.int64) - 1).cpu  # fmt: skip
        allocs = s.query(
            """SELECT pfn - $zs AS off, cpu FROM events WHERE trace_id = $t AND op = 'alloc'
               AND seq >= $lo AND pfn >= $zs AND pfn < $ze ORDER BY seq""",
            {"t": tid, "lo": r.start_seq, "zs": env.start_pfn, "ze": env.start_pfn + env.pages},
        ).to_pylist()
    assert len(same) == 100 and sum(same) >= 50
    # a permutation of the free blocks, in the order of their first take, the untouched
    # ones after, ascending
    assert sorted(order.tolist()) == heads.tolist()
    key = dict(zip(heads.tolist(), first.tolist(), strict=True))
    keys = [key[o] for o in order.tolist()]
    assert keys == sorted(keys) and keys[0] < np.iinfo(np.int64).max
    never = [o for o in order.tolist() if key[o] == np.iinfo(np.int64).max]
    assert never == sorted(never)
    # a pcp block's first taker: the cpu of the first allocation of one of its pages
    on_pcp = {int(o): int(c) for o, c in zip(pcp_at, taker, strict=True)}
    seen: set[int] = set()
    checked = 0
    for q in allocs:
        o = int(q["off"])
        if o in on_pcp and o not in seen and fork.pcp[o] == 1:  # order-0 pcp pages
            seen.add(o)
            assert on_pcp[o] == q["cpu"]
            checked += 1
    assert checked > 10


def test_an_observed_start_types_pageblocks_as_the_kernels_takes_show(
    small_db: Path, tmp_path: Path
) -> None:
    """A pageblock the kernel's first take after the fork (of a page free or on a pcp
    list there) served a request of type T from, with no fallback there first, is of
    type T in the model's starting state (a free page sits on its pageblock type's
    list): on the pressure capture the pageblocks the kernel's order-8 page-cache
    folios came from are MOVABLE, where the counts-and-flags guess made some
    RECLAIMABLE; pagetypeinfo's counts still hold within 5%."""

    from replay.models.internal import MIGRATE_MOVABLE, MIGRATE_PCPTYPES

    db = tmp_path / "types.duckdb"
    shutil.copyfile(small_db, db)
    name = "small-pressure-6.18"
    with Store(db) as s:
        tid = s.trace_id(name)
        env = zone_environment(s, tid, load_model("kernel"), None)
        lo = first_fork_seq(s, tid)
        fork = fork_state(s, tid, env.start_pfn, env.pages, lo)
        takes = recorded.fork_first_takes(s, tid, env, lo, fork)
        known = taken_pageblock_types(s, tid, env, takes)
        pb_mt = recorded.fork_pageblock_types(s, tid, env, fork, takes)
        pb0 = env.start_pfn >> 9
        takes = s.query(
            """SELECT (pfn >> 9) - $pb0 AS pb, migratetype AS mt FROM events
               WHERE trace_id = $t AND op = 'alloc' AND seq >= $lo AND "order" = 8
                 AND pfn >= $zs AND pfn < $ze ORDER BY seq LIMIT 50""",
            {"t": tid, "lo": lo, "pb0": pb0, "zs": env.start_pfn,
             "ze": env.start_pfn + env.pages},
        ).to_pylist()  # fmt: skip
        counts = {int(r["mt"]): int(r["n"]) for r in s.query(
            """SELECT mt, sum(nr_pageblocks) AS n FROM snap_pageblocks
               WHERE trace_id = $t AND snapshot = 'before' AND zone = $z GROUP BY mt""",
            {"t": tid, "z": env.zone},
        ).to_pylist()}  # fmt: skip
    assert ((known >= -1) & (known < MIGRATE_PCPTYPES)).all() and (known >= 0).sum() > 100
    assert (pb_mt[known >= 0] == known[known >= 0]).all()  # the takes' types stand
    first_pbs = {q["pb"] for q in takes if q["mt"] == MIGRATE_MOVABLE}
    assert first_pbs and all(pb_mt[pb] == MIGRATE_MOVABLE for pb in first_pbs if known[pb] >= 0)
    for mt, n in counts.items():
        if mt < MIGRATE_PCPTYPES and n > 20:
            assert abs(int((pb_mt == mt).sum()) - n) <= 0.05 * n


def test_a_short_forks_recorded_compactions_are_the_whole_runs_in_its_window(
    small_db: Path, tmp_path: Path
) -> None:
    """recorded_compactions reads only the passes that begin inside the run's events
    (a short fork's few): its actions are those of the whole trace's passes that begin
    in [lo, hi), their steps before hi, a capture outside the window none (-2)."""
    db = tmp_path / "window.duckdb"
    shutil.copyfile(small_db, db)
    name = "small-pressure-6.18"
    with Store(db) as s:
        tid, env, total, full = _kernel_passes(s, name)
        begin = {
            a[2][0]: a[0] for a in full if a[2][1] in (recorded.PASS_BEGIN, recorded.PASS_ONCE)
        }
        firsts = sorted(begin.values())
        assert len(firsts) > 10
        mid = firsts[len(firsts) // 2]
        windows = [(0, total), (mid, mid + 1), (mid + 1, total), (mid - 500, mid),
                   (firsts[3], firsts[7]), (total // 3, total // 3 + 2_000)]  # fmt: skip
        for lo, hi in windows:
            got = recorded.recorded_compactions(s, tid, env, lo, hi, total)
            want = []
            for seq, kind, arg in full:
                if not lo <= begin[arg[0]] < hi:
                    continue
                if (seq == recorded.AFTER_LAST and hi < total) or seq >= hi:
                    continue
                capture = arg[10]
                if capture >= 0 and not lo <= capture < hi:
                    capture = -2
                want.append((seq, kind, (*arg[:10], capture, *arg[11:])))
            assert got == want, (lo, hi)
            assert (lo, hi) != (mid, mid + 1) or got  # the window holds a pass's begin


def test_pageblock_counts_cover_the_online_pageblocks_not_the_managed_pages(
    tmp_path: Path,
) -> None:
    """pagetypeinfo counts every online pageblock of a zone, its reserved pages' (memmap)
    too, so the model's count runs over as many pageblocks from the zone's start as the
    after-snapshot counts of every type: a zone of 8 pageblocks with 2 pageblocks' worth
    of pages not managed is 8 pageblocks on both sides; the model's pageblocks past the
    online ones (memory not brought online) are left out."""
    with Store(tmp_path / "f.duckdb") as s:
        s.run("INSERT INTO runs (run_id, trace_id, model, start_seq, end_seq, zone_start_pfn) "
              "VALUES (1, 1, 'observed', 0, 9, 4096), (2, 1, 'mobility', 0, 9, 4096)")  # fmt: skip
        s.run("INSERT INTO steps_wide (run_id, seq, pfn, outcome) "
              "VALUES (1, 0, 4096, 'ok'), (2, 0, 4096, 'ok')")  # fmt: skip
        s.run("INSERT INTO snap_zoneinfo (trace_id, snapshot, node, zone, start_pfn, "
              "spanned, present, managed) "
              "VALUES (1, 'after', 0, 'Normal', 4096, 6144, 4096, 3072)")  # fmt: skip
        s.run("""INSERT INTO snap_pageblocks VALUES
                 (1, 'after', 0, 'Normal', 'Unmovable', 0, 1),
                 (1, 'after', 0, 'Normal', 'Movable', 1, 6),
                 (1, 'after', 0, 'Normal', 'Reclaimable', 2, 0),
                 (1, 'after', 0, 'Normal', 'HighAtomic', 3, 1)""")
        # the model's zone: 12 pageblocks from pfn 4096 (pageblock 8), the last four
        # offline in the kernel; one unmovable, the rest movable
        s.run("""INSERT INTO pageblocks (run_id, seq, pageblock, migratetype)
                 SELECT 2, 9, pb, CASE WHEN pb = 8 THEN 0 ELSE 1 END
                 FROM range(8, 20) t(pb)""")
        got = compare_runs(s, 1, 2)["pageblocks"]
    assert got["unmovable"] == {"kernel": 1, "model": 1, "diff_pct": 0.0}
    assert got["movable"] == {"kernel": 6, "model": 7, "diff_pct": 16.67}
    assert got["reclaimable"]["model"] == 0
