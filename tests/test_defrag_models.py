"""Exchange pages, contiguous ranges, active defragmentation and per-owner pools
(docs/defrag.md): hand-worked examples and random streams.

Part 1 works small zones by hand from docs/defrag.md; every example is
parametrised over ``IMPLS`` (the pure-Python reference tests/ref_defrag.py and
the numba ``ZoneState``). Part 2 drives random streams of ``alloc_obj`` /
``free_obj`` (some with pool owners, with time gaps that trigger active
defragmentation), ``exchange``, ``alloc_contig`` and ``active_defrag`` through
both and compares them after every step; the same streams also run on the
reference alone, against its invariants.

Units: pfns are absolute page frame numbers, orders are buddy orders
(``1 << order`` pages), times are nanoseconds. Model events are tuples
``(kind, seq, order, mode, start_pfn, end_pfn, migrate_pfn, free_pfn,
scanned_migrate, scanned_free, moved, failed, result)``.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ref_compaction import check_compaction_invariants
from ref_defrag import (
    EX_BLOCKED,
    EX_EXCHANGED,
    EX_IN_PLACE,
    EX_MIGRATED,
    EX_UNMOVABLE,
    RefDefrag,
)
from ref_mobility import pindex
from test_compaction import STREAM_SETTINGS  # seeded streams: no shrinking

from replay.models import defrag
from replay.models.internal import (
    C_EF,
    C_EXCHANGED,
    C_MIGRATED,
    C_POOL_CHUNKS,
    C_POOL_PAGES,
    S_POOL_FALLBACKS,
)
from replay.models.zone import ZoneState


class Zone(ZoneState):
    """ZoneState checking that a pass between events kept every extfrag row it counted."""

    def _kept(self) -> None:
        assert int(self.counters[C_EF]) <= self.ef.shape[0], "extfrag rows dropped"

    def active_defrag(self, seq: int = -1) -> tuple[int, int, int, int]:
        r = super().active_defrag(seq)
        self._kept()
        return r

    def alloc_contig(
        self, nr_pages: int, pfn: int = -1, best: bool = False, seq: int = -1
    ) -> tuple[int, int, int]:
        r = super().alloc_contig(nr_pages, pfn, best, seq)
        self._kept()
        return r


IMPLS: list[type] = [RefDefrag, Zone]

U, M, R = 0, 1, 2
MS = 1_000_000  # ns per ms
IN, MIG, EXC, BLK, UNM = EX_IN_PLACE, EX_MIGRATED, EX_EXCHANGED, EX_BLOCKED, EX_UNMOVABLE
Event = tuple[str, int, int, int, int, int, int, int, int, int, int, int, str]


def test_result_codes_match_the_kernel() -> None:
    kernel = (defrag.EX_IN_PLACE, defrag.EX_MIGRATED, defrag.EX_EXCHANGED, defrag.EX_BLOCKED,
              defrag.EX_UNMOVABLE)  # fmt: skip
    assert kernel == (EX_IN_PLACE, EX_MIGRATED, EX_EXCHANGED, EX_BLOCKED, EX_UNMOVABLE)


# -- helpers ---------------------------------------------------------------------------------------
def events(zone: Any) -> list[tuple]:
    """The zone's model events as plain tuples."""
    return [tuple(e) for e in zone.model_events]


def counts(zone: Any) -> tuple[int, int, int, int, int]:
    """(pages migrated, pages exchanged, pool chunks, pool pages, pool fallbacks)."""
    c = zone.counters
    return (int(c[C_MIGRATED]), int(c[C_EXCHANGED]), int(c[C_POOL_CHUNKS]),
            int(c[C_POOL_PAGES]), int(zone.stats[S_POOL_FALLBACKS]))  # fmt: skip


def ex(zone: Any, objs: list[int], targets: list[int]) -> list[int]:
    """``exchange`` on plain lists; the result codes as ints."""
    res = zone.exchange(np.array(objs, np.int64), np.array(targets, np.int64))
    return [int(r) for r in res]


def defrag_event(seq: int, order: int, moved: int, failed: int, result: str) -> Event:
    """A ``defrag`` model event (no scanner positions or scan costs: -1 and 0)."""
    return ("defrag", seq, order, -1, -1, -1, -1, -1, 0, 0, moved, failed, result)


def fragmented(
    impl: type, *, movable: bool = True, keep: tuple[int, ...] = (), **kw: Any
) -> tuple[Any, dict[int, tuple[int, int]]]:
    """Zone [0, 2048) (pageblocks 0..3): every page allocated as an order-0 MOVABLE
    object ``i`` at pfn ``i`` (``movable`` flag as given; the pages in ``keep`` get
    movable=False), all at ts 0, then 3 pages of every 4 freed except ``keep``: units at
    4i, free blocks 4i+1 (order 0) and 4i+2 (order 1). Every free went to the HEAD of its
    list, so the list heads are the highest pfns (2045 and 2046).
    Returns (zone, live units: obj -> (order, type))."""
    z = impl(0, 2048, **kw)
    for i in range(2048):
        assert z.alloc_obj(i, 0, M, movable=movable and i not in keep) == i
    for i in range(2048):
        if i % 4 and i not in keep:
            z.free_obj(i)
    units = {i: (0, M) for i in [*range(0, 2048, 4), *keep]}
    check_compaction_invariants(z, units, {})
    return z, units


def sequential(impl: type, orders: list[int], **kw: Any) -> Any:
    """Zone [0, 1024): objects 0, 1, ... of the given orders (MOVABLE) allocated in turn;
    on a fresh zone each lands right after the previous one when the orders never grow
    past an alignment (e.g. 0 x 8 then 1 x 4 fills 0..15)."""
    z = impl(0, 1024, **kw)
    pfn = 0
    for x, k in enumerate(orders):
        assert z.alloc_obj(x, k, M) == pfn, (x, k)
        pfn += 1 << k
    return z


# -- (1) exchange pages ------------------------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("grouping", [True, False])
def test_exchange_reverses_a_layout_in_place(impl: type, grouping: bool) -> None:
    # objects 0..7 (order 0) at 0..7, 8..11 (order 1) at 8, 10, 12, 14
    z = sequential(impl, [0] * 8 + [1] * 4, grouping=grouping)
    lists = z.free_lists()
    counts0 = z.pageblock_counts()
    # object i to 7 - i: each target holds a movable unit of the same order, so the
    # first four swap (2 pages each); the last four are then already in place.
    # 8 -> 14 swaps with 11, 9 -> 12 with 10; 10 and 11 are then in place.
    got = ex(z, list(range(12)), [7, 6, 5, 4, 3, 2, 1, 0, 14, 12, 10, 8])
    assert got == [EXC] * 4 + [IN] * 4 + [EXC, EXC, IN, IN]
    assert [z.placement(x) for x in range(12)] == [7, 6, 5, 4, 3, 2, 1, 0, 14, 12, 10, 8]
    assert counts(z) == (0, 4 * 2 + 2 * 4, 0, 0, 0)
    # no free page used, nothing else changed
    assert z.free_lists() == lists and z.pageblock_counts() == counts0
    units = {x: (0, M) for x in range(8)} | {x: (1, M) for x in range(8, 12)}
    check_compaction_invariants(z, units, {})
    # every unit still a unit: they can be freed whole and the zone merges back
    for x in range(12):
        z.free_obj(x)
    assert z.free_lists() == {(10, M): [0]}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("grouping", [True, False])
def test_migration_to_free_targets_keeps_free_pages_equal(impl: type, grouping: bool) -> None:
    # objects 0..7 at 7..0 after a reversal, then 0..3 (at 7, 6, 5, 4) to 16..19.
    z = sequential(impl, [0] * 8, grouping=grouping)
    assert ex(z, list(range(8)), [7 - i for i in range(8)]) == [EXC] * 4 + [IN] * 4
    assert z.free_lists() == {(3, M): [8], (4, M): [16], (5, M): [32], (6, M): [64],
                              (7, M): [128], (8, M): [256], (9, M): [512]}  # fmt: skip
    free0 = z.free_pages()
    # 0 -> 16: the order-4 block [16, 32) is split around 16: 24 (o3), 20 (o2), 18 (o1),
    #   17 (o0) to the list heads; 7 is freed (buddy 6 allocated; to the HEAD).
    # 1 -> 17: the free order-0 block 17 is taken whole; 6 is freed and merges with 7
    #   (6, o1; buddy 4 allocated).
    # 2 -> 18: [18, 20) is split: 19 (o0) to the head; 5 is freed: its buddy 4 is
    #   allocated, but 6 (o1) is a free block of order 1 above: buddy_merge_likely, TAIL.
    # 3 -> 19: taken whole; 4 is freed and merges with 5 (o0) and 6 (o1): (4, o2), to
    #   the TAIL (its would-be buddy at order 3, 8, is a free order-3 block).
    assert ex(z, [0, 1, 2, 3], [16, 17, 18, 19]) == [MIG] * 4
    assert [z.placement(x) for x in range(8)] == [16, 17, 18, 19, 3, 2, 1, 0]
    assert z.free_pages() == free0
    assert z.free_lists() == {(2, M): [20, 4], (3, M): [24, 8], (5, M): [32], (6, M): [64],
                              (7, M): [128], (8, M): [256], (9, M): [512]}  # fmt: skip
    assert counts(z) == (4, 8, 0, 0, 0)
    check_compaction_invariants(z, {x: (0, M) for x in range(8)}, {})


@pytest.mark.parametrize("impl", IMPLS)
def test_exchange_target_inside_a_large_free_block(impl: type) -> None:
    # A free order-9 block [512, 1024) covers target 700 (o2): the search finds it at
    # b = 8 (heads 700, 700, 700, 696, 688, 672, 640, 640, 512); split: 768 (o8), 512
    # (o7), 704 (o6), 640 (o5), 672 (o4), 688 (o3), 696 (o2) to the heads, 700 taken.
    # Object 0's old block (0, o2) merges with 4, 8, ..., 256 up to (0, o9).
    z = sequential(impl, [2])
    assert ex(z, [0], [700]) == [MIG]
    assert z.placement(0) == 700
    assert z.free_lists() == {(2, M): [696], (3, M): [688], (4, M): [672], (5, M): [640],
                              (6, M): [704], (7, M): [512], (8, M): [768],
                              (9, M): [0]}  # fmt: skip
    assert counts(z)[:2] == (4, 0)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("pcp", [False, True])
def test_exchange_blocked_and_unmovable(impl: type, pcp: bool) -> None:
    # batch 1: a pcp refill takes one block, so allocations land where the buddy's would;
    # frees stay on the pcp list (high 252).
    z = impl(0, 1024, pcp=pcp, batch=1, high=252)
    layout = [(0, True), (0, False), (1, True), (0, True), (0, True), (1, True), (2, True),
              (2, True)]  # fmt: skip
    want = [0, 1, 2, 4, 5, 6, 8, 12]
    for x, (k, mov) in enumerate(layout):
        assert z.alloc_obj(x, k, M, movable=mov) == want[x]
    assert z.alloc_obj(99, 10, M) == -1  # a failed allocation: not allocated
    z.free_obj(6, offset=0, order=0)  # object 6 (o2 at 8): page 8 freed, 9..11 pinned
    got = ex(
        z,
        [1, 6, 99, 0, 3, 2, 2, 2, 2, 0, 5, 3],
        [20, 16, 40, 1, 10, 8, 3, 1024, -2, 2, 12, 5],
    )
    assert got == [
        UNM,  # 1: not movable
        UNM,  # 6: pinned (partly freed)
        UNM,  # 99: its allocation failed
        BLK,  # 0 -> 1: an unmovable unit
        BLK,  # 3 -> 10: a pinned object's page
        BLK,  # 2 (o1) -> 8: page 8 is free but 9 is pinned
        BLK,  # 2 -> 3: misaligned
        BLK,  # 2 -> 1024: outside the zone
        BLK,  # 2 -> -2: outside the zone
        BLK,  # 0 (o0) -> 2: a unit of order 1
        BLK,  # 5 (o1) -> 12: a unit of order 2
        EXC,  # 3 -> 5: a movable order-0 unit: swapped
    ]
    assert [z.placement(x) for x in range(6)] == [0, 1, 2, 5, 4, 6]
    assert counts(z)[:2] == (0, 2)
    # page 8 freed by the partial free: free (buddy) without pcp, on a pcp list with pcp
    z.free_obj(3)  # object 3 now at 5: freed
    if pcp:
        assert z.pcp_lists() == {(0, pindex(0, M)): [5, 8]}
        # pcp pages are neither free nor a unit: blocked
        assert ex(z, [4, 0], [5, 8]) == [BLK, BLK]
    else:
        assert z.pcp_lists() == {}
        assert ex(z, [4, 0], [5, 8]) == [MIG, MIG]
        assert [z.placement(x) for x in (4, 0)] == [5, 8]
        assert counts(z)[:2] == (2, 2)


# -- (2) contiguous range allocation -------------------------------------------------------------
def contig_layout(
    impl: type, grouping: bool, pcp: bool = False
) -> tuple[Any, dict[int, tuple[int, int]]]:
    """Zone [0, 2048), grouping as given; 256-page ranges 0..7. Every page allocated as an
    order-0 MOVABLE object i at i, then freed except: range 0 keeps units 0, 64, 128, 192;
    range 1 keeps 300; range 2 keeps 600, flagged movable=False; ranges 3..7 keep two
    units each (r * 256 and r * 256 + 100). With ``pcp`` (batch 1, high never reached)
    the frees stay on the pcp list until a drain."""
    z = impl(0, 2048, grouping=grouping, pcp=pcp, batch=1, high=1 << 20)
    keep = {0, 64, 128, 192, 300, 600} | {r * 256 + d for r in range(3, 8) for d in (0, 100)}
    for i in range(2048):
        assert z.alloc_obj(i, 0, M, movable=i != 600) == i
    for i in range(2048):
        if i not in keep:
            z.free_obj(i)
    return z, {i: (0, M) for i in keep}


def range_is_allocated(z: Any, lo: int, n: int) -> None:
    """No free block meets [lo, lo + n) and no live unit is inside it."""
    for (k, _), pfns in z.free_lists().items():
        for p in pfns:
            assert p + (1 << k) <= lo or p >= lo + n, (p, k)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("grouping", [True, False])
@pytest.mark.parametrize("pcp", [False, True])
def test_alloc_contig_first_and_best_fit(impl: type, grouping: bool, pcp: bool) -> None:
    free0 = 2048 - 16
    # first: candidates 0, 256, ... (A = 256); range 0 has no other page (with pcp: once
    # the pcp lists are drained, which alloc_contig does first): evacuated (4 units
    # move), success at once.
    z, units = contig_layout(impl, grouping, pcp)
    assert z.alloc_contig(256, seq=3) == (0, 4, 1)
    assert z.free_pages() == free0 - 256
    range_is_allocated(z, 0, 256)
    assert all(not 0 <= z.placement(x) < 256 for x in (0, 64, 128, 192))
    assert z.pageblock_counts()[0][1] == 256  # the range: allocated UNMOVABLE
    assert counts(z)[0] == 4
    assert events(z) == []  # the engine records the contig event, not the kernel
    check_compaction_invariants(z, units, {}, {p: (0, U) for p in range(256)})
    # best: the candidate with other == 0 and the fewest movable pages: range 1 (1 unit)
    z, units = contig_layout(impl, grouping, pcp)
    # (ranges tried: the evacuations made, here 1)
    assert z.alloc_contig(256, best=True, seq=3) == (256, 1, 1)
    assert z.free_pages() == free0 - 256
    range_is_allocated(z, 256, 256)
    assert not 256 <= z.placement(300) < 512
    assert z.pageblock_counts()[0][1] == 256
    check_compaction_invariants(z, units, {}, {p: (0, U) for p in range(256, 512)})


@pytest.mark.parametrize("impl", IMPLS)
def test_alloc_contig_refused(impl: type) -> None:
    z, units = contig_layout(impl, True)
    lists = z.free_lists()
    assert z.alloc_contig(256, pfn=512) == (-1, 0, 1)  # unmovable page 600 inside
    assert z.alloc_contig(8, pfn=598) == (-1, 0, 1)
    assert z.alloc_contig(256, pfn=1900) == (-1, 0, 0)  # past the zone's end
    assert z.alloc_contig(2049) == (-1, 0, 0)  # no candidate fits
    assert z.alloc_contig(2049, best=True) == (-1, 0, 0)
    assert z.free_lists() == lists and counts(z) == (0, 0, 0, 0, 0)
    # a range at a given pfn, not aligned: [601, 611) is free; the free blocks 601 (o0),
    # 602 (o1), 604 (o2) and 608 (o5) are isolated; [608, 640) reaches past the range:
    # 611 (o0), 612 (o2), 616 (o3), 624 (o4) go back.
    assert z.alloc_contig(10, pfn=601) == (601, 0, 1)
    range_is_allocated(z, 601, 10)
    assert z.free_pages() == 2048 - 16 - 10
    check_compaction_invariants(z, units, {}, {p: (0, U) for p in range(601, 611)})


@pytest.mark.parametrize("impl", IMPLS)
def test_alloc_contig_first_fit_skips_ranges_with_other_pages(impl: type) -> None:
    # 300-page ranges (A = 512): candidates 0, 300, 600, ...; with page 5 and page 310
    # unmovable, first fit evacuates 600 (the first with other == 0).
    z = impl(0, 2048)
    for i in range(2048):
        assert z.alloc_obj(i, 0, M, movable=i not in (5, 310)) == i
    for i in range(2048):
        if i not in (5, 310, 700):
            z.free_obj(i)
    # ranges tried with pfn = -1: evacuations (ranges with other pages are not counted)
    assert z.alloc_contig(300) == (600, 1, 1)
    assert not 600 <= z.placement(700) < 900
    range_is_allocated(z, 600, 300)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("how", ["contig", "defrag"])
def test_failed_evacuation_gives_everything_back(impl: type, how: str) -> None:
    # Every page an order-0 MOVABLE object i at i; then freed: [0, 16) except units 1, 9
    # and 13, and pages 100 and 200 (200 last: the head of (0, M)). Evacuating [0, 16):
    # isolate 0 (o0), 2 (o1), 4 (o2), 8 (o0), 10 (o1), 12 (o0), 14 (o1); unit 1 -> 200,
    # unit 9 -> 100, unit 13 finds no target (no pcp: no drain retry): failed.
    # The isolated blocks go back in isolation order, each to a list HEAD (no buddy is
    # free yet); then the vacated places: 1 merges 0, 2, 4 up to (0, o3), HEAD; 9 merges
    # 8 and 10 to (8, o2), at the TAIL (0 is a free order-3 block: buddy_merge_likely).
    z = impl(0, 1024, defrag_thresholds={4: 1})
    for i in range(1024):
        assert z.alloc_obj(i, 0, M) == i
    for i in [*(i for i in range(16) if i not in (1, 9, 13)), 100, 200]:
        z.free_obj(i)
    if how == "contig":
        assert z.alloc_contig(16, pfn=0, seq=4) == (-1, 2, 1)
        assert events(z) == []
    else:
        # wanted order 4; [0, 16) has other == 0 and the most free pages (13)
        assert z.active_defrag(seq=4) == (4, 0, 2, 1)
        assert events(z) == [defrag_event(4, 4, 2, 1, "UNBALANCED")]
    assert [z.placement(x) for x in (1, 9, 13)] == [200, 100, 13]
    assert z.free_lists() == {(0, M): [12], (1, M): [14], (2, M): [8], (3, M): [0]}
    assert counts(z)[0] == 2
    units = {i: (0, M) for i in range(16, 1024) if i not in (100, 200)}
    check_compaction_invariants(z, units | {1: (0, M), 9: (0, M), 13: (0, M)}, {})


def fallback_layout(impl: type) -> Any:
    """Zone [0, 2048): objects 0..1023 MOVABLE at 0..1023, the odd ones freed (pageblocks
    0, 1 half free, order 0); objects 1024..2047 UNMOVABLE flagged movable=True (the first
    claims the order-10 block 1024: pageblocks 2, 3 UNMOVABLE), 1025..1535 freed."""
    z = impl(0, 2048)
    for i in range(2048):
        assert z.alloc_obj(i, 0, M if i < 1024 else U, movable=True) == i
    for i in [*range(1, 1024, 2), *range(1025, 1536)]:
        z.free_obj(i)
    assert z.pageblock_types() == [M, M, U, U]
    return z


@pytest.mark.parametrize("impl", IMPLS)
def test_evacuation_target_falls_back_with_an_extfrag_event(impl: type) -> None:
    z = fallback_layout(impl)
    # [1024, 1536): unit 1024 (UNMOVABLE, movable) and free blocks, isolated: no free
    # UNMOVABLE page is left. Its target: no (0, U) block; the ALLOC_NOFRAGMENT pass finds
    # no whole pageblock to claim; the second pass claims the pageblock of the (0, M) head
    # 1023 (256 free + 0 alike >= 256): its free blocks move to the TAIL of (0, U)
    # ascending, 513 first, which __rmqueue_smallest takes.
    assert z.alloc_contig(512, pfn=1024) == (1024, 1, 1)
    assert z.placement(1024) == 513
    assert z.pageblock_types() == [M, U, U, U]
    assert list(z.extfrag) == [(1024, 0, 10, U, M, False, True), (513, 0, 0, U, M, True, True)]


def test_plain_zone_state_keeps_the_extfrag_rows_of_a_pass() -> None:
    # as above, through ZoneState itself: its passes write their targets' fallbacks into
    # the zone's own extfrag buffer (an earlier version handed the kernel a scratch one)
    z = fallback_layout(ZoneState)
    assert z.alloc_contig(512, pfn=1024) == (1024, 1, 1)
    assert list(z.extfrag) == [(1024, 0, 10, U, M, False, True), (513, 0, 0, U, M, True, True)]


# -- (3) active defragmentation ----------------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("grouping", [True, False])
@pytest.mark.parametrize("pcp", [False, True])
def test_active_defrag_frees_order_9_blocks(impl: type, grouping: bool, pcp: bool) -> None:
    # With pcp (batch 1, high never reached) every free of the set-up sits on the pcp list
    # and would count as "other": the pass drains first, TAIL first, i.e. in the order
    # of the frees - the buddy ends as without pcp.
    z, _ = fragmented(impl, grouping=grouping, pcp=pcp, batch=1, high=1 << 20,
                      defrag_thresholds={9: 2})  # fmt: skip
    # wanted order 9 (no free order-9 block, 2 wanted). Candidates 0, 512, 1024, 1536:
    # each 384 free pages, other == 0: the first. Its 128 units go to the (0, M) heads
    # 2045, 2041, ..., 1537; [0, 512) is freed whole: suitable(9) 0 -> 1. Still wanted:
    # now 512 and 1024 tie at 384 free (1536 has 256): 512, its units to 1533 .. 1025.
    # [0, 1024) merges to order 10: suitable(9) = 2: balanced.
    assert z.active_defrag(seq=5) == (9, 2, 256, 2)
    assert events(z) == [defrag_event(5, 9, 256, 0, "BALANCED")]
    assert [z.placement(4 * m) for m in range(128)] == [2045 - 4 * m for m in range(128)]
    assert [z.placement(512 + 4 * m) for m in range(128)] == [1533 - 4 * m for m in range(128)]
    assert list(z.nr_free) == [0, 256] + [0] * 8 + [1]
    assert z.free_lists()[(10, M)] == [0]
    assert counts(z)[:2] == (256, 0)
    assert z.pcp_lists() == {}


# docs/defrag.md: "A pass: if no wanted order, nothing." Only a direct call reaches it:
# the trigger never runs a pass without a wanted order.
@pytest.mark.parametrize("impl", IMPLS)
def test_a_pass_with_no_wanted_order_does_nothing(impl: type) -> None:
    z = impl(0, 2048, defrag_idle_ns=10 * MS, defrag_thresholds={9: 1})
    assert z.active_defrag(seq=1) == (-1, 0, 0, 0)
    assert events(z) == []
    # and defers nothing: once an order is wanted, the first idle gap runs a pass
    assert z.alloc_obj(0, 10, M) == 0
    assert z.alloc_obj(1, 10, M) == 1024
    z.free_obj(7, ts_ns=10 * MS, seq=2)  # (object 7 was never allocated: a no-op)
    assert events(z) == [defrag_event(2, 9, 0, 0, "UNBALANCED")]


@pytest.mark.parametrize("impl", IMPLS)
def test_active_defrag_runs_in_an_idle_gap(impl: type) -> None:
    z, _ = fragmented(impl, defrag_idle_ns=10 * MS, defrag_thresholds={9: 1})
    # the set-up's events were all at ts 0; a gap of 9.999 ms is not idle enough
    z.free_obj(4, ts_ns=10 * MS - 1, seq=1)
    assert events(z) == []
    # 10 ms after the previous event: due, the pass runs before the event
    assert z.alloc_obj(5000, 9, M, ts_ns=20 * MS - 1, seq=2) == 0
    assert events(z) == [defrag_event(2, 9, 127 * 1, 0, "BALANCED")]
    # the order-9 block went to the allocation: wanted again, but the gap is short
    z.free_obj(8, ts_ns=20 * MS, seq=3)
    assert len(events(z)) == 1
    z.free_obj(12, ts_ns=30 * MS, seq=4)
    assert [e[1] for e in events(z)] == [2, 4]
    assert events(z)[1][-1] == "BALANCED"


@pytest.mark.parametrize("impl", IMPLS)
def test_active_defrag_defers_after_useless_passes(impl: type) -> None:
    # nothing can move: every candidate has other pages, every pass frees nothing
    z, _ = fragmented(impl, movable=False, defrag_idle_ns=10 * MS, defrag_thresholds={9: 1})
    assert z.alloc_obj(9999, 10, M) == -1
    ran = []
    ts = 0
    for g in range(1, 200):
        ts += 20 * MS
        n = len(events(z))
        z.free_obj(9999, ts_ns=ts, seq=g)  # freeing a failed allocation: an event, a no-op
        if len(events(z)) > n:
            ran.append(g)
        z.free_obj(9999, ts_ns=ts + 1, seq=-g)  # a short gap: neither runs nor counts
    # a useless pass sets shift = min(shift + 1, 6) and defers the next 1 << shift due
    # passes: 2, 4, 8, 16, 32, 64, 64 gaps skipped
    assert ran == [1, 4, 9, 18, 35, 68, 133, 198]
    assert events(z) == [defrag_event(g, 9, 0, 0, "UNBALANCED") for g in ran]
    assert z.active_defrag(seq=7) == (9, 0, 0, 0)


@pytest.mark.parametrize("impl", IMPLS)
def test_active_defrag_deferral_resets_after_a_useful_pass(impl: type) -> None:
    # one unmovable page in each pageblock (1, 513, 1025, 1537): no candidate
    keep = (1, 513, 1025, 1537)
    z, _ = fragmented(impl, keep=keep, defrag_idle_ns=10 * MS, defrag_thresholds={9: 1})
    assert z.alloc_obj(9999, 10, M) == -1
    ts = 0

    def gap(seq: int) -> int:
        nonlocal ts
        ts += 10 * MS
        n = len(events(z))
        z.free_obj(9999, ts_ns=ts, seq=seq)
        return len(events(z)) - n

    assert [gap(g) for g in range(1, 10)] == [1, 0, 0, 1, 0, 0, 0, 0, 1]  # shift 3: 8 next
    # the unmovable pages go (each free is a gap: the counter goes 8 -> 4)
    for x in keep:
        ts += 10 * MS
        z.free_obj(x, ts_ns=ts, seq=100 + x)
    assert len(events(z)) == 3
    assert [gap(g) for g in range(10, 15)] == [0, 0, 0, 0, 1]
    assert events(z)[-1] == defrag_event(14, 9, 128, 0, "BALANCED")
    # the block goes to an allocation (wanted again): the next gap runs at once (reset)
    ts += MS
    assert z.alloc_obj(5000, 9, M, ts_ns=ts, seq=15) == 0
    assert gap(16) == 1
    assert events(z)[-1] == defrag_event(16, 9, 128, 0, "BALANCED")


@pytest.mark.parametrize("impl", IMPLS)
def test_deferral_counts_only_gaps_with_a_wanted_order(impl: type) -> None:
    # Every page allocated, nothing movable; object 3000 failed (its frees are no-ops).
    z = impl(0, 2048, defrag_idle_ns=10 * MS, defrag_thresholds={9: 1})
    for i in range(2048):
        assert z.alloc_obj(i, 0, M, movable=False) == i
    assert z.alloc_obj(3000, 10, M) == -1
    ts = 10 * MS
    z.free_obj(0, ts_ns=ts, seq=1)  # a useless pass: shift 1, counter 2
    assert events(z) == [defrag_event(1, 9, 0, 0, "UNBALANCED")]
    for i in range(1, 512):  # short gaps: pageblock 0 becomes a free order-9 block
        ts += 1
        z.free_obj(i, ts_ns=ts, seq=2)
    for g in range(3):  # idle gaps, but no order is wanted: the counter stays at 2
        ts += 10 * MS
        z.free_obj(3000, ts_ns=ts, seq=10 + g)
    ts += 1
    assert z.alloc_obj(5000, 9, M, ts_ns=ts, seq=20) == 0  # wanted again
    ran = []
    for g in range(4):  # two gaps deferred, then a pass (useless: nothing can move)
        ts += 10 * MS
        z.free_obj(3000, ts_ns=ts, seq=30 + g)
        ran += [e[1] for e in events(z)[1:] if e[1] == 30 + g]
    assert ran == [32]


# -- (4) per-owner pools ---------------------------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("grouping", [True, False])
def test_pools_cluster_pages_per_owner_chunk(impl: type, grouping: bool) -> None:
    z = impl(0, 1024, grouping=grouping, pool_order=2, pool_owners=2)
    # (owner or -1, obj, pfn): owner 0's first chunk is [0, 4) (the order-10 block split),
    # owner 1's [4, 8); a plain request gets 8 (the order-3 block [8, 16) split); owner
    # 0's second chunk is the order-2 block 12 left by that split.
    steps = [(0, 0, 0), (1, 1, 4), (0, 2, 1), (0, 3, 2), (-1, 4, 8), (0, 5, 3), (0, 6, 12),
             (1, 7, 5)]  # fmt: skip
    for owner, x, pfn in steps:
        assert z.alloc_obj(x, 0, M, owner=owner) == pfn, x
    assert counts(z) == (0, 0, 3, 7, 0)
    # chunk [0, 4) was full; a free puts it at the TAIL of owner 0's list, behind [12, 16)
    z.free_obj(2)
    assert z.alloc_obj(8, 0, M, owner=0) == 13
    assert counts(z) == (0, 0, 3, 7, 0)
    # owner 0 frees the rest of chunk [0, 4): the chunk goes back whole (its buddy 4 is
    # owner 1's chunk: no merge; HEAD)
    for x in (0, 3, 5):
        z.free_obj(x)
    assert counts(z) == (0, 0, 2, 4, 0)
    assert z.free_lists() == {(0, M): [9], (1, M): [10], (2, M): [0], (4, M): [16],
                              (5, M): [32], (6, M): [64], (7, M): [128], (8, M): [256],
                              (9, M): [512]}  # fmt: skip
    # chunk pages count as allocated (type of the chunk's request) until the chunk goes
    assert z.pageblock_counts()[0] == (512 - 9, 0, 9, 0, 0)
    # pooled pages are pinned to their chunk: not movable, not in a movable range
    assert ex(z, [6, 4], [20, 20]) == [UNM, MIG]
    assert z.alloc_contig(4, pfn=12) == (-1, 0, 1)
    # owner 0's next page comes from [12, 16) (head), then the list is empty again
    assert z.alloc_obj(9, 0, M, owner=0) == 14
    assert z.alloc_obj(10, 0, M, owner=0) == 15
    # a new chunk: the head of (2, M) - object 4's old place 8 merged to (8, o2) when it
    # moved to 20 (the split of [16, 32) put 16 (o2) and 22 (o1) at the heads)
    assert z.alloc_obj(11, 0, M, owner=0) == 8
    assert counts(z) == (1, 0, 3, 7, 0)
    # an order > 0 request ignores the owner
    assert z.alloc_obj(12, 1, M, owner=0) == 22
    assert counts(z)[2:] == (3, 7, 0)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("grouping", [True, False])
@pytest.mark.parametrize("pcp", [False, True])
def test_pool_fallback_when_no_chunk_can_be_had(impl: type, grouping: bool, pcp: bool) -> None:
    # every other page free: no order-2 block anywhere
    z = impl(0, 1024, grouping=grouping, pcp=pcp, batch=1, high=2048, pool_order=2)
    for i in range(1024):
        assert z.alloc_obj(i, 0, M) == i
    for i in range(1, 1024, 2):
        z.free_obj(i)
    if pcp:
        z.drain_all()  # the frees sat on the pcp list (high 2048)
    # (0, M): every free went to the HEAD: 1023 first
    assert z.alloc_obj(5000, 0, M, owner=0) == 1023
    assert counts(z) == (0, 0, 0, 0, 1)
    # a fallback page is an ordinary movable unit
    assert ex(z, [5000], [1]) == [MIG]
    assert counts(z) == (1, 0, 0, 0, 1)
    z.free_obj(5000)
    assert counts(z) == (1, 0, 0, 0, 1)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("pool_order", [2, 4])
def test_pool_chunk_is_freed_through_the_pcp_lists(impl: type, pool_order: int) -> None:
    z = impl(0, 1024, pcp=True, ncpus=2, batch=1, high=252, pool_order=pool_order)
    assert z.alloc_obj(0, 0, M, owner=0, cpu=1) == 0
    assert z.alloc_obj(1, 0, M, owner=0) == 1
    z.free_obj(0)
    assert z.pcp_lists() == {}
    z.free_obj(1, cpu=0)
    assert counts(z) == (0, 0, 0, 0, 0)
    if pool_order == 2:  # a pcp order: the chunk goes to the freeing cpu's list
        assert z.pcp_lists() == {(0, pindex(2, M)): [0]}
    else:  # straight to the buddy, merging back
        assert z.pcp_lists() == {}
        assert z.free_lists() == {(10, M): [0]}


# -- (5) random streams ----------------------------------------------------------------------------
SMALL_ORDERS = [0] * 20 + [1] * 4 + [2] * 3 + [3] * 2
CONTIG_SIZES = [1, 2, 3, 8, 16, 50, 64, 100, 256, 512]


class Stream:
    """The test's own bookkeeping: live units (obj -> (order, type)), pinned objects
    (obj -> (base pfn, order, type, page offsets still held)), pooled pages, failed and
    freed objects."""

    def __init__(self) -> None:
        self.units: dict[int, tuple[int, int]] = {}
        self.pinned: dict[int, tuple[int, int, int, set[int]]] = {}
        self.pooled: set[int] = set()
        self.failed: list[int] = []
        self.freed: list[int] = []
        self.next_obj = 0
        self.held = 0  # pages of units, pinned objects and pooled objects

    def live(self) -> list[int]:
        return [*self.units, *self.pinned, *self.pooled]

    def pinned_pages(self) -> dict[int, int]:
        return {base + o: mt for base, _, mt, offs in self.pinned.values() for o in offs}


def _other(ref: RefDefrag) -> dict[int, tuple[int, int]]:
    """Raw allocations: contiguous ranges (page by page, UNMOVABLE) and pool chunks."""
    out = {p: (0, U) for lo, n in ref.contig for p in range(lo, lo + n)}
    out |= {pfn: (ref.pool_order, mt) for pfn, (_, mt, _) in ref.pool_chunks().items()}
    return out


def _compare(ref: RefDefrag, z: Any, s: Stream, step: int) -> None:
    """Everything observable of the numba zone equals the reference's."""
    where = f"step {step}"
    assert z.free_lists() == ref.free_lists(), where
    assert [int(x) for x in z.nr_free] == list(ref.nr_free), where
    assert z.pageblock_types() == ref.pageblock_types(), where
    assert z.pageblock_counts() == ref.pageblock_counts(), where
    assert z.pcp_lists() == ref.pcp_lists(), where
    assert counts(z) == counts(ref), where
    assert z.drains == ref.drains, where
    assert events(z) == events(ref), where
    assert list(z.extfrag) == list(ref.extfrag), where
    objs = np.array([*s.live(), *s.failed[-20:], *s.freed[-20:]], np.int64)
    want = np.array([ref.placement(int(obj)) for obj in objs], np.int64)
    got = np.asarray(z.objects.placed)[objs]  # the numba zone's, all at once
    bad = np.flatnonzero(np.where(got >= 0, got, -1) != want)
    assert bad.size == 0, f"{where}: object {objs[bad[0]]}: {got[bad[0]]} != {want[bad[0]]}"


def _check(zones: list[Any], s: Stream, step: int, full: bool) -> None:
    """Compare the zones (when two) after every step; the reference's units are the
    stream's; the full invariants on every zone when ``full``."""
    ref = zones[0]
    assert ref.unit_placements().keys() == set(s.units) | s.pooled, f"step {step}"
    if len(zones) == 2:
        _compare(ref, zones[1], s, step)
    if full:
        other = _other(ref)
        for z in zones:
            check_compaction_invariants(z, s.units, s.pinned_pages(), other)


def _alloc(zones: list[Any], s: Stream, rng: random.Random, k: int, cpu: int, ts: int,
           seq: int, owners: int, p_unmovable: float) -> None:  # fmt: skip
    """Allocate a new object of order ``k`` on every zone: MOVABLE (movable), or with
    probability ``p_unmovable`` UNMOVABLE / RECLAIMABLE (not movable) or MOVABLE flagged
    movable=False; now and then an UNMOVABLE one flagged movable=True. Half of them name
    a pool owner when ``owners``."""
    obj = s.next_obj
    s.next_obj += 1
    mt, movable = M, None
    if rng.random() < p_unmovable:
        mt, movable = rng.choice([(U, None), (R, None), (M, False)])
    elif rng.random() < 0.03:
        mt, movable = U, True
    owner = rng.randrange(owners) if owners and rng.random() < 0.5 else -1
    got = [z.alloc_obj(obj, k, mt, movable, cpu, ts, seq, owner=owner) for z in zones]
    assert len(set(got)) == 1, f"seq {seq}: alloc_obj({obj}, o{k}, mt{mt}) -> {got}"
    if got[0] < 0:
        s.failed.append(obj)
        return
    s.held += 1 << k
    if obj in zones[0].pooled:
        s.pooled.add(obj)
    else:
        s.units[obj] = (k, mt)


def _free(zones: list[Any], s: Stream, rng: random.Random, cpu: int, ts: int,
          seq: int) -> None:  # fmt: skip
    """Free a random live object: whole, or (sometimes) one aligned piece."""
    obj = rng.choice(s.live())
    if obj in s.pooled or (obj in s.units and (s.units[obj][0] == 0 or rng.random() < 0.92)):
        for z in zones:
            z.free_obj(obj, 0, None, cpu, ts, seq)
        if obj in s.pooled:
            s.pooled.discard(obj)
            s.held -= 1
        else:
            s.held -= 1 << s.units.pop(obj)[0]
        s.freed.append(obj)
        return
    if obj in s.units:  # the first partial free pins the unit (after any pass moved it)
        k, mt = s.units.pop(obj)
        s.pinned[obj] = (-1, k, mt, set(range(1 << k)))
        jmax = k - 1
    else:
        jmax = s.pinned[obj][1]
    base, k, mt, offs = s.pinned[obj]
    j = rng.randint(0, jmax)
    cands = [o for o in range(0, 1 << k, 1 << j) if all(o + i in offs for i in range(1 << j))]
    if not cands:
        j, cands = 0, sorted(offs)
    off = rng.choice(cands)
    for z in zones:
        z.free_obj(obj, off, j, cpu, ts, seq)
    if base < 0:
        base = int(zones[0].placement(obj))
    offs.difference_update(range(off, off + (1 << j)))
    s.pinned[obj] = (base, k, mt, offs)
    s.held -= 1 << j
    if not offs:
        del s.pinned[obj]
        s.freed.append(obj)


def _exchange(zones: list[Any], s: Stream, rng: random.Random) -> list[int]:
    """Exchange a few objects (mostly live units) to random targets: aligned pfns, other
    units' pfns, free pages, their own pfn, misaligned or outside the zone."""
    ref = zones[0]
    start, end = ref.start_pfn, ref.end_pfn
    pool = [*s.units] * 4 + [*s.pinned, *s.pooled, *s.failed[-5:], *s.freed[-5:]]
    if not pool:
        return []
    objs = [rng.choice(pool) for _ in range(rng.randint(1, 6))]
    free_pfns = sorted(ref.free_at)
    targets = []
    for x in objs:
        k = s.units[x][0] if x in s.units else 0
        n = 1 << k
        r = rng.random()
        if r < 0.3 and free_pfns:
            t = rng.choice(free_pfns) & ~(n - 1)
        elif r < 0.55 and s.units:
            t = int(ref.placement(rng.choice(list(s.units))))
        elif r < 0.65:
            t = int(ref.placement(x))
        elif r < 0.75:
            t = rng.choice([start - n, end, end - n + 1, start + 1, -1, rng.randrange(start, end)])
        else:
            t = rng.randrange(start, end) & ~(n - 1)
        targets.append(t)
    got = [[int(v) for v in z.exchange(np.array(objs, np.int64), np.array(targets, np.int64))]
           for z in zones]  # fmt: skip
    assert all(g == got[0] for g in got), f"exchange({objs}, {targets}) -> {got}"
    return got[0]


def _alloc_contig(zones: list[Any], rng: random.Random, seq: int) -> tuple[int, int, int]:
    ref = zones[0]
    n = rng.choice(CONTIG_SIZES)
    best = rng.random() < 0.5
    pfn = -1
    if rng.random() < 0.3:
        pfn = rng.randrange(ref.start_pfn - 4, ref.end_pfn)
    got = [tuple(int(v) for v in z.alloc_contig(n, pfn, best, seq)) for z in zones]
    assert all(g == got[0] for g in got), f"alloc_contig({n}, {pfn}, {best}) -> {got}"
    return got[0]  # type: ignore[return-value]


class Seen:
    """What the streams exercised (for the coverage test)."""

    def __init__(self) -> None:
        self.ex_codes: set[int] = set()
        self.contig: set[str] = set()
        self.defrag_results: set[str] = set()
        self.defrag_moved = 0  # passes that moved pages
        self.triggered = 0


def run_stream(
    zones: list[Any],
    rng: random.Random,
    steps: int,
    ncpus: int,
    full_every: int,
    owners: int,
    idle_ns: int,
    occupancy: float = 0.7,
    p_unmovable: float = 0.1,
    fill: float = 0.9,
    seen: Seen | None = None,
) -> Stream:
    """Drive every zone through one random stream and compare them after every step.

    A fill with small requests at ts 0 until ``fill`` of the zone's pages are held by
    objects or an order-0 request fails (``fill`` 1: the zone is full), random frees down to
    ``occupancy``, then ``steps`` random steps: allocations (orders 0..3, sometimes 9;
    types 0..2; half of them with a pool owner when ``owners``), frees (some partial),
    exchanges, contiguous range allocations, direct passes; trace time advancing by a
    few ms, sometimes by more than the idle gap ``idle_ns`` (active defrag passes).
    """
    s = Stream()
    ref = zones[0]
    pages = int(ref.pages)
    seq = 0
    while s.held < fill * pages:
        n_failed = len(s.failed)
        k = rng.choice(SMALL_ORDERS)
        _alloc(zones, s, rng, k, rng.randrange(ncpus), 0, seq, owners, p_unmovable)
        seq += 1
        if len(s.failed) > n_failed and k == 0:
            break
    while s.held > occupancy * pages and s.live():
        _free(zones, s, rng, rng.randrange(ncpus), 0, seq)
        seq += 1
    _check(zones, s, -1, True)
    ts = 0
    gap = max(idle_ns, 5 * MS)
    for step in range(steps):
        seq += 1
        ts += rng.randrange(0, 2 * MS) if rng.random() < 0.85 else rng.randrange(gap, 3 * gap)
        cpu = rng.randrange(ncpus)
        r = rng.random()
        n_events = len(ref.events)
        p_alloc = 0.55 if s.held < occupancy * pages else 0.2
        if r < 0.06:
            codes = _exchange(zones, s, rng)
            if seen is not None:
                seen.ex_codes |= set(codes)
        elif r < 0.09:
            got, _, _ = _alloc_contig(zones, rng, seq)
            if seen is not None:
                seen.contig.add("ok" if got >= 0 else "failed")
        elif r < 0.10 and ref.wanted_order() >= 0:  # a pass needs a wanted order
            got4 = [tuple(int(v) for v in z.active_defrag(seq)) for z in zones]
            assert all(g == got4[0] for g in got4), f"step {step}: active_defrag -> {got4}"
        elif r < 0.13:
            _alloc(zones, s, rng, 9, cpu, ts, seq, owners, p_unmovable)
        elif r < 0.13 + p_alloc or not s.live():
            _alloc(zones, s, rng, rng.choice(SMALL_ORDERS), cpu, ts, seq, owners, p_unmovable)
        else:
            _free(zones, s, rng, cpu, ts, seq)
        if seen is not None:
            new = ref.events[n_events:]
            seen.defrag_results |= {e[-1] for e in new}
            seen.defrag_moved += sum(e[10] > 0 for e in new)
            seen.triggered += sum(e[1] == seq for e in new) if r >= 0.10 else 0
        _check(zones, s, step, step % full_every == 0 or step == steps - 1)
    return s


# active defragmentation thresholds: (order, free blocks wanted); a float f wants the
# blocks of f * pages (e.g. (4, 0.1): a tenth of the zone in free blocks of order >= 4)
THRESHOLDS: list[tuple[tuple[int, float], ...]] = [
    ((9, 1),),
    ((9, 2),),
    ((4, 0.1), (9, 1)),
    ((2, 0.15),),
    ((6, 0.1),),
    ((4, 0.1),),
    ((10, 1),),
    (),
]
STREAM_CONFIG = {
    "seed": st.integers(0, 2**32 - 1),
    "start": st.sampled_from([0, 1, 333, 1024, 5000]),
    "pages": st.sampled_from([2048, 3000, 4096, 8192]),
    "grouping": st.booleans(),
    "pcp": st.booleans(),
    "idle_ms": st.sampled_from([0, 5, 20]),
    "thresholds": st.sampled_from(THRESHOLDS),
    "pool": st.sampled_from([(0, 1), (1, 2), (2, 2), (3, 3), (5, 2), (9, 2)]),
    "occupancy": st.sampled_from([0.5, 0.65, 0.8]),
    "p_unmovable": st.sampled_from([0.0, 0.02, 0.1]),
    "fill": st.sampled_from([0.9, 1.0]),
}


def _zone_kw(
    grouping: bool,
    pcp: bool,
    idle_ms: int,
    pages: int,
    thresholds: tuple[tuple[int, float], ...],
    pool: tuple[int, int],
) -> dict[str, Any]:
    """The zone's settings; ``thresholds`` as in THRESHOLDS, scaled to ``pages``."""
    wanted = {k: (int(w * pages) >> k if isinstance(w, float) else int(w)) for k, w in thresholds}
    return {"grouping": grouping, "pcp": pcp, "ncpus": 2, "batch": 7, "high": 28,
            "defrag_idle_ns": idle_ms * MS, "defrag_thresholds": wanted,
            "pool_order": pool[0], "pool_owners": pool[1]}  # fmt: skip


@settings(max_examples=25, **STREAM_SETTINGS)
@given(**STREAM_CONFIG)
def test_kernel_matches_reference(
    seed: int, start: int, pages: int, grouping: bool, pcp: bool, idle_ms: int,
    thresholds: tuple[tuple[int, float], ...], pool: tuple[int, int], occupancy: float,
    p_unmovable: float, fill: float,
) -> None:  # fmt: skip
    """RefDefrag and the numba ZoneState agree after every step of random streams."""
    kw = _zone_kw(grouping, pcp, idle_ms, pages, thresholds, pool)
    zones = [RefDefrag(start, pages, **kw), Zone(start, pages, **kw)]
    owners = pool[1] if pool[0] else 0
    run_stream(zones, random.Random(seed), 200, 2, full_every=50, owners=owners,
               idle_ns=idle_ms * MS, occupancy=occupancy, p_unmovable=p_unmovable,
               fill=fill)  # fmt: skip


def test_reference_streams_exercise_the_models() -> None:
    """The random streams really exercise the mechanisms: every exchange result, contiguous
    allocations that succeed and fail, triggered passes that free blocks and that do not,
    pool chunks and pool fallbacks; invariants hold throughout."""
    seen = Seen()
    chunks = fallbacks = 0
    for seed, start, pages, grouping, pcp, thresholds, pool, occupancy, fill in [
        (1, 333, 4096, False, False, ((4, 0.1), (9, 1)), (3, 3), 0.65, 0.9),
        (4, 1024, 4096, False, True, ((6, 0.1),), (9, 2), 0.5, 1.0),
        (0, 1, 3000, True, True, ((9, 2),), (5, 2), 0.8, 1.0),
    ]:
        kw = _zone_kw(grouping, pcp, 5, pages, thresholds, pool)
        zone = RefDefrag(start, pages, **kw)
        run_stream([zone], random.Random(seed), 300, 2, full_every=50, owners=pool[1],
                   idle_ns=5 * MS, occupancy=occupancy, p_unmovable=0.02, fill=fill,
                   seen=seen)  # fmt: skip
        chunks += int(zone.counters[C_POOL_CHUNKS]) > 0
        fallbacks += int(zone.stats[S_POOL_FALLBACKS])
    assert seen.ex_codes == {IN, MIG, EXC, BLK, UNM}
    assert seen.contig == {"ok", "failed"}
    assert seen.defrag_results == {"BALANCED", "UNBALANCED"}
    assert seen.defrag_moved > 0 and seen.triggered > 0
    assert chunks > 0 and fallbacks > 0


def test_zone_state_refuses_a_cpu_it_has_no_lists_for() -> None:
    z = ZoneState(0, 1024, pcp=True, ncpus=2)
    with pytest.raises(ValueError, match="cpu 2"):
        z.alloc_obj(0, 0, M, cpu=2)
    assert z.alloc_obj(0, 0, M, cpu=1) >= 0
