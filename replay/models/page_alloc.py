"""The allocator's entry points: ``alloc_pages``/``free_pages`` over the pcp lists and the buddy.

Follows mm/page_alloc.c of Linux 6.18: ``rmqueue`` (pcp orders through the
cpu's lists, the others from the buddy), ``get_page_from_freelist`` (first
with ALLOC_NOFRAGMENT where the zone sets it), the slow path's drain of the
pcp lists and retry, and ``__free_pages``. Returns pfns (-1: failed).
"""

from __future__ import annotations

import numpy as np

from replay.jit import njit
from replay.models.buddy import free_to_buddy, pageblock_alloc_add, rmqueue, rmqueue_smallest
from replay.models.internal import (
    C_DRAINS,
    C_PCP_PAGES,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    MODE_NORMAL,
    NR_PCP_LISTS,
    P_GROUP,
    P_NOFRAG,
    P_PB0,
    P_PCP,
    P_PCP_TUNE,
    P_START,
    PCP_FREE_COUNT,
    list_del,
    order_to_pindex,
    pcp_allowed_order,
)
from replay.models.pcp import check_below_high, drain_all, pcp_alloc, pcp_free


@njit(cache=True, _nrt=False)
def rmqueue_zone(k, mt, cpu, nofrag, z, prm, counters, ef, seq, mode):  # type: ignore[no-untyped-def]
    """``rmqueue``: pcp orders through the cpu's lists, others (or an empty refill) the buddy."""
    o = np.int64(-1)
    if prm[P_PCP] != 0 and pcp_allowed_order(k):
        o = pcp_alloc(k, mt, cpu, nofrag, z, prm, counters, ef, seq, mode)
    if o < 0:
        mode[0] = MODE_NORMAL
        o = rmqueue(k, mt, mode, nofrag, z, prm, counters, ef, seq)
    return o


@njit(cache=True, _nrt=False)
def get_page_from_freelist(k, mt, cpu, z, prm, counters, ef, seq, mode):  # type: ignore[no-untyped-def]
    """First with ALLOC_NOFRAGMENT (when on), then, if that failed, without it."""
    if prm[P_NOFRAG] != 0:
        o = rmqueue_zone(k, mt, cpu, True, z, prm, counters, ef, seq, mode)
        if o >= 0:
            return o
    return rmqueue_zone(k, mt, cpu, False, z, prm, counters, ef, seq, mode)


@njit(cache=True, inline="always", _nrt=False)
def alloc_pages(k, mt, cpu, z, prm, counters, ef, seq, mode, drain=True):  # type: ignore[no-untyped-def]
    """``rmqueue``: pcp orders through the cpu's lists, others from the buddy; pfn or -1.

    A failure with pages on pcp lists drains them all and retries once, unless
    ``drain`` is False (a request that cannot enter direct reclaim).
    With grouping off (``prm[P_GROUP] == 0``) every request uses the MOVABLE
    lists; the pages are still accounted by the request's type.
    """
    if mt < 0 or mt >= MIGRATE_PCPTYPES:
        mt = MIGRATE_MOVABLE
    lmt = mt if prm[P_GROUP] != 0 else MIGRATE_MOVABLE
    if prm[P_PCP_TUNE] != 0:
        check_below_high(k, z, prm)
    # Fast path, inlined: what every pass below would do first (the head of a
    # non-empty pcp list, else __rmqueue_smallest), so the result is the same.
    if prm[P_PCP] != 0 and pcp_allowed_order(k):
        li = cpu * NR_PCP_LISTS + order_to_pindex(k, lmt)
        o = z.pcp_head[li]
        if o >= 0:
            if prm[P_PCP_TUNE] != 0:
                z.pcp_state[cpu, PCP_FREE_COUNT] >>= 1  # rmqueue_pcplist
            list_del(o, li, z.list_next, z.list_prev, z.pcp_head, z.pcp_tail)
            z.pcp_count[cpu] -= np.int64(1) << k
            counters[C_PCP_PAGES] -= np.int64(1) << k
    else:
        o = rmqueue_smallest(k, lmt, z, prm)
    if o >= 0:
        pfn = o + prm[P_START]
        pageblock_alloc_add(pfn, k, mt, 1, z.pageblock_alloc, prm[P_PB0])
        return pfn
    for attempt in range(2):
        o = get_page_from_freelist(k, lmt, cpu, z, prm, counters, ef, seq, mode)
        if o >= 0:
            pfn = o + prm[P_START]
            pageblock_alloc_add(pfn, k, mt, 1, z.pageblock_alloc, prm[P_PB0])
            return pfn
        if drain and attempt == 0 and prm[P_PCP] != 0 and counters[C_PCP_PAGES] > 0:
            counters[C_DRAINS] += 1
            drain_all(z, prm, counters)
        else:
            break
    return np.int64(-1)


@njit(cache=True, inline="always", _nrt=False)
def free_frozen_pages(pfn, k, cpu, z, prm, counters):  # type: ignore[no-untyped-def]
    """``free_frozen_pages``: pcp orders to the cpu's lists, others to the buddy."""
    if prm[P_PCP] != 0 and pcp_allowed_order(k):
        pcp_free(pfn, k, cpu, z, prm, counters)
    else:
        free_to_buddy(pfn, k, z, prm)


@njit(cache=True, inline="always", _nrt=False)
def free_pages(pfn, k, mt, cpu, z, prm, counters):  # type: ignore[no-untyped-def]
    """``__free_pages``: the allocated-page accounting, then ``free_frozen_pages``."""
    if mt < 0 or mt >= MIGRATE_PCPTYPES:
        mt = MIGRATE_MOVABLE
    pageblock_alloc_add(pfn, k, mt, -1, z.pageblock_alloc, prm[P_PB0])
    free_frozen_pages(pfn, k, cpu, z, prm, counters)
