"""A trace whose pfns lie far apart keeps state only for the memory it touches
(replay.engine.present, issue 18 item 1): the same events in adjacent blocks and in
blocks gigabytes apart give the same runs, their pfns mapped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from replay.engine.present import PresentMemory, present_memory
from replay.store import Store

BASE = 0x100000
CLUSTER_PAGES = 8 << 10  # 8 blocks of 1024 pages, every one touched
FAR = 1 << 22  # the far-apart trace's cluster stride (pages): 16 GiB


def _pfn(cluster: int, offset: int, stride: int) -> int:
    return BASE + cluster * stride + offset


def _page(cluster: int, offset: int, stride: int) -> str:
    """The struct page address (vmemmap) ftrace prints for a pfn: never NULL."""
    return f"{0xFFFFEA0000000000 + _pfn(cluster, offset, stride) * 64:#x}"


def _trace(path: Path, stride: int, seed: int = 7) -> None:
    """An ftrace text trace over three clusters of 8 touched blocks ``stride`` pages
    apart: ~1,500 objects of orders 3-4 (16-page slots, mixed migratetypes) filling most
    of them, half freed at random, then order-9 requests that need compaction."""
    rng = np.random.default_rng(seed)
    lines: list[str] = []
    t = [100.0]

    def emit(text: str) -> None:
        t[0] += 1e-5
        lines.append(f"           a-10    [000] .....  {t[0]:.6f}: {text}\n")

    slots = [(c, s * 16) for s in range(CLUSTER_PAGES // 16) for c in range(3)]
    live = []
    for c, off in slots:
        k = int(rng.choice([3, 4, 4, 4, 4]))
        mt = int(rng.choice([0, 1, 1, 1, 2]))
        gfp = "GFP_HIGHUSER_MOVABLE" if mt == 1 else "GFP_KERNEL"
        emit(f"mm_page_alloc: page={_page(c, off, stride)} pfn={_pfn(c, off, stride):#x} order={k} "
             f"migratetype={mt} gfp_flags={gfp}")  # fmt: skip
        live.append((c, off, k))
    for i in rng.permutation(len(live))[: len(live) // 2]:
        c, off, k = live[int(i)]
        emit(f"mm_page_free: page={_page(c, off, stride)} pfn={_pfn(c, off, stride):#x} order={k}")
    for j in range(6):
        c, off = j % 3, (j // 3) * 512 + 4096
        emit(f"mm_page_alloc: page={_page(c, off, stride)} pfn={_pfn(c, off, stride):#x} "
             "order=9 migratetype=1 gfp_flags=GFP_TRANSHUGE")  # fmt: skip
    path.write_text("".join(lines))


def _real(pfn: np.ndarray) -> np.ndarray:
    """The far trace's pfn of the adjacent trace's ``pfn`` (NaN/None stay)."""
    off = pfn - BASE
    return BASE + (off // CLUSTER_PAGES) * FAR + off % CLUSTER_PAGES


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("present")
    db = d / "p.duckdb"
    for name, stride in (("near", CLUSTER_PAGES), ("far", FAR)):
        _trace(d / f"{name}.txt", stride)
        r = run_cli("ingest", d / f"{name}.txt", "--name", name, "--db", db, "-q")
        assert r.code == 0, r.err
    return db


def test_memory_map(pair: Path) -> None:
    with Store(pair) as s:
        assert present_memory(s, s.trace_id("near")) is None  # nothing to leave out
        m = present_memory(s, s.trace_id("far"))
    assert m is not None and m.pages == 3 * CLUSTER_PAGES and m.stretches == 3
    assert m.start_pfn == BASE and m.end_pfn == BASE + 2 * FAR + CLUSTER_PAGES
    near = np.arange(BASE, BASE + 3 * CLUSTER_PAGES, 97, dtype=np.int64)
    far = _real(near)
    assert (m.to_model(far) == near).all() and (m.to_real(near) == far).all()
    # a pfn in a left-out stretch: outside; as a range bound, the next kept page
    assert m.to_model(np.array([BASE + CLUSTER_PAGES + 5]))[0] == -1
    assert m.to_model_bound(np.array([BASE + CLUSTER_PAGES + 5]))[0] == BASE + CLUSTER_PAGES
    assert m.to_real_end(np.array([BASE + CLUSTER_PAGES]))[0] == BASE + CLUSTER_PAGES
    assert m.to_real(np.array([-1]))[0] == -1


def test_far_apart_edges_and_gaps() -> None:
    """Stretches shorter than a section stay; an untouched zone edge of a section goes."""
    m = PresentMemory(lo=np.array([0, 1 << 20]), hi=np.array([2048, (1 << 20) + 1024]),
                      model_lo=np.array([0, 2048]), start_pfn=0,
                      end_pfn=(1 << 20) + 1024)  # fmt: skip
    assert m.pages == 3072
    assert list(m.to_real(np.array([0, 2047, 2048, 3071]))) == [0, 2047, 1 << 20, (1 << 20) + 1023]
    assert list(m.to_model_bound(np.array([-5, 2048, 5000, (1 << 20) + 1024]))) == [
        0, 2048, 2048, 3072]  # fmt: skip


def _rows(db: Path, run_id: int, sql: str) -> list[tuple]:
    with Store(db) as s:
        return [tuple(r.values()) for r in s.query(sql, {"r": run_id}).to_pylist()]


def _run(db: Path, trace: str, *args: str) -> int:
    r = run_cli("run", trace, *args, "--pageblock-every", "500", "--db", db, "-q",
                "--format", "json")  # fmt: skip
    assert r.code == 0, r.err
    with Store(db) as s:
        return int(s.one("SELECT max(run_id) FROM runs")[0])


STEPS = """SELECT seq, pfn, outcome::VARCHAR, free_pages, nr_free_0, nr_free_9, nr_free_10,
                  failures, fallbacks, migrated, scanned FROM steps WHERE run_id = $r
           ORDER BY seq"""
PAGEBLOCKS = """SELECT seq, pageblock, migratetype, free_pages, pcp_pages FROM pageblocks
                WHERE run_id = $r ORDER BY seq, pageblock"""
MODEL_EVENTS = """SELECT seq, kind, start_pfn, end_pfn, migrate_pfn, free_pfn, moved, result
                  FROM model_events WHERE run_id = $r ORDER BY ALL"""
EXTFRAG = "SELECT seq, pfn, alloc_order, fallback_order FROM extfrag WHERE run_id = $r ORDER BY ALL"


def _mapped(rows: list[tuple], cols: tuple[int, ...], pageblock: int | None = None) -> list:
    out = []
    for r in rows:
        r = list(r)
        for c in cols:
            if r[c] is not None and r[c] >= 0:
                r[c] = int(_real(np.array([r[c]]))[0])
        if pageblock is not None:
            r[pageblock] = int(_real(np.array([r[pageblock] << 9]))[0]) >> 9
        out.append(tuple(r))
    return out


@pytest.mark.parametrize("model", ["mobility+pcp", "mobility+compaction"])
def test_model_far_apart_is_the_adjacent_run(pair: Path, model: str) -> None:
    near, far = _run(pair, "near", "-m", model), _run(pair, "far", "-m", model)
    steps = _rows(pair, near, STEPS)
    assert steps and any(r[1] is not None for r in steps)
    assert _rows(pair, far, STEPS) == _mapped(steps, (1,))
    pbs = _rows(pair, near, PAGEBLOCKS)
    assert len({r[1] for r in pbs}) == 3 * CLUSTER_PAGES >> 9
    assert _rows(pair, far, PAGEBLOCKS) == _mapped(pbs, (), pageblock=1)
    assert _rows(pair, far, EXTFRAG) == _mapped(_rows(pair, near, EXTFRAG), (1,))
    events = _rows(pair, near, MODEL_EVENTS)
    if model == "mobility+compaction":
        assert events, "the order-9 requests should compact"
    # end_pfn is exclusive: the page before it maps
    want = [(*r[:3], None if r[3] is None else int(_real(np.array([r[3] - 1]))[0]) + 1, *r[4:])
            for r in _mapped(events, (2, 4, 5))]  # fmt: skip
    assert _rows(pair, far, MODEL_EVENTS) == want
    with Store(pair) as s:
        zone = s.query("SELECT run_id, zone_start_pfn, zone_pages, free_pages FROM runs "
                       "WHERE run_id IN ($a, $b) ORDER BY run_id",
                       {"a": near, "b": far}).to_pylist()  # fmt: skip
    assert zone[0]["free_pages"] == zone[1]["free_pages"]
    assert zone[1]["zone_pages"] == 2 * FAR + CLUSTER_PAGES  # the span, as the trace's zone
    # the far run says what its zone is (the runs row keeps the trace's span)
    warned = [json.loads(run_cli("run", t, "-m", model, "--db", pair, "-q", "--format",
                                 "json").out)["warnings"] for t in ("near", "far")]  # fmt: skip
    assert not any("far apart" in w for w in warned[0])
    assert any("24,576 pages in 3 stretches" in w for w in warned[1]), warned


def test_observed_far_apart_is_the_adjacent_run(pair: Path) -> None:
    near, far = _run(pair, "near", "--observed"), _run(pair, "far", "--observed")
    steps = _rows(pair, near, STEPS)
    assert _rows(pair, far, STEPS) == _mapped(steps, (1,))
    pbs = _rows(pair, near, PAGEBLOCKS)
    assert _rows(pair, far, PAGEBLOCKS) == _mapped(pbs, (), pageblock=1)


def test_explain_candidates_name_the_traces_pfns(pair: Path) -> None:
    """explain's state of a model run on far-apart memory: the same candidates as the
    adjacent run's, by the trace's pfns (checkpoint-free: replayed to the event)."""
    from replay.analysis.explain import candidates, run_info, state_view, trace_pfns

    near, far = _run(pair, "near", "-m", "mobility"), _run(pair, "far", "-m", "mobility")
    with Store(pair) as s:
        seq = int(s.one("SELECT max(seq) FROM events WHERE trace_id = 1 AND op = 'alloc'")[0])
        got = []
        for run_id in (near, far):
            view, env, _ms = state_view(s, run_info(s, run_id), seq)
            got.append(trace_pfns(candidates(view, 9, top=3), env))
    assert got[0] and got[1][0]["pfn"] >= BASE + FAR  # past the first cluster: mapped
    assert got[1] == [{**c, **{k: int(_real(np.array([c[k]]))[0]) for k in
                               ("pfn", "blocked_by_pfn", "map_pfn") if c[k] is not None}}
                      for c in got[0]]  # fmt: skip


def test_checkpoints_resume_on_far_apart_memory(pair: Path) -> None:
    """A run over far-apart memory checkpoints its dense state; resumed from the nearest
    checkpoint, the state before N is the replay from the start's, array by array."""
    from replay.engine.whatif import model_state
    from replay.models.config import load_model

    r = run_cli("run", "far", "-m", "mobility+compaction", "--checkpoint-every", "500",
                "--db", pair, "-q")  # fmt: skip
    assert r.code == 0, r.err
    cfg = load_model("mobility+compaction")
    with Store(pair) as s:
        run_id = int(s.one("SELECT max(run_id) FROM runs")[0])
        assert s.one("SELECT count(*) FROM checkpoints WHERE run_id = $r", {"r": run_id})[0] >= 3
        seq = int(s.one("SELECT max(seq) FROM events WHERE trace_id = 2")[0])
        resumed = model_state(s, "far", cfg, seq, run_id=run_id)
        replayed = model_state(s, "far", cfg, seq)
    assert resumed.env.memory is not None and resumed.zone.pages == 3 * CLUSTER_PAGES
    assert sorted(resumed.arrays) == sorted(replayed.arrays)
    for k, a in resumed.arrays.items():
        assert np.array_equal(a, replayed.arrays[k]), k
