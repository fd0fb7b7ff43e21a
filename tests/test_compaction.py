"""The ``compaction`` model (docs/compaction.md): hand-worked examples and random streams.

Part 1 works small zones by hand from docs/compaction.md and checks
placements, model events and free lists; every example is parametrised over
``IMPLS`` (the pure-Python reference tests/ref_compaction.py and the numba
``ZoneState``). Part 2 drives random streams of ``alloc_obj`` / ``free_obj`` /
``tick`` / ``compact_memory`` through both and compares them at every step;
the same streams also run on the reference alone, against its invariants.

Units: pfns are absolute page frame numbers, orders are buddy orders
(``1 << order`` pages), times are nanoseconds. Model events are tuples
``(kind, seq, order, mode, start_pfn, end_pfn, migrate_pfn, free_pfn,
scanned_migrate, scanned_free, moved, failed, result)``.
"""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from ref_compaction import PIECE_IDS, RefCompaction, check_compaction_invariants

from replay.engine.whatif import ModelState, captured_blocks, fork_of_model, split_objects
from replay.models.buddy import compaction_capture
from replay.models.compaction import (
    compact_recorded_begin,
    compact_recorded_step,
    isolated_free_pages,
)
from replay.models.internal import (
    C_ME,
    CAPC_ORDER,
    CAPC_PAGE,
    CAPC_PAGE_ORDER,
    CC_FREE_GIVEN,
    CC_FREE_PFN,
    CC_MOVED,
    CC_NUNITS,
    COMPLETE,
    CONTINUE,
    GIVEN_AROUND,
    GIVEN_FAST,
    GIVEN_LINEAR,
    ME_COLS,
    MODE_ASYNC,
    MODE_SYNC,
    SUCCESS,
)
from replay.models.zone import ZoneState

IMPLS: list[type] = [RefCompaction, ZoneState]

U, M, R = 0, 1, 2
MS = 1_000_000  # ns per ms
Event = tuple[str, int, int, str, int, int, int, int, int, int, int, int, str]


def events(zone: Any) -> list[tuple]:
    """The zone's model events as plain tuples."""
    return [tuple(e) for e in zone.model_events]


def high_lists(zone: Any, min_order: int = 2) -> dict[tuple[int, int], list[int]]:
    """The free lists of order >= ``min_order``."""
    return {k: v for k, v in zone.free_lists().items() if k[0] >= min_order}


def not_run(kind: str, seq: int, order: int, mode: str, result: str) -> Event:
    """The event of a compact_zone call that scanned nothing (or a deferred attempt)."""
    return (kind, seq, order, mode, -1, -1, -1, -1, 0, 0, 0, 0, result)


def fragmented(
    impl: type, *, grouping: bool = True, movable: bool = True, **kw: Any
) -> tuple[Any, dict[int, tuple[int, int]]]:
    """Zone [0, 2048) (pageblocks 0..3): every page allocated as an order-0 MOVABLE
    object ``i`` at pfn ``i`` (``movable`` flag as given), then 3 pages of every 4
    freed: units at 4i stay, free blocks 4i+1 (order 0) and 4i+2 (order 1).
    Returns (zone, live units: obj -> (order, type))."""
    z = impl(0, 2048, grouping=grouping, **kw)
    for i in range(2048):
        assert z.alloc_obj(i, 0, M, movable=movable) == i
    for i in range(2048):
        if i % 4:
            z.free_obj(i)
    assert list(z.nr_free) == [512, 512] + [0] * 9
    units = {i: (0, M) for i in range(0, 2048, 4)}
    check_compaction_invariants(z, units, {})
    return z, units


def first_round_targets() -> list[int]:
    """Where the first 32 units of a fragmented() zone go when the free scanner starts at
    pageblock 3 (pfn 1536): it isolates 1537(o0), 1538(o1), 1541(o0), ... until 33 pages
    (11 order-0 and 11 order-1 blocks, each at the TAIL of its isolated list);
    compaction_alloc takes the lowest order first: the 11 order-0 blocks, then each
    order-1 block split (the upper half goes to the head of the order-0 list)."""
    targets = [1537 + 4 * g for g in range(11)]
    for g in range(11):
        targets += [1538 + 4 * g, 1539 + 4 * g]
    return targets[:32]


# -- (1) one-shot whole-zone compaction ----------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("grouping", [True, False])
def test_compact_memory_builds_an_order_10_block(impl: type, grouping: bool) -> None:
    z, units = fragmented(impl, grouping=grouping)
    # compact_zone(-1, SYNC, whole zone): migrate scanner from 0, free scanner from
    # pageblock_start_pfn(2047) = 1536. The zone starts in pageblock 0, which the kernel's
    # last_migrated_pfn (0: none yet) also names, so the first round finishes pageblock 0
    # (finish_pageblock): its 128 units in one batch. The free scanner isolates pageblock
    # 3's free blocks from 1537 up until it holds 128 pages: 43 order-0 and 43 order-1
    # blocks (129 pages, stopping at 1708); compaction_alloc takes the order-0 blocks
    # first, then splits the order-1 ones. Pageblocks 1 and 2: a round of 32 units (to
    # 637, 1149), then the rest (96 units, finish_pageblock, to 1024, 1536). After the
    # last of these the migration scanner stands at 1536, and the free scanner only
    # scans below pageblock_end_pfn(1536) = 2048, above its own pageblock: it isolates
    # nothing and the 96 units fail (compaction_alloc has no target). The scanners have
    # met: COMPLETE, 288 moved, 96 failed; the free scanner stopped at 1920.
    assert z.compact_memory(seq=7) == "COMPLETE"
    assert events(z) == [
        ("compact_oneshot", 7, -1, "sync", 0, 1536, 1536, 1920, 1536, 384, 288, 96, "COMPLETE")
    ]
    # pageblocks 0+1 merged to one order-10 block; [1024, 1152) (the first round of
    # pageblock 2) to order 7; the rest of pageblock 2 and [1920, 2048) as they were
    assert high_lists(z) == {(7, M): [1024], (10, M): [0]}
    assert list(z.nr_free) == [128, 128, 0, 0, 0, 0, 0, 1, 0, 0, 1]
    assert z.pageblock_types() == [M] * 4
    targets = [1537 + 4 * n for n in range(43)]
    for g in range(43):
        targets += [1538 + 4 * g, 1539 + 4 * g]
    assert [z.placement(4 * n) for n in range(128)] == targets[:128]
    assert all(z.placement(i) == i for i in range(1152, 2048, 4))  # never moved
    check_compaction_invariants(z, units, {})
    # a second pass: pageblocks 0 and 1 are free; pageblock 2's 96 units go as 32 (the
    # free scanner, from 1536 again, takes 33 pages of pageblock 3's rest) and 64 (one
    # gets the page left over, 63 fail: the same wall at 2048)
    assert z.compact_memory(seq=8) == "COMPLETE"
    assert events(z)[-1] == (
        "compact_oneshot", 8, -1, "sync", 0, 1536, 1536, 1964, 2048, 428, 33, 63, "COMPLETE"
    )  # fmt: skip
    assert high_lists(z) == {(2, M): [1280], (8, M): [1024], (10, M): [0]}


@pytest.mark.parametrize(("budget", "want"), [(0, 0), (32, 32), (64, 128), (128, 128),
                                              (129, 160)])  # fmt: skip
def test_recorded_compaction_moves_at_most_what_the_kernel_migrated(budget: int, want: int
                                                                     ) -> None:  # fmt: skip
    """compact_recorded bounded by the recorded pass's nr_migrated: the pass ends (SUCCESS)
    at the first round boundary with at least ``budget`` pages moved. From pageblock 1
    (the recorded begin's migrate pfn), each pageblock goes as a round of 32 units
    (COMPACT_CLUSTER_MAX) and then its other 96 (finish_pageblock); unbounded, pageblock
    2's second round finds no target (the free scanner only scans below
    pageblock_end_pfn(1536) = 2048): 160 moved, 96 failed, the scanners met."""
    z, units = fragmented(ZoneState)
    assert z.compact_recorded(-1, "sync", budget, (512, 2047, -1, -1), seq=3) == "SUCCESS"
    moved = events(z)[-1][10]
    assert moved == want and events(z)[-1][0] == "compact_recorded"
    assert sum(z.placement(i) != i for i in units) == moved
    check_compaction_invariants(z, units, {})
    z, units = fragmented(ZoneState)
    assert z.compact_recorded(-1, "sync", -1, (512, 2047, -1, -1), seq=3) == "COMPLETE"
    assert events(z)[-1][10:12] == (160, 96)


def test_recorded_compaction_scans_the_range_the_kernel_scanned() -> None:
    """The recorded begin's scanner pfns start the model's scanners, the recorded end's
    stop them: here the migration scanner from pageblock 1 to pageblock 2 only."""
    z, units = fragmented(ZoneState)
    assert z.compact_recorded(-1, "sync", -1, (512, 2047, 1024, -1), seq=4) == "SUCCESS"
    ev = events(z)[-1]
    assert ev[4:6] == (512, 1536) and ev[6] >= 1024 and ev[10] == 128
    moved = [i for i in units if z.placement(i) != i]
    assert len(moved) == 128 and all(512 <= i < 1024 for i in moved)
    check_compaction_invariants(z, units, {})


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("grouping", [True, False])
def test_unmovable_page_keeps_its_pageblock_from_becoming_free(impl: type, grouping: bool) -> None:
    # As fragmented(), but page 601 (pageblock 1) is not freed: an order-0 MOVABLE-type
    # object flagged movable=False (the trace's `movable` column), a unit that is never
    # migratable. The migrate scanner steps over it (1 page; a SYNC pass does not give
    # up the block for it); everything else goes as in the whole-zone pass above
    # (test_compact_memory_builds_an_order_10_block).
    z = impl(0, 2048, grouping=grouping)
    for i in range(2048):
        assert z.alloc_obj(i, 0, M, movable=(i != 601)) == i
    for i in range(2048):
        if i % 4 and i != 601:
            z.free_obj(i)
    units = {i: (0, M) for i in [*range(0, 2048, 4), 601]}
    assert z.compact_memory() == "COMPLETE"
    assert events(z) == [
        ("compact_oneshot", -1, -1, "sync", 0, 1536, 1536, 1920, 1536, 384, 288, 96, "COMPLETE")
    ]
    assert z.placement(601) == 601
    # pageblock 1 = [512, 1024) minus page 601: the maximal aligned blocks around it, one
    # per order (600 and 602 among pageblock 2's and 3's order-0 and order-1 blocks);
    # pageblock 0 whole (it cannot merge with pageblock 1); [1024, 1152) as before
    assert high_lists(z) == {
        (2, M): [604], (3, M): [592], (4, M): [576], (5, M): [608], (6, M): [512],
        (7, M): [1024, 640], (8, M): [768], (9, M): [0],
    }  # fmt: skip
    assert 600 in z.free_lists()[(0, M)] and 602 in z.free_lists()[(1, M)]
    assert all(z.placement(i) == i for i in range(1152, 2048, 4))
    check_compaction_invariants(z, units, {})


@pytest.mark.parametrize("impl", IMPLS)
def test_free_scanner_steps_over_an_order_10_unit(impl: type) -> None:
    # Object 1 is a movable order-10 unit at [1024, 2048) (never migratable: order >= 9);
    # [0, 1024) holds order-0 units at 4i with free 4i+1 (o0), 4i+2 (o1) as fragmented().
    z = impl(0, 2048)
    assert z.alloc_obj(0, 10, M) == 0
    assert z.alloc_obj(1, 10, M) == 1024
    z.free_obj(0)
    for i in range(1024):
        assert z.alloc_obj(2 + i, 0, M) == i
    for i in range(1024):
        if i % 4:
            z.free_obj(2 + i)
    units = {2 + i: (0, M) for i in range(0, 1024, 4)} | {1: (10, M)}
    # The first round finishes pageblock 0 (the zone starts there, and the kernel's
    # last_migrated_pfn, 0, names it): its 128 units in one batch, the migrate scanner
    # then at 512. The free scanner starts at pageblock 3 = [1536, 2048): inside the unit,
    # not its start, so every page is an "other" page (512 scanned, nothing isolated).
    # Pageblock 2 starts with the unit: p += 1 << 10 (1024 pages scanned, p = 2048,
    # isolate_start capped at the block end 1536). Pageblock 1 is below
    # pageblock_end_pfn(512) = 1024, where the free scanner stops: no target, the 128
    # units fail and stay; the scanners have met.
    assert z.compact_memory() == "COMPLETE"
    assert events(z) == [
        ("compact_oneshot", -1, -1, "sync", 0, 1536, 512, 512, 512, 512 + 1024, 0, 128,
         "COMPLETE")
    ]  # fmt: skip
    assert z.placement(1) == 1024
    assert high_lists(z) == {}
    assert all(z.placement(2 + i) == i for i in range(0, 1024, 4))
    check_compaction_invariants(z, units, {})


# -- (2) direct compaction ----------------------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("grouping", [True, False])
def test_direct_compaction_satisfies_a_failed_order_4_request(impl: type, grouping: bool) -> None:
    z, units = fragmented(impl, grouping=grouping, compaction="direct")
    # order 4 MOVABLE: no free block above order 1 -> fails (no pcp, so no drain retry).
    # Direct compaction, ASYNC: not deferred (compact_considered 0 -> 1 = 1 << 0);
    # __zone_watermark_ok(4, min 0) fails (no block >= order 4); compaction_suitable:
    # 1536 free > low 0 + compact_gap(4) = 32, fragmentation_index(4) = 1000 - (1000 +
    # 1536*1000/16) / 1024 = 906 > 500. Scanners start at the cached 0 and 1536.
    # ASYNC direct compaction isolates whole order-4 aligned blocks only
    # (skip_on_failure): [0, 16) holds units 0, 4, 8, 12 and free pages, so they are
    # isolated and migrated at once (the migrate scanner stops at 16); pageblock 0 gets
    # its skip hint at the first isolation. Targets (fast_isolate_freepages, the orders
    # below 4 from each MOVABLE list's tail, first search of the pass: up to 256
    # entries): no order-3 or order-2 block; the order-1 list's tail holds 2, 6, .., 510,
    # below min_pfn = pageblock_start_pfn(1536 - 1520 / 2) = 512; 514 is in the top half
    # (not the top quarter, from 1024): a candidate, the limit halves to 128 and the
    # 129 entries scanned end the search: 514 is isolated (units 0, 4 go to 514, 515) and
    # moved to its list's head. The second search (2 more pages wanted) starts at the
    # list's new tail, 518, and takes 538 after six candidates each halving the limit
    # (units 8, 12 go to 538, 539). Each migrated unit's old page is freed with the
    # capture armed: the fourth merges [0, 16) to order 4, which is captured: SUCCESS
    # after one round.
    assert z.alloc_obj(5000, 4, M, seq=9) == 0
    assert events(z) == [
        ("compact_direct", 9, 4, "async", 0, 1536, 16, 1536, 16, 138, 4, 0, "SUCCESS")
    ]
    assert high_lists(z) == {}
    # 512 o0 and 512 o1 blocks less the 4 groups of [0, 16) and the o1 blocks 514, 538
    assert list(z.nr_free) == [508, 506, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    assert [z.placement(4 * n) for n in range(4)] == [514, 515, 538, 539]
    assert z.placement(16) == 16  # the next order-4 block was not touched
    units[5000] = (4, M)
    check_compaction_invariants(z, units, {})


@pytest.mark.parametrize("impl", IMPLS)
def test_fast_find_migrateblock_empties_a_mostly_free_pageblock_first(impl: type) -> None:
    """An order-9 direct compaction starts where the free lists point
    (fast_find_migrateblock), not at the zone's first pageblock."""
    # The zone [1024, 5120) does not start in pageblock 0 (whose first round the kernel
    # would finish whole: last_migrated_pfn 0 names it). Object i at pfn 1024 + i.
    z = impl(1024, 4096, compaction="direct")
    for i in range(4096):
        assert z.alloc_obj(i, 0, M) == 1024 + i
    free = list(range(1024, 1280))  # pfns [2048, 2304): one order-8 block (pageblock 4)
    free += list(range(2560, 2568))  # an order-3 block at 3584 (pageblock 7)
    free += [i for i in range(3072, 4096) if i % 4]  # pageblocks 8, 9: 3 pages of 4
    for i in free:
        z.free_obj(i)
    assert z.free_lists()[(8, M)] == [2048]
    units = {i: (0, M) for i in range(4096) if i not in set(free)}
    # No order-9 block: direct compaction (ASYNC). compaction_suitable: 1032 free pages >
    # compact_gap(9) = 1024; fragmentation_index(9) = 1000 - (1000 + 1032 * 1000 / 512) /
    # 514 blocks = 995 > 500. The migration scanner stands at the zone start: the fast
    # search looks below pageblock_start_pfn(1024 + (4608 - 1024) / 2) = 2816 in the
    # MOVABLE lists of orders 8..3 and finds 2048 (order 8) first. The scanner takes
    # pageblock 4's 256 units (its first 32, then the rest: finish_pageblock); their old
    # pages merge with the order-8 block into pageblock 4 whole, an order-9 block the
    # capture takes. The linear scanner would have emptied pageblock 2 (512 units)
    # instead.
    assert z.alloc_obj(9000, 9, M, seq=9) == 2048
    ev = events(z)
    assert len(ev) == 1 and ev[0][:4] == ("compact_direct", 9, 9, "async")
    assert ev[0][10] == 256 and ev[0][12] == "SUCCESS"  # pages migrated, result
    assert all(z.placement(i) == 1024 + i for i in range(512))  # pageblock 2 untouched
    assert all(z.placement(i) >= 3584 for i in range(1280, 1536))
    units[9000] = (9, M)
    check_compaction_invariants(z, units, {})


def test_capture_takes_only_a_block_the_request_may_use() -> None:
    """compaction_capture: only at the order compacted for; a MOVABLE pageblock's block
    below pageblock order only for a MOVABLE request; from pageblock order up any type."""
    for k, mt, cc_order, cc_mt, want in [
        (4, M, 4, M, True), (3, M, 4, M, False), (4, U, 4, U, True), (4, M, 4, U, False),
        (4, R, 4, U, True), (9, M, 9, U, True),
    ]:  # fmt: skip
        capc = np.array([cc_order, cc_mt, -1, -1], np.int64)
        assert compaction_capture(np.int64(512), np.int64(k), np.int64(mt), capc) == want
        assert capc.tolist() == ([cc_order, cc_mt, 512, k] if want else [cc_order, cc_mt, -1, -1])


@pytest.mark.parametrize("keep", [True, False])
def test_recorded_pass_captures_for_the_kernels_allocation(keep: bool) -> None:
    """A recorded direct compaction of a user task for order 4 captures [0, 16) as the
    direct one above does (one round, SUCCESS); at the pass's end the block waits for
    the allocation the kernel served after it (F_CAPTURE), which takes it, or, with no
    such allocation, goes back to the buddy."""
    z, units = fragmented(ZoneState, compaction="direct")
    scan = np.full(6, -1, np.int64)  # scanners and batch range unknown
    compact_recorded_begin(4, MODE_ASYNC, scan, 0, True, z.arrays, z.prm, z.objects, z.cz)
    r = compact_recorded_step(1000, True, keep, CONTINUE, scan, 0, 9, z.arrays, z.prm,
                              z.objects, z.cz, z.counters, z.me)  # fmt: skip
    assert r == SUCCESS
    assert z.arrays.capture[CAPC_ORDER] == -1  # disarmed
    if keep:
        assert z.arrays.capture[CAPC_PAGE] == 0 and z.arrays.capture[CAPC_PAGE_ORDER] == 4
        assert high_lists(z) == {}
        # another request first does not take it; the flagged one of order 4 does
        assert z.alloc_obj(5001, 0, M) >= 0
        units[5001] = (0, M)
        assert z.alloc_obj(5000, 4, M, captured=True) == 0
    else:
        assert z.arrays.capture[CAPC_PAGE] == -1
        assert high_lists(z) == {(4, M): [0]}  # [0, 16) back to the buddy
        assert z.alloc_obj(5000, 4, M, captured=True) == 0  # from the free list
    units[5000] = (4, M)
    assert z.arrays.capture[CAPC_PAGE] == -1
    assert [z.placement(4 * n) for n in range(4)] == [514, 515, 538, 539]
    check_compaction_invariants(z, units, {})


def test_a_fork_has_a_captured_block_free() -> None:
    """A model state holding a block captured for the allocation after a recorded pass
    (neither free nor allocated) forks with that block free: a fork carries no capture
    control (docs/explain.md)."""
    z, _units = fragmented(ZoneState, compaction="direct")
    scan = np.full(6, -1, np.int64)
    compact_recorded_begin(4, MODE_ASYNC, scan, 0, True, z.arrays, z.prm, z.objects, z.cz)
    compact_recorded_step(1000, True, True, CONTINUE, scan, 0, 9, z.arrays, z.prm, z.objects,
                          z.cz, z.counters, z.me)  # fmt: skip
    env = cast(Any, SimpleNamespace(start_pfn=0))
    ms = ModelState(seq=10, env=env, zone=z, ncpus=1, ids=None, n_obj=2048)
    assert captured_blocks(ms) == [(0, 4)]
    fork = fork_of_model(ms)
    assert fork.blk[0] == 4 and (fork.page_mt[:16] == -1).all()
    assert fork.blk[17] == 0 and fork.page_mt[16] == M  # [16, 32) as it was; unit 16 stayed


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("grouping", [True, False])
def test_deferral_after_repeated_failures(impl: type, grouping: bool) -> None:
    # Nothing can move (movable=False): every order-4 request fails and compaction of the
    # whole zone only walks pageblocks 0..2 (1536 pages) until the scanners meet: COMPLETE
    # (whole_zone: it started at the zone start). ASYNC direct compaction gives up each
    # order-4 block at its first page (a unit it cannot isolate: skip_on_failure), so it
    # scans 96 pages; SYNC scans all 1536. compact_order_failed stays 0 (defer_
    # compaction keeps min(0, 4)), so every order is deferred.
    z, units = fragmented(impl, grouping=grouping, movable=False, compaction="direct")
    lists = z.free_lists()

    def ran(seq: int, mode: str) -> Event:
        scanned = 96 if mode == "async" else 1536
        return ("compact_direct", seq, 4, mode, 0, 1536, 1536, 1536, scanned, 0, 0, 0,
                "COMPLETE")  # fmt: skip

    def deferred(seq: int, mode: str) -> Event:
        return not_run("compact_direct", seq, 4, mode, "DEFERRED")

    # compaction_deferred: ++considered >= 1 << shift runs (and caps considered there);
    # a SYNC COMPLETE defers: considered = 0, shift += 1. Runs at failures 1 (ASYNC and
    # SYNC), 2, 4, 8, 16, 32, 64 (SYNC); then, with the shift capped at 6, every 32
    # failures (64 considered attempts, two per failure).
    want: list[Event] = []
    considered, shift = 0, 0
    runs_at = []
    for f in range(1, 140):
        for mode in ("async", "sync"):
            considered += 1
            if considered >= 1 << shift:
                considered = 1 << shift
                want.append(ran(f, mode))
                runs_at.append(f)
                if mode == "sync":
                    considered, shift = 0, min(shift + 1, 6)
            else:
                want.append(deferred(f, mode))
        assert z.alloc_obj(10_000 + f, 4, M, seq=f) == -1
    assert runs_at[:8] == [1, 1, 2, 4, 8, 16, 32, 64]
    assert runs_at[8:] == [96, 128]
    assert events(z) == want
    assert events(z)[:6] == [ran(1, "async"), ran(1, "sync"), deferred(2, "async"),
                             ran(2, "sync"), deferred(3, "async"), deferred(3, "sync")]  # fmt: skip
    assert z.free_lists() == lists
    check_compaction_invariants(z, units, {})


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("grouping", [True, False])
@pytest.mark.parametrize("threshold", [500, 400])
def test_compaction_suitable_skips_when_memory_is_short(
    impl: type, grouping: bool, threshold: int
) -> None:
    # 256 order-3 MOVABLE objects (obj i at 8i), the odd ones freed: 128 free order-3
    # blocks at 16i + 8, units at 16i. Order 4 fails. compaction_suitable(4): watermark
    # 1024 > 0 + 32 holds; fragmentation_index(4) = 1000 - (1000 + 1024*1000/16) / 128 =
    # 1000 - 507 = 493: failing for lack of memory (<= extfrag_threshold 500) -> SKIPPED.
    z = impl(0, 2048, grouping=grouping, compaction="direct", extfrag_threshold=threshold)
    for i in range(256):
        assert z.alloc_obj(i, 3, M) == 8 * i
    for i in range(1, 256, 2):
        z.free_obj(i)
    units = {i: (3, M) for i in range(0, 256, 2)}
    got = z.alloc_obj(999, 4, M, seq=3)
    if threshold == 500:
        assert got == -1
        # both attempts skip; a SKIPPED result does not defer
        assert events(z) == [not_run("compact_direct", 3, 4, "async", "SKIPPED"),
                             not_run("compact_direct", 3, 4, "sync", "SKIPPED")]  # fmt: skip
        assert list(z.nr_free) == [0, 0, 0, 128] + [0] * 7
        check_compaction_invariants(z, units, {})
        return
    # 493 > 400: suitable. The first round finishes pageblock 0 (the zone starts there:
    # the kernel's last_migrated_pfn 0 names it), so fast_find_migrateblock does not
    # search. ASYNC direct compaction isolates whole order-4 blocks: [0, 16) is unit 0
    # and the free [8, 16), so the round is unit 0 alone (8 pages; the migrate scanner
    # stops at 16). Its target: fast_isolate_freepages searches the order-3 list from its
    # tail (8, 24, .., 504 are below min_pfn = pageblock_start_pfn(1536 - 1520 / 2) =
    # 512); 520, 536, 552 are candidates in the top half, each halving the limit, and
    # the 35th entry ends the search at the highest, 552 (35 + 7 pages scanned). Unit 0's
    # old block merges with [8, 16) to order 4: captured (SUCCESS).
    assert got == 0
    assert events(z) == [
        ("compact_direct", 3, 4, "async", 0, 1536, 16, 1536, 16, 42, 8, 0, "SUCCESS")
    ]
    assert z.placement(0) == 552
    assert [z.placement(2 * n) for n in range(1, 32)] == [16 * n for n in range(1, 32)]
    assert high_lists(z, 4) == {}
    assert list(z.nr_free) == [0, 0, 0, 126, 0, 0, 0, 0, 0, 0, 0]
    units[999] = (4, M)
    check_compaction_invariants(z, units, {})


@pytest.mark.parametrize("impl", IMPLS)
def test_async_direct_compaction_scans_only_pageblocks_of_the_request_type(impl: type) -> None:
    # Grouping on. Pageblocks 0, 1 hold MOVABLE-type objects; the first UNMOVABLE request
    # claims (10, M) head 1024, so pageblocks 2, 3 become UNMOVABLE and hold UNMOVABLE-type
    # objects flagged movable=True. Then 3 pages of 4 are freed everywhere.
    z = impl(0, 2048, compaction="direct")
    for i in range(2048):
        assert z.alloc_obj(i, 0, M if i < 1024 else U, movable=True) == i
    for i in range(2048):
        if i % 4:
            z.free_obj(i)
    assert z.pageblock_types() == [M, M, U, U]
    units = {i: (0, M if i < 1024 else U) for i in range(0, 2048, 4)}
    # UNMOVABLE order 4 fails (no block >= order 2 of any type). ASYNC: the migrate scanner
    # skips the MOVABLE pageblocks 0, 1 (suitable_migration_source) and isolates pageblock
    # 2's first order-4 block, units 1024..1036 (whole order-4 blocks only: the scanner
    # stops at 1040). Targets: the MOVABLE free lists hold nothing above pageblock 1, below
    # min_pfn = pageblock_start_pfn(1536 - (1536 - 1040) / 2) = 1024; this first search of
    # a direct pass then sets the free scanner to min_pfn, and the linear scanner finds
    # no MOVABLE pageblock at or above it: the 4 units fail. This round finishes its
    # pageblock already (the pass began at 0, in pageblock 0, which the kernel's
    # last_migrated_pfn 0 names), so there is no rescan; the scanners have met:
    # COMPLETE. SYNC (whole zone): pageblock 0's 128 units in one round (finishing
    # pageblock 0); the fast search again finds nothing and takes min_pfn = 1024, where
    # fast_isolate_around (not for ASYNC direct passes) isolates pageblock 2's free pages,
    # whatever the pageblock's type: 129 pages, the units go to 1025..1194. Pageblock 0 is
    # free: a fallback exists (SUCCESS), and the retry claims it for UNMOVABLE
    # (ALLOC_NOFRAGMENT pass).
    assert z.alloc_obj(7000, 4, U, seq=5) == 0
    assert events(z) == [
        ("compact_direct", 5, 4, "async", 0, 1536, 1040, 1024, 16, 384, 0, 4, "COMPLETE"),
        ("compact_direct", 5, 4, "sync", 0, 1536, 512, 1024, 512, 556, 128, 0, "SUCCESS"),
    ]
    assert z.pageblock_types() == [U, M, U, U]
    assert list(z.extfrag)[-1] == (0, 4, 9, U, M, False, True)
    assert high_lists(z) == {(4, U): [16], (5, U): [32], (6, U): [64], (7, U): [128],
                             (8, U): [256]}  # fmt: skip
    assert list(z.nr_free) == [342, 341, 0, 0, 1, 1, 1, 1, 1, 0, 0]
    assert all(z.placement(i) == i for i in range(1024, 2048, 4))
    placed = sorted(z.placement(i) for i in range(0, 512, 4))
    assert placed[0] == 1025 and placed[-1] == 1194
    assert all(1024 <= p < 1195 and p % 4 != 0 for p in placed)
    units[7000] = (4, U)
    check_compaction_invariants(z, units, {})


# -- (3) proactive compaction -------------------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("grouping", [True, False])
def test_proactive_compaction_runs_at_500ms_boundaries(impl: type, grouping: bool) -> None:
    # Set-up events all at ts 0 = ts0: the first check is due at 500 ms.
    z, units = fragmented(impl, grouping=grouping, compaction="proactive")
    z.tick(499 * MS)
    assert z.alloc_obj(5000, 9, M, ts_ns=499_999_999, seq=41) == -1  # no direct compaction
    assert events(z) == []
    # The check at 500 ms runs before the event at 500 ms: score = extfrag_for_order(9) *
    # 2048 // 2049 = 100 * 2048 // 2049 = 99 > wmark_high 90 -> compact_zone(-1, SYNC, whole
    # zone, proactive), which goes on while the zone's extfrag_for_order(9) > wmark_low 80:
    # once pageblock 0 is free (after its one round: finish_pageblock, to 512) it is
    # (1536 - 512) * 100 // 1536 = 66: SUCCESS. The order-9 request then gets pageblock 0.
    assert z.alloc_obj(5001, 9, M, ts_ns=500 * MS, seq=42) == 0
    assert events(z) == [
        ("compact_proactive", 42, -1, "sync", 0, 1536, 512, 1708, 512, 172, 128, 0, "SUCCESS")
    ]
    units[5001] = (9, M)
    check_compaction_invariants(z, units, {})
    # the score went down (99 -> 65): no backoff, but the next check is at 1000 ms
    z.free_obj(5001, ts_ns=999_999_999, seq=43)
    del units[5001]
    assert len(events(z)) == 1
    assert z.free_lists()[(9, M)] == [0]
    # at 1000 ms the score is 65 <= 90: nothing to do
    z.tick(1000 * MS)
    assert len(events(z)) == 1
    check_compaction_invariants(z, units, {})


@pytest.mark.parametrize("impl", IMPLS)
def test_proactive_backoff_of_64_checks_when_the_score_does_not_improve(impl: type) -> None:
    z, units = fragmented(impl, movable=False, compaction="proactive")

    def ran(seq: int) -> Event:
        # whole zone, nothing migratable: the migrate scanner walks pageblocks 0..2
        return ("compact_proactive", seq, -1, "sync", 0, 1536, 1536, 1536, 1536, 0, 0, 0,
                "COMPLETE")  # fmt: skip

    # ts0 = 0 (the set-up). Check at 500 ms: score 99 > 90, compaction moves nothing, the
    # score stays 99: proactive_defer = 64.
    z.tick(500 * MS)
    assert events(z) == [ran(-1)]
    # the checks at 1.0, 1.5, ..., 32.5 s (64 of them) only count the backoff down
    z.tick(32_999 * MS)
    assert events(z) == [ran(-1)]
    for t in (1_000, 20_000, 32_500):
        z.tick(t * MS)  # time going back: nothing is due
    assert events(z) == [ran(-1)]
    # the check at 33.0 s compacts again, before the event at 33.0 s (whose seq it gets)
    # (order-0 blocks were freed in ascending order, each to the HEAD: 2045 is the head)
    assert z.alloc_obj(9000, 0, M, ts_ns=33_000 * MS, seq=77) == 2045
    assert events(z) == [ran(-1), ran(77)]
    units[9000] = (0, M)
    # and backs off again: checks at 33.5 .. 65.0 s count down, 65.5 s compacts
    z.free_obj(9000, ts_ns=65_499 * MS, seq=78)
    del units[9000]
    assert len(events(z)) == 2
    z.tick(65_500 * MS)
    assert events(z) == [ran(-1), ran(77), ran(-1)]
    check_compaction_invariants(z, units, {})


@pytest.mark.parametrize("impl", IMPLS)
def test_proactive_checks_catch_up_over_a_long_gap(impl: type) -> None:
    # One event at 2.2 s after ts0: the checks at 0.5, 1.0, 1.5 and 2.0 s all run before
    # it. The first compacts (nothing movable: no improvement, defer 64), the next three
    # count the backoff down.
    z, _ = fragmented(impl, movable=False, compaction="both")
    z.free_obj(0, ts_ns=2_200 * MS, seq=5)
    assert [e[:2] for e in events(z)] == [("compact_proactive", 5)]


# -- (4) random streams --------------------------------------------------------------------------
SMALL_ORDERS = [0] * 24 + [1] * 3 + [2] * 2 + [3]
LARGE_ORDERS = [4] * 4 + [5] * 3 + [6] * 2 + [7, 8, 9, 10]
P_LARGE = 0.06  # share of steps that request a large block (order >= 4)
P_ONESHOT = 0.004  # share of steps that run compact_memory


class Stream:
    """The test's own bookkeeping of live objects: units (obj -> (order, type)), pinned
    objects and the page offsets they still hold, failed allocations; pages held (all
    of them) and the large (order >= 4) units, kept up to date."""

    def __init__(self) -> None:
        self.units: dict[int, tuple[int, int]] = {}
        # obj -> (base pfn, order, type, page offsets still held)
        self.pinned: dict[int, tuple[int, int, int, set[int]]] = {}
        self.failed: list[int] = []
        self.large: set[int] = set()
        self.held = 0  # pages
        self.next_obj = 0
        # obj -> (order, type, page offsets still held): folios compaction split
        self.split: dict[int, tuple[int, int, set[int]]] = {}
        self.splits_seen = 0  # the zones' split count when the stream last looked

    def add_unit(self, obj: int, k: int, mt: int) -> None:
        self.units[obj] = (k, mt)
        self.held += 1 << k
        if k >= 4:
            self.large.add(obj)

    def free_unit(self, obj: int) -> None:
        k, _ = self.units.pop(obj)
        self.held -= 1 << k
        self.large.discard(obj)

    def pin(self, obj: int) -> None:
        """The unit's first partial free: it becomes pinned (base pfn unknown yet)."""
        k, mt = self.units.pop(obj)
        self.large.discard(obj)
        self.pinned[obj] = (-1, k, mt, set(range(1 << k)))

    def free_piece(self, obj: int, off: int, j: int) -> None:
        offs = self.pinned[obj][3]
        offs.difference_update(range(off, off + (1 << j)))
        self.held -= 1 << j
        if not offs:
            del self.pinned[obj]

    def pinned_pages(self) -> dict[int, int]:
        return {base + o: mt for base, _, mt, offs in self.pinned.values() for o in offs}

    def absorb_splits(self, zone: Any) -> None:
        """Units the zone's compaction split since the last look become split objects."""
        if zone.splits == self.splits_seen:
            return
        self.splits_seen = zone.splits
        for obj in [x for x in self.units if zone.pieces(x) is not None]:
            k, mt = self.units.pop(obj)
            self.large.discard(obj)
            self.split[obj] = (k, mt, set(range(1 << k)))

    def free_split(self, obj: int, off: int, j: int) -> None:
        offs = self.split[obj][2]
        offs.difference_update(range(off, off + (1 << j)))
        self.held -= 1 << j
        if not offs:
            del self.split[obj]

    def piece_pfns(self, zone: Any) -> dict[int, tuple[int, int]]:
        """The live pieces of split folios as raw order-0 allocations (pfn -> (0, type))."""
        out: dict[int, tuple[int, int]] = {}
        for obj, (_, mt, offs) in self.split.items():
            pfns = zone.pieces(obj)
            for o in offs:
                out[pfns[o]] = (0, mt)
        return out


def _placements(zone: Any, s: Stream) -> dict[int, int]:
    """Live units' pfns (obj -> pfn). RefCompaction lists its own units (which must be
    exactly the stream's); other zones are asked one object at a time."""
    unit_placements = getattr(zone, "unit_placements", None)
    if unit_placements is None:
        return {x: int(zone.placement(x)) for x in s.units}
    # (the reference's own ids for the pieces of split folios are not the stream's)
    got: dict[int, int] = {x: p for x, p in unit_placements().items() if x < PIECE_IDS}
    assert got.keys() == s.units.keys(), "the reference's units differ from the stream's"
    return got


def _cheap_invariants(zone: Any, s: Stream, placed: dict[int, int]) -> None:
    """Every live unit's pages are outside every free block (and other units); free +
    allocated + pcp pages == zone pages. One sort, for every step."""
    lists = zone.free_lists()
    pieces = list(s.piece_pfns(zone)) if s.split else []
    starts = np.array(
        [p for pfns in lists.values() for p in pfns] + [placed[x] for x in s.units] + pieces,
        np.int64,
    )
    sizes = np.array(
        [1 << k for (k, _), pfns in lists.items() for _ in pfns]
        + [1 << k for k, _ in s.units.values()]
        + [1] * len(pieces),
        np.int64,
    )
    assert starts.size == 0 or starts.min() >= int(zone.start_pfn), "a live unit is unplaced"
    order = np.argsort(starts, kind="stable")
    lo, hi = starts[order], starts[order] + sizes[order]
    bad = np.flatnonzero(hi[:-1] > lo[1:])
    assert bad.size == 0, f"overlapping blocks/units at {lo[bad[0]]} and {lo[bad[0] + 1]}"
    free = int(zone.free_pages())
    n_free = sum(len(pfns) for pfns in lists.values())
    assert free == int(sizes[:n_free].sum())
    assert free + s.held + int(zone.pcp_pages()) == int(zone.pages)


def _compare(ref: Any, z: Any, s: Stream, step: int, placed: dict[int, int]) -> None:
    """Everything observable of the numba zone equals the reference's (``placed``: the
    reference's unit placements)."""
    where = f"step {step}"
    assert z.free_lists() == ref.free_lists(), where
    assert [int(x) for x in z.nr_free] == list(ref.nr_free), where
    assert z.pageblock_types() == ref.pageblock_types(), where
    assert z.pcp_lists() == ref.pcp_lists(), where
    assert events(z) == events(ref), where
    # every unit at once (one lookup per unit was most of this test's time)
    objs = np.fromiter(placed.keys(), np.int64, len(placed))
    want = np.fromiter(placed.values(), np.int64, len(placed))
    got = np.asarray(z.objects.placed)[objs]
    bad = np.flatnonzero(np.where(got >= 0, got, -1) != want)
    assert bad.size == 0, f"{where}: unit {objs[bad[0]]}: {got[bad[0]]} != {want[bad[0]]}"
    for obj, (base, *_) in s.pinned.items():
        assert int(z.placement(obj)) == base == ref.placement(obj), f"{where}: pinned {obj}"
    assert z.splits == ref.splits, where
    for obj in s.split:
        assert z.pieces(obj) == ref.pieces(obj), f"{where}: split {obj}"
    for obj in s.failed[-20:]:
        assert int(z.placement(obj)) == -1 == ref.placement(obj), f"{where}: failed {obj}"


def _small_order(rng: random.Random, shift: int) -> int:
    """A small request's order; bigger zones get bigger ones (about as many objects)."""
    return rng.choice(SMALL_ORDERS) + (shift if rng.random() < 0.7 else 0)


def _alloc(zones: list[Any], s: Stream, rng: random.Random, k: int, cpu: int, ts: int,
           seq: int, any_type: bool = True) -> int:  # fmt: skip
    """Allocate a new object of order ``k`` on every zone (MOVABLE and movable unless
    ``any_type``: then mostly MOVABLE, sometimes another type or a movable override)."""
    obj = s.next_obj
    s.next_obj += 1
    mt = rng.choice([U] + [M] * 18 + [R]) if any_type else M
    movable = None if not any_type or rng.random() < 0.9 else rng.random() < 0.5
    # One in eight requests is GFP_ATOMIC-like: no drain, no direct compaction (drawn from
    # the object id, not the stream's rng, so the seeded streams stay as they were).
    direct = (obj * 2654435761) % 8 != 3
    got = [z.alloc_obj(obj, k, mt, movable, cpu, ts, seq=seq, direct_reclaim=direct)
           for z in zones]  # fmt: skip
    assert len(set(got)) == 1, f"seq {seq}: alloc_obj({obj}, o{k}, mt{mt}) -> {got}"
    if got[0] >= 0:
        s.add_unit(obj, k, mt)
    else:
        s.failed.append(obj)
    return got[0]


def _aligned_piece(rng: random.Random, k: int, jmax: int, offs: set[int]) -> tuple[int, int]:
    """A random aligned piece (page offset, order <= ``jmax``) of an order-``k`` object
    whose pages ``offs`` are all still held; a single held page when none is."""
    j = rng.randint(0, jmax)
    cands = [o for o in range(0, 1 << k, 1 << j) if all(o + i in offs for i in range(1 << j))]
    if not cands:
        j, cands = 0, sorted(offs)
    return rng.choice(cands), j


def _free(zones: list[Any], s: Stream, rng: random.Random, cpu: int, ts: int, seq: int,
          p_partial: float = 0.1) -> None:  # fmt: skip
    """Free a random live object (large units are short-lived: picked a third of the time
    when there are some): whole, or (``p_partial`` of the time) one aligned piece."""
    if s.large and rng.random() < 0.33:
        obj = rng.choice(sorted(s.large))
    else:
        obj = rng.choice([*s.units, *s.pinned, *s.split])
    if obj in s.split:  # all of it, or an aligned piece of what it still holds
        k, _, offs = s.split[obj]
        off, j = _aligned_piece(rng, k, k, offs)
        for z in zones:
            z.free_obj(obj, off, j, cpu, ts, seq=seq)
        s.free_split(obj, off, j)
        return
    if obj in s.units and (s.units[obj][0] == 0 or rng.random() >= p_partial):
        order = None if rng.random() < 0.5 else s.units[obj][0]
        for z in zones:
            z.free_obj(obj, 0, order, cpu, ts, seq=seq)
        s.free_unit(obj)
        return
    if obj in s.units:  # the first partial free pins the unit
        s.pin(obj)
        jmax = s.pinned[obj][1] - 1
    else:
        jmax = s.pinned[obj][1]
    base, k, mt, offs = s.pinned[obj]
    off, j = _aligned_piece(rng, k, jmax, offs)
    for z in zones:
        z.free_obj(obj, off, j, cpu, ts, seq=seq)
    if base < 0 and zones[0].pieces(obj) is not None:
        # proactive checks due before the free split the unit: its pages are pieces
        del s.pinned[obj]
        s.split[obj] = (k, mt, offs)
        s.free_split(obj, off, j)
        return
    if base < 0:  # known only now: proactive checks due before the free may move the unit
        s.pinned[obj] = (int(zones[0].placement(obj)), k, mt, offs)
    s.free_piece(obj, off, j)


def _check(zones: list[Any], s: Stream, step: int, full: bool) -> None:
    """Compare the zones (when two) and check the invariants: the cheap ones on the
    reference at every call (when the numba zone equals it, they hold there too), all of
    them on every zone when ``full`` (then the extfrag events are compared as well)."""
    ref = zones[0]
    s.absorb_splits(ref)
    placed = _placements(ref, s)
    _cheap_invariants(ref, s, placed)
    if len(zones) == 2:
        _compare(ref, zones[1], s, step, placed)
        if full:
            assert list(zones[1].extfrag) == list(ref.extfrag), f"step {step}"
    if full:
        for z in zones:
            _cheap_invariants(z, s, _placements(z, s) if z is not ref else placed)
            check_compaction_invariants(z, s.units, s.pinned_pages(), s.piece_pfns(z))


def run_stream(
    zones: list[Any],
    rng: random.Random,
    steps: int,
    ncpus: int,
    full_every: int,
    occupancy: float = 0.7,
) -> Stream:
    """Drive every zone through one random stream; compare them (when two) and check
    the invariants.

    First, at ts 0, a fill with small MOVABLE requests up to 95% of the zone's pages,
    then random frees down to ``occupancy`` (return values compared at every call, the
    whole state every 64 calls and at the end; reported as step -seq): free memory
    scattered over movable pages. Then ``steps``
    random steps, everything compared and the cheap invariants checked after each, the
    full ``check_compaction_invariants`` every ``full_every`` steps and at the end:
    small requests (orders 0..3, shifted up in big zones) and frees keep about
    ``occupancy`` of the zone held, so free memory ends up scattered; now and then a
    large request (orders 4..10) that often needs compaction; frees of failed
    allocations, ``tick``, ``compact_memory``; trace time mostly advancing by a few ms,
    sometimes by 0.5..3 s (several proactive checks).
    """
    s = Stream()
    pages = int(zones[0].pages)
    shift = max(0, (pages // 2048).bit_length() - 1)  # 0 up to 4095 pages, 1, 2 at 8192
    seq = 0
    while s.held < 0.95 * pages:
        k = _small_order(rng, shift)
        if _alloc(zones, s, rng, k, rng.randrange(ncpus), 0, seq, any_type=False) < 0:
            break
        seq += 1
        if seq % 64 == 0:
            _check(zones, s, -seq, False)
    while s.held > occupancy * pages:
        _free(zones, s, rng, rng.randrange(ncpus), 0, seq, p_partial=0.0)
        seq += 1
        if seq % 64 == 0:
            _check(zones, s, -seq, False)
    _check(zones, s, -1, True)
    ts = 0
    for step in range(steps):
        seq += 1
        ts += rng.randrange(0, 20 * MS) if rng.random() < 0.9 else rng.randrange(500, 3000) * MS
        cpu = rng.randrange(ncpus)
        r = rng.random()
        p_alloc = 0.55 if s.held < occupancy * pages else 0.1
        if r < P_ONESHOT:
            got = [z.compact_memory(seq=seq) for z in zones]
            assert len(set(got)) == 1, f"step {step}: compact_memory -> {got}"
        elif r < 0.03:
            for z in zones:
                z.tick(ts)
        elif r < 0.04 and s.failed:
            obj = rng.choice(s.failed)  # freeing a failed allocation: a no-op
            for z in zones:
                z.free_obj(obj, 0, None, cpu, ts, seq=seq)
        elif r < 0.04 + P_LARGE:
            _alloc(zones, s, rng, rng.choice(LARGE_ORDERS), cpu, ts, seq)
        elif r < 0.04 + P_LARGE + p_alloc or not (s.units or s.pinned):
            _alloc(zones, s, rng, _small_order(rng, shift), cpu, ts, seq)
        else:
            _free(zones, s, rng, cpu, ts, seq)
        _check(zones, s, step, step % full_every == 0 or step == steps - 1)
    return s


STREAM_CONFIG = {
    "seed": st.integers(0, 2**32 - 1),
    "start": st.sampled_from([0, 1, 1024, 5000]),
    "pages": st.sampled_from([1024, 1536, 2048, 3000, 4096, 8192]),
    "grouping": st.booleans(),
    "pcp": st.booleans(),
    "compaction": st.sampled_from(["direct", "proactive", "both"]),
    "wmark": st.sampled_from([(0, 0, 0), (4, 8, 12), (16, 32, 48)]),
    "proactiveness": st.sampled_from([20, 50]),
    "occupancy": st.sampled_from([0.5, 0.7, 0.85]),
}


def _zone_kw(
    grouping: bool, pcp: bool, compaction: str, wmark: tuple[int, int, int], proactiveness: int
) -> dict[str, Any]:
    return {"grouping": grouping, "pcp": pcp, "ncpus": 2, "batch": 7, "high": 28,
            "compaction": compaction, "wmark": wmark, "proactiveness": proactiveness}  # fmt: skip


# Streams are drawn from a seed: shrinking would only try other streams, so it is off;
# a failure reports its first differing step.
STREAM_SETTINGS = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow],
    "phases": (Phase.explicit, Phase.reuse, Phase.generate),
    "report_multiple_bugs": False,
}


@settings(max_examples=60, **STREAM_SETTINGS)
@given(**STREAM_CONFIG)
def test_kernel_matches_reference(
    seed: int, start: int, pages: int, grouping: bool, pcp: bool, compaction: str,
    wmark: tuple[int, int, int], proactiveness: int, occupancy: float,
) -> None:  # fmt: skip
    """RefCompaction and the numba ZoneState agree at every step of random streams."""
    kw = _zone_kw(grouping, pcp, compaction, wmark, proactiveness)
    zones = [RefCompaction(start, pages, **kw), ZoneState(start, pages, **kw)]
    run_stream(zones, random.Random(seed), 300, 2, full_every=50, occupancy=occupancy)


def _check_events(zone: RefCompaction) -> None:
    """Model events are well formed: results, costs, kinds, modes and positions."""
    start, end = zone.start_pfn, zone.start_pfn + zone.pages
    for e in zone.model_events:
        kind, _, order, mode, m0, f0, m1, f1, sm, sf, moved, failed, result = e
        assert result in ("SUCCESS", "COMPLETE", "PARTIAL_SKIPPED", "SKIPPED", "DEFERRED")
        assert min(sm, sf, moved, failed) >= 0
        assert (kind == "compact_direct") == (order > 0)
        assert mode == "sync" or kind == "compact_direct"
        if m0 < 0:  # nothing scanned
            assert (m0, f0, m1, f1, sm, sf, moved, failed) == (-1, -1, -1, -1, 0, 0, 0, 0)
            assert result in ("SUCCESS", "SKIPPED", "DEFERRED")
            continue
        assert result != "DEFERRED" and (result != "SKIPPED")
        # (cached scanner positions need not be pageblock aligned: docs/compaction.md;
        # fast_find_migrateblock may take the migration scanner below where it started)
        assert start <= m0 < end and start <= m1 <= end and start <= f0 < end
        # the scanners met: the pass ended there, unless a capture stopped it first (SUCCESS)
        met = f1 >> 9 <= m1 >> 9
        assert met or result not in ("COMPLETE", "PARTIAL_SKIPPED")
        assert not met or result in ("COMPLETE", "PARTIAL_SKIPPED", "SUCCESS")
        assert (result == "COMPLETE") <= (m0 == start or kind != "compact_direct")


@settings(max_examples=25, **STREAM_SETTINGS)
@given(**STREAM_CONFIG)
def test_reference_keeps_invariants_on_random_streams(
    seed: int, start: int, pages: int, grouping: bool, pcp: bool, compaction: str,
    wmark: tuple[int, int, int], proactiveness: int, occupancy: float,
) -> None:  # fmt: skip
    """The reference alone: invariants after every step (full ones every 25 steps)."""
    kw = _zone_kw(grouping, pcp, compaction, wmark, proactiveness)
    zone = RefCompaction(start, pages, **kw)
    run_stream([zone], random.Random(seed), 250, 2, full_every=25, occupancy=occupancy)
    _check_events(zone)


def test_reference_streams_exercise_compaction() -> None:
    """The random streams really compact: over a few fixed streams, units move and every
    kind of event and every result shows up; invariants hold throughout."""
    seen: set[tuple[str, str]] = set()
    moved = 0
    for seed, start, pages, grouping, pcp, occupancy, compaction in [
        (0, 1, 4096, True, False, 0.7, "direct"),
        (1, 1, 3000, True, True, 0.7, "both"),
        (2, 1, 4096, True, False, 0.7, "direct"),
    ]:
        kw = _zone_kw(grouping, pcp, compaction, (4, 8, 12), 50)
        zone = RefCompaction(start, pages, **kw)
        run_stream([zone], random.Random(seed), 400, 2, full_every=50, occupancy=occupancy)
        _check_events(zone)
        seen |= {(e[0], e[-1]) for e in zone.model_events}
        moved += sum(e[10] for e in zone.model_events)
    assert moved > 0
    direct = {r for k, r in seen if k == "compact_direct"}
    assert direct == {"SUCCESS", "COMPLETE", "PARTIAL_SKIPPED", "SKIPPED", "DEFERRED"}, seen
    assert {k for k, _ in seen} == {"compact_direct", "compact_proactive", "compact_oneshot"}


def test_a_recorded_step_can_stop_inside_a_batch() -> None:
    """A recorded pass's step whose budget falls inside a batch (another task allocated
    while the kernel's migrate_pages was freeing the batch's old folios) stops there: the
    batch's other units stay isolated and its free targets stay off the free lists; the
    next step migrates them first, passing over a unit freed meanwhile; the pass's end
    puts back what is still isolated and releases the targets."""
    z, units = fragmented(ZoneState, compaction="direct")
    # from pageblock 1 (pageblock 0's first round would take it whole: finish_pageblock)
    scan = np.array([512, 2047, -1, -1, -1, -1], np.int64)
    compact_recorded_begin(-1, MODE_SYNC, scan, 0, False, z.arrays, z.prm, z.objects, z.cz)

    def step(budget: int, last: bool = False) -> int:
        return int(compact_recorded_step(budget, last, False, CONTINUE, scan, 0, 9, z.arrays,
                                         z.prm, z.objects, z.cz, z.counters, z.me))  # fmt: skip

    assert step(5) == CONTINUE
    targets = first_round_targets()
    assert [z.placement(512 + 4 * n) for n in range(6)] == [*targets[:5], 532]
    assert z.cz[CC_MOVED] == 5 and z.cz[CC_NUNITS] == 27
    held = isolated_free_pages(z.arrays)
    assert held > 0 and sum(z.nr_free) < 512 + 512 * 2 - held + 1  # the targets are held
    z.free_obj(536)  # a unit of the batch in flight is freed by its owner
    del units[536]
    assert step(40) == CONTINUE
    assert z.placement(532) == targets[5] and z.placement(540) == targets[6]  # 536 skipped
    assert z.cz[CC_MOVED] == 40 and z.cz[CC_NUNITS] > 0  # inside the second batch
    assert step(40, last=True) == CONTINUE  # the budget was spent: the pass's event SUCCESS
    row = z.me[int(z.counters[C_ME]) - 1]  # the pass's one model event
    assert row[ME_COLS.index("moved")] == 40 and row[ME_COLS.index("result")] == SUCCESS
    assert z.cz[CC_NUNITS] == 0 and isolated_free_pages(z.arrays) == 0
    check_compaction_invariants(z, units, {})


def given_scan(mig: int, free: int, *given: tuple[int, int, int, int]) -> np.ndarray:
    """A recorded step's ``scan`` (replay.models.internal): the scanners' start, nothing
    known of the end nor the batch's migration range, and the free-scanner isolations
    ``given`` ((kind, start, stop, nr_taken) each)."""
    return np.array([mig, free, -1, -1, -1, -1, len(given), *(v for g in given for v in g)],
                    np.int64)  # fmt: skip


def test_a_recorded_step_takes_its_targets_where_the_kernels_free_scanner_did() -> None:
    """The kernel's free-scanner isolations of a batch are inputs: the model takes its
    targets from the recorded ranges, at most the pages the kernel took from each (the
    model's free blocks whose heads lie there, in pfn order), in the kernel's order, not
    from the top pageblock where its own scanner starts; the linear scans move its free
    scanner (to where the kernel's stopped); an isolation the batch did not need waits
    for the next step (``CC_FREE_GIVEN`` counts those replayed), and so do the targets
    it did not use (cc->freepages is kept until compact_zone ends), until the pass's end
    releases them."""
    z, units = fragmented(ZoneState, compaction="direct")
    # ranges in pageblock 2: [1024, 1100) gave the kernel 6 pages, [1100, 1200) 40,
    # [1300, 1400) 8; the fragmented zone has free 4i+1 (order 0) and 4i+2 (order 1)
    e1 = (GIVEN_LINEAR, 1024, 1100, 6)
    e2 = (GIVEN_LINEAR, 1100, 1200, 40)
    e3 = (GIVEN_LINEAR, 1300, 1400, 8)
    scan = given_scan(512, 2047, e1, e2, e3)
    compact_recorded_begin(-1, MODE_SYNC, scan, 0, False, z.arrays, z.prm, z.objects, z.cz)
    # the first batch (32 units from 512, pageblock 1): e1 gives 1025, 1026-1027, 1029,
    # 1030-1031 (6 pages); e2 from 1101 up until 40 pages (1101 ... 1153); 46 >= 32, so
    # e3 waits
    r = compact_recorded_step(32, False, False, CONTINUE, scan, 0, 9, z.arrays, z.prm,
                              z.objects, z.cz, z.counters, z.me)  # fmt: skip
    assert r == CONTINUE and z.cz[CC_MOVED] == 32 and z.cz[CC_NUNITS] == 0
    assert z.cz[CC_FREE_GIVEN] == 2
    assert z.cz[CC_FREE_PFN] == 1200  # e2 stopped inside its pageblock
    placed = [z.placement(512 + 4 * n) for n in range(32)]
    assert all(1024 <= p < 1154 for p in placed), placed
    assert isolated_free_pages(z.arrays) == 46 - 32  # held for the next batch
    # the next step: the 14 targets held first, then e3 (1301, 1302-1303, 1305, ...
    # until 8 pages: 9), then the model's own scanner, which finds nothing: this round
    # finished pageblock 1 (finish_pageblock), so the migration scanner stands in
    # pageblock 2 with the free scanner (at 1200, where e2 left the kernel's): the
    # scanners have met, COMPLETE, and the targets left go back
    scan2 = given_scan(512, 2047, e3)
    r = compact_recorded_step(96, True, False, CONTINUE, scan2, 0, 9, z.arrays, z.prm,
                              z.objects, z.cz, z.counters, z.me)  # fmt: skip
    assert r == COMPLETE
    placed2 = [z.placement(512 + 4 * n) for n in range(32, 32 + 23)]
    want = [p for g in range(6, 13) for p in (1102 + 4 * g, 1103 + 4 * g)]  # 1126, 1127, ...
    assert placed2 == [*want, 1301, 1305, 1309, 1302, 1303, 1306, 1307, 1310, 1311]
    assert z.cz[CC_MOVED] == 55 and isolated_free_pages(z.arrays) == 0
    check_compaction_invariants(z, units, {})


def test_a_recorded_fast_pick_and_its_pageblock_scan() -> None:
    """A recorded fast_isolate_freepages pick (min_pfn, free_pfn, one block's pages):
    the model's free MOVABLE block of that order first from its list's tail at or above
    half-way between them, and fast_isolate_around's scan of its pageblock leaves the
    free scanner where it was."""
    z, units = fragmented(ZoneState, compaction="direct")
    tail_first = z.free_lists()[(1, M)][::-1]
    want = next(p for p in tail_first if p >= 1536)  # half-way from 1024 to 2047: 1536
    scan = given_scan(512, 2047, (GIVEN_FAST, 1024, 2047, 2), (GIVEN_AROUND, 1024, 1536, 4))
    compact_recorded_begin(-1, MODE_SYNC, scan, 0, False, z.arrays, z.prm, z.objects, z.cz)
    compact_recorded_step(2, False, False, CONTINUE, scan, 0, 9, z.arrays, z.prm, z.objects,
                          z.cz, z.counters, z.me)  # fmt: skip
    assert z.cz[CC_FREE_GIVEN] == 2 and z.cz[CC_FREE_PFN] == 1536  # where the pass began
    taken = sorted(z.placement(512 + 4 * n) for n in range(2))
    # the pick's two pages (order 1), then 1025 of the pageblock scan
    assert taken == sorted([want, want + 1]) or taken[0] == 1025, taken
    assert isolated_free_pages(z.arrays) == 2 + 4 - 2  # 1025, 1026-1027, 1029 isolated
    compact_recorded_step(2, True, False, CONTINUE, scan[:7].copy(), 0, 9, z.arrays, z.prm,
                          z.objects, z.cz, z.counters, z.me)  # fmt: skip
    assert isolated_free_pages(z.arrays) == 0
    check_compaction_invariants(z, units, {})


def _base_pages_only_at_the_top(z: Any) -> dict[int, tuple[int, int]]:
    """An order-2 unit at pfn 0, movable base pages up to 512, unmovable ones to 1024,
    and pageblocks 2 and 3 every other page free: the free scanner finds order-0 blocks
    only, 512 of them, as many as the movable pages below (the live units returned)."""
    units: dict[int, tuple[int, int]] = {}
    assert z.alloc_obj(0, 2, M) == 0
    units[0] = (2, M)
    for i in range(4, 2048):
        assert z.alloc_obj(i, 0, M, movable=i < 512 or i >= 1024) == i
        units[i] = (0, M)
    for i in range(1025, 2048, 2):
        z.free_obj(i)
        del units[i]
    return units


@pytest.mark.parametrize("impl", IMPLS)
def test_a_large_unit_without_a_target_is_split_and_its_pages_move(impl: type) -> None:
    """No order-2 block where the free scanner looks: the order-2 folio is split
    (migrate_pages_batch's -ENOMEM: try_split_folio) and its four pages migrate one by
    one, as the base pages isolated with it do; a later free of the object frees its
    pages where they went."""
    z = impl(0, 2048)
    units = _base_pages_only_at_the_top(z)
    z.compact_memory(seq=1)
    assert z.splits == 1 and z.placement(0) == -1
    pieces = z.pieces(0)
    assert len(set(pieces)) == 4 and all(p >= 1024 and p % 2 == 1 for p in pieces)
    assert all(z.placement(i) >= 1024 for i in range(4, 512))  # the base pages moved
    kind, *_rest, moved, failed, _result = events(z)[-1]
    assert kind == "compact_oneshot" and failed == 0 and moved == 512
    assert z.free_pages() + z.pcp_pages() == 512  # pfns 0..511, every page below moved
    del units[0]
    check_compaction_invariants(z, units, {}, {p: (0, M) for p in pieces})
    before = z.free_pages() + z.pcp_pages()
    z.free_obj(0, 2, 1)  # its pages 2 and 3
    assert z.pieces(0) == [pieces[0], pieces[1], -1, -1]
    z.free_obj(0)  # the rest
    assert z.pieces(0) == [-1] * 4
    assert z.free_pages() + z.pcp_pages() == before + 4
    check_compaction_invariants(z, units, {})


@pytest.mark.parametrize("impl", IMPLS)
def test_a_split_folios_pages_move_after_the_rest_of_the_batch(impl: type) -> None:
    """migrate_pages migrates the pages of the folios its batch split (split_folios)
    only after the batch: with 29 free pages for a batch of an order-2 folio and 28 base
    pages, the base pages take 28 of them and one page of the folio the last; its
    other three pages find no target and stay (one MIGRATE_ASYNC try, then -ENOMEM)."""
    z = impl(0, 2048)
    units: dict[int, tuple[int, int]] = {}
    assert z.alloc_obj(0, 2, M) == 0
    units[0] = (2, M)
    for i in range(4, 2048):
        assert z.alloc_obj(i, 0, M, movable=i < 32) == i
        units[i] = (0, M)
    for i in range(2047, 2047 - 2 * 29, -2):
        z.free_obj(i)
        del units[i]
    z.compact_memory(seq=1)
    assert all(z.placement(i) >= 1536 for i in range(4, 32))  # the batch's base pages
    pieces = z.pieces(0)
    assert z.splits == 1 and pieces is not None
    assert pieces[0] >= 1536 and pieces[1:] == [1, 2, 3]
    kind, *_rest, moved, failed, _result = events(z)[-1]
    assert kind == "compact_oneshot" and moved == 29 and failed == 3
    del units[0]
    check_compaction_invariants(z, units, {}, {p: (0, M) for p in pieces})


def test_a_fork_keeps_the_pieces_of_a_split_folio() -> None:
    """A fork of a model state in which compaction split a folio starts with the folio
    split, its pieces where they were (replay.engine.whatif ``split_objects``,
    ``ZoneState.adopt_split``), so a later free of the folio frees them there rather
    than being ignored while its pages stay allocated."""
    z = ZoneState(0, 2048)
    units = _base_pages_only_at_the_top(z)
    z.compact_memory(seq=1)
    pieces = z.pieces(0)
    assert pieces is not None
    env = cast(Any, SimpleNamespace(start_pfn=0))
    ms = ModelState(seq=10, env=env, zone=z, ncpus=1, ids=None, n_obj=2048)
    fork = fork_of_model(ms)
    claimed = fork.page_mt < 0
    got = split_objects(ms, np.array([0, 4], np.int64), claimed, 1 << 10)
    assert [(x, k) for x, k, *_ in got] == [(0, 2)]  # object 4 is a unit, not split
    assert got[0][4].tolist() == pieces and claimed[pieces].all()
    f = ZoneState(0, 2048)
    f.load(fork.blk, fork.page_mt)
    f.adopt(
        np.array([x for x in units if x != 0], np.int64),
        np.array([z.placement(x) for x in units if x != 0], np.int64),
        0,
        np.full(len(units) - 1, M, np.int8),
        np.full(len(units) - 1, 1, np.int8),
    )
    x, k, mt, flags, offs = got[0]
    f.adopt_split(x, k, mt, flags, offs)
    assert f.pieces(0) == pieces and f.placement(0) == -1
    before = f.free_pages()
    f.free_obj(0)
    assert f.free_pages() == before + 4 and f.pieces(0) == [-1] * 4
    del units[0]
    check_compaction_invariants(f, units, {})


def test_without_room_for_pieces_a_large_unit_stays() -> None:
    """A zone with no split room left keeps the folio whole where it is; the base pages
    isolated with it still move (migrate_pages_batch goes on after the folio)."""
    z = ZoneState(0, 2048, split_room=0)
    units = _base_pages_only_at_the_top(z)
    z.compact_memory(seq=1)
    assert z.splits == 0 and z.placement(0) == 0 and z.pieces(0) is None
    assert all(z.placement(i) >= 1024 for i in range(4, 512))
    kind, *_rest, moved, failed, _result = events(z)[-1]
    assert kind == "compact_oneshot" and failed == 4 and moved == 508
    check_compaction_invariants(z, units, {})


def test_adopt_consecutive_and_scattered_ids_alike() -> None:
    """ZoneState.adopt of consecutive ids given by the first (a fork's background
    objects, written by slices): the objects and pages come out as from the same ids
    given one by one, in any order."""
    z1, z2 = ZoneState(0, 1024), ZoneState(0, 1024)
    for z in (z1, z2):
        z.load(np.full(1024, -1, np.int8), np.full(1024, M, np.int8))
    offs = np.arange(0, 1024, 4, dtype=np.int64)
    mts = (np.arange(offs.shape[0]) % 3).astype(np.int8)
    flags = (np.arange(offs.shape[0]) % 2).astype(np.int8)
    ids = np.arange(100, 100 + offs.shape[0], dtype=np.int64)
    z1.adopt(100, offs, 2, mts, flags)
    perm = np.random.default_rng(1).permutation(ids.shape[0])
    z2.adopt(ids[perm], offs[perm], 2, mts[perm], flags[perm])
    for a, b in zip(z1.objects[:4], z2.objects[:4], strict=True):
        assert np.array_equal(a, b)
    assert np.array_equal(z1.arrays.pg_obj, z2.arrays.pg_obj)
    assert [z1.placement(int(x)) for x in ids[:3]] == [0, 4, 8]
