"""kswapd high-order reclaim, virtual compound fallback and memory-pressure notifications.

- **kswapd** (Nick Piggin's high-order kswapd, 2004; lumpy reclaim, Andy
  Whitcroft, 2007): woken by an allocation of order k made while
  ``__zone_watermark_ok(k, low)`` fails (``wake_all_kswapds``); it then
  reclaims (``balance_pgdat``) until ``__zone_watermark_ok(k, high)`` holds,
  nothing reclaimable is left, or it has evicted ``max(8 << k, 32)`` pages
  in this wake-up. Victims are reclaimable objects (F_RECLAIM: RECLAIMABLE
  requests, MOVABLE ones unless ``kswapd_movable = false``) on an LRU list in
  allocation order. ``lru``: evict the oldest (contiguity-blind). ``targeted``:
  evict the oldest and every reclaimable unit inside the naturally aligned
  order-k block around it (lumpy). An evicted object is gone: its later
  frees are no-ops (outcome ``evicted``); its pages go straight to the buddy.
- **virtual compound fallback** (Christoph Lameter): an order-k allocation
  (k >= ``vcompound_order``) flagged F_VCOMPOUND that failed is served as
  ``1 << k`` order-0 allocations: a degraded success. Its frees free those
  pages. If an order-0 page cannot be had, the pages taken are given back
  and the allocation fails.
- **pressure notifications** (seed 004): a model event each time free pages
  cross the "about to reclaim" or "about to OOM" threshold, in either
  direction.

Units as in replay.models.compaction: pfn, pages, order.
"""

from __future__ import annotations

import numpy as np

from replay.jit import njit
from replay.models.buddy import free_to_buddy, pageblock_alloc_add
from replay.models.internal import (
    BALANCED,
    C_DEGRADED,
    C_EVICTED,
    C_PRESSURE,
    CZ_VC_USED,
    DEGRADED,
    F_EVICTED,
    F_RECLAIM,
    FAILED,
    K_KSWAPD,
    K_PRESSURE,
    K_VCOMPOUND,
    LEVEL_NORMAL,
    NR_PAGE_ORDERS,
    P_KSWAPD,
    P_PAGES,
    P_PB0,
    P_PRESSURE_OOM,
    P_PRESSURE_RECLAIM,
    P_START,
    P_WHIGH,
    PLACED_EVICTED,
    UNBALANCED,
    emit,
    list_add,
    list_del,
    zone_free_pages,
)
from replay.models.page_alloc import alloc_pages, free_pages
from replay.models.watermarks import zone_watermark_ok

# result codes of the non-compaction kinds (after compaction's, in model_events.result)


@njit(cache=True, inline="always", _nrt=False)
def lru_add(x, ob):  # type: ignore[no-untyped-def]
    """A reclaimable object joins the LRU tail (newest)."""
    list_add(x, 0, True, ob.lru_next, ob.lru_prev, ob.lru_head, ob.lru_tail)


@njit(cache=True, _nrt=False)
def lru_add_all(xs, ob):  # type: ignore[no-untyped-def]
    """:func:`lru_add` for each object of ``xs`` (int64), in that order: one call, not
    one per object (a fork adopts millions)."""
    for i in range(xs.shape[0]):
        lru_add(xs[i], ob)


@njit(cache=True, _nrt=False)
def lru_add_range(first, n, ob):  # type: ignore[no-untyped-def]
    """:func:`lru_add` for each placed reclaimable object of the ids ``first`` ..
    ``first + n - 1``, in id order (a fork's background objects: no array of their ids)."""
    for x in range(first, first + n):
        if (ob.obj_flags[x] & F_RECLAIM) != 0 and ob.placed[x] >= 0:
            lru_add(np.int64(x), ob)


@njit(cache=True, inline="always", _nrt=False)
def lru_del(x, ob):  # type: ignore[no-untyped-def]
    list_del(x, 0, ob.lru_next, ob.lru_prev, ob.lru_head, ob.lru_tail)


@njit(cache=True, _nrt=False)
def lru_split(x, first, n, ob):  # type: ignore[no-untyped-def]
    """``lru_add_split_folio``: the ``n`` pieces ``first ..`` of a split folio take object
    x's place on the LRU, in page order; x leaves it."""
    nxt, prv = ob.lru_next, ob.lru_prev
    before, after = prv[x], nxt[x]
    prev = before
    for i in range(n):
        y = first + i
        prv[y] = prev
        if prev >= 0:
            nxt[prev] = y
        else:
            ob.lru_head[0] = y
        prev = y
    nxt[prev] = after
    if after >= 0:
        prv[after] = prev
    else:
        ob.lru_tail[0] = prev
    nxt[x] = -1
    prv[x] = -1


@njit(cache=True, _nrt=False)
def evict(x, z, prm, ob, counters):  # type: ignore[no-untyped-def]
    """Reclaim object x's unit: freed to the buddy, the object marked evicted; pages."""
    start = prm[P_START]
    pfn = ob.placed[x]
    j = np.int64(ob.obj_order[x])
    lru_del(x, ob)
    pageblock_alloc_add(pfn, j, np.int64(ob.obj_mt[x]), -1, z.pageblock_alloc, prm[P_PB0])
    z.pg_obj[pfn - start] = -1
    ob.placed[x] = PLACED_EVICTED
    ob.obj_flags[x] |= F_EVICTED
    free_to_buddy(pfn, j, z, prm)
    n = np.int64(1) << j
    counters[C_EVICTED] += n
    return n


@njit(cache=True, _nrt=False)
def kswapd(k, seq, z, prm, ob, counters, me):  # type: ignore[no-untyped-def]
    """``balance_pgdat`` for order k with the run's victim policy; records one model event."""
    start = prm[P_START]
    pages = prm[P_PAGES]
    nr_free_mt = z.nr_free_mt.reshape((NR_PAGE_ORDERS, 3))
    budget = max(np.int64(8) << k, np.int64(32))
    evicted = np.int64(0)
    lo = np.int64(-1)
    hi = np.int64(-1)
    while True:
        free = zone_free_pages(z.nr_free)
        if zone_watermark_ok(k, prm[P_WHIGH], free, nr_free_mt, 0):
            break
        if evicted >= budget:
            break
        x = ob.lru_head[0]
        if x < 0:
            break
        pfn = ob.placed[x]
        if lo < 0 or pfn < lo:
            lo = pfn
        if pfn > hi:
            hi = pfn
        if prm[P_KSWAPD] == 2 and k > 0:
            # lumpy: every reclaimable unit in the aligned order-k block around the victim
            size = np.int64(1) << k
            b0 = max(pfn & ~(size - 1), start)
            b1 = min((pfn & ~(size - 1)) + size, start + pages)
            evicted += evict(x, z, prm, ob, counters)
            p = b0
            while p < b1:
                o = p - start
                y = z.pg_obj[o]
                if z.buddy_order[o] < 0 and y >= 0:
                    n = np.int64(1) << ob.obj_order[y]
                    if (ob.obj_flags[y] & F_RECLAIM) != 0:
                        evicted += evict(y, z, prm, ob, counters)
                    p += n
                elif z.buddy_order[o] >= 0:
                    p += np.int64(1) << z.buddy_order[o]
                else:
                    p += 1
        else:
            evicted += evict(x, z, prm, ob, counters)
    free = zone_free_pages(z.nr_free)
    ok = zone_watermark_ok(k, prm[P_WHIGH], free, nr_free_mt, 0)
    emit(z, me, counters, seq, K_KSWAPD, k, prm[P_KSWAPD] - 1, lo, hi + 1 if hi >= 0 else hi,
           -1, -1, 0, 0, 0, 0, evicted, BALANCED if ok else UNBALANCED)  # fmt: skip


@njit(cache=True, _nrt=False)
def vcompound_alloc(x, k, mt, cpu, seq, z, prm, counters, ef, mode, vc, cz, me):  # type: ignore[no-untyped-def]
    """Serve a failed order-k allocation as ``1 << k`` order-0 pages; the pool index or -1.

    ``vc`` is the pool of pfns, ``cz[CZ_VC_USED]`` its used length (the
    caller guarantees room for ``1 << k`` more).
    """
    n = np.int64(1) << k
    base = cz[CZ_VC_USED]
    got = np.int64(0)
    while got < n:
        pfn = alloc_pages(0, mt, cpu, z, prm, counters, ef, seq, mode)
        if pfn < 0:
            break
        vc[base + got] = pfn
        got += 1
    if got < n:
        for i in range(got):
            free_pages(vc[base + i], 0, mt, cpu, z, prm, counters)
        emit(z, me, counters, seq, K_VCOMPOUND, k, 0, -1, -1, -1, -1, 0, 0, 0, 0, 0, FAILED)
        return np.int64(-1)
    cz[CZ_VC_USED] = base + n
    counters[C_DEGRADED] += 1
    emit(z, me, counters, seq, K_VCOMPOUND, k, 0, -1, -1, -1, -1, 0, 0, n, 0, 0, DEGRADED)
    return base


@njit(cache=True, _nrt=False)
def pressure_check(seq, z, prm, counters, me):  # type: ignore[no-untyped-def]
    """Record a model event when free pages cross a notification threshold."""
    free = zone_free_pages(z.nr_free)
    level = np.int64(0)
    if prm[P_PRESSURE_OOM] > 0 and free < prm[P_PRESSURE_OOM]:
        level = 2
    elif prm[P_PRESSURE_RECLAIM] > 0 and free < prm[P_PRESSURE_RECLAIM]:
        level = 1
    if level != counters[C_PRESSURE]:
        counters[C_PRESSURE] = level
        emit(z, me, counters, seq, K_PRESSURE, -1, 0, -1, -1, -1, -1, 0, 0, 0, 0, 0,
               LEVEL_NORMAL + level)  # fmt: skip
