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

import numba as nb
import numpy as np

from replay.models import compaction as C
from replay.models import mobility as M
from replay.models.buddy import NR_PAGE_ORDERS, list_add, list_del
from replay.models.watermarks import zone_watermark_ok

# result codes of the non-compaction kinds (after compaction's, in model_events.result)
BALANCED, UNBALANCED, DEGRADED, FAILED, LEVEL_NORMAL, LEVEL_RECLAIM, LEVEL_OOM = range(6, 13)
RESULTS = (*C.RESULTS, "BALANCED", "UNBALANCED", "DEGRADED", "FAILED", "normal", "reclaim",
           "oom")  # fmt: skip
PLACED_VC_BASE = -3  # placed[x] = PLACED_VC_BASE - index into the vcompound page pool


@nb.njit(cache=True, inline="always", _nrt=False)
def lru_add(x, ob):  # type: ignore[no-untyped-def]
    """A reclaimable object joins the LRU tail (newest)."""
    list_add(x, 0, True, ob[4], ob[5], ob[6], ob[7])


@nb.njit(cache=True, inline="always", _nrt=False)
def lru_del(x, ob):  # type: ignore[no-untyped-def]
    list_del(x, 0, ob[4], ob[5], ob[6], ob[7])


@nb.njit(cache=True, _nrt=False)
def evict(x, st, prm, ob, counters):  # type: ignore[no-untyped-def]
    """Reclaim object x's unit: freed to the buddy, the object marked evicted; pages."""
    start = prm[M.P_START]
    pfn = ob[0][x]
    j = np.int64(ob[2][x])
    lru_del(x, ob)
    M._pb_alloc_add(pfn, j, np.int64(ob[1][x]), -1, st[9], prm[M.P_PB0])
    st[13][pfn - start] = -1
    ob[0][x] = C.PLACED_EVICTED
    ob[3][x] |= C.F_EVICTED
    M.free_to_buddy(pfn, j, st, prm)
    n = np.int64(1) << j
    counters[M.C_EVICTED] += n
    return n


@nb.njit(cache=True, _nrt=False)
def kswapd(k, seq, st, prm, ob, counters, me):  # type: ignore[no-untyped-def]
    """``balance_pgdat`` for order k with the run's victim policy; records one model event."""
    start = prm[M.P_START]
    pages = prm[M.P_PAGES]
    nr_free_mt = st[6].reshape((NR_PAGE_ORDERS, 3))
    budget = max(np.int64(8) << k, np.int64(32))
    evicted = np.int64(0)
    lo = np.int64(-1)
    hi = np.int64(-1)
    while True:
        free = C.zone_free_pages(st[5])
        if zone_watermark_ok(k, prm[M.P_WHIGH], free, nr_free_mt, 0):
            break
        if evicted >= budget:
            break
        x = ob[6][0]
        if x < 0:
            break
        pfn = ob[0][x]
        if lo < 0 or pfn < lo:
            lo = pfn
        if pfn > hi:
            hi = pfn
        if prm[M.P_KSWAPD] == 2 and k > 0:
            # lumpy: every reclaimable unit in the aligned order-k block around the victim
            size = np.int64(1) << k
            b0 = max(pfn & ~(size - 1), start)
            b1 = min((pfn & ~(size - 1)) + size, start + pages)
            evicted += evict(x, st, prm, ob, counters)
            p = b0
            while p < b1:
                o = p - start
                y = st[13][o]
                if st[0][o] < 0 and y >= 0:
                    n = np.int64(1) << ob[2][y]
                    if (ob[3][y] & C.F_RECLAIM) != 0:
                        evicted += evict(y, st, prm, ob, counters)
                    p += n
                elif st[0][o] >= 0:
                    p += np.int64(1) << st[0][o]
                else:
                    p += 1
        else:
            evicted += evict(x, st, prm, ob, counters)
    free = C.zone_free_pages(st[5])
    ok = zone_watermark_ok(k, prm[M.P_WHIGH], free, nr_free_mt, 0)
    C.emit(st, me, counters, seq, C.K_KSWAPD, k, prm[M.P_KSWAPD] - 1, lo, hi + 1 if hi >= 0 else hi,
           -1, -1, 0, 0, 0, 0, evicted, BALANCED if ok else UNBALANCED)  # fmt: skip


@nb.njit(cache=True, _nrt=False)
def vcompound_alloc(x, k, mt, cpu, seq, st, prm, counters, ef, mode, vc, cz, me):  # type: ignore[no-untyped-def]
    """Serve a failed order-k allocation as ``1 << k`` order-0 pages; the pool index or -1.

    ``vc`` is the pool of pfns, ``cz[CZ_VC_USED]`` its used length (the
    caller guarantees room for ``1 << k`` more).
    """
    n = np.int64(1) << k
    base = cz[CZ_VC_USED]
    got = np.int64(0)
    while got < n:
        pfn = M.alloc_pages(0, mt, cpu, st, prm, counters, ef, seq, mode)
        if pfn < 0:
            break
        vc[base + got] = pfn
        got += 1
    if got < n:
        for i in range(got):
            M.free_pages(vc[base + i], 0, mt, cpu, st, prm, counters)
        C.emit(st, me, counters, seq, C.K_VCOMPOUND, k, 0, -1, -1, -1, -1, 0, 0, 0, 0, 0, FAILED)
        return np.int64(-1)
    cz[CZ_VC_USED] = base + n
    counters[M.C_DEGRADED] += 1
    C.emit(st, me, counters, seq, C.K_VCOMPOUND, k, 0, -1, -1, -1, -1, 0, 0, n, 0, 0, DEGRADED)
    return base


CZ_VC_USED = 9  # cz slot: used length of the vcompound pool


@nb.njit(cache=True, _nrt=False)
def pressure_check(seq, st, prm, counters, me):  # type: ignore[no-untyped-def]
    """Record a model event when free pages cross a notification threshold."""
    free = C.zone_free_pages(st[5])
    level = np.int64(0)
    if prm[M.P_PRESSURE_OOM] > 0 and free < prm[M.P_PRESSURE_OOM]:
        level = 2
    elif prm[M.P_PRESSURE_RECLAIM] > 0 and free < prm[M.P_PRESSURE_RECLAIM]:
        level = 1
    if level != counters[M.C_PRESSURE]:
        counters[M.C_PRESSURE] = level
        C.emit(st, me, counters, seq, C.K_PRESSURE, -1, 0, -1, -1, -1, -1, 0, 0, 0, 0, 0,
               LEVEL_NORMAL + level)  # fmt: skip
