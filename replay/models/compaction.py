"""``compaction``: the migration and free scanners of mm/compaction.c (Linux 6.18).

The exact semantics are in docs/compaction.md (the contract this kernel and
tests/ref_compaction.py both implement): ``compact_zone`` with linear
scanners, ``__compact_finished``, ``compaction_suitable``, deferral
(``compaction_deferred``/``defer_compaction``/``compaction_defer_reset``),
direct compaction after a failed allocation, proactive compaction on the
fragmentation score (kcompactd) and one-shot whole-zone compaction
(``compact_memory``).

State, beyond the mobility zone's (replay.models.mobility):

- ``st[13]`` ``pg_obj`` (int32 per page): the object whose unit starts at
  that offset, else -1; ``st[14]``/``st[15]`` the heads/tails of the eleven
  isolated free lists (``cc->freepages[order]``, linked through nxt/prv like
  the free lists).
- ``ob`` = (placed, obj_mt, obj_order, obj_flags): per object its pfn (-1
  failed, -2 evicted), request migratetype, order and F_* flags.
- ``cz`` (int64): the zone's compaction state (CZ_*), the scratch of the
  running ``compact_control`` (CC_*) and the isolated units (from CC_UNITS).
- ``me``: model events, rows of ME_COLS, ``counters[C_ME]`` rows used.

Units: pfn (absolute page frame numbers), offsets ``o = pfn - start_pfn``,
pages (4 KiB), orders (blocks of ``1 << order`` pages), ns (trace time).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from replay.models import mobility as M
from replay.models.buddy import NR_PAGE_ORDERS, PAGEBLOCK_ORDER, list_add, list_del
from replay.models.watermarks import zone_watermark_ok

PAGEBLOCK_PAGES = 1 << PAGEBLOCK_ORDER
COMPACT_CLUSTER_MAX = 32
COMPACT_MAX_DEFER_SHIFT = 6
PAGE_ALLOC_COSTLY_ORDER = 3
HPAGE_FRAG_CHECK_INTERVAL_NS = 500_000_000

# object flags
F_MOVABLE = 1  # compaction may migrate the object's unit
F_PINNED = 2  # partly freed: no longer a unit, never moves
F_RECLAIM = 4  # kswapd may evict it
F_EVICTED = 8  # evicted by kswapd: later frees are no-ops
F_VCOMPOUND = 16  # may fall back to order-0 pages (virtual compound)
# The request cannot enter direct reclaim (no __GFP_DIRECT_RECLAIM: GFP_ATOMIC, GFP_NOWAIT,
# GFP_TRANSHUGE_LIGHT): its failure neither drains the pcp lists nor compacts (the kernel's
# slow path runs both only when can_direct_reclaim). Flag bit 32 is pools.F_POOLED.
F_NORECLAIM = 64
PLACED_FAILED = -1
PLACED_EVICTED = -2

# compaction switches (prm[M.P_COMPACT] bits)
COMPACT_DIRECT = 1
COMPACT_PROACTIVE = 2

# compact_result values (and their names, in model_events.result)
SUCCESS, COMPLETE, PARTIAL_SKIPPED, SKIPPED, DEFERRED, CONTINUE = range(6)
RESULTS = ("SUCCESS", "COMPLETE", "PARTIAL_SKIPPED", "SKIPPED", "DEFERRED", "CONTINUE")
MODE_ASYNC = 0
MODE_SYNC = 1
MODES = ("async", "sync")

# model event kinds (model_events.kind); the kswapd/vcompound kinds live in replay.models.reclaim
K_COMPACT_DIRECT, K_COMPACT_PROACTIVE, K_COMPACT_ONESHOT = 0, 1, 2
K_KSWAPD, K_VCOMPOUND, K_PRESSURE = 3, 4, 5
K_DEFRAG, K_EXCHANGE, K_CONTIG = 6, 7, 8  # replay.models.defrag
KINDS = ("compact_direct", "compact_proactive", "compact_oneshot", "kswapd", "vcompound",
         "pressure", "defrag", "exchange", "contig")  # fmt: skip

# model event columns
ME_COLS = ("seq", "kind", "order", "mode", "start_pfn", "end_pfn", "migrate_pfn", "free_pfn",
           "scanned_migrate", "scanned_free", "moved", "failed", "evicted", "result",
           "free_pages", "exchanged")  # fmt: skip
ME_MAX_PER_EVENT = 8  # direct compaction (2), kswapd (1), vcompound (1), pressure (2), spare

# cz: the zone's state
CZ_MIG0, CZ_MIG1, CZ_FREE, CZ_CONSIDERED, CZ_SHIFT, CZ_ORDER_FAILED = range(6)
CZ_PDEFER, CZ_NEXT_CHECK, CZ_TS0_SET = 6, 7, 8
# cz: the running compact_control
CC_ORDER, CC_MODE, CC_WHOLE, CC_PROACTIVE, CC_MT = 16, 17, 18, 19, 20
CC_MIGRATE_PFN, CC_FREE_PFN, CC_NR_MIGRATE, CC_NR_FREE = 21, 22, 23, 24
CC_SCAN_M, CC_SCAN_F, CC_MOVED, CC_FAILED, CC_NUNITS = 25, 26, 27, 28, 29
CC_UNITS = 32  # isolated units' offsets (COMPACT_CLUSTER_MAX at most)
NR_CZ = CC_UNITS + COMPACT_CLUSTER_MAX


def new_cz(start_pfn: int, pages: int) -> np.ndarray:
    """A zone's compaction state as ``reset_cached_positions`` and a zeroed zone leave it."""
    cz = np.zeros(NR_CZ, np.int64)
    cz[CZ_MIG0] = cz[CZ_MIG1] = start_pfn
    cz[CZ_FREE] = (start_pfn + pages - 1) & ~(PAGEBLOCK_PAGES - 1)
    return cz


@nb.njit(cache=True, inline="always", _nrt=False)
def pageblock_start_pfn(pfn):  # type: ignore[no-untyped-def]
    """``pageblock_start_pfn``: the first pfn of pfn's pageblock."""
    return pfn & ~np.int64(PAGEBLOCK_PAGES - 1)


@nb.njit(cache=True, inline="always", _nrt=False)
def pageblock_end_pfn(pfn):  # type: ignore[no-untyped-def]
    """``pageblock_end_pfn``: the first pfn after pfn's pageblock."""
    return pageblock_start_pfn(pfn) + PAGEBLOCK_PAGES


# -- metrics (mm/vmstat.c integer arithmetic) -----------------------------------------
@nb.njit(cache=True, inline="always", _nrt=False)
def zone_free_pages(nr_free):  # type: ignore[no-untyped-def]
    """NR_FREE_PAGES (pages) from nr_free per order."""
    free = np.int64(0)
    for j in range(NR_PAGE_ORDERS):
        free += nr_free[j] << j
    return free


@nb.njit(cache=True, _nrt=False)
def extfrag_for_order(k, nr_free):  # type: ignore[no-untyped-def]
    """``extfrag_for_order``: percent of free pages in blocks below order k."""
    free = np.int64(0)
    suitable = np.int64(0)
    for j in range(NR_PAGE_ORDERS):
        free += nr_free[j] << j
        if j >= k:
            suitable += nr_free[j] << (j - k)
    if free == 0:
        return np.int64(0)
    return (free - (suitable << k)) * 100 // free


@nb.njit(cache=True, _nrt=False)
def fragmentation_index(k, nr_free):  # type: ignore[no-untyped-def]
    """``__fragmentation_index`` in thousandths (can be negative, as the kernel's)."""
    free = np.int64(0)
    blocks = np.int64(0)
    suitable = np.int64(0)
    for j in range(NR_PAGE_ORDERS):
        free += nr_free[j] << j
        blocks += nr_free[j]
        if j >= k:
            suitable += nr_free[j] << (j - k)
    if blocks == 0:
        return np.int64(0)
    if suitable > 0:
        return np.int64(-1000)
    return 1000 - (1000 + free * 1000 // (np.int64(1) << k)) // blocks


@nb.njit(cache=True, _nrt=False)
def fragmentation_score(nr_free, pages):  # type: ignore[no-untyped-def]
    """``fragmentation_score_node`` of a node with this one zone (present = managed pages)."""
    return extfrag_for_order(PAGEBLOCK_ORDER, nr_free) * pages // (pages + 1)


@nb.njit(cache=True, inline="always", _nrt=False)
def score_wmark(low, proactiveness):  # type: ignore[no-untyped-def]
    """``fragmentation_score_wmark``."""
    wlow = max(100 - proactiveness, np.int64(5))
    return wlow if low else min(wlow + 10, np.int64(100))


# -- deferral ----------------------------------------------------------------------------
@nb.njit(cache=True, _nrt=False)
def compaction_deferred(k, cz):  # type: ignore[no-untyped-def]
    """``compaction_deferred``: true when this attempt should be skipped."""
    if k < cz[CZ_ORDER_FAILED]:
        return False
    limit = np.int64(1) << cz[CZ_SHIFT]
    cz[CZ_CONSIDERED] += 1
    if cz[CZ_CONSIDERED] >= limit:
        cz[CZ_CONSIDERED] = limit
        return False
    return True


@nb.njit(cache=True, _nrt=False)
def defer_compaction(k, cz):  # type: ignore[no-untyped-def]
    """``defer_compaction``."""
    cz[CZ_CONSIDERED] = 0
    cz[CZ_SHIFT] += 1
    if k < cz[CZ_ORDER_FAILED]:
        cz[CZ_ORDER_FAILED] = k
    if cz[CZ_SHIFT] > COMPACT_MAX_DEFER_SHIFT:
        cz[CZ_SHIFT] = COMPACT_MAX_DEFER_SHIFT


@nb.njit(cache=True, _nrt=False)
def compaction_defer_reset(k, success, cz):  # type: ignore[no-untyped-def]
    """``compaction_defer_reset``."""
    if success:
        cz[CZ_CONSIDERED] = 0
        cz[CZ_SHIFT] = 0
    if k >= cz[CZ_ORDER_FAILED]:
        cz[CZ_ORDER_FAILED] = k + 1


# -- model events ------------------------------------------------------------------------
@nb.njit(cache=True, _nrt=False)
def emit(st, me, counters, seq, kind, order, mode, a, b, c, d, sm, sf, moved, failed, evicted,
         result):  # type: ignore[no-untyped-def]  # fmt: skip
    """One model_events row (dropped, but counted, when the buffer is full)."""
    n = counters[M.C_ME]
    if n < me.shape[0]:
        me[n, 0] = seq
        me[n, 1] = kind
        me[n, 2] = order
        me[n, 3] = mode
        me[n, 4] = a
        me[n, 5] = b
        me[n, 6] = c
        me[n, 7] = d
        me[n, 8] = sm
        me[n, 9] = sf
        me[n, 10] = moved
        me[n, 11] = failed
        me[n, 12] = evicted
        me[n, 13] = result
        me[n, 14] = zone_free_pages(st[5])
        me[n, 15] = 0
    counters[M.C_ME] = n + 1


# -- units ---------------------------------------------------------------------------------
@nb.njit(cache=True, inline="always", _nrt=False)
def migratable(x, t, ob):  # type: ignore[no-untyped-def]
    """A movable unit that ``skip_isolation_on_order`` does not skip for target order t."""
    if (ob[3][x] & F_MOVABLE) == 0:
        return False
    j = np.int64(ob[2][x])
    if j >= PAGEBLOCK_ORDER:
        return False
    return t == -1 or j < t


@nb.njit(cache=True, inline="always", _nrt=False)
def step_over(o, st, ob):  # type: ignore[no-untyped-def]
    """Pages a scanner steps over at offset o: a free block, a unit, or one other page."""
    b = st[0][o]
    if b >= 0:
        return np.int64(1) << b
    x = st[13][o]
    if x >= 0:
        return np.int64(1) << ob[2][x]
    return np.int64(1)


# -- the free scanner ------------------------------------------------------------------
@nb.njit(cache=True, _nrt=False)
def isolate_freepages(st, prm, ob, cz):  # type: ignore[no-untyped-def]
    """``isolate_freepages``, linear: free blocks from MOVABLE pageblocks, top down."""
    blk_order, nxt, prv, pb_mt = st[0], st[1], st[2], st[7]
    iso_head, iso_tail = st[14], st[15]
    start = prm[M.P_START]
    end = start + prm[M.P_PAGES]
    pb0 = prm[M.P_PB0]
    t = cz[CC_ORDER]
    isolate_start = cz[CC_FREE_PFN]
    block_start = pageblock_start_pfn(isolate_start)
    block_end = min(block_start + PAGEBLOCK_PAGES, end)
    low = pageblock_end_pfn(cz[CC_MIGRATE_PFN])
    min_free = t if t > 0 else np.int64(PAGEBLOCK_ORDER)
    while block_start >= low:
        ok = block_start >= start
        if ok:
            b = blk_order[block_start - start]
            if b >= 0 and b >= min_free:
                ok = False
            elif prm[M.P_GROUP] != 0 and pb_mt[(block_start >> PAGEBLOCK_ORDER) - pb0] != (
                M.MIGRATE_MOVABLE
            ):
                ok = False
        if ok:
            p = isolate_start
            while p < block_end:
                o = p - start
                b = blk_order[o]
                if b >= 0:
                    mt = pb_mt[(p >> PAGEBLOCK_ORDER) - pb0]
                    if prm[M.P_GROUP] == 0:
                        mt = M.MIGRATE_MOVABLE
                    M.del_free(o, np.int64(b), mt, st, prm)
                    list_add(o, b, True, nxt, prv, iso_head, iso_tail)
                    cz[CC_NR_FREE] += np.int64(1) << b
                    cz[CC_SCAN_F] += np.int64(1) << b
                    p += np.int64(1) << b
                    if cz[CC_NR_MIGRATE] <= cz[CC_NR_FREE]:
                        break
                else:
                    n = step_over(o, st, ob)
                    cz[CC_SCAN_F] += n
                    p += n
            isolate_start = min(p, block_end)
            if cz[CC_NR_FREE] >= cz[CC_NR_MIGRATE]:
                if isolate_start >= block_end:
                    isolate_start = block_start - PAGEBLOCK_PAGES
                break
        block_end = block_start
        block_start -= PAGEBLOCK_PAGES
        isolate_start = block_start
    cz[CC_FREE_PFN] = isolate_start


@nb.njit(cache=True, _nrt=False)
def compaction_alloc(j, st, prm, ob, cz):  # type: ignore[no-untyped-def]
    """``compaction_alloc``: an isolated free block of order j (split), offset or -1."""
    nxt, prv = st[1], st[2]
    iso_head, iso_tail = st[14], st[15]
    isolated = False
    while True:
        c = j
        while c < NR_PAGE_ORDERS and iso_head[c] < 0:
            c += 1
        if c < NR_PAGE_ORDERS:
            break
        if isolated:
            return np.int64(-1)
        isolate_freepages(st, prm, ob, cz)
        isolated = True
    o = iso_head[c]
    list_del(o, c, nxt, prv, iso_head, iso_tail)
    while c > j:
        c -= 1
        list_add(o + (np.int64(1) << c), c, False, nxt, prv, iso_head, iso_tail)
    cz[CC_NR_FREE] -= np.int64(1) << j
    return o


# -- the migration scanner -----------------------------------------------------------------
@nb.njit(cache=True, inline="always", _nrt=False)
def suitable_migration_source(pb, st, prm, cz):  # type: ignore[no-untyped-def]
    """``suitable_migration_source`` (only ASYNC compaction, run by direct compaction, filters)."""
    if cz[CC_MODE] != MODE_ASYNC or prm[M.P_GROUP] == 0:
        return True
    bt = st[7][pb]
    if cz[CC_MT] == M.MIGRATE_MOVABLE:
        return bt == M.MIGRATE_MOVABLE
    return bt == cz[CC_MT]


@nb.njit(cache=True, _nrt=False)
def isolate_migratepages(st, prm, ob, cz):  # type: ignore[no-untyped-def]
    """``isolate_migratepages``, linear: up to 32 pages of units from one pageblock."""
    start = prm[M.P_START]
    pb0 = prm[M.P_PB0]
    t = cz[CC_ORDER]
    low = cz[CC_MIGRATE_PFN]
    block_end = pageblock_end_pfn(low)
    while block_end <= cz[CC_FREE_PFN]:
        if not suitable_migration_source((low >> PAGEBLOCK_ORDER) - pb0, st, prm, cz):
            low = block_end
            cz[CC_MIGRATE_PFN] = low
            block_end += PAGEBLOCK_PAGES
            continue
        p = low
        while p < block_end:
            o = p - start
            x = st[13][o]
            if st[0][o] < 0 and x >= 0:
                n = np.int64(1) << ob[2][x]
                cz[CC_SCAN_M] += n
                p += n
                if migratable(x, t, ob):
                    cz[CC_UNITS + cz[CC_NUNITS]] = o
                    cz[CC_NUNITS] += 1
                    cz[CC_NR_MIGRATE] += n
                    if cz[CC_NR_MIGRATE] >= COMPACT_CLUSTER_MAX:
                        break
            else:
                n = step_over(o, st, ob)
                cz[CC_SCAN_M] += n
                p += n
        cz[CC_MIGRATE_PFN] = p
        return


@nb.njit(cache=True, inline="always", _nrt=False)
def move_unit(x, src, dst, st, prm, ob):  # type: ignore[no-untyped-def]
    """Object x's unit leaves pfn src for pfn dst: per-pageblock counts, pg_obj, placed
    (docs/defrag.md "moving a unit"; compaction's migrations and the defrag models')."""
    start = prm[M.P_START]
    j = np.int64(ob[2][x])
    mt = np.int64(ob[1][x])
    M._pb_alloc_add(src, j, mt, -1, st[9], prm[M.P_PB0])
    M._pb_alloc_add(dst, j, mt, 1, st[9], prm[M.P_PB0])
    if st[13][src - start] == x:
        st[13][src - start] = -1
    st[13][dst - start] = x
    ob[0][x] = dst


@nb.njit(cache=True, _nrt=False)
def migrate_pages(st, prm, ob, cz, counters):  # type: ignore[no-untyped-def]
    """``migrate_pages``: each isolated unit to a target from ``compaction_alloc``."""
    start = prm[M.P_START]
    obj_order = ob[2]
    n = cz[CC_NUNITS]
    for i in range(n):
        src = cz[CC_UNITS + i]
        x = st[13][src]
        j = np.int64(obj_order[x])
        dst = compaction_alloc(j, st, prm, ob, cz)
        if dst < 0:
            for r in range(i, n):
                cz[CC_FAILED] += np.int64(1) << obj_order[st[13][cz[CC_UNITS + r]]]
            break
        cz[CC_NR_MIGRATE] -= np.int64(1) << j  # compaction_alloc: one unit less to place
        move_unit(x, src + start, dst + start, st, prm, ob)
        M.free_to_buddy(src + start, j, st, prm)
        cz[CC_MOVED] += np.int64(1) << j
        counters[M.C_MIGRATED] += np.int64(1) << j
    cz[CC_NUNITS] = 0
    cz[CC_NR_MIGRATE] = 0


# -- compact_zone ----------------------------------------------------------------------------
@nb.njit(cache=True, _nrt=False)
def compaction_suitable(t, st, prm):  # type: ignore[no-untyped-def]
    """``compaction_suitable``: order-0 watermark plus compact_gap, then the fragindex test."""
    nr_free = st[5]
    mark = (prm[M.P_WLOW] if t > PAGE_ALLOC_COSTLY_ORDER else prm[M.P_WMIN]) + (np.int64(2) << t)
    free = zone_free_pages(nr_free)
    if not zone_watermark_ok(0, mark, free, st[6].reshape((NR_PAGE_ORDERS, 3)), 0):
        return False
    if t > PAGE_ALLOC_COSTLY_ORDER:
        fi = fragmentation_index(t, nr_free)
        if fi >= 0 and fi <= prm[M.P_EXTFRAG]:
            return False
    return True


@nb.njit(cache=True, _nrt=False)
def reset_cached_positions(prm, cz):  # type: ignore[no-untyped-def]
    start = prm[M.P_START]
    cz[CZ_MIG0] = start
    cz[CZ_MIG1] = start
    cz[CZ_FREE] = pageblock_start_pfn(start + prm[M.P_PAGES] - 1)


@nb.njit(cache=True, _nrt=False)
def compact_finished(st, prm, cz):  # type: ignore[no-untyped-def]
    """``__compact_finished`` (+ ``compact_finished``'s NO_SUITABLE_PAGE -> CONTINUE)."""
    if (cz[CC_FREE_PFN] >> PAGEBLOCK_ORDER) <= (cz[CC_MIGRATE_PFN] >> PAGEBLOCK_ORDER):
        reset_cached_positions(prm, cz)
        return COMPLETE if cz[CC_WHOLE] != 0 else PARTIAL_SKIPPED
    nr_free = st[5]
    if cz[CC_PROACTIVE] != 0:
        if extfrag_for_order(PAGEBLOCK_ORDER, nr_free) > score_wmark(True, prm[M.P_PROACTIVE]):
            return CONTINUE
        return SUCCESS
    t = cz[CC_ORDER]
    if t == -1:
        return CONTINUE
    if (cz[CC_MIGRATE_PFN] & (PAGEBLOCK_PAGES - 1)) != 0:
        return CONTINUE
    mt = cz[CC_MT]
    head = st[3]
    for o in range(t, NR_PAGE_ORDERS):
        if head[o * 3 + mt] >= 0:
            return SUCCESS
        if prm[M.P_GROUP] != 0 and M.should_try_claim_block(o, mt):
            if M.find_suitable_fallback(o, mt, head) >= 0:
                return SUCCESS
    return CONTINUE


@nb.njit(cache=True, _nrt=False)
def release_freepages(st, prm, cz):  # type: ignore[no-untyped-def]
    """``release_free_list``: isolated free blocks back to the buddy, orders 0..10, head first."""
    nxt, prv = st[1], st[2]
    iso_head, iso_tail = st[14], st[15]
    start = prm[M.P_START]
    for c in range(NR_PAGE_ORDERS):
        while iso_head[c] >= 0:
            o = iso_head[c]
            list_del(o, c, nxt, prv, iso_head, iso_tail)
            M.free_to_buddy(o + start, np.int64(c), st, prm)
    cz[CC_NR_FREE] = 0


@nb.njit(cache=True, _nrt=False)
def compact_zone(t, mode, whole, proactive, mt, kind, seq, st, prm, ob, cz, counters, me):  # type: ignore[no-untyped-def]
    """``compact_zone``; returns the compact_result and records one model event."""
    start = prm[M.P_START]
    end = start + prm[M.P_PAGES]
    if t != -1:
        free = zone_free_pages(st[5])
        if zone_watermark_ok(t, prm[M.P_WMIN], free, st[6].reshape((NR_PAGE_ORDERS, 3)), 0):
            emit(st, me, counters, seq, kind, t, mode, -1, -1, -1, -1, 0, 0, 0, 0, 0, SUCCESS)
            return SUCCESS
        if not compaction_suitable(t, st, prm):
            emit(st, me, counters, seq, kind, t, mode, -1, -1, -1, -1, 0, 0, 0, 0, 0, SKIPPED)
            return SKIPPED
    if whole:
        mig = start
        fr = pageblock_start_pfn(end - 1)
    else:
        mig = cz[CZ_MIG1] if mode == MODE_SYNC else cz[CZ_MIG0]
        fr = cz[CZ_FREE]
        if fr < start or fr >= end:
            fr = pageblock_start_pfn(end - 1)
            cz[CZ_FREE] = fr
        if mig < start or mig >= end:
            mig = start
            cz[CZ_MIG0] = mig
            cz[CZ_MIG1] = mig
        whole = mig == start
    cz[CC_ORDER] = t
    cz[CC_MODE] = mode
    cz[CC_WHOLE] = 1 if whole else 0
    cz[CC_PROACTIVE] = 1 if proactive else 0
    cz[CC_MT] = mt
    cz[CC_MIGRATE_PFN] = mig
    cz[CC_FREE_PFN] = fr
    for f in range(CC_NR_MIGRATE, CC_NUNITS + 1):
        cz[f] = 0
    while True:
        r = compact_finished(st, prm, cz)
        if r != CONTINUE:
            break
        isolate_migratepages(st, prm, ob, cz)
        if cz[CC_NUNITS] > 0:
            migrate_pages(st, prm, ob, cz, counters)
    release_freepages(st, prm, cz)
    if r != COMPLETE and r != PARTIAL_SKIPPED:
        if cz[CC_MIGRATE_PFN] > cz[CZ_MIG0]:
            cz[CZ_MIG0] = cz[CC_MIGRATE_PFN]
        if mode == MODE_SYNC and cz[CC_MIGRATE_PFN] > cz[CZ_MIG1]:
            cz[CZ_MIG1] = cz[CC_MIGRATE_PFN]
        if cz[CC_FREE_PFN] < cz[CZ_FREE]:
            cz[CZ_FREE] = cz[CC_FREE_PFN]
    counters[M.C_SCANNED] += cz[CC_SCAN_M] + cz[CC_SCAN_F]
    emit(st, me, counters, seq, kind, t, mode, mig, fr, cz[CC_MIGRATE_PFN], cz[CC_FREE_PFN],
         cz[CC_SCAN_M], cz[CC_SCAN_F], cz[CC_MOVED], cz[CC_FAILED], 0, r)  # fmt: skip
    return r


# -- the three ways compaction runs --------------------------------------------------------
@nb.njit(cache=True, _nrt=False)
def direct_compact(k, mt, lmt, cpu, seq, st, prm, ob, cz, counters, ef, me, mode):  # type: ignore[no-untyped-def]
    """``__alloc_pages_direct_compact`` for a failed order-k allocation: ASYNC, then SYNC.

    Returns the allocated pfn or -1; ``mt`` is the request's type (for the
    allocated-page accounting), ``lmt`` its free-list type.
    """
    for prio in range(2):
        if compaction_deferred(k, cz):
            emit(st, me, counters, seq, K_COMPACT_DIRECT, k, prio, -1, -1, -1, -1, 0, 0, 0, 0, 0,
                 DEFERRED)  # fmt: skip
        else:
            r = compact_zone(k, prio, False, False, lmt, K_COMPACT_DIRECT, seq, st, prm, ob, cz,
                             counters, me)  # fmt: skip
            if r == SUCCESS:
                compaction_defer_reset(k, False, cz)
            elif prio == MODE_SYNC and (r == COMPLETE or r == PARTIAL_SKIPPED):
                defer_compaction(k, cz)
        o = M.get_page_from_freelist(k, lmt, cpu, st, prm, counters, ef, seq, mode)
        if o >= 0:
            compaction_defer_reset(k, True, cz)
            pfn = o + prm[M.P_START]
            M._pb_alloc_add(pfn, k, mt, 1, st[9], prm[M.P_PB0])
            return pfn
    return np.int64(-1)


@nb.njit(cache=True, _nrt=False)
def proactive_tick(ts, seq, st, prm, ob, cz, counters, me):  # type: ignore[no-untyped-def]
    """kcompactd's checks due at or before trace time ``ts`` (ns); False if ``me`` filled up."""
    if cz[CZ_TS0_SET] == 0:
        cz[CZ_TS0_SET] = 1
        cz[CZ_NEXT_CHECK] = ts + HPAGE_FRAG_CHECK_INTERVAL_NS
        return True
    interval = np.int64(HPAGE_FRAG_CHECK_INTERVAL_NS)
    pages = prm[M.P_PAGES]
    while cz[CZ_NEXT_CHECK] <= ts:
        due = (ts - cz[CZ_NEXT_CHECK]) // interval + 1  # checks due in this gap
        if cz[CZ_PDEFER] > 0:
            d = min(cz[CZ_PDEFER], due)
            cz[CZ_PDEFER] -= d
            cz[CZ_NEXT_CHECK] += d * interval
            continue
        prev = fragmentation_score(st[5], pages)
        if prev <= score_wmark(False, prm[M.P_PROACTIVE]):
            # nothing changes until the next event: the other checks of this gap are no-ops
            cz[CZ_NEXT_CHECK] += due * interval
            break
        if counters[M.C_ME] + 1 > me.shape[0]:
            return False
        compact_zone(-1, MODE_SYNC, True, True, M.MIGRATE_MOVABLE, K_COMPACT_PROACTIVE, seq, st,
                     prm, ob, cz, counters, me)  # fmt: skip
        score = fragmentation_score(st[5], pages)
        cz[CZ_PDEFER] = 0 if score < prev else np.int64(1) << COMPACT_MAX_DEFER_SHIFT
        cz[CZ_NEXT_CHECK] += interval
    return True


@nb.njit(cache=True, _nrt=False)
def compact_memory(seq, st, prm, ob, cz, counters, me):  # type: ignore[no-untyped-def]
    """``compact_memory`` (/proc/sys/vm/compact_memory): one whole-zone SYNC compaction."""
    return compact_zone(-1, MODE_SYNC, True, False, M.MIGRATE_MOVABLE, K_COMPACT_ONESHOT, seq, st,
                        prm, ob, cz, counters, me)  # fmt: skip
