"""One trace event through a model zone: the allocator plus its defragmentation models.

``apply_event`` is the single path every event takes, from the engine's
chunk loop (``replay_chunk``) and from ``ZoneState``'s object API that the
tests drive: proactive compaction checks due by the event's time, the
allocation or free (replay.models.page_alloc), direct compaction and the
virtual compound fallback after a failure, kswapd after an allocation below
the low watermark, and pressure notifications.

Objects ``ob`` = (placed, obj_mt, obj_order, obj_flags, lru_next, lru_prev,
lru_head, lru_tail): per object its pfn (-1 failed, -2 evicted, <= -3 a
virtual compound in the pool ``vc``), request migratetype, order, F_* flags
(replay.models.compaction) and LRU links (replay.models.reclaim).
"""

from __future__ import annotations

import numpy as np

from replay.jit import njit
from replay.models.compaction import direct_compact, proactive_tick, take_captured
from replay.models.defrag import defrag_due
from replay.models.internal import (
    C_CLAIMS,
    C_DEGRADED,
    C_EF,
    C_EVICTED,
    C_EXCHANGED,
    C_ME,
    C_MIGRATED,
    C_PCP_PAGES,
    C_SCANNED,
    C_STEALS,
    COMPACT_DIRECT,
    COMPACT_PROACTIVE,
    CZ_DF_DUE,
    CZ_PCP_DECAY,
    CZ_VC_USED,
    EF_MAX_PER_ALLOC,
    F_CAPTURE,
    F_KERNEL_FAILED,
    F_MOVABLE,
    F_NORECLAIM,
    F_NORETRY,
    F_PINNED,
    F_POOLED,
    F_RECLAIM,
    F_VCOMPOUND,
    ME_MAX_PER_EVENT,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    NR_PAGE_ORDERS,
    OBJ_FLAGS_MASK,
    OUT_DEGRADED,
    OUT_EVICTED,
    OUT_FAILED,
    OUT_IGNORED,
    OUT_OK,
    P_COMPACT,
    P_DEFRAG_IDLE,
    P_GROUP,
    P_KSWAPD,
    P_POOL_ORDER,
    P_PRESSURE_OOM,
    P_PRESSURE_RECLAIM,
    P_START,
    P_UNITS,
    P_VCOMPOUND,
    P_WLOW,
    P_WMIN,
    PLACED_EVICTED,
    PLACED_FAILED,
    PLACED_SPLIT_BASE,
    PLACED_VC_BASE,
    PREFETCH_EVENTS,
    S_ALLOCS,
    S_BELOW_LOW,
    S_BELOW_MIN,
    S_EVICTED_FREES,
    S_FAILURES,
    S_FREES,
    S_IGNORED,
    S_POOL_FALLBACKS,
    S_SERVED_KERNEL_FAILED,
    prefetch_object,
)
from replay.models.page_alloc import alloc_pages, free_pages
from replay.models.pcp import decay_pcp_high
from replay.models.pools import pool_alloc, pool_free
from replay.models.reclaim import kswapd, lru_add, lru_del, pressure_check, vcompound_alloc
from replay.models.watermarks import zone_watermark_ok


@njit(cache=True, inline="always", _nrt=False)
def room(counters, ef, me, cz, vc):  # type: ignore[no-untyped-def]
    """Whether the buffers can take one more event's output."""
    return (
        counters[C_EF] + EF_MAX_PER_ALLOC <= ef.shape[0]
        and counters[C_ME] + ME_MAX_PER_EVENT <= me.shape[0]
        and cz[CZ_VC_USED] + (1 << NR_PAGE_ORDERS) <= vc.shape[0]
    )


@njit(cache=True, inline="always", _nrt=False)
def object_pfn(x, ob):  # type: ignore[no-untyped-def]
    """Where object x is: its pfn, or a split folio's first live piece's (-1: none left)."""
    base = ob.placed[x]
    if base > PLACED_SPLIT_BASE:
        return base
    first = PLACED_SPLIT_BASE - base
    for i in range(np.int64(1) << ob.obj_order[x]):
        p = ob.placed[first + i]
        if p >= 0:
            return p
    return np.int64(-1)


@njit(cache=True, inline="always", _nrt=False)
def free_object(x, off, k, c, z, prm, ob, counters, vc, pl):  # type: ignore[no-untyped-def]
    """Free ``1 << k`` pages at page ``off`` of placed object ``x`` (a unit, a pooled
    page or part of a virtual compound) on cpu ``c``."""
    start = prm[P_START]
    base = ob.placed[x]
    if base <= PLACED_SPLIT_BASE:
        # a folio compaction split (compaction.split_folio): each of the pages freed is a
        # piece of its own, wherever compaction took it; one kswapd evicted is gone
        first = PLACED_SPLIT_BASE - base + off
        for i in range(np.int64(1) << k):
            y = first + i
            p = ob.placed[y]
            if p < 0:
                continue
            if prm[P_UNITS] != 0 and z.pg_obj[p - start] == y:
                z.pg_obj[p - start] = -1
                if prm[P_KSWAPD] != 0 and (ob.obj_flags[y] & F_RECLAIM) != 0:
                    lru_del(y, ob)
            ob.placed[y] = PLACED_FAILED  # no piece of a later free
            free_pages(p, 0, np.int64(ob.obj_mt[y]), c, z, prm, counters)
    elif base <= PLACED_VC_BASE:
        idx = PLACED_VC_BASE - base + off
        m0 = np.int64(ob.obj_mt[x])
        for i in range(np.int64(1) << k):
            free_pages(vc[idx + i], 0, m0, c, z, prm, counters)
    elif ob.obj_flags[x] & F_POOLED:
        z.pg_obj[base - start] = -1
        pool_free(base, c, z, prm, pl, counters)
    else:
        j = np.int64(ob.obj_order[x])
        if prm[P_UNITS] != 0 and z.pg_obj[base - start] == x:
            # the unit ends: freed whole, or split by its first partial free
            z.pg_obj[base - start] = -1
            if off != 0 or k != j:
                ob.obj_flags[x] |= F_PINNED
            if prm[P_KSWAPD] != 0 and (ob.obj_flags[x] & F_RECLAIM) != 0:
                lru_del(x, ob)
        free_pages(base + off, k, np.int64(ob.obj_mt[x]), c, z, prm, counters)


@njit(cache=True, _nrt=False)
def give_back(x, k, c, z, prm, ob, counters, vc, pl):  # type: ignore[no-untyped-def]
    """Free object ``x`` (order k) at once and forget it: a request the recorded kernel
    failed that the model served. Not inlined: rare, and apply_event stays small."""
    free_object(x, 0, k, c, z, prm, ob, counters, vc, pl)
    ob.placed[x] = PLACED_FAILED


@njit(cache=True, inline="always", _nrt=False)
def apply_event(is_alloc, x, off, k, m, fl, own, c, ts, sq, z, prm, ob, cz, counters, ef, me,
                mode, vc, stats, pl):  # type: ignore[no-untyped-def]  # fmt: skip
    """Apply one event; returns (pfn, outcome). ``fl``: the event's F_* flags (allocations);
    ``own``: its pool owner (-1: none); ``pl``: the pools (replay.models.pools)."""
    start = prm[P_START]
    if prm[P_COMPACT] & COMPACT_PROACTIVE:
        proactive_tick(ts, sq, z, prm, ob, cz, counters, me)
    if ts >= cz[CZ_PCP_DECAY]:  # never, unless pcp tuning decays (ZoneState sets it)
        decay_pcp_high(ts, z, prm, cz, counters)
    pfn = np.int64(-1)
    outcome = OUT_OK
    if is_alloc:
        stats[S_ALLOCS] += 1
        free = np.int64(0)
        for j in range(NR_PAGE_ORDERS):
            free += z.nr_free[j] << j
        # __zone_watermark_ok, with a fast path for the common case: well above
        # the low watermark and a free block of order >= k (any type is 0..2 here)
        fast = free - ((np.int64(1) << k) - 1) > prm[P_WLOW]
        if fast and k > 0:
            fast = False
            for j in range(k, NR_PAGE_ORDERS):
                if z.nr_free[j] > 0:
                    fast = True
                    break
        below_low = False
        if not fast:
            nr_free_mt = z.nr_free_mt.reshape((NR_PAGE_ORDERS, MIGRATE_PCPTYPES))
            if not zone_watermark_ok(k, prm[P_WLOW], free, nr_free_mt, 0):
                below_low = True
                stats[S_BELOW_LOW] += 1
                if not zone_watermark_ok(k, prm[P_WMIN], free, nr_free_mt, 0):
                    stats[S_BELOW_MIN] += 1
        pfn = np.int64(-1)
        if prm[P_POOL_ORDER] > 0 and k == 0 and own >= 0:
            pfn = pool_alloc(x, own, m, c, sq, z, prm, ob, pl, counters, ef, mode, stats,
                               S_POOL_FALLBACKS)  # fmt: skip
            if pfn >= 0:
                fl = (fl & ~(F_MOVABLE | F_RECLAIM)) | F_POOLED
        direct = (fl & F_NORECLAIM) == 0  # may enter direct reclaim (and compaction)
        if pfn < 0 and (fl & F_CAPTURE) != 0:
            # served right after the recorded kernel's direct compaction for it: the block
            # the model's replay of that pass captured, if it captured one
            pfn = take_captured(k, m, z, prm)
        if pfn < 0:
            pfn = alloc_pages(k, m, c, z, prm, counters, ef, sq, mode, direct)
        if pfn < 0 and k > 0 and direct and (prm[P_COMPACT] & COMPACT_DIRECT):
            mt = m if 0 <= m < MIGRATE_PCPTYPES else MIGRATE_MOVABLE
            lmt = mt if prm[P_GROUP] != 0 else MIGRATE_MOVABLE
            pfn = direct_compact(k, mt, lmt, c, sq, z, prm, ob, cz, counters, ef, me, mode,
                                 (fl & F_NORETRY) != 0)  # fmt: skip
        ob.placed[x] = pfn
        ob.obj_mt[x] = m
        ob.obj_order[x] = k
        ob.obj_flags[x] = fl & OBJ_FLAGS_MASK
        if pfn >= 0:
            if prm[P_UNITS] != 0:
                z.pg_obj[pfn - start] = x
            if prm[P_KSWAPD] != 0 and (fl & F_RECLAIM) != 0:
                lru_add(x, ob)
        elif prm[P_VCOMPOUND] > 0 and k >= prm[P_VCOMPOUND] and (fl & F_VCOMPOUND):
            idx = vcompound_alloc(x, k, m, c, sq, z, prm, counters, ef, mode, vc, cz, me)
            if idx >= 0:
                ob.placed[x] = PLACED_VC_BASE - idx
                outcome = OUT_DEGRADED
        if ob.placed[x] == PLACED_FAILED:
            outcome = OUT_FAILED
            stats[S_FAILURES] += 1
        elif (fl & F_KERNEL_FAILED) != 0:
            # The recorded kernel failed this request and the model served it: the
            # what-if answer. The trace goes on as the kernel's caller did without the
            # block (it fell back or gave up), so the block goes straight back.
            stats[S_SERVED_KERNEL_FAILED] += 1
            give_back(x, k, c, z, prm, ob, counters, vc, pl)
        if below_low and prm[P_KSWAPD] != 0:
            kswapd(k, sq, z, prm, ob, counters, me)
    else:
        stats[S_FREES] += 1
        base = ob.placed[x]
        if base == PLACED_FAILED:
            outcome = OUT_IGNORED
            stats[S_IGNORED] += 1
        elif base == PLACED_EVICTED:
            outcome = OUT_EVICTED
            stats[S_EVICTED_FREES] += 1
        else:
            free_object(x, off, k, c, z, prm, ob, counters, vc, pl)
    if prm[P_PRESSURE_RECLAIM] > 0 or prm[P_PRESSURE_OOM] > 0:
        pressure_check(sq, z, prm, counters, me)
    return pfn, outcome


@njit(cache=True, nogil=True, _nrt=False)
def replay_chunk(  # type: ignore[no-untyped-def]
    i0, i1, ev, keep_row, keep_counters, ob, z, prm, counters, ef, me, cz, mode, vc, stats, r0,
    out, pl,
):  # fmt: skip
    """Apply events ``i0 .. i1-1`` of a chunk; returns (next event, next output row).

    ``ev`` = (seq, is_alloc, obj, offset, order, migratetype, cpu, ts_ns,
    flags, owner) arrays. Also stops before an event that finds an active
    defragmentation pass due (``cz[CZ_DF_DUE]`` set): the caller runs it.
    An allocation places ``placed[obj]``; a free frees
    ``placed[obj] + offset`` at its order (ignored when the allocation failed,
    a no-op when kswapd evicted the object). Rows with ``keep_row`` go to
    ``out`` = (pfn, outcome, z.nr_free[.., 11], has_counters, failures,
    pcp_pages, fallbacks, migrated, scanned, evicted, degraded, exchanged). Stops early,
    before an event, when an output buffer could overflow; the caller
    flushes or grows it and calls again.
    """
    seq, is_alloc, obj, offset, order, mtype, cpu, ts, flags, owner = ev
    out_pfn, out_outcome, out_nr, out_has, out_fail, out_pcp, out_fb = out[:7]
    out_mig, out_scan, out_evict, out_degr, out_exch = out[7:]
    defrag = prm[P_DEFRAG_IDLE] > 0  # hoisted: the check costs 10% of the loop otherwise
    # Only models that keep units move, evict, degrade or exchange anything: without
    # them those five cumulative counters stay 0, as do the caller's fresh buffers.
    units = prm[P_UNITS] != 0
    r = r0
    for i in range(i0, i1):
        if i + PREFETCH_EVENTS < i1:
            prefetch_object(obj[i + PREFETCH_EVENTS], ob)
        if not room(counters, ef, me, cz, vc):
            return i, r
        if defrag:
            if cz[CZ_DF_DUE] == 0 and defrag_due(ts[i], z, prm, cz):
                cz[CZ_DF_DUE] = 1
                return i, r
            cz[CZ_DF_DUE] = 0
        e = np.uintp(i)  # the event as an unsigned index: no negative-index wraparound code
        pfn, outcome = apply_event(
            is_alloc[e], obj[e], np.int64(offset[e]), np.int64(order[e]), np.int64(mtype[e]),
            flags[e], np.int64(owner[e]), np.int64(cpu[e]), ts[e], seq[e], z, prm, ob, cz,
            counters, ef, me, mode, vc, stats, pl,
        )  # fmt: skip
        if keep_row[e]:
            ur = np.uintp(r)  # unsigned: no negative-index wraparound code on each store
            out_pfn[ur] = pfn
            out_outcome[ur] = outcome
            out_fail[ur] = stats[S_FAILURES]
            out_has[ur] = keep_counters[e]
            out_pcp[ur] = counters[C_PCP_PAGES]
            out_fb[ur] = counters[C_CLAIMS] + counters[C_STEALS]
            if units:
                out_mig[ur] = counters[C_MIGRATED]
                out_scan[ur] = counters[C_SCANNED]
                out_evict[ur] = counters[C_EVICTED]
                out_degr[ur] = counters[C_DEGRADED]
                out_exch[ur] = counters[C_EXCHANGED]
            if keep_counters[e]:
                for j in range(NR_PAGE_ORDERS):
                    out_nr[ur, j] = z.nr_free[j]
            r += 1
    return i1, r
