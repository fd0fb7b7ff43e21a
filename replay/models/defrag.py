"""Exchange pages, contiguous range allocation and active defragmentation.

The three mechanisms that move pages to a chosen place rather than to where
compaction's free scanner happens to be. Units are as in
replay.models.compaction: pfn, pages, order; offsets are pages from the zone's
start pfn. All three run between two trace events, called by the engine (not
from inside ``replay_chunk``), so they may allocate.

- **exchange pages** (Zi Yan, 2019: "[RFC PATCH 00/31] Generating physically
  contiguous memory after page allocation", seed 003): each region (VMA) has
  an anchor (vpn, pfn); the target of a region's page at ``vpn`` is
  ``anchor_pfn + (vpn - anchor_vpn)``. Anchors are laid out as in the
  patchset: the first region (by id) at the zone's first pfn, each next one
  after the previous region's size, so no two regions overlap physically, and
  an anchor never changes. A page already at its target stays. A free target
  is taken by migration (``take_page_off_buddy``; the page's old place is
  freed, so free memory is unchanged); a target held by a movable unit of the
  same order is exchanged (``exchange_pages``: the two swap places, no free
  page is used); any other target (unmovable, pinned, per-CPU, a unit of
  another size, partly free, outside the zone) blocks that page, and the
  region's contiguous run stops there.
- **contiguous range allocation** (``alloc_contig_range``, mm/page_alloc.c):
  isolate the range (its free blocks leave the free lists, as
  ``start_isolate_page_range`` moves them to MIGRATE_ISOLATE), refuse it if it
  holds an unmovable page (``has_unmovable_pages``), migrate every movable
  unit out to a page from the normal allocator
  (``alloc_migration_target``), then take the whole range. ``first`` tries
  the ranges at steps of ``nr_pages`` from the zone start, as
  ``alloc_contig_pages`` does; ``best`` takes the valid range needing the
  fewest pages migrated; candidates start at ``ALIGN(zone start, nr_pages)``
  (the kernel's macro, meant for powers of two). The pages stay allocated (pinned, counted as
  unmovable) until the end of the run.
- **active defragmentation** (Mooley, 2004): per-order thresholds of free
  blocks; when, in an idle gap of the trace (no event for ``idle`` ns), the
  zone has fewer than ``want`` free blocks that can serve an order-k request
  (``nr_free[j] << (j - k)`` summed over j >= k), the movable units of the
  aligned order-k block with the most free pages are migrated out (an
  evacuation like the one above, released afterwards), block after block,
  until the threshold holds or no block can be evacuated. A pass that frees
  nothing defers the next ones (1, 2, 4 ... 64 gaps, as compaction defers).
"""

from __future__ import annotations

import numpy as np

from replay.jit import njit
from replay.models.buddy import add_free, del_free, free_to_buddy, pageblock_alloc_add
from replay.models.compaction import move_unit
from replay.models.internal import (
    BALANCED,
    C_EXCHANGED,
    C_MIGRATED,
    COMPACT_MAX_DEFER_SHIFT,
    CZ_DF_CONSIDERED,
    CZ_DF_LAST_TS,
    CZ_DF_SEEN,
    CZ_DF_SHIFT,
    F_MOVABLE,
    F_PINNED,
    K_DEFRAG,
    MAX_PAGE_ORDER,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    MIGRATE_UNMOVABLE,
    NR_PAGE_ORDERS,
    P_DEFRAG_IDLE,
    P_DEFRAG_T0,
    P_GROUP,
    P_PAGES,
    P_PB0,
    P_PCP,
    P_START,
    PAGEBLOCK_ORDER,
    UNBALANCED,
    emit,
)
from replay.models.page_alloc import alloc_pages
from replay.models.pcp import drain_all

# exchange: per-page results (exchange_pages' ``res``)
EX_IN_PLACE, EX_MIGRATED, EX_EXCHANGED, EX_BLOCKED, EX_UNMOVABLE = range(5)
# evacuate / contig results (model_events.result, after replay.models.reclaim.RESULTS)
# cz slots of active defragmentation


@njit(cache=True, inline="always", _nrt=False)
def list_mt(o, z, prm):  # type: ignore[no-untyped-def]
    """The free list type of a block at offset o: its pageblock's (MOVABLE with grouping off)."""
    if prm[P_GROUP] == 0:
        return np.int64(MIGRATE_MOVABLE)
    return np.int64(z.pageblock_mt[((o + prm[P_START]) >> PAGEBLOCK_ORDER) - prm[P_PB0]])


@njit(cache=True, _nrt=False)
def free_block_at(pfn, z, prm):  # type: ignore[no-untyped-def]
    """The free buddy block covering ``pfn``: (offset of its head, order), or (-1, -1).

    As ``take_page_off_buddy``: the heads at each alignment below pfn."""
    start = prm[P_START]
    for b in range(NR_PAGE_ORDERS):
        h = (pfn & ~((np.int64(1) << b) - 1)) - start
        if h < 0:
            break
        if z.buddy_order[h] >= b:
            return h, np.int64(z.buddy_order[h])
    return np.int64(-1), np.int64(-1)


@njit(cache=True, _nrt=False)
def take_free_block(pfn, k, z, prm):  # type: ignore[no-untyped-def]
    """Take the free aligned order-k block at ``pfn`` off the buddy (``take_page_off_buddy``
    with ``break_down_buddy_pages``: the other halves go back to their lists' heads).
    False when those pages are not all free in one buddy block."""
    if pfn & ((np.int64(1) << k) - 1):
        return False
    h, c = free_block_at(pfn, z, prm)
    if h < 0 or c < k:
        return False
    del_free(h, c, list_mt(h, z, prm), z, prm)
    o = pfn - prm[P_START]
    while c > k:
        c -= 1
        half = np.int64(1) << c
        if o >= h + half:
            add_free(h, c, list_mt(h, z, prm), False, z, prm)
            h += half
        else:
            add_free(h + half, c, list_mt(h + half, z, prm), False, z, prm)
    return True


@njit(cache=True, _nrt=False)
def exchange_pages(xs, targets, z, prm, ob, counters, res):  # type: ignore[no-untyped-def]
    """Put each object ``xs[i]`` at pfn ``targets[i]``, in order; ``res[i]`` says how (EX_*).

    Returns (pages migrated to free targets, pages moved by exchanges: both
    units of each exchange)."""
    start = prm[P_START]
    end = start + prm[P_PAGES]
    migrated = np.int64(0)
    exchanged = np.int64(0)
    for i in range(xs.shape[0]):
        x = xs[i]
        p = ob.placed[x]
        t = targets[i]
        j = np.int64(ob.obj_order[x])
        n = np.int64(1) << j
        if p == t:
            res[i] = EX_IN_PLACE
            continue
        if p < 0 or z.pg_obj[p - start] != x or (ob.obj_flags[x] & F_MOVABLE) == 0:
            res[i] = EX_UNMOVABLE
            continue
        if t < start or t + n > end or (t & (n - 1)) != 0:
            res[i] = EX_BLOCKED
            continue
        if take_free_block(t, j, z, prm):
            move_unit(x, p, t, z, prm, ob)
            free_to_buddy(p, j, z, prm)
            migrated += n
            res[i] = EX_MIGRATED
            continue
        y = z.pg_obj[t - start]
        if (
            y >= 0
            and ob.placed[y] == t
            and np.int64(ob.obj_order[y]) == j
            and (ob.obj_flags[y] & (F_MOVABLE | F_PINNED)) == F_MOVABLE
        ):
            # exchange_pages: the two units swap places
            move_unit(x, p, t, z, prm, ob)
            move_unit(y, t, p, z, prm, ob)
            z.pg_obj[t - start] = x
            exchanged += 2 * n
            res[i] = EX_EXCHANGED
            continue
        res[i] = EX_BLOCKED
    counters[C_MIGRATED] += migrated
    counters[C_EXCHANGED] += exchanged
    return migrated, exchanged


# -- evacuating a range ---------------------------------------------------------------
@njit(cache=True, _nrt=False)
def range_census(lo, n, z, prm, ob):  # type: ignore[no-untyped-def]
    """Pages of pfn range [lo, lo + n): (free in the buddy, in movable units that can be
    migrated out, anything else). A unit reaching outside the range counts as else."""
    start = prm[P_START]
    hi = lo + n
    free = np.int64(0)
    movable = np.int64(0)
    other = np.int64(0)
    h, c = free_block_at(lo, z, prm)
    p = lo
    if h >= 0:  # a free block from below the range covers its start
        p = min(h + start + (np.int64(1) << c), hi)
        free += p - lo
    while p < hi:
        o = p - start
        b = z.buddy_order[o]
        if b >= 0:
            s = min(np.int64(1) << b, hi - p)
            free += s
            p += s
            continue
        x = z.pg_obj[o]
        if x >= 0 and ob.placed[x] == p:
            s = np.int64(1) << ob.obj_order[x]
            if p + s <= hi and (ob.obj_flags[x] & (F_MOVABLE | F_PINNED)) == F_MOVABLE:
                movable += s
            else:
                other += min(s, hi - p)
            p += s
            continue
        other += 1
        p += 1
    return free, movable, other


@njit(cache=True)
def evacuate(lo, n, keep, seq, z, prm, ob, counters, ef, mode):  # type: ignore[no-untyped-def]
    """Migrate the movable units out of pfn range [lo, lo + n) and take it whole.

    The range must hold only free pages and movable units (``range_census``).
    Its free blocks (whole, even where they reach outside) leave the free
    lists first, so no target lands inside; each unit moves to a page of its
    order and type from the allocator. ``keep``: the range stays allocated
    (``alloc_contig_range``, counted as unmovable), else every page of it goes
    back to the buddy (active defragmentation). Returns (ok, pages migrated);
    on failure (no target) what was taken goes back and moved units stay moved.
    """
    start = prm[P_START]
    hi = lo + n
    # isolate: every free block overlapping the range, whole
    iso_o = np.empty(n + NR_PAGE_ORDERS, np.int64)
    iso_k = np.empty(n + NR_PAGE_ORDERS, np.int64)
    ni = 0
    h, c = free_block_at(lo, z, prm)
    p = lo
    if h >= 0:
        del_free(h, c, list_mt(h, z, prm), z, prm)
        iso_o[ni] = h
        iso_k[ni] = c
        ni += 1
        p = min(h + start + (np.int64(1) << c), hi)
    units = np.empty(n, np.int64)
    nu = 0
    while p < hi:
        o = p - start
        b = z.buddy_order[o]
        if b >= 0:
            del_free(o, np.int64(b), list_mt(o, z, prm), z, prm)
            iso_o[ni] = o
            iso_k[ni] = b
            ni += 1
            p += np.int64(1) << b
            continue
        x = z.pg_obj[o]
        units[nu] = x
        nu += 1
        p += np.int64(1) << ob.obj_order[x]
    moved = np.int64(0)
    ok = True
    vacated = np.empty(nu, np.int64)
    nv = 0
    for i in range(nu):
        x = units[i]
        j = np.int64(ob.obj_order[x])
        src = ob.placed[x]
        dst = alloc_pages(j, np.int64(ob.obj_mt[x]), 0, z, prm, counters, ef, seq, mode)
        if dst < 0:
            ok = False
            break
        pageblock_alloc_add(
            dst, j, np.int64(ob.obj_mt[x]), -1, z.pageblock_alloc, prm[P_PB0]
        )  # counted below
        move_unit(x, src, dst, z, prm, ob)
        vacated[nv] = src
        nv += 1
        moved += np.int64(1) << j
    counters[C_MIGRATED] += moved
    if ok and keep:
        # the range is allocated: give back what the isolated blocks held outside it
        for i in range(ni):
            a = iso_o[i] + start
            e = a + (np.int64(1) << iso_k[i])
            _free_span(a, min(e, lo), z, prm)
            _free_span(max(a, hi), e, z, prm)
        pb_alloc = z.pageblock_alloc
        q = lo
        while q < hi:  # the range is counted as unmovable pages, pageblock by pageblock
            e = min(((q >> PAGEBLOCK_ORDER) + 1) << PAGEBLOCK_ORDER, hi)
            pb_alloc[((q >> PAGEBLOCK_ORDER) - prm[P_PB0]) * MIGRATE_PCPTYPES
                     + MIGRATE_UNMOVABLE] += e - q  # fmt: skip
            q = e
        return True, moved
    for i in range(ni):
        free_to_buddy(iso_o[i] + start, iso_k[i], z, prm)
    for i in range(nv):
        free_to_buddy(vacated[i], np.int64(ob.obj_order[units[i]]), z, prm)
    return ok, moved


@njit(cache=True, _nrt=False)
def _free_span(a, e, z, prm):  # type: ignore[no-untyped-def]
    """Free pfns [a, e) to the buddy as the largest aligned blocks."""
    while a < e:
        k = np.int64(0)
        while (
            k < MAX_PAGE_ORDER
            and (a & ((np.int64(2) << k) - 1)) == 0
            and a + (np.int64(2) << k) <= e
        ):
            k += 1
        free_to_buddy(a, k, z, prm)
        a += np.int64(1) << k


@njit(cache=True)
def alloc_contig(n, pfn, best, seq, z, prm, ob, counters, ef, mode):  # type: ignore[no-untyped-def]
    """``alloc_contig_pages``: ``n`` contiguous pages at ``pfn`` (-1: the first, or with
    ``best`` the cheapest, range at steps of n from ``ALIGN(zone start, n)``). Returns
    (first pfn or -1, pages migrated, ranges evacuated)."""
    start = prm[P_START]
    end = start + prm[P_PAGES]
    if prm[P_PCP] != 0:  # drain_all_pages: pcp pages would make every range busy
        drain_all(z, prm, counters)
    if pfn >= 0:
        if pfn < start or pfn + n > end:
            return np.int64(-1), np.int64(0), np.int64(0)
        _, _, other = range_census(pfn, n, z, prm, ob)
        if other > 0:
            return np.int64(-1), np.int64(0), np.int64(1)
        ok, moved = evacuate(pfn, n, True, seq, z, prm, ob, counters, ef, mode)
        return (pfn if ok else np.int64(-1)), moved, np.int64(1)
    first = (start + n - 1) & ~(n - 1)  # ALIGN(zone_start_pfn, nr_pages), as the kernel
    tried = np.int64(0)
    total = np.int64(0)
    if best:
        cand = first
        best_pfn = np.int64(-1)
        best_cost = np.int64(1) << 62
        while cand + n <= end:
            _, movable, other = range_census(cand, n, z, prm, ob)
            if other == 0 and movable < best_cost:
                best_cost = movable
                best_pfn = cand
            cand += n
        if best_pfn < 0:
            return np.int64(-1), np.int64(0), np.int64(0)
        ok, moved = evacuate(best_pfn, n, True, seq, z, prm, ob, counters, ef, mode)
        return (best_pfn if ok else np.int64(-1)), moved, np.int64(1)
    cand = first
    while cand + n <= end:
        _, _, other = range_census(cand, n, z, prm, ob)
        if other == 0:
            tried += 1
            ok, moved = evacuate(cand, n, True, seq, z, prm, ob, counters, ef, mode)
            total += moved
            if ok:
                return cand, total, tried
        cand += n
    return np.int64(-1), total, tried


# -- active defragmentation --------------------------------------------------------------
@njit(cache=True, inline="always", _nrt=False)
def suitable_blocks(k, nr_free):  # type: ignore[no-untyped-def]
    """Free blocks able to serve an order-k request, in order-k units."""
    s = np.int64(0)
    for j in range(k, NR_PAGE_ORDERS):
        s += nr_free[j] << (j - k)
    return s


@njit(cache=True, _nrt=False)
def defrag_wanted(z, prm):  # type: ignore[no-untyped-def]
    """The lowest order whose threshold is crossed, or -1."""
    for k in range(NR_PAGE_ORDERS):
        want = prm[P_DEFRAG_T0 + k]
        if want > 0 and suitable_blocks(k, z.nr_free) < want:
            return np.int64(k)
    return np.int64(-1)


@njit(cache=True, inline="always", _nrt=False)
def defrag_due(ts, z, prm, cz):  # type: ignore[no-untyped-def]
    """Before an event at trace time ``ts`` (ns): is an active defragmentation pass due?
    (an idle gap, a crossed threshold, and not deferred)"""
    last = cz[CZ_DF_LAST_TS]
    seen = cz[CZ_DF_SEEN]
    cz[CZ_DF_LAST_TS] = ts
    cz[CZ_DF_SEEN] = 1
    if seen == 0 or ts - last < prm[P_DEFRAG_IDLE]:
        return False
    if defrag_wanted(z, prm) < 0:
        return False
    if cz[CZ_DF_CONSIDERED] > 0:
        cz[CZ_DF_CONSIDERED] -= 1
        return False
    return True


@njit(cache=True)
def active_defrag(seq, z, prm, ob, counters, ef, mode):  # type: ignore[no-untyped-def]
    """One pass: evacuate the most-free movable aligned order-k blocks while a threshold
    is crossed. Returns (order, blocks freed, pages migrated, evacuations tried)."""
    start = prm[P_START]
    end = start + prm[P_PAGES]
    k = defrag_wanted(z, prm)
    if k < 0:
        return np.int64(-1), np.int64(0), np.int64(0), np.int64(0)
    if prm[P_PCP] != 0:
        drain_all(z, prm, counters)
    first_k = k
    freed = np.int64(0)
    moved = np.int64(0)
    tried = np.int64(0)
    n = np.int64(1) << k
    while k >= 0:
        n = np.int64(1) << k
        # the aligned order-k block with the most free pages that is not free already
        best = np.int64(-1)
        best_free = np.int64(-1)
        p = (start + n - 1) & ~(n - 1)
        while p + n <= end:
            free, _, other = range_census(p, n, z, prm, ob)
            if other == 0 and free < n and free > best_free:
                best_free = free
                best = p
            p += n
        if best < 0:
            break
        tried += 1
        before = suitable_blocks(k, z.nr_free)
        ok, m = evacuate(best, n, False, seq, z, prm, ob, counters, ef, mode)
        moved += m
        if not ok or suitable_blocks(k, z.nr_free) <= before:
            break  # no target left, or the targets used up what was freed
        freed += 1
        k = defrag_wanted(z, prm)
    return first_k, freed, moved, tried


@njit(cache=True)
def defrag_pass(seq, z, prm, ob, cz, counters, ef, mode, me):  # type: ignore[no-untyped-def]
    """An active defragmentation pass with its deferral and its model event (kind defrag:
    order, moved pages, ``failed`` = evacuations that freed nothing, result BALANCED when
    every threshold holds after it, else UNBALANCED)."""
    k, freed, moved, tried = active_defrag(seq, z, prm, ob, counters, ef, mode)
    if k < 0:  # no threshold crossed: nothing to do, nothing recorded
        return k, freed, moved, tried
    if freed == 0:
        cz[CZ_DF_SHIFT] = min(cz[CZ_DF_SHIFT] + 1, COMPACT_MAX_DEFER_SHIFT)
        cz[CZ_DF_CONSIDERED] = np.int64(1) << cz[CZ_DF_SHIFT]
    else:
        cz[CZ_DF_SHIFT] = 0
        cz[CZ_DF_CONSIDERED] = 0
    result = BALANCED if defrag_wanted(z, prm) < 0 else UNBALANCED
    emit(z, me, counters, seq, K_DEFRAG, k, -1, -1, -1, -1, -1, 0, 0, moved,
           tried - freed, 0, result)  # fmt: skip
    return k, freed, moved, tried
