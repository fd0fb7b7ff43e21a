"""The zonelist (replay.models.zonelist): a node of Normal over DMA32.

The numba node (``NodeState``) against the pure-Python reference (tests/ref_zonelist.py)
on random streams, hand-worked cases of each rule (the low watermark, the lowmem
reserve, ALLOC_NOFRAGMENT's preference for the lower zone over a fallback, GFP_DMA32,
the slow path), and the engine's ``zone_choice = zonelist`` on the shipped capture
whose kernel served from DMA32 while Normal sat below its low watermark.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ref_mobility import RefMobility
from ref_zonelist import RefNode

from replay.analysis.explain import explain, run_info
from replay.engine import whatif as engine
from replay.engine.observed import first_fork_seq
from replay.errors import BadInputError
from replay.models.config import check_params, load_model
from replay.models.node import NodeState
from replay.models.zone import ZoneState
from replay.store import Store
from replay.trace.ingest import ingest

U, M, R = 0, 1, 2
ORDERS = [0] * 24 + [1] * 4 + [2] * 2 + [3] * 2 + [4, 5, 9]


def _node(lower_pages: int, pref_pages: int, wmarks: tuple[tuple[int, int], tuple[int, int]],
          reserve: int, **kw: int) -> tuple[RefNode, NodeState]:  # fmt: skip
    """The reference and the numba node: DMA32-like [0, lower_pages), Normal-like after."""
    (n_min, n_low), (l_min, l_low) = wmarks
    ref = RefNode(RefMobility(lower_pages, pref_pages, **kw), RefMobility(0, lower_pages, **kw),
                  wmarks, reserve)  # fmt: skip
    node = NodeState(
        ZoneState(lower_pages, pref_pages, wmark=(n_min, n_low, n_low), **kw),
        ZoneState(0, lower_pages, wmark=(l_min, l_low, l_low), lowmem_reserve=reserve, **kw),
    )
    return ref, node


def _check(ref: RefNode, node: NodeState, step: int) -> None:
    for r, z in zip(ref.zones, (node.preferred, node.lower), strict=True):
        assert z.free_lists() == r.free_lists(), f"step {step}"
        assert z.pcp_lists() == r.pcp_lists(), f"step {step}"
        assert z.pageblock_types() == r.pageblock_types(), f"step {step}"


def _stream(ref: RefNode, node: NodeState, rng: random.Random, steps: int, ncpus: int,
            lower_share: float, fill: int = 2600) -> tuple[int, int]:  # fmt: skip
    """The same random stream through both, holding about ``fill`` pages (the node's
    watermarks and reserve in play); returns (placements in the lower zone, failures)."""
    live: dict[int, tuple[int, int, int]] = {}  # obj -> (pfn, order, type)
    lower = failed = held = 0
    for step in range(steps):
        if live and (rng.random() < 0.15 or held > fill):
            obj = rng.choice(list(live))
            pfn, k, mt = live.pop(obj)
            held -= 1 << k
            cpu = rng.randrange(ncpus)
            ref.free(pfn, k, mt, cpu)
            node.free_obj(obj, cpu=cpu)
        else:
            k, mt = rng.choice(ORDERS), rng.choice([U, M, M, M, R])
            cpu, only = rng.randrange(ncpus), rng.random() < lower_share
            want = ref.alloc(k, mt, cpu, lower_only=only)
            got = node.alloc_obj(step, k, mt, cpu, lower_only=only)
            assert got == want, f"step {step}: alloc(o{k}, mt{mt}, cpu{cpu}, {only})"
            if got >= 0:
                live[step] = (got, k, mt)
                held += 1 << k
                lower += ref.zone_of(got)
            else:
                failed += 1
        if step % 20 == 0 or step == steps - 1:
            _check(ref, node, step)
    return lower, failed


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    pcp=st.booleans(),
    ncpus=st.integers(1, 2),
    nofragment=st.booleans(),
    reserve=st.sampled_from([0, 150, 500]),
    marks=st.sampled_from([((100, 200), (20, 40)), ((200, 400), (40, 80))]),
)
def test_node_matches_reference(seed: int, pcp: bool, ncpus: int, nofragment: bool,
                                reserve: int, marks: tuple[tuple[int, int], tuple[int, int]]
                                ) -> None:  # fmt: skip
    kw = {"pcp": pcp, "ncpus": ncpus, "batch": 7, "high": 28, "nofragment": nofragment}
    ref, node = _node(1024, 1024, marks, reserve, **kw)
    _stream(ref, node, random.Random(seed), 400, ncpus, lower_share=0.05, fill=1700)


@pytest.mark.parametrize("seed", range(2))
def test_node_with_pcp_tuning_matches_reference(seed: int) -> None:
    kw = {"pcp": True, "ncpus": 2, "batch": 7, "high": 12, "high_max": 60, "pcp_tuning": True}
    (n_min, n_low), (l_min, l_low) = marks = ((200, 400), (40, 80))
    ref = RefNode(RefMobility(1024, 1024, wmark_high=n_low, **kw),
                  RefMobility(0, 1024, wmark_high=l_low, **kw), marks, 150)  # fmt: skip
    node = NodeState(
        ZoneState(1024, 1024, wmark=(n_min, n_low, n_low), **kw),
        ZoneState(0, 1024, wmark=(l_min, l_low, l_low), lowmem_reserve=150, **kw),
    )
    lower, _ = _stream(ref, node, random.Random(7 + seed), 500, 2, lower_share=0.0, fill=1700)
    assert lower > 0, "the stream should reach the lower zone"


def test_below_the_low_watermark_the_lower_zone_serves() -> None:
    # Normal (1024 pages from 1024) with a low watermark of 900: after 124 pages it is
    # below it, and the next request goes to DMA32 ([0, 1024), no reserve).
    node = NodeState(ZoneState(1024, 1024, wmark=(500, 900, 900)),
                     ZoneState(0, 1024, wmark=(10, 20, 20)))  # fmt: skip
    pfns = [node.alloc_obj(i, 0, M) for i in range(124)]
    assert all(node.zone_of(p) == "preferred" for p in pfns)
    assert node.zone_of(node.alloc_obj(124, 0, M)) == "lower"
    node.free_obj(0)  # frees go to the zone holding the object
    node.free_obj(124)
    assert node.preferred.free_pages() == 1024 - 123
    assert node.lower.free_pages() == 1024


def test_lowmem_reserve_keeps_normal_requests_out_of_the_lower_zone() -> None:
    # Normal is exhausted below its min watermark; DMA32 has 1024 free pages but a
    # reserve of 1000 over its low watermark of 20: a Normal-capable request is not
    # served there at the low or min mark, a GFP_DMA32 one is (no reserve applies).
    node = NodeState(ZoneState(1024, 1024, wmark=(1000, 1010, 1010)),
                     ZoneState(0, 1024, wmark=(10, 20, 20), lowmem_reserve=1020))  # fmt: skip
    for i in range(30):
        node.alloc_obj(i, 0, M)
    pfn = node.alloc_obj(100, 0, M)
    # no zone passes: the slow path's preferred zone serves what it has
    assert node.zone_of(pfn) == "preferred"
    assert node.zone_of(node.alloc_obj(101, 0, M, lower_only=True)) == "lower"


@pytest.mark.parametrize("nofragment", [True, False])
def test_nofragment_prefers_the_lower_zone_to_a_fallback(nofragment: bool) -> None:
    # Normal's only free memory is in MOVABLE pageblocks' small blocks; an UNMOVABLE
    # order-0 request would steal from one of them. Under ALLOC_NOFRAGMENT (Normal above
    # DMA32) it goes to DMA32's free pageblock instead; without it, Normal steals.
    z = ZoneState(1024, 1024, nofragment=nofragment)
    low = ZoneState(0, 1024, nofragment=nofragment)
    node = NodeState(z, low)
    held = [node.alloc_obj(i, 0, M) for i in range(1024)]
    assert all(node.zone_of(p) == "preferred" for p in held)
    for i, p in enumerate(held):  # every other page free: order-0 MOVABLE blocks only
        if p % 2 == 0:
            node.free_obj(i)
    pfn = node.alloc_obj(5000, 0, U)
    assert node.zone_of(pfn) == ("lower" if nofragment else "preferred")


def test_failed_everywhere_drains_then_fails() -> None:
    kw = {"pcp": True, "ncpus": 2, "batch": 4, "high": 64}
    node = NodeState(ZoneState(1024, 1024, **kw), ZoneState(0, 1024, **kw))
    for i in range(2048):
        assert node.alloc_obj(i, 0, M, cpu=i % 2) >= 0
    for i in range(0, 2048, 3):  # order-0 pages scattered on both cpus' pcp lists
        node.free_obj(i, cpu=i % 2)
    assert node.preferred.pcp_pages() + node.lower.pcp_pages() > 0
    assert node.alloc_obj(9000, 10, M) == -1
    assert node.preferred.drains == 1
    assert node.preferred.pcp_pages() + node.lower.pcp_pages() == 0


def test_zonelist_refuses_one_zone_models() -> None:
    for name, value in (("pool_order", 4), ("kswapd", "lru"), ("vcompound_order", 2),
                        ("pressure", True), ("zsmalloc", "page")):  # fmt: skip
        with pytest.raises(BadInputError, match="does not combine with zone_choice"):
            check_params({"zone_choice": "zonelist", name: value}, "m.toml")


def test_node_needs_its_lower_zone_below() -> None:
    with pytest.raises(ValueError, match="below"):
        NodeState(ZoneState(0, 1024), ZoneState(512, 1024))


TRACES = Path(__file__).resolve().parents[1] / "traces"


@pytest.fixture(scope="module")
def pressure_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("zl") / "z.duckdb"
    with Store(db) as s:
        ingest(s, TRACES / "small-pressure-6.18", name="p")
    return db


def test_zonelist_serves_from_dma32_where_the_kernel_did(pressure_db: Path) -> None:
    """The shipped pressure capture: from the fork, Normal sits below its low watermark
    and the kernel serves every request from DMA32 (above its low watermark plus the
    lowmem reserve), until its order-8 page-cache folios need DMA32's compaction. The
    zonelist model, choosing zones itself, puts each of those allocations in the zone
    the kernel chose, fails none of them, and compacts DMA32 where the kernel did."""
    with Store(pressure_db) as s:
        tid = s.trace_id("p")
        fork = first_fork_seq(s, tid)
        r = engine.run(s, "p", load_model("kernel+zonelist"), start="observed", until=50_000)
        normal = int(s.one("SELECT zone_start_pfn FROM traces WHERE trace_id = $t",
                           {"t": tid})[0])  # fmt: skip
        rows = s.con.sql(
            f"""SELECT st.seq, st.pfn, st.outcome, e.pfn AS kernel_pfn FROM steps st
                JOIN events e ON e.trace_id = {tid} AND e.seq = st.seq
                WHERE st.run_id = {r.run_id} AND e.op = 'alloc'
                  AND NOT coalesce(e.failed, false)"""
        ).fetchall()
        lower_passes = s.one(
            "SELECT count(*) FROM model_events WHERE run_id = $r AND kind = 'compact_recorded'"
            " AND start_pfn < $n",
            {"r": r.run_id, "n": normal},
        )[0]
        # the run's compaction counts are both zones' (its passes still running at the
        # run's end have moved pages but written no model event yet)
        totals = s.one("SELECT migrated FROM runs WHERE run_id = $r", {"r": r.run_id})[0]
        last = s.one("SELECT migrated FROM steps WHERE run_id = $r ORDER BY seq DESC LIMIT 1",
                     {"r": r.run_id})[0]  # fmt: skip
        moved = s.one("SELECT sum(moved) FROM model_events WHERE run_id = $r",
                      {"r": r.run_id})[0]  # fmt: skip
    assert fork > 40_000 and len(rows) > 2_000
    assert all(o == "ok" for _s, _p, o, _k in rows)
    zone_of = [(p < normal, k < normal) for _s, p, _o, k in rows]
    assert all(model == kernel for model, kernel in zone_of)
    assert sum(k for _m, k in zone_of) == len(rows)  # all of them in DMA32
    assert lower_passes > 0
    assert totals >= moved > 0 and totals >= last > 0


def test_a_zonelist_run_resumes_from_its_checkpoints(pressure_db: Path, tmp_path: Path) -> None:
    """A checkpoint of a zonelist run holds the lower zone too: the state resumed from
    one is the state replayed from the run's start, both zones' arrays alike."""
    db = tmp_path / "ck.duckdb"
    shutil.copyfile(pressure_db, db)
    with Store(db) as s:
        config = load_model("kernel+zonelist")
        r = engine.run(s, "p", config, start="observed", until=46_000, every=1,
                       pageblock_every=0, checkpoint_every=1_000)  # fmt: skip
        info = run_info(s, r.run_id)
        kw = {"start": "observed", "at": info.start_seq, "until": int(info.end_seq) + 1}
        resumed = engine.model_state(s, "p", config, 45_500, run_id=r.run_id, **kw)
        replayed = engine.model_state(s, "p", config, 45_500, **kw)
    a, b = resumed.arrays, replayed.arrays
    assert sorted(a) == sorted(b) and any(k.startswith("lower.") for k in a)
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    assert resumed.lower is not None and replayed.lower is not None


def test_a_zonelist_run_needs_a_captures_normal_zone(tmp_path: Path) -> None:
    """A trace without zoneinfo snapshots has no DMA32 to fall back to: a clear error."""
    db = tmp_path / "g.duckdb"
    res = run_cli("generate", "fragmenter", "--zone-pages", "4096", "--db", db, "-q")
    assert res.code == 0, res.err
    res = run_cli("run", "fragmenter", "-m", "kernel+zonelist", "--db", db, "-q")
    assert res.code != 0
    assert "zone_choice = zonelist needs the trace's zone" in res.err
    assert "Traceback" not in res.err


def test_explain_forks_a_zonelist_run(pressure_db: Path, tmp_path: Path) -> None:
    """explain at an allocation of a zonelist run: the run's own model forked there puts
    it where the run did (in DMA32); `kernel`, which takes the kernel's zone choice, has
    no event of Normal in the horizon (the kernel served them all from DMA32): an empty
    row, not an error."""
    db = tmp_path / "ex.duckdb"
    shutil.copyfile(pressure_db, db)
    with Store(db) as s:
        r = engine.run(s, "p", load_model("kernel+zonelist"), start="observed", until=47_000)
        tid = s.trace_id("p")
        seq = int(s.one("SELECT min(seq) FROM events WHERE trace_id = $t AND op = 'alloc' "
                        "AND seq > 45900", {"t": tid})[0])  # fmt: skip
        out = explain(s, r.run_id, seq, models=["kernel"], horizon=200)
    own, fork, kernel = out["counterfactuals"]
    assert own["model"] == fork["model"] == "kernel+zonelist"
    assert fork["outcome"] == own["outcome"] == "ok" and fork["pfn"] == own["pfn"] < 1 << 20
    assert kernel["model"] == "kernel" and kernel["run_id"] is None
