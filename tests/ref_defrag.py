"""A small pure-Python reference of the exchange, contiguous-range, active-defragmentation
and per-owner pool models, for tests.

Written from docs/defrag.md on top of tests/ref_compaction.py (objects, units,
flags: docs/compaction.md) and tests/ref_mobility.py (the allocator:
docs/mobility.md), not from the numba kernels. Units: pfns are absolute page
frame numbers, ``order`` k means a block of ``1 << k`` pages, "pages" counts
4 KiB pages, times (``ts_ns``) are nanoseconds of trace time.

Pieces (one method each, named after docs/defrag.md):

- helpers: ``_free_block_at`` (``take_page_off_buddy``'s search),
  ``_take_free_block`` (``break_down_buddy_pages``), ``_move``;
- ``exchange`` (exchange pages, one result code per object);
- ``range_census`` and ``evacuate`` (isolate, migrate, keep or give back);
- ``alloc_contig`` (``alloc_contig_pages`` first fit, or best fit);
- active defragmentation: ``wanted_order``, the idle-gap trigger with its
  deferral, ``active_defrag`` (a pass and its ``defrag`` model event);
- per-owner pools: ``_pool_alloc`` / ``_pool_free`` behind ``alloc_obj`` /
  ``free_obj`` with ``owner``.

Counters use the numba zone's indices (``counters[C_MIGRATED]`` ...,
``stats[S_POOL_FALLBACKS]``) so one test body reads both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ref_compaction import FAILED, FREED, UNIT, Obj, RefCompaction
from ref_mobility import (
    MAX_PAGE_ORDER,
    MIGRATE_UNMOVABLE,
    NR_PAGE_ORDERS,
    request_type,
)

from replay.models.internal import (
    C_EXCHANGED,
    C_MIGRATED,
    C_POOL_CHUNKS,
    C_POOL_PAGES,
    NR_COUNTERS,
    NR_STATS,
    S_POOL_FALLBACKS,
)

# exchange_pages result codes (replay.models.defrag's EX_*)
EX_IN_PLACE, EX_MIGRATED, EX_EXCHANGED, EX_BLOCKED, EX_UNMOVABLE = range(5)
EX_NAMES = ("in_place", "migrated", "exchanged", "blocked", "unmovable")

DEFRAG_MAX_DEFER_SHIFT = 6
KIND_DEFRAG = "defrag"
BALANCED = "BALANCED"
UNBALANCED = "UNBALANCED"


@dataclass
class Chunk:
    """One pool chunk: its owner, the request type it was allocated for, pages in use
    (offsets inside the chunk)."""

    owner: int
    mt: int
    used: set[int] = field(default_factory=set)


def _largest_aligned_blocks(lo: int, hi: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` cut into the largest naturally aligned blocks (order <= 10), ascending."""
    out = []
    while lo < hi:
        k = max(k for k in range(NR_PAGE_ORDERS) if lo % (1 << k) == 0 and lo + (1 << k) <= hi)
        out.append((lo, k))
        lo += 1 << k
    return out


class RefDefrag(RefCompaction):
    """RefCompaction plus exchange pages, range evacuation, contiguous range allocation,
    active defragmentation and per-owner pools.

    ``defrag_idle_ns``: the idle gap (ns) after which a pass is due (0: the trigger is
    off; ``active_defrag`` still runs a pass). ``defrag_thresholds``: order -> free
    blocks wanted. ``pool_order``: chunk order K (0: pools off); ``pool_owners``: owners
    0 .. pool_owners - 1.
    """

    def __init__(
        self,
        start_pfn: int,
        pages: int,
        *,
        defrag_idle_ns: int = 0,
        defrag_thresholds: dict[int, int] | None = None,
        pool_order: int = 0,
        pool_owners: int = 1,
        **kw: object,
    ) -> None:
        super().__init__(start_pfn, pages, **kw)  # type: ignore[arg-type]
        assert 0 <= pool_order <= MAX_PAGE_ORDER and pool_owners >= 1
        self.counters: list[int] = [0] * NR_COUNTERS
        self.stats: list[int] = [0] * NR_STATS
        # active defragmentation
        self.df_idle = int(defrag_idle_ns)
        self.df_wanted = [0] * NR_PAGE_ORDERS
        for k, w in (defrag_thresholds or {}).items():
            self.df_wanted[int(k)] = int(w)
        self.df_last_ts: int | None = None
        self.df_defer = 0  # deferral counter: due passes still to skip
        self.df_shift = 0
        # pools
        self.pool_order = int(pool_order)
        self.pool_owners = int(pool_owners)
        self.pool_lists: list[list[int]] = [[] for _ in range(pool_owners)]  # index 0 = HEAD
        self.chunks: dict[int, Chunk] = {}  # chunk index -> chunk
        self.pooled: set[int] = set()  # live pooled objects
        # contiguous ranges handed out by alloc_contig: (pfn, pages)
        self.contig: list[tuple[int, int]] = []

    # -- common helpers -----------------------------------------------------------------
    def _move_unit(self, obj: int, dst: int, cpu: int | None = None) -> None:
        """A move (compaction's, or the defrag models' with ``cpu`` None: the old block
        to the buddy); counted as migrated."""
        super()._move_unit(obj, dst, cpu)
        self.counters[C_MIGRATED] += 1 << self.objs[obj].order

    def _free_block_at(self, pfn: int) -> tuple[int, int] | None:
        """The free buddy block (head, order) covering ``pfn``, or None
        (``take_page_off_buddy``'s search: heads at every order, lowest first)."""
        for b in range(NR_PAGE_ORDERS):
            h = pfn & ~((1 << b) - 1)
            if h < self.start_pfn:
                break
            fb = self.free_at.get(h)
            if fb is not None and fb[0] >= b:
                return h, fb[0]
        return None

    def _take_free_block(self, t: int, k: int) -> bool:
        """Take the order-``k`` block at ``t`` out of the free block covering it; the
        halves not containing ``t`` go to the HEADs of their lists. False: nothing done."""
        if t % (1 << k):
            return False
        fb = self._free_block_at(t)
        if fb is None or fb[1] < k:
            return False
        h, c = fb
        self._remove(h, c, self.free_at[h][1])
        while c > k:
            c -= 1
            if t >= h + (1 << c):
                buddy, h = h, h + (1 << c)
            else:
                buddy = h + (1 << c)
            self._add(buddy, c, self._get_pb_mt(buddy), to_tail=False)
        assert h == t
        return True

    def _move(self, obj: int, q: int, *, marked: bool = False) -> None:
        """Move object ``obj``'s unit from its pfn p to ``q``: its pages' accounting leaves
        p (and arrives at q unless ``marked``: the allocator already counted them);
        ``pg_obj[p]`` cleared if it names ``obj``; ``pg_obj[q] = obj``; ``placed = q``.
        Nothing is freed."""
        o = self.objs[obj]
        p = o.pfn
        n = 1 << o.order
        s = self.start_pfn
        for i in range(n):
            assert self.alloc_mt[p - s + i] == o.mt
            self.alloc_mt[p - s + i] = -1
            if marked:
                assert self.alloc_mt[q - s + i] == o.mt
            else:
                assert self.alloc_mt[q - s + i] == -1
                self.alloc_mt[q - s + i] = o.mt
        if self.pg_obj.get(p) == obj:
            del self.pg_obj[p]
        self.pg_obj[q] = obj
        o.pfn = q

    def _is_unit_at(self, p: int) -> int | None:
        """The object whose unit starts at ``p`` (``pg_obj[p] == x`` and ``placed[x] ==
        p``), or None."""
        x = self.pg_obj.get(p)
        if x is not None and self.objs[x].pfn == p:
            return x
        return None

    def _movable_unit(self, x: int) -> bool:
        """F_MOVABLE and not F_PINNED."""
        o = self.objs[x]
        return o.movable and o.state == UNIT

    # -- exchange pages ----------------------------------------------------------------------
    def _exchange_one(self, x: int, t: int) -> int:
        o = self.objs.get(x)
        p = -1 if o is None else o.pfn
        if p == t:
            return EX_IN_PLACE
        if o is None or p < 0 or self.pg_obj.get(p) != x or not o.movable:
            return EX_UNMOVABLE
        j = o.order
        n = 1 << j
        if t < self.start_pfn or t + n > self.end_pfn or t % n:
            return EX_BLOCKED
        if self._take_free_block(t, j):
            self._move(x, t)
            self._free_one_page(p, j)
            self.counters[C_MIGRATED] += n
            return EX_MIGRATED
        y = self.pg_obj.get(t)
        if y is not None:
            oy = self.objs[y]
            if oy.pfn == t and oy.order == j and self._movable_unit(y):
                s = self.start_pfn
                for i in range(n):
                    a, b = p - s + i, t - s + i
                    assert self.alloc_mt[a] == o.mt and self.alloc_mt[b] == oy.mt
                    self.alloc_mt[a], self.alloc_mt[b] = oy.mt, o.mt
                o.pfn, oy.pfn = t, p
                self.pg_obj[p] = y
                self.pg_obj[t] = x
                self.counters[C_EXCHANGED] += 2 * n
                return EX_EXCHANGED
        return EX_BLOCKED

    def exchange(self, objs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """``exchange_pages``: each object to its target pfn, in the given order; the EX_*
        code per object. No per-CPU drain here (the engine drains before calling)."""
        res = np.zeros(len(objs), np.int8)
        for i, (x, t) in enumerate(zip(objs, targets, strict=True)):
            res[i] = self._exchange_one(int(x), int(t))
        return res

    # -- range census and evacuation ------------------------------------------------------------
    def range_census(self, lo: int, n: int) -> tuple[int, int, int]:
        """(free, movable, other) pages of ``[lo, lo + n)``."""
        end = lo + n
        free = movable = other = 0
        p = lo
        fb = self._free_block_at(lo)
        if fb is not None:
            h, c = fb
            e = min(h + (1 << c), end)
            free += e - lo
            p = e
        while p < end:
            fb2 = self.free_at.get(p)
            if fb2 is not None:
                free += min(1 << fb2[0], end - p)
                p += 1 << fb2[0]
                continue
            x = self._is_unit_at(p)
            if x is not None:
                sz = 1 << self.objs[x].order
                if p + sz <= end and self._movable_unit(x):
                    movable += sz
                else:
                    other += min(sz, end - p)
                p += sz
                continue
            other += 1
            p += 1
        return free, movable, other

    def evacuate(self, lo: int, n: int, keep: bool, seq: int = -1) -> tuple[bool, int]:
        """Empty ``[lo, lo + n)`` (the caller checked other == 0 and drained the pcp
        lists): (success, pages migrated). ``keep``: on success the range stays
        allocated (UNMOVABLE) and only the isolated pages outside it go back."""
        end = lo + n
        isolated: list[tuple[int, int]] = []
        units: list[int] = []
        p = lo
        fb = self._free_block_at(lo)
        if fb is not None:
            h, c = fb
            self._remove(h, c, self.free_at[h][1])
            isolated.append((h, c))
            p = h + (1 << c)
        while p < end:
            fb2 = self.free_at.get(p)
            if fb2 is not None:
                self._remove(p, fb2[0], fb2[1])
                isolated.append((p, fb2[0]))
                p += 1 << fb2[0]
                continue
            x = self._is_unit_at(p)
            assert x is not None and self._movable_unit(x), f"evacuate: other page at {p}"
            units.append(x)
            p += 1 << self.objs[x].order
        vacated: list[tuple[int, int]] = []
        migrated = 0
        ok = True
        for x in units:
            o = self.objs[x]
            q = self._alloc_pages(o.order, o.mt, 0, seq, compact=False)
            if q < 0:
                ok = False
                break
            vacated.append((o.pfn, o.order))
            self._move(x, q, marked=True)
            migrated += 1 << o.order
        self.counters[C_MIGRATED] += migrated
        if ok and keep:
            for h, c in isolated:
                e = h + (1 << c)
                parts = []
                if h < lo:
                    parts += _largest_aligned_blocks(h, lo)
                if e > end:
                    parts += _largest_aligned_blocks(max(h, end), e)
                for q, k in parts:
                    self._free_one_page(q, k)
            s = self.start_pfn
            for i in range(lo - s, end - s):
                assert self.alloc_mt[i] == -1
                self.alloc_mt[i] = MIGRATE_UNMOVABLE
            self.contig.append((lo, n))
            return True, migrated
        for h, c in isolated:
            self._free_one_page(h, c)
        for q, k in vacated:
            self._free_one_page(q, k)
        return ok, migrated

    # -- contiguous range allocation ------------------------------------------------------------
    def alloc_contig(
        self, nr_pages: int, pfn: int = -1, best: bool = False, seq: int = -1
    ) -> tuple[int, int, int]:
        """``alloc_contig_pages``: (first pfn or -1, pages migrated, ranges tried).

        Ranges tried: with ``pfn`` given, the range once it is inside the zone (even when
        its census refuses it, as docs/defrag.md says); with ``pfn`` -1, the evacuations
        made (docs/defrag.md does not say; candidates refused by their census are not
        counted - the numba kernel does the same).
        """
        n = int(nr_pages)
        assert n >= 1
        self._drain_all()
        if pfn >= 0:
            if pfn < self.start_pfn or pfn + n > self.end_pfn:
                return -1, 0, 0
            if self.range_census(pfn, n)[2] != 0:
                return -1, 0, 1
            ok, migrated = self.evacuate(pfn, n, True, seq)
            return (pfn if ok else -1), migrated, 1
        c = (self.start_pfn + n - 1) & ~(n - 1)  # ALIGN(zone start, n), as the contract says
        cands = []
        while c + n <= self.end_pfn:
            cands.append(c)
            c += n
        if best:
            pick = -1
            fewest = -1
            for c in cands:
                _, mov, other = self.range_census(c, n)
                if other == 0 and (pick < 0 or mov < fewest):
                    pick, fewest = c, mov
            if pick < 0:
                return -1, 0, 0
            ok, migrated = self.evacuate(pick, n, True, seq)
            return (pick if ok else -1), migrated, 1
        tried = migrated = 0
        for c in cands:
            if self.range_census(c, n)[2] != 0:
                continue
            tried += 1
            ok, m = self.evacuate(c, n, True, seq)
            migrated += m
            if ok:
                return c, migrated, tried
        return -1, migrated, tried

    # -- active defragmentation ------------------------------------------------------------------
    def suitable(self, k: int) -> int:
        """Free blocks of order ``k`` the free lists could hand out (larger ones split)."""
        nr = self.nr_free
        return sum(nr[j] << (j - k) for j in range(k, NR_PAGE_ORDERS))

    def wanted_order(self) -> int:
        """The lowest order whose threshold is not met, or -1."""
        for k in range(NR_PAGE_ORDERS):
            w = self.df_wanted[k]
            if w > 0 and self.suitable(k) < w:
                return k
        return -1

    def _defrag_trigger(self, ts_ns: int, seq: int) -> None:
        """Before an event at trace time ``ts_ns``: run a pass when one is due."""
        if self.df_idle <= 0:
            return
        last = self.df_last_ts
        self.df_last_ts = ts_ns
        if last is None or ts_ns - last < self.df_idle or self.wanted_order() < 0:
            return
        if self.df_defer > 0:
            self.df_defer -= 1
            return
        self.active_defrag(seq)

    def active_defrag(self, seq: int = -1) -> tuple[int, int, int, int]:
        """One pass now: (first wanted order or -1, blocks freed, pages migrated,
        evacuations tried); updates the deferral and records a ``defrag`` model event.

        With no wanted order the pass does nothing at all (docs/defrag.md: "if no wanted
        order, nothing"): no drain, no deferral update, no event. (The numba pass records
        an event and counts as useless there; only a direct call can get there.)
        """
        k0 = self.wanted_order()
        if k0 < 0:
            return -1, 0, 0, 0
        self._drain_all()
        k = k0
        freed = migrated = tried = 0
        while True:
            size = 1 << k
            pick = -1
            most = -1
            c = -(-self.start_pfn // size) * size
            while c + size <= self.end_pfn:
                free, _, other = self.range_census(c, size)
                if other == 0 and free < size and free > most:
                    pick, most = c, free
                c += size
            if pick < 0:
                break
            before = self.suitable(k)
            ok, m = self.evacuate(pick, size, False, seq)
            tried += 1
            migrated += m
            if not ok or self.suitable(k) <= before:
                break
            freed += 1
            k = self.wanted_order()
            if k < 0:
                break
        if freed == 0:
            self.df_shift = min(self.df_shift + 1, DEFRAG_MAX_DEFER_SHIFT)
            self.df_defer = 1 << self.df_shift
        else:
            self.df_shift = 0
            self.df_defer = 0
        result = BALANCED if self.wanted_order() < 0 else UNBALANCED
        self.events.append(
            (KIND_DEFRAG, seq, k0, -1, -1, -1, -1, -1, 0, 0, migrated, tried - freed, result)
        )
        return k0, freed, migrated, tried

    # -- per-owner pools --------------------------------------------------------------------------
    def _chunk_pfn(self, c: int) -> int:
        return ((self.start_pfn >> self.pool_order) + c) << self.pool_order

    def _pool_alloc(self, owner: int, rt: int, cpu: int, seq: int) -> int:
        """An order-0 page from the owner's pool; -1: no chunk could be had."""
        K = self.pool_order
        lst = self.pool_lists[owner]
        if not lst:
            pfn = self._alloc_pages(K, rt, cpu, seq, compact=False)
            if pfn < 0:
                self.stats[S_POOL_FALLBACKS] += 1
                return -1
            c = (pfn >> K) - (self.start_pfn >> K)
            assert c not in self.chunks and self._chunk_pfn(c) == pfn
            self.chunks[c] = Chunk(owner, rt)
            lst.append(c)
            self.counters[C_POOL_CHUNKS] += 1
        c = lst[0]
        ch = self.chunks[c]
        i = min(set(range(1 << K)) - ch.used)
        ch.used.add(i)
        self.counters[C_POOL_PAGES] += 1
        if len(ch.used) == 1 << K:
            lst.pop(0)
        return self._chunk_pfn(c) + i

    def _pool_free(self, pfn: int, cpu: int) -> None:
        K = self.pool_order
        c = (pfn >> K) - (self.start_pfn >> K)
        ch = self.chunks[c]
        base = self._chunk_pfn(c)
        lst = self.pool_lists[ch.owner]
        was_full = len(ch.used) == 1 << K
        ch.used.remove(pfn - base)
        self.counters[C_POOL_PAGES] -= 1
        if was_full:
            lst.append(c)
        if not ch.used:
            lst.remove(c)
            del self.chunks[c]
            self.counters[C_POOL_CHUNKS] -= 1
            self.free(base, K, ch.mt, cpu)

    # -- the public API ----------------------------------------------------------------------------
    def alloc_obj(  # type: ignore[override]
        self,
        obj: int,
        order: int,
        mt: int,
        movable: bool | None = None,
        cpu: int = 0,
        ts_ns: int = 0,
        seq: int = -1,
        reclaimable: bool | None = None,
        vcompound: bool = False,
        owner: int = -1,
        direct_reclaim: bool = True,
    ) -> int:
        """As RefCompaction.alloc_obj, after the active-defrag trigger; an order-0 request
        with an ``owner`` takes its page from the owner's pool when pools are on."""
        del reclaimable, vcompound  # kswapd and the vcompound fallback are not modelled here
        self._defrag_trigger(ts_ns, seq)
        if self.pool_order > 0 and order == 0 and owner >= 0:
            old = self.objs.get(obj)
            assert old is None or old.state in (FREED, FAILED), f"object {obj} is live"
            assert owner < self.pool_owners
            self._tick(ts_ns, seq)
            rt = request_type(mt)
            pfn = self._pool_alloc(owner, rt, cpu, seq)
            if pfn >= 0:
                # pinned to its chunk: neither F_MOVABLE nor F_RECLAIM
                self.objs[obj] = Obj(pfn, 0, rt, False, UNIT, 1)
                self.pg_obj[pfn] = obj
                self.pooled.add(obj)
                return pfn
        return super().alloc_obj(
            obj, order, mt, movable, cpu, ts_ns, seq=seq, direct_reclaim=direct_reclaim
        )

    def free_obj(  # type: ignore[override]
        self,
        obj: int,
        offset: int = 0,
        order: int | None = None,
        cpu: int = 0,
        ts_ns: int = 0,
        seq: int = -1,
    ) -> None:
        """As RefCompaction.free_obj, after the active-defrag trigger; a pooled page goes
        back to its chunk."""
        self._defrag_trigger(ts_ns, seq)
        if obj in self.pooled:
            self._tick(ts_ns, seq)
            assert offset == 0 and order in (None, 0)
            o = self.objs[obj]
            if self.pg_obj.get(o.pfn) == obj:
                del self.pg_obj[o.pfn]
            o.state = FREED
            o.remaining = 0
            self.pooled.discard(obj)
            self._pool_free(o.pfn, cpu)
            return
        super().free_obj(obj, offset, order, cpu, ts_ns, seq=seq)

    # -- inspection (not part of the shared zone API) -----------------------------------------
    def pool_chunks(self) -> dict[int, tuple[int, int, int]]:
        """Chunks held: first pfn -> (owner, request type, pages in use)."""
        return {self._chunk_pfn(c): (ch.owner, ch.mt, len(ch.used)) for c, ch in
                self.chunks.items()}  # fmt: skip

    def owner_lists(self) -> list[list[int]]:
        """Per owner, its chunks with free pages (first pfns), head to tail."""
        return [[self._chunk_pfn(c) for c in lst] for lst in self.pool_lists]

    @property
    def defer(self) -> tuple[int, int]:
        """(deferral counter, shift) of active defragmentation."""
        return self.df_defer, self.df_shift
