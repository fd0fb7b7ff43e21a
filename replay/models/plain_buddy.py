"""``buddy``: the plain binary buddy allocator, exact (one free list per order).

Follows mm/page_alloc.c of Linux 6.x: ``__rmqueue_smallest`` + ``expand``
for allocation, ``__free_one_page`` (+ ``buddy_merge_likely``) for freeing,
``__free_pages_core`` with FPI_TO_TAIL for the initial state. The sequence of
pfns handed out for an event stream is fully determined: two correct
implementations agree at every step (tests/ref_buddy.py checks this one).

State (numpy arrays, indexed by pfn offset ``o = pfn - start_pfn``):
``blk_order[o]`` order of the free block whose first page is ``o`` (-1 if
none), ``nxt``/``prv`` intrusive free-list links (-1 = none), ``head``/
``tail`` the first/last block offset per free list, ``nr_free`` free blocks
per order. Free lists are identified by a list index ``li`` (= order here;
the mobility model uses order * MIGRATE_TYPES + migratetype with the same
primitives).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from replay.jit import njit
from replay.models.buddy import pageblock_alloc_add
from replay.models.internal import (
    F_KERNEL_FAILED,
    MAX_PAGE_ORDER,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    NR_PAGE_ORDERS,
    OBJ_FLAGS_MASK,
    OUT_FAILED,
    OUT_IGNORED,
    OUT_OK,
    P_COMPACT,
    P_DEFRAG_IDLE,
    P_GROUP,
    P_KSWAPD,
    P_PAGES,
    P_PB0,
    P_PCP,
    P_PCP_TUNE,
    P_POOL_ORDER,
    P_PRESSURE_OOM,
    P_PRESSURE_RECLAIM,
    P_START,
    P_UNITS,
    P_VCOMPOUND,
    P_WLOW,
    P_WMIN,
    PAGEBLOCK_ORDER,
    PAGEBLOCK_PAGES,
    PLACED_FAILED,
    PREFETCH_EVENTS,
    S_ALLOCS,
    S_BELOW_LOW,
    S_BELOW_MIN,
    S_FAILURES,
    S_FREES,
    S_IGNORED,
    S_SERVED_KERNEL_FAILED,
    buddy_merge_likely,
    list_add,
    list_del,
    prefetch_object,
)


@dataclass(frozen=True)
class BuddyConfig:
    """What a user sets for the ``buddy`` model (nothing yet: it has no knobs)."""

    model: str = "buddy"


# -- the allocator ----------------------------------------------------------------
@njit(cache=True, _nrt=False)
def init_zone(start_pfn, pages, blk_order, nxt, prv, head, tail, nr_free):  # type: ignore[no-untyped-def]
    """Boot state: the zone cut into the largest naturally aligned blocks.

    Ascending pfn order, each added at the TAIL of its list (__free_pages_core
    frees with FPI_TO_TAIL), so the lowest pfn is at the head of each list.
    """
    blk_order[:] = -1
    nxt[:] = -1
    prv[:] = -1
    head[:] = -1
    tail[:] = -1
    nr_free[:] = 0
    pfn = np.int64(start_pfn)
    end = np.int64(start_pfn) + np.int64(pages)
    while pfn < end:
        k = MAX_PAGE_ORDER
        while k > 0 and ((pfn & ((np.int64(1) << k) - 1)) != 0 or pfn + (np.int64(1) << k) > end):
            k -= 1
        o = pfn - start_pfn
        list_add(o, k, True, nxt, prv, head, tail)
        blk_order[o] = k
        nr_free[k] += 1
        pfn += np.int64(1) << k


@njit(cache=True, _nrt=False)
def rmqueue_smallest(order, start_pfn, blk_order, nxt, prv, head, tail, nr_free):  # type: ignore[no-untyped-def]
    """__rmqueue_smallest + expand: a block of ``order``; returns its pfn or -1.

    Takes the HEAD block of the first non-empty list at order >= ``order``;
    each split puts the upper half at the HEAD of the lower list.
    """
    for c in range(order, NR_PAGE_ORDERS):
        o = head[c]
        if o < 0:
            continue
        list_del(o, c, nxt, prv, head, tail)
        blk_order[o] = -1
        nr_free[c] -= 1
        while c > order:
            c -= 1
            u = o + (np.int64(1) << c)
            list_add(u, c, False, nxt, prv, head, tail)
            blk_order[u] = c
            nr_free[c] += 1
        return o + start_pfn
    return np.int64(-1)


@njit(cache=True, _nrt=False)
def free_one_page(pfn, order, start_pfn, pages, blk_order, nxt, prv, head, tail, nr_free):  # type: ignore[no-untyped-def]
    """__free_one_page: merge with free buddies of equal order, then add to a list.

    The merged block goes to the TAIL when its parent's buddy is free at the
    next order (buddy_merge_likely: it will probably merge soon), else to the
    HEAD; never to the tail from order MAX_PAGE_ORDER - 1 up. As in the
    kernel's page_is_buddy, the parent's first page must be in the zone too
    (it is not when an unaligned zone starts inside the parent block).
    """
    pfn = np.int64(pfn)
    k = order
    while k < MAX_PAGE_ORDER:
        b = pfn ^ (np.int64(1) << k)
        bo = b - start_pfn
        if bo < 0 or bo >= pages or blk_order[bo] != k:
            break
        list_del(bo, k, nxt, prv, head, tail)
        blk_order[bo] = -1
        nr_free[k] -= 1
        pfn = pfn & b
        k += 1
    o = pfn - start_pfn
    list_add(o, k, buddy_merge_likely(pfn, k, start_pfn, pages, blk_order), nxt, prv, head, tail)
    blk_order[o] = k
    nr_free[k] += 1


class BuddyZone:
    """A zone run by the exact buddy allocator (a thin Python handle on the state).

    ``start_pfn`` and ``pages`` define ``[start_pfn, start_pfn + pages)``.
    """

    def __init__(self, start_pfn: int, pages: int) -> None:
        if pages <= 0 or start_pfn < 0:
            raise ValueError("a zone needs pages > 0 and start_pfn >= 0")
        self.start_pfn = int(start_pfn)
        self.pages = int(pages)
        self.blk_order = np.empty(pages, dtype=np.int8)
        self.nxt = np.empty(pages, dtype=np.int32)
        self.prv = np.empty(pages, dtype=np.int32)
        self.head = np.empty(NR_PAGE_ORDERS, dtype=np.int64)
        self.tail = np.empty(NR_PAGE_ORDERS, dtype=np.int64)
        self.nr_free = np.zeros(NR_PAGE_ORDERS, dtype=np.int64)
        init_zone(self.start_pfn, self.pages, self.blk_order, self.nxt, self.prv,
                  self.head, self.tail, self.nr_free)  # fmt: skip

    def alloc(self, order: int) -> int:
        """Allocate a block of ``order``; its first pfn, or -1 if none is free."""
        return int(rmqueue_smallest(order, self.start_pfn, self.blk_order, self.nxt, self.prv,
                                    self.head, self.tail, self.nr_free))  # fmt: skip

    def free(self, pfn: int, order: int) -> None:
        """Free the block of ``order`` at ``pfn`` (which the caller owns)."""
        free_one_page(pfn, order, self.start_pfn, self.pages, self.blk_order, self.nxt,
                      self.prv, self.head, self.tail, self.nr_free)  # fmt: skip

    def free_lists(self) -> list[list[int]]:
        """Per order, the free blocks' pfns from head to tail."""
        out: list[list[int]] = []
        for k in range(NR_PAGE_ORDERS):
            blocks = []
            o = int(self.head[k])
            while o >= 0:
                blocks.append(o + self.start_pfn)
                o = int(self.nxt[o])
            out.append(blocks)
        return out

    def free_pages(self) -> int:
        """Free pages (sum of nr_free[o] << o)."""
        return int(sum(int(n) << k for k, n in enumerate(self.nr_free)))


# -- the engine's path for the `buddy` model ------------------------------------------
# The `buddy` preset is the mobility kernel (replay.models.events.replay_chunk) with
# grouping off and no other mechanism configured. That kernel keeps bookkeeping no part
# of this model reads per event: per-pageblock free pages and per-type free-list counts
# (its free lists are all MOVABLE, so nr_free_mt[k, MOVABLE] = nr_free[k]), pool, pcp,
# compaction and pressure checks, the 11-order sum of free pages per allocation. The
# path below does the same placements on the same Zone arrays without them; resync()
# rebuilds the two skipped counters before anything else reads the zone.
def plain_eligible(prm: np.ndarray) -> bool:
    """Whether a zone's settings ``prm`` (P_*) configure nothing but the plain buddy."""
    return all(int(prm[p]) == 0 for p in (
        P_GROUP, P_PCP, P_COMPACT, P_KSWAPD, P_VCOMPOUND, P_PRESSURE_RECLAIM, P_PRESSURE_OOM,
        P_DEFRAG_IDLE, P_POOL_ORDER, P_UNITS, P_PCP_TUNE))  # fmt: skip


@njit(cache=True, inline="always", _nrt=False)
def _watermark_ok(k, mark, free, nr_free):  # type: ignore[no-untyped-def]
    """``__zone_watermark_ok`` (alloc_flags 0, replay.models.watermarks) when every free
    block is on a MOVABLE list: some list of order >= k non-empty iff some nr_free[o] > 0."""
    if free - ((np.int64(1) << k) - 1) <= mark:
        return False
    if k == 0:
        return True
    for o in range(k, NR_PAGE_ORDERS):
        if nr_free[o] > 0:
            return True
    return False


@njit(cache=True, inline="always", _nrt=False)
def _add_movable(o, k, to_tail, z):  # type: ignore[no-untyped-def]
    list_add(o, k * MIGRATE_PCPTYPES + MIGRATE_MOVABLE, to_tail, z.list_next, z.list_prev,
             z.free_head, z.free_tail)  # fmt: skip
    z.buddy_order[o] = k
    z.nr_free[k] += 1


@njit(cache=True, inline="always", _nrt=False)
def _del_movable(o, k, z):  # type: ignore[no-untyped-def]
    list_del(o, k * MIGRATE_PCPTYPES + MIGRATE_MOVABLE, z.list_next, z.list_prev, z.free_head,
             z.free_tail)  # fmt: skip
    z.buddy_order[o] = -1
    z.nr_free[k] -= 1


@njit(cache=True, inline="always", _nrt=False)
def _plain_free(pfn, k, mt, z, prm):  # type: ignore[no-untyped-def]
    """``__free_pages`` of the plain buddy: split_large_buddy's pageblock-sized pieces,
    each merged by __free_one_page (as replay.models.buddy.free_to_buddy with every
    pageblock MOVABLE), the pages accounted off the request type ``mt``."""
    start = prm[P_START]
    pages = prm[P_PAGES]
    if mt < 0 or mt >= MIGRATE_PCPTYPES:
        mt = MIGRATE_MOVABLE
    pageblock_alloc_add(pfn, k, mt, -1, z.pageblock_alloc, prm[P_PB0])
    piece = k if k <= PAGEBLOCK_ORDER else PAGEBLOCK_ORDER
    end = pfn + (np.int64(1) << k)
    p = np.int64(pfn)
    while p < end:
        q = p
        j = piece
        while j < MAX_PAGE_ORDER:
            b = q ^ (np.int64(1) << j)
            bo = b - start
            if bo < 0 or bo >= pages or z.buddy_order[bo] != j:
                break
            _del_movable(bo, j, z)
            q = q & b
            j += 1
        _add_movable(q - start, j, buddy_merge_likely(q, j, start, pages, z.buddy_order), z)
        p += np.int64(1) << piece


@njit(cache=True, nogil=True, _nrt=False)
def replay_chunk_plain(i0, i1, ev, keep_row, keep_counters, ob, z, prm, stats, r0, out):  # type: ignore[no-untyped-def]
    """``replay_chunk`` (replay.models.events) for a zone that is only the plain buddy
    (:func:`plain_eligible`): the same pfns, outcomes, statistics and output rows, over
    events ``i0 .. i1-1``; returns (i1, next output row). ``z.pageblock_free`` and
    ``z.nr_free_mt`` are left stale: call :func:`resync` before reading them.
    """
    # ev = (seq, is_alloc, obj, offset, order, migratetype, cpu, ts_ns, flags, owner)
    is_alloc, obj, offset, order, mtype, flags = ev[1], ev[2], ev[3], ev[4], ev[5], ev[8]
    out_pfn, out_outcome, out_nr, out_has, out_fail, out_pcp, out_fb = out[:7]
    start = prm[P_START]
    pb0 = prm[P_PB0]
    wlow = prm[P_WLOW]
    wmin = prm[P_WMIN]
    free = np.int64(0)  # free pages, kept as a running sum
    for j in range(NR_PAGE_ORDERS):
        free += z.nr_free[j] << j
    r = r0
    for i in range(i0, i1):
        if i + PREFETCH_EVENTS < i1:
            prefetch_object(obj[i + PREFETCH_EVENTS], ob)
        e = np.uintp(i)  # the event as an unsigned index: no negative-index wraparound code
        x = obj[e]
        k = np.int64(order[e])
        pfn = np.int64(-1)
        outcome = OUT_OK
        if is_alloc[e]:
            stats[S_ALLOCS] += 1
            if not _watermark_ok(k, wlow, free, z.nr_free):
                stats[S_BELOW_LOW] += 1
                if not _watermark_ok(k, wmin, free, z.nr_free):
                    stats[S_BELOW_MIN] += 1
            m = np.int64(mtype[e])
            fl = flags[e]
            # __rmqueue_smallest + expand on the MOVABLE lists
            for c in range(k, NR_PAGE_ORDERS):
                o = z.free_head[c * MIGRATE_PCPTYPES + MIGRATE_MOVABLE]
                if o < 0:
                    continue
                _del_movable(o, c, z)
                while c > k:
                    c -= 1
                    _add_movable(o + (np.int64(1) << c), c, False, z)
                pfn = o + start
                break
            ob.placed[x] = pfn
            ob.obj_mt[x] = m
            ob.obj_order[x] = k
            ob.obj_flags[x] = fl & OBJ_FLAGS_MASK
            if pfn < 0:
                outcome = OUT_FAILED
                stats[S_FAILURES] += 1
            else:
                free -= np.int64(1) << k
                mt = m if 0 <= m < MIGRATE_PCPTYPES else MIGRATE_MOVABLE
                pageblock_alloc_add(pfn, k, mt, 1, z.pageblock_alloc, pb0)
                if (fl & F_KERNEL_FAILED) != 0:
                    # served what the recorded kernel failed: straight back (events.give_back)
                    stats[S_SERVED_KERNEL_FAILED] += 1
                    _plain_free(pfn, k, m, z, prm)
                    free += np.int64(1) << k
                    ob.placed[x] = PLACED_FAILED
        else:
            stats[S_FREES] += 1
            base = ob.placed[x]
            if base == PLACED_FAILED:
                outcome = OUT_IGNORED
                stats[S_IGNORED] += 1
            else:
                _plain_free(base + offset[e], k, np.int64(ob.obj_mt[x]), z, prm)
                free += np.int64(1) << k
        if keep_row[e]:
            ur = np.uintp(r)  # unsigned: no negative-index wraparound code on each store
            out_pfn[ur] = pfn
            out_outcome[ur] = outcome
            out_fail[ur] = stats[S_FAILURES]
            out_has[ur] = keep_counters[e]
            out_pcp[ur] = 0
            out_fb[ur] = 0
            if keep_counters[e]:
                for j in range(NR_PAGE_ORDERS):
                    out_nr[ur, j] = z.nr_free[j]
            r += 1
    return i1, r


# eight int8 buddy_order entries of -1 (no free block starts at any of them), as one word
_NO_BLOCK_X8 = np.uint64(0xFFFFFFFFFFFFFFFF)


@njit(cache=True, _nrt=False)
def resync(z, prm):  # type: ignore[no-untyped-def]
    """Rebuild what :func:`replay_chunk_plain` leaves stale: ``pageblock_free`` (pages,
    from the free blocks in ``buddy_order``) and ``nr_free_mt`` (every free block is on a
    MOVABLE list). The scan of ``buddy_order`` jumps over each free block and over eight
    pages at a time where no block starts (allocated memory): the engine calls this
    after every kernel call of 64K events."""
    z.pageblock_free[:] = 0
    z.nr_free_mt[:] = 0
    for k in range(NR_PAGE_ORDERS):
        z.nr_free_mt[k * MIGRATE_PCPTYPES + MIGRATE_MOVABLE] = z.nr_free[k]
    start = prm[P_START]
    pb0 = prm[P_PB0]
    pages = prm[P_PAGES]
    bo = z.buddy_order
    words = bo[: pages - pages % 8].view(np.uint64)  # buddy_order[8w .. 8w+7] as word w
    o = np.int64(0)
    while o < pages:
        if (o & 7) == 0 and o + 8 <= pages and words[o >> 3] == _NO_BLOCK_X8:
            o += 8
            continue
        k = bo[o]
        if k < 0:
            o += 1
            continue
        pfn = o + start
        if k >= PAGEBLOCK_ORDER:
            first = (pfn >> PAGEBLOCK_ORDER) - pb0
            for j in range(np.int64(1) << (k - PAGEBLOCK_ORDER)):
                z.pageblock_free[first + j] += PAGEBLOCK_PAGES
        else:
            z.pageblock_free[(pfn >> PAGEBLOCK_ORDER) - pb0] += np.int64(1) << k
        o += np.int64(1) << k
