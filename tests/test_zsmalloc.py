"""zsmalloc (replay.models.zsmalloc, replay.engine.zram): the kernel's size classes,
zs_compact against the pure-Python reference (tests/ref_zsmalloc.py) on random
streams, and seed 002's three choices through the whole engine on a small
``embedded-gpu-zram`` trace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import run_cli, sql
from hypothesis import given, settings
from hypothesis import strategies as st
from ref_zsmalloc import simulate as ref_simulate

from replay.models import zsmalloc as zm

ZONE = 16384


def test_size_classes_are_the_kernels() -> None:
    c = zm.size_classes()
    assert zm.ZS_SIZE_CLASSES == 255
    reps = np.flatnonzero(c.objs > 0)
    # zs_create_pool on x86-64, 4 KiB pages, chain size 8 (/sys/kernel/debug/zsmalloc/*/classes)
    assert (int(c.size[0]), int(c.pages[0]), int(c.objs[0])) == (32, 1, 128)
    assert (int(c.size[1]), int(c.pages[1]), int(c.objs[1])) == (48, 3, 256)
    assert (int(c.size[254]), int(c.pages[254]), int(c.objs[254])) == (4096, 1, 1)
    assert c.huge_class_size == 3632 - 7
    assert zm.calculate_zspage_chain_size(3264) == 4  # (4 * 4096) % 3264 = 64, the least
    # merged classes point at a larger class with the same chain and object count
    for i in np.flatnonzero(c.objs == 0):
        j = int(c.index[i])
        assert j > i and c.objs[j] > 0
        s = zm.ZS_MIN_ALLOC_SIZE + i * zm.ZS_SIZE_CLASS_DELTA
        p = zm.calculate_zspage_chain_size(s)
        assert (p, p * 4096 // s) == (int(c.pages[j]), int(c.objs[j]))
    assert 60 < len(reps) < 255


def test_fullness_groups() -> None:
    assert [zm.get_fullness_group(k, 128) for k in (0, 1, 12, 13, 127, 128)] == [0, 1, 1, 2, 10, 11]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=60), st.integers(1, 700))
def test_shrinker_calls_follow_trace_time(ts: list[int], interval: int) -> None:
    """A call before the first event at or after each period's end, each seq once."""
    t = np.sort(np.array(ts, np.int64))
    seqs = np.arange(t.shape[0], dtype=np.int64) + 3
    want = sorted({int(seqs[np.searchsorted(t, t[0] + k * interval)])
                   for k in range(1, (int(t[-1]) - int(t[0])) // interval + 1)})  # fmt: skip
    assert zm.check_seqs(t, seqs, interval).tolist() == want


def simulate_equals_reference(zs: zm.Zspages, c: Any, checks: np.ndarray, compact: bool,
                              fill: int) -> tuple[Any, list[tuple[int, int, int]]]:  # fmt: skip
    """The kernel's zspages freed (which, when, by whom) and its shrinker-call rows equal
    the pure-Python reference's; returns the kernel's result and the freed list."""
    res = zm.simulate(zs, c, checks, compact, fill)
    freed, rows = ref_simulate(
        zs.cls.tolist(), zs.created.tolist(), zs.slot0.tolist(), zs.npages.tolist(),
        c.size.tolist(), c.pages.tolist(), c.objs.tolist(), zs.free_seq.tolist(),
        checks.tolist(), compact, fill,
    )  # fmt: skip
    got = list(zip(res.freed_z.tolist(), res.freed_seq.tolist(), res.freed_by.tolist(),
                   strict=True))  # fmt: skip
    assert got == freed
    assert res.ck.tolist() == rows
    return res, freed


@st.composite
def streams(draw: Any) -> tuple[np.ndarray, np.ndarray, int, int, np.ndarray, bool, int]:
    """zram pages (allocation seqs, trace free seqs), the last seq, a seed, checks."""
    n = draw(st.integers(1, 60))
    last = draw(st.integers(n + 5, 400))
    alloc = np.sort(np.array(draw(st.lists(st.integers(0, last - 1), min_size=n, max_size=n,
                                           unique=True)), np.int64))  # fmt: skip
    free = np.array([draw(st.one_of(st.just(-1), st.integers(int(a) + 1, last + 40)))
                     for a in alloc], np.int64)  # fmt: skip
    free[free > last] = -1
    checks = np.unique(np.array(draw(st.lists(st.integers(0, last), max_size=30)), np.int64))
    return (alloc, free, last, draw(st.integers(0, 2**32)), checks, draw(st.booleans()),
            draw(st.sampled_from([100, 90, 60])))  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(streams())
def test_zs_compact_matches_the_reference(s: Any) -> None:
    alloc, free, last, seed, checks, compact, fill = s
    c = zm.size_classes()
    zs = zm.build_zspages(alloc, free, np.arange(alloc.shape[0]), last, seed, c)
    # every object's free lies in its zspage's life, one exactly at its end
    if zs.cls.shape[0]:
        owner = np.repeat(np.arange(zs.cls.shape[0]), c.objs[zs.cls])
        fs = zs.free_seq
        assert np.all((fs == -1) | (fs > zs.created[owner]))
    res, freed = simulate_equals_reference(zs, c, checks, compact, fill)
    if not compact:
        assert res.objects_moved == 0 and not any(by for _z, _s, by in freed)


@st.composite
def pools(draw: Any) -> tuple[zm.Zspages, np.ndarray, bool, int]:
    """Zspages of two or three classes of few objects (so zs_compact has work in each
    call), created in turn, their objects freed at random seqs; random checks."""
    c = zm.size_classes()
    small = [int(i) for i in np.flatnonzero((c.objs > 0) & (c.objs <= 12))]
    ks = draw(st.lists(st.sampled_from(small), min_size=1, max_size=3, unique=True))
    nz = draw(st.integers(1, 30))
    last = draw(st.integers(nz + 5, 300))
    cls = np.array([draw(st.sampled_from(ks)) for _ in range(nz)], np.int64)
    created = np.sort(np.array(draw(st.lists(st.integers(0, last - 1), min_size=nz,
                                             max_size=nz)), np.int64))  # fmt: skip
    npages = c.pages[cls].astype(np.int64)
    objs = c.objs[cls].astype(np.int64)
    slot0 = (np.cumsum(objs) - objs).astype(np.int64)
    owner = np.repeat(np.arange(nz), objs)
    fs = np.array([draw(st.one_of(st.just(-1), st.integers(int(created[z]) + 1, last)))
                   for z in owner], np.int64)  # fmt: skip
    zs = zm.Zspages(cls=cls, created=created, page0=np.cumsum(npages) - npages, npages=npages,
                    slot0=slot0, pages=np.arange(int(npages.sum())), free_seq=fs,
                    loose=np.zeros(0, np.int64))  # fmt: skip
    checks = np.unique(np.array(draw(st.lists(st.integers(0, last), max_size=20)), np.int64))
    return zs, checks, draw(st.booleans()), draw(st.sampled_from([100, 100, 80, 50]))


@settings(max_examples=70, deadline=None)
@given(pools())
def test_zs_compact_choices_match_the_reference(s: Any) -> None:
    """isolate_src/dst_zspage, migrate_zspage and the fullness lists, object by object."""
    zs, checks, compact, fill = s
    c = zm.size_classes()
    simulate_equals_reference(zs, c, checks, compact, fill)


def test_zs_compact_frees_the_sparse_zspages() -> None:
    """Two half-used zspages of one class: zs_compact moves the emptiest's objects into
    the fullest and frees it (its pages to the buddy allocator)."""
    c = zm.size_classes()
    k = int(c.index[zm.get_size_class_index(np.array([2048]))[0]])  # 2 objects a page
    assert (int(c.pages[k]), int(c.objs[k])) == (1, 2)
    cls = np.array([k, k], np.int64)
    zs = zm.Zspages(cls=cls, created=np.array([0, 1]), page0=np.array([0, 1]),
                    npages=np.array([1, 1]), slot0=np.array([0, 2]), pages=np.array([0, 1]),
                    free_seq=np.array([5, -1, -1, 6]), loose=np.zeros(0, np.int64))  # fmt: skip
    res = zm.simulate(zs, c, np.array([10], np.int64), True, 100)
    assert res.objects_moved == 1 and res.bytes_copied == int(c.size[k])
    assert res.freed_z.tolist() == [0] and res.freed_by.tolist() == [1]
    assert res.pages_end == 1 and res.pages_freed == 1
    off = zm.simulate(zs, c, np.array([10], np.int64), False, 100)
    assert off.pages_end == 2 and off.objects_moved == 0


# -- the three choices through the engine ---------------------------------------------


def run(db: Path, trace: str, model: str | Path) -> dict[str, Any]:
    res = run_cli("run", trace, "--db", db, "-q", "-f", "json", "--model", model)
    assert res.code == 0, res.err
    out = res.json()
    return out[0] if isinstance(out, list) else out


@pytest.fixture(scope="module")
def zdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("zsmalloc") / "z.duckdb"
    res = run_cli("generate", "embedded-gpu-zram", "--db", db, "-q", "--events", "40000",
                  "--zone-pages", str(ZONE), "--name", "phone", "--seed", "3")  # fmt: skip
    assert res.code == 0, res.err
    res = run_cli("generate", "kernel-build", "--db", db, "-q", "--events", "10000",
                  "--zone-pages", "4096", "--name", "build", "--seed", "3")  # fmt: skip
    assert res.code == 0, res.err
    return db


@pytest.fixture(scope="module")
def zruns(zdb: Path) -> dict[str, dict[str, Any]]:
    """The three choices on the small embedded-gpu-zram trace: each run's JSON."""
    return {m: run(zdb, "phone", f"zsmalloc-{m}") for m in ("page", "object", "hybrid")}


def test_three_choices_on_embedded_gpu_zram(zdb: Path, zruns: dict[str, dict[str, Any]]) -> None:
    out = zruns
    page, obj, hyb = out["page"], out["object"], out["hybrid"]
    for r in out.values():
        stored = sql(zdb, "SELECT zs_objects_moved, zs_bytes_copied, zs_pages_freed, "
                          "zs_pages_migrated, zs_pages FROM runs WHERE run_id = ?",
                     r["run_id"])[0]  # fmt: skip
        assert stored == tuple(r[k] for k in ("zs_objects_moved", "zs_bytes_copied",
                                               "zs_pages_freed", "zs_pages_migrated",
                                               "zs_pages"))  # fmt: skip
        pool = sql(zdb, "SELECT count(*), sum(objects_moved), sum(pages_freed), "
                        "arg_max(pages, seq) FROM zram_pool WHERE run_id = ?",
                   r["run_id"])[0]  # fmt: skip
        assert pool[0] > 0 and pool[1] == r["zs_objects_moved"] and pool[2] == r["zs_pages_freed"]
    # page: no object moves, only whole pages; object: objects, never a page migrated
    assert page["zs_objects_moved"] == 0 and page["zs_pages_freed"] == 0
    assert page["zs_bytes_copied"] == 4096 * page["zs_pages_migrated"]
    assert obj["zs_objects_moved"] > 0 and obj["zs_pages_freed"] > 0
    assert obj["zs_pages_migrated"] == 0
    # zs_compact makes the pool smaller; the same objects moved in object and hybrid
    assert obj["zs_pages"] < page["zs_pages"]
    assert hyb["zs_objects_moved"] == obj["zs_objects_moved"]
    assert hyb["zs_bytes_copied"] >= obj["zs_bytes_copied"]
    assert hyb["compactions"] > obj["compactions"]
    # zsmalloc's frees neither create nor lose a page: every page of the zone is free, on
    # a pcp list, held by zsmalloc or by a live object of another class (at most 7 zram
    # pages of an incomplete last chain are the trace's own)
    live = sql(zdb, """WITH e AS (SELECT * FROM events WHERE trace_id =
                                    (SELECT trace_id FROM traces WHERE name = 'phone'))
                       SELECT coalesce(sum(1::BIGINT << a."order"), 0) FROM e a
                       WHERE a.op = 'alloc' AND coalesce(a.gfp, '') <> ?
                         AND NOT EXISTS (SELECT 1 FROM e f WHERE f.op = 'free'
                                         AND f.obj = a.obj)""",
               "GFP_NOIO|__GFP_HIGHMEM|__GFP_NOWARN")[0][0]  # fmt: skip
    for r in (obj, hyb):
        assert r["failures"] == 0
        rest = ZONE - r["free_pages"] - r["pcp_pages"] - r["zs_pages"] - live
        assert 0 <= rest <= 7, rest
    # without zsmalloc the trace's zram pages are plain order-0 pages: no zs_* columns
    plain = run(zdb, "phone", "mobility+compaction")
    assert plain["zs_pages"] is None


def test_zram_classes_knob(zdb: Path, tmp_path: Path) -> None:
    """On a trace that is no embedded-gpu-zram, the zram pages must be named."""
    bad = tmp_path / "z.toml"
    bad.write_text('model = "mobility"\nzsmalloc = "object"\n')
    res = run_cli("run", "build", "--db", zdb, "-q", "-f", "json", "--model", bad)
    assert res.code != 0 and "zram_classes" in res.err
    ok = tmp_path / "named.toml"
    ok.write_text('model = "mobility"\nzsmalloc = "object"\nzram_classes = ["__GFP_RECLAIMABLE"]\n'
                  "zsmalloc_interval_ms = 10\n")  # fmt: skip
    r = run(zdb, "build", ok)
    assert r["zs_pages"] is not None and r["zs_pages"] >= 0
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('model = "mobility"\nzsmalloc = "pages"\n')
    res = run_cli("run", "build", "--db", zdb, "-q", "--model", wrong)
    assert res.code != 0 and "zsmalloc" in res.err


def test_queries_and_report_section(zdb: Path, zruns: dict[str, dict[str, Any]],
                                    tmp_path: Path) -> None:  # fmt: skip
    """zsmalloc_compare and zram_footprint agree with runs and zram_pool; the report
    draws the choices side by side in Chromium without an error."""
    from browser import chromium_page

    ids = [r["run_id"] for r in zruns.values()]
    res = run_cli("query", "zsmalloc_compare", "--db", zdb, "-f", "json")
    assert res.code == 0, res.err
    rows = {r["run_id"]: r for r in res.json()}
    for rid in ids:
        want = sql(zdb, "SELECT zs_pages, zs_objects_moved, zs_bytes_copied FROM runs "
                        "WHERE run_id = ?", rid)[0]  # fmt: skip
        got = rows[rid]
        assert (got["zram_pages_end"], got["zs_objects_moved"], got["zs_bytes_copied"]) == want
        assert got["order3_allocs"] > 0 and 0 <= got["order3_success_pct"] <= 100
        fp = run_cli("query", "zram_footprint", "-p", f"run={rid}", "--db", zdb, "-f", "json")
        assert fp.code == 0, fp.err
        pool = fp.json()
        assert max(p["pages"] for p in pool) == got["zram_pages_max"]
        assert all(0 < p["fill_pct"] <= 100 for p in pool if p["pages"])
    out = tmp_path / "r.html"
    res = run_cli("report", *map(str, ids), "-o", out, "--db", zdb, "-q")
    assert res.code == 0, res.err
    with chromium_page() as (page, log):
        page.goto(out.as_uri())
        page.wait_for_selector('#replay-report[data-drawn="1"]', timeout=60_000)
        cells = page.evaluate("""() => ['zsmalloc-compare', 'zram-pages'].map(n => {
            const e = document.querySelector(`[data-chart="${n}"]`);
            return e ? e.querySelectorAll('td, svg path').length : -1; })""")
    assert log.errors == [], log.errors
    assert cells[0] >= len(ids) * 10 and cells[1] > 0, cells
