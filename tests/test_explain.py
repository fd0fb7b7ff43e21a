"""replay explain: one allocation from the state just before it (replay.analysis.explain)."""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import run_cli

from replay.analysis import explain as ex
from replay.engine import recorded
from replay.engine import whatif as engine
from replay.engine.observed import first_fork_seq, run_observed
from replay.models.config import load_model
from replay.models.internal import MIGRATE_MOVABLE, MIGRATE_UNMOVABLE
from replay.store import STEPS_TABLES, Store
from replay.trace.ingest import ingest

TRACES = Path(__file__).resolve().parent.parent / "traces"
NAME = "small-pressure-6.18"


@pytest.fixture(scope="module")
def runs_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, int]:
    """The shipped pressure capture with its observed run and a kernel-preset run (every
    step's counters kept)."""
    db = tmp_path_factory.mktemp("explain") / "e.duckdb"
    with Store(db) as s:
        ingest(s, TRACES / NAME, name=NAME)
        obs = run_observed(s, NAME, every=1, pageblock_every=0)
        k = engine.run(s, NAME, load_model("kernel"), start="observed", every=1,
                       pageblock_every=0)  # fmt: skip
    # what replay run prints names the preset, not only its base model
    assert (k.model, k.summary()["preset"]) == ("mobility", "kernel")
    return db, int(obs["run_id"]), k.run_id


def _copy(src: Path, tmp_path: Path) -> Path:
    db = tmp_path / "x.duckdb"
    shutil.copyfile(src, db)
    return db


def _step_before(s: Store, run_id: int, seq: int) -> dict[str, object]:
    return s.query(
        """SELECT * FROM steps WHERE run_id = $r AND seq < $s AND free_pages IS NOT NULL
           ORDER BY seq DESC LIMIT 1""",
        {"r": run_id, "s": seq},
    ).to_pylist()[0]


def _allocs(s: Store, run_id: int, outcome: str) -> list[int]:
    return (
        s.query(
            """SELECT s.seq FROM steps s JOIN events e ON e.seq = s.seq AND e.op = 'alloc'
               WHERE s.run_id = $r AND s.outcome = $o ORDER BY s.seq""",
            {"r": run_id, "o": outcome},
        )
        .column("seq")
        .to_pylist()
    )


def test_state_is_the_stored_step_before_and_the_own_fork_repeats_the_outcome(
    runs_db: tuple[Path, int, int], tmp_path: Path
) -> None:
    """For a model's run: the state just before N is the run's step before N (nr_free,
    free and pcp pages), and the run's own model forked from that state serves or
    fails N as the run did; the forks start at N."""
    db = _copy(runs_db[0], tmp_path)
    k_run = runs_db[2]
    with Store(db) as s:
        failed = _allocs(s, k_run, "failed")
        served = _allocs(s, k_run, "ok")
        for seq in (failed[len(failed) // 2], served[len(served) // 3]):
            out = ex.explain(s, k_run, seq, models=["mobility"], horizon=50)
            before = _step_before(s, k_run, seq)
            st = out["state"]
            assert st["nr_free"] == [before[f"nr_free_{o}"] for o in range(11)]
            assert st["free_pages"] == before["free_pages"]
            assert st["pcp_pages"] == before["pcp_pages"]
            own, fork, other = out["counterfactuals"]
            assert own["own"] and own["run_id"] == k_run
            assert own["outcome"] == ("failed" if seq in failed else "ok")
            assert fork["model"] == "kernel" and fork["outcome"] == own["outcome"]
            # mobility, from the kernel preset's state: fails the order-8 request too, and
            # serves the order-0 one (from its buddy lists: the kernel preset's pcp list
            # need not hold a page of the block the buddy's list heads)
            assert (other["model"], other["outcome"]) == ("mobility", own["outcome"])
            assert (other["pfn"] >= 0) == (own["pfn"] >= 0)
            first = s.one("SELECT min(seq) FROM steps WHERE run_id = $r", {"r": fork["run_id"]})
            assert first[0] == seq
    assert failed and served


def test_observed_run_state_and_forks_from_the_kernels_state(
    runs_db: tuple[Path, int, int], tmp_path: Path
) -> None:
    """For the observed run: the kernel's rebuilt state before N (its stored step), the
    kernel's own outcome, each model forked from that same real state. The README's
    worked example, figure for figure: the first failure (58107), an order-8 movable
    page-cache folio for dd, failed with 18,276 free pages (5,835 on pcp lists), above
    the min watermark but with no free block of order 8: every watermark check fails,
    compaction_suitable skips (18,276 <= low + compact_gap 20,675); the nearest order-8
    blocks are whole pageblocks of pages on a pcp list; every default model serves it
    (the first from the first of those), mobility+compaction migrating 2,048 pages."""
    db = _copy(runs_db[0], tmp_path)
    obs_run = runs_db[1]
    with Store(db) as s:
        seq = _allocs(s, obs_run, "failed")[0]
        out = ex.explain(s, obs_run, seq)  # the default models, 1000 events on
        before = _step_before(s, obs_run, seq)
    req, st = out["request"], out["state"]
    assert (seq, req["order"], req["migratetype"], req["comm"], req["outcome"]) == (
        58107, 8, "movable", "dd", "failed")  # fmt: skip
    allows = (req["direct_reclaim"], req["compaction"], req["highest_zone"])
    assert allows == (True, True, "Movable")
    assert st["nr_free"] == [before[f"nr_free_{o}"] for o in range(11)]
    assert st["nr_free"] == [92, 54, 49, 5, 3, 32, 98, 82, 0, 0, 0]
    assert (st["free_pages"], st["pcp_pages"]) == (before["free_pages"], before["pcp_pages"])
    assert (st["free_pages"], st["pcp_pages"]) == (18276, 5835)
    assert st["watermarks"] == {"min": 14769, "low": 20163, "high": 25557}
    assert st["watermark_ok"] == {"min": False, "low": False, "high": False}
    assert (st["unusable_index"], st["fragmentation_index"]) == (1000, 826)
    assert st["compaction_suitable"] == {
        "verdict": "skipped", "reason": "free pages 18276 <= watermark + compact_gap 20675",
        "extfrag_threshold": 500}  # fmt: skip
    cands = out["candidates"]
    assert [(c["pfn"], c["pcp_pages"], c["to_migrate"], c["possible"]) for c in cands[:4]] == [
        (1055744 + i * 256, 256, 0, True) for i in range(4)]  # fmt: skip
    rows = {r["model"]: r for r in out["counterfactuals"]}
    assert list(rows) == ["observed", *ex.DEFAULT_MODELS]
    assert (rows["observed"]["outcome"], rows["observed"]["migrated"]) == ("failed", 89)
    assert all(rows[m]["outcome"] == "ok" for m in ex.DEFAULT_MODELS)
    assert rows["mobility+pcp"]["pfn"] == cands[0]["pfn"]
    assert rows["mobility+compaction"]["migrated"] == 1376


def test_rank_puts_failures_first(runs_db: tuple[Path, int, int], tmp_path: Path) -> None:
    db = _copy(runs_db[0], tmp_path)
    res = run_cli("explain", str(runs_db[1]), "--top", "200", "--db", db, "-f", "json")
    assert res.code == 0, res.err
    rows = res.json()
    n_failed = sum(r["outcome"] == "failed" for r in rows)
    assert n_failed == 157 or (n_failed == 200 and len(rows) == 200)
    assert all(r["outcome"] == "failed" for r in rows[:n_failed])
    assert [r["seq"] for r in rows[:n_failed]] == sorted(r["seq"] for r in rows[:n_failed])


def test_cli_table_and_bad_input(runs_db: tuple[Path, int, int], tmp_path: Path) -> None:
    """A table with every section; a free, a seq outside the run, or an unknown run: a
    clear error, exit 65."""
    db = _copy(runs_db[0], tmp_path)
    with Store(db) as s:
        seq = _allocs(s, runs_db[1], "failed")[0]
        free_seq = s.one("SELECT min(seq) FROM events WHERE op = 'free' AND seq > $s",
                         {"s": seq})[0]  # fmt: skip
        total = s.one("SELECT events FROM traces")[0]
    res = run_cli("explain", str(runs_db[1]), "--seq", str(seq), "--models", "mobility",
                  "--horizon", "10", "--db", db)  # fmt: skip
    assert res.code == 0, res.err
    for section in ("request", "state", "nr_free", "candidates", "counterfactuals"):
        assert section in res.out
    res = run_cli("explain", str(runs_db[1]), "--seq", str(free_seq), "--db", db)
    assert res.code == 65 and "is a free, not an allocation" in res.err
    res = run_cli("explain", str(runs_db[1]), "--seq", str(total + 5), "--db", db)
    assert res.code == 65 and "no event with seq" in res.err
    res = run_cli("explain", "9999", "--seq", str(seq), "--db", db)
    assert res.code == 65 and "no run 9999" in res.err
    assert "Traceback" not in res.err


@pytest.mark.parametrize(
    ("gfp", "order", "direct", "compaction", "zone"),
    [
        ("GFP_KERNEL|__GFP_COMP", 3, True, True, "Normal"),
        ("GFP_KERNEL", 0, True, False, "Normal"),
        ("GFP_NOIO", 2, True, False, "Normal"),
        ("GFP_ATOMIC|__GFP_NOWARN", 1, False, False, "Normal"),
        ("GFP_TRANSHUGE_LIGHT", 9, False, False, "Movable"),
        ("GFP_TRANSHUGE", 9, True, True, "Movable"),
        ("GFP_HIGHUSER_MOVABLE|__GFP_COMP", 2, True, True, "Movable"),
        ("GFP_KERNEL|GFP_DMA32", 0, True, False, "DMA32"),
        ("0xcc0", 1, True, True, "Normal"),  # GFP_KERNEL as a raw mask
        (None, 4, True, True, "Normal"),
    ],
)
def test_gfp_allows(gfp: str | None, order: int, direct: bool, compaction: bool, zone: str) -> None:
    a = ex.gfp_allows(gfp, order)
    assert (a["direct_reclaim"], a["compaction"], a["highest_zone"]) == (direct, compaction, zone)


def test_candidates_by_what_freeing_takes() -> None:
    """Order-2 blocks of a 16-page zone at pfn 4: one free, one with a movable page
    (migrate 1), one with a reclaimable page (reclaim 1), one pinned by an unmovable
    page; ranked in that order, the pinned one naming its page."""
    pages = 16
    state = np.full(pages, ex.FREE, np.int8)
    mt = np.full(pages, -1, np.int8)
    mov = np.zeros(pages, np.bool_)
    rec = np.zeros(pages, np.bool_)
    state[4], mt[4], mov[4] = ex.ALLOCATED, MIGRATE_MOVABLE, True  # block 1 (pfn 8)
    state[9], mt[9], rec[9] = ex.ALLOCATED, 2, True  # block 2 (pfn 12)
    state[13], mt[13] = ex.ALLOCATED, MIGRATE_UNMOVABLE  # block 3 (pfn 16)
    state[1] = ex.PCP  # block 0 (pfn 4): 3 free + 1 pcp
    free_order = np.full(pages, -1, np.int8)
    view = ex.PageView(4, state, free_order, mt, mov, rec, np.zeros(1, np.int8), 1)
    c = ex.candidates(view, 2, top=4)
    assert [x["pfn"] for x in c] == [4, 8, 12, 16]
    assert (c[0]["pcp_pages"], c[0]["to_migrate"], c[0]["possible"]) == (1, 0, True)
    assert (c[1]["to_migrate"], c[1]["allocated"]["movable"]) == (1, 1)
    assert (c[2]["to_reclaim"], c[2]["possible"]) == (1, True)
    assert (c[3]["possible"], c[3]["blocked_by_pfn"], c[3]["pinned_pages"]) == (False, 17, 1)


def test_candidate_maps_agree_with_their_counts(
    runs_db: tuple[Path, int, int], tmp_path: Path
) -> None:
    """Each candidate's pageblock map (a letter per page) holds the candidate block at its
    offset, and the block's letters are the candidate's counts: free, pcp, to migrate, to
    reclaim, pinned; the map covers whole pageblocks of the zone."""
    db = _copy(runs_db[0], tmp_path)
    with Store(db) as s:
        for run_id in (runs_db[1], runs_db[2]):
            seqs = _allocs(s, run_id, "failed" if run_id == runs_db[2] else "ok")
            seq = seqs[len(seqs) // 2]
            out = ex.explain(s, run_id, seq, models=[], horizon=0)
            k = out["request"]["order"]
            assert out["candidates"]
            for c in out["candidates"]:
                m, off = c["map"], c["map_offset"]
                assert c["map_pfn"] + off == c["pfn"] and c["map_pfn"] % 512 == 0
                assert len(m) % 512 == 0 and set(m) <= set(ex.MAP_LETTERS.values())
                block = m[off : off + (1 << k)]
                assert len(block) == 1 << k
                assert block.count("F") == c["free_pages"] and block.count("P") == c["pcp_pages"]
                assert block.count("M") == c["to_migrate"]
                assert block.count("R") == c["to_reclaim"]
                assert block.count("U") + block.count("H") == c["pinned_pages"]


def test_a_fork_is_explained_from_the_state_it_was_forked_from(
    runs_db: tuple[Path, int, int], tmp_path: Path
) -> None:
    """A counterfactual fork records the run it forked from; explaining an allocation of
    the fork rebuilds the parent's model state at the fork's seq, then the fork's own
    replay: its state is the fork's stored step before N (not the kernel's state)."""
    db = _copy(runs_db[0], tmp_path)
    k_run = runs_db[2]
    with Store(db) as s:
        served = _allocs(s, k_run, "ok")
        seq = served[len(served) // 2]
        out = ex.explain(s, k_run, seq, models=["mobility"], horizon=400)
        fork = next(c for c in out["counterfactuals"] if c["model"] == "mobility")
        info = ex.run_info(s, fork["run_id"])
        assert info.forked_from == k_run and info.start_seq == seq
        later = [q for q in _allocs(s, fork["run_id"], "ok") if q > seq + 100]
        assert later
        n = later[0]
        again = ex.explain(s, fork["run_id"], n, models=[], horizon=0)
        before = _step_before(s, fork["run_id"], n)
        assert again["state"]["nr_free"] == [before[f"nr_free_{o}"] for o in range(11)]
        assert again["state"]["pcp_pages"] == before["pcp_pages"]


def test_forks_of_a_run_on_a_trace_without_snapshots_keep_its_zone(tmp_path: Path) -> None:
    """A trace without zoneinfo whose pfns start far from 0: its zone is its pfn span, and
    explain's counterfactuals fork in that zone (they were given --zone-pages, a zone at
    pfn 0, and refused: 'a fork from a model's state starts at its seq, in its zone')."""
    rng = np.random.default_rng(3)
    base, lines, live, ts = 0x140000, [], [], 100.0
    for i in range(400):
        ts += 0.0001
        if live and rng.random() < 0.4:
            pfn, order = live.pop(int(rng.integers(len(live))))
            lines.append(f"  w-{9} [000] .....  {ts:.6f}: mm_page_free: page=0000000000000001 "
                         f"pfn=0x{pfn:x} order={order}")  # fmt: skip
            continue
        order = int(rng.integers(0, 3))
        pfn = base + (i << 3)
        live.append((pfn, order))
        lines.append(f"  w-{9} [000] .....  {ts:.6f}: mm_page_alloc: page=0000000000000001 "
                     f"pfn=0x{pfn:x} order={order} migratetype={int(rng.integers(0, 2))} "
                     "gfp_flags=GFP_KERNEL")  # fmt: skip
    trace = tmp_path / "far.txt"
    trace.write_text("\n".join(lines) + "\n")
    db = tmp_path / "far.duckdb"
    assert run_cli("ingest", trace, "--name", "far", "--db", db, "-q").code == 0
    r = run_cli("run", "far", "-m", "mobility", "--db", db, "-q", "-f", "json")
    assert r.code == 0, r.err
    run_id = int(r.json()["run_id"])
    with Store(db) as s:
        seq = _allocs(s, run_id, "ok")[-5]
        out = ex.explain(s, run_id, seq, models=["mobility+compaction"], horizon=3)
    own, fork = out["counterfactuals"][1], out["counterfactuals"][2]
    assert own["outcome"] == out["counterfactuals"][0]["outcome"] == "ok"
    assert own["pfn"] == out["counterfactuals"][0]["pfn"] >= base
    assert fork["model"] == "mobility+compaction" and fork["outcome"] == "ok"


def _spread(seqs: list[int], n: int) -> list[int]:
    """``n`` of ``seqs`` evenly spread over them (first and last included)."""
    return [seqs[i * (len(seqs) - 1) // (n - 1)] for i in range(n)]


def test_observed_state_agrees_with_the_observed_run_while_compaction_holds_pages(
    runs_db: tuple[Path, int, int], tmp_path: Path
) -> None:
    """The kernel's state before N (fork_state) is the observed run's step before N at
    seqs spread over the whole capture, also while a compaction pass holds free pages
    it fast-isolated as migration targets (seq 59765 is the first such: a
    ``mm_compaction_fast_isolate_freepages nr_taken=128`` whose block a later event
    names); and a fork at N starts from it: its step at N has the observed run's free +
    pcp pages at N (the fork's model serves N's pages from the same zone)."""
    db = _copy(runs_db[0], tmp_path)
    obs_run = runs_db[1]
    with Store(db) as s:
        first = first_fork_seq(s, s.trace_id(NAME))
        # served from the run's zone (the kernel served some from DMA32, a model does
        # not), with no buddy-level event between N-1 and N (a pcp drain there is in the
        # state just before N, not in the step at N-1)
        served = (
            s.query(
                """SELECT s.seq FROM steps s JOIN runs r USING (run_id)
                 JOIN events e ON e.trace_id = r.trace_id AND e.seq = s.seq
                 JOIN events p ON p.trace_id = r.trace_id AND p.seq = s.seq - 1
               WHERE s.run_id = $r AND s.outcome = 'ok' AND s.seq > $f
                 AND s.pfn >= r.zone_start_pfn AND s.pfn < r.zone_start_pfn + r.zone_pages
                 AND NOT EXISTS (SELECT 1 FROM aux_events a WHERE a.trace_id = r.trace_id
                     AND a.line > p.line AND a.line < e.line AND a.event IN (
                       'mm_page_alloc_zone_locked', 'mm_page_pcpu_drain',
                       'mm_compaction_isolate_freepages',
                       'mm_compaction_fast_isolate_freepages', 'remove_migration_pte'))
               ORDER BY s.seq""",
                {"r": obs_run, "f": first},
            )
            .column("seq")
            .to_pylist()
        )
        for seq in [59765, 59767, *_spread(served, 20)]:
            if seq in served:
                st = ex.explain(s, obs_run, seq, models=[], horizon=0, top=1)["state"]
                got = (st["nr_free"], st["free_pages"], st["pcp_pages"])
            else:  # a free: the state explain would show
                view = ex.state_view(s, ex.run_info(s, obs_run), seq)[0]
                nr = view.nr_free_mt().sum(axis=1)
                got = ([int(v) for v in nr], int((nr << np.arange(11)).sum()), view.pcp_pages)
            before = _step_before(s, obs_run, seq)
            assert got == ([before[f"nr_free_{o}"] for o in range(11)], before["free_pages"],
                           before["pcp_pages"]), seq  # fmt: skip
        for seq in (59765, 59767, *_spread(served, 4)):
            r = engine.run(s, NAME, load_model("mobility"), start="observed", at=seq,
                           until=seq + 1, every=1, pageblock_every=0)  # fmt: skip
            fork_step = s.one("SELECT free_pages + pcp_pages FROM steps WHERE run_id = $r "
                              "AND seq = $s", {"r": r.run_id, "s": seq})  # fmt: skip
            obs_step = s.one("SELECT free_pages + pcp_pages FROM steps WHERE run_id = $r "
                             "AND seq = $s", {"r": obs_run, "s": seq})  # fmt: skip
            assert fork_step == obs_step, seq


def test_seqs_the_run_has_no_state_at_are_bad_input(
    runs_db: tuple[Path, int, int], tmp_path: Path
) -> None:
    """Exit 65 with the reason, no flag the user did not pass: a seq of an observed run
    before the before-snapshot (the kernel's state is known from the first seq after
    it, 41,584), a seq past a fork's last seq, a run whose steps are gone."""
    db = _copy(runs_db[0], tmp_path)
    obs_run = runs_db[1]
    res = run_cli("explain", str(obs_run), "--seq", "21998", "--db", db)
    assert res.code == 65, res.err
    assert ("seq 21998 (trace line 39668) is before the trace's before-snapshot: the "
            "kernel's state is known from seq 41584 on") in res.err  # fmt: skip
    assert "--at" not in res.err
    with Store(db) as s:
        served = _allocs(s, obs_run, "ok")
        seq = served[len(served) // 2]
        fork = engine.run(s, NAME, load_model("mobility"), start="observed", at=seq,
                          until=seq + 10, every=1, pageblock_every=0)  # fmt: skip
        later = next(q for q in served if q > seq + 9)
        for t in STEPS_TABLES:  # the stored rows under the steps view
            s.run(f"DELETE FROM {t} WHERE run_id = $r", {"r": runs_db[2]})
    res = run_cli("explain", str(fork.run_id), "--seq", str(later), "--db", db)
    assert res.code == 65, res.err
    assert f"seq {later} is after run {fork.run_id}'s last seq {seq + 9}" in res.err
    res = run_cli("explain", str(runs_db[2]), "--seq", str(later), "--db", db)
    assert res.code == 65, res.err
    assert f"run {runs_db[2]} stored no placements" in res.err
    assert "Traceback" not in res.err


def test_observed_own_row_counts_the_kernels_compaction_in_the_horizon(
    runs_db: tuple[Path, int, int], tmp_path: Path
) -> None:
    """An observed run's own row: the recorded kernel's pages migrated
    (mm_compaction_migratepages nr_migrated, passes in Normal) and scanned (the isolate
    events' nr_scanned, ranges in Normal) from just after N-1 to the horizon's last event,
    counted from the trace text too (89 and 7,696 over 58107..59107, 320 and 5,865 over
    60208..61208); evicted
    null: the capture recorded no mm_vmscan_lru_shrink_inactive (kswapd's reclaim is not
    in it), which is unknown, not 0."""
    db = _copy(runs_db[0], tmp_path)
    with Store(db) as s:
        own = ex.explain(s, runs_db[1], 58107, models=[], horizon=1000, top=1)["counterfactuals"]
        near = ex.explain(s, runs_db[1], 58107, models=[], horizon=10, top=1)["counterfactuals"]
        later = ex.explain(s, runs_db[1], 60208, models=[], horizon=1000, top=1)
    assert [(r["migrated"], r["scanned"], r["evicted"]) for r in own] == [(89, 7696, None)]
    assert [(r["migrated"], r["scanned"], r["evicted"]) for r in near] == [(0, 0, None)]
    row = later["counterfactuals"][0]
    assert (row["migrated"], row["scanned"], row["evicted"]) == (320, 5865, None)


# the small-pressure capture's 19 mm_page_alloc_extfrag events: the allocation each was for
KERNEL_FALLBACK_SEQS = [49358, 49533, 50614, 52505, 64741, 64825, 65101, 68561, 68577, 68592,
                        68801, 71524, 71527, 72124, 73070, 73725, 73746, 77714, 81683]  # fmt: skip


def test_observed_rank_flags_are_the_kernels_fallbacks_and_compactions(
    runs_db: tuple[Path, int, int], tmp_path: Path
) -> None:
    """Ranking an observed run: ``after_fallback`` where the kernel's
    mm_page_alloc_extfrag preceded the allocation on its cpu (19 of them, each naming an
    allocation of its alloc_order), ``after_compaction`` where its task called
    mm_compaction_try_to_compact_pages for it (239: every one of the 157 failures, each
    an order-8 NORETRY request, and 82 served); the first failure (58107) compacted
    first, without a fallback."""
    db = _copy(runs_db[0], tmp_path)
    with Store(db) as s:
        rows = ex.rank(s, runs_db[1], top=100_000)
    assert sorted(r["seq"] for r in rows if r["after_fallback"]) == KERNEL_FALLBACK_SEQS
    compacted = [r for r in rows if r["after_compaction"]]
    assert len(compacted) == 239
    assert sum(r["outcome"] == "failed" for r in compacted) == 157
    assert min(r["seq"] for r in compacted) == 52550  # served, after compacting
    first = next(r for r in rows if r["seq"] == 58107)
    assert (first["after_compaction"], first["after_fallback"]) == (True, False)


def test_observed_extfrag_threshold_is_the_captures_sysctl(
    runs_db: tuple[Path, int, int], tmp_path: Path
) -> None:
    """compaction_suitable's extfrag_threshold for an observed run is the capture's
    vm.extfrag_threshold (before-snapshot first), not a constant."""
    db = _copy(runs_db[0], tmp_path)
    with Store(db) as s:
        st = ex.explain(s, runs_db[1], 58107, models=[], horizon=0, top=1)["state"]
        assert st["compaction_suitable"]["extfrag_threshold"] == 500  # before.sysctl's
        s.run("UPDATE snap_sysctl SET value = CASE snapshot WHEN 'before' THEN '900' "
              "ELSE '300' END WHERE key = 'vm.extfrag_threshold'")  # fmt: skip
        st = ex.explain(s, runs_db[1], 58107, models=[], horizon=0, top=1)["state"]
    assert st["compaction_suitable"]["extfrag_threshold"] == 900


def _fork_steps(s: Store, run_id: int) -> list[dict[str, object]]:
    return s.query(
        "SELECT seq, outcome, pfn, free_pages, pcp_pages FROM steps WHERE run_id = $r ORDER BY seq",
        {"r": run_id},
    ).to_pylist()


def _counting(fn: Any) -> tuple[Any, list[int]]:
    """``fn`` wrapped to count its calls, and the list it counts in."""
    calls: list[int] = []

    def counted(*args: Any, **kw: Any) -> Any:
        calls.append(1)
        return fn(*args, **kw)

    return counted, calls


def test_an_observed_explanation_rebuilds_the_kernels_state_once(
    runs_db: tuple[Path, int, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every fork of an observed run's explanation starts from the one kernel state the
    explanation rebuilt (each rebuild replays the capture up to N: seconds with six
    models), and the forks come out as when each rebuilt its own."""
    db = _copy(runs_db[0], tmp_path)
    models = ["mobility", "mobility+compaction", "kernel"]
    with Store(db) as s:
        alone = []
        for m in models:
            r = engine.run(s, NAME, load_model(m), start="observed", at=58107, until=58128,
                           every=1, pageblock_every=0)  # fmt: skip
            alone.append(_fork_steps(s, r.run_id))
        counted, calls = _counting(engine.fork_state)
        monkeypatch.setattr(engine, "fork_state", counted)
        monkeypatch.setattr(ex, "fork_state", counted)
        # the kernel's first takes after N and the pageblock types: once too
        counted_takes, takes = _counting(recorded.fork_first_takes)
        monkeypatch.setattr(recorded, "fork_first_takes", counted_takes)
        out = ex.explain(s, runs_db[1], 58107, models=models, horizon=20, top=1)
        shared = [_fork_steps(s, row["run_id"]) for row in out["counterfactuals"][1:]]
    assert len(calls) == 1 and len(takes) == 1
    assert shared == alone and all(alone)


def _all_steps(s: Store, run_id: int) -> list[dict[str, object]]:
    """A run's steps, every column but the run's id."""
    rows = s.query("SELECT * FROM steps WHERE run_id = $r ORDER BY seq", {"r": run_id})
    return [{k: v for k, v in r.items() if k != "run_id"} for r in rows.to_pylist()]


def test_forks_of_one_kernel_state_share_a_zone_image_and_leak_nothing(
    runs_db: tuple[Path, int, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forks of one kernel state start from one zone image, built by the first (the zone
    loaded and the objects adopted once), each writing only its own copy-on-write view:
    a fork that migrates thousands of pages (mobility+compaction at 58107), then one that
    links every reclaimable object on its LRU (kswapd), then plain mobility and the
    kernel preset, come out step for step (every column) as each forked alone, in either
    order."""
    db = _copy(runs_db[0], tmp_path)
    models = ["mobility+compaction", "mobility+kswapd-targeted", "mobility", "kernel"]
    seq, until = 58107, 58207
    with Store(db) as s:
        alone = {}
        for m in models:
            r = engine.run(s, NAME, load_model(m), start="observed", at=seq, until=until,
                           every=1, pageblock_every=0)  # fmt: skip
            assert r.migrated > 0 or m != "mobility+compaction"
            alone[m] = _all_steps(s, r.run_id)
        trace_id = s.trace_id(NAME)
        env = engine.zone_environment(s, trace_id, load_model("mobility"), None)
        built, images = _counting(engine.ZoneImage)
        monkeypatch.setattr(engine, "ZoneImage", built)
        for order in (models, models[::-1]):
            kernel = engine.fork_state(s, trace_id, env.start_pfn, env.pages, seq)
            for m in order:
                r = engine.run(s, NAME, load_model(m), start="observed", at=seq, until=until,
                               every=1, pageblock_every=0, kernel_state=kernel)  # fmt: skip
                assert _all_steps(s, r.run_id) == alone[m], (order, m)
    # one image per kernel state: the kernel preset's objects (its zone choice, its
    # migrations followed) claim the same pages here
    assert len(images) == 2


def test_a_kernel_forks_recorded_inputs_are_read_ahead_on_a_connection_of_their_own(
    runs_db: tuple[Path, int, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel preset's recorded inputs (its migrations and actions: SQL over the whole
    trace) read ahead on a second connection while other forks run (prefetch_recorded) are
    the ones the fork takes: it does not read them again, and its steps are those of the
    same fork reading its own. The second connection reads with the first's macros."""
    db = _copy(runs_db[0], tmp_path)
    seq, until = 58107, 58307
    kernel_cfg = load_model("kernel")
    with Store(db) as s:
        alone = engine.run(s, NAME, kernel_cfg, start="observed", at=seq, until=until,
                           every=1, pageblock_every=0)  # fmt: skip
        trace_id = s.trace_id(NAME)
        env = engine.zone_environment(s, trace_id, kernel_cfg, None)
        kernel = engine.fork_state(s, trace_id, env.start_pfn, env.pages, seq)
        threads: list[str] = []
        read = engine.recorded_actions

        def counted(*args: Any, **kw: Any) -> Any:
            threads.append(threading.current_thread().name)
            return read(*args, **kw)

        monkeypatch.setattr(engine, "recorded_actions", counted)
        with ThreadPoolExecutor(1, thread_name_prefix="ahead") as pool:
            engine.prefetch_recorded(s, NAME, kernel_cfg, until, kernel, pool)
            engine.prefetch_recorded(s, NAME, load_model("mobility"), until, kernel, pool)
            fork = engine.run(s, NAME, kernel_cfg, start="observed", at=seq, until=until,
                              every=1, pageblock_every=0, kernel_state=kernel)  # fmt: skip
        assert _all_steps(s, fork.run_id) == _all_steps(s, alone.run_id)
        with s.cursor() as cur:
            assert cur.one("SELECT hexint('42'), count(*) FROM events") == s.one(
                "SELECT hexint('42'), count(*) FROM events")  # fmt: skip
    # once, ahead (mobility reads nothing of the kernel's)
    assert len(threads) == 1 and threads[0].startswith("ahead")


def test_runs_lists_the_forks_seqs_and_parent(
    runs_db: tuple[Path, int, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """replay runs shows where a fork starts and ends and the run it forked from (explain's
    counterfactuals are stored runs): in JSON, and in a table that fits the terminal."""
    db = _copy(runs_db[0], tmp_path)
    k_run = runs_db[2]
    with Store(db) as s:
        seq = _allocs(s, k_run, "ok")[100]
        out = ex.explain(s, k_run, seq, models=["mobility"], horizon=5, top=1)
    fork = out["counterfactuals"][-1]["run_id"]
    rows = {r["run_id"]: r for r in run_cli("runs", "--db", db, "-f", "json").json()}
    assert (rows[fork]["start_seq"], rows[fork]["end_seq"], rows[fork]["forked_from"]) == (
        seq, seq + 5, k_run)  # fmt: skip
    assert (rows[k_run]["forked_from"], rows[runs_db[1]]["start_seq"]) == (None, None)
    monkeypatch.setenv("COLUMNS", "120")
    table = run_cli("runs", "--db", db)
    assert table.code == 0, table.err
    assert max(len(x) for x in table.out.splitlines()) <= 120
    line = next(x for x in table.out.splitlines() if x.split("│")[0].strip() == str(fork))
    cells = [c.strip() for c in line.split("│")]
    assert cells[3:6] == [str(seq), str(seq + 5), str(k_run)], line


def _without_run_ids(out: dict[str, Any]) -> dict[str, Any]:
    """An explanation without what names its runs (the run, the forks' run ids)."""
    rows = [{k: v for k, v in r.items() if k != "run_id"} for r in out["counterfactuals"]]
    return {**{k: v for k, v in out.items() if k != "run"}, "counterfactuals": rows}


def test_an_explanation_does_not_depend_on_the_runs_pageblock_snapshots(
    runs_db: tuple[Path, int, int], tmp_path: Path
) -> None:
    """Explaining an allocation of a run made with --pageblock-every 0 (pageblocks only
    before the first and after the last step) and of the same run made with the default
    (about 100 over the run) gives the same answer: the state is rebuilt (the kernel's)
    or replayed (a model's), never read from the pageblocks rows. An observed run and
    a mobility run, each at a failure and at a served allocation."""
    db = _copy(runs_db[0], tmp_path)
    with Store(db) as s:
        obs_default = int(run_observed(s, NAME, every=1)["run_id"])
        pairs = [(runs_db[1], obs_default)]
        mob = [engine.run(s, NAME, load_model("mobility"), start="observed", every=1,
                          pageblock_every=pbe).run_id for pbe in (0, None)]  # fmt: skip
        pairs.append((mob[0], mob[1]))
        for sparse, dense in pairs:
            pbe = [s.one("SELECT pageblock_every FROM runs WHERE run_id = $r", {"r": r})[0]
                   for r in (sparse, dense)]  # fmt: skip
            assert pbe[0] == 0 and pbe[1] > 0
            for seq in (_allocs(s, sparse, "failed")[-1], _allocs(s, sparse, "ok")[-200]):
                a, b = (ex.explain(s, r, seq, models=["mobility"], horizon=50, top=3)
                        for r in (sparse, dense))  # fmt: skip
                assert _without_run_ids(a) == _without_run_ids(b), (sparse, seq)
