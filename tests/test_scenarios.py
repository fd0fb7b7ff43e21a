"""Synthetic scenarios (``replay generate``): determinism, stream invariants, each
scenario's defining properties, storing and replaying, and bad input."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

from replay.errors import UsageError
from replay.scenarios.workloads import SCENARIOS, generate
from replay.store import Store
from replay.trace.schema import CANONICAL_COLUMNS

UNMOVABLE, MOVABLE, RECLAIMABLE = 0, 1, 2
DAY_NS = 86_400 * 10**9

# Small but meaningful sizes (pages, events) for each scenario: the whole file
# stays fast. fragmenter's events follow from its zone.
SMALL: dict[str, tuple[int, int | None]] = {
    "kernel-build": (8192, 30_000),
    "file-server": (8192, 30_000),
    "thp": (16384, 20_000),
    "net-rx": (8192, 40_000),
    "embedded-gpu-zram": (16384, 40_000),
    "stress-highalloc": (8192, 30_000),
    "fragmenter": (8192, None),
    "vma": (8192, 20_000),
}


@dataclass
class Stream:
    """A generated table as numpy arrays, checked event by event on construction."""

    table: pa.Table
    zone_pages: int

    def __post_init__(self) -> None:
        t = self.table
        self.n = t.num_rows
        self.op = np.array(t.column("op").to_pylist())
        self.alloc = self.op == "alloc"
        self.obj = t.column("obj").to_numpy()
        self.order = t.column("order").to_numpy().astype(np.int64)
        self.mt = t.column("migratetype").to_numpy()
        self.ts = t.column("ts_ns").to_numpy()
        self.cpu = t.column("cpu").to_numpy()
        self.comm = np.array(t.column("comm").to_pylist(), dtype=object)
        self.gfp = np.array(t.column("gfp").to_pylist(), dtype=object)
        self.region = t.column("region").to_pylist()
        self.vpn = t.column("vpn").to_pylist()
        self.pages = np.int64(1) << self.order
        # held[i]: pages held by live objects after event i
        self.held = np.cumsum(np.where(self.alloc, self.pages, -self.pages))
        alloc_at: dict[int, int] = {}
        self.free_at: dict[int, int] = {}
        for i in range(self.n):
            o = int(self.obj[i])
            if self.alloc[i]:
                assert o not in alloc_at, f"object {o} allocated twice (event {i})"
                alloc_at[o] = i
            else:
                assert o in alloc_at, f"free of unknown object {o} (event {i})"
                assert o not in self.free_at, f"object {o} freed twice (event {i})"
                a = alloc_at[o]
                assert self.order[a] == self.order[i] and self.mt[a] == self.mt[i]
                self.free_at[o] = i
        self.alloc_at = alloc_at

    def live_pages_at(self, i: int, mask: np.ndarray) -> int:
        """Pages held after event ``i`` by objects whose allocation matches ``mask``."""
        sel = np.zeros(self.n, dtype=bool)
        sel[: i + 1] = mask[: i + 1]
        a = sel & self.alloc
        f = np.zeros(self.n, dtype=bool)
        f[: i + 1] = ~self.alloc[: i + 1]
        # a free matches when its object's allocation does
        freed = np.array([mask[self.alloc_at[int(o)]] for o in self.obj[f]], dtype=bool)
        return int(self.pages[a].sum() - self.pages[f][freed].sum())

    def lifetimes(self, mask: np.ndarray) -> np.ndarray:
        """Events between allocation and free (or the end) of the objects allocated at mask."""
        idx = np.flatnonzero(mask & self.alloc)
        end = np.array([self.free_at.get(int(self.obj[i]), self.n) for i in idx])
        return end - idx

    def comm_is(self, *names: str) -> np.ndarray:
        return np.isin(self.comm, names)


_cache: dict[tuple[str, int], Stream] = {}


def stream(name: str, seed: int = 7) -> Stream:
    key = (name, seed)
    if key not in _cache:
        pages, events = SMALL[name]
        table, meta = generate(name, seed=seed, events=events, zone_pages=pages)
        assert meta["zone_pages"] == pages and meta["kind"] == "synthetic"
        _cache[key] = Stream(table, pages)
    return _cache[key]


# -- invariants of every scenario ---------------------------------------------------------


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_stream_invariants(name: str) -> None:
    s = stream(name)  # frees only free live objects, once, whole (checked on construction)
    pages, events = SMALL[name]
    if events is not None:
        assert s.n == events
    t = s.table
    assert tuple(t.column_names) == CANONICAL_COLUMNS
    assert (t.column("seq").to_numpy() == np.arange(s.n)).all()
    assert (np.diff(s.ts) >= 0).all() and s.ts[0] >= 0
    assert (t.column("offset").to_numpy() == 0).all()
    assert s.held.max() < pages, "more pages allocated than the zone has"
    assert s.held.min() >= 0
    assert set(np.unique(s.mt)) <= {UNMOVABLE, MOVABLE, RECLAIMABLE}
    assert s.order.min() >= 0 and s.order.max() <= 10
    assert set(np.unique(s.cpu)) <= {0, 1}
    assert t.column("pfn").null_count == s.n and t.column("movable").null_count == s.n
    assert all(c is not None for c in s.comm) and t.column("pid").null_count == 0
    # gfp: on allocations only, and consistent with the migratetype
    assert all(g is None for g in s.gfp[~s.alloc])
    for g, m in set(zip(s.gfp[s.alloc], s.mt[s.alloc], strict=True)):
        movable = "MOVABLE" in g or g.startswith("GFP_TRANSHUGE")
        assert (m == MOVABLE) == movable and (m == RECLAIMABLE) == ("__GFP_RECLAIMABLE" in g), g
    # per-cpu threads run on their cpu
    for c, cpu in set(zip(s.comm, s.cpu, strict=True)):
        if c.startswith(("ksoftirqd/", "swapper/", "kworker/0:", "kworker/1:")):
            assert int(c.split("/")[1].split(":")[0]) == cpu, c
    if name != "vma":
        assert t.column("region").null_count == s.n and t.column("vpn").null_count == s.n


def test_determinism() -> None:
    a, _ = generate("net-rx", seed=11, events=20_000, zone_pages=8192)
    b, _ = generate("net-rx", seed=11, events=20_000, zone_pages=8192)
    c, _ = generate("net-rx", seed=12, events=20_000, zone_pages=8192)
    assert a.equals(b)
    assert not a.equals(c)


@settings(max_examples=8, deadline=None)
@given(
    name=st.sampled_from(["kernel-build", "file-server", "thp", "embedded-gpu-zram", "vma"]),
    seed=st.integers(0, 2**32),
    zone=st.sampled_from([4096, 8192, 12288]),
    extra=st.integers(0, 5000),
)
def test_any_seed_and_size(name: str, seed: int, zone: int, extra: int) -> None:
    sc = SCENARIOS[name]
    events = sc.min_events(zone) + extra
    table, _ = generate(name, seed=seed, events=events, zone_pages=zone)
    s = Stream(table, zone)  # the per-event checks
    assert s.n == events and s.held.max() < zone and (np.diff(s.ts) >= 0).all()
    again, _ = generate(name, seed=seed, events=events, zone_pages=zone)
    assert again.equals(table)


# -- each scenario's defining properties -----------------------------------------------------


def test_kernel_build() -> None:
    s = stream("kernel-build")
    P = s.zone_pages
    assert 0.90 * P <= s.held.max() <= 0.97 * P
    assert s.held[len(s.held) // 2 :].min() >= 0.8 * P  # full after the ramp, and churning
    mov0 = s.alloc & (s.mt == MOVABLE) & (s.order == 0)
    assert mov0.sum() / s.alloc.sum() > 0.8
    assert set(s.comm[mov0]) <= {"cc1", "as", "ld", "sh", "make"}
    assert set(s.order[s.alloc & (s.mt == UNMOVABLE)]) <= {0, 1, 2, 3}
    assert {1, 2, 3} <= set(s.order[s.alloc & (s.mt == UNMOVABLE)])
    assert set(s.order[s.alloc & (s.mt == RECLAIMABLE)]) == {0, 1}
    anon = s.gfp == "GFP_HIGHUSER_MOVABLE"
    slab = np.array([g is not None and g.split("|")[0] == "GFP_KERNEL" for g in s.gfp])
    assert np.median(s.lifetimes(anon)) * 5 < np.median(s.lifetimes(slab))


def test_file_server() -> None:
    s = stream("file-server")
    P = s.zone_pages
    last = s.n - 1
    assert s.live_pages_at(last, s.mt == RECLAIMABLE) >= 0.2 * P
    assert s.held.max() >= 0.85 * P
    # LRU: page cache and fs slab objects are freed oldest first
    for mt in (MOVABLE, RECLAIMABLE):
        freed = s.obj[~s.alloc & (s.mt == mt)]
        assert len(freed) > 100 and (np.diff(freed) > 0).all()
    net = s.alloc & (s.mt == UNMOVABLE) & (s.order > 0)
    assert set(s.order[net]) == {1, 2, 3}
    assert np.median(s.lifetimes(net)) * 10 < np.median(s.lifetimes(s.mt == MOVABLE))


def test_thp() -> None:
    s = stream("thp")
    P = s.zone_pages
    thp = s.alloc & (s.order == 9)
    assert thp.sum() > 50
    assert set(s.gfp[thp]) == {"GFP_TRANSHUGE"} and set(s.mt[thp]) == {MOVABLE}
    assert set(s.order[s.alloc]) <= {0, 1, 9}
    peak = int(np.argmax(s.held))
    assert s.live_pages_at(peak, s.order == 9) >= 0.35 * P
    assert (s.alloc & (s.order == 0) & (s.mt == MOVABLE)).sum() > 1000
    assert (s.alloc & (s.order == 0) & (s.mt == UNMOVABLE)).sum() > 100
    assert (~s.alloc & (s.order == 9)).sum() > 20  # THPs are freed and refaulted too


def test_net_rx() -> None:
    s = stream("net-rx")
    rx = s.alloc & (s.order == 3) & (s.mt == UNMOVABLE)
    assert rx.sum() / s.alloc.sum() > 0.2
    assert all(g.startswith("GFP_ATOMIC|") and "__GFP_COMP" in g for g in s.gfp[rx])
    assert set(s.comm[rx]) == {"ksoftirqd/0", "ksoftirqd/1", "swapper/0", "swapper/1"}
    background = s.alloc & (s.order == 0)
    assert background.sum() / s.alloc.sum() > 0.5
    # short-lived
    assert np.median(s.lifetimes(rx)) * 20 < np.median(s.lifetimes(background))
    # bursty: per 500-event window the count of rx allocations is over-dispersed,
    # and events inside bursts come faster
    counts = np.add.reduceat(rx.astype(np.int64), np.arange(0, s.n, 500))
    assert counts.var() > 5 * counts.mean()
    gaps = np.diff(s.ts)
    assert np.median(gaps[rx[1:]]) * 5 < np.median(gaps[~rx[1:]])


def test_embedded_gpu_zram() -> None:
    s = stream("embedded-gpu-zram")
    P = s.zone_pages
    gfx = s.comm_is("gpu-driver", "surfaceflinger")
    zram = s.comm_is("zram", "kswapd0")
    peak = int(np.argmax(s.held))
    assert 0.30 * P <= s.live_pages_at(peak, gfx) <= 0.40 * P
    assert 0.20 * P <= s.live_pages_at(peak, zram) <= 0.30 * P
    assert set(s.mt[gfx]) == {UNMOVABLE} and set(s.order[gfx & s.alloc]) == {0, 1, 2, 3, 4}
    assert set(s.mt[zram]) == {UNMOVABLE} and set(s.order[zram]) == {0}
    for g in set(s.gfp[zram & s.alloc]):
        assert "__GFP_NOWARN" in g and "MOVABLE" not in g
    assert s.ts[-1] - s.ts[0] >= 2 * DAY_NS
    assert (np.diff(s.ts) > 10 * 60 * 10**9).sum() >= 5  # idle gaps between bursts
    o3 = s.alloc & (s.order == 3) & ~gfx
    assert 0 < o3.sum() < 0.05 * s.alloc.sum()  # occasional order-3 requests


def test_stress_highalloc() -> None:
    s = stream("stress-highalloc")
    P = s.zone_pages
    req = np.flatnonzero(s.alloc & (s.order == 9))
    assert 0.85 * P <= len(req) * 512 <= 0.91 * P
    assert (req == np.arange(s.n - len(req), s.n)).all()  # the last phase, none freed
    assert set(s.gfp[req]) == {"GFP_TRANSHUGE|__GFP_THISNODE"} and set(s.mt[req]) == {MOVABLE}
    start3 = int(req[0])
    assert s.held[: start3 // 2].max() >= 0.85 * P  # phase 1 fills the zone
    before = start3 - 1
    assert s.live_pages_at(before, s.mt == MOVABLE) == 0  # phase 2 freed the movable part
    assert 0.03 * P <= s.held[before] <= 0.10 * P  # mostly free, long-lived pages scattered
    assert s.held.max() < P


def test_fragmenter() -> None:
    s = stream("fragmenter")
    P = s.zone_pages
    allocs = np.flatnonzero(s.alloc)
    fill = int(np.argmax(~s.alloc))  # the first free ends the fill phase
    assert (allocs[:fill] == np.arange(fill)).all() and (s.order == 0).all()
    assert 0.98 * P <= fill < P and (s.mt == MOVABLE).all()
    # after the free phase, every full group of 512 consecutive allocations keeps 128
    idle = int(np.argmax(np.diff(s.ts))) + 1
    assert s.ts[idle] - s.ts[idle - 1] >= 5 * 10**9
    freed = s.obj[fill:idle]
    assert (~s.alloc[fill:idle]).all()
    live = np.ones(fill, dtype=bool)
    live[freed] = False
    groups = live[: fill // 512 * 512].reshape(-1, 512).sum(axis=1)
    assert (groups == 128).all()
    kept = [tuple(np.flatnonzero(g)) for g in live[:2048].reshape(-1, 512)]
    assert len(set(kept)) == 4  # chosen at random per group
    tail = s.n - idle
    assert 10 <= tail and (s.order[idle:] == 0).all()


def test_vma() -> None:
    s = stream("vma")
    assert all(r is not None for r in s.region) and all(v is not None for v in s.vpn)
    live: dict[int, set[int]] = {}
    faults: Counter[int] = Counter()
    for i in range(s.n):
        r, v = s.region[i], s.vpn[i]
        if s.alloc[i]:
            assert v not in live.setdefault(r, set()), (i, r, v)
            live[r].add(v)
            faults[r] += 1
        else:
            live[r].remove(v)
            a = s.alloc_at[int(s.obj[i])]
            assert (s.region[a], s.vpn[a]) == (r, v)
    assert set(s.gfp[s.alloc]) == {"GFP_HIGHUSER_MOVABLE"} and (s.order == 0).all()
    sizes = {r: max(s.vpn[i] for i in range(s.n) if s.region[i] == r) + 1 for r in faults}
    refaulted = [r for r in faults if faults[r] > sizes[r]]
    assert len(refaulted) >= 3
    # faults interleave regions, each in vpn order
    first = s.alloc[: sizes[0]]
    assert first.all()
    regs = np.array(s.region[:1000])
    assert len(set(regs)) > 5 and (np.diff(regs) != 0).mean() > 0.5
    for r in set(regs):
        v = np.array(s.vpn[:1000])[regs == r]
        assert (np.diff(v) == 1).all()


# -- the CLI ------------------------------------------------------------------------------------


def test_cli_stores_and_runs(db: Path) -> None:
    res = run_cli(
        "generate", "kernel-build", "--events", "20000", "--zone-pages", "8192",
        "--seed", "3", "--db", db, "-q", "-f", "json",
    )  # fmt: skip
    assert res.code == 0, res.err
    out = res.json()["generated"]
    assert out["name"] == "kernel-build" and out["kind"] == "synthetic"
    assert out["events"] == 20_000 and out["allocs"] + out["frees"] == 20_000
    assert out["zone_pages"] == 8192 and out["zone_start_pfn"] == 0 and out["ts_span_s"] > 0
    with Store(db, read_only=True) as store:
        row = store.trace_row("kernel-build")
        assert row["kind"] == "synthetic" and row["zone_pages"] == 8192
        assert row["meta"]["scenario"] == "kernel-build" and row["meta"]["seed"] == 3
        stored = store.query(
            'SELECT obj, "order", migratetype, gfp, comm, ts_ns FROM events ORDER BY seq'
        )
    table, _ = generate("kernel-build", seed=3, events=20_000, zone_pages=8192)
    assert stored.column("obj").to_pylist() == table.column("obj").to_pylist()
    assert stored.column("gfp").to_pylist() == table.column("gfp").to_pylist()
    assert stored.column("ts_ns").to_pylist() == table.column("ts_ns").to_pylist()
    run = run_cli("run", "kernel-build", "--db", db, "--quiet")
    assert run.code == 0, run.err
    with Store(db, read_only=True) as store:
        pages = store.one("SELECT zone_pages, events FROM runs")
    assert pages == (8192, 20_000)


def test_cli_name_replace_and_table(db: Path) -> None:
    args = ("generate", "vma", "--events", "12000", "--zone-pages", "8192", "--db", db, "-q")
    assert run_cli(*args, "--name", "v1").code == 0
    res = run_cli(*args, "--name", "v1", "--seed", "5", "--replace")
    assert res.code == 0, res.err
    assert "v1" in res.out and "zone_pages" in res.out and "synthetic" in res.out
    with Store(db, read_only=True) as store:
        assert store.one("SELECT count(*) FROM traces") == (1,)
        assert store.trace_row("v1")["meta"]["seed"] == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("no-such-scenario",), "known scenarios: kernel-build"),
        (("thp", "--zone-pages", "5000"), "multiple of 1024"),
        (("thp", "--zone-pages", "1024"), "multiple of 1024"),
        (("thp", "--zone-pages", str(2**27)), "2**26"),
        (("kernel-build", "--zone-pages", "8192", "--events", "500"), "at least"),
        (("fragmenter", "--zone-pages", "8192", "--events", "5000"), "at least"),
        (("vma", "--seed", "-1"), "--seed"),
    ],
)
def test_cli_bad_arguments(db: Path, args: tuple[str, ...], message: str) -> None:
    res = run_cli("generate", *args, "--db", db, "-q")
    assert res.code == 2 and message in res.err, res.err
    assert res.out == ""
    assert not db.exists()  # nothing created


def test_cli_existing_name_leaves_database_unchanged(db: Path) -> None:
    args = ("generate", "net-rx", "--events", "10000", "--zone-pages", "4096", "--db", db, "-q")
    assert run_cli(*args).code == 0
    with Store(db, read_only=True) as store:
        before = store.query("SELECT * FROM events ORDER BY seq")
        trace = store.query("SELECT * FROM traces")
    res = run_cli(*args, "--seed", "9")
    assert res.code == 2 and "--replace" in res.err
    bad = run_cli("generate", "net-rx", "--zone-pages", "4097", "--db", db, "--replace", "-q")
    assert bad.code == 2
    with Store(db, read_only=True) as store:
        assert store.query("SELECT * FROM events ORDER BY seq").equals(before)
        assert store.query("SELECT * FROM traces").equals(trace)


def test_usage_errors_from_the_core() -> None:
    with pytest.raises(UsageError, match="known scenarios"):
        generate("nope")
    with pytest.raises(UsageError, match="at least"):
        generate("stress-highalloc", events=1000, zone_pages=8192)
