"""A small pure-Python reference of the ``compaction`` model, for tests.

Written from docs/compaction.md (Linux 6.18 mm/compaction.c, linear
scanners) on top of tests/ref_mobility.py (docs/mobility.md), not from the
numba kernel. Units: pfns are absolute page frame numbers, ``order`` k means
a block of ``1 << k`` pages, "pages" counts 4 KiB pages, times (``ts_ns``)
are nanoseconds of trace time.

Kernel functions followed (one Python method each, same names where the
kernel has one):

- ``compact_zone`` with ``__compact_finished``, ``compaction_suitable``
  (``__compaction_suitable`` + ``fragmentation_index``),
  ``isolate_migratepages`` / ``isolate_migratepages_block``,
  ``suitable_migration_source``, ``migrate_pages`` with ``compaction_alloc``,
  ``isolate_freepages`` / ``isolate_freepages_block``,
  ``suitable_migration_target``, ``release_free_list`` and the cached scanner
  positions (``reset_cached_positions``);
- direct compaction (``__alloc_pages_direct_compact``) with
  ``compaction_deferred``, ``defer_compaction``, ``compaction_defer_reset``;
- proactive compaction (kcompactd's 500 ms check, ``proactive_defer``);
- one-shot whole-zone compaction (``compact_memory``).

Objects: ``alloc_obj`` names an object id; a live object never partly freed
is a *unit* (``pg_obj[pfn]`` names it); the first partial free pins it (its
remaining pages are "other" pages that never move).

``check_compaction_invariants`` works through the public API only, so it runs
on this class and on the numba-backed zone alike.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from ref_mobility import (
    MAX_PAGE_ORDER,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    NR_PAGE_ORDERS,
    PAGEBLOCK_ORDER,
    PAGEBLOCK_PAGES,
    RefMobility,
    check_mobility_invariants,
    request_type,
)

from replay.analysis.metrics import extfrag_for_order, fragmentation_index

COMPACT_CLUSTER_MAX = 32  # pages isolated per migration round
PAGE_ALLOC_COSTLY_ORDER = 3
COMPACT_MAX_DEFER_SHIFT = 6
HPAGE_FRAG_CHECK_INTERVAL_NS = 500_000_000  # kcompactd's proactive check period, ns
COMPACTION_HPAGE_ORDER = PAGEBLOCK_ORDER  # order of the fragmentation score

COMPACTION_MODES = ("off", "direct", "proactive", "both")
# compact_result names used in model events ("CONTINUE" never leaves compact_zone)
SUCCESS = "SUCCESS"
COMPLETE = "COMPLETE"
PARTIAL_SKIPPED = "PARTIAL_SKIPPED"
SKIPPED = "SKIPPED"
DEFERRED = "DEFERRED"
CONTINUE = "CONTINUE"
RESULTS = (SUCCESS, COMPLETE, PARTIAL_SKIPPED, SKIPPED, DEFERRED)

KIND_DIRECT = "compact_direct"
KIND_PROACTIVE = "compact_proactive"
KIND_ONESHOT = "compact_oneshot"


def block_end_pfn(pfn: int, order: int) -> int:
    """``block_end_pfn``: the first pfn after pfn's order-aligned block."""
    return (pfn + (1 << order)) & ~((1 << order) - 1)


MODE_ASYNC = "async"
MODE_SYNC = "sync"

# (kind, seq, order, mode, start_pfn, end_pfn, migrate_pfn, free_pfn,
#  scanned_migrate, scanned_free, moved, failed, result); pfns absolute, costs in pages
ModelEvent = tuple[str, int, int, str, int, int, int, int, int, int, int, int, str]

# object states
UNIT = "unit"
PINNED = "pinned"
FREED = "freed"
FAILED = "failed"
SPLIT = "split"  # compaction split the folio: its pages are order-0 pieces (Obj.pieces)
PIECE_IDS = 1 << 40  # the reference's ids for pieces, after any test's object ids


def pageblock_start_pfn(pfn: int) -> int:
    """First pfn of the pageblock holding ``pfn``."""
    return pfn & ~(PAGEBLOCK_PAGES - 1)


def pageblock_end_pfn(pfn: int) -> int:
    """First pfn after the pageblock holding ``pfn``."""
    return pageblock_start_pfn(pfn) + PAGEBLOCK_PAGES


def compact_gap(order: int) -> int:
    """``compact_gap``: free pages compaction wants on top of the watermark (pages)."""
    return 2 << order


@dataclass
class Obj:
    """One allocated object: first pfn (-1 when the allocation failed), order, the
    request's migratetype (0..2, for accounting), the movable flag, its state
    (unit / pinned / freed / failed / split) and the pages it still holds; a split
    folio's pieces (their object ids, in page order)."""

    pfn: int
    order: int
    mt: int
    movable: bool
    state: str
    remaining: int
    pieces: list[int] | None = None


@dataclass
class CompactControl:
    """``struct compact_control`` for one ``compact_zone`` call (pfns absolute, pages)."""

    order: int  # t; -1 for whole-zone compaction
    sync: bool
    mt: int  # free-list type of the request
    whole_zone: bool
    proactive: bool
    migrate_pfn: int
    free_pfn: int
    migratepages: list[int] = field(default_factory=list)  # object ids, isolation order
    nr_migratepages: int = 0
    nr_freepages: int = 0
    # isolated free blocks per order, index 0 = HEAD
    freepages: list[list[int]] = field(default_factory=lambda: [[] for _ in range(NR_PAGE_ORDERS)])
    scanned_migrate: int = 0
    scanned_free: int = 0
    moved: int = 0
    failed: int = 0
    met: bool = False
    cpu: int = 0  # the compacting task's: its pcp list gets the migrated folios' pages
    last_migrated_pfn: int = -1  # compact_zone's, -1 after a drain
    fast_search_fail: int = 0
    fast_start_pfn: int = 0  # 0 unset, -1 used up (ULONG_MAX)
    direct: bool = False  # cc->direct_compaction
    finish_pageblock: bool = False
    search_order: int = 0  # fast_isolate_freepages' first order to search


class RefCompaction(RefMobility):
    """The zone ``[start_pfn, start_pfn + pages)`` under ``mobility`` (+ ``pcp``) with
    page compaction.

    ``grouping=False`` is the plain buddy: every free list and pageblock is
    MOVABLE and every request uses the MOVABLE lists (pages are still
    accounted by the request's own type). ``compaction`` is one of "off",
    "direct", "proactive", "both". ``wmark`` = (min, low, high) watermarks in
    pages; ``extfrag_threshold`` in thousandths (``vm.extfrag_threshold``);
    ``proactiveness`` in percent (``vm.compaction_proactiveness``).
    """

    def __init__(
        self,
        start_pfn: int,
        pages: int,
        *,
        pcp: bool = False,
        ncpus: int = 1,
        batch: int = 63,
        high: int = 252,
        nofragment: bool = True,
        grouping: bool = True,
        compaction: str = "off",
        extfrag_threshold: int = 500,
        proactiveness: int = 20,
        wmark: tuple[int, int, int] = (0, 0, 0),
    ) -> None:
        super().__init__(
            start_pfn, pages, pcp=pcp, ncpus=ncpus, batch=batch, high=high, nofragment=nofragment
        )
        assert compaction in COMPACTION_MODES, compaction
        assert 0 <= proactiveness <= 100
        self.grouping = grouping
        self.compaction = compaction
        self.direct = compaction in ("direct", "both")
        self.proactive = compaction in ("proactive", "both")
        self.extfrag_threshold = extfrag_threshold
        self.proactiveness = proactiveness
        self.wmark_min, self.wmark_low, self.wmark_high = (int(w) for w in wmark)
        # fragmentation_score_wmark (percent)
        self.score_wmark_low = max(100 - proactiveness, 5)
        self.score_wmark_high = min(self.score_wmark_low + 10, 100)

        self.objs: dict[int, Obj] = {}
        self.pg_obj: dict[int, int] = {}  # first pfn of a unit -> object id
        self._next_piece = 0  # pieces of split folios made so far
        self._splits = 0  # folios split so far

        # struct zone compaction state
        self.cached_migrate_pfn = [start_pfn, start_pfn]  # [async, sync]
        self.cached_free_pfn = pageblock_start_pfn(self.end_pfn - 1)
        self.skip: set[int] = set()  # pageblocks (pfn >> 9) with PB_migrate_skip set
        self.blockskip_flush = False  # compact_blockskip_flush
        self.init_migrate_pfn = 0  # compact_init_migrate_pfn (0 until the first reset)
        self.init_free_pfn = 0  # compact_init_free_pfn
        self.compact_considered = 0
        self.compact_defer_shift = 0
        self.compact_order_failed = 0

        # kcompactd
        self.ts0: int | None = None  # first event's time, ns
        self.next_check_ns = 0  # time of the next proactive check, ns
        self.proactive_defer = 0

        self.events: list[ModelEvent] = []

    # -- helpers -----------------------------------------------------------------------
    def _list_type(self, rt: int) -> int:
        """The free-list type a request of type ``rt`` uses (MOVABLE with grouping off)."""
        return rt if self.grouping else MIGRATE_MOVABLE

    def _nr_free_pages(self) -> int:
        """NR_FREE_PAGES: pages in free buddy blocks (pcp and isolated pages excluded)."""
        return sum(1 << o for o, _ in self.free_at.values())

    def _zone_watermark_ok(self, order: int, mark: int, free_pages: int) -> bool:
        """``__zone_watermark_ok`` (no reserves, no CMA, no highatomic); mark in pages."""
        free_pages -= (1 << order) - 1
        if free_pages <= mark:
            return False
        if order == 0:
            return True
        return any(
            self.lists[o][t] for o in range(order, NR_PAGE_ORDERS) for t in range(MIGRATE_PCPTYPES)
        )

    def _fragmentation_score(self) -> int:
        """``fragmentation_score_node`` of a one-zone node (percent)."""
        return (
            extfrag_for_order(self.nr_free, COMPACTION_HPAGE_ORDER) * self.pages // (self.pages + 1)
        )

    def _emit(  # one model event; positions -1 and zero costs when nothing was scanned
        self, kind: str, seq: int, order: int, sync: bool, result: str,
        cc: CompactControl | None = None, start: tuple[int, int] = (-1, -1),
    ) -> None:  # fmt: skip
        mode = MODE_SYNC if sync else MODE_ASYNC
        if cc is None:
            self.events.append((kind, seq, order, mode, -1, -1, -1, -1, 0, 0, 0, 0, result))
            return
        self.events.append(
            (kind, seq, order, mode, start[0], start[1], cc.migrate_pfn, cc.free_pfn,
             cc.scanned_migrate, cc.scanned_free, cc.moved, cc.failed, result)
        )  # fmt: skip

    # -- compact_zone ----------------------------------------------------------------------
    def _compaction_suitable(self, t: int) -> bool:
        """``compaction_suitable``: enough free memory, and (t > 3) a failure due to
        fragmentation, not to lack of memory."""
        mark = (self.wmark_low if t > 3 else self.wmark_min) + compact_gap(t)
        if not self._zone_watermark_ok(0, mark, self._nr_free_pages()):
            return False
        if t > 3:
            fi = fragmentation_index(self.nr_free, t)
            if 0 <= fi <= self.extfrag_threshold:
                return False
        return True

    def _reset_cached_positions(self) -> None:
        """``reset_cached_positions``: both scanners back to the zone's ends."""
        self.cached_migrate_pfn = [self.start_pfn, self.start_pfn]
        self.cached_free_pfn = pageblock_start_pfn(self.end_pfn - 1)

    def _reset_isolation_suitable(self) -> None:
        """``__reset_isolation_suitable`` as a run without units kept does it: every
        hint cleared, the scanners' cached and initial positions at the zone's ends."""
        if not self.blockskip_flush:
            return
        self.blockskip_flush = False
        self.skip.clear()
        self._reset_cached_positions()
        self.init_migrate_pfn = self.cached_migrate_pfn[0]
        self.init_free_pfn = self.cached_free_pfn

    def _compaction_restarting(self, t: int) -> bool:
        """``compaction_restarting``: order t failed for the whole deferral period."""
        if t < self.compact_order_failed:
            return False
        return (self.compact_defer_shift == COMPACT_MAX_DEFER_SHIFT
                and self.compact_considered >= 1 << self.compact_defer_shift)  # fmt: skip

    def _compact_finished(self, cc: CompactControl) -> str:
        """``__compact_finished``: CONTINUE or the result compact_zone returns."""
        if (cc.free_pfn >> PAGEBLOCK_ORDER) <= (cc.migrate_pfn >> PAGEBLOCK_ORDER):
            self._reset_cached_positions()
            if cc.direct:
                # compact_blockskip_flush; without a recorded kswapd, flushed at once
                self.blockskip_flush = True
                self._reset_isolation_suitable()
            cc.met = True
            return COMPLETE if cc.whole_zone else PARTIAL_SKIPPED
        if cc.proactive:
            score = extfrag_for_order(self.nr_free, COMPACTION_HPAGE_ORDER)
            return CONTINUE if score > self.score_wmark_low else SUCCESS
        if cc.order == -1:
            return CONTINUE
        if cc.migrate_pfn % PAGEBLOCK_PAGES != 0:
            return CONTINUE
        for o in range(cc.order, NR_PAGE_ORDERS):
            if self.lists[o][cc.mt]:
                return SUCCESS
            if (
                self.grouping
                and self._should_try_claim_block(o, cc.mt)
                and self._find_suitable_fallback(o, cc.mt) >= 0
            ):
                return SUCCESS
        return CONTINUE

    def _suitable_migration_source(self, cc: CompactControl, pfn: int) -> bool:
        """ASYNC direct compaction only scans pageblocks of the request's kind."""
        if cc.sync or not self.grouping:
            return True
        bt = self._get_pb_mt(pfn)
        if cc.mt == MIGRATE_MOVABLE:
            return bt == MIGRATE_MOVABLE
        return bt == cc.mt

    def _migratable(self, cc: CompactControl, obj: int) -> bool:
        """Movable and not ``skip_isolation_on_order(j, t)``."""
        o = self.objs[obj]
        if not o.movable or o.order >= PAGEBLOCK_ORDER:
            return False
        return cc.order == -1 or o.order < cc.order

    def _isolate_migratepages_block(self, cc: CompactControl, low: int, end: int) -> None:
        """``isolate_migratepages_block`` over ``[low, end)``: up to COMPACT_CLUSTER_MAX
        pages (the rest of the pageblock when finishing it); the skip hint checked and set
        when entered at the pageblock's start; ASYNC direct passes isolate whole order-t
        aligned blocks only (``skip_on_failure``)."""
        t = cc.order
        ignore = t < 0
        pb = low >> PAGEBLOCK_ORDER
        valid = False
        if low % PAGEBLOCK_PAGES == 0 or low == self.start_pfn:
            if not ignore and pb in self.skip:
                cc.migrate_pfn = end
                return
            valid = True
        skip_updated = False
        skip_on_failure = cc.direct and not cc.sync and t > 0
        next_skip = block_end_pfn(low, t) if skip_on_failure else 0
        first = len(cc.migratepages)
        nr_isolated = 0
        p = low
        while p < end:
            if skip_on_failure and p >= next_skip:
                if nr_isolated:
                    break
                next_skip = block_end_pfn(p, t)
            fb = self.free_at.get(p)
            if fb is not None:
                cc.scanned_migrate += 1 << fb[0]
                p += 1 << fb[0]
                continue
            obj = self.pg_obj.get(p)
            if obj is not None:
                j = self.objs[obj].order
                cc.scanned_migrate += 1 << j
                p += 1 << j
                if self._migratable(cc, obj):
                    if valid and not skip_updated:
                        skip_updated = True
                        if not ignore:
                            self.skip.add(pb)  # test_and_set_skip
                    cc.migratepages.append(obj)
                    cc.nr_migratepages += 1 << j
                    nr_isolated += 1 << j
                    if cc.nr_migratepages >= COMPACT_CLUSTER_MAX and not cc.finish_pageblock:
                        break
                    continue
            else:
                cc.scanned_migrate += 1
                p += 1
            if not skip_on_failure:
                continue
            if nr_isolated:  # putback: the block cannot be freed whole
                for x in cc.migratepages[first:]:
                    cc.nr_migratepages -= 1 << self.objs[x].order
                del cc.migratepages[first:]
                nr_isolated = 0
            if p < next_skip:
                p = next_skip
                next_skip += 1 << t
        p = min(p, end)
        if p == end and (not nr_isolated or cc.finish_pageblock) and valid and not skip_updated:
            self.skip.add(pb)
        cc.migrate_pfn = p

    def _fast_find_migrateblock(self, cc: CompactControl) -> int:
        """``fast_find_migrateblock``: the pfn the migration scanner goes on from."""
        pfn = cc.migrate_pfn
        if cc.order < 0:  # ignore_skip_hint
            return pfn
        if cc.finish_pageblock:
            return pfn
        if pfn != self.start_pfn and pfn % PAGEBLOCK_PAGES != 0:
            return pfn
        if cc.order <= PAGE_ALLOC_COSTLY_ORDER or (cc.direct and cc.mt != MIGRATE_MOVABLE):
            return pfn
        limit = self._freelist_scan_limit(cc)
        distance = (cc.free_pfn - pfn) >> 1
        if pfn != self.start_pfn:
            distance >>= 2
        high = pageblock_start_pfn(pfn + distance)
        scanned = 0
        found = False
        for o in range(cc.order - 1, PAGE_ALLOC_COSTLY_ORDER - 1, -1):
            if found or scanned >= limit:
                break
            if not any(self.lists[o]):  # area->nr_free
                continue
            fl = self.lists[o][MIGRATE_MOVABLE]
            for i, fp in enumerate(fl):
                scanned += 1
                if scanned - 1 >= limit:
                    fl[:] = fl[i + 1 :] + fl[: i + 1]  # move_freelist_tail
                    break
                if fp < high:
                    if fp >> PAGEBLOCK_ORDER in self.skip:
                        continue
                    fl[:] = fl[i + 1 :] + fl[: i + 1]
                    if cc.fast_start_pfn != -1:
                        cc.fast_start_pfn = fp if cc.fast_start_pfn == 0 else min(
                            cc.fast_start_pfn, fp)  # fmt: skip
                    pfn = max(pageblock_start_pfn(fp), self.start_pfn)
                    cc.fast_search_fail = 0
                    found = True
                    break
        cc.scanned_migrate += scanned
        if not found:
            cc.fast_search_fail += 1
            if cc.fast_start_pfn not in (0, -1):  # reinit_migrate_pfn
                cc.migrate_pfn = cc.fast_start_pfn
                cc.fast_start_pfn = -1
            pfn = cc.migrate_pfn
        return pfn

    def _isolate_migratepages(self, cc: CompactControl) -> None:
        """One pageblock per call: the one fast_find_migrateblock picks, else from
        ``migrate_pfn`` on (pageblocks entered at their start with the skip hint passed
        over), while below the free scanner."""
        cc.migratepages = []
        cc.nr_migratepages = 0
        low = self._fast_find_migrateblock(cc)
        fast = low != cc.migrate_pfn and cc.fast_search_fail == 0
        ignore = cc.order < 0
        block_end = pageblock_end_pfn(low)
        while block_end <= cc.free_pfn:
            skipped = (not ignore and not fast
                       and (low % PAGEBLOCK_PAGES == 0 or low == self.start_pfn)
                       and low >> PAGEBLOCK_ORDER in self.skip)  # fmt: skip
            fast = False
            if skipped or not self._suitable_migration_source(cc, low):
                cc.migrate_pfn = low = block_end
                block_end += PAGEBLOCK_PAGES
                continue
            self._isolate_migratepages_block(cc, low, min(block_end, self.end_pfn))
            return

    def _suitable_migration_target(self, block_start: int) -> bool:
        fb = self.free_at.get(block_start)
        if fb is not None and fb[0] >= PAGEBLOCK_ORDER:
            return False
        return not self.grouping or self._get_pb_mt(block_start) == MIGRATE_MOVABLE

    def _isolate_free_page(self, cc: CompactControl, p: int, b: int, t: int) -> None:
        """``__isolate_free_page``: the free block (p, order b, list type t) to the TAIL
        of the pass's isolated list b."""
        self._remove(p, b, t)
        cc.freepages[b].append(p)
        cc.nr_freepages += 1 << b

    def _freelist_scan_limit(self, cc: CompactControl) -> int:
        """``freelist_scan_limit``: free-list entries a fast search looks at."""
        return (COMPACT_CLUSTER_MAX >> min(63, cc.fast_search_fail)) + 1

    def _isolate_freepages_block(
        self, cc: CompactControl, p: int, end: int, stride: int
    ) -> tuple[int, int]:
        """Isolate the free blocks whose heads the scan of ``[p, end)`` meets, every
        ``stride``-th page (a large unit's head stepped over whole), to the TAIL of
        ``cc.freepages``; returns (where the scan stopped, at most ``end``; pages
        isolated)."""
        got = 0
        while p < end:
            fb = self.free_at.get(p)
            if fb is not None:
                b, t = fb
                self._isolate_free_page(cc, p, b, t)
                cc.scanned_free += 1 << b
                got += 1 << b
                if cc.nr_migratepages <= cc.nr_freepages:
                    p += 1 << b
                    break
                p += (1 << b) - 1 + stride
                continue
            obj = self.pg_obj.get(p)
            if obj is not None and self.objs[obj].order > 0:
                j = self.objs[obj].order
                cc.scanned_free += 1 << j
                p += (1 << j) - 1 + stride
                continue
            cc.scanned_free += 1
            p += stride
        return min(p, end), got

    def _fast_isolate_around(self, cc: CompactControl, pfn: int) -> None:
        """``fast_isolate_around``: the rest of pfn's pageblock (stride 1)."""
        if cc.nr_freepages >= cc.nr_migratepages:
            return
        if cc.direct and not cc.sync:
            return
        s = max(pageblock_start_pfn(pfn), self.start_pfn)
        e = min(pageblock_end_pfn(pfn), self.end_pfn)
        stop, _ = self._isolate_freepages_block(cc, s, e, 1)
        if stop == e:
            self.skip.add(pfn >> PAGEBLOCK_ORDER)

    def _next_search_order(self, cc: CompactControl, order: int) -> int:
        order -= 1
        if order < 0:
            order = cc.order - 1
        if order == cc.search_order:
            cc.search_order -= 1
            if cc.search_order < 0:
                cc.search_order = cc.order - 1
            return -1
        return order

    def _fast_isolate_freepages(self, cc: CompactControl) -> None:
        """``fast_isolate_freepages``: one free block from the MOVABLE lists of the
        orders below the pass's, searched from each list's tail, in the top quarter of
        the scanners' gap (else the highest in its top half), then its pageblock's rest."""
        if cc.order <= 0:
            return
        limit = max(1, self._freelist_scan_limit(cc) >> 1)
        scan_start = False
        if cc.free_pfn >= self.init_free_pfn:
            limit = PAGEBLOCK_PAGES >> 1
            scan_start = True
        distance = cc.free_pfn - cc.migrate_pfn
        low_pfn = pageblock_start_pfn(cc.free_pfn - (distance >> 2))
        min_pfn = pageblock_start_pfn(cc.free_pfn - (distance >> 1))
        low_pfn = max(low_pfn, min_pfn)
        cc.search_order = min(cc.order - 1, cc.search_order)
        highest = 0
        page = -1
        scanned = 0
        order = cc.search_order
        while page < 0 and order >= 0:
            if not any(self.lists[order]):  # area->nr_free
                order = self._next_search_order(cc, order)
                continue
            fl = self.lists[order][MIGRATE_MOVABLE]
            order_scanned = 0
            high_pfn = 0
            for fp in reversed(fl):
                order_scanned += 1
                scanned += 1
                if fp >= highest:
                    highest = max(pageblock_start_pfn(fp), self.start_pfn)
                if fp >= low_pfn:
                    cc.fast_search_fail = 0
                    cc.search_order = order
                    page = fp
                    break
                if fp >= min_pfn and fp > high_pfn:
                    high_pfn = fp
                    limit >>= 1
                if order_scanned >= limit:
                    break
            if page < 0 and high_pfn:
                page = high_pfn
            if page >= 0:
                i = fl.index(page)
                fl[:] = fl[i:] + fl[:i]  # move_freelist_head
                self._isolate_free_page(cc, page, order, MIGRATE_MOVABLE)
                scanned += (1 << order) - 1
            if cc.nr_freepages >= cc.nr_migratepages:
                break
            if order_scanned >= limit:
                limit = max(1, limit >> 1)
            order = self._next_search_order(cc, order)
        cc.scanned_free += scanned
        around = -1
        if page >= 0:
            around = page
        else:
            cc.fast_search_fail += 1
            if scan_start:
                if highest >= min_pfn:
                    around = cc.free_pfn = highest
                elif cc.direct and min_pfn >= self.start_pfn:
                    around = cc.free_pfn = min_pfn
        if highest and highest >= self.cached_free_pfn:
            self.cached_free_pfn = highest - PAGEBLOCK_PAGES
        if around >= 0:
            self._fast_isolate_around(cc, around)

    def _isolate_freepages(self, cc: CompactControl) -> None:
        """``isolate_freepages``: the fast search, then (nothing isolated) the linear
        scanner down from ``free_pfn`` to the migrate scanner's pageblock (exclusive),
        passing pageblocks with the skip hint, striding 32 pages in ASYNC passes until a
        pageblock gives some; a pageblock scanned to its end gets the hint."""
        self._fast_isolate_freepages(cc)
        if cc.nr_freepages:
            return
        ignore = cc.order < 0
        isolate_start = cc.free_pfn
        block_start = pageblock_start_pfn(isolate_start)
        block_end = min(block_start + PAGEBLOCK_PAGES, self.end_pfn)
        low = pageblock_end_pfn(cc.migrate_pfn)
        stride = 1 if cc.sync else COMPACT_CLUSTER_MAX
        while block_start >= low:
            pb = block_start >> PAGEBLOCK_ORDER
            if (block_start >= self.start_pfn and self._suitable_migration_target(block_start)
                    and (ignore or pb not in self.skip)):  # fmt: skip
                isolate_start, got = self._isolate_freepages_block(
                    cc, isolate_start, block_end, stride
                )
                if isolate_start == block_end:
                    self.skip.add(pb)  # update_pageblock_skip
                    self.cached_free_pfn = min(self.cached_free_pfn,
                                               block_start - PAGEBLOCK_PAGES)  # fmt: skip
                if cc.nr_freepages >= cc.nr_migratepages:
                    if isolate_start >= block_end:
                        isolate_start = block_start - PAGEBLOCK_PAGES
                    break
                if isolate_start < block_end:
                    break
                stride = 1 if got else min(COMPACT_CLUSTER_MAX, stride << 1)
            block_end = block_start
            block_start -= PAGEBLOCK_PAGES
            isolate_start = block_start
        cc.free_pfn = isolate_start

    def _compaction_alloc(self, cc: CompactControl, j: int) -> int:
        """A target block of order ``j`` from the isolated free blocks (pfn, or -1)."""
        for again in (False, True):
            for c in range(j, NR_PAGE_ORDERS):
                if cc.freepages[c]:
                    dst = cc.freepages[c].pop(0)
                    while c > j:
                        c -= 1
                        cc.freepages[c].insert(0, dst + (1 << c))
                    # both counters drop: nr_migratepages counts the round's units not
                    # migrated yet (docs/compaction.md; Linux compaction_alloc)
                    cc.nr_freepages -= 1 << j
                    cc.nr_migratepages -= 1 << j
                    return dst
            if not again:
                self._isolate_freepages(cc)
        return -1

    def _move_unit(self, obj: int, dst: int, cpu: int | None = None) -> None:
        """The unit moves to ``dst``; compaction frees its old block as any page is
        (``migrate_folio_done`` -> ``folio_put``): to ``cpu``'s pcp list at pcp orders,
        else to the buddy (``cpu`` None: the defrag models' moves, to the buddy)."""
        o = self.objs[obj]
        src = o.pfn
        n = 1 << o.order
        for i in range(n):
            assert self.alloc_mt[src - self.start_pfn + i] == o.mt
            assert self.alloc_mt[dst - self.start_pfn + i] == -1
            self.alloc_mt[dst - self.start_pfn + i] = o.mt
            self.alloc_mt[src - self.start_pfn + i] = -1
        del self.pg_obj[src]
        self.pg_obj[dst] = obj
        o.pfn = dst
        if cpu is None:
            self._free_one_page(src, o.order)
        else:
            self._free_frozen(src, o.order, cpu)

    def _migrate_pages(self, cc: CompactControl) -> None:
        """Move the isolated units in isolation order. A large unit without a target is
        split (``try_split_folio`` onto split_folios) and its pages wait; after the batch
        they move one by one, in the order the folios were split, the first without a
        target ending them (``migrate_pages``). The first base page without a target
        fails with all after it and every split page (they stay where they are)."""
        split: list[list[int]] = []
        for i, obj in enumerate(cc.migratepages):
            j = self.objs[obj].order
            dst = self._compaction_alloc(cc, j)
            if dst < 0 and j > 0:
                split.append(self._split(obj))
                continue
            if dst < 0:
                cc.failed += sum(1 << self.objs[x].order for x in cc.migratepages[i:])
                cc.failed += sum(len(pieces) for pieces in split)
                return
            self._move_unit(obj, dst, cc.cpu)
            cc.moved += 1 << j
        for k, pieces in enumerate(split):
            for p, piece in enumerate(pieces):
                d = self._compaction_alloc(cc, 0)
                if d < 0:
                    cc.failed += len(pieces) - p + sum(len(q) for q in split[k + 1 :])
                    return
                self._move_unit(piece, d, cc.cpu)
                cc.moved += 1

    def _split(self, obj: int) -> list[int]:
        """``split_folio_to_list``: the unit becomes ``1 << order`` order-0 units in place."""
        o = self.objs[obj]
        del self.pg_obj[o.pfn]
        o.pieces = []
        for i in range(1 << o.order):
            piece = PIECE_IDS + self._next_piece
            self._next_piece += 1
            self.objs[piece] = Obj(o.pfn + i, 0, o.mt, o.movable, UNIT, 1)
            self.pg_obj[o.pfn + i] = piece
            o.pieces.append(piece)
        o.state = SPLIT
        self._splits += 1
        return o.pieces

    def _release_free_list(self, cc: CompactControl) -> None:
        """Every isolated block left goes back to the buddy: orders 0..10, HEAD to TAIL."""
        for o in range(NR_PAGE_ORDERS):
            for p in cc.freepages[o]:
                self._free_one_page(p, o)
            cc.freepages[o] = []
        cc.nr_freepages = 0

    def _compact_zone(
        self, kind: str, seq: int, t: int, sync: bool, whole_zone: bool, proactive: bool, mt: int,
        cpu: int = 0,
    ) -> str:  # fmt: skip
        """``compact_zone``; records one model event and returns the result name."""
        if t != -1:
            if self._zone_watermark_ok(t, self.wmark_min, self._nr_free_pages()):
                self._emit(kind, seq, t, sync, SUCCESS)
                return SUCCESS
            if not self._compaction_suitable(t):
                self._emit(kind, seq, t, sync, SKIPPED)
                return SKIPPED
        if t > 0 and self._compaction_restarting(t):
            self._reset_isolation_suitable()
        if whole_zone:
            migrate_pfn = self.start_pfn
            free_pfn = pageblock_start_pfn(self.end_pfn - 1)
        else:
            migrate_pfn = self.cached_migrate_pfn[1 if sync else 0]
            free_pfn = self.cached_free_pfn
            # compact_zone: cached positions outside the zone are reset
            if not self.start_pfn <= free_pfn < self.end_pfn:
                free_pfn = self.cached_free_pfn = pageblock_start_pfn(self.end_pfn - 1)
            if not self.start_pfn <= migrate_pfn < self.end_pfn:
                migrate_pfn = self.start_pfn
                self.cached_migrate_pfn = [migrate_pfn, migrate_pfn]
            whole_zone = migrate_pfn == self.start_pfn
        cc = CompactControl(t, sync, mt, whole_zone, proactive, migrate_pfn, free_pfn, cpu=cpu,
                            direct=kind == KIND_DIRECT, search_order=t)  # fmt: skip
        while (r := self._compact_finished(cc)) == CONTINUE:
            last = max(cc.last_migrated_pfn, 0)  # the kernel's 0: none, or pageblock 0
            cc.finish_pageblock = pageblock_start_pfn(last) == pageblock_start_pfn(cc.migrate_pfn)
            captured = False
            while True:  # rescan:
                self._isolate_migratepages(cc)
                if not cc.migratepages:
                    break
                cc.last_migrated_pfn = max(self.start_pfn, pageblock_start_pfn(cc.migrate_pfn - 1))
                failed = cc.failed
                self._migrate_pages(cc)
                if (cc.failed > failed and cc.migrate_pfn % PAGEBLOCK_PAGES != 0
                        and t >= 0 and not cc.finish_pageblock):  # fmt: skip
                    cc.finish_pageblock = True  # scan the rest of the pageblock now
                    if t == PAGEBLOCK_ORDER:
                        cc.last_migrated_pfn = -1
                    continue
                captured = self.capc is not None and self.capc[2] is not None
                break
            if captured:
                r = SUCCESS  # stop if a page has been captured (before check_drain)
                break
            # check_drain: the migrate scanner left the order-aligned block it migrated from
            if t > 0 and cc.last_migrated_pfn >= 0:
                if cc.last_migrated_pfn < cc.migrate_pfn - cc.migrate_pfn % (1 << t):
                    if self.pcp:
                        self._drain_local(cpu)
                    cc.last_migrated_pfn = -1
        self._release_free_list(cc)
        if not cc.met:
            self.cached_migrate_pfn[0] = max(self.cached_migrate_pfn[0], cc.migrate_pfn)
            if sync:
                self.cached_migrate_pfn[1] = max(self.cached_migrate_pfn[1], cc.migrate_pfn)
            self.cached_free_pfn = min(self.cached_free_pfn, cc.free_pfn)
        self._emit(kind, seq, t, sync, r, cc, (migrate_pfn, free_pfn))
        return r

    # -- direct compaction ---------------------------------------------------------------------
    def _compaction_deferred(self, k: int) -> bool:
        """``compaction_deferred``: true to skip this attempt (counts it as considered)."""
        if k < self.compact_order_failed:
            return False
        self.compact_considered += 1
        limit = 1 << self.compact_defer_shift
        if self.compact_considered >= limit:
            self.compact_considered = limit
            return False
        return True

    def _defer_compaction(self, k: int) -> None:
        """``defer_compaction``: skip the next ``1 << shift`` attempts (shift at most 6)."""
        self.compact_considered = 0
        self.compact_defer_shift = min(self.compact_defer_shift + 1, COMPACT_MAX_DEFER_SHIFT)
        self.compact_order_failed = min(self.compact_order_failed, k)

    def _compaction_defer_reset(self, k: int, alloc_success: bool) -> None:
        """``compaction_defer_reset``: compaction (expectedly) worked for order ``k``."""
        if alloc_success:
            self.compact_considered = 0
            self.compact_defer_shift = 0
        if k >= self.compact_order_failed:
            self.compact_order_failed = k + 1

    def _direct_compact(self, k: int, lmt: int, cpu: int, seq: int) -> int:
        """``__alloc_pages_direct_compact`` at ASYNC then SYNC; the pfn, or -1. A block
        freed to order k while the pass runs is captured for the request."""
        for sync in (False, True):
            if self._compaction_deferred(k):
                self._emit(KIND_DIRECT, seq, k, sync, DEFERRED)
                continue
            self.capc = [k, lmt, None]
            r = self._compact_zone(KIND_DIRECT, seq, k, sync, False, False, lmt, cpu)
            captured = self.capc[2]
            self.capc = None
            if captured is not None:
                r = SUCCESS
            if r == SUCCESS:
                self._compaction_defer_reset(k, False)
            elif sync and r in (COMPLETE, PARTIAL_SKIPPED):
                self._defer_compaction(k)
            pfn = captured if captured is not None else self._get_page_from_freelist(k, lmt, cpu)
            if pfn >= 0:
                self._compaction_defer_reset(k, True)
                return pfn
        return -1

    # -- proactive compaction ----------------------------------------------------------------------
    def _proactive_check(self, seq: int) -> None:
        """One kcompactd wake-up (every 500 ms of trace time)."""
        if self.proactive_defer > 0:
            self.proactive_defer -= 1
            return
        before = self._fragmentation_score()
        if before > self.score_wmark_high:
            self._compact_zone(KIND_PROACTIVE, seq, -1, True, True, True, MIGRATE_MOVABLE)
            after = self._fragmentation_score()
            self.proactive_defer = 0 if after < before else 1 << COMPACT_MAX_DEFER_SHIFT

    def _tick(self, ts_ns: int, seq: int) -> None:
        if self.ts0 is None:
            self.ts0 = ts_ns
            self.next_check_ns = ts_ns + HPAGE_FRAG_CHECK_INTERVAL_NS
        if not self.proactive:
            return
        while self.next_check_ns <= ts_ns:
            self._proactive_check(seq)
            self.next_check_ns += HPAGE_FRAG_CHECK_INTERVAL_NS

    # -- allocation --------------------------------------------------------------------------------
    def _alloc_pages(
        self, order: int, rt: int, cpu: int, seq: int, compact: bool, drain: bool = True
    ) -> int:
        """docs/mobility.md's allocation (with the drain retry unless ``drain`` is False),
        then direct compaction (when ``compact``)."""
        assert 0 <= order <= MAX_PAGE_ORDER and 0 <= cpu < self.ncpus
        lmt = self._list_type(rt)
        pfn = self._get_page_from_freelist(order, lmt, cpu)
        if pfn < 0 and drain and self.pcp_pages() > 0:
            self._drain_all()
            self.drains += 1
            pfn = self._get_page_from_freelist(order, lmt, cpu)
        if pfn < 0 and compact and order > 0 and self.direct:
            pfn = self._direct_compact(order, lmt, cpu, seq)
        if pfn >= 0:
            self._mark_allocated(pfn, order, rt)
        return pfn

    # -- the public API --------------------------------------------------------------------------
    def alloc(self, order: int, mt: int, cpu: int = 0) -> int:
        """A raw allocation (no object, never moved, no compaction); pfn or -1."""
        return self._alloc_pages(order, request_type(mt), cpu, -1, compact=False)

    def alloc_obj(
        self,
        obj: int,
        order: int,
        mt: int,
        movable: bool | None = None,
        cpu: int = 0,
        ts_ns: int = 0,
        *,
        seq: int = -1,
        direct_reclaim: bool = True,
    ) -> int:
        """Allocate object ``obj`` (``1 << order`` pages) for a request of type ``mt`` at
        trace time ``ts_ns`` (ns); the pfn, or -1.

        Due proactive checks run first; a failure of order > 0 runs direct
        compaction when enabled. ``movable`` None means "the request type is
        MOVABLE" (types outside 0..2 count as MOVABLE). A request without
        ``direct_reclaim`` (GFP_ATOMIC-like) neither drains the pcp lists nor
        compacts when it fails.
        """
        old = self.objs.get(obj)
        assert old is None or old.state in (FREED, FAILED), f"object {obj} is live"
        self._tick(ts_ns, seq)
        rt = request_type(mt)
        mov = rt == MIGRATE_MOVABLE if movable is None else bool(movable)
        pfn = self._alloc_pages(order, rt, cpu, seq, compact=direct_reclaim, drain=direct_reclaim)
        if pfn >= 0:
            self.objs[obj] = Obj(pfn, order, rt, mov, UNIT, 1 << order)
            self.pg_obj[pfn] = obj
        else:
            self.objs[obj] = Obj(-1, order, rt, mov, FAILED, 0)
        return pfn

    def free_obj(
        self,
        obj: int,
        offset: int = 0,
        order: int | None = None,
        cpu: int = 0,
        ts_ns: int = 0,
        *,
        seq: int = -1,
    ) -> None:
        """Free pages ``placed[obj] + offset`` (pfn offset) at ``order`` (default: the
        object's) at trace time ``ts_ns`` (ns). A whole free ends the unit, a partial
        one pins the rest; freeing a failed allocation is a no-op."""
        self._tick(ts_ns, seq)
        o = self.objs.get(obj)
        if o is None or o.state == FAILED:
            return
        k = o.order if order is None else order
        if o.state == SPLIT:
            assert o.pieces is not None
            for piece in o.pieces[offset : offset + (1 << k)]:
                po = self.objs[piece]
                if po.state == FREED:
                    continue
                del self.pg_obj[po.pfn]
                po.state = FREED
                self.free(po.pfn, 0, po.mt, cpu)
            return
        assert o.state in (UNIT, PINNED), f"object {obj} freed twice"
        assert 0 <= k <= o.order and offset % (1 << k) == 0
        assert 0 <= offset and offset + (1 << k) <= 1 << o.order, "free outside the object"
        if o.state == UNIT:
            del self.pg_obj[o.pfn]
            o.state = PINNED
        o.remaining -= 1 << k
        assert o.remaining >= 0
        if o.remaining == 0:
            o.state = FREED
        self.free(o.pfn + offset, k, o.mt, cpu)

    def tick(self, ts_ns: int) -> None:
        """Run the proactive checks due at or before ``ts_ns`` (ns)."""
        self._tick(ts_ns, -1)

    def compact_memory(self, seq: int = -1) -> str:
        """One-shot whole-zone compaction (``/proc/sys/vm/compact_memory``); the result."""
        return self._compact_zone(KIND_ONESHOT, seq, -1, True, True, False, MIGRATE_MOVABLE)

    # -- inspection ---------------------------------------------------------------------------
    def placement(self, obj: int) -> int:
        """The object's first pfn (after any moves); -1 if its allocation failed, it is
        unknown or compaction split it. A wholly freed object keeps its last pfn."""
        o = self.objs.get(obj)
        return -1 if o is None or o.state == SPLIT else o.pfn

    def pieces(self, obj: int) -> list[int] | None:
        """The pfn of each page of a folio compaction split (-1: freed since), in page
        order; None when ``obj`` is not split."""
        o = self.objs.get(obj)
        if o is None or o.pieces is None:
            return None
        return [-1 if self.objs[p].state == FREED else self.objs[p].pfn for p in o.pieces]

    @property
    def splits(self) -> int:
        """Folios compaction split so far."""
        return self._splits

    @property
    def model_events(self) -> list[ModelEvent]:
        """One row per compact_zone call and per deferred direct attempt."""
        return list(self.events)

    def unit_placements(self) -> dict[int, int]:
        """Live units: object id -> first pfn (not part of the shared zone API)."""
        return {obj: pfn for pfn, obj in self.pg_obj.items()}


def check_compaction_invariants(
    zone: Any,
    units: dict[int, tuple[int, int]],
    pinned_pages: dict[int, int],
    other: dict[int, tuple[int, int]] | None = None,
) -> None:
    """Assert a compaction zone's invariants, through the public API only.

    ``units`` maps each live unit's object id to (order, request type);
    ``pinned_pages`` maps each page still held by a pinned object to its
    request type; ``other`` adds raw allocations (first pfn -> (order, type)).
    Checks: each unit is placed at a naturally aligned pfn inside the zone and
    none of its pages is in a free block or on a pcp list; free pages +
    allocated pages + pcp pages == zone pages, and everything
    ``check_mobility_invariants`` checks.
    """
    start = int(zone.start_pfn)
    end = start + int(zone.pages)
    allocated: dict[int, tuple[int, int]] = dict(other or {})
    unit_spans: list[tuple[int, int]] = []
    for obj, (k, mt) in units.items():
        pfn = int(zone.placement(obj))
        assert pfn >= 0, f"live unit {obj} has no placement"
        assert pfn % (1 << k) == 0 and start <= pfn and pfn + (1 << k) <= end, (obj, pfn, k)
        assert pfn not in allocated, f"unit {obj} at {pfn} overlaps another allocation"
        allocated[pfn] = (k, mt)
        unit_spans.append((pfn, pfn + (1 << k)))
    for p, mt in pinned_pages.items():
        assert p not in allocated, f"pinned page {p} overlaps another allocation"
        allocated[p] = (0, mt)

    # every live unit's pages are outside every free block (explicitly, before the rest)
    free_spans = sorted(
        (p, p + (1 << k)) for (k, _), pfns in zone.free_lists().items() for p in pfns
    )
    starts = [s for s, _ in free_spans]
    for lo, hi in unit_spans:
        i = bisect.bisect_right(starts, lo) - 1
        if i >= 0:
            assert free_spans[i][1] <= lo, f"unit [{lo}, {hi}) inside free block {free_spans[i]}"
        if i + 1 < len(free_spans):
            assert free_spans[i + 1][0] >= hi, f"unit [{lo}, {hi}) overlaps {free_spans[i + 1]}"

    held = sum(1 << k for k, _ in allocated.values())
    assert int(zone.free_pages()) + held + int(zone.pcp_pages()) == end - start, (
        "free + allocated + pcp pages != zone pages"
    )
    check_mobility_invariants(zone, allocated)
