"""One trace event through a model zone: the allocator plus its defragmentation models.

``apply_event`` is the single path every event takes, from the engine's
chunk loop (``replay_chunk``) and from ``ZoneState``'s object API that the
tests drive: proactive compaction checks due by the event's time, the
allocation or free (replay.models.mobility), direct compaction and the
virtual compound fallback after a failure, kswapd after an allocation below
the low watermark, and pressure notifications.

Objects ``ob`` = (placed, obj_mt, obj_order, obj_flags, lru_next, lru_prev,
lru_head, lru_tail): per object its pfn (-1 failed, -2 evicted, <= -3 a
virtual compound in the pool ``vc``), request migratetype, order, F_* flags
(replay.models.compaction) and LRU links (replay.models.reclaim).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from replay.models import compaction as C
from replay.models import defrag as D
from replay.models import mobility as M
from replay.models import pools as P
from replay.models import reclaim as R
from replay.models.buddy import NR_PAGE_ORDERS
from replay.models.watermarks import zone_watermark_ok

S_ALLOCS, S_FREES, S_FAILURES, S_IGNORED, S_BELOW_LOW, S_BELOW_MIN, S_EVICTED_FREES = range(7)
S_POOL_FALLBACKS = 7  # pooled requests served by the normal allocator (no chunk to be had)
NR_STATS = 8
OUT_OK = 0
OUT_FAILED = 1
OUT_IGNORED = 2
OUT_EVICTED = 4  # index 3 is "inconsistent" (observed runs)
OUT_DEGRADED = 5


def new_objects(n: int) -> tuple[np.ndarray, ...]:
    """Arrays for ``n`` objects, none placed yet.

    obj_mt, obj_order and obj_flags are columns of one (n, 4) int8 array: a
    free reads all three, and with random object ids each separate array was
    a cache miss of its own.
    """
    info = np.zeros((n, 4), np.int8)
    return (
        np.full(n, -1, np.int64),  # placed
        info[:, 0],  # obj_mt
        info[:, 1],  # obj_order
        info[:, 2],  # obj_flags
        np.full(n, -1, np.int32),  # lru_next
        np.full(n, -1, np.int32),  # lru_prev
        np.full(1, -1, np.int64),  # lru_head
        np.full(1, -1, np.int64),  # lru_tail
    )


@nb.njit(cache=True, inline="always", _nrt=False)
def room(counters, ef, me, cz, vc):  # type: ignore[no-untyped-def]
    """Whether the buffers can take one more event's output."""
    return (
        counters[M.C_EF] + M.EF_MAX_PER_ALLOC <= ef.shape[0]
        and counters[M.C_ME] + C.ME_MAX_PER_EVENT <= me.shape[0]
        and cz[R.CZ_VC_USED] + (1 << NR_PAGE_ORDERS) <= vc.shape[0]
    )


@nb.njit(cache=True, inline="always", _nrt=False)
def apply_event(is_alloc, x, off, k, m, fl, own, c, ts, sq, st, prm, ob, cz, counters, ef, me,
                mode, vc, stats, pl):  # type: ignore[no-untyped-def]  # fmt: skip
    """Apply one event; returns (pfn, outcome). ``fl``: the event's F_* flags (allocations);
    ``own``: its pool owner (-1: none); ``pl``: the pools (replay.models.pools)."""
    placed = ob[0]
    start = prm[M.P_START]
    nr_free = st[5]
    if prm[M.P_COMPACT] & C.COMPACT_PROACTIVE:
        C.proactive_tick(ts, sq, st, prm, ob, cz, counters, me)
    pfn = np.int64(-1)
    outcome = OUT_OK
    if is_alloc:
        stats[S_ALLOCS] += 1
        free = np.int64(0)
        for j in range(NR_PAGE_ORDERS):
            free += nr_free[j] << j
        # __zone_watermark_ok, with a fast path for the common case: well above
        # the low watermark and a free block of order >= k (any type is 0..2 here)
        fast = free - ((np.int64(1) << k) - 1) > prm[M.P_WLOW]
        if fast and k > 0:
            fast = False
            for j in range(k, NR_PAGE_ORDERS):
                if nr_free[j] > 0:
                    fast = True
                    break
        below_low = False
        if not fast:
            nr_free_mt = st[6].reshape((NR_PAGE_ORDERS, M.MIGRATE_PCPTYPES))
            if not zone_watermark_ok(k, prm[M.P_WLOW], free, nr_free_mt, 0):
                below_low = True
                stats[S_BELOW_LOW] += 1
                if not zone_watermark_ok(k, prm[M.P_WMIN], free, nr_free_mt, 0):
                    stats[S_BELOW_MIN] += 1
        pfn = np.int64(-1)
        if prm[M.P_POOL_ORDER] > 0 and k == 0 and own >= 0:
            pfn = P.pool_alloc(x, own, m, c, sq, st, prm, ob, pl, counters, ef, mode, stats,
                               S_POOL_FALLBACKS)  # fmt: skip
            if pfn >= 0:
                fl = (fl & ~(C.F_MOVABLE | C.F_RECLAIM)) | P.F_POOLED
        direct = (fl & C.F_NORECLAIM) == 0  # may enter direct reclaim (and compaction)
        if pfn < 0:
            pfn = M.alloc_pages(k, m, c, st, prm, counters, ef, sq, mode, direct)
        if pfn < 0 and k > 0 and direct and (prm[M.P_COMPACT] & C.COMPACT_DIRECT):
            mt = m if 0 <= m < M.MIGRATE_PCPTYPES else M.MIGRATE_MOVABLE
            lmt = mt if prm[M.P_GROUP] != 0 else M.MIGRATE_MOVABLE
            pfn = C.direct_compact(k, mt, lmt, c, sq, st, prm, ob, cz, counters, ef, me, mode)
        placed[x] = pfn
        ob[1][x] = m
        ob[2][x] = k
        ob[3][x] = fl
        if pfn >= 0:
            if prm[M.P_UNITS] != 0:
                st[13][pfn - start] = x
            if prm[M.P_KSWAPD] != 0 and (fl & C.F_RECLAIM) != 0:
                R.lru_add(x, ob)
        elif prm[M.P_VCOMPOUND] > 0 and k >= prm[M.P_VCOMPOUND] and (fl & C.F_VCOMPOUND):
            idx = R.vcompound_alloc(x, k, m, c, sq, st, prm, counters, ef, mode, vc, cz, me)
            if idx >= 0:
                placed[x] = R.PLACED_VC_BASE - idx
                outcome = OUT_DEGRADED
        if placed[x] == C.PLACED_FAILED:
            outcome = OUT_FAILED
            stats[S_FAILURES] += 1
        if below_low and prm[M.P_KSWAPD] != 0:
            R.kswapd(k, sq, st, prm, ob, counters, me)
    else:
        stats[S_FREES] += 1
        base = placed[x]
        if base == C.PLACED_FAILED:
            outcome = OUT_IGNORED
            stats[S_IGNORED] += 1
        elif base == C.PLACED_EVICTED:
            outcome = OUT_EVICTED
            stats[S_EVICTED_FREES] += 1
        elif base <= R.PLACED_VC_BASE:
            idx = R.PLACED_VC_BASE - base + off
            m0 = np.int64(ob[1][x])
            for i in range(np.int64(1) << k):
                M.free_pages(vc[idx + i], 0, m0, c, st, prm, counters)
        elif ob[3][x] & P.F_POOLED:
            st[13][base - start] = -1
            P.pool_free(base, c, st, prm, pl, counters)
        else:
            j = np.int64(ob[2][x])
            if prm[M.P_UNITS] != 0 and st[13][base - start] == x:
                # the unit ends: freed whole, or split by its first partial free
                st[13][base - start] = -1
                if off != 0 or k != j:
                    ob[3][x] |= C.F_PINNED
                if prm[M.P_KSWAPD] != 0 and (ob[3][x] & C.F_RECLAIM) != 0:
                    R.lru_del(x, ob)
            M.free_pages(base + off, k, np.int64(ob[1][x]), c, st, prm, counters)
    if prm[M.P_PRESSURE_RECLAIM] > 0 or prm[M.P_PRESSURE_OOM] > 0:
        R.pressure_check(sq, st, prm, counters, me)
    return pfn, outcome


@nb.njit(cache=True, nogil=True, _nrt=False)
def replay_chunk(  # type: ignore[no-untyped-def]
    i0, i1, ev, keep_row, keep_counters, ob, st, prm, counters, ef, me, cz, mode, vc, stats, r0,
    out, pl,
):  # fmt: skip
    """Apply events ``i0 .. i1-1`` of a chunk; returns (next event, next output row).

    ``ev`` = (seq, is_alloc, obj, offset, order, migratetype, cpu, ts_ns,
    flags, owner) arrays. Also stops before an event that finds an active
    defragmentation pass due (``cz[D.CZ_DF_DUE]`` set): the caller runs it.
    An allocation places ``placed[obj]``; a free frees
    ``placed[obj] + offset`` at its order (ignored when the allocation failed,
    a no-op when kswapd evicted the object). Rows with ``keep_row`` go to
    ``out`` = (pfn, outcome, nr_free[.., 11], has_counters, failures,
    pcp_pages, fallbacks, migrated, scanned, evicted, degraded, exchanged). Stops early,
    before an event, when an output buffer could overflow; the caller
    flushes or grows it and calls again.
    """
    seq, is_alloc, obj, offset, order, mtype, cpu, ts, flags, owner = ev
    out_pfn, out_outcome, out_nr, out_has, out_fail, out_pcp, out_fb = out[:7]
    out_mig, out_scan, out_evict, out_degr, out_exch = out[7:]
    nr_free = st[5]
    defrag = prm[M.P_DEFRAG_IDLE] > 0  # hoisted: the check costs 10% of the loop otherwise
    # Only models that keep units move, evict, degrade or exchange anything: without
    # them those five cumulative counters stay 0, as do the caller's fresh buffers.
    units = prm[M.P_UNITS] != 0
    r = r0
    for i in range(i0, i1):
        if not room(counters, ef, me, cz, vc):
            return i, r
        if defrag:
            if cz[D.CZ_DF_DUE] == 0 and D.defrag_due(ts[i], st, prm, cz):
                cz[D.CZ_DF_DUE] = 1
                return i, r
            cz[D.CZ_DF_DUE] = 0
        pfn, outcome = apply_event(
            is_alloc[i], obj[i], np.int64(offset[i]), np.int64(order[i]), np.int64(mtype[i]),
            flags[i], np.int64(owner[i]), np.int64(cpu[i]), ts[i], seq[i], st, prm, ob, cz,
            counters, ef, me, mode, vc, stats, pl,
        )  # fmt: skip
        if keep_row[i]:
            out_pfn[r] = pfn
            out_outcome[r] = outcome
            out_fail[r] = stats[S_FAILURES]
            out_has[r] = keep_counters[i]
            out_pcp[r] = counters[M.C_PCP_PAGES]
            out_fb[r] = counters[M.C_CLAIMS] + counters[M.C_STEALS]
            if units:
                out_mig[r] = counters[M.C_MIGRATED]
                out_scan[r] = counters[M.C_SCANNED]
                out_evict[r] = counters[M.C_EVICTED]
                out_degr[r] = counters[M.C_DEGRADED]
                out_exch[r] = counters[M.C_EXCHANGED]
            if keep_counters[i]:
                for j in range(NR_PAGE_ORDERS):
                    out_nr[r, j] = nr_free[j]
            r += 1
    return i1, r
