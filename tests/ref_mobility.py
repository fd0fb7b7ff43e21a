"""A small pure-Python reference of the ``mobility`` model (+ optional ``pcp`` layer), for tests.

Written from docs/mobility.md (Linux 6.18 mm/page_alloc.c), not from
replay/models/buddy.py, pcp.py and page_alloc.py, in the style of tests/ref_buddy.py: one plain
Python list per (order, migratetype) free list (index 0 = list HEAD), a dict
``pfn -> (order, migratetype)`` of free blocks, one list per (cpu, pindex)
pcp list (index 0 = HEAD). Units: pfns are absolute page frame numbers,
``order`` k means a block of ``1 << k`` pages, "pages" counts 4 KiB pages.

Kernel functions followed (one Python method each, same names):

- boot: ``__free_pages_core`` -> ``free_one_page`` -> ``split_large_buddy``
  -> ``__free_one_page`` with FPI_TO_TAIL, blocks in ascending pfn order;
- alloc: ``rmqueue_pcplist`` / ``rmqueue_bulk`` (pcp orders), ``__rmqueue``
  (NORMAL / CLAIM / STEAL mode), ``__rmqueue_smallest``, ``__rmqueue_claim``,
  ``should_try_claim_block``, ``find_suitable_fallback``,
  ``try_to_claim_block``, ``__rmqueue_steal``, ``expand``, then the drain
  retry of ``__alloc_pages_direct_reclaim``;
- free: ``free_frozen_page_commit`` (pcp orders), ``free_pcppages_bulk``,
  ``free_one_page`` -> ``split_large_buddy`` -> ``__free_one_page`` +
  ``buddy_merge_likely``; ``drain_all_pages``.

``check_mobility_invariants`` works through the public API only, so it runs
on this class and on the numba-backed zone alike.
"""

from __future__ import annotations

from typing import Any

MAX_PAGE_ORDER = 10
NR_PAGE_ORDERS = MAX_PAGE_ORDER + 1
PAGEBLOCK_ORDER = 9
PAGEBLOCK_PAGES = 1 << PAGEBLOCK_ORDER

MIGRATE_UNMOVABLE = 0
MIGRATE_MOVABLE = 1
MIGRATE_RECLAIMABLE = 2
MIGRATE_PCPTYPES = 3

# fallbacks[]: the types an allocation of each type may take pages from, in order
FALLBACKS: tuple[tuple[int, int], ...] = (
    (MIGRATE_RECLAIMABLE, MIGRATE_MOVABLE),  # UNMOVABLE
    (MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE),  # MOVABLE
    (MIGRATE_UNMOVABLE, MIGRATE_MOVABLE),  # RECLAIMABLE
)

PCP_ORDERS = (0, 1, 2, 3, PAGEBLOCK_ORDER)
NR_PCP_LISTS = 14

# __rmqueue modes (enum rmqueue_mode; RMQUEUE_CMA is not modelled)
RMQUEUE_NORMAL = 0
RMQUEUE_CLAIM = 1
RMQUEUE_STEAL = 2

ExtfragEvent = tuple[int, int, int, int, int, bool, bool]
PageblockCounts = tuple[int, int, int, int, int]


def request_type(mt: int) -> int:
    """A request's migratetype as the model uses it: outside 0..2 means MOVABLE."""
    return mt if 0 <= mt < MIGRATE_PCPTYPES else MIGRATE_MOVABLE


def pindex(order: int, mt: int) -> int:
    """``order_to_pindex``: the pcp list index (0..13) of a pcp order and a type 0..2."""
    if order == PAGEBLOCK_ORDER:
        return 12 + (1 if mt == MIGRATE_MOVABLE else 0)
    assert 0 <= order <= 3
    return MIGRATE_PCPTYPES * order + mt


def pindex_to_order(pi: int) -> int:
    """The order of the pages on pcp list ``pi``."""
    return PAGEBLOCK_ORDER if pi >= 12 else pi // MIGRATE_PCPTYPES


class RefMobility:
    """The zone ``[start_pfn, start_pfn + pages)`` run by grouping by mobility.

    ``pcp`` turns on the per-CPU lists of ``ncpus`` CPUs, refilled with
    ``max(batch >> order, 2)`` blocks and drained by ``batch`` pages once a
    CPU holds ``high`` pages or more. ``pcp_tuning``: Linux 6.7+'s
    auto-tuning instead, written from mm/page_alloc.c of 6.12
    (``nr_pcp_high``, ``nr_pcp_free``, ``nr_pcp_alloc``, ``decay_pcp_high``,
    ``free_unref_page_commit``, ``rmqueue_pcplist``): ``high`` is high_min,
    ``high_max`` its ceiling, ``wmark_high`` the zone's high watermark (the
    ZONE_BELOW_HIGH test is ``__zone_watermark_ok`` with no lowmem reserve),
    ``free_high_batch`` sets PCPF_FREE_HIGH_BATCH on every cpu; ``free_high_min``
    raises free_high's threshold to batch + high_min / 2 (6.15+).
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
        high_max: int | None = None,
        pcp_tuning: bool = False,
        free_high_batch: bool = False,
        wmark_high: int = 0,
        free_high_min: bool = False,
    ) -> None:
        assert start_pfn >= 0 and pages > 0 and ncpus >= 1 and batch >= 1 and high >= 1
        self.start_pfn = start_pfn
        self.pages = pages
        self.end_pfn = start_pfn + pages
        self.pcp = pcp
        self.ncpus = ncpus
        # a running direct compaction's capture_control: [order, free-list type, captured
        # pfn or None] (None: no compaction captures)
        self.capc: list[int | None] | None = None
        self.batch = batch
        self.high = high
        self.nofragment = nofragment
        self.high_max = high if high_max is None else high_max
        self.tuning = pcp_tuning
        self.wmark_high = wmark_high
        # 6.15+: free_high after batch + high_min / 2 consecutive freed pages
        self.free_high_threshold = batch + (high // 2 if free_high_min else 0)
        # per cpu: pcp->high, free_count, alloc_factor, flags (bit 0 PREV_FREE_HIGH_ORDER,
        # bit 1 FREE_HIGH_BATCH); the zone's BELOW_HIGH and RECLAIM_ACTIVE flags
        self.cur_high = [high] * ncpus
        self.free_count = [0] * ncpus
        self.alloc_factor = [0] * ncpus
        self.flags = [2 if free_high_batch else 0] * ncpus
        self.below_high = False
        self.reclaim_active = False
        # free lists [order][migratetype], index 0 = HEAD
        self.lists: list[list[list[int]]] = [
            [[] for _ in range(MIGRATE_PCPTYPES)] for _ in range(NR_PAGE_ORDERS)
        ]
        self.free_at: dict[int, tuple[int, int]] = {}  # first pfn -> (order, list type)
        self.pb_first = start_pfn >> PAGEBLOCK_ORDER
        self.pb_last = (self.end_pfn - 1) >> PAGEBLOCK_ORDER
        self.pb_mt: list[int] = [MIGRATE_MOVABLE] * (self.pb_last - self.pb_first + 1)
        # per page (index pfn - start_pfn): type of the request that allocated it, or -1
        self.alloc_mt: list[int] = [-1] * pages
        # pcp lists [cpu][pindex], index 0 = HEAD; pages per cpu
        self.pcp_l: list[list[list[int]]] = [
            [[] for _ in range(NR_PCP_LISTS)] for _ in range(ncpus)
        ]
        self.count: list[int] = [0] * ncpus
        self.extfrag: list[ExtfragEvent] = []
        self.drains = 0  # drain_all calls made by the failure retry

        pfn = start_pfn
        while pfn < self.end_pfn:
            # the largest order whose block is aligned at pfn and fits in the zone
            order = max(
                k
                for k in range(NR_PAGE_ORDERS)
                if pfn % (1 << k) == 0 and pfn + (1 << k) <= self.end_pfn
            )
            self._free_one_page(pfn, order, fpi_to_tail=True)
            pfn += 1 << order

    # -- small helpers ------------------------------------------------------------
    def _get_pb_mt(self, pfn: int) -> int:
        """``get_pfnblock_migratetype``: the type of the pageblock holding ``pfn``."""
        return self.pb_mt[(pfn >> PAGEBLOCK_ORDER) - self.pb_first]

    def _set_pb_mt(self, pfn: int, mt: int) -> None:
        self.pb_mt[(pfn >> PAGEBLOCK_ORDER) - self.pb_first] = mt

    def _in_zone(self, pfn: int) -> bool:
        return self.start_pfn <= pfn < self.end_pfn

    def _is_free_block(self, pfn: int, order: int) -> bool:
        """A free buddy block of exactly ``order`` starts at ``pfn`` (so it is in the zone)."""
        fb = self.free_at.get(pfn)
        return fb is not None and fb[0] == order

    def _add(self, pfn: int, order: int, mt: int, to_tail: bool) -> None:
        """``__add_to_free_list``: block (pfn, order) at the head or tail of list (order, mt)."""
        assert pfn not in self.free_at
        assert pfn % (1 << order) == 0 and self._in_zone(pfn)
        assert self._in_zone(pfn + (1 << order) - 1)
        for q in range(pfn, pfn + (1 << order), PAGEBLOCK_PAGES):
            assert self._get_pb_mt(q) == mt, "free block on a list not of its pageblock's type"
        lst = self.lists[order][mt]
        if to_tail:
            lst.append(pfn)
        else:
            lst.insert(0, pfn)
        self.free_at[pfn] = (order, mt)

    def _remove(self, pfn: int, order: int, mt: int) -> None:
        """``__del_page_from_free_list``."""
        assert self.free_at[pfn] == (order, mt)
        del self.free_at[pfn]
        self.lists[order][mt].remove(pfn)

    def _mark_allocated(self, pfn: int, order: int, mt: int) -> None:
        o = pfn - self.start_pfn
        for i in range(o, o + (1 << order)):
            assert self.alloc_mt[i] == -1, f"pfn {self.start_pfn + i} handed out twice"
            self.alloc_mt[i] = mt

    def _mark_freed(self, pfn: int, order: int, mt: int) -> None:
        o = pfn - self.start_pfn
        for i in range(o, o + (1 << order)):
            got = self.alloc_mt[i]
            assert got != -1, f"pfn {self.start_pfn + i} freed but not allocated"
            assert got == mt, f"pfn {self.start_pfn + i} allocated as type {got}, freed as {mt}"
            self.alloc_mt[i] = -1

    def _expand(self, pfn: int, high: int, low: int, mt: int) -> None:
        """``expand``: split block (pfn, high) down to ``low``; upper halves at list HEADs."""
        while high > low:
            high -= 1
            self._add(pfn + (1 << high), high, mt, to_tail=False)

    def _emit_extfrag(self, pfn: int, k: int, c: int, mt: int, f: int) -> None:
        """``trace_mm_page_alloc_extfrag``, change_ownership read after the claim/steal."""
        self.extfrag.append((pfn, k, c, mt, f, c < PAGEBLOCK_ORDER, self._get_pb_mt(pfn) == mt))

    # -- the buddy allocator --------------------------------------------------------
    def _rmqueue_smallest(self, k: int, mt: int) -> int:
        """The HEAD block of the first non-empty list (c, mt), c >= k, split to order k."""
        for c in range(k, NR_PAGE_ORDERS):
            lst = self.lists[c][mt]
            if lst:
                pfn = lst[0]
                self._remove(pfn, c, mt)
                self._expand(pfn, c, k, mt)
                return pfn
        return -1

    @staticmethod
    def _should_try_claim_block(c: int, mt: int) -> bool:
        """Claiming at order ``c`` is worth trying: c >= 4, or a non-movable request."""
        return c >= PAGEBLOCK_ORDER // 2 or mt in (MIGRATE_UNMOVABLE, MIGRATE_RECLAIMABLE)

    def _find_suitable_fallback(self, c: int, mt: int) -> int:
        """The first type in fallbacks[mt] with a free block of order ``c``, or -1."""
        for f in FALLBACKS[mt]:
            if self.lists[c][f]:
                return f
        return -1

    def _try_to_claim_block(self, pfn: int, c: int, k: int, mt: int, f: int) -> int:
        """Claim the pageblock(s) of the free block (pfn, c) on list (c, f) for ``mt``."""
        if c >= PAGEBLOCK_ORDER:
            self._remove(pfn, c, f)
            for q in range(pfn, pfn + (1 << c), PAGEBLOCK_PAGES):
                self._set_pb_mt(q, mt)
            self._expand(pfn, c, k, mt)
            return pfn
        ps = pfn & ~(PAGEBLOCK_PAGES - 1)
        pe = ps + PAGEBLOCK_PAGES
        # prep_move_freepages_block: the pageblock must lie wholly inside the zone
        if not (self._in_zone(ps) and self._in_zone(pe - 1)):
            return -1
        blocks = sorted((p, o_t) for p, o_t in self.free_at.items() if ps <= p < pe)
        free = sum(1 << o for _, (o, _) in blocks)
        movable = sum(
            1 for i in range(ps - self.start_pfn, pe - self.start_pfn)
            if self.alloc_mt[i] == MIGRATE_MOVABLE
        )  # fmt: skip
        if mt == MIGRATE_MOVABLE:
            alike = movable
        elif f == MIGRATE_MOVABLE:
            alike = PAGEBLOCK_PAGES - free - movable
        else:
            alike = 0
        if free + alike < PAGEBLOCK_PAGES // 2:
            return -1
        # __move_freepages_block: ascending pfn, each to the TAIL of the new type's list
        self._set_pb_mt(ps, mt)
        for p, (o, t) in blocks:
            assert t == f
            self._remove(p, o, t)
            self._add(p, o, mt, to_tail=True)
        pfn = self._rmqueue_smallest(k, mt)
        assert pfn >= 0
        return pfn

    def _rmqueue_claim(self, k: int, mt: int, nofrag: bool) -> int:
        """Largest fallback block first; claim its pageblock(s) and allocate from them.

        Under ALLOC_NOFRAGMENT only whole pageblocks (order >= 9) are claimed.
        """
        min_order = PAGEBLOCK_ORDER if nofrag and k < PAGEBLOCK_ORDER else k
        for c in range(MAX_PAGE_ORDER, min_order - 1, -1):
            if not self._should_try_claim_block(c, mt):
                break
            f = self._find_suitable_fallback(c, mt)
            if f < 0:
                continue
            pfn = self._try_to_claim_block(self.lists[c][f][0], c, k, mt, f)
            if pfn >= 0:
                self._emit_extfrag(pfn, k, c, mt, f)
                return pfn
        return -1

    def _rmqueue_steal(self, k: int, mt: int) -> int:
        """Smallest fallback block first; the remainder stays on the fallback type's lists."""
        for c in range(k, NR_PAGE_ORDERS):
            f = self._find_suitable_fallback(c, mt)
            if f < 0:
                continue
            pfn = self.lists[c][f][0]
            self._remove(pfn, c, f)
            self._expand(pfn, c, k, f)
            self._emit_extfrag(pfn, k, c, mt, f)
            return pfn
        return -1

    def _rmqueue(self, k: int, mt: int, mode: int, nofrag: bool) -> tuple[int, int]:
        """``__rmqueue``: (pfn or -1, the mode for the next call of the same refill).

        Under ALLOC_NOFRAGMENT there is no steal.
        """
        if mode == RMQUEUE_NORMAL:
            pfn = self._rmqueue_smallest(k, mt)
            if pfn >= 0:
                return pfn, mode
        if mode in (RMQUEUE_NORMAL, RMQUEUE_CLAIM):
            pfn = self._rmqueue_claim(k, mt, nofrag)
            if pfn >= 0:
                return pfn, RMQUEUE_NORMAL
        if nofrag:
            return -1, mode
        pfn = self._rmqueue_steal(k, mt)
        if pfn >= 0:
            return pfn, RMQUEUE_STEAL
        return -1, mode

    def _free_one_page(self, pfn: int, order: int, fpi_to_tail: bool = False) -> None:
        """``free_one_page`` -> ``split_large_buddy``: order 10 as two order-9 halves."""
        end = pfn + (1 << order)
        step = 1 << min(order, PAGEBLOCK_ORDER)
        for q in range(pfn, end, step):
            self._free_merge(q, min(order, PAGEBLOCK_ORDER), self._get_pb_mt(q), fpi_to_tail)

    def _free_merge(self, pfn: int, k: int, mt: int, fpi_to_tail: bool = False) -> None:
        """``__free_one_page``: merge with free buddies (across types at order >= 9)."""
        assert pfn % (1 << k) == 0 and self._in_zone(pfn)
        assert mt == self._get_pb_mt(pfn)
        capc = self.capc
        while k < MAX_PAGE_ORDER:
            # compaction_capture: the running direct compaction takes a block of its order
            # (a movable pageblock's block below pageblock order only for a movable request)
            if (capc is not None and capc[2] is None and k == capc[0]
                    and not (k < PAGEBLOCK_ORDER and mt == MIGRATE_MOVABLE
                             and capc[1] != MIGRATE_MOVABLE)):  # fmt: skip
                capc[2] = pfn
                return
            b = pfn ^ (1 << k)
            if not self._is_free_block(b, k):
                break
            bt = self.free_at[b][1]
            assert bt == self._get_pb_mt(b)
            self._remove(b, k, bt)
            if bt != mt:
                assert k >= PAGEBLOCK_ORDER
                self._set_pb_mt(b, mt)
            pfn &= b
            k += 1
        if fpi_to_tail:
            to_tail = True
        elif k < PAGEBLOCK_ORDER:  # buddy_merge_likely: false from MAX_PAGE_ORDER - 1 up
            b = pfn ^ (1 << k)
            h = pfn & b
            hb = h ^ (1 << (k + 1))
            to_tail = h >= self.start_pfn and self._is_free_block(hb, k + 1)
        else:
            to_tail = False
        self._add(pfn, k, mt, to_tail)

    # -- pcp ------------------------------------------------------------------------
    def _free_pcppages_bulk(self, cpu: int, n: int, pi: int) -> None:
        """Free ``n`` pages of ``cpu``'s lists from their TAILs, round robin from list ``pi``."""
        lists = self.pcp_l[cpu]
        n = min(n, self.count[cpu])
        p = pi - 1
        while n > 0:
            while True:
                p += 1
                if p > NR_PCP_LISTS - 1:
                    p = 0
                if lists[p]:
                    break
            o = pindex_to_order(p)
            while True:
                page = lists[p].pop()
                n -= 1 << o
                self.count[cpu] -= 1 << o
                self._free_merge(page, o, self._get_pb_mt(page))
                if n <= 0 or not lists[p]:
                    break

    def _drain_all(self) -> None:
        """``drain_all_pages``: every cpu in order, lists 0..13, each from its TAIL."""
        for cpu in range(self.ncpus):
            self._drain_local(cpu)

    def _drain_local(self, cpu: int) -> None:
        """``drain_pages_zone``: the cpu's lists 0..13, each from its TAIL."""
        for pi in range(NR_PCP_LISTS):
            lst = self.pcp_l[cpu][pi]
            o = pindex_to_order(pi)
            while lst:
                page = lst.pop()
                self.count[cpu] -= 1 << o
                self._free_merge(page, o, self._get_pb_mt(page))
        assert self.count[cpu] == 0

    def _clamped_high(self, cpu: int) -> int:
        self.cur_high[cpu] = min(max(self.cur_high[cpu], self.high), self.high_max)
        return self.cur_high[cpu]

    def _nr_pcp_alloc(self, k: int, cpu: int) -> int:
        """``nr_pcp_alloc``: blocks per refill."""
        if not self.tuning:
            if self.high < self.batch:
                return 1
            return max(self.batch >> k, 2) if self.batch > 1 else self.batch
        base = self.batch
        high = self._clamped_high(cpu)
        if high < base:
            return 1
        batch = base if k else base << self.alloc_factor[cpu]
        if self.high != self.high_max and not self.below_high:
            high = self.cur_high[cpu] = min(high + batch, self.high_max)
        if k == 0:
            max_nr_alloc = max(high - self.count[cpu] - base, base)
            if batch <= max_nr_alloc and self.alloc_factor[cpu] < 5:
                self.alloc_factor[cpu] += 1
            batch = min(batch, max_nr_alloc)
        if batch > 1:
            batch = max(batch >> k, 2)
        return batch

    def _nr_pcp_high(self, cpu: int, free_high: bool) -> int:
        """``nr_pcp_high``."""
        batch = self.batch
        high = self._clamped_high(cpu)
        if high == 0:
            return 0
        if free_high:
            self.cur_high[cpu] = max(high - (batch << 5), self.high)
            return 0
        if self.reclaim_active:
            fc = max(self.free_count[cpu], batch)
            self.cur_high[cpu] = max(high - fc, self.high)
            return min(batch << 2, self.cur_high[cpu])
        if self.high == self.high_max:
            return high
        if self.below_high:
            fc = max(self.free_count[cpu], batch)
            self.cur_high[cpu] = max(high - fc, self.high)
            high = max(self.count[cpu], self.high)
        elif self.count[cpu] >= high:
            need = self.free_count[cpu] + batch
            if self.cur_high[cpu] < need:
                self.cur_high[cpu] = min(max(need, self.high), self.high_max)
        return high

    def _nr_pcp_free(self, cpu: int, high: int, free_high: bool) -> int:
        """``nr_pcp_free``."""
        if free_high:
            return min(self.count[cpu], self.batch << 5)
        if high < self.batch:
            return 1
        return min(max(self.free_count[cpu], self.batch), high - self.batch)

    def _watermark_ok(self, k: int, mark: int) -> bool:
        """``__zone_watermark_ok`` for MIGRATE_PCPTYPES lists, no reserves or lowmem."""
        free = self.free_pages() - (1 << k) + 1
        if free <= mark:
            return False
        if k == 0:
            return True
        return any(
            self.lists[o][t] for o in range(k, NR_PAGE_ORDERS) for t in range(MIGRATE_PCPTYPES)
        )

    def decay(self) -> None:
        """One ``decay_pcp_high`` period on every cpu (vmstat_update)."""
        for cpu in range(self.ncpus):
            if self.cur_high[cpu] > self.high:
                self.cur_high[cpu] = max(
                    self.count[cpu] - (self.batch << 5),
                    self.cur_high[cpu] - (self.cur_high[cpu] >> 3),
                    self.high,
                )
            to_drain = self.count[cpu] - self.cur_high[cpu]
            while to_drain > 0:
                self._free_pcppages_bulk(cpu, min(to_drain, self.batch), 0)
                to_drain -= self.batch

    def _rmqueue_pcplist(self, k: int, mt: int, cpu: int, nofrag: bool) -> int:
        """Take the HEAD of the cpu's list, refilling it first when empty."""
        if self.tuning:
            self.free_count[cpu] >>= 1
        lst = self.pcp_l[cpu][pindex(k, mt)]
        if not lst:
            mode = RMQUEUE_NORMAL
            for _ in range(self._nr_pcp_alloc(k, cpu)):
                pfn, mode = self._rmqueue(k, mt, mode, nofrag)
                if pfn < 0:
                    break
                lst.append(pfn)
                self.count[cpu] += 1 << k
        if not lst:
            return -1
        self.count[cpu] -= 1 << k
        return lst.pop(0)

    # -- the public API -----------------------------------------------------------------
    def _alloc_once(self, k: int, mt: int, cpu: int, nofrag: bool) -> int:
        if self.pcp and k in PCP_ORDERS:
            pfn = self._rmqueue_pcplist(k, mt, cpu, nofrag)
            if pfn >= 0:
                return pfn
        return self._rmqueue(k, mt, RMQUEUE_NORMAL, nofrag)[0]

    def _get_page_from_freelist(self, k: int, mt: int, cpu: int) -> int:
        """First with ALLOC_NOFRAGMENT (when on), then, if that failed, without it."""
        if self.nofragment:
            pfn = self._alloc_once(k, mt, cpu, True)
            if pfn >= 0:
                return pfn
        return self._alloc_once(k, mt, cpu, False)

    def alloc(self, order: int, mt: int, cpu: int = 0) -> int:
        """Allocate a block of ``order`` for a request of migratetype ``mt`` on ``cpu``.

        Returns its first pfn, or -1. A failure while pcp lists hold pages
        drains them all (counted in ``drains``) and tries once more.
        """
        assert 0 <= order <= MAX_PAGE_ORDER and 0 <= cpu < self.ncpus
        mt = request_type(mt)
        if self.tuning and not self.below_high and not self._watermark_ok(order, self.wmark_high):
            self.below_high = True
        pfn = self._get_page_from_freelist(order, mt, cpu)
        if pfn < 0 and self.pcp_pages() > 0:
            self._drain_all()
            self.drains += 1
            pfn = self._get_page_from_freelist(order, mt, cpu)
        if pfn >= 0:
            self._mark_allocated(pfn, order, mt)
        return pfn

    def free(self, pfn: int, order: int, mt: int, cpu: int = 0) -> None:
        """Free the block ``(pfn, order)`` (or a piece of a larger allocated block).

        ``mt`` is the migratetype of the request that allocated the pages;
        the free itself uses the pageblock's current type.
        """
        assert 0 <= order <= MAX_PAGE_ORDER and 0 <= cpu < self.ncpus
        assert pfn % (1 << order) == 0, "misaligned free"
        assert self._in_zone(pfn) and self._in_zone(pfn + (1 << order) - 1), "free outside zone"
        self._mark_freed(pfn, order, request_type(mt))
        self._free_frozen(pfn, order, cpu)

    def _free_frozen(self, pfn: int, order: int, cpu: int) -> None:
        """``free_frozen_pages``: pcp orders to the cpu's list, the others to the buddy."""
        if self.pcp and order in PCP_ORDERS:
            # free_frozen_page_commit
            pi = pindex(order, self._get_pb_mt(pfn))
            self.pcp_l[cpu][pi].insert(0, pfn)
            self.count[cpu] += 1 << order
            if not self.tuning:
                if self.count[cpu] >= self.high:
                    # nr_pcp_free without auto-tuning: batch pages (1 when high < batch)
                    n = 1 if self.high < self.batch else self.batch
                    self._free_pcppages_bulk(cpu, n, pi)
                return
            self.alloc_factor[cpu] >>= 1
            free_high = False
            if 0 < order <= 3:
                f = self.flags[cpu]
                free_high = (self.free_count[cpu] >= self.free_high_threshold and bool(f & 1)
                             and (not f & 2 or self.count[cpu] >= self.batch))  # fmt: skip
                self.flags[cpu] |= 1
            else:
                self.flags[cpu] &= ~1
            if self.free_count[cpu] < (self.batch << 5):
                self.free_count[cpu] += 1 << order
            high = self._nr_pcp_high(cpu, free_high)
            if self.count[cpu] >= high:
                self._free_pcppages_bulk(cpu, self._nr_pcp_free(cpu, high, free_high), pi)
                if self.below_high and self._watermark_ok(0, self.wmark_high):
                    self.below_high = False
        else:
            self._free_one_page(pfn, order)

    def drain_all(self) -> None:
        """Free every pcp page to the buddy (``drain_all_pages``); not counted in ``drains``."""
        self._drain_all()

    # -- state accessors ------------------------------------------------------------------
    def free_lists(self) -> dict[tuple[int, int], list[int]]:
        """(order, migratetype) -> free blocks' pfns head..tail; non-empty lists only."""
        return {
            (k, t): list(self.lists[k][t])
            for k in range(NR_PAGE_ORDERS)
            for t in range(MIGRATE_PCPTYPES)
            if self.lists[k][t]
        }

    def pageblock_types(self) -> list[int]:
        """Migratetype of pageblocks ``start_pfn >> 9`` .. ``(end_pfn - 1) >> 9``."""
        return list(self.pb_mt)

    def pcp_lists(self) -> dict[tuple[int, int], list[int]]:
        """(cpu, pindex) -> pfns head..tail; non-empty lists only."""
        return {
            (cpu, pi): list(self.pcp_l[cpu][pi])
            for cpu in range(self.ncpus)
            for pi in range(NR_PCP_LISTS)
            if self.pcp_l[cpu][pi]
        }

    def pcp_count(self) -> list[int]:
        """Pages on each cpu's pcp lists."""
        return list(self.count)

    @property
    def nr_free(self) -> list[int]:
        """Free buddy blocks per order 0..10, all migratetypes."""
        return [sum(len(lst) for lst in self.lists[k]) for k in range(NR_PAGE_ORDERS)]

    def nr_free_mt(self) -> list[list[int]]:
        """Free buddy blocks per [order][migratetype], 11 x 3."""
        return [[len(lst) for lst in self.lists[k]] for k in range(NR_PAGE_ORDERS)]

    def free_pages(self) -> int:
        """Pages in free buddy blocks (pcp pages excluded)."""
        return sum(1 << o for o, _ in self.free_at.values())

    def pcp_pages(self) -> int:
        """Pages on all pcp lists."""
        return sum(self.count)

    def pageblock_counts(self) -> list[PageblockCounts]:
        """Per pageblock (as ``pageblock_types``), pages that are: (free, allocated
        UNMOVABLE, allocated MOVABLE, allocated RECLAIMABLE, on pcp lists)."""
        n = len(self.pb_mt)
        free = [0] * n
        pcp = [0] * n
        for p, (o, _) in self.free_at.items():
            for q in range(p, p + (1 << o), min(1 << o, PAGEBLOCK_PAGES)):
                free[(q >> PAGEBLOCK_ORDER) - self.pb_first] += min(1 << o, PAGEBLOCK_PAGES)
        for cpu_lists in self.pcp_l:
            for pi, lst in enumerate(cpu_lists):
                for p in lst:
                    pcp[(p >> PAGEBLOCK_ORDER) - self.pb_first] += 1 << pindex_to_order(pi)
        # allocated pages by type, a pageblock's slice at a time (list.count: a loop over
        # every page was most of the defrag reference test's time)
        alloc = []
        for b in range(n):
            lo = max(((self.pb_first + b) << PAGEBLOCK_ORDER) - self.start_pfn, 0)
            got = self.alloc_mt[lo : ((self.pb_first + b + 1) << PAGEBLOCK_ORDER) - self.start_pfn]
            alloc.append([got.count(t) for t in range(MIGRATE_PCPTYPES)])
        return [(free[b], alloc[b][0], alloc[b][1], alloc[b][2], pcp[b]) for b in range(n)]


def check_mobility_invariants(zone: Any, allocated: dict[int, tuple[int, int]]) -> None:
    """Assert the structural invariants of a mobility zone, through the public API only.

    ``allocated`` maps the first pfn of every block the caller holds to
    ``(order, request migratetype)`` (types outside 0..2 count as MOVABLE).
    Checks: free blocks, pcp pages and allocated blocks are naturally aligned,
    inside the zone, never overlap and cover exactly the zone's pages; every
    free block is on the list of its pageblock(s)' type; no two free buddies of
    equal order < 10; ``nr_free`` / ``nr_free_mt`` equal the list lengths;
    ``free_pages``, ``pcp_pages`` and ``pcp_count`` agree with the lists;
    ``pageblock_counts`` agrees with all of it.
    """
    start = int(zone.start_pfn)
    end = start + int(zone.pages)
    pb_first = start >> PAGEBLOCK_ORDER
    pb_types = [int(t) for t in zone.pageblock_types()]
    assert len(pb_types) == ((end - 1) >> PAGEBLOCK_ORDER) - pb_first + 1
    assert all(0 <= t < MIGRATE_PCPTYPES for t in pb_types), pb_types

    lists = zone.free_lists()
    nr_free_mt = [[int(x) for x in row] for row in zone.nr_free_mt()]
    assert len(nr_free_mt) == NR_PAGE_ORDERS
    for k in range(NR_PAGE_ORDERS):
        assert len(nr_free_mt[k]) == MIGRATE_PCPTYPES
        for t in range(MIGRATE_PCPTYPES):
            assert nr_free_mt[k][t] == len(lists.get((k, t), [])), (k, t)
    nr_free = [int(n) for n in zone.nr_free]
    assert nr_free == [sum(row) for row in nr_free_mt], nr_free

    blocks: list[tuple[int, int, str]] = []
    free_at: dict[int, int] = {}
    for (k, t), pfns in lists.items():
        assert 0 <= k <= MAX_PAGE_ORDER and 0 <= t < MIGRATE_PCPTYPES and pfns, (k, t)
        for p in pfns:
            assert p not in free_at, f"pfn {p} twice in the free lists"
            free_at[p] = k
            blocks.append((p, k, "free"))
            assert p % (1 << k) == 0 and start <= p and p + (1 << k) <= end, (p, k)
            for q in range(p, p + (1 << k), PAGEBLOCK_PAGES):
                pbt = pb_types[(q >> PAGEBLOCK_ORDER) - pb_first]
                assert pbt == t, f"free block {p} o{k} on list of type {t}, pageblock is {pbt}"

    pcp = zone.pcp_lists()
    ncpu = len(zone.pcp_count())
    pcp_per_cpu = [0] * ncpu
    for (cpu, pi), pfns in pcp.items():
        assert 0 <= cpu < ncpu and 0 <= pi < NR_PCP_LISTS and pfns, (cpu, pi)
        o = pindex_to_order(pi)
        for p in pfns:
            blocks.append((p, o, "pcp"))
            pcp_per_cpu[cpu] += 1 << o
    assert [int(c) for c in zone.pcp_count()] == pcp_per_cpu
    assert int(zone.pcp_pages()) == sum(pcp_per_cpu)

    blocks += [(p, k, "allocated") for p, (k, _) in allocated.items()]
    total = 0
    prev_end, prev = start, None
    for p, k, what in sorted(blocks):
        assert 0 <= k <= MAX_PAGE_ORDER, (what, p, k)
        assert p % (1 << k) == 0, f"{what} block {p} order {k} misaligned"
        assert start <= p and p + (1 << k) <= end, f"{what} block {p} order {k} outside zone"
        assert p >= prev_end, f"{what} block {p} order {k} overlaps {prev}"
        prev_end, prev = p + (1 << k), (p, k, what)
        total += 1 << k
    assert total == end - start, f"pages not conserved: {total} != {end - start}"

    for p, k in free_at.items():
        if k < MAX_PAGE_ORDER:
            assert free_at.get(p ^ (1 << k)) != k, f"free buddies {p} and {p ^ (1 << k)} unmerged"
    free_pages = sum(1 << k for k in free_at.values())
    assert int(zone.free_pages()) == free_pages

    # pageblock_counts from the pieces above
    want = [[0] * 5 for _ in pb_types]
    for p, k, what in blocks:
        col = {"free": 0, "pcp": 4}.get(what)
        for q in range(p, p + (1 << k)):
            b = (q >> PAGEBLOCK_ORDER) - pb_first
            if col is not None:
                want[b][col] += 1
    for p, (k, mt) in allocated.items():
        t = mt if 0 <= mt < MIGRATE_PCPTYPES else MIGRATE_MOVABLE
        for q in range(p, p + (1 << k)):
            want[(q >> PAGEBLOCK_ORDER) - pb_first][1 + t] += 1
    got = [tuple(int(x) for x in row) for row in zone.pageblock_counts()]
    assert got == [tuple(row) for row in want], (got, want)
    for b, row in enumerate(want):
        lo = max(start, (pb_first + b) << PAGEBLOCK_ORDER)
        hi = min(end, (pb_first + b + 1) << PAGEBLOCK_ORDER)
        assert sum(row) == hi - lo, f"pageblock {pb_first + b} pages not conserved"
