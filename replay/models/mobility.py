"""``mobility`` and ``pcp``: grouping pages by mobility (Linux 6.10+) with per-CPU lists.

The exact semantics are in docs/mobility.md (the contract this kernel and
tests/ref_mobility.py both implement); it follows mm/page_alloc.c of Linux
6.18: ``__rmqueue`` (NORMAL/CLAIM/STEAL modes), ``__rmqueue_smallest``,
``__rmqueue_claim`` + ``try_to_claim_block``, ``__rmqueue_steal``,
``split_large_buddy`` + ``__free_one_page``, ``rmqueue_pcplist``,
``free_frozen_page_commit`` and ``free_pcppages_bulk``.

State is a tuple of numpy arrays (``ZoneState.arrays``) so numba kernels
take it as one argument; offsets ``o = pfn - start_pfn`` index per-page
arrays, ``pb = (pfn >> 9) - pb0`` indexes per-pageblock arrays, and free
list ``li = order * 3 + migratetype`` indexes ``head``/``tail``. Pages on
pcp lists reuse the ``nxt``/``prv`` links (a page is on one list at most).

``prm`` (int64 array) holds the scalars: start_pfn, pages, pb0, use_pcp,
batch, high (pages), ncpus. ``counters`` (int64 array, see C_* below) and
the extfrag buffer ``ef`` (rows of EF_COLS) are written as events happen.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from replay.models.buddy import (
    MAX_PAGE_ORDER,
    NR_PAGE_ORDERS,
    PAGEBLOCK_ORDER,
    buddy_merge_likely,
    list_add,
    list_del,
)

MIGRATE_UNMOVABLE = 0
MIGRATE_MOVABLE = 1
MIGRATE_RECLAIMABLE = 2
MIGRATE_PCPTYPES = 3
PAGEBLOCK_PAGES = 1 << PAGEBLOCK_ORDER
NR_PCP_LISTS = 14  # 3 types x orders 0..3, plus order 9 (movable, other)

# prm indices (P_GROUP = 0: grouping by mobility off, every list is MOVABLE: plain buddy)
# P_NOFRAG: try with ALLOC_NOFRAGMENT first (the kernel sets it for ZONE_NORMAL below DMA32)
P_START, P_PAGES, P_PB0, P_PCP, P_BATCH, P_HIGH, P_NCPU, P_GROUP, P_NOFRAG = range(9)
# the defragmentation models' switches and settings (replay.models.compaction, .reclaim):
# P_COMPACT: COMPACT_DIRECT | COMPACT_PROACTIVE bits; P_EXTFRAG: extfrag_threshold;
# P_PROACTIVE: compaction_proactiveness; P_WMIN/LOW/HIGH: watermarks (pages);
# P_KSWAPD: 0 off, 1 LRU-like, 2 targeted; P_VCOMPOUND: lowest order that may fall back
# (0: off); P_PRESSURE_RECLAIM/OOM: free-page thresholds of the notifications (0: off)
P_COMPACT, P_EXTFRAG, P_PROACTIVE, P_WMIN, P_WLOW, P_WHIGH = range(9, 15)
P_KSWAPD, P_VCOMPOUND, P_PRESSURE_RECLAIM, P_PRESSURE_OOM = range(15, 19)
# active defragmentation (replay.models.defrag): P_DEFRAG_IDLE the idle gap (ns; 0 off),
# P_DEFRAG_T0 + k the free order-k blocks wanted (0: no threshold for order k);
# per-owner pools (replay.models.pools): P_POOL_ORDER the chunk order (0 off)
P_DEFRAG_IDLE, P_DEFRAG_T0 = 19, 20
P_POOL_ORDER = 31
# P_UNITS: keep pg_obj (the object whose unit starts at each page). Every model that
# moves, evicts or reads units needs it; a plain buddy/mobility run skips the writes
# (a cache miss per event).
P_UNITS = 32
NR_PRM = 33
# counters indices (C_EF, C_ME: rows in the extfrag and model-event buffers; C_PRESSURE:
# the pressure level now; the others are cumulative: pages for MIGRATED/SCANNED/EVICTED,
# allocations for DEGRADED)
C_EF, C_CLAIMS, C_STEALS, C_REFILLS, C_BULK, C_DRAINS, C_PCP_PAGES = range(7)
C_ME, C_MIGRATED, C_SCANNED, C_EVICTED, C_DEGRADED, C_PRESSURE = range(7, 13)
C_EXCHANGED = 13  # pages moved by exchange_pages (both units of each exchange)
C_POOL_CHUNKS, C_POOL_PAGES = 14, 15  # per-owner pools now: chunks held, pages in use
NR_COUNTERS = 16
# extfrag buffer columns (trace_mm_page_alloc_extfrag)
EF_COLS = ("seq", "pfn", "alloc_order", "fallback_order", "alloc_migratetype",
           "fallback_migratetype", "fragmenting", "change_ownership")  # fmt: skip
EF_MAX_PER_ALLOC = 2 * 64 + 2  # refill, drain, refill again, plus a direct fallback

MODE_NORMAL = 0
MODE_CLAIM = 1
MODE_STEAL = 2

# fallbacks[] of mm/page_alloc.c, row per requested type
FALLBACKS = np.array([[2, 1], [2, 0], [0, 1]], dtype=np.int64)


# -- free blocks ------------------------------------------------------------------
@nb.njit(cache=True, inline="always", _nrt=False)
def _pb_free_add(pfn, k, delta, pb_free, pb0):  # type: ignore[no-untyped-def]
    """Account ``delta`` (+1/-1) times the block (pfn, order k) in per-pageblock free pages."""
    if k >= PAGEBLOCK_ORDER:
        first = (pfn >> PAGEBLOCK_ORDER) - pb0
        for j in range(np.int64(1) << (k - PAGEBLOCK_ORDER)):
            pb_free[first + j] += delta * PAGEBLOCK_PAGES
    else:
        pb_free[(pfn >> PAGEBLOCK_ORDER) - pb0] += delta * (np.int64(1) << k)


@nb.njit(cache=True, inline="always", _nrt=False)
def add_free(o, k, mt, to_tail, st, prm):  # type: ignore[no-untyped-def]
    """``__add_to_free_list``: block at offset o, order k, onto list (k, mt)."""
    li = k * MIGRATE_PCPTYPES + mt
    list_add(o, li, to_tail, st[1], st[2], st[3], st[4])
    st[0][o] = k
    st[5][k] += 1
    st[6][li] += 1
    _pb_free_add(o + prm[P_START], k, 1, st[8], prm[P_PB0])


@nb.njit(cache=True, inline="always", _nrt=False)
def del_free(o, k, mt, st, prm):  # type: ignore[no-untyped-def]
    """``__del_page_from_free_list``: take block at offset o off list (k, mt)."""
    li = k * MIGRATE_PCPTYPES + mt
    list_del(o, li, st[1], st[2], st[3], st[4])
    st[0][o] = -1
    st[5][k] -= 1
    st[6][li] -= 1
    _pb_free_add(o + prm[P_START], k, -1, st[8], prm[P_PB0])


@nb.njit(cache=True, inline="always", _nrt=False)
def expand(o, high, low, mt, st, prm):  # type: ignore[no-untyped-def]
    """``expand``: split block o of order ``high`` down to ``low``; halves to list heads."""
    while high > low:
        high -= 1
        add_free(o + (np.int64(1) << high), high, mt, False, st, prm)


@nb.njit(cache=True, _nrt=False)
def init_zone(st, prm):  # type: ignore[no-untyped-def]
    """Boot: the largest aligned blocks, ascending, each at the TAIL of its MOVABLE list."""
    blk_order, nxt, prv, head, tail = st[:5]
    pb_mt = st[7]
    blk_order[:] = -1
    nxt[:] = -1
    prv[:] = -1
    head[:] = -1
    tail[:] = -1
    st[10][:] = -1  # pcp_head
    st[11][:] = -1  # pcp_tail
    pb_mt[:] = MIGRATE_MOVABLE
    start = prm[P_START]
    end = start + prm[P_PAGES]
    pfn = start
    while pfn < end:
        k = MAX_PAGE_ORDER
        while k > 0 and ((pfn & ((np.int64(1) << k) - 1)) != 0 or pfn + (np.int64(1) << k) > end):
            k -= 1
        add_free(pfn - start, k, MIGRATE_MOVABLE, True, st, prm)
        pfn += np.int64(1) << k


# -- allocation from the buddy ---------------------------------------------------------
@nb.njit(cache=True, inline="always", _nrt=False)
def rmqueue_smallest(k, mt, st, prm):  # type: ignore[no-untyped-def]
    """``__rmqueue_smallest``: head of the first non-empty (c, mt) list, c >= k; offset or -1."""
    head = st[3]
    for c in range(k, NR_PAGE_ORDERS):
        o = head[c * MIGRATE_PCPTYPES + mt]
        if o < 0:
            continue
        del_free(o, c, mt, st, prm)
        expand(o, c, k, mt, st, prm)
        return o
    return np.int64(-1)


@nb.njit(cache=True, inline="always", _nrt=False)
def _emit_extfrag(o, k, c, mt, f, st, prm, counters, ef, seq):  # type: ignore[no-untyped-def]
    pfn = o + prm[P_START]
    n = counters[C_EF]
    if n < ef.shape[0]:
        ef[n, 0] = seq
        ef[n, 1] = pfn
        ef[n, 2] = k
        ef[n, 3] = c
        ef[n, 4] = mt
        ef[n, 5] = f
        ef[n, 6] = 1 if c < PAGEBLOCK_ORDER else 0
        ef[n, 7] = 1 if st[7][(pfn >> PAGEBLOCK_ORDER) - prm[P_PB0]] == mt else 0
    counters[C_EF] = n + 1


@nb.njit(cache=True, inline="always", _nrt=False)
def should_try_claim_block(c, mt):  # type: ignore[no-untyped-def]
    """``should_try_claim_block``: claim large blocks, and always for non-movable requests."""
    return c >= PAGEBLOCK_ORDER // 2 or mt == MIGRATE_RECLAIMABLE or mt == MIGRATE_UNMOVABLE


@nb.njit(cache=True, _nrt=False)
def try_to_claim_block(o, c, k, mt, f, st, prm):  # type: ignore[no-untyped-def]
    """``try_to_claim_block``: retype the fallback block's pageblock(s) and allocate; -1 if not."""
    blk_order = st[0]
    pb_mt, pb_free, pb_alloc = st[7], st[8], st[9]
    start = prm[P_START]
    pb0 = prm[P_PB0]
    pfn = o + start
    if c >= PAGEBLOCK_ORDER:
        del_free(o, c, f, st, prm)
        first = (pfn >> PAGEBLOCK_ORDER) - pb0
        for j in range(np.int64(1) << (c - PAGEBLOCK_ORDER)):
            pb_mt[first + j] = mt
        expand(o, c, k, mt, st, prm)
        return o
    # prep_move_freepages_block: the pageblock must lie wholly inside the zone
    pb_start = (pfn >> PAGEBLOCK_ORDER) << PAGEBLOCK_ORDER
    if pb_start < start or pb_start + PAGEBLOCK_PAGES > start + prm[P_PAGES]:
        return np.int64(-1)
    pb = (pfn >> PAGEBLOCK_ORDER) - pb0
    free = pb_free[pb]
    movable = pb_alloc[pb * MIGRATE_PCPTYPES + MIGRATE_MOVABLE]
    if mt == MIGRATE_MOVABLE:
        alike = movable
    elif f == MIGRATE_MOVABLE:
        alike = PAGEBLOCK_PAGES - (free + movable)
    else:
        alike = 0
    if free + alike < PAGEBLOCK_PAGES // 2:
        return np.int64(-1)
    # __move_freepages_block: every free block of the pageblock, ascending, to the tail
    q = pb_start - start
    end = q + PAGEBLOCK_PAGES
    while q < end:
        b = blk_order[q]
        if b >= 0:
            del_free(q, b, f, st, prm)
            add_free(q, b, mt, True, st, prm)
            q += np.int64(1) << b
        else:
            q += 1
    pb_mt[pb] = mt
    return rmqueue_smallest(k, mt, st, prm)


@nb.njit(cache=True, inline="always", _nrt=False)
def find_suitable_fallback(c, mt, head):  # type: ignore[no-untyped-def]
    """``find_suitable_fallback``: the first fallback type with a block of order c, or -1."""
    for i in range(2):
        f = FALLBACKS[mt, i]
        if head[c * MIGRATE_PCPTYPES + f] >= 0:
            return f
    return np.int64(-1)


@nb.njit(cache=True, _nrt=False)
def rmqueue_claim(k, mt, nofrag, st, prm, counters, ef, seq):  # type: ignore[no-untyped-def]
    """``__rmqueue_claim``: largest fallback block first, down to k; offset or -1.

    Under ALLOC_NOFRAGMENT only whole pageblocks (order >= 9) are claimed.
    """
    head = st[3]
    min_order = PAGEBLOCK_ORDER if nofrag and k < PAGEBLOCK_ORDER else k
    for c in range(MAX_PAGE_ORDER, min_order - 1, -1):
        if not should_try_claim_block(c, mt):
            break
        f = find_suitable_fallback(c, mt, head)
        if f < 0:
            continue
        o = try_to_claim_block(head[c * MIGRATE_PCPTYPES + f], c, k, mt, f, st, prm)
        if o >= 0:
            counters[C_CLAIMS] += 1
            _emit_extfrag(o, k, c, mt, f, st, prm, counters, ef, seq)
            return o
    return np.int64(-1)


@nb.njit(cache=True, _nrt=False)
def rmqueue_steal(k, mt, st, prm, counters, ef, seq):  # type: ignore[no-untyped-def]
    """``__rmqueue_steal``: smallest fallback block, split; the rest stays on its lists."""
    head = st[3]
    for c in range(k, NR_PAGE_ORDERS):
        f = find_suitable_fallback(c, mt, head)
        if f < 0:
            continue
        o = head[c * MIGRATE_PCPTYPES + f]
        del_free(o, c, f, st, prm)
        expand(o, c, k, f, st, prm)
        counters[C_STEALS] += 1
        _emit_extfrag(o, k, c, mt, f, st, prm, counters, ef, seq)
        return o
    return np.int64(-1)


@nb.njit(cache=True, _nrt=False)
def rmqueue(k, mt, mode, nofrag, st, prm, counters, ef, seq):  # type: ignore[no-untyped-def]
    """``__rmqueue``: own type, then claim, then steal. ``mode[0]`` carries the mode.

    Returns the block's offset, or -1. Under ALLOC_NOFRAGMENT there is no steal.
    """
    m = mode[0]
    if m == MODE_NORMAL:
        o = rmqueue_smallest(k, mt, st, prm)
        if o >= 0:
            return o
    if m == MODE_NORMAL or m == MODE_CLAIM:
        o = rmqueue_claim(k, mt, nofrag, st, prm, counters, ef, seq)
        if o >= 0:
            mode[0] = MODE_NORMAL
            return o
    if nofrag:
        return np.int64(-1)
    o = rmqueue_steal(k, mt, st, prm, counters, ef, seq)
    if o >= 0:
        mode[0] = MODE_STEAL
    return o


# -- freeing to the buddy ------------------------------------------------------------
@nb.njit(cache=True, inline="always", _nrt=False)
def free_one_page(pfn, k, mt, st, prm):  # type: ignore[no-untyped-def]
    """``__free_one_page``: merge (retyping order >= 9 buddies), then head or tail."""
    blk_order, pb_mt = st[0], st[7]
    start = prm[P_START]
    pages = prm[P_PAGES]
    pb0 = prm[P_PB0]
    pfn = np.int64(pfn)
    while k < MAX_PAGE_ORDER:
        b = pfn ^ (np.int64(1) << k)
        bo = b - start
        if bo < 0 or bo >= pages or blk_order[bo] != k:
            break
        bpb = (b >> PAGEBLOCK_ORDER) - pb0
        bt = pb_mt[bpb]
        del_free(bo, k, bt, st, prm)
        if bt != mt:
            pb_mt[bpb] = mt
        pfn = pfn & b
        k += 1
    add_free(pfn - start, k, mt, buddy_merge_likely(pfn, k, start, pages, blk_order), st, prm)


@nb.njit(cache=True, inline="always", _nrt=False)
def free_to_buddy(pfn, k, st, prm):  # type: ignore[no-untyped-def]
    """``free_one_page`` -> ``split_large_buddy``: pageblock-sized pieces, each with its type."""
    pb_mt = st[7]
    pb0 = prm[P_PB0]
    piece = k if k <= PAGEBLOCK_ORDER else PAGEBLOCK_ORDER
    end = pfn + (np.int64(1) << k)
    p = np.int64(pfn)
    while p < end:
        free_one_page(p, piece, pb_mt[(p >> PAGEBLOCK_ORDER) - pb0], st, prm)
        p += np.int64(1) << piece


# -- per-CPU lists -------------------------------------------------------------------------
@nb.njit(cache=True, inline="always", _nrt=False)
def pcp_allowed_order(k):  # type: ignore[no-untyped-def]
    """``pcp_allowed_order``: orders up to PAGE_ALLOC_COSTLY_ORDER and the THP order."""
    return k <= 3 or k == PAGEBLOCK_ORDER


@nb.njit(cache=True, inline="always", _nrt=False)
def order_to_pindex(k, mt):  # type: ignore[no-untyped-def]
    """``order_to_pindex``."""
    if k > 3:
        return 12 + (1 if mt == MIGRATE_MOVABLE else 0)
    return MIGRATE_PCPTYPES * k + mt


@nb.njit(cache=True, inline="always", _nrt=False)
def pindex_to_order(p):  # type: ignore[no-untyped-def]
    """``pindex_to_order``."""
    if p >= 12:
        return PAGEBLOCK_ORDER
    return p // MIGRATE_PCPTYPES


@nb.njit(cache=True, _nrt=False)
def free_pcppages_bulk(n, cpu, pindex, st, prm, counters):  # type: ignore[no-untyped-def]
    """``free_pcppages_bulk``: free ``n`` pages from list tails, lists round robin."""
    nxt, prv = st[1], st[2]
    pcp_head, pcp_tail, pcp_count = st[10], st[11], st[12]
    start = prm[P_START]
    if n > pcp_count[cpu]:
        n = pcp_count[cpu]
    p = pindex - 1
    base = cpu * NR_PCP_LISTS
    while n > 0:
        while True:
            p += 1
            if p > NR_PCP_LISTS - 1:
                p = 0
            if pcp_head[base + p] >= 0:
                break
        k = pindex_to_order(p)
        while True:
            o = pcp_tail[base + p]
            list_del(o, base + p, nxt, prv, pcp_head, pcp_tail)
            n -= np.int64(1) << k
            pcp_count[cpu] -= np.int64(1) << k
            counters[C_PCP_PAGES] -= np.int64(1) << k
            free_to_buddy(o + start, k, st, prm)
            if n <= 0 or pcp_head[base + p] < 0:
                break


@nb.njit(cache=True, _nrt=False)
def drain_all(st, prm, counters):  # type: ignore[no-untyped-def]
    """``drain_all_pages``: every cpu's lists, pindex 0..13, each from its tail."""
    for cpu in range(prm[P_NCPU]):
        if st[12][cpu] > 0:
            free_pcppages_bulk(st[12][cpu], cpu, 0, st, prm, counters)


@nb.njit(cache=True, inline="always", _nrt=False)
def pcp_free(pfn, k, cpu, st, prm, counters):  # type: ignore[no-untyped-def]
    """``free_frozen_page_commit``: to the head of the pageblock type's list; drain at high."""
    nxt, prv, pb_mt = st[1], st[2], st[7]
    pcp_head, pcp_tail, pcp_count = st[10], st[11], st[12]
    mt = pb_mt[(pfn >> PAGEBLOCK_ORDER) - prm[P_PB0]]
    p = order_to_pindex(k, mt)
    list_add(pfn - prm[P_START], cpu * NR_PCP_LISTS + p, False, nxt, prv, pcp_head, pcp_tail)
    pcp_count[cpu] += np.int64(1) << k
    counters[C_PCP_PAGES] += np.int64(1) << k
    if pcp_count[cpu] >= prm[P_HIGH]:
        counters[C_BULK] += 1
        # nr_pcp_free without auto-tuning: batch pages (1 when high < batch)
        n = np.int64(1) if prm[P_HIGH] < prm[P_BATCH] else prm[P_BATCH]
        free_pcppages_bulk(n, cpu, p, st, prm, counters)


@nb.njit(cache=True, inline="always", _nrt=False)
def pcp_alloc(k, mt, cpu, nofrag, st, prm, counters, ef, seq, mode):  # type: ignore[no-untyped-def]
    """``__rmqueue_pcplist``: the list head, after a refill of ``nr_pcp_alloc`` blocks.

    ``nr_pcp_alloc`` without auto-tuning: 1 when high < batch, else
    max(batch >> k, 2) (batch itself when batch is 1).
    """
    nxt, prv = st[1], st[2]
    pcp_head, pcp_tail, pcp_count = st[10], st[11], st[12]
    li = cpu * NR_PCP_LISTS + order_to_pindex(k, mt)
    if pcp_head[li] < 0:
        counters[C_REFILLS] += 1
        batch = prm[P_BATCH]
        if prm[P_HIGH] < batch:
            n = np.int64(1)
        elif batch > 1:
            n = max(batch >> k, np.int64(2))
        else:
            n = batch
        mode[0] = MODE_NORMAL
        for _ in range(n):
            o = rmqueue(k, mt, mode, nofrag, st, prm, counters, ef, seq)
            if o < 0:
                break
            list_add(o, li, True, nxt, prv, pcp_head, pcp_tail)
            pcp_count[cpu] += np.int64(1) << k
            counters[C_PCP_PAGES] += np.int64(1) << k
    o = pcp_head[li]
    if o < 0:
        return np.int64(-1)
    list_del(o, li, nxt, prv, pcp_head, pcp_tail)
    pcp_count[cpu] -= np.int64(1) << k
    counters[C_PCP_PAGES] -= np.int64(1) << k
    return o


@nb.njit(cache=True, inline="always", _nrt=False)
def _pb_alloc_add(pfn, k, mt, delta, pb_alloc, pb0):  # type: ignore[no-untyped-def]
    if k >= PAGEBLOCK_ORDER:
        first = (pfn >> PAGEBLOCK_ORDER) - pb0
        for j in range(np.int64(1) << (k - PAGEBLOCK_ORDER)):
            pb_alloc[(first + j) * MIGRATE_PCPTYPES + mt] += delta * PAGEBLOCK_PAGES
    else:
        pb_alloc[((pfn >> PAGEBLOCK_ORDER) - pb0) * MIGRATE_PCPTYPES + mt] += delta * (
            np.int64(1) << k
        )


@nb.njit(cache=True, _nrt=False)
def rmqueue_zone(k, mt, cpu, nofrag, st, prm, counters, ef, seq, mode):  # type: ignore[no-untyped-def]
    """``rmqueue``: pcp orders through the cpu's lists, others (or an empty refill) the buddy."""
    o = np.int64(-1)
    if prm[P_PCP] != 0 and pcp_allowed_order(k):
        o = pcp_alloc(k, mt, cpu, nofrag, st, prm, counters, ef, seq, mode)
    if o < 0:
        mode[0] = MODE_NORMAL
        o = rmqueue(k, mt, mode, nofrag, st, prm, counters, ef, seq)
    return o


@nb.njit(cache=True, _nrt=False)
def get_page_from_freelist(k, mt, cpu, st, prm, counters, ef, seq, mode):  # type: ignore[no-untyped-def]
    """First with ALLOC_NOFRAGMENT (when on), then, if that failed, without it."""
    if prm[P_NOFRAG] != 0:
        o = rmqueue_zone(k, mt, cpu, True, st, prm, counters, ef, seq, mode)
        if o >= 0:
            return o
    return rmqueue_zone(k, mt, cpu, False, st, prm, counters, ef, seq, mode)


@nb.njit(cache=True, inline="always", _nrt=False)
def alloc_pages(k, mt, cpu, st, prm, counters, ef, seq, mode, drain=True):  # type: ignore[no-untyped-def]
    """``rmqueue``: pcp orders through the cpu's lists, others from the buddy; pfn or -1.

    A failure with pages on pcp lists drains them all and retries once, unless
    ``drain`` is False (a request that cannot enter direct reclaim).
    With grouping off (``prm[P_GROUP] == 0``) every request uses the MOVABLE
    lists; the pages are still accounted by the request's type.
    """
    if mt < 0 or mt >= MIGRATE_PCPTYPES:
        mt = MIGRATE_MOVABLE
    lmt = mt if prm[P_GROUP] != 0 else MIGRATE_MOVABLE
    # Fast path, inlined: what every pass below would do first (the head of a
    # non-empty pcp list, else __rmqueue_smallest), so the result is the same.
    if prm[P_PCP] != 0 and pcp_allowed_order(k):
        li = cpu * NR_PCP_LISTS + order_to_pindex(k, lmt)
        o = st[10][li]
        if o >= 0:
            list_del(o, li, st[1], st[2], st[10], st[11])
            st[12][cpu] -= np.int64(1) << k
            counters[C_PCP_PAGES] -= np.int64(1) << k
    else:
        o = rmqueue_smallest(k, lmt, st, prm)
    if o >= 0:
        pfn = o + prm[P_START]
        _pb_alloc_add(pfn, k, mt, 1, st[9], prm[P_PB0])
        return pfn
    for attempt in range(2):
        o = get_page_from_freelist(k, lmt, cpu, st, prm, counters, ef, seq, mode)
        if o >= 0:
            pfn = o + prm[P_START]
            _pb_alloc_add(pfn, k, mt, 1, st[9], prm[P_PB0])
            return pfn
        if drain and attempt == 0 and prm[P_PCP] != 0 and counters[C_PCP_PAGES] > 0:
            counters[C_DRAINS] += 1
            drain_all(st, prm, counters)
        else:
            break
    return np.int64(-1)


@nb.njit(cache=True, inline="always", _nrt=False)
def free_pages(pfn, k, mt, cpu, st, prm, counters):  # type: ignore[no-untyped-def]
    """``__free_pages``: pcp orders to the cpu's lists, others to the buddy."""
    if mt < 0 or mt >= MIGRATE_PCPTYPES:
        mt = MIGRATE_MOVABLE
    _pb_alloc_add(pfn, k, mt, -1, st[9], prm[P_PB0])
    if prm[P_PCP] != 0 and pcp_allowed_order(k):
        pcp_free(pfn, k, cpu, st, prm, counters)
    else:
        free_to_buddy(pfn, k, st, prm)


# -- Python handle -------------------------------------------------------------------------
class ZoneState:
    """The arrays of one zone under ``mobility`` (optionally with ``pcp``).

    ``arrays`` is the tuple the kernels take: blk_order, nxt, prv, head, tail,
    nr_free, nr_free_mt, pb_mt, pb_free, pb_alloc, pcp_head, pcp_tail,
    pcp_count, pg_obj, iso_head, iso_tail. ``high`` and ``batch`` are in
    pages. The defragmentation models' settings (docs/compaction.md,
    replay.models.reclaim) are keyword arguments: ``compaction`` off, direct,
    proactive or both; ``wmark`` (min, low, high) pages; ``kswapd`` off, lru
    or targeted; ``vcompound_order`` (0 off); ``pressure`` (reclaim, oom)
    free-page thresholds; ``defrag_idle_ns`` and ``defrag_thresholds`` {order:
    free blocks wanted} (active defragmentation, replay.models.defrag);
    ``pool_order`` and ``pool_owners`` (per-owner pools, replay.models.pools).
    ``objects`` holds ``max_objects`` objects for the object API
    (``alloc_obj``/``free_obj``) that tests drive.
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
        grouping: bool = True,
        nofragment: bool = True,
        compaction: str = "off",
        extfrag_threshold: int = 500,
        proactiveness: int = 20,
        wmark: tuple[int, int, int] = (0, 0, 0),
        kswapd: str = "off",
        vcompound_order: int = 0,
        pressure: tuple[int, int] = (0, 0),
        defrag_idle_ns: int = 0,
        defrag_thresholds: dict[int, int] | None = None,
        pool_order: int = 0,
        pool_owners: int = 1,
        max_objects: int = 1 << 12,
    ) -> None:
        if pages <= 0 or start_pfn < 0:
            raise ValueError("a zone needs pages > 0 and start_pfn >= 0")
        if ncpus < 1 or batch < 1 or high < 1:
            raise ValueError("pcp needs ncpus, batch and high >= 1")
        self.start_pfn = int(start_pfn)
        self.pages = int(pages)
        pb0 = self.start_pfn >> PAGEBLOCK_ORDER
        npb = ((self.start_pfn + self.pages - 1) >> PAGEBLOCK_ORDER) - pb0 + 1
        self.npb = npb
        nl = NR_PAGE_ORDERS * MIGRATE_PCPTYPES
        self.arrays = (
            np.empty(pages, np.int8),  # blk_order
            np.empty(pages, np.int32),  # nxt
            np.empty(pages, np.int32),  # prv
            np.empty(nl, np.int64),  # head
            np.empty(nl, np.int64),  # tail
            np.zeros(NR_PAGE_ORDERS, np.int64),  # nr_free
            np.zeros(nl, np.int64),  # nr_free_mt
            np.empty(npb, np.int8),  # pb_mt
            np.zeros(npb, np.int64),  # pb_free
            np.zeros(npb * MIGRATE_PCPTYPES, np.int64),  # pb_alloc
            np.empty(ncpus * NR_PCP_LISTS, np.int64),  # pcp_head
            np.empty(ncpus * NR_PCP_LISTS, np.int64),  # pcp_tail
            np.zeros(ncpus, np.int64),  # pcp_count
            np.full(pages, -1, np.int32),  # pg_obj: the object whose unit starts here
            np.full(NR_PAGE_ORDERS, -1, np.int64),  # isolated free lists: heads
            np.full(NR_PAGE_ORDERS, -1, np.int64),  # and tails
        )
        self.prm = np.array(
            [
                self.start_pfn,
                self.pages,
                pb0,
                int(pcp),
                batch,
                high,
                ncpus,
                int(grouping),
                int(nofragment),
                {"off": 0, "direct": 1, "proactive": 2, "both": 3}[compaction],
                extfrag_threshold,
                proactiveness,
                *wmark,
                {"off": 0, "lru": 1, "targeted": 2}[kswapd],
                vcompound_order,
                *pressure,
                defrag_idle_ns,
                *[(defrag_thresholds or {}).get(k, 0) for k in range(NR_PAGE_ORDERS)],
                pool_order,
                1,  # P_UNITS: the object API and the models rely on pg_obj
            ],
            dtype=np.int64,
        )
        assert self.prm.shape[0] == NR_PRM
        from replay.models import compaction as C
        from replay.models.kernel import NR_STATS, new_objects
        from replay.models.pools import new_pools

        self.pools = new_pools(self.start_pfn, self.pages, pool_order, pool_owners)
        self.cz = C.new_cz(self.start_pfn, self.pages)
        self.me = np.zeros((256, len(C.ME_COLS)), np.int64)
        self.objects = new_objects(max_objects)
        self.vc = np.zeros(1 << 12, np.int64)
        self.stats = np.zeros(NR_STATS, np.int64)
        self._me_rows: list[tuple[int, ...]] = []
        self.counters = np.zeros(NR_COUNTERS, np.int64)
        self.mode = np.zeros(1, np.int64)
        self.ef = np.zeros((4096, len(EF_COLS)), np.int64)
        init_zone(self.arrays, self.prm)

    # the API shared with tests/ref_mobility.py -------------------------------------
    @property
    def nr_free(self) -> np.ndarray:
        return self.arrays[5]

    @property
    def extfrag(self) -> list[tuple[int, int, int, int, int, bool, bool]]:
        n = min(int(self.counters[C_EF]), self.ef.shape[0])
        return [
            (int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]), bool(r[6]), bool(r[7]))
            for r in self.ef[:n]
        ]

    @property
    def drains(self) -> int:
        return int(self.counters[C_DRAINS])

    def alloc(self, order: int, mt: int, cpu: int = 0) -> int:
        """Allocate a block of ``order`` for a request of migratetype ``mt``; pfn or -1."""
        if int(self.counters[C_EF]) + EF_MAX_PER_ALLOC > self.ef.shape[0]:
            self.ef = np.concatenate([self.ef, np.zeros_like(self.ef)])
        return int(alloc_pages(order, mt, cpu, self.arrays, self.prm, self.counters, self.ef,
                               -1, self.mode))  # fmt: skip

    def free(self, pfn: int, order: int, mt: int, cpu: int = 0) -> None:
        """Free the block (pfn, order) that a request of migratetype ``mt`` allocated."""
        free_pages(pfn, order, mt, cpu, self.arrays, self.prm, self.counters)

    def drain_all(self) -> None:
        drain_all(self.arrays, self.prm, self.counters)

    # the object API (docs/compaction.md), shared with tests/ref_compaction.py ----------
    def _room(self, pages: int) -> None:
        from replay.models.reclaim import CZ_VC_USED

        if int(self.counters[C_EF]) + EF_MAX_PER_ALLOC > self.ef.shape[0]:
            self.ef = np.concatenate([self.ef, np.zeros_like(self.ef)])
        self._flush_me()
        while int(self.cz[CZ_VC_USED]) + pages + 1024 > self.vc.shape[0]:
            self.vc = np.concatenate([self.vc, np.zeros_like(self.vc)])

    def _flush_me(self) -> None:
        n = int(self.counters[C_ME])
        self._me_rows.extend(tuple(int(v) for v in row) for row in self.me[:n])
        self.counters[C_ME] = 0

    def _event(self, is_alloc: bool, obj: int, offset: int, order: int, mt: int, flags: int,
               cpu: int, ts_ns: int, seq: int, owner: int = -1) -> int:  # fmt: skip
        from replay.models import defrag as D
        from replay.models.kernel import apply_event, new_objects

        if not 0 <= cpu < self.prm[P_NCPU]:
            raise ValueError(f"cpu {cpu} outside 0..{int(self.prm[P_NCPU]) - 1}")

        n = self.objects[0].shape[0]
        if obj >= n:  # grow the per-object arrays (not the LRU's head/tail)
            grown = new_objects(max(obj + 1, 2 * n))
            for a, b in zip(self.objects[:6], grown[:6], strict=True):
                b[:n] = a
            self.objects = (*grown[:6], *self.objects[6:])
        self._room(1 << NR_PAGE_ORDERS)
        if self.prm[P_DEFRAG_IDLE] > 0 and D.defrag_due(ts_ns, self.arrays, self.prm, self.cz):
            self.active_defrag(seq)
        pfn, _ = apply_event(is_alloc, obj, offset, order, mt, flags, owner, cpu, ts_ns, seq,
                             self.arrays, self.prm, self.objects, self.cz, self.counters, self.ef,
                             self.me, self.mode, self.vc, self.stats, self.pools)  # fmt: skip
        self._flush_me()
        return int(pfn)

    def active_defrag(self, seq: int = -1) -> tuple[int, int, int, int]:
        """One active defragmentation pass now: (order, blocks freed, pages migrated, tried)."""
        from replay.models import defrag as D

        self._room(0)
        r = D.defrag_pass(seq, self.arrays, self.prm, self.objects, self.cz, self.counters,
                          self._pass_ef(), self.mode, self.me)  # fmt: skip
        self._flush_me()
        return tuple(int(v) for v in r)  # type: ignore[return-value]

    def exchange(self, objs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Exchange pages: put each object at its target pfn, in order; the EX_* per object."""
        from replay.models import defrag as D

        res = np.zeros(objs.shape[0], np.int8)
        D.exchange_pages(objs.astype(np.int64), targets.astype(np.int64), self.arrays, self.prm,
                         self.objects, self.counters, res)  # fmt: skip
        return res

    def alloc_contig(self, nr_pages: int, pfn: int = -1, best: bool = False,
                     seq: int = -1) -> tuple[int, int, int]:  # fmt: skip
        """``alloc_contig_pages``: (first pfn or -1, pages migrated, ranges tried)."""
        from replay.models import defrag as D

        r = D.alloc_contig(nr_pages, pfn, best, seq, self.arrays, self.prm, self.objects,
                           self.counters, self._pass_ef(), self.mode)  # fmt: skip
        return tuple(int(v) for v in r)  # type: ignore[return-value]

    def _pass_ef(self) -> np.ndarray:
        """The extfrag buffer, with room for a pass between events (its targets' rows)."""
        need = int(self.counters[C_EF]) + 4 * self.pages + 1024
        if need > self.ef.shape[0]:
            self.ef = np.concatenate([self.ef, np.zeros((need - self.ef.shape[0],
                                                         len(EF_COLS)), np.int64)])  # fmt: skip
        return self.ef

    def alloc_obj(self, obj: int, order: int, mt: int, movable: bool | None = None,
                  cpu: int = 0, ts_ns: int = 0, seq: int = -1, reclaimable: bool | None = None,
                  vcompound: bool = False, owner: int = -1,
                  direct_reclaim: bool = True) -> int:  # fmt: skip
        """Allocate object ``obj`` (order, request migratetype); pfn or -1.

        ``movable`` None: movable when mt is MOVABLE; ``reclaimable`` None:
        when mt is RECLAIMABLE or MOVABLE (kswapd victims). ``direct_reclaim``
        False: a GFP_ATOMIC-like request, whose failure neither drains the pcp
        lists nor compacts.
        """
        from replay.models import compaction as C

        mov = (mt == MIGRATE_MOVABLE) if movable is None else movable
        rec = mt in (MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE) if reclaimable is None else reclaimable
        flags = (C.F_MOVABLE if mov else 0) | (C.F_RECLAIM if rec else 0)
        flags |= C.F_VCOMPOUND if vcompound else 0
        flags |= 0 if direct_reclaim else C.F_NORECLAIM
        return self._event(True, obj, 0, order, mt, flags, cpu, ts_ns, seq, owner)

    def free_obj(self, obj: int, offset: int = 0, order: int | None = None, cpu: int = 0,
                 ts_ns: int = 0, seq: int = -1) -> None:  # fmt: skip
        """Free ``order`` pages at ``offset`` of object ``obj`` (default: all of it)."""
        k = int(self.objects[2][obj]) if order is None else order
        self._event(False, obj, offset, k, int(self.objects[1][obj]), 0, cpu, ts_ns, seq)

    def tick(self, ts_ns: int) -> None:
        """Run the proactive compaction checks due by trace time ``ts_ns``."""
        from replay.models import compaction as C

        if int(self.prm[P_COMPACT]) & C.COMPACT_PROACTIVE:
            self._room(0)
            C.proactive_tick(ts_ns, -1, self.arrays, self.prm, self.objects, self.cz,
                             self.counters, self.me)  # fmt: skip
            self._flush_me()

    def compact_memory(self, seq: int = -1) -> str:
        """One-shot whole-zone compaction; the result name."""
        from replay.models import compaction as C

        self._room(0)
        r = C.compact_memory(seq, self.arrays, self.prm, self.objects, self.cz, self.counters,
                             self.me)  # fmt: skip
        self._flush_me()
        return C.RESULTS[int(r)]

    def placement(self, obj: int) -> int:
        """The object's pfn, or -1 (failed, evicted, freed or a virtual compound)."""
        pfn = int(self.objects[0][obj])
        return pfn if pfn >= 0 else -1

    @property
    def model_events(self) -> list[tuple[object, ...]]:
        """(kind, seq, order, mode, start_pfn, end_pfn, migrate_pfn, free_pfn,
        scanned_migrate, scanned_free, moved, failed, result) per model event."""
        from replay.models import compaction as C
        from replay.models.reclaim import RESULTS

        out: list[tuple[object, ...]] = []
        for r in self._me_rows:
            out.append((C.KINDS[r[1]], r[0], r[2], C.MODES[r[3]] if r[3] in (0, 1) else r[3],
                        *r[4:12], RESULTS[r[13]]))  # fmt: skip
        return out

    def load(self, blk: np.ndarray, page_mt: np.ndarray, pb_mt: np.ndarray | None = None) -> None:
        """Start from a given state (offsets from start_pfn; see :func:`load_state`).

        Pageblock types: ``pb_mt`` when given, else UNMOVABLE where unmovable
        pages outnumber movable ones, else MOVABLE; an order-10 free block
        takes its first pageblock's type for both.
        """
        if pb_mt is None:
            pb0 = self.start_pfn >> PAGEBLOCK_ORDER
            idx = (
                (np.arange(self.pages, dtype=np.int64) + self.start_pfn) >> PAGEBLOCK_ORDER
            ) - pb0
            unmov = np.bincount(idx, weights=(page_mt == MIGRATE_UNMOVABLE), minlength=self.npb)
            mov = np.bincount(idx, weights=(page_mt == MIGRATE_MOVABLE), minlength=self.npb)
            pb_mt = np.where(unmov > mov, MIGRATE_UNMOVABLE, MIGRATE_MOVABLE).astype(np.int8)
            for o in np.flatnonzero(blk > PAGEBLOCK_ORDER):
                first = ((int(o) + self.start_pfn) >> PAGEBLOCK_ORDER) - pb0
                pb_mt[first + 1 : first + (1 << (int(blk[o]) - PAGEBLOCK_ORDER))] = pb_mt[first]
        self.arrays[7][:] = pb_mt
        load_state(self.arrays, self.prm, blk.astype(np.int8), page_mt.astype(np.int8))

    def adopt(self, ids: np.ndarray, offsets: np.ndarray, orders: np.ndarray | int,
              mts: np.ndarray, flags: np.ndarray) -> None:  # fmt: skip
        """Make the allocated units at ``offsets`` (from start_pfn) objects ``ids``.

        For a state given by :meth:`load`: each unit (order, request type,
        F_* flags) starts at its offset (``pg_obj``); with kswapd on, the
        reclaimable ones join the LRU in ``ids`` order.
        """
        placed, obj_mt, obj_order, obj_flags = self.objects[:4]
        placed[ids] = offsets + self.start_pfn
        obj_mt[ids] = mts
        obj_order[ids] = orders
        obj_flags[ids] = flags
        self.arrays[13][offsets] = ids.astype(np.int32)
        self.lru_add(ids)

    def lru_add(self, ids: np.ndarray) -> None:
        """With kswapd on: the placed reclaimable objects among ``ids`` join the LRU tail."""
        from replay.models import compaction as C
        from replay.models.reclaim import lru_add

        if not self.prm[P_KSWAPD]:
            return
        placed, obj_flags = self.objects[0], self.objects[3]
        for x in ids[((obj_flags[ids] & C.F_RECLAIM) != 0) & (placed[ids] >= 0)]:
            lru_add(np.int64(x), self.objects)

    def free_lists(self) -> dict[tuple[int, int], list[int]]:
        """(order, migratetype) -> free blocks' pfns, head to tail (non-empty lists only)."""
        nxt, head = self.arrays[1], self.arrays[3]
        out: dict[tuple[int, int], list[int]] = {}
        for k in range(NR_PAGE_ORDERS):
            for mt in range(MIGRATE_PCPTYPES):
                o = int(head[k * MIGRATE_PCPTYPES + mt])
                blocks = []
                while o >= 0:
                    blocks.append(o + self.start_pfn)
                    o = int(nxt[o])
                if blocks:
                    out[(k, mt)] = blocks
        return out

    def pcp_lists(self) -> dict[tuple[int, int], list[int]]:
        """(cpu, pindex) -> pfns on that pcp list, head to tail (non-empty lists only)."""
        nxt, pcp_head = self.arrays[1], self.arrays[10]
        out: dict[tuple[int, int], list[int]] = {}
        for li in range(pcp_head.shape[0]):
            o = int(pcp_head[li])
            pfns = []
            while o >= 0:
                pfns.append(o + self.start_pfn)
                o = int(nxt[o])
            if pfns:
                out[(li // NR_PCP_LISTS, li % NR_PCP_LISTS)] = pfns
        return out

    def pcp_count(self) -> list[int]:
        return [int(v) for v in self.arrays[12]]

    def pageblock_types(self) -> list[int]:
        return [int(v) for v in self.arrays[7]]

    def nr_free_mt(self) -> list[list[int]]:
        m = self.arrays[6]
        return [[int(m[k * 3 + t]) for t in range(3)] for k in range(NR_PAGE_ORDERS)]

    def free_pages(self) -> int:
        return int(sum(int(n) << k for k, n in enumerate(self.arrays[5])))

    def pcp_pages(self) -> int:
        return int(self.arrays[12].sum())

    def pageblock_counts(self) -> list[tuple[int, int, int, int, int]]:
        """Per pageblock: (free, unmovable, movable, reclaimable allocated, pcp) pages."""
        snap = np.zeros((self.npb, 6), np.int64)
        pageblock_snapshot(self.arrays, self.prm, snap)
        return [tuple(int(v) for v in row[1:]) for row in snap]  # type: ignore[misc]


@nb.njit(cache=True, _nrt=False)
def pageblock_snapshot(st, prm, out):  # type: ignore[no-untyped-def]
    """Per pageblock: type, free, allocated unmovable/movable/reclaimable, pcp pages.

    ``out`` is an (npb, 6) int64 array.
    """
    nxt, pb_mt, pb_free, pb_alloc, pcp_head = st[1], st[7], st[8], st[9], st[10]
    npb = pb_mt.shape[0]
    for b in range(npb):
        out[b, 0] = pb_mt[b]
        out[b, 1] = pb_free[b]
        for t in range(MIGRATE_PCPTYPES):
            out[b, 2 + t] = pb_alloc[b * MIGRATE_PCPTYPES + t]
        out[b, 5] = 0
    start = prm[P_START]
    pb0 = prm[P_PB0]
    for li in range(pcp_head.shape[0]):
        k = pindex_to_order(li % NR_PCP_LISTS)
        o = pcp_head[li]
        while o >= 0:
            out[((o + start) >> PAGEBLOCK_ORDER) - pb0, 5] += np.int64(1) << k
            o = nxt[o]


@nb.njit(cache=True, _nrt=False)
def load_state(st, prm, blk, page_mt):  # type: ignore[no-untyped-def]
    """Replace the boot state by a given one (``--start observed``).

    ``blk[o]``: order of the free block starting at offset o (-1 elsewhere);
    ``page_mt[o]``: -1 for free pages, else the migratetype the allocated page
    is counted as. ``st[7]`` (pb_mt) must already hold the pageblock types;
    each free block goes to the TAIL of its pageblock type's list, ascending.
    """
    blk_order, nxt, prv, head, tail = st[0], st[1], st[2], st[3], st[4]
    blk_order[:] = -1
    nxt[:] = -1
    prv[:] = -1
    head[:] = -1
    tail[:] = -1
    st[5][:] = 0
    st[6][:] = 0
    st[8][:] = 0
    st[9][:] = 0
    st[10][:] = -1
    st[11][:] = -1
    st[12][:] = 0
    start = prm[P_START]
    pb0 = prm[P_PB0]
    for o in range(blk.shape[0]):
        if blk[o] >= 0:
            add_free(o, np.int64(blk[o]), st[7][((o + start) >> PAGEBLOCK_ORDER) - pb0], True, st,
                     prm)  # fmt: skip
        t = page_mt[o]
        if t >= 0:
            st[9][(((o + start) >> PAGEBLOCK_ORDER) - pb0) * MIGRATE_PCPTYPES + t] += 1
