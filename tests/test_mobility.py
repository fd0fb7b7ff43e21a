"""The numba ``mobility``/``pcp`` kernels (replay/models/buddy.py, pcp.py) against the reference.

tests/ref_mobility.py implements docs/mobility.md independently in plain
Python. Random streams (hypothesis seeds, random orders, migratetypes, CPUs,
partial frees of non-compound blocks) run on both: identical pfns at every
step, identical extfrag events, free lists, pageblock types and pcp lists,
and the invariants after every step. With grouping off the kernel must be
the exact plain buddy of tests/ref_buddy.py.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ref_buddy import RefBuddy
from ref_mobility import RefMobility, check_mobility_invariants

from replay.models.zone import ZoneState

ORDERS = [0] * 12 + [1] * 3 + [2] * 2 + [3] * 2 + [4, 5, 6, 9, 9, 10]


def _stream(zones: list, rng: random.Random, steps: int, ncpus: int, check_every: int,
            decay: float = 0.0) -> None:  # fmt: skip
    """Drive every zone in ``zones`` through the same random stream, comparing as we go.

    ``decay``: the chance of a ``decay_pcp_high`` period before a step (pcp tuning)."""
    allocated: dict[int, tuple[int, int]] = {}  # first pfn -> (order, request type)
    for step in range(steps):
        if decay and rng.random() < decay:
            for z in zones:
                z.decay()
        free_now = allocated and (rng.random() < 0.45 or len(allocated) > 400)
        if free_now:
            pfn = rng.choice(list(allocated))
            k, mt = allocated.pop(pfn)
            cpu = rng.randrange(ncpus)
            if k > 0 and rng.random() < 0.2:
                # a partial free: one piece of a non-compound block, the rest stays allocated
                j = rng.randrange(k)
                for q in range(pfn, pfn + (1 << k), 1 << j):
                    allocated[q] = (j, mt)
                piece = rng.randrange(pfn, pfn + (1 << k), 1 << j)
                del allocated[piece]
                pfn, k = piece, j
            for z in zones:
                z.free(pfn, k, mt, cpu)
        else:
            k = rng.choice(ORDERS)
            mt = rng.choice([0, 1, 1, 1, 2, -1])
            cpu = rng.randrange(ncpus)
            got = [z.alloc(k, mt, cpu) for z in zones]
            assert len(set(got)) == 1, f"step {step}: alloc(o{k}, mt{mt}, cpu{cpu}) -> {got}"
            if got[0] >= 0:
                allocated[got[0]] = (k, mt)
        if step % check_every == 0 or step == steps - 1:
            ref, z = zones
            assert z.free_lists() == ref.free_lists(), f"step {step}"
            assert z.pageblock_types() == ref.pageblock_types(), f"step {step}"
            assert z.pcp_lists() == ref.pcp_lists(), f"step {step}"
            assert z.extfrag == ref.extfrag, f"step {step}"
            assert z.drains == ref.drains
            for zone in zones:
                check_mobility_invariants(zone, allocated)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    start=st.sampled_from([0, 256, 512 + 64, 1 << 20]),
    pages=st.sampled_from([2048, 3000, 4096]),
    pcp=st.booleans(),
    ncpus=st.integers(1, 3),
    batch=st.sampled_from([1, 3, 7, 63]),
    high=st.sampled_from([4, 12, 40, 252]),
    nofragment=st.booleans(),
)
def test_kernel_matches_reference(
    seed: int, start: int, pages: int, pcp: bool, ncpus: int, batch: int, high: int,
    nofragment: bool,
) -> None:  # fmt: skip
    kw = {"pcp": pcp, "ncpus": ncpus, "batch": batch, "high": high, "nofragment": nofragment}
    zones = [RefMobility(start, pages, **kw), ZoneState(start, pages, **kw)]
    _stream(zones, random.Random(seed), 600, ncpus, check_every=25)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    pages=st.sampled_from([2048, 4096]),
    ncpus=st.integers(1, 3),
    batch=st.sampled_from([3, 7, 63]),
    high=st.sampled_from([4, 12, 40]),
    spread=st.sampled_from([0, 30, 500]),
    wmark_high=st.sampled_from([0, 300, 1500, 3000]),
    free_high_batch=st.booleans(),
    free_high_min=st.booleans(),
)
def test_pcp_tuning_matches_reference(
    seed: int, pages: int, ncpus: int, batch: int, high: int, spread: int, wmark_high: int,
    free_high_batch: bool, free_high_min: bool,
) -> None:  # fmt: skip
    """Linux 6.7+ pcp->high auto-tuning (nr_pcp_high, nr_pcp_free, nr_pcp_alloc with its
    alloc_factor, free_high, ZONE_BELOW_HIGH, decay_pcp_high) in both implementations."""
    kw = {"pcp": True, "ncpus": ncpus, "batch": batch, "high": high, "high_max": high + spread,
          "pcp_tuning": True, "free_high_batch": free_high_batch,
          "free_high_min": free_high_min}  # fmt: skip
    zones = [RefMobility(0, pages, wmark_high=wmark_high, **kw),
             ZoneState(0, pages, wmark=(0, 0, wmark_high), **kw)]  # fmt: skip
    _stream(zones, random.Random(seed), 800, ncpus, check_every=20, decay=0.02)
    ref, z = zones
    assert z.pcp_count() == ref.count
    assert [int(v) for v in z.arrays.pcp_state[:, 0]] == ref.cur_high


@pytest.mark.parametrize("seed", range(4))
def test_long_stream_under_pressure(seed: int) -> None:
    # A small zone kept nearly full for long: claims, steals, drains and failures all happen.
    kw = {"pcp": True, "ncpus": 2, "batch": 7, "high": 28}
    zones = [RefMobility(512, 2048, **kw), ZoneState(512, 2048, **kw)]
    _stream(zones, random.Random(1000 + seed), 4000, 2, check_every=200)
    ref = zones[0]
    assert ref.extfrag, "the stream should have made fallbacks"
    assert {e[4] for e in ref.extfrag} >= {0, 1}, "fallbacks from several types"


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), start=st.sampled_from([0, 1, 300, 1 << 20]))
def test_grouping_off_is_the_plain_buddy(seed: int, start: int) -> None:
    rng = random.Random(seed)
    ref = RefBuddy(start, 4096)
    z = ZoneState(start, 4096, grouping=False)
    live: dict[int, int] = {}
    for _ in range(500):
        if live and rng.random() < 0.45:
            pfn = rng.choice(list(live))
            k = live.pop(pfn)
            ref.free(pfn, k)
            z.free(pfn, k, rng.choice([0, 1, 2]))
        else:
            k = rng.choice(ORDERS)
            got = z.alloc(k, rng.choice([0, 1, 2]))
            assert got == ref.alloc(k)
            if got >= 0:
                live[got] = k
    want = {(k, 1): blocks for k, blocks in enumerate(ref.free_lists()) if blocks}
    assert z.free_lists() == want
    assert set(z.pageblock_types()) == {1}
    assert z.extfrag == []


def test_pageblock_counts_follow_request_types() -> None:
    z = ZoneState(0, 2048, grouping=False)
    a = z.alloc(3, 0)  # unmovable, placed in a MOVABLE pageblock (grouping is off)
    b = z.alloc(0, 2)
    counts = z.pageblock_counts()
    assert counts[0][1:4] == (8, 0, 1)
    assert counts[0][0] == 512 - 9
    z.free(a, 3, 0)
    z.free(b, 0, 2)
    assert z.pageblock_counts()[0] == (512, 0, 0, 0, 0)


@pytest.mark.parametrize("impl", [RefMobility, ZoneState])
@pytest.mark.parametrize("nofragment", [True, False])
def test_nofragment_stops_a_refill_before_fragmenting(impl: type, nofragment: bool) -> None:
    # 1024-page zone = pageblocks 0 and 1 (one order-10 block, MOVABLE).
    z = impl(0, 1024, pcp=True, batch=63, high=10000, nofragment=nofragment)
    assert z.alloc(9, 1) == 0  # pageblock 0 allocated movable
    assert z.alloc(4, 0) == 512  # claims pageblock 1 (order 9) for UNMOVABLE
    z.free(0, 8, 1)  # pages 0-255 free again, in MOVABLE pageblock 0 (256-511 still held)
    assert [z.alloc(k, 0) for k in (8, 7, 6, 5)] == [768, 640, 576, 544]
    # Unmovable now has 16 free pages (528-543). An order-0 refill wants 63 blocks.
    assert z.alloc(0, 0) == 528
    first = (512, 4, 9, 0, 1, False, True)
    if nofragment:
        # ALLOC_NOFRAGMENT: the 17th call may claim only whole pageblocks and may not
        # steal, so the refill stops at 16 pages and pageblock 0 stays MOVABLE.
        assert z.pcp_lists() == {(0, 0): list(range(529, 544))}
        assert z.extfrag == [first]
        assert z.pageblock_types() == [1, 0]
        assert z.free_lists() == {(8, 1): [0]}
    else:
        # Without it the refill claims pageblock 0 (256 free + 0 alike >= 256) and goes on.
        assert z.pcp_lists() == {(0, 0): list(range(529, 544)) + list(range(47))}
        assert z.extfrag == [first, (0, 0, 8, 0, 1, True, True)]
        assert z.pageblock_types() == [0, 0]


def test_load_pcp_puts_blocks_on_their_cpu_and_sets_high_from_the_snapshot() -> None:
    """A fork's pcp pages: a block whose first event named its cpu goes to that cpu's list;
    the others fill each cpu up to the snapshot's count (less what the known blocks
    hold), then cpu by cpu in turn; with tuning each pcp->high starts at the snapshot's,
    clamped to high_min..high_max."""
    z = ZoneState(0, 1024, pcp=True, ncpus=2, batch=7, high=20, high_max=60, pcp_tuning=True)
    blk = np.full(1024, -1, np.int8)
    page_mt = np.full(1024, 1, np.int8)
    page_mt[:8] = -1  # pages 0..7 are free: on pcp lists below
    z.load(blk, page_mt)
    offs = np.array([0, 1, 2, 3, 4, 6], np.int64)
    orders = np.array([0, 0, 0, 0, 1, 1], np.int64)
    z.load_pcp(offs, orders, cpus=[(2, 100), (3, 5)],
               block_cpus=np.array([1, -1, -1, -1, -1, 1], np.int64))  # fmt: skip
    lists = z.pcp_lists()
    on = {cpu: sorted(p for (c, _), ps in lists.items() if c == cpu for p in ps)
          for cpu in (0, 1)}  # fmt: skip
    # cpu 1 holds 0 and 6 (3 pages, its count): 1 and 2 fill cpu 0's 2; 3, 4 in turn
    assert on == {0: [1, 2, 3], 1: [0, 4, 6]}
    assert z.pcp_count() == [3, 5] and z.pcp_pages() == 8
    assert [int(v) for v in z.arrays.pcp_state[:, 0]] == [60, 20]
    # a snapshot count beyond the named pages is held: it fills the list, never leaves
    z = ZoneState(0, 1024, pcp=True, ncpus=2, batch=7, high=20, high_max=60, pcp_tuning=True)
    z.load(blk, page_mt)
    z.load_pcp(offs[:2], orders[:2], cpus=[(30, 20), (1, 20)],
               block_cpus=np.array([0, 0], np.int64))  # fmt: skip
    assert z.pcp_count() == [30, 1] and z.pcp_pages() == 2
    assert [int(v) for v in z.arrays.pcp_state[:, 4]] == [28, 1]
    z.drain_all()  # only the two named pages leave
    assert z.pcp_count() == [28, 1] and z.pcp_pages() == 0
