"""``compaction``: the migration and free scanners of mm/compaction.c (Linux 6.18).

The exact semantics are in docs/compaction.md (the contract this kernel and
tests/ref_compaction.py both implement): ``compact_zone`` with the kernel's
scanners (the free lists' fast searches, ``fast_find_migrateblock`` and
``fast_isolate_freepages``, then the linear scans; the pageblock skip hints;
finishing a pageblock; ASYNC direct compaction's whole order-t blocks and the
free scanner's stride), ``__compact_finished``, ``compaction_suitable``, deferral
(``compaction_deferred``/``defer_compaction``/``compaction_defer_reset``),
direct compaction after a failed allocation, proactive compaction on the
fragmentation score (kcompactd) and one-shot whole-zone compaction
(``compact_memory``).

State, beyond the free lists of the zone ``z`` (replay.models.internal.Zone):

- ``z.pg_obj`` (int32 per page): the object whose unit starts at that
  offset, else -1; ``z.isolated_head``/``z.isolated_tail`` the heads/tails
  of the eleven isolated free lists (``cc->freepages[order]``, linked
  through ``list_next``/``list_prev`` like the free lists).
- ``ob`` (replay.models.internal.Objects): per object its pfn (-1 failed,
  -2 evicted), request migratetype, order and F_* flags.
- ``cz`` (int64): the zone's compaction state (CZ_*), the scratch of the
  running ``compact_control`` (CC_*) and the isolated units (from CC_UNITS).
- ``me``: model events, rows of ME_COLS, ``counters[C_ME]`` rows used.

Units: pfn (absolute page frame numbers), offsets ``o = pfn - start_pfn``,
pages (4 KiB), orders (blocks of ``1 << order`` pages), ns (trace time).
"""

from __future__ import annotations

import numpy as np

from replay.jit import njit
from replay.models.buddy import (
    del_free,
    find_suitable_fallback,
    free_to_buddy,
    pageblock_alloc_add,
    should_try_claim_block,
)
from replay.models.internal import (
    C_DRIVER_MIGRATED,
    C_ME,
    C_MIGRATED,
    C_SCANNED,
    C_SPLIT,
    C_SPLIT_FULL,
    CAPC_MT,
    CAPC_ORDER,
    CAPC_PAGE,
    CAPC_PAGE_ORDER,
    CC_CAPC,
    CC_CAPC_PAGE,
    CC_CPU,
    CC_DIRECT,
    CC_FAILED,
    CC_FAST_FAIL,
    CC_FAST_GIVEN,
    CC_FAST_START,
    CC_FINISH_PB,
    CC_FREE_GIVEN,
    CC_FREE_PFN,
    CC_FREE_START,
    CC_LAST_MIGRATED,
    CC_MIG_START,
    CC_MIGRATE_PFN,
    CC_MODE,
    CC_MOVED,
    CC_MT,
    CC_NR_FREE,
    CC_NR_MIGRATE,
    CC_NUNITS,
    CC_ORDER,
    CC_PROACTIVE,
    CC_SCAN_F,
    CC_SCAN_M,
    CC_SEARCH_ORDER,
    CC_SPLIT_SHIFT,
    CC_UNIT_DONE,
    CC_UNITS,
    CC_WHOLE,
    COMPACT_CLUSTER_MAX,
    COMPACT_MAX_DEFER_SHIFT,
    COMPLETE,
    CONTINUE,
    CZ_BLOCKSKIP_FLUSH,
    CZ_CONSIDERED,
    CZ_FREE,
    CZ_INIT_FREE,
    CZ_INIT_MIGRATE,
    CZ_MIG0,
    CZ_MIG1,
    CZ_NEXT_CHECK,
    CZ_ORDER_FAILED,
    CZ_PDEFER,
    CZ_SHIFT,
    CZ_TS0_SET,
    DEFERRED,
    F_MOVABLE,
    F_RECLAIM,
    FAST_START_DONE,
    GIVEN_AROUND,
    GIVEN_COLS,
    GIVEN_FAST,
    HPAGE_FRAG_CHECK_INTERVAL_NS,
    K_COMPACT_DIRECT,
    K_COMPACT_ONESHOT,
    K_COMPACT_PROACTIVE,
    K_COMPACT_RECORDED,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    MODE_ASYNC,
    MODE_SYNC,
    NR_PAGE_ORDERS,
    P_EXTFRAG,
    P_GROUP,
    P_KSWAPD,
    P_KSWAPD_RECORDED,
    P_PAGES,
    P_PB0,
    P_PCP,
    P_PCP_RECORDED,
    P_PROACTIVE,
    P_START,
    P_WLOW,
    P_WMIN,
    PAGE_ALLOC_COSTLY_ORDER,
    PAGEBLOCK_ORDER,
    PAGEBLOCK_PAGES,
    PARTIAL_SKIPPED,
    PLACED_SPLIT_BASE,
    SCAN_FREE0,
    SCAN_NFREE,
    SKIPPED,
    SUCCESS,
    emit,
    list_add,
    list_del,
    pageblock_end_pfn,
    pageblock_start_pfn,
    zone_free_pages,
)
from replay.models.page_alloc import free_frozen_pages, get_page_from_freelist
from replay.models.pcp import drain_local
from replay.models.reclaim import lru_split
from replay.models.watermarks import zone_watermark_ok

# object flags
# The request cannot enter direct reclaim (no __GFP_DIRECT_RECLAIM: GFP_ATOMIC, GFP_NOWAIT,
# GFP_TRANSHUGE_LIGHT): its failure neither drains the pcp lists nor compacts (the kernel's
# slow path runs both only when can_direct_reclaim). Flag bit 32 is pools.F_POOLED.

# compaction switches (prm[P_COMPACT] bits)

# compact_result values (and their names, in model_events.result)

# model event kinds (model_events.kind); the kswapd/vcompound kinds live in replay.models.reclaim

# model event columns

# cz: the zone's state
# cz: the running compact_control


# -- metrics (mm/vmstat.c integer arithmetic) -----------------------------------------


@njit(cache=True, _nrt=False)
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


@njit(cache=True, _nrt=False)
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


@njit(cache=True, _nrt=False)
def fragmentation_score(nr_free, pages):  # type: ignore[no-untyped-def]
    """``fragmentation_score_node`` of a node with this one zone (present = managed pages)."""
    return extfrag_for_order(PAGEBLOCK_ORDER, nr_free) * pages // (pages + 1)


@njit(cache=True, inline="always", _nrt=False)
def score_wmark(low, proactiveness):  # type: ignore[no-untyped-def]
    """``fragmentation_score_wmark``."""
    wlow = max(100 - proactiveness, np.int64(5))
    return wlow if low else min(wlow + 10, np.int64(100))


# -- deferral ----------------------------------------------------------------------------
@njit(cache=True, _nrt=False)
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


@njit(cache=True, _nrt=False)
def defer_compaction(k, cz):  # type: ignore[no-untyped-def]
    """``defer_compaction``."""
    cz[CZ_CONSIDERED] = 0
    cz[CZ_SHIFT] += 1
    if k < cz[CZ_ORDER_FAILED]:
        cz[CZ_ORDER_FAILED] = k
    if cz[CZ_SHIFT] > COMPACT_MAX_DEFER_SHIFT:
        cz[CZ_SHIFT] = COMPACT_MAX_DEFER_SHIFT


@njit(cache=True, _nrt=False)
def compaction_defer_reset(k, success, cz):  # type: ignore[no-untyped-def]
    """``compaction_defer_reset``."""
    if success:
        cz[CZ_CONSIDERED] = 0
        cz[CZ_SHIFT] = 0
    if k >= cz[CZ_ORDER_FAILED]:
        cz[CZ_ORDER_FAILED] = k + 1


# -- model events ------------------------------------------------------------------------


# -- units ---------------------------------------------------------------------------------
@njit(cache=True, inline="always", _nrt=False)
def migratable(x, t, ob):  # type: ignore[no-untyped-def]
    """A movable unit that ``skip_isolation_on_order`` does not skip for target order t."""
    if (ob.obj_flags[x] & F_MOVABLE) == 0:
        return False
    j = np.int64(ob.obj_order[x])
    if j >= PAGEBLOCK_ORDER:
        return False
    return t == -1 or j < t


@njit(cache=True, inline="always", _nrt=False)
def step_over(o, z, ob):  # type: ignore[no-untyped-def]
    """Pages a scanner steps over at offset o: a free block, a unit, or one other page."""
    b = z.buddy_order[o]
    if b >= 0:
        return np.int64(1) << b
    x = z.pg_obj[o]
    if x >= 0:
        return np.int64(1) << ob.obj_order[x]
    return np.int64(1)


# -- the free scanner ------------------------------------------------------------------
@njit(cache=True, inline="always", _nrt=False)
def freelist_scan_limit(cz):  # type: ignore[no-untyped-def]
    """``freelist_scan_limit``: free-list entries a fast search looks at."""
    return (np.int64(COMPACT_CLUSTER_MAX) >> min(np.int64(63), cz[CC_FAST_FAIL])) + 1


@njit(cache=True, inline="always", _nrt=False)
def isolate_free_page(o, b, mt, z, prm, cz):  # type: ignore[no-untyped-def]
    """``__isolate_free_page`` for compaction: the free block at offset ``o`` (order
    ``b``, on free list type ``mt``) leaves the buddy for the TAIL of isolated list b,
    the pass's targets (``cc->freepages[b]``); returns its pages."""
    del_free(o, b, mt, z, prm)
    list_add(o, b, True, z.list_next, z.list_prev, z.isolated_head, z.isolated_tail)
    n = np.int64(1) << b
    cz[CC_NR_FREE] += n
    return n


@njit(cache=True, _nrt=False)
def isolate_freepages_block(p, end, stride, z, prm, ob, cz, cap=-1):  # type: ignore[no-untyped-def]
    """``isolate_freepages_block`` (not strict): from pfn ``p`` to ``end``, every
    ``stride``-th page, each free block's head isolated whole to the TAIL of its order's
    isolated list, until the round's units have targets (with ``cap`` >= 0: until it has
    isolated that many pages). A large folio's head is stepped over whole
    (``PageCompound``); any other page, a free block's tail page included, is passed by
    the stride. Returns (where the scan stopped, at most ``end``; pages isolated)."""
    start = prm[P_START]
    pb0 = prm[P_PB0]
    isolated = np.int64(0)
    while p < end:
        o = p - start
        b = z.buddy_order[o]
        if b >= 0:
            mt = z.pageblock_mt[(p >> PAGEBLOCK_ORDER) - pb0]
            if prm[P_GROUP] == 0:
                mt = MIGRATE_MOVABLE
            n = isolate_free_page(o, np.int64(b), mt, z, prm, cz)
            cz[CC_SCAN_F] += n
            isolated += n
            if isolated >= cap if cap >= 0 else cz[CC_NR_MIGRATE] <= cz[CC_NR_FREE]:
                p += n
                break
            p += n - 1 + stride
            continue
        x = z.pg_obj[o]
        if x >= 0 and ob.obj_order[x] > 0:  # a large folio: its head, stepped over whole
            n = np.int64(1) << ob.obj_order[x]
            cz[CC_SCAN_F] += n
            p += n - 1 + stride
            continue
        cz[CC_SCAN_F] += 1
        p += stride
    return min(p, end), isolated


@njit(cache=True, _nrt=False)
def fast_isolate_around(pfn, z, prm, ob, cz):  # type: ignore[no-untyped-def]
    """``fast_isolate_around``: the rest of pfn's pageblock's free pages too (stride 1),
    unless the round has its targets or the pass is an ASYNC direct one; a pageblock
    scanned to its end gets the skip hint (full or nearly full)."""
    if cz[CC_NR_FREE] >= cz[CC_NR_MIGRATE]:
        return
    if cz[CC_DIRECT] != 0 and cz[CC_MODE] == MODE_ASYNC:
        return
    start = prm[P_START]
    s = max(pageblock_start_pfn(pfn), start)
    e = min(pageblock_end_pfn(pfn), start + prm[P_PAGES])
    stop, _ = isolate_freepages_block(s, e, np.int64(1), z, prm, ob, cz)
    if stop == e:
        z.pageblock_skip[(pfn >> PAGEBLOCK_ORDER) - prm[P_PB0]] = 1


@njit(cache=True, inline="always", _nrt=False)
def next_search_order(order, cz):  # type: ignore[no-untyped-def]
    """``next_search_order``: the orders below the pass's, round robin from
    ``search_order``; -1 once the search is back where it began (and ``search_order``
    moves down one for the next search)."""
    order -= 1
    if order < 0:
        order = cz[CC_ORDER] - 1
    if order == cz[CC_SEARCH_ORDER]:
        cz[CC_SEARCH_ORDER] -= 1
        if cz[CC_SEARCH_ORDER] < 0:
            cz[CC_SEARCH_ORDER] = cz[CC_ORDER] - 1
        return np.int64(-1)
    return order


@njit(cache=True, inline="always", _nrt=False)
def rotate_freelist(n, li, z):  # type: ignore[no-untyped-def]
    """Free list ``li``'s entries before block ``n`` move behind its tail, so ``n``
    heads the list (``list_cut_before`` + ``list_splice_tail``)."""
    h = z.free_head[li]
    if h == n:
        return
    p = z.list_prev[n]
    t = z.free_tail[li]
    z.list_next[t] = h
    z.list_prev[h] = t
    z.list_next[p] = -1
    z.free_tail[li] = p
    z.list_prev[n] = -1
    z.free_head[li] = n


@njit(cache=True, inline="always", _nrt=False)
def move_freelist_head(e, li, z):  # type: ignore[no-untyped-def]
    """``move_freelist_head``: the list's entries before ``e`` move to its tail, so
    ``e`` heads it (nothing moves when ``e`` is the list's last entry)."""
    if z.list_next[e] >= 0:
        rotate_freelist(e, li, z)


@njit(cache=True, _nrt=False)
def fast_isolate_freepages(z, prm, ob, cz):  # type: ignore[no-untyped-def]
    """``fast_isolate_freepages``: a short search of the MOVABLE free lists of the
    orders below the pass's (round robin from ``search_order``, each list from its
    tail) for a block in the top quarter of the scanners' gap, else the highest one
    seen in its top half; the block found is isolated and moved to its list's head
    (6.18: only when one is found), then ``fast_isolate_around`` takes its pageblock's
    other free pages. Not for whole-zone passes (order -1). A first search of a pass
    (the free scanner at its start) looks further (256 entries) and, finding nothing,
    moves the free scanner to the highest pageblock with a free block above the
    half-way mark (a direct pass with none: to that mark)."""
    t = cz[CC_ORDER]
    if t <= 0:
        return
    start = prm[P_START]
    limit = max(np.int64(1), freelist_scan_limit(cz) >> 1)
    scan_start = False
    if cz[CC_FREE_PFN] >= cz[CZ_INIT_FREE]:
        limit = np.int64(PAGEBLOCK_PAGES >> 1)
        scan_start = True
    distance = cz[CC_FREE_PFN] - cz[CC_MIGRATE_PFN]
    low_pfn = pageblock_start_pfn(cz[CC_FREE_PFN] - (distance >> 2))
    min_pfn = pageblock_start_pfn(cz[CC_FREE_PFN] - (distance >> 1))
    if min_pfn > low_pfn:
        low_pfn = min_pfn
    cz[CC_SEARCH_ORDER] = min(t - 1, cz[CC_SEARCH_ORDER])
    highest = np.int64(0)
    page = np.int64(-1)
    scanned = np.int64(0)
    order = cz[CC_SEARCH_ORDER]
    while page < 0 and order >= 0:  # the for loop's increment runs after a find too
        if z.nr_free[order] == 0:
            order = next_search_order(order, cz)
            continue
        li = order * MIGRATE_PCPTYPES + MIGRATE_MOVABLE
        order_scanned = np.int64(0)
        high_pfn = np.int64(0)
        e = z.free_tail[li]
        while e >= 0:
            order_scanned += 1
            scanned += 1
            fp = e + start
            if fp >= highest:
                highest = max(pageblock_start_pfn(fp), start)
            if fp >= low_pfn:
                cz[CC_FAST_FAIL] = 0
                cz[CC_SEARCH_ORDER] = order
                page = e
                break
            if fp >= min_pfn and fp > high_pfn:
                high_pfn = fp
                limit >>= 1  # shorten the scan once a candidate is found
            if order_scanned >= limit:
                break
            e = z.list_prev[e]
        if page < 0 and high_pfn != 0:
            page = high_pfn - start
        if page >= 0:
            move_freelist_head(page, li, z)
            scanned += isolate_free_page(page, order, MIGRATE_MOVABLE, z, prm, cz) - 1
        if cz[CC_NR_FREE] >= cz[CC_NR_MIGRATE]:
            break
        if order_scanned >= limit:
            limit = max(np.int64(1), limit >> 1)
        order = next_search_order(order, cz)
    cz[CC_SCAN_F] += scanned
    around = np.int64(-1)
    if page >= 0:
        around = page + start
    else:
        cz[CC_FAST_FAIL] += 1
        if scan_start:
            if highest >= min_pfn:
                around = highest
                cz[CC_FREE_PFN] = highest
            elif cz[CC_DIRECT] != 0 and min_pfn >= start:
                around = min_pfn
                cz[CC_FREE_PFN] = min_pfn
    if highest != 0 and highest >= cz[CZ_FREE]:
        cz[CZ_FREE] = highest - PAGEBLOCK_PAGES
    if around >= 0:
        fast_isolate_around(around, z, prm, ob, cz)


@njit(cache=True, _nrt=False)
def isolate_given_range(s, e, taken, z, prm, ob, cz):  # type: ignore[no-untyped-def]
    """A recorded ``isolate_freepages_block`` over ``[s, e)`` (pfns) that took ``taken``
    pages: the model's free blocks whose heads lie there, isolated whole in pfn order
    until it has as many (the kernel judged the pageblock a target: no type check of the
    model's). Returns the pages isolated."""
    _stop, isolated = isolate_freepages_block(s, e, np.int64(1), z, prm, ob, cz, taken)
    return isolated


@njit(cache=True, _nrt=False)
def isolate_given_fast(min_pfn, free_pfn, taken, z, prm, cz):  # type: ignore[no-untyped-def]
    """A recorded ``fast_isolate_freepages`` pick (its tracepoint: ``min_pfn``, the free
    scanner's ``free_pfn``, one block of ``taken`` pages): the model's MOVABLE free block
    of that order its search would take, the first from the list's tail at or above
    ``low_pfn`` (half-way from ``min_pfn`` to ``free_pfn``: the kernel's quarter and half
    of the scanners' gap), else the highest at or above ``min_pfn``. Returns its pages."""
    order = np.int64(0)
    while order + 1 < NR_PAGE_ORDERS and (np.int64(1) << (order + 1)) <= taken:
        order += 1
    start = prm[P_START]
    low_pfn = max(pageblock_start_pfn(free_pfn - ((free_pfn - min_pfn) >> 1)), min_pfn)
    li = order * MIGRATE_PCPTYPES + MIGRATE_MOVABLE
    page = np.int64(-1)
    high = np.int64(-1)
    e = z.free_tail[li]
    while e >= 0:
        fp = e + start
        if fp >= low_pfn:
            page = e
            break
        if fp >= min_pfn and fp > high:
            high = fp
        e = z.list_prev[e]
    if page < 0 and high >= 0:
        page = high - start
    if page < 0:
        return np.int64(0)
    move_freelist_head(page, li, z)
    n = isolate_free_page(page, order, MIGRATE_MOVABLE, z, prm, cz)
    cz[CC_SCAN_F] += n
    return n


@njit(cache=True, _nrt=False)
def isolate_given_freepages(scan, z, prm, ob, cz):  # type: ignore[no-untyped-def]
    """The recorded step's free-scanner isolations as inputs (``scan[SCAN_FREE0:]``, see
    replay.models.internal): the next ones, in the kernel's order, until the round has
    its targets or the step's list is done (``cz[CC_FREE_GIVEN]``: how many were
    replayed). Where the kernel's free pages were is its compaction's choice, not the
    model's, and which of them were free when it scanned is the trace's: a page the
    kernel held on a pcp list is no target. A linear scan moves the free scanner as the
    kernel's moved (to where it stopped, or below a pageblock it scanned to the end,
    which then gets the skip hint: ``update_pageblock_skip``)."""
    n = scan[SCAN_NFREE]
    start = prm[P_START]
    end = start + prm[P_PAGES]
    pb0 = prm[P_PB0]
    while cz[CC_FREE_GIVEN] < n and cz[CC_NR_FREE] < cz[CC_NR_MIGRATE]:
        i = SCAN_FREE0 + GIVEN_COLS * cz[CC_FREE_GIVEN]
        cz[CC_FREE_GIVEN] += 1
        kind = scan[i]
        s = max(scan[i + 1], start)
        e = min(scan[i + 2], end)
        taken = scan[i + 3]
        if kind == GIVEN_FAST:
            isolate_given_fast(scan[i + 1], scan[i + 2], taken, z, prm, cz)
            continue
        if s >= e:
            continue
        isolate_given_range(s, e, taken, z, prm, ob, cz)
        if kind == GIVEN_AROUND:
            continue  # fast_isolate_around leaves the free scanner where it was
        block_end = min(pageblock_end_pfn(s), end)
        if e >= block_end:
            block_start = pageblock_start_pfn(s)
            z.pageblock_skip[(block_start >> PAGEBLOCK_ORDER) - pb0] = 1
            if block_start - PAGEBLOCK_PAGES < cz[CZ_FREE]:
                cz[CZ_FREE] = block_start - PAGEBLOCK_PAGES
            cz[CC_FREE_PFN] = block_start - PAGEBLOCK_PAGES
        else:
            cz[CC_FREE_PFN] = e


@njit(cache=True, _nrt=False)
def isolate_freepages(z, prm, ob, cz, scan=None):  # type: ignore[no-untyped-def]
    """``isolate_freepages``: ``fast_isolate_freepages`` first; with nothing isolated
    there, the linear scanner: pageblocks down from ``free_pfn`` to the migration
    scanner's, each a suitable target (MOVABLE, not starting with a free block of
    pageblock order) without the skip hint; ASYNC passes stride over 32 pages at a time
    until a pageblock gives some (then 1; doubling after each that gives none). A
    pageblock scanned to its end gets the skip hint, and the zone's cached free
    position moves below it (``update_pageblock_skip``). A recorded step's own
    isolations (``scan``, when the trace has them) come first: the model's scanner
    searches only once they are spent."""
    if scan is not None and scan.shape[0] > SCAN_NFREE and scan[SCAN_NFREE] > 0:
        isolate_given_freepages(scan, z, prm, ob, cz)
        if cz[CC_NR_FREE] > 0:
            return
    fast_isolate_freepages(z, prm, ob, cz)
    if cz[CC_NR_FREE] > 0:
        return
    start = prm[P_START]
    end = start + prm[P_PAGES]
    pb0 = prm[P_PB0]
    # compact_memory and proactive passes ignore the skip hints (but set them)
    ignore = cz[CC_ORDER] < 0
    isolate_start = cz[CC_FREE_PFN]
    block_start = pageblock_start_pfn(isolate_start)
    block_end = min(block_start + PAGEBLOCK_PAGES, end)
    low = pageblock_end_pfn(cz[CC_MIGRATE_PFN])
    stride = np.int64(COMPACT_CLUSTER_MAX) if cz[CC_MODE] == MODE_ASYNC else np.int64(1)
    while block_start >= low:
        pb = (block_start >> PAGEBLOCK_ORDER) - pb0
        ok = block_start >= start
        if ok:
            b = z.buddy_order[block_start - start]
            if b >= PAGEBLOCK_ORDER:
                ok = False  # suitable_migration_target: a large free page
            elif prm[P_GROUP] != 0 and z.pageblock_mt[pb] != MIGRATE_MOVABLE:
                ok = False
            elif not ignore and z.pageblock_skip[pb] != 0:
                ok = False  # isolation_suitable
        if ok:
            isolate_start, got = isolate_freepages_block(isolate_start, block_end, stride, z,
                                                         prm, ob, cz)  # fmt: skip
            if isolate_start == block_end:
                z.pageblock_skip[pb] = 1  # update_pageblock_skip
                if block_start - PAGEBLOCK_PAGES < cz[CZ_FREE]:
                    cz[CZ_FREE] = block_start - PAGEBLOCK_PAGES
            if cz[CC_NR_FREE] >= cz[CC_NR_MIGRATE]:
                if isolate_start >= block_end:
                    isolate_start = block_start - PAGEBLOCK_PAGES
                break
            if isolate_start < block_end:
                break  # isolation failed early
            if got > 0:
                stride = np.int64(1)
            else:
                stride = min(np.int64(COMPACT_CLUSTER_MAX), stride << 1)
        block_end = block_start
        block_start -= PAGEBLOCK_PAGES
        isolate_start = block_start
    cz[CC_FREE_PFN] = isolate_start


@njit(cache=True, _nrt=False)
def compaction_alloc(j, z, prm, ob, cz, scan=None):  # type: ignore[no-untyped-def]
    """``compaction_alloc``: an isolated free block of order j (split), offset or -1
    (``scan``: a recorded step's, see :func:`isolate_freepages`)."""
    isolated = False
    while True:
        c = j
        while c < NR_PAGE_ORDERS and z.isolated_head[c] < 0:
            c += 1
        if c < NR_PAGE_ORDERS:
            break
        if isolated:
            return np.int64(-1)
        isolate_freepages(z, prm, ob, cz, scan)
        isolated = True
    o = z.isolated_head[c]
    list_del(o, c, z.list_next, z.list_prev, z.isolated_head, z.isolated_tail)
    while c > j:
        c -= 1
        list_add(
            o + (np.int64(1) << c),
            c,
            False,
            z.list_next,
            z.list_prev,
            z.isolated_head,
            z.isolated_tail,
        )
    cz[CC_NR_FREE] -= np.int64(1) << j
    return o


# -- the migration scanner -----------------------------------------------------------------
@njit(cache=True, inline="always", _nrt=False)
def suitable_migration_source(pb, z, prm, cz):  # type: ignore[no-untyped-def]
    """``suitable_migration_source`` (only ASYNC compaction, run by direct compaction, filters)."""
    if cz[CC_MODE] != MODE_ASYNC or prm[P_GROUP] == 0:
        return True
    bt = z.pageblock_mt[pb]
    if cz[CC_MT] == MIGRATE_MOVABLE:
        return bt == MIGRATE_MOVABLE
    return bt == cz[CC_MT]


@njit(cache=True, inline="always", _nrt=False)
def move_freelist_tail(e, li, z):  # type: ignore[no-untyped-def]
    """``move_freelist_tail``: the list's entries from its head through ``e`` move to
    its tail (``list_is_first(freelist, &freepage->lru)`` there is true when ``e`` is
    the list's last entry: then nothing moves)."""
    n = z.list_next[e]
    if n >= 0:
        rotate_freelist(n, li, z)


@njit(cache=True, _nrt=False)
def fast_find_migrateblock(z, prm, cz):  # type: ignore[no-untyped-def]
    """``fast_find_migrateblock``: where the migration scanner starts its next
    pageblock (pfn). A pass for an order above PAGE_ALLOC_COSTLY_ORDER (a movable one,
    if direct) that stands at a pageblock's start, and is not finishing one, looks
    through the MOVABLE free lists of orders t - 1 down to 3 (at most
    ``(32 >> fast_search_fail) + 1`` entries, each list from its head) for a free block
    below ``high_pfn`` (the first half of the scanners' gap on a pass's first search,
    else its first eighth) in a pageblock without the skip hint: that pageblock is
    mostly free already, so fewer pages free it all. Found: that pageblock, and its
    entry moves to the list's tail (6.18 sets no hint here: the isolation does);
    else the lowest block found before (``reinit_migrate_pfn``) or where the scanner
    stands."""
    start = prm[P_START]
    pfn = cz[CC_MIGRATE_PFN]
    t = cz[CC_ORDER]
    if t < 0:  # compact_memory and proactive passes ignore the skip hints
        return pfn
    if cz[CC_FINISH_PB] != 0:
        return pfn
    if pfn != start and pfn != pageblock_start_pfn(pfn):
        return pfn
    if t <= PAGE_ALLOC_COSTLY_ORDER:
        return pfn
    if cz[CC_DIRECT] != 0 and cz[CC_MT] != MIGRATE_MOVABLE:
        return pfn
    limit = freelist_scan_limit(cz)
    distance = (cz[CC_FREE_PFN] - pfn) >> 1
    if pfn != start:
        distance >>= 2
    high = pageblock_start_pfn(pfn + distance)
    scanned = np.int64(0)
    found = False
    o = t - 1
    while o >= PAGE_ALLOC_COSTLY_ORDER and not found and scanned < limit:
        li = o * MIGRATE_PCPTYPES + MIGRATE_MOVABLE
        if z.nr_free[o] > 0:
            e = z.free_head[li]
            while e >= 0:
                s = scanned
                scanned += 1
                if s >= limit:
                    move_freelist_tail(e, li, z)
                    break
                fp = e + start
                if fp < high:
                    pb = (fp >> PAGEBLOCK_ORDER) - prm[P_PB0]
                    if z.pageblock_skip[pb] != 0:  # skipped recently
                        e = z.list_next[e]
                        continue
                    move_freelist_tail(e, li, z)
                    fs = cz[CC_FAST_START]
                    if fs != FAST_START_DONE:
                        cz[CC_FAST_START] = fp if fs == 0 else min(fs, fp)
                    pfn = max(pageblock_start_pfn(fp), start)
                    cz[CC_FAST_FAIL] = 0
                    found = True
                    break
                e = z.list_next[e]
        o -= 1
    cz[CC_SCAN_M] += scanned
    if not found:
        cz[CC_FAST_FAIL] += 1
        fs = cz[CC_FAST_START]
        if fs != 0 and fs != FAST_START_DONE:
            cz[CC_MIGRATE_PFN] = fs
            cz[CC_FAST_START] = FAST_START_DONE
        pfn = cz[CC_MIGRATE_PFN]
    return pfn


@njit(cache=True, inline="always", _nrt=False)
def block_end_pfn(pfn, order):  # type: ignore[no-untyped-def]
    """``block_end_pfn``: the first pfn after pfn's order-aligned block."""
    return (pfn + (np.int64(1) << order)) & ~((np.int64(1) << order) - 1)


@njit(cache=True, _nrt=False)
def isolate_migratepages_block(low, end, z, prm, ob, cz):  # type: ignore[no-untyped-def]
    """``isolate_migratepages_block`` over pfns [low, end) of one pageblock: movable
    units the pass may migrate are isolated, up to 32 pages (all the pageblock's rest
    when finishing it). Entered at the pageblock's start, the block is checked for the
    skip hint (set: nothing is scanned) and gets it at its first isolation
    (``test_and_set_skip``, not for passes that ignore hints) or, scanned to its end,
    when nothing was isolated or the pass finishes it. An ASYNC direct pass isolates
    only whole order-t aligned blocks (``skip_on_failure``): a page it cannot isolate (an
    allocated page not migratable, a pcp page) drops what it isolated in that block and
    moves on to the next. The migration scanner stands where the scan stopped."""
    start = prm[P_START]
    t = cz[CC_ORDER]
    ignore = t < 0
    finish = cz[CC_FINISH_PB] != 0
    pb = (low >> PAGEBLOCK_ORDER) - prm[P_PB0]
    valid = False
    if (low & (PAGEBLOCK_PAGES - 1)) == 0 or low == start:
        if not ignore and z.pageblock_skip[pb] != 0:
            cz[CC_MIGRATE_PFN] = end  # isolation_suitable: skipped recently
            return
        valid = True
    skip_updated = False
    skip_on_failure = cz[CC_DIRECT] != 0 and cz[CC_MODE] == MODE_ASYNC and t > 0
    next_skip = block_end_pfn(low, t) if skip_on_failure else np.int64(0)
    r0 = cz[CC_NUNITS]
    nr_isolated = np.int64(0)
    p = low
    while p < end:
        if skip_on_failure and p >= next_skip:
            if nr_isolated > 0:
                break  # the order-aligned block isolated whole: migrate it now
            next_skip = block_end_pfn(p, t)
        o = p - start
        b = z.buddy_order[o]
        if b >= 0:  # a free block: passed over
            n = np.int64(1) << b
            cz[CC_SCAN_M] += n
            p += n
            continue
        x = z.pg_obj[o]
        if x >= 0:
            n = np.int64(1) << ob.obj_order[x]
            cz[CC_SCAN_M] += n
            p += n
            if migratable(x, t, ob):
                if valid and not skip_updated:
                    skip_updated = True
                    if not ignore:
                        z.pageblock_skip[pb] = 1  # test_and_set_skip
                cz[CC_UNITS + cz[CC_NUNITS]] = o
                cz[CC_NUNITS] += 1
                cz[CC_NR_MIGRATE] += n
                nr_isolated += n
                if cz[CC_NR_MIGRATE] >= COMPACT_CLUSTER_MAX and not finish:
                    break
                continue
        else:
            cz[CC_SCAN_M] += 1
            p += 1
        # isolate_fail
        if not skip_on_failure:
            continue
        if nr_isolated > 0:  # putback_movable_pages: this block cannot be freed whole
            for r in range(r0, cz[CC_NUNITS]):
                cz[CC_NR_MIGRATE] -= unit_pages(cz[CC_UNITS + r], z, prm, ob)
            cz[CC_NUNITS] = r0
            nr_isolated = 0
        if p < next_skip:
            p = next_skip
            next_skip += np.int64(1) << t
    if p > end:
        p = end
    if p == end and (nr_isolated == 0 or finish):
        if valid and not skip_updated:
            z.pageblock_skip[pb] = 1
    cz[CC_MIGRATE_PFN] = p


@njit(cache=True, _nrt=False)
def isolate_migratepages(z, prm, ob, cz):  # type: ignore[no-untyped-def]
    """``isolate_migratepages``: from the pageblock ``fast_find_migrateblock`` picks (or
    the recorded batch's range) on, the first pageblock below the free scanner that is
    a suitable migration source and, entered at its start (not the fast search's pick),
    has no skip hint; ``isolate_migratepages_block`` isolates from it."""
    start = prm[P_START]
    pb0 = prm[P_PB0]
    if cz[CC_FAST_GIVEN] != 0:  # the recorded batch's range: the kernel's search chose it
        cz[CC_FAST_GIVEN] = 0
        low = cz[CC_MIGRATE_PFN]
        fast = True
    else:
        low = fast_find_migrateblock(z, prm, cz)
        fast = low != cz[CC_MIGRATE_PFN] and cz[CC_FAST_FAIL] == 0
    ignore = cz[CC_ORDER] < 0  # compact_memory and proactive passes ignore the skip hints
    block_end = pageblock_end_pfn(low)
    while block_end <= cz[CC_FREE_PFN]:
        pb = (low >> PAGEBLOCK_ORDER) - pb0
        skipped = (
            not ignore
            and not fast
            and ((low & (PAGEBLOCK_PAGES - 1)) == 0 or low == start)
            and (z.pageblock_skip[pb] != 0)
        )  # isolation_suitable
        given = fast
        fast = False
        if skipped or not suitable_migration_source(pb, z, prm, cz):
            low = block_end
            cz[CC_MIGRATE_PFN] = low
            block_end += PAGEBLOCK_PAGES
            continue
        if given and cz[CC_ORDER] >= 0 and z.pageblock_skip[pb] != 0:
            # the fast search never picks a block with the hint; a recorded batch's
            # range was the kernel's pick, so its hint was clear there
            z.pageblock_skip[pb] = 0
        isolate_migratepages_block(low, block_end, z, prm, ob, cz)
        return


@njit(cache=True, inline="always", _nrt=False)
def move_unit(x, src, dst, z, prm, ob):  # type: ignore[no-untyped-def]
    """Object x's unit leaves pfn src for pfn dst: per-pageblock counts, pg_obj, placed
    (docs/defrag.md "moving a unit"; compaction's migrations and the defrag models')."""
    start = prm[P_START]
    j = np.int64(ob.obj_order[x])
    mt = np.int64(ob.obj_mt[x])
    pageblock_alloc_add(src, j, mt, -1, z.pageblock_alloc, prm[P_PB0])
    pageblock_alloc_add(dst, j, mt, 1, z.pageblock_alloc, prm[P_PB0])
    if z.pg_obj[src - start] == x:
        z.pg_obj[src - start] = -1
    z.pg_obj[dst - start] = x
    ob.placed[x] = dst


@njit(cache=True, _nrt=False)
def split_folio(x, z, prm, ob):  # type: ignore[no-untyped-def]
    """``try_split_folio`` -> ``split_folio_to_list``: object x's unit (order j > 0)
    becomes ``1 << j`` order-0 units at its pages, objects of the split room
    (``ob.split``) that inherit its type and flags and its place on the LRU; x keeps its
    order and names its first piece (``placed[x] = PLACED_SPLIT_BASE - first``), so a
    later free of x frees its pieces wherever they are (events.free_object). Returns
    the first piece's id, or -1 when the room has too few ids left (x stays whole)."""
    start = prm[P_START]
    n = np.int64(1) << ob.obj_order[x]
    first = ob.split[0]
    if first + n > ob.split[1]:
        return np.int64(-1)
    ob.split[0] = first + n
    base = ob.placed[x]
    for i in range(n):
        y = first + i
        ob.placed[y] = base + i
        ob.obj_mt[y] = ob.obj_mt[x]
        ob.obj_order[y] = 0
        ob.obj_flags[y] = ob.obj_flags[x]
        z.pg_obj[base + i - start] = y
    if prm[P_KSWAPD] != 0 and (ob.obj_flags[x] & F_RECLAIM) != 0:
        lru_split(x, first, n, ob)
    ob.placed[x] = PLACED_SPLIT_BASE - first
    return first


@njit(cache=True, inline="always", _nrt=False)
def migrate_one(x, src, dst, z, prm, ob, cz, counters):  # type: ignore[no-untyped-def]
    """Unit x (order j) leaves offset ``src`` for the target at offset ``dst`` that
    ``compaction_alloc`` gave it (``migrate_folio_move``), and the old folio is freed."""
    start = prm[P_START]
    j = np.int64(ob.obj_order[x])
    cz[CC_NR_MIGRATE] -= np.int64(1) << j  # compaction_alloc: one unit less to place
    move_unit(x, src + start, dst + start, z, prm, ob)
    # migrate_folio_done -> folio_put: the old folio is freed as any page is, to the
    # compacting cpu's pcp list when its order has one
    free_frozen_pages(src + start, j, cz[CC_CPU], z, prm, counters)
    cz[CC_MOVED] += np.int64(1) << j
    counters[C_MIGRATED] += np.int64(1) << j
    if ob.obj_mt[x] != MIGRATE_MOVABLE:  # a movable driver page (movable_classes)
        counters[C_DRIVER_MIGRATED] += np.int64(1) << j


@njit(cache=True, inline="always", _nrt=False)
def split_entry(x, src):  # type: ignore[no-untyped-def]
    """The unit list entry of folio x, split at offset ``src``, its pages waiting."""
    return np.int64(-1) - ((np.int64(x) << CC_SPLIT_SHIFT) | np.int64(src))


@njit(cache=True, inline="always", _nrt=False)
def split_decode(e):  # type: ignore[no-untyped-def]
    """The folio and its offset of a split folio's unit list entry (:func:`split_entry`)."""
    v = np.int64(-1) - e
    return v >> CC_SPLIT_SHIFT, v & ((np.int64(1) << CC_SPLIT_SHIFT) - 1)


@njit(cache=True, inline="always", _nrt=False)
def split_pending(e, z, prm, ob, p):  # type: ignore[no-untyped-def]
    """Page ``p`` of the split folio of unit list entry ``e``: its piece's object id when
    it still waits at its old page (not migrated, not freed since the split), else -1."""
    x, src = split_decode(e)
    y = PLACED_SPLIT_BASE - ob.placed[x] + p
    if ob.placed[y] == prm[P_START] + src + p and z.pg_obj[src + p] == y:
        return y
    return np.int64(-1)


@njit(cache=True, inline="always", _nrt=False)
def unit_pages(e, z, prm, ob):  # type: ignore[no-untyped-def]
    """Pages a unit list entry still holds: a unit's (none once it is freed), a split
    folio's pages still waiting, none for an entry this call is done with."""
    if e == CC_UNIT_DONE:
        return np.int64(0)
    if e >= 0:
        y = z.pg_obj[e]
        return np.int64(1) << ob.obj_order[y] if y >= 0 else np.int64(0)
    x, _src = split_decode(e)
    n = np.int64(0)
    for p in range(np.int64(1) << ob.obj_order[x]):
        if split_pending(e, z, prm, ob, p) >= 0:
            n += 1
    return n


@njit(cache=True, inline="always", _nrt=False)
def fail_units(r0, z, prm, ob, cz):  # type: ignore[no-untyped-def]
    """-ENOMEM: the unit list's entries from ``r0`` on are not tried; their pages count
    as failed and the list is emptied."""
    for r in range(r0, cz[CC_NUNITS]):
        cz[CC_FAILED] += unit_pages(cz[CC_UNITS + r], z, prm, ob)
    cz[CC_NUNITS] = 0
    cz[CC_NR_MIGRATE] = 0


@njit(cache=True, _nrt=False)
def migrate_pages(z, prm, ob, cz, counters, budget=-1, scan=None):  # type: ignore[no-untyped-def]
    """``migrate_pages``: each isolated unit to a target from ``compaction_alloc``, in
    isolation order. With ``budget`` (pages, -1: none) it stops once the pass has moved
    that many: the units left stay isolated in ``cz`` for a later call (a recorded pass
    stopped inside the kernel's batch, where its migrate_pages had freed that many old
    folios so far: ``migrate_pages_batch`` frees each as it moves it). A unit whose object
    no longer starts at its offset (freed, or moved, while it waited) is done, as
    ``migrate_folio_unmap`` finds a folio freed from under it.

    A large folio without a free block of its order is split (``migrate_pages_batch``'s
    -ENOMEM: ``try_split_folio`` onto split_folios); its pages wait, in place as order-0
    folios, until the rest of the batch is done, then migrate one by one (``migrate_pages``'
    one MIGRATE_ASYNC ``migrate_pages_batch`` of split_folios), the first without a target
    ending them. A base page without a target ends the batch, and the split folios' pages
    are not tried either (``rc < 0``: split_folios go back with the rest). The batch is
    one ``migrate_pages_batch``: a compaction batch holds under 32 pages before its last
    unit, so NR_MAX_BATCHED_MIGRATION (512) never cuts it before that. ``scan``: a
    recorded step's (its free-scanner isolations, :func:`isolate_freepages`)."""
    n = cz[CC_NUNITS]
    stopped = False
    for i in range(n):
        if budget >= 0 and cz[CC_MOVED] >= budget:
            stopped = True
            break
        src = cz[CC_UNITS + i]
        if src < 0:
            continue  # done, or a split folio: its pages wait for the batch's end
        x = z.pg_obj[src]
        cz[CC_UNITS + i] = CC_UNIT_DONE
        if x < 0 or z.buddy_order[src] >= 0 or not migratable(x, cz[CC_ORDER], ob):
            continue
        j = np.int64(ob.obj_order[x])
        dst = compaction_alloc(j, z, prm, ob, cz, scan)
        if dst < 0 and j > 0:
            if split_folio(x, z, prm, ob) < 0:
                # no room for the pieces: the folio stays, the batch goes on
                counters[C_SPLIT_FULL] += 1
                cz[CC_FAILED] += np.int64(1) << j
                continue
            counters[C_SPLIT] += 1
            cz[CC_UNITS + i] = split_entry(x, src)
            continue
        if dst < 0:
            # -ENOMEM for a base page: the rest of the batch is not tried, nor the pages
            # of the folios split so far
            cz[CC_FAILED] += np.int64(1) << j
            fail_units(0, z, prm, ob, cz)
            return
        migrate_one(x, src, dst, z, prm, ob, cz, counters)
    if not stopped:
        # the split folios' pages, in the order they were split
        for i in range(n):
            e = cz[CC_UNITS + i]
            if e >= 0 or e == CC_UNIT_DONE:
                continue
            x, src = split_decode(e)
            for p in range(np.int64(1) << ob.obj_order[x]):
                y = split_pending(e, z, prm, ob, p)
                if y < 0:
                    continue
                if budget >= 0 and cz[CC_MOVED] >= budget:
                    stopped = True
                    break
                d = compaction_alloc(0, z, prm, ob, cz, scan)
                if d < 0:  # -ENOMEM: the split pages left are not tried
                    fail_units(i, z, prm, ob, cz)
                    return
                migrate_one(y, src + p, d, z, prm, ob, cz, counters)
            if stopped:
                break
            cz[CC_UNITS + i] = CC_UNIT_DONE
    # the units and split folios left (a budget stopped the call), in their order
    left = np.int64(0)
    nr = np.int64(0)
    for r in range(n):
        e = cz[CC_UNITS + r]
        if e == CC_UNIT_DONE:
            continue
        cz[CC_UNITS + left] = e
        left += 1
        nr += unit_pages(e, z, prm, ob)
    cz[CC_NUNITS] = left
    cz[CC_NR_MIGRATE] = nr


@njit(cache=True, _nrt=False)
def isolated_free_pages(z):  # type: ignore[no-untyped-def]
    """Pages on compaction's isolated free lists (``cc->nr_freepages`` of whichever
    passes isolated them: a recorded pass keeps its targets while its batch is in flight)."""
    n = np.int64(0)
    for c in range(NR_PAGE_ORDERS):
        o = z.isolated_head[c]
        while o >= 0:
            n += np.int64(1) << c
            o = z.list_next[o]
    return n


# -- compact_zone ----------------------------------------------------------------------------
@njit(cache=True, _nrt=False)
def compaction_suitable(t, z, prm):  # type: ignore[no-untyped-def]
    """``compaction_suitable``: order-0 watermark plus compact_gap, then the fragindex test."""
    mark = (prm[P_WLOW] if t > PAGE_ALLOC_COSTLY_ORDER else prm[P_WMIN]) + (np.int64(2) << t)
    free = zone_free_pages(z.nr_free)
    if not zone_watermark_ok(0, mark, free, z.nr_free_mt.reshape((NR_PAGE_ORDERS, 3)), 0):
        return False
    if t > PAGE_ALLOC_COSTLY_ORDER:
        fi = fragmentation_index(t, z.nr_free)
        if fi >= 0 and fi <= prm[P_EXTFRAG]:
            return False
    return True


@njit(cache=True, _nrt=False)
def reset_cached_positions(prm, cz):  # type: ignore[no-untyped-def]
    start = prm[P_START]
    cz[CZ_MIG0] = start
    cz[CZ_MIG1] = start
    cz[CZ_FREE] = pageblock_start_pfn(start + prm[P_PAGES] - 1)


@njit(cache=True, _nrt=False)
def reset_isolation_pfn(pb, check_source, check_target, z, prm, ob):  # type: ignore[no-untyped-def]
    """``__reset_isolation_pfn`` for pageblock ``pb`` (index): a pageblock whose pages
    sampled every 8 show a movable unit (``PageLRU``: any page of one) or, for the free
    scanner, a free block's head (``PageBuddy``) loses its skip hint (True). With both
    checks, a pageblock already without the hint is True at once; the free scanner's
    check needs a MOVABLE pageblock; a pageblock that is one free block of pageblock
    order or more keeps it (``pageblock_skip_persistent`` is for such folios)."""
    start = prm[P_START]
    end = start + prm[P_PAGES]
    b0 = (pb + prm[P_PB0]) << PAGEBLOCK_ORDER
    if check_source and check_target and z.pageblock_skip[pb] == 0:
        return True
    if not check_source and check_target and z.pageblock_mt[pb] != MIGRATE_MOVABLE:
        return False
    lo = max(b0, start)
    hi = min(b0 + PAGEBLOCK_PAGES, end)
    p = lo
    while p < hi:
        o = p - start
        b = z.buddy_order[o]
        if b >= 0:
            n = np.int64(1) << b
            if check_target and ((p - lo) & 7) == 0:
                z.pageblock_skip[pb] = 0
                return True
            p += n
            continue
        x = z.pg_obj[o]
        if x >= 0:
            n = np.int64(1) << ob.obj_order[x]
            if n >= PAGEBLOCK_PAGES:
                return False  # pageblock_skip_persistent
            # a sample (every 8th page from lo) falls inside the unit
            first = lo + (((p - lo) + 7) & ~np.int64(7))
            if check_source and (ob.obj_flags[x] & F_MOVABLE) != 0 and first < p + n:
                z.pageblock_skip[pb] = 0
                return True
            p += n
            continue
        p += 1
    return False


@njit(cache=True, _nrt=False)
def reset_isolation_suitable(z, prm, cz, ob=None):  # type: ignore[no-untyped-def]
    """``__reset_isolation_suitable`` (when ``compact_blockskip_flush`` is set, which it
    clears): from both ends of the zone towards its middle, pageblocks with a movable
    unit (from the bottom) or a free block (from the top) lose their skip hint; the
    scanners' cached and initial positions become the first such pageblocks (none
    found: the scanners meet at the middle). Without ``ob`` (no units kept) every hint
    is cleared and the positions reset to the zone's ends."""
    if cz[CZ_BLOCKSKIP_FLUSH] == 0:
        return
    cz[CZ_BLOCKSKIP_FLUSH] = 0
    start = prm[P_START]
    end = start + prm[P_PAGES]
    if ob is None:
        z.pageblock_skip[:] = 0
        reset_cached_positions(prm, cz)
        cz[CZ_INIT_MIGRATE] = cz[CZ_MIG0]
        cz[CZ_INIT_FREE] = cz[CZ_FREE]
        return
    pb0 = prm[P_PB0]
    migrate_pfn = start
    free_pfn = end - 1
    reset_migrate = free_pfn
    reset_free = migrate_pfn
    source_set = False
    free_set = False
    while migrate_pfn < free_pfn:
        if (reset_isolation_pfn((migrate_pfn >> PAGEBLOCK_ORDER) - pb0, True, source_set, z,
                                prm, ob)
                and migrate_pfn < reset_migrate):  # fmt: skip
            source_set = True
            reset_migrate = migrate_pfn
            cz[CZ_INIT_MIGRATE] = reset_migrate
            cz[CZ_MIG0] = reset_migrate
            cz[CZ_MIG1] = reset_migrate
        if (reset_isolation_pfn((free_pfn >> PAGEBLOCK_ORDER) - pb0, free_set, True, z, prm,
                                ob)
                and free_pfn > reset_free):  # fmt: skip
            free_set = True
            reset_free = free_pfn
            cz[CZ_INIT_FREE] = reset_free
            cz[CZ_FREE] = reset_free
        migrate_pfn += PAGEBLOCK_PAGES
        free_pfn -= PAGEBLOCK_PAGES
    if reset_migrate >= reset_free:  # leave no distance if no suitable block was reset
        cz[CZ_MIG0] = migrate_pfn
        cz[CZ_MIG1] = migrate_pfn
        cz[CZ_FREE] = free_pfn


@njit(cache=True, inline="always", _nrt=False)
def compaction_restarting(t, cz):  # type: ignore[no-untyped-def]
    """``compaction_restarting``: order t has failed for the whole deferral period."""
    if t < cz[CZ_ORDER_FAILED]:
        return False
    return (cz[CZ_SHIFT] == COMPACT_MAX_DEFER_SHIFT
            and cz[CZ_CONSIDERED] >= (np.int64(1) << cz[CZ_SHIFT]))  # fmt: skip


@njit(cache=True, _nrt=False)
def compact_finished(z, prm, cz):  # type: ignore[no-untyped-def]
    """``__compact_finished`` (+ ``compact_finished``'s NO_SUITABLE_PAGE -> CONTINUE)."""
    if (cz[CC_FREE_PFN] >> PAGEBLOCK_ORDER) <= (cz[CC_MIGRATE_PFN] >> PAGEBLOCK_ORDER):
        reset_cached_positions(prm, cz)
        if cz[CC_DIRECT] != 0:
            # compact_blockskip_flush: kswapd's next try_to_sleep clears the hints; a
            # run without the recorded kswapd clears them now
            cz[CZ_BLOCKSKIP_FLUSH] = 1
            if prm[P_KSWAPD_RECORDED] == 0:
                reset_isolation_suitable(z, prm, cz)
        return COMPLETE if cz[CC_WHOLE] != 0 else PARTIAL_SKIPPED
    if cz[CC_PROACTIVE] != 0:
        if extfrag_for_order(PAGEBLOCK_ORDER, z.nr_free) > score_wmark(True, prm[P_PROACTIVE]):
            return CONTINUE
        return SUCCESS
    t = cz[CC_ORDER]
    if t == -1:
        return CONTINUE
    if (cz[CC_MIGRATE_PFN] & (PAGEBLOCK_PAGES - 1)) != 0:
        return CONTINUE
    mt = cz[CC_MT]
    for o in range(t, NR_PAGE_ORDERS):
        if z.free_head[o * 3 + mt] >= 0:
            return SUCCESS
        if prm[P_GROUP] != 0 and should_try_claim_block(o, mt):
            if find_suitable_fallback(o, mt, z.free_head) >= 0:
                return SUCCESS
    return CONTINUE


@njit(cache=True, _nrt=False)
def release_freepages(z, prm, cz):  # type: ignore[no-untyped-def]
    """``release_free_list``: isolated free blocks back to the buddy, orders 0..10, head first."""
    start = prm[P_START]
    for c in range(NR_PAGE_ORDERS):
        while z.isolated_head[c] >= 0:
            o = z.isolated_head[c]
            list_del(o, c, z.list_next, z.list_prev, z.isolated_head, z.isolated_tail)
            free_to_buddy(o + start, np.int64(c), z, prm)
    cz[CC_NR_FREE] = 0


@njit(cache=True, _nrt=False)
def compact_start(t, mode, whole, proactive, mt, cpu, direct, z, prm, ob, cz, scan=None):  # type: ignore[no-untyped-def]
    """``compact_zone`` up to its loop: the skip hints flushed when order t's compaction
    is restarting after its deferral (``compaction_restarting``), the scanners' start
    (the zone's cached positions, or the zone's ends for a whole-zone pass; ``scan``:
    see :func:`compact_zone`) and a fresh compact_control in ``cz``'s CC fields (pfns;
    ``cpu``: the compacting task's; ``direct``: a task's direct compaction)."""
    if t > 0 and compaction_restarting(t, cz):
        reset_isolation_suitable(z, prm, cz, ob)
    start = prm[P_START]
    end = start + prm[P_PAGES]
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
    if scan is not None:
        if scan[0] >= start and scan[0] < end:
            mig = scan[0]
        if scan[1] >= start and scan[1] < end:
            fr = pageblock_start_pfn(scan[1])
        whole = whole or mig == start
    cz[CC_ORDER] = t
    cz[CC_MODE] = mode
    cz[CC_WHOLE] = 1 if whole else 0
    cz[CC_PROACTIVE] = 1 if proactive else 0
    cz[CC_MT] = mt
    cz[CC_MIGRATE_PFN] = mig
    cz[CC_FREE_PFN] = fr
    for f in range(CC_NR_MIGRATE, CC_NUNITS + 1):
        cz[f] = 0
    cz[CC_NR_FREE] = isolated_free_pages(z)  # a recorded pass's targets, while it waits
    cz[CC_MIG_START] = mig
    cz[CC_FREE_START] = fr
    cz[CC_CPU] = cpu
    cz[CC_LAST_MIGRATED] = -1
    cz[CC_CAPC] = -1
    cz[CC_CAPC_PAGE] = -1
    cz[CC_FAST_FAIL] = 0
    cz[CC_FAST_START] = 0
    cz[CC_FAST_GIVEN] = 0
    cz[CC_FREE_GIVEN] = 0
    cz[CC_DIRECT] = 1 if direct else 0
    cz[CC_FINISH_PB] = 0
    cz[CC_SEARCH_ORDER] = t  # compact_zone_order's .search_order = order


# -- capture_control ---------------------------------------------------------------------
@njit(cache=True, _nrt=False)
def capture_release(z, prm):  # type: ignore[no-untyped-def]
    """A captured block nobody takes goes back to the buddy (nothing armed meanwhile)."""
    capc = z.capture
    capc[CAPC_ORDER] = -1
    page = capc[CAPC_PAGE]
    if page >= 0:
        capc[CAPC_PAGE] = -1
        free_to_buddy(page, capc[CAPC_PAGE_ORDER], z, prm)


@njit(cache=True, _nrt=False)
def capture_arm(t, mt, z, prm):  # type: ignore[no-untyped-def]
    """``compact_zone_order`` sets ``current->capture_control``: blocks freed to order
    ``t`` in a pageblock type that may serve free-list type ``mt`` are captured from now
    on (a block still waiting for a recorded pass's requester goes back first)."""
    capture_release(z, prm)
    z.capture[CAPC_ORDER] = t
    z.capture[CAPC_MT] = mt


@njit(cache=True, _nrt=False)
def capture_disarm(z):  # type: ignore[no-untyped-def]
    """``WRITE_ONCE(current->capture_control, NULL)``: the captured block's pfn (-1: none),
    now the caller's."""
    capc = z.capture
    page = capc[CAPC_PAGE]
    capc[CAPC_ORDER] = -1
    capc[CAPC_PAGE] = -1
    return page


@njit(cache=True, _nrt=False)
def take_captured(k, mt, z, prm):  # type: ignore[no-untyped-def]
    """The allocation a recorded direct compaction ran for takes the block the model's
    replay of that pass captured (``__alloc_pages_direct_compact``: ``prep_new_page`` of
    the captured page): its pfn, or -1 when none of order k waits (one of another order
    goes back to the buddy). ``mt``: the request's type, for the allocated-page count."""
    capc = z.capture
    page = capc[CAPC_PAGE]
    if page < 0 or capc[CAPC_ORDER] >= 0:
        return np.int64(-1)
    if capc[CAPC_PAGE_ORDER] != k:
        capture_release(z, prm)
        return np.int64(-1)
    capc[CAPC_PAGE] = -1
    if mt < 0 or mt >= MIGRATE_PCPTYPES:
        mt = MIGRATE_MOVABLE
    pageblock_alloc_add(page, k, mt, 1, z.pageblock_alloc, prm[P_PB0])
    return page


@njit(cache=True, _nrt=False)
def compact_loop(budget, z, prm, ob, cz, counters, scan=None, split=False):  # type: ignore[no-untyped-def]
    """``compact_zone``'s loop: isolate and migrate until ``compact_finished`` says
    otherwise (its result), ``budget`` pages (-1: none) have moved in the pass
    (CONTINUE: the pass can go on), the migration scanner has left the recorded batch's
    range (``scan[5]``, when known: CONTINUE), or else the scanners reach where the
    recorded pass's stopped (``scan[2:4]``: SUCCESS). ``split``: the budget may end the
    loop inside a batch (a recorded pass's step between the kernel's old-folio frees);
    the units left stay isolated and the next call migrates them first.

    Each round finishes the pageblock it last migrated from (``finish_pageblock``: the
    scanner is still in it), and a round whose migration failed partway through a
    pageblock rescans the rest of it at once (not for passes that ignore the skip hints,
    nor SYNC ones), so that pageblock gets its skip hint."""
    rescan = False
    while True:
        if cz[CC_NUNITS] == 0:
            if not rescan:
                r = compact_finished(z, prm, cz)
                if r != CONTINUE:
                    return r
                if budget >= 0 and cz[CC_MOVED] >= budget:
                    return CONTINUE
                if scan is not None:
                    if scan[5] >= 0:
                        if cz[CC_MIGRATE_PFN] >= scan[5]:
                            return CONTINUE  # the batch's range is done
                    elif (scan[2] >= 0 and cz[CC_MIGRATE_PFN] >= scan[2]) or (
                        scan[3] >= 0 and cz[CC_FREE_PFN] <= scan[3]
                    ):
                        return SUCCESS  # where the recorded pass ended
                # the kernel's last_migrated_pfn is 0 for none: pageblock 0 counts as
                # the one last migrated from (a zone starting there finishes it at once)
                last = max(cz[CC_LAST_MIGRATED], np.int64(0))
                cz[CC_FINISH_PB] = 1 if (
                    pageblock_start_pfn(last) == pageblock_start_pfn(cz[CC_MIGRATE_PFN])
                ) else 0  # fmt: skip
            rescan = False
            isolate_migratepages(z, prm, ob, cz)
            if cz[CC_NUNITS] > 0:
                cz[CC_LAST_MIGRATED] = max(prm[P_START],
                                           pageblock_start_pfn(cz[CC_MIGRATE_PFN] - 1))  # fmt: skip
        if cz[CC_NUNITS] > 0:
            failed = cz[CC_FAILED]
            migrate_pages(z, prm, ob, cz, counters, budget if split else np.int64(-1), scan)
            if cz[CC_NUNITS] > 0:
                return CONTINUE  # the budget ran out inside the batch
            if (
                cz[CC_FAILED] > failed
                and (cz[CC_MIGRATE_PFN] & (PAGEBLOCK_PAGES - 1)) != 0
                and cz[CC_ORDER] >= 0
                and cz[CC_FINISH_PB] == 0
            ):
                # a page failed to migrate within the pageblock: scan its rest now, so
                # it is marked skip and fast_find_migrateblock does not come back to it
                cz[CC_FINISH_PB] = 1
                if cz[CC_ORDER] == PAGEBLOCK_ORDER:
                    cz[CC_LAST_MIGRATED] = -1  # a drain does not help THP then
                rescan = True
                continue
            # Stop if a page has been captured: before draining the pcp lists, which is
            # then unnecessary ("mm, compaction: check if a page has been captured before
            # draining PCP pages", 2023; a round that isolated nothing goes straight to
            # check_drain)
            if z.capture[CAPC_ORDER] >= 0 and z.capture[CAPC_PAGE] >= 0:
                return SUCCESS
        # check_drain: the migration scanner left the cc->order aligned block it migrated
        # from: flush this cpu's pcp pages so they merge (lru_add_drain_cpu_zone)
        # (a recorded pass's drain is in the trace: with P_PCP_RECORDED it comes as an
        # input, the recorded kernel's bulk free)
        t = cz[CC_ORDER]
        if t > 0 and cz[CC_LAST_MIGRATED] >= 0:
            block_start = cz[CC_MIGRATE_PFN] & ~((np.int64(1) << t) - 1)
            if cz[CC_LAST_MIGRATED] < block_start:
                recorded_drain = scan is not None and prm[P_PCP_RECORDED] != 0
                if prm[P_PCP] != 0 and not recorded_drain:
                    drain_local(cz[CC_CPU], z, prm, counters)
                cz[CC_LAST_MIGRATED] = -1  # no more flushing until it migrates again


@njit(cache=True, _nrt=False)
def compact_done(r, kind, seq, z, prm, cz, counters, me):  # type: ignore[no-untyped-def]
    """``compact_zone`` after its loop: the isolated free pages back, the zone's cached
    scanner positions updated (a pass that did not run to the end), one model event."""
    release_freepages(z, prm, cz)
    mode = cz[CC_MODE]
    if r != COMPLETE and r != PARTIAL_SKIPPED:
        if cz[CC_MIGRATE_PFN] > cz[CZ_MIG0]:
            cz[CZ_MIG0] = cz[CC_MIGRATE_PFN]
        if mode == MODE_SYNC and cz[CC_MIGRATE_PFN] > cz[CZ_MIG1]:
            cz[CZ_MIG1] = cz[CC_MIGRATE_PFN]
        if cz[CC_FREE_PFN] < cz[CZ_FREE]:
            cz[CZ_FREE] = cz[CC_FREE_PFN]
    counters[C_SCANNED] += cz[CC_SCAN_M] + cz[CC_SCAN_F]
    emit(z, me, counters, seq, kind, cz[CC_ORDER], mode, cz[CC_MIG_START], cz[CC_FREE_START],
         cz[CC_MIGRATE_PFN], cz[CC_FREE_PFN], cz[CC_SCAN_M], cz[CC_SCAN_F], cz[CC_MOVED],
         cz[CC_FAILED], 0, r)  # fmt: skip


@njit(cache=True, _nrt=False)
def compact_zone(t, mode, whole, proactive, mt, cpu, kind, seq, z, prm, ob, cz, counters, me,  # type: ignore[no-untyped-def]
                 budget=-1, scan=None):  # fmt: skip
    """``compact_zone``; returns the compact_result and records one model event.

    For a pass a recorded kernel ran (``compact_recorded``): ``budget`` (pages,
    -1 none) ends it (SUCCESS) once it has migrated that many pages, and
    ``scan`` (int64[4] pfns, -1 each where not known: the recorded
    ``mm_compaction_begin``'s migrate_pfn and free_pfn, its
    ``mm_compaction_end``'s) starts the scanners where the kernel's started and
    ends the pass where the kernel's scanners stopped."""
    if t != -1:
        free = zone_free_pages(z.nr_free)
        if zone_watermark_ok(t, prm[P_WMIN], free, z.nr_free_mt.reshape((NR_PAGE_ORDERS, 3)), 0):
            emit(z, me, counters, seq, kind, t, mode, -1, -1, -1, -1, 0, 0, 0, 0, 0, SUCCESS)
            return SUCCESS
        if not compaction_suitable(t, z, prm):
            emit(z, me, counters, seq, kind, t, mode, -1, -1, -1, -1, 0, 0, 0, 0, 0, SKIPPED)
            return SKIPPED
    compact_start(t, mode, whole, proactive, mt, cpu, kind == K_COMPACT_DIRECT, z, prm, ob, cz,
                  scan)  # fmt: skip
    r = compact_loop(budget, z, prm, ob, cz, counters, scan)
    if r == CONTINUE:
        r = SUCCESS  # the budget is spent
    compact_done(r, kind, seq, z, prm, cz, counters, me)
    return r


# -- the three ways compaction runs --------------------------------------------------------
@njit(cache=True, _nrt=False)
def direct_compact(k, mt, lmt, cpu, seq, z, prm, ob, cz, counters, ef, me, mode,  # type: ignore[no-untyped-def]
                   noretry=False):  # fmt: skip
    """``__alloc_pages_direct_compact`` for a failed order-k allocation: ASYNC, then
    SYNC (SYNC_LIGHT). A costly __GFP_NORETRY request (``noretry``: a THP fault, a
    large page-cache folio) stays ASYNC the second time and gives up after the first
    when compaction was skipped or deferred (``__alloc_pages_slowpath``).

    Returns the allocated pfn or -1; ``mt`` is the request's type (for the
    allocated-page accounting), ``lmt`` its free-list type. A block the pass
    captured (``compaction_capture``: freed to order k while it ran) is the
    allocation; otherwise the free lists are tried.
    """
    light = noretry and k > PAGE_ALLOC_COSTLY_ORDER
    for attempt in range(2):
        prio = MODE_ASYNC if light else attempt
        o = np.int64(-1)
        r = CONTINUE
        if compaction_deferred(k, cz):
            r = DEFERRED
            emit(z, me, counters, seq, K_COMPACT_DIRECT, k, prio, -1, -1, -1, -1, 0, 0, 0, 0, 0,
                 DEFERRED)  # fmt: skip
        else:
            capture_arm(k, lmt, z, prm)  # compact_zone_order's capc
            r = compact_zone(k, prio, False, False, lmt, cpu, K_COMPACT_DIRECT, seq, z, prm, ob, cz,
                             counters, me)  # fmt: skip
            page = capture_disarm(z)
            if page >= 0:
                r = SUCCESS  # compact_zone_order: a captured page is COMPACT_SUCCESS
                o = page - prm[P_START]
            if r == SUCCESS:
                compaction_defer_reset(k, False, cz)
            elif prio == MODE_SYNC and (r == COMPLETE or r == PARTIAL_SKIPPED):
                defer_compaction(k, cz)
        if o < 0:
            o = get_page_from_freelist(k, lmt, cpu, z, prm, counters, ef, seq, mode)
        if o >= 0:
            compaction_defer_reset(k, True, cz)
            pfn = o + prm[P_START]
            pageblock_alloc_add(pfn, k, mt, 1, z.pageblock_alloc, prm[P_PB0])
            return pfn
        if light and (r == SKIPPED or r == DEFERRED):
            break
    return np.int64(-1)


@njit(cache=True, _nrt=False)
def proactive_tick(ts, seq, z, prm, ob, cz, counters, me):  # type: ignore[no-untyped-def]
    """kcompactd's checks due at or before trace time ``ts`` (ns); False if ``me`` filled up."""
    if cz[CZ_TS0_SET] == 0:
        cz[CZ_TS0_SET] = 1
        cz[CZ_NEXT_CHECK] = ts + HPAGE_FRAG_CHECK_INTERVAL_NS
        return True
    interval = np.int64(HPAGE_FRAG_CHECK_INTERVAL_NS)
    pages = prm[P_PAGES]
    while cz[CZ_NEXT_CHECK] <= ts:
        due = (ts - cz[CZ_NEXT_CHECK]) // interval + 1  # checks due in this gap
        if cz[CZ_PDEFER] > 0:
            d = min(cz[CZ_PDEFER], due)
            cz[CZ_PDEFER] -= d
            cz[CZ_NEXT_CHECK] += d * interval
            continue
        prev = fragmentation_score(z.nr_free, pages)
        if prev <= score_wmark(False, prm[P_PROACTIVE]):
            # nothing changes until the next event: the other checks of this gap are no-ops
            cz[CZ_NEXT_CHECK] += due * interval
            break
        if counters[C_ME] + 1 > me.shape[0]:
            return False
        compact_zone(-1, MODE_SYNC, True, True, MIGRATE_MOVABLE, 0, K_COMPACT_PROACTIVE, seq, z,
                     prm, ob, cz, counters, me)  # fmt: skip
        score = fragmentation_score(z.nr_free, pages)
        cz[CZ_PDEFER] = 0 if score < prev else np.int64(1) << COMPACT_MAX_DEFER_SHIFT
        cz[CZ_NEXT_CHECK] += interval
    return True


@njit(cache=True, _nrt=False)
def compact_recorded(t, mode, budget, scan, cpu, seq, z, prm, ob, cz, counters, me):  # type: ignore[no-untyped-def]
    """The model's ``compact_zone`` where the recorded kernel ran one, all at once: for
    order ``t`` (-1: the whole zone, as kcompactd's proactive and /proc passes) in
    ``mode``, moving at most ``budget`` pages (-1: no bound), its scanners over the
    range the kernel's scanned (``scan``: see :func:`compact_zone`). For a trace
    without ``mm_compaction_migratepages``; otherwise the pass runs as the kernel's
    did, batch by batch (:func:`compact_recorded_begin`, :func:`compact_recorded_step`)."""
    return compact_zone(t, mode, t == -1, False, MIGRATE_MOVABLE, cpu, K_COMPACT_RECORDED, seq, z,
                        prm, ob, cz, counters, me, budget, scan)  # fmt: skip


@njit(cache=True, _nrt=False)
def compact_recorded_begin(t, mode, scan, cpu, capture, z, prm, ob, cz):  # type: ignore[no-untyped-def]
    """A recorded pass begins (``mm_compaction_begin``): the kernel found the zone
    suitable, so no check of the model's; the scanners start where the kernel's did.
    ``capture``: a direct compaction of a user task for order ``t`` (kcompactd's,
    kthreads' and /proc passes capture nothing: ``task_capc``), whose blocks freed to
    order t are captured; it is also the pass's ``direct_compaction`` (a kthread's
    direct compaction, khugepaged's, counts as kcompactd's). The caller keeps
    ``cz[CC_ORDER:CC_UNITS]`` as the pass's compact_control."""
    compact_start(t, mode, t == -1, False, MIGRATE_MOVABLE, cpu, capture, z, prm, ob, cz, scan)
    if capture and t > 0:
        cz[CC_CAPC] = t


@njit(cache=True, _nrt=False)
def compact_recorded_step(budget, last, keep, prev, scan, cpu, seq, z, prm, ob, cz, counters,  # type: ignore[no-untyped-def]
                          me):  # fmt: skip
    """A recorded pass goes on to ``budget`` pages migrated since its begin (the sum of
    its task's ``mm_compaction_migratepages`` nr_migrated so far): the model's scanners
    continue from where the pass's last step left them (``cz``'s CC fields, restored by
    the caller), the migration scanner from the batch's recorded range when known
    (``scan[4:6]``, [lo, hi) pfns: async compaction's ``fast_find_migrateblock`` jumps to
    a pageblock its free lists suggest, and the linear scanner would never get there).
    ``budget`` may fall inside a batch (the kernel's migrate_pages had freed that many of
    its old folios when another task allocated): the model stops there too, its batch's
    units left isolated and its free targets kept. The free pages isolated but not used
    stay isolated for the pass's next step, as the kernel keeps ``cc->freepages`` until
    ``compact_zone`` ends, when the trace records its free scanner (``scan[SCAN_NFREE]``
    >= 0: the step's isolations are inputs, :func:`isolate_freepages`); without them
    they go back (the model's own free scanner then chooses every batch's). ``last``:
    the pass ends (``mm_compaction_end``): one model event. ``cpu``: the task's cpu
    for this batch (its migratepages event's). ``prev``: the result of
    the pass's earlier steps (not CONTINUE: the model's pass finished there, and only
    the end's event is left). A capturing pass (see :func:`compact_recorded_begin`)
    captures while its batches run and stops at its capture (SUCCESS); at its end the
    captured block waits in ``z.capture`` for the allocation the kernel served right
    after it (``keep``: the event flagged F_CAPTURE) or, with none, goes back to the
    buddy. Returns the loop's result (CONTINUE: it can go on)."""
    r = prev
    cz[CC_CPU] = cpu  # where the task ran this batch
    cz[CC_FREE_GIVEN] = 0  # the step's own free-scanner isolations (scan[SCAN_FREE0:])
    cz[CC_NR_FREE] = isolated_free_pages(z)  # its targets, unless another pass took them
    if r == CONTINUE and scan[4] >= prm[P_START] and scan[4] < cz[CC_FREE_PFN]:
        # the batch's migration range (fast_find_migrateblock may have jumped there)
        cz[CC_MIGRATE_PFN] = scan[4]
        cz[CC_FAST_GIVEN] = 1
    armed = cz[CC_CAPC] >= 0 and cz[CC_CAPC_PAGE] < 0 and r == CONTINUE
    if armed:
        capture_arm(cz[CC_CAPC], cz[CC_MT], z, prm)
    if r == CONTINUE:
        r = compact_loop(budget, z, prm, ob, cz, counters, scan, True)
    if last:
        cz[CC_NUNITS] = 0  # units still isolated go back (putback_movable_pages)
        cz[CC_NR_MIGRATE] = 0
        compact_done(SUCCESS if r == CONTINUE else r, K_COMPACT_RECORDED, seq, z, prm, cz,
                     counters, me)  # fmt: skip
    elif cz[CC_NUNITS] == 0 and (r != CONTINUE or scan.shape[0] <= SCAN_NFREE
                                 or scan[SCAN_NFREE] < 0):  # fmt: skip
        release_freepages(z, prm, cz)
    if armed:
        cz[CC_CAPC_PAGE] = capture_disarm(z)
    if last and cz[CC_CAPC_PAGE] >= 0:
        page = cz[CC_CAPC_PAGE]
        cz[CC_CAPC_PAGE] = -1
        capture_release(z, prm)  # one waiting from an earlier pass: nobody took it
        if keep:
            z.capture[CAPC_PAGE] = page
            z.capture[CAPC_PAGE_ORDER] = cz[CC_CAPC]
        else:
            free_to_buddy(page, cz[CC_CAPC], z, prm)
    return r


@njit(cache=True, _nrt=False)
def compact_memory(seq, z, prm, ob, cz, counters, me):  # type: ignore[no-untyped-def]
    """``compact_memory`` (/proc/sys/vm/compact_memory): one whole-zone SYNC compaction."""
    return compact_zone(-1, MODE_SYNC, True, False, MIGRATE_MOVABLE, 0, K_COMPACT_ONESHOT, seq, z,
                        prm, ob, cz, counters, me)  # fmt: skip
