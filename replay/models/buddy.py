"""The buddy allocator's free lists with grouping by mobility (Linux 6.10+ claim/steal).

The exact semantics are in docs/mobility.md (the contract this kernel and
tests/ref_mobility.py both implement); it follows mm/page_alloc.c of Linux
6.18: ``__rmqueue`` (NORMAL/CLAIM/STEAL modes), ``__rmqueue_smallest``,
``__rmqueue_claim`` + ``try_to_claim_block``, ``__rmqueue_steal``,
``split_large_buddy`` + ``__free_one_page``, and the boot state
(``__free_pages_core`` with FPI_TO_TAIL). With grouping off every list is
MOVABLE: exactly the plain buddy allocator (replay.models.plain_buddy).

The kernels take the zone ``z`` (replay.models.internal.Zone), its settings
``prm`` (P_*), the ``counters`` (C_*) and the extfrag buffer ``ef`` (rows of
EF_COLS, written as fallbacks happen). Offsets ``o = pfn - start_pfn``.
"""

from __future__ import annotations

import numpy as np

from replay.jit import njit
from replay.models.internal import (
    C_CLAIMS,
    C_EF,
    C_STEALS,
    CAPC_MT,
    CAPC_ORDER,
    CAPC_PAGE,
    CAPC_PAGE_ORDER,
    FALLBACKS,
    MAX_PAGE_ORDER,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    MIGRATE_RECLAIMABLE,
    MIGRATE_UNMOVABLE,
    MODE_CLAIM,
    MODE_NORMAL,
    MODE_STEAL,
    NR_PAGE_ORDERS,
    P_PAGES,
    P_PB0,
    P_START,
    PAGEBLOCK_ORDER,
    PAGEBLOCK_PAGES,
    buddy_merge_likely,
    list_add,
    list_del,
)


# -- free blocks ------------------------------------------------------------------
@njit(cache=True, inline="always", _nrt=False)
def _pb_free_add(pfn, k, delta, pb_free, pb0):  # type: ignore[no-untyped-def]
    """Account ``delta`` (+1/-1) times the block (pfn, order k) in per-pageblock free pages."""
    if k >= PAGEBLOCK_ORDER:
        first = (pfn >> PAGEBLOCK_ORDER) - pb0
        for j in range(np.int64(1) << (k - PAGEBLOCK_ORDER)):
            pb_free[first + j] += delta * PAGEBLOCK_PAGES
    else:
        pb_free[(pfn >> PAGEBLOCK_ORDER) - pb0] += delta * (np.int64(1) << k)


@njit(cache=True, inline="always", _nrt=False)
def add_free(o, k, mt, to_tail, z, prm):  # type: ignore[no-untyped-def]
    """``__add_to_free_list``: block at offset o, order k, onto list (k, mt)."""
    li = k * MIGRATE_PCPTYPES + mt
    list_add(o, li, to_tail, z.list_next, z.list_prev, z.free_head, z.free_tail)
    z.buddy_order[o] = k
    z.nr_free[k] += 1
    z.nr_free_mt[li] += 1
    _pb_free_add(o + prm[P_START], k, 1, z.pageblock_free, prm[P_PB0])


@njit(cache=True, inline="always", _nrt=False)
def del_free(o, k, mt, z, prm):  # type: ignore[no-untyped-def]
    """``__del_page_from_free_list``: take block at offset o off list (k, mt)."""
    li = k * MIGRATE_PCPTYPES + mt
    list_del(o, li, z.list_next, z.list_prev, z.free_head, z.free_tail)
    z.buddy_order[o] = -1
    z.nr_free[k] -= 1
    z.nr_free_mt[li] -= 1
    _pb_free_add(o + prm[P_START], k, -1, z.pageblock_free, prm[P_PB0])


@njit(cache=True, inline="always", _nrt=False)
def expand(o, high, low, mt, z, prm):  # type: ignore[no-untyped-def]
    """``expand``: split block o of order ``high`` down to ``low``; halves to list heads."""
    while high > low:
        high -= 1
        add_free(o + (np.int64(1) << high), high, mt, False, z, prm)


@njit(cache=True, _nrt=False)
def init_zone(z, prm):  # type: ignore[no-untyped-def]
    """Boot: the largest aligned blocks, ascending, each at the TAIL of its MOVABLE list."""
    z.buddy_order[:] = -1
    z.list_next[:] = -1
    z.list_prev[:] = -1
    z.free_head[:] = -1
    z.free_tail[:] = -1
    z.pcp_head[:] = -1
    z.pcp_tail[:] = -1
    z.pageblock_mt[:] = MIGRATE_MOVABLE
    start = prm[P_START]
    end = start + prm[P_PAGES]
    pfn = start
    while pfn < end:
        k = MAX_PAGE_ORDER
        while k > 0 and ((pfn & ((np.int64(1) << k) - 1)) != 0 or pfn + (np.int64(1) << k) > end):
            k -= 1
        add_free(pfn - start, k, MIGRATE_MOVABLE, True, z, prm)
        pfn += np.int64(1) << k


# -- allocation from the buddy ---------------------------------------------------------
@njit(cache=True, inline="always", _nrt=False)
def rmqueue_smallest(k, mt, z, prm):  # type: ignore[no-untyped-def]
    """``__rmqueue_smallest``: head of the first non-empty (c, mt) list, c >= k; offset or -1."""
    for c in range(k, NR_PAGE_ORDERS):
        o = z.free_head[c * MIGRATE_PCPTYPES + mt]
        if o < 0:
            continue
        del_free(o, c, mt, z, prm)
        expand(o, c, k, mt, z, prm)
        return o
    return np.int64(-1)


@njit(cache=True, inline="always", _nrt=False)
def _emit_extfrag(o, k, c, mt, f, z, prm, counters, ef, seq):  # type: ignore[no-untyped-def]
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
        ef[n, 7] = 1 if z.pageblock_mt[(pfn >> PAGEBLOCK_ORDER) - prm[P_PB0]] == mt else 0
    counters[C_EF] = n + 1


@njit(cache=True, inline="always", _nrt=False)
def should_try_claim_block(c, mt):  # type: ignore[no-untyped-def]
    """``should_try_claim_block``: claim large blocks, and always for non-movable requests."""
    return c >= PAGEBLOCK_ORDER // 2 or mt == MIGRATE_RECLAIMABLE or mt == MIGRATE_UNMOVABLE


@njit(cache=True, _nrt=False)
def try_to_claim_block(o, c, k, mt, f, z, prm):  # type: ignore[no-untyped-def]
    """``try_to_claim_block``: retype the fallback block's pageblock(s) and allocate; -1 if not."""
    start = prm[P_START]
    pb0 = prm[P_PB0]
    pfn = o + start
    if c >= PAGEBLOCK_ORDER:
        del_free(o, c, f, z, prm)
        first = (pfn >> PAGEBLOCK_ORDER) - pb0
        for j in range(np.int64(1) << (c - PAGEBLOCK_ORDER)):
            z.pageblock_mt[first + j] = mt
        expand(o, c, k, mt, z, prm)
        return o
    # prep_move_freepages_block: the pageblock must lie wholly inside the zone
    pb_start = (pfn >> PAGEBLOCK_ORDER) << PAGEBLOCK_ORDER
    if pb_start < start or pb_start + PAGEBLOCK_PAGES > start + prm[P_PAGES]:
        return np.int64(-1)
    pb = (pfn >> PAGEBLOCK_ORDER) - pb0
    free = z.pageblock_free[pb]
    movable = z.pageblock_alloc[pb * MIGRATE_PCPTYPES + MIGRATE_MOVABLE]
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
        b = z.buddy_order[q]
        if b >= 0:
            del_free(q, b, f, z, prm)
            add_free(q, b, mt, True, z, prm)
            q += np.int64(1) << b
        else:
            q += 1
    z.pageblock_mt[pb] = mt
    return rmqueue_smallest(k, mt, z, prm)


@njit(cache=True, inline="always", _nrt=False)
def find_suitable_fallback(c, mt, head):  # type: ignore[no-untyped-def]
    """``find_suitable_fallback``: the first fallback type with a block of order c, or -1."""
    for i in range(2):
        f = FALLBACKS[mt, i]
        if head[c * MIGRATE_PCPTYPES + f] >= 0:
            return f
    return np.int64(-1)


@njit(cache=True, _nrt=False)
def rmqueue_claim(k, mt, nofrag, z, prm, counters, ef, seq):  # type: ignore[no-untyped-def]
    """``__rmqueue_claim``: largest fallback block first, down to k; offset or -1.

    Under ALLOC_NOFRAGMENT only whole pageblocks (order >= 9) are claimed.
    """
    min_order = PAGEBLOCK_ORDER if nofrag and k < PAGEBLOCK_ORDER else k
    for c in range(MAX_PAGE_ORDER, min_order - 1, -1):
        if not should_try_claim_block(c, mt):
            break
        f = find_suitable_fallback(c, mt, z.free_head)
        if f < 0:
            continue
        o = try_to_claim_block(z.free_head[c * MIGRATE_PCPTYPES + f], c, k, mt, f, z, prm)
        if o >= 0:
            counters[C_CLAIMS] += 1
            _emit_extfrag(o, k, c, mt, f, z, prm, counters, ef, seq)
            return o
    return np.int64(-1)


@njit(cache=True, _nrt=False)
def rmqueue_steal(k, mt, z, prm, counters, ef, seq):  # type: ignore[no-untyped-def]
    """``__rmqueue_steal``: smallest fallback block, split; the rest stays on its lists."""
    for c in range(k, NR_PAGE_ORDERS):
        f = find_suitable_fallback(c, mt, z.free_head)
        if f < 0:
            continue
        o = z.free_head[c * MIGRATE_PCPTYPES + f]
        del_free(o, c, f, z, prm)
        expand(o, c, k, f, z, prm)
        counters[C_STEALS] += 1
        _emit_extfrag(o, k, c, mt, f, z, prm, counters, ef, seq)
        return o
    return np.int64(-1)


@njit(cache=True, _nrt=False)
def rmqueue(k, mt, mode, nofrag, z, prm, counters, ef, seq):  # type: ignore[no-untyped-def]
    """``__rmqueue``: own type, then claim, then steal. ``mode[0]`` carries the mode.

    Returns the block's offset, or -1. Under ALLOC_NOFRAGMENT there is no steal.
    """
    m = mode[0]
    if m == MODE_NORMAL:
        o = rmqueue_smallest(k, mt, z, prm)
        if o >= 0:
            return o
    if m == MODE_NORMAL or m == MODE_CLAIM:
        o = rmqueue_claim(k, mt, nofrag, z, prm, counters, ef, seq)
        if o >= 0:
            mode[0] = MODE_NORMAL
            return o
    if nofrag:
        return np.int64(-1)
    o = rmqueue_steal(k, mt, z, prm, counters, ef, seq)
    if o >= 0:
        mode[0] = MODE_STEAL
    return o


# -- freeing to the buddy ------------------------------------------------------------
@njit(cache=True, inline="always", _nrt=False)
def compaction_capture(pfn, k, mt, capc):  # type: ignore[no-untyped-def]
    """``compaction_capture``: a block freed (and merged so far) to order ``k`` while a
    direct compaction runs is taken for its requester when ``k`` is the order it
    compacts for and its pageblock type ``mt`` may serve it (a movable pageblock's
    block below pageblock order only for a movable request). The caller has checked
    that a capture is armed (``task_capc``: the running direct compaction's, nothing
    captured yet)."""
    if k != capc[CAPC_ORDER]:
        return False
    if k < PAGEBLOCK_ORDER and mt == MIGRATE_MOVABLE and capc[CAPC_MT] != MIGRATE_MOVABLE:
        return False
    capc[CAPC_PAGE] = pfn
    capc[CAPC_PAGE_ORDER] = k
    return True


@njit(cache=True, inline="always", _nrt=False)
def free_one_page(pfn, k, mt, z, prm):  # type: ignore[no-untyped-def]
    """``__free_one_page``: merge (retyping order >= 9 buddies), then head or tail; while
    a direct compaction runs, a block reaching its order is captured instead."""
    start = prm[P_START]
    pages = prm[P_PAGES]
    pb0 = prm[P_PB0]
    pfn = np.int64(pfn)
    capc = z.capture
    armed = capc[CAPC_ORDER] >= 0 and capc[CAPC_PAGE] < 0  # task_capc()
    while k < MAX_PAGE_ORDER:
        if armed and compaction_capture(pfn, k, mt, capc):
            return
        b = pfn ^ (np.int64(1) << k)
        bo = b - start
        if bo < 0 or bo >= pages or z.buddy_order[bo] != k:
            break
        bpb = (b >> PAGEBLOCK_ORDER) - pb0
        bt = z.pageblock_mt[bpb]
        del_free(bo, k, bt, z, prm)
        if bt != mt:
            z.pageblock_mt[bpb] = mt
        pfn = pfn & b
        k += 1
    add_free(pfn - start, k, mt, buddy_merge_likely(pfn, k, start, pages, z.buddy_order), z, prm)


@njit(cache=True, inline="always", _nrt=False)
def free_to_buddy(pfn, k, z, prm):  # type: ignore[no-untyped-def]
    """``free_one_page`` -> ``split_large_buddy``: pageblock-sized pieces, each with its type."""
    pb0 = prm[P_PB0]
    piece = k if k <= PAGEBLOCK_ORDER else PAGEBLOCK_ORDER
    end = pfn + (np.int64(1) << k)
    p = np.int64(pfn)
    while p < end:
        free_one_page(p, piece, z.pageblock_mt[(p >> PAGEBLOCK_ORDER) - pb0], z, prm)
        p += np.int64(1) << piece


@njit(cache=True, inline="always", _nrt=False)
def pageblock_alloc_add(pfn, k, mt, delta, pb_alloc, pb0):  # type: ignore[no-untyped-def]
    if k >= PAGEBLOCK_ORDER:
        first = (pfn >> PAGEBLOCK_ORDER) - pb0
        for j in range(np.int64(1) << (k - PAGEBLOCK_ORDER)):
            pb_alloc[(first + j) * MIGRATE_PCPTYPES + mt] += delta * PAGEBLOCK_PAGES
    else:
        pb_alloc[((pfn >> PAGEBLOCK_ORDER) - pb0) * MIGRATE_PCPTYPES + mt] += delta * (
            np.int64(1) << k
        )


@njit(cache=True, _nrt=False)
def adopt_unclaimed(first, claimed, page_mt, flags_of, start, placed, obj_mt, obj_order,
                    obj_flags, pg_obj):  # type: ignore[no-untyped-def]  # fmt: skip
    """Make every page of a loaded state (:func:`load_state`) that ``claimed`` (bool per
    page) does not mark an order-0 object: ids from ``first`` in page order, placed at
    its pfn (offset + ``start``), of the type ``page_mt`` gives the page, with the F_*
    flags ``flags_of`` gives that type (by its byte: -1 is 255), its unit starting there
    (``pg_obj``). One pass, no arrays of the millions of ids; returns how many."""
    x = first
    for o in range(claimed.shape[0]):
        if not claimed[o]:
            t = page_mt[o]
            placed[x] = o + start
            obj_mt[x] = t
            obj_order[x] = 0
            obj_flags[x] = flags_of[t & 0xFF]
            pg_obj[o] = x
            x += 1
    return x - first


@njit(cache=True, _nrt=False)
def load_state(z, prm, blk, page_mt, heads):  # type: ignore[no-untyped-def]
    """Replace the boot state by a given one (``--start observed``).

    ``blk[o]``: order of the free block starting at offset o (-1 elsewhere);
    ``page_mt[o]``: -1 for free pages, else the migratetype the allocated page
    is counted as. ``z.pageblock_mt`` (pb_mt) must already hold the pageblock types;
    each free block goes to the TAIL of its pageblock type's list in the order of
    ``heads`` (the free blocks' offsets: each list's order from head to tail).
    """
    z.buddy_order[:] = -1
    z.list_next[:] = -1
    z.list_prev[:] = -1
    z.free_head[:] = -1
    z.free_tail[:] = -1
    z.nr_free[:] = 0
    z.nr_free_mt[:] = 0
    z.pageblock_free[:] = 0
    z.pageblock_alloc[:] = 0
    z.pcp_head[:] = -1
    z.pcp_tail[:] = -1
    z.pcp_count[:] = 0
    start = prm[P_START]
    pb0 = prm[P_PB0]
    for o in heads:
        mt = z.pageblock_mt[((o + start) >> PAGEBLOCK_ORDER) - pb0]
        add_free(o, np.int64(blk[o]), mt, True, z, prm)
    for o in range(blk.shape[0]):
        t = page_mt[o]
        if t >= 0:
            z.pageblock_alloc[(((o + start) >> PAGEBLOCK_ORDER) - pb0) * MIGRATE_PCPTYPES + t] += 1
