"""``pcp``: the per-CPU page lists of mm/page_alloc.c (Linux 6.18).

``rmqueue_pcplist``/``__rmqueue_pcplist`` (allocation from the head of the
cpu's list for (order, migratetype), refilled from the buddy by
``rmqueue_bulk``), ``free_frozen_page_commit`` (a freed page to the head of
its pageblock type's list; a bulk free at ``high``),
``free_pcppages_bulk`` and ``drain_all_pages``. Lists are indexed
``cpu * NR_PCP_LISTS + pindex`` (``order_to_pindex``); pages on them reuse
the zone's ``list_next``/``list_prev`` links. Counts are pages.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from replay.models.buddy import free_to_buddy, rmqueue
from replay.models.internal import (
    C_BULK,
    C_PCP_PAGES,
    C_REFILLS,
    MIGRATE_PCPTYPES,
    MODE_NORMAL,
    NR_PCP_LISTS,
    P_BATCH,
    P_HIGH,
    P_NCPU,
    P_PB0,
    P_PCP,
    P_START,
    PAGEBLOCK_ORDER,
    list_add,
    list_del,
    order_to_pindex,
    pcp_allowed_order,
    pindex_to_order,
)


@nb.njit(cache=True, _nrt=False)
def free_pcppages_bulk(n, cpu, pindex, z, prm, counters):  # type: ignore[no-untyped-def]
    """``free_pcppages_bulk``: free ``n`` pages from list tails, lists round robin."""
    start = prm[P_START]
    if n > z.pcp_count[cpu]:
        n = z.pcp_count[cpu]
    p = pindex - 1
    base = cpu * NR_PCP_LISTS
    while n > 0:
        while True:
            p += 1
            if p > NR_PCP_LISTS - 1:
                p = 0
            if z.pcp_head[base + p] >= 0:
                break
        k = pindex_to_order(p)
        while True:
            o = z.pcp_tail[base + p]
            list_del(o, base + p, z.list_next, z.list_prev, z.pcp_head, z.pcp_tail)
            n -= np.int64(1) << k
            z.pcp_count[cpu] -= np.int64(1) << k
            counters[C_PCP_PAGES] -= np.int64(1) << k
            free_to_buddy(o + start, k, z, prm)
            if n <= 0 or z.pcp_head[base + p] < 0:
                break


@nb.njit(cache=True, _nrt=False)
def drain_all(z, prm, counters):  # type: ignore[no-untyped-def]
    """``drain_all_pages``: every cpu's lists, pindex 0..13, each from its tail."""
    for cpu in range(prm[P_NCPU]):
        if z.pcp_count[cpu] > 0:
            free_pcppages_bulk(z.pcp_count[cpu], cpu, 0, z, prm, counters)


@nb.njit(cache=True, inline="always", _nrt=False)
def pcp_free(pfn, k, cpu, z, prm, counters):  # type: ignore[no-untyped-def]
    """``free_frozen_page_commit``: to the head of the pageblock type's list; drain at high."""
    mt = z.pageblock_mt[(pfn >> PAGEBLOCK_ORDER) - prm[P_PB0]]
    p = order_to_pindex(k, mt)
    list_add(
        pfn - prm[P_START],
        cpu * NR_PCP_LISTS + p,
        False,
        z.list_next,
        z.list_prev,
        z.pcp_head,
        z.pcp_tail,
    )
    z.pcp_count[cpu] += np.int64(1) << k
    counters[C_PCP_PAGES] += np.int64(1) << k
    if z.pcp_count[cpu] >= prm[P_HIGH]:
        counters[C_BULK] += 1
        # nr_pcp_free without auto-tuning: batch pages (1 when high < batch)
        n = np.int64(1) if prm[P_HIGH] < prm[P_BATCH] else prm[P_BATCH]
        free_pcppages_bulk(n, cpu, p, z, prm, counters)


@nb.njit(cache=True, inline="always", _nrt=False)
def pcp_alloc(k, mt, cpu, nofrag, z, prm, counters, ef, seq, mode):  # type: ignore[no-untyped-def]
    """``__rmqueue_pcplist``: the list head, after a refill of ``nr_pcp_alloc`` blocks.

    ``nr_pcp_alloc`` without auto-tuning: 1 when high < batch, else
    max(batch >> k, 2) (batch itself when batch is 1).
    """
    li = cpu * NR_PCP_LISTS + order_to_pindex(k, mt)
    if z.pcp_head[li] < 0:
        counters[C_REFILLS] += 1
        batch = prm[P_BATCH]
        if prm[P_HIGH] < batch:
            n = np.int64(1)
        elif batch > 1:
            n = max(batch >> k, np.int64(2))
        else:
            n = batch
        mode[0] = MODE_NORMAL
        for _ in range(n):
            o = rmqueue(k, mt, mode, nofrag, z, prm, counters, ef, seq)
            if o < 0:
                break
            list_add(o, li, True, z.list_next, z.list_prev, z.pcp_head, z.pcp_tail)
            z.pcp_count[cpu] += np.int64(1) << k
            counters[C_PCP_PAGES] += np.int64(1) << k
    o = z.pcp_head[li]
    if o < 0:
        return np.int64(-1)
    list_del(o, li, z.list_next, z.list_prev, z.pcp_head, z.pcp_tail)
    z.pcp_count[cpu] -= np.int64(1) << k
    counters[C_PCP_PAGES] -= np.int64(1) << k
    return o


@nb.njit(cache=True, _nrt=False)
def pageblock_snapshot(z, prm, out):  # type: ignore[no-untyped-def]
    """Per pageblock: type, free, allocated unmovable/movable/reclaimable, pcp pages.

    ``out`` is an (npb, 6) int64 array.
    """
    npb = z.pageblock_mt.shape[0]
    for b in range(npb):
        out[b, 0] = z.pageblock_mt[b]
        out[b, 1] = z.pageblock_free[b]
        for t in range(MIGRATE_PCPTYPES):
            out[b, 2 + t] = z.pageblock_alloc[b * MIGRATE_PCPTYPES + t]
        out[b, 5] = 0
    start = prm[P_START]
    pb0 = prm[P_PB0]
    for li in range(z.pcp_head.shape[0]):
        k = pindex_to_order(li % NR_PCP_LISTS)
        o = z.pcp_head[li]
        while o >= 0:
            out[((o + start) >> PAGEBLOCK_ORDER) - pb0, 5] += np.int64(1) << k
            o = z.list_next[o]


@nb.njit(cache=True, _nrt=False)
def pcp_load(offs, orders, z, prm, counters):  # type: ignore[no-untyped-def]
    """Put blocks (offset, order) a starting state found on pcp lists back on pcp lists.

    For ``--start observed``: the blocks go to the tail of the cpus' lists for
    their order and pageblock type, cpu by cpu in turn (the rebuild does not
    know which cpu held them), without draining at ``high``. With pcp lists
    off they are freed to the buddy instead, merging (``free_to_buddy``).
    """
    start = prm[P_START]
    ncpu = prm[P_NCPU]
    for i in range(offs.shape[0]):
        o = offs[i]
        k = orders[i]
        if prm[P_PCP] == 0 or not pcp_allowed_order(k):
            free_to_buddy(o + start, k, z, prm)
            continue
        cpu = i % ncpu
        mt = z.pageblock_mt[((o + start) >> PAGEBLOCK_ORDER) - prm[P_PB0]]
        li = cpu * NR_PCP_LISTS + order_to_pindex(k, mt)
        list_add(o, li, True, z.list_next, z.list_prev, z.pcp_head, z.pcp_tail)
        z.pcp_count[cpu] += np.int64(1) << k
        counters[C_PCP_PAGES] += np.int64(1) << k
