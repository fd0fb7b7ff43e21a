"""The zonelist: a node of two zones, the preferred one (Normal) and the one below it (DMA32).

Follows mm/page_alloc.c of Linux 6.18. ``__alloc_frozen_pages_noprof`` sets
ALLOC_NOFRAGMENT when the preferred zone is ZONE_NORMAL and DMA32 is populated
(``alloc_flags_nofragment``), and ``get_page_from_freelist`` walks the zonelist
(Normal, then DMA32), taking a zone whose free pages pass ``zone_watermark_fast``
at the low watermark plus the zone's ``lowmem_reserve`` for the request's highest
zone; a pass that finds no page under ALLOC_NOFRAGMENT walks the zonelist again
without it (a lower zone's unfragmented memory before fallbacks in Normal). The
slow path (``__alloc_pages_slowpath``, ``gfp_to_alloc_flags``) walks it once more
at the min watermark, without ALLOC_NOFRAGMENT. When no zone passes, the request
goes to the preferred zone's own slow path as a one-zone model runs it (drain the
pcp lists, direct compaction: replay.models.events), which ignores the watermark.
A request whose zonelist starts at DMA32 (GFP_DMA32, ``F_LOWER_ZONE``) is served
there.

The lower zone has the allocator (pcp lists with their tuning, grouping by mobility)
and direct compaction, as the preferred one; its fallbacks are not recorded (the
extfrag rows are the preferred zone's), its compactions are model events like the
preferred zone's. The other models (proactive compaction, active defragmentation,
exchange) act on the preferred zone as a one-zone run has them; pools, virtual
compounds, kswapd and pressure levels do not combine with a zonelist (the config
refuses them). Objects keep their pfns in ``placed`` (real pfns); a free goes to the
zone holding its pfn.

Not modelled: the dirty limits of ``__GFP_WRITE`` (``node_dirty_ok``), watermark
boosting, highatomic reserves, the Movable and DMA zones (a run leaves out what the
kernel placed in DMA).
"""

from __future__ import annotations

import numpy as np

from replay.jit import njit
from replay.models.compaction import direct_compact, proactive_tick, take_captured
from replay.models.defrag import defrag_due
from replay.models.events import free_object, object_pfn, room
from replay.models.internal import (
    C_CLAIMS,
    C_DEGRADED,
    C_DRAINS,
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
    F_CAPTURE,
    F_KERNEL_FAILED,
    F_LOWER_ZONE,
    F_NORECLAIM,
    F_NORETRY,
    FALLBACKS,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    NR_PAGE_ORDERS,
    NR_PCP_LISTS,
    OBJ_FLAGS_MASK,
    OUT_EVICTED,
    OUT_FAILED,
    OUT_IGNORED,
    OUT_OK,
    P_COMPACT,
    P_DEFRAG_IDLE,
    P_GROUP,
    P_LOWMEM_RESERVE,
    P_NOFRAG,
    P_PAGES,
    P_PCP,
    P_START,
    P_UNITS,
    P_WLOW,
    P_WMIN,
    PAGE_ALLOC_COSTLY_ORDER,
    PAGEBLOCK_ORDER,
    PLACED_EVICTED,
    PLACED_FAILED,
    S_ALLOCS,
    S_BELOW_LOW,
    S_BELOW_MIN,
    S_EVICTED_FREES,
    S_FAILURES,
    S_FREES,
    S_IGNORED,
    S_SERVED_KERNEL_FAILED,
    order_to_pindex,
    pcp_allowed_order,
)
from replay.models.page_alloc import alloc_pages
from replay.models.pcp import decay_pcp_high, drain_all
from replay.models.watermarks import zone_watermark_ok

ZONE_NONE = -1  # no zone passes its min watermark
ZONE_PREFERRED = 0
ZONE_LOWER = 1


@njit(cache=True, _nrt=False)
def zone_watermark_fast(k, mark, z):  # type: ignore[no-untyped-def]
    """``zone_watermark_fast``: the zone's buddy free pages (NR_FREE_PAGES; pcp pages do
    not count) above ``mark`` (pages, the lowmem reserve included) for order ``k``, with a
    free block of order >= k on a MIGRATE_PCPTYPES list."""
    free = np.int64(0)
    for j in range(NR_PAGE_ORDERS):
        free += z.nr_free[j] << j
    if k == 0 and free > mark:
        return True
    nr_free_mt = z.nr_free_mt.reshape((NR_PAGE_ORDERS, MIGRATE_PCPTYPES))
    return zone_watermark_ok(k, mark, free, nr_free_mt, 0)


@njit(cache=True, _nrt=False)
def zone_serves(k, lmt, cpu, nofrag, z, prm):  # type: ignore[no-untyped-def]
    """Whether ``rmqueue`` would find a block of order ``k`` for list type ``lmt`` on
    ``cpu`` (pages unchanged): the head of the cpu's pcp list, else ``__rmqueue``'s
    own-type block (``__rmqueue_smallest``), a fallback pageblock to claim (only whole
    pageblocks, order >= pageblock_order, under ALLOC_NOFRAGMENT: ``__rmqueue_claim``)
    or, without it, any fallback block to steal (``__rmqueue_steal``)."""
    if prm[P_PCP] != 0 and pcp_allowed_order(k):
        if z.pcp_head[cpu * NR_PCP_LISTS + order_to_pindex(k, lmt)] >= 0:
            return True
    for j in range(k, NR_PAGE_ORDERS):
        if z.free_head[j * MIGRATE_PCPTYPES + lmt] >= 0:
            return True
    lo = max(k, PAGEBLOCK_ORDER) if nofrag else k
    for j in range(lo, NR_PAGE_ORDERS):
        for i in range(2):
            if z.free_head[j * MIGRATE_PCPTYPES + FALLBACKS[lmt, i]] >= 0:
                return True
    return False


@njit(cache=True, _nrt=False)
def zonelist_zone(k, mt, cpu, only_lower, z, prm, zl, prml):  # type: ignore[no-untyped-def]
    """The zone of the node that serves a request of order ``k``, type ``mt`` on ``cpu``
    whose zonelist is (``z``, ``zl``), or (``only_lower``, GFP_DMA32) ``zl`` alone:
    ZONE_PREFERRED, ZONE_LOWER, or ZONE_NONE when no zone passes its min watermark.

    ``get_page_from_freelist`` at the low watermark, with ALLOC_NOFRAGMENT first when
    the preferred zone sets it (``prm[P_NOFRAG]``: ``alloc_flags_nofragment``), then
    without; then the slow path's pass at the min watermark (``gfp_to_alloc_flags``,
    no ALLOC_NOFRAGMENT). The lower zone's marks carry its lowmem_reserve for requests
    whose highest zone is the preferred one (none for its own requests)."""
    if mt < 0 or mt >= MIGRATE_PCPTYPES:
        mt = MIGRATE_MOVABLE
    lmt = mt if prm[P_GROUP] != 0 else MIGRATE_MOVABLE
    if only_lower:
        if zone_watermark_fast(k, prml[P_WLOW], zl) and zone_serves(k, lmt, cpu, False, zl,
                                                                    prml):  # fmt: skip
            return ZONE_LOWER
        if zone_watermark_fast(k, prml[P_WMIN], zl) and zone_serves(k, lmt, cpu, False, zl,
                                                                    prml):  # fmt: skip
            return ZONE_LOWER
        return ZONE_NONE
    reserve = prml[P_LOWMEM_RESERVE]
    ok_n = zone_watermark_fast(k, prm[P_WLOW], z)
    ok_l = zone_watermark_fast(k, prml[P_WLOW] + reserve, zl)
    if prm[P_NOFRAG] != 0:
        if ok_n and zone_serves(k, lmt, cpu, True, z, prm):
            return ZONE_PREFERRED
        if ok_l and zone_serves(k, lmt, cpu, True, zl, prml):
            return ZONE_LOWER
    if ok_n and zone_serves(k, lmt, cpu, False, z, prm):
        return ZONE_PREFERRED
    if ok_l and zone_serves(k, lmt, cpu, False, zl, prml):
        return ZONE_LOWER
    if zone_watermark_fast(k, prm[P_WMIN], z) and zone_serves(k, lmt, cpu, False, z, prm):
        return ZONE_PREFERRED
    if zone_watermark_fast(k, prml[P_WMIN] + reserve, zl) and zone_serves(
        k, lmt, cpu, False, zl, prml
    ):
        return ZONE_LOWER
    return ZONE_NONE


@njit(cache=True, inline="always", _nrt=False)
def in_zone(pfn, prm):  # type: ignore[no-untyped-def]
    """Whether ``pfn`` lies in the zone of ``prm``."""
    return prm[P_START] <= pfn < prm[P_START] + prm[P_PAGES]


@njit(cache=True, _nrt=False)
def node_compact(k, m, lmt, only_lower, c, sq, z, prm, ob, cz, counters, ef, me, mode, zl,
                 prml, czl, cl, efl, mel, model, noretry=False):  # type: ignore[no-untyped-def]  # fmt: skip
    """``try_to_compact_pages``: direct compaction zone by zone in zonelist order, until one
    serves the request. Returns (pfn, zone); pfn -1 none did."""
    mt = m if 0 <= m < MIGRATE_PCPTYPES else MIGRATE_MOVABLE
    if not only_lower:
        pfn = direct_compact(k, mt, lmt, c, sq, z, prm, ob, cz, counters, ef, me, mode, noretry)
        if pfn >= 0:
            return pfn, ZONE_PREFERRED
    pfn = direct_compact(k, mt, lmt, c, sq, zl, prml, ob, czl, cl, efl, mel, model, noretry)
    cl[C_EF] = 0
    # the lower zone's compaction rows join the run's model events
    for r in range(cl[C_ME]):
        for j in range(me.shape[1]):
            me[counters[C_ME], j] = mel[r, j]
        counters[C_ME] += 1
    cl[C_ME] = 0
    if pfn >= 0:
        return pfn, ZONE_LOWER
    return np.int64(-1), ZONE_PREFERRED


@njit(cache=True, _nrt=False)
def node_slowpath(k, m, lmt, only_lower, direct, noretry, c, sq, z, prm, ob, cz, counters, ef,
                  me, mode, zl, prml, czl, cl, efl, mel, model):  # type: ignore[no-untyped-def]  # fmt: skip
    """No zone of the zonelist serves at its min watermark: ``__alloc_pages_slowpath``.

    A request that may enter direct reclaim compacts first when its order is costly
    (> PAGE_ALLOC_COSTLY_ORDER) or it is a non-movable order > 0, zone by zone; a costly
    __GFP_NORETRY request that compaction did not serve gives up there (the kernel gives
    up at once when compaction was skipped or deferred, else after one direct reclaim,
    whose drain of every pcp list the trace records: ``recorded_drains``). Then the
    reclaim the trace's frees record stands in as a one-zone model has it
    (replay.models.page_alloc.alloc_pages): each zone in zonelist order serves what it
    has whatever its watermark, then, once, every pcp list of the node is drained
    (``drain_all_pages`` after direct reclaim found nothing) and the zones tried again,
    then (order > 0, not compacted yet) direct compaction. A request that cannot enter
    direct reclaim only tries the zones. Returns (pfn, zone); pfn -1 failed."""
    compacting = direct and k > 0 and (prm[P_COMPACT] & COMPACT_DIRECT) != 0
    mt = m if 0 <= m < MIGRATE_PCPTYPES else MIGRATE_MOVABLE
    early = compacting and (k > PAGE_ALLOC_COSTLY_ORDER or mt != MIGRATE_MOVABLE)
    if early:
        pfn, zi = node_compact(k, m, lmt, only_lower, c, sq, z, prm, ob, cz, counters, ef, me,
                               mode, zl, prml, czl, cl, efl, mel, model, noretry)  # fmt: skip
        if pfn >= 0:
            return pfn, zi
        if noretry and k > PAGE_ALLOC_COSTLY_ORDER:
            return np.int64(-1), ZONE_PREFERRED
    for attempt in range(2):
        if not only_lower:
            pfn = alloc_pages(k, m, c, z, prm, counters, ef, sq, mode, False)
            if pfn >= 0:
                return pfn, ZONE_PREFERRED
        pfn = alloc_pages(k, m, c, zl, prml, cl, efl, sq, model, False)
        cl[C_EF] = 0  # the lower zone's fallbacks are not recorded
        if pfn >= 0:
            return pfn, ZONE_LOWER
        if (attempt == 0 and direct and prm[P_PCP] != 0
                and counters[C_PCP_PAGES] + cl[C_PCP_PAGES] > 0):  # fmt: skip
            counters[C_DRAINS] += 1
            drain_all(z, prm, counters)
            drain_all(zl, prml, cl)
        else:
            break
    if compacting and not early:
        return node_compact(k, m, lmt, only_lower, c, sq, z, prm, ob, cz, counters, ef, me,
                            mode, zl, prml, czl, cl, efl, mel, model, noretry)  # fmt: skip
    return np.int64(-1), ZONE_PREFERRED


@njit(cache=True, _nrt=False)
def node_alloc(x, k, m, fl, c, sq, z, prm, ob, cz, counters, ef, me, mode, vc, stats, pl, zl,
               prml, czl, cl, efl, mel, model):  # type: ignore[no-untyped-def]  # fmt: skip
    """Allocate object ``x`` (order k, type m, F_* flags fl) on cpu ``c`` in the node:
    the block a recorded direct compaction captured for it, else the zone the zonelist
    gives (:func:`zonelist_zone`), else :func:`node_slowpath`. Returns (pfn, outcome)."""
    stats[S_ALLOCS] += 1
    if not zone_watermark_fast(k, prm[P_WLOW], z):  # the preferred zone's, as apply_event
        stats[S_BELOW_LOW] += 1
        if not zone_watermark_fast(k, prm[P_WMIN], z):
            stats[S_BELOW_MIN] += 1
    mt = m if 0 <= m < MIGRATE_PCPTYPES else MIGRATE_MOVABLE
    lmt = mt if prm[P_GROUP] != 0 else MIGRATE_MOVABLE
    direct = (fl & F_NORECLAIM) == 0
    only_lower = (fl & F_LOWER_ZONE) != 0
    pfn = np.int64(-1)
    zi = ZONE_PREFERRED
    if (fl & F_CAPTURE) != 0:
        pfn = take_captured(k, m, z, prm)
        if pfn < 0:
            pfn = take_captured(k, m, zl, prml)
            zi = ZONE_LOWER
    if pfn < 0:
        zi = zonelist_zone(k, m, c, only_lower, z, prm, zl, prml)
        if zi == ZONE_PREFERRED:
            pfn = alloc_pages(k, m, c, z, prm, counters, ef, sq, mode, False)
        elif zi == ZONE_LOWER:
            pfn = alloc_pages(k, m, c, zl, prml, cl, efl, sq, model, False)
            cl[C_EF] = 0
    if pfn < 0:
        noretry = (fl & F_NORETRY) != 0
        pfn, zi = node_slowpath(k, m, lmt, only_lower, direct, noretry, c, sq, z, prm, ob, cz,
                                counters, ef, me, mode, zl, prml, czl, cl, efl, mel,
                                model)  # fmt: skip
    ob.placed[x] = pfn
    ob.obj_mt[x] = m
    ob.obj_order[x] = k
    ob.obj_flags[x] = fl & OBJ_FLAGS_MASK
    if pfn < 0:
        stats[S_FAILURES] += 1
        return pfn, OUT_FAILED
    if zi == ZONE_LOWER:
        if prml[P_UNITS] != 0:
            zl.pg_obj[pfn - prml[P_START]] = x
    elif prm[P_UNITS] != 0:
        z.pg_obj[pfn - prm[P_START]] = x
    if (fl & F_KERNEL_FAILED) != 0:
        # served where the recorded kernel failed: the block goes straight back
        stats[S_SERVED_KERNEL_FAILED] += 1
        if zi == ZONE_LOWER:
            free_object(x, 0, k, c, zl, prml, ob, cl, vc, pl)
        else:
            free_object(x, 0, k, c, z, prm, ob, counters, vc, pl)
        ob.placed[x] = PLACED_FAILED
    return pfn, OUT_OK


@njit(cache=True, inline="always", _nrt=False)
def apply_node_event(is_alloc, x, off, k, m, fl, own, c, ts, sq, z, prm, ob, cz, counters, ef,
                     me, mode, vc, stats, pl, zl, prml, czl, cl, efl, mel, model):  # type: ignore[no-untyped-def]  # fmt: skip
    """One event through the node: an allocation by :func:`node_alloc`, a free in the
    zone holding the object. Returns (pfn, outcome) as ``apply_event``. The models
    that act on one zone alone (proactive compaction, pcp decay) run on each zone's
    clock; the run's other models are the preferred zone's (a zonelist run refuses
    pools, virtual compounds, kswapd and pressure: replay.models.config)."""
    if prm[P_COMPACT] & COMPACT_PROACTIVE:
        proactive_tick(ts, sq, z, prm, ob, cz, counters, me)
    if ts >= cz[CZ_PCP_DECAY]:  # never, unless pcp tuning decays
        decay_pcp_high(ts, z, prm, cz, counters)
    if ts >= czl[CZ_PCP_DECAY]:
        decay_pcp_high(ts, zl, prml, czl, cl)
    if is_alloc:
        return node_alloc(x, k, m, fl, c, sq, z, prm, ob, cz, counters, ef, me, mode, vc, stats,
                          pl, zl, prml, czl, cl, efl, mel, model)  # fmt: skip
    stats[S_FREES] += 1
    base = ob.placed[x]
    if base == PLACED_FAILED:
        stats[S_IGNORED] += 1
        return np.int64(-1), OUT_IGNORED
    if base == PLACED_EVICTED:
        stats[S_EVICTED_FREES] += 1
        return np.int64(-1), OUT_EVICTED
    if in_zone(object_pfn(x, ob), prml):  # a split folio's pieces are in its zone
        free_object(x, off, k, c, zl, prml, ob, cl, vc, pl)
    else:
        free_object(x, off, k, c, z, prm, ob, counters, vc, pl)
    return np.int64(-1), OUT_OK


@njit(cache=True, nogil=True, _nrt=False)
def replay_chunk_node(  # type: ignore[no-untyped-def]
    i0, i1, ev, keep_row, keep_counters, ob, z, prm, counters, ef, me, cz, mode, vc, stats, r0,
    out, pl, zl, prml, czl, cl, efl, mel, model,
):  # fmt: skip
    """``replay_chunk`` (replay.models.events) over a node: events ``i0 .. i1-1`` through
    ``apply_node_event``; the rows' counters are the preferred zone's. Returns (next
    event, next output row)."""
    seq, is_alloc, obj, offset, order, mtype, cpu, ts, flags, owner = ev
    out_pfn, out_outcome, out_nr, out_has, out_fail, out_pcp, out_fb = out[:7]
    out_mig, out_scan, out_evict, out_degr, out_exch = out[7:]
    defrag = prm[P_DEFRAG_IDLE] > 0
    units = prm[P_UNITS] != 0
    r = r0
    for i in range(i0, i1):
        if not room(counters, ef, me, cz, vc):
            return i, r
        if defrag:
            if cz[CZ_DF_DUE] == 0 and defrag_due(ts[i], z, prm, cz):
                cz[CZ_DF_DUE] = 1
                return i, r
            cz[CZ_DF_DUE] = 0
        pfn, outcome = apply_node_event(
            is_alloc[i], obj[i], np.int64(offset[i]), np.int64(order[i]), np.int64(mtype[i]),
            flags[i], np.int64(owner[i]), np.int64(cpu[i]), ts[i], seq[i], z, prm, ob, cz,
            counters, ef, me, mode, vc, stats, pl, zl, prml, czl, cl, efl, mel, model,
        )  # fmt: skip
        if keep_row[i]:
            out_pfn[r] = pfn
            out_outcome[r] = outcome
            out_fail[r] = stats[S_FAILURES]
            out_has[r] = keep_counters[i]
            out_pcp[r] = counters[C_PCP_PAGES]
            out_fb[r] = counters[C_CLAIMS] + counters[C_STEALS]
            if units:  # compaction's counts over both zones
                out_mig[r] = counters[C_MIGRATED] + cl[C_MIGRATED]
                out_scan[r] = counters[C_SCANNED] + cl[C_SCANNED]
                out_evict[r] = counters[C_EVICTED]
                out_degr[r] = counters[C_DEGRADED]
                out_exch[r] = counters[C_EXCHANGED]
            if keep_counters[i]:
                for j in range(NR_PAGE_ORDERS):
                    out_nr[r, j] = z.nr_free[j]
            r += 1
    return i1, r
