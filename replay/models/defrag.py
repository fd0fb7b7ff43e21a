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

import numba as nb
import numpy as np

from replay.models import compaction as C
from replay.models import mobility as M
from replay.models import reclaim as R
from replay.models.buddy import MAX_PAGE_ORDER, NR_PAGE_ORDERS

# exchange: per-page results (exchange_pages' ``res``)
EX_IN_PLACE, EX_MIGRATED, EX_EXCHANGED, EX_BLOCKED, EX_UNMOVABLE = range(5)
# evacuate / contig results (model_events.result, after replay.models.reclaim.RESULTS)
# cz slots of active defragmentation
CZ_DF_LAST_TS, CZ_DF_DUE, CZ_DF_CONSIDERED, CZ_DF_SHIFT, CZ_DF_SEEN = 10, 11, 12, 13, 14


@nb.njit(cache=True, inline="always", _nrt=False)
def list_mt(o, st, prm):  # type: ignore[no-untyped-def]
    """The free list type of a block at offset o: its pageblock's (MOVABLE with grouping off)."""
    if prm[M.P_GROUP] == 0:
        return np.int64(M.MIGRATE_MOVABLE)
    return np.int64(st[7][((o + prm[M.P_START]) >> M.PAGEBLOCK_ORDER) - prm[M.P_PB0]])


@nb.njit(cache=True, _nrt=False)
def free_block_at(pfn, st, prm):  # type: ignore[no-untyped-def]
    """The free buddy block covering ``pfn``: (offset of its head, order), or (-1, -1).

    As ``take_page_off_buddy``: the heads at each alignment below pfn."""
    start = prm[M.P_START]
    blk = st[0]
    for b in range(NR_PAGE_ORDERS):
        h = (pfn & ~((np.int64(1) << b) - 1)) - start
        if h < 0:
            break
        if blk[h] >= b:
            return h, np.int64(blk[h])
    return np.int64(-1), np.int64(-1)


@nb.njit(cache=True, _nrt=False)
def take_free_block(pfn, k, st, prm):  # type: ignore[no-untyped-def]
    """Take the free aligned order-k block at ``pfn`` off the buddy (``take_page_off_buddy``
    with ``break_down_buddy_pages``: the other halves go back to their lists' heads).
    False when those pages are not all free in one buddy block."""
    if pfn & ((np.int64(1) << k) - 1):
        return False
    h, c = free_block_at(pfn, st, prm)
    if h < 0 or c < k:
        return False
    M.del_free(h, c, list_mt(h, st, prm), st, prm)
    o = pfn - prm[M.P_START]
    while c > k:
        c -= 1
        half = np.int64(1) << c
        if o >= h + half:
            M.add_free(h, c, list_mt(h, st, prm), False, st, prm)
            h += half
        else:
            M.add_free(h + half, c, list_mt(h + half, st, prm), False, st, prm)
    return True


@nb.njit(cache=True, _nrt=False)
def exchange_pages(xs, targets, st, prm, ob, counters, res):  # type: ignore[no-untyped-def]
    """Put each object ``xs[i]`` at pfn ``targets[i]``, in order; ``res[i]`` says how (EX_*).

    Returns (pages migrated to free targets, pages moved by exchanges: both
    units of each exchange)."""
    start = prm[M.P_START]
    end = start + prm[M.P_PAGES]
    placed, obj_order, obj_flags = ob[0], ob[2], ob[3]
    migrated = np.int64(0)
    exchanged = np.int64(0)
    for i in range(xs.shape[0]):
        x = xs[i]
        p = placed[x]
        t = targets[i]
        j = np.int64(obj_order[x])
        n = np.int64(1) << j
        if p == t:
            res[i] = EX_IN_PLACE
            continue
        if p < 0 or st[13][p - start] != x or (obj_flags[x] & C.F_MOVABLE) == 0:
            res[i] = EX_UNMOVABLE
            continue
        if t < start or t + n > end or (t & (n - 1)) != 0:
            res[i] = EX_BLOCKED
            continue
        if take_free_block(t, j, st, prm):
            C.move_unit(x, p, t, st, prm, ob)
            M.free_to_buddy(p, j, st, prm)
            migrated += n
            res[i] = EX_MIGRATED
            continue
        y = st[13][t - start]
        if (
            y >= 0
            and placed[y] == t
            and np.int64(obj_order[y]) == j
            and (obj_flags[y] & (C.F_MOVABLE | C.F_PINNED)) == C.F_MOVABLE
        ):
            # exchange_pages: the two units swap places
            C.move_unit(x, p, t, st, prm, ob)
            C.move_unit(y, t, p, st, prm, ob)
            st[13][t - start] = x
            exchanged += 2 * n
            res[i] = EX_EXCHANGED
            continue
        res[i] = EX_BLOCKED
    counters[M.C_MIGRATED] += migrated
    counters[M.C_EXCHANGED] += exchanged
    return migrated, exchanged


# -- evacuating a range ---------------------------------------------------------------
@nb.njit(cache=True, _nrt=False)
def range_census(lo, n, st, prm, ob):  # type: ignore[no-untyped-def]
    """Pages of pfn range [lo, lo + n): (free in the buddy, in movable units that can be
    migrated out, anything else). A unit reaching outside the range counts as else."""
    start = prm[M.P_START]
    blk = st[0]
    hi = lo + n
    free = np.int64(0)
    movable = np.int64(0)
    other = np.int64(0)
    h, c = free_block_at(lo, st, prm)
    p = lo
    if h >= 0:  # a free block from below the range covers its start
        p = min(h + start + (np.int64(1) << c), hi)
        free += p - lo
    while p < hi:
        o = p - start
        b = blk[o]
        if b >= 0:
            s = min(np.int64(1) << b, hi - p)
            free += s
            p += s
            continue
        x = st[13][o]
        if x >= 0 and ob[0][x] == p:
            s = np.int64(1) << ob[2][x]
            if p + s <= hi and (ob[3][x] & (C.F_MOVABLE | C.F_PINNED)) == C.F_MOVABLE:
                movable += s
            else:
                other += min(s, hi - p)
            p += s
            continue
        other += 1
        p += 1
    return free, movable, other


@nb.njit(cache=True)
def evacuate(lo, n, keep, seq, st, prm, ob, counters, ef, mode):  # type: ignore[no-untyped-def]
    """Migrate the movable units out of pfn range [lo, lo + n) and take it whole.

    The range must hold only free pages and movable units (``range_census``).
    Its free blocks (whole, even where they reach outside) leave the free
    lists first, so no target lands inside; each unit moves to a page of its
    order and type from the allocator. ``keep``: the range stays allocated
    (``alloc_contig_range``, counted as unmovable), else every page of it goes
    back to the buddy (active defragmentation). Returns (ok, pages migrated);
    on failure (no target) what was taken goes back and moved units stay moved.
    """
    start = prm[M.P_START]
    blk = st[0]
    hi = lo + n
    # isolate: every free block overlapping the range, whole
    iso_o = np.empty(n + NR_PAGE_ORDERS, np.int64)
    iso_k = np.empty(n + NR_PAGE_ORDERS, np.int64)
    ni = 0
    h, c = free_block_at(lo, st, prm)
    p = lo
    if h >= 0:
        M.del_free(h, c, list_mt(h, st, prm), st, prm)
        iso_o[ni] = h
        iso_k[ni] = c
        ni += 1
        p = min(h + start + (np.int64(1) << c), hi)
    units = np.empty(n, np.int64)
    nu = 0
    while p < hi:
        o = p - start
        b = blk[o]
        if b >= 0:
            M.del_free(o, np.int64(b), list_mt(o, st, prm), st, prm)
            iso_o[ni] = o
            iso_k[ni] = b
            ni += 1
            p += np.int64(1) << b
            continue
        x = st[13][o]
        units[nu] = x
        nu += 1
        p += np.int64(1) << ob[2][x]
    moved = np.int64(0)
    ok = True
    vacated = np.empty(nu, np.int64)
    nv = 0
    for i in range(nu):
        x = units[i]
        j = np.int64(ob[2][x])
        src = ob[0][x]
        dst = M.alloc_pages(j, np.int64(ob[1][x]), 0, st, prm, counters, ef, seq, mode)
        if dst < 0:
            ok = False
            break
        M._pb_alloc_add(dst, j, np.int64(ob[1][x]), -1, st[9], prm[M.P_PB0])  # counted below
        C.move_unit(x, src, dst, st, prm, ob)
        vacated[nv] = src
        nv += 1
        moved += np.int64(1) << j
    counters[M.C_MIGRATED] += moved
    if ok and keep:
        # the range is allocated: give back what the isolated blocks held outside it
        for i in range(ni):
            a = iso_o[i] + start
            e = a + (np.int64(1) << iso_k[i])
            _free_span(a, min(e, lo), st, prm)
            _free_span(max(a, hi), e, st, prm)
        pb_alloc = st[9]
        q = lo
        while q < hi:  # the range is counted as unmovable pages, pageblock by pageblock
            e = min(((q >> M.PAGEBLOCK_ORDER) + 1) << M.PAGEBLOCK_ORDER, hi)
            pb_alloc[((q >> M.PAGEBLOCK_ORDER) - prm[M.P_PB0]) * M.MIGRATE_PCPTYPES
                     + M.MIGRATE_UNMOVABLE] += e - q  # fmt: skip
            q = e
        return True, moved
    for i in range(ni):
        M.free_to_buddy(iso_o[i] + start, iso_k[i], st, prm)
    for i in range(nv):
        M.free_to_buddy(vacated[i], np.int64(ob[2][units[i]]), st, prm)
    return ok, moved


@nb.njit(cache=True, _nrt=False)
def _free_span(a, e, st, prm):  # type: ignore[no-untyped-def]
    """Free pfns [a, e) to the buddy as the largest aligned blocks."""
    while a < e:
        k = np.int64(0)
        while (
            k < MAX_PAGE_ORDER
            and (a & ((np.int64(2) << k) - 1)) == 0
            and a + (np.int64(2) << k) <= e
        ):
            k += 1
        M.free_to_buddy(a, k, st, prm)
        a += np.int64(1) << k


@nb.njit(cache=True)
def alloc_contig(n, pfn, best, seq, st, prm, ob, counters, ef, mode):  # type: ignore[no-untyped-def]
    """``alloc_contig_pages``: ``n`` contiguous pages at ``pfn`` (-1: the first, or with
    ``best`` the cheapest, range at steps of n from ``ALIGN(zone start, n)``). Returns
    (first pfn or -1, pages migrated, ranges evacuated)."""
    start = prm[M.P_START]
    end = start + prm[M.P_PAGES]
    if prm[M.P_PCP] != 0:  # drain_all_pages: pcp pages would make every range busy
        M.drain_all(st, prm, counters)
    if pfn >= 0:
        if pfn < start or pfn + n > end:
            return np.int64(-1), np.int64(0), np.int64(0)
        _, _, other = range_census(pfn, n, st, prm, ob)
        if other > 0:
            return np.int64(-1), np.int64(0), np.int64(1)
        ok, moved = evacuate(pfn, n, True, seq, st, prm, ob, counters, ef, mode)
        return (pfn if ok else np.int64(-1)), moved, np.int64(1)
    first = (start + n - 1) & ~(n - 1)  # ALIGN(zone_start_pfn, nr_pages), as the kernel
    tried = np.int64(0)
    total = np.int64(0)
    if best:
        cand = first
        best_pfn = np.int64(-1)
        best_cost = np.int64(1) << 62
        while cand + n <= end:
            _, movable, other = range_census(cand, n, st, prm, ob)
            if other == 0 and movable < best_cost:
                best_cost = movable
                best_pfn = cand
            cand += n
        if best_pfn < 0:
            return np.int64(-1), np.int64(0), np.int64(0)
        ok, moved = evacuate(best_pfn, n, True, seq, st, prm, ob, counters, ef, mode)
        return (best_pfn if ok else np.int64(-1)), moved, np.int64(1)
    cand = first
    while cand + n <= end:
        _, _, other = range_census(cand, n, st, prm, ob)
        if other == 0:
            tried += 1
            ok, moved = evacuate(cand, n, True, seq, st, prm, ob, counters, ef, mode)
            total += moved
            if ok:
                return cand, total, tried
        cand += n
    return np.int64(-1), total, tried


# -- active defragmentation --------------------------------------------------------------
@nb.njit(cache=True, inline="always", _nrt=False)
def suitable_blocks(k, nr_free):  # type: ignore[no-untyped-def]
    """Free blocks able to serve an order-k request, in order-k units."""
    s = np.int64(0)
    for j in range(k, NR_PAGE_ORDERS):
        s += nr_free[j] << (j - k)
    return s


@nb.njit(cache=True, _nrt=False)
def defrag_wanted(st, prm):  # type: ignore[no-untyped-def]
    """The lowest order whose threshold is crossed, or -1."""
    for k in range(NR_PAGE_ORDERS):
        want = prm[M.P_DEFRAG_T0 + k]
        if want > 0 and suitable_blocks(k, st[5]) < want:
            return np.int64(k)
    return np.int64(-1)


@nb.njit(cache=True, inline="always", _nrt=False)
def defrag_due(ts, st, prm, cz):  # type: ignore[no-untyped-def]
    """Before an event at trace time ``ts`` (ns): is an active defragmentation pass due?
    (an idle gap, a crossed threshold, and not deferred)"""
    last = cz[CZ_DF_LAST_TS]
    seen = cz[CZ_DF_SEEN]
    cz[CZ_DF_LAST_TS] = ts
    cz[CZ_DF_SEEN] = 1
    if seen == 0 or ts - last < prm[M.P_DEFRAG_IDLE]:
        return False
    if defrag_wanted(st, prm) < 0:
        return False
    if cz[CZ_DF_CONSIDERED] > 0:
        cz[CZ_DF_CONSIDERED] -= 1
        return False
    return True


@nb.njit(cache=True)
def active_defrag(seq, st, prm, ob, counters, ef, mode):  # type: ignore[no-untyped-def]
    """One pass: evacuate the most-free movable aligned order-k blocks while a threshold
    is crossed. Returns (order, blocks freed, pages migrated, evacuations tried)."""
    start = prm[M.P_START]
    end = start + prm[M.P_PAGES]
    k = defrag_wanted(st, prm)
    if k < 0:
        return np.int64(-1), np.int64(0), np.int64(0), np.int64(0)
    if prm[M.P_PCP] != 0:
        M.drain_all(st, prm, counters)
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
            free, _, other = range_census(p, n, st, prm, ob)
            if other == 0 and free < n and free > best_free:
                best_free = free
                best = p
            p += n
        if best < 0:
            break
        tried += 1
        before = suitable_blocks(k, st[5])
        ok, m = evacuate(best, n, False, seq, st, prm, ob, counters, ef, mode)
        moved += m
        if not ok or suitable_blocks(k, st[5]) <= before:
            break  # no target left, or the targets used up what was freed
        freed += 1
        k = defrag_wanted(st, prm)
    return first_k, freed, moved, tried


@nb.njit(cache=True)
def defrag_pass(seq, st, prm, ob, cz, counters, ef, mode, me):  # type: ignore[no-untyped-def]
    """An active defragmentation pass with its deferral and its model event (kind defrag:
    order, moved pages, ``failed`` = evacuations that freed nothing, result BALANCED when
    every threshold holds after it, else UNBALANCED)."""
    k, freed, moved, tried = active_defrag(seq, st, prm, ob, counters, ef, mode)
    if k < 0:  # no threshold crossed: nothing to do, nothing recorded
        return k, freed, moved, tried
    if freed == 0:
        cz[CZ_DF_SHIFT] = min(cz[CZ_DF_SHIFT] + 1, C.COMPACT_MAX_DEFER_SHIFT)
        cz[CZ_DF_CONSIDERED] = np.int64(1) << cz[CZ_DF_SHIFT]
    else:
        cz[CZ_DF_SHIFT] = 0
        cz[CZ_DF_CONSIDERED] = 0
    result = R.BALANCED if defrag_wanted(st, prm) < 0 else R.UNBALANCED
    C.emit(st, me, counters, seq, C.K_DEFRAG, k, -1, -1, -1, -1, -1, 0, 0, moved,
           tried - freed, 0, result)  # fmt: skip
    return k, freed, moved, tried
