"""``pcp``: the per-CPU page lists of mm/page_alloc.c (Linux 6.18).

``rmqueue_pcplist``/``__rmqueue_pcplist`` (allocation from the head of the
cpu's list for (order, migratetype), refilled from the buddy by
``rmqueue_bulk``), ``free_unref_page_commit`` (``free_frozen_page_commit`` in
6.15+: a freed page to the head of its pageblock type's list; a bulk free at
``high``; 6.15+'s free_high threshold),
``free_pcppages_bulk`` and ``drain_all_pages``, and the 6.7+ auto-tuning of
``pcp->high`` between ``high_min`` and ``high_max`` (``nr_pcp_high``,
``nr_pcp_free``, ``nr_pcp_alloc``, ``decay_pcp_high``) when ``P_PCP_TUNE``. Lists are indexed
``cpu * NR_PCP_LISTS + pindex`` (``order_to_pindex``); pages on them reuse
the zone's ``list_next``/``list_prev`` links. Counts are pages.
"""

from __future__ import annotations

import numpy as np

from replay.jit import njit
from replay.models.buddy import free_to_buddy, rmqueue
from replay.models.internal import (
    C_BULK,
    C_PCP_PAGES,
    C_REFILLS,
    CZ_DECAY_OFF,
    CZ_DECAY_UNSET,
    CZ_PCP_DECAY,
    MIGRATE_PCPTYPES,
    MODE_NORMAL,
    NR_PAGE_ORDERS,
    NR_PCP_LISTS,
    P_BATCH,
    P_HIGH,
    P_HIGH_MAX,
    P_NCPU,
    P_PB0,
    P_PCP,
    P_PCP_DECAY_NS,
    P_PCP_FREE_HIGH_MIN,
    P_PCP_RECORDED,
    P_PCP_TUNE,
    P_REFILL_RECORDED,
    P_START,
    P_WHIGH,
    PAGE_ALLOC_COSTLY_ORDER,
    PAGEBLOCK_ORDER,
    PCP_ALLOC_FACTOR,
    PCP_BATCH_SCALE_MAX,
    PCP_FLAGS,
    PCP_FREE_COUNT,
    PCP_HELD,
    PCP_HIGH,
    PCPF_FREE_HIGH_BATCH,
    PCPF_PREV_FREE_HIGH_ORDER,
    ZONE_BELOW_HIGH,
    ZONE_RECLAIM_ACTIVE,
    list_add,
    list_del,
    order_to_pindex,
    pcp_allowed_order,
    pindex_to_order,
)
from replay.models.watermarks import zone_watermark_ok


@njit(cache=True, _nrt=False)
def free_pcppages_bulk(n, cpu, pindex, z, prm, counters):  # type: ignore[no-untyped-def]
    """``free_pcppages_bulk``: free ``n`` pages from list tails, lists round robin (the
    cpu's PCP_HELD pages are on no list: never freed)."""
    start = prm[P_START]
    if n > z.pcp_count[cpu] - z.pcp_state[cpu, PCP_HELD]:
        n = z.pcp_count[cpu] - z.pcp_state[cpu, PCP_HELD]
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


@njit(cache=True, _nrt=False)
def drain_local(cpu, z, prm, counters):  # type: ignore[no-untyped-def]
    """``drain_pages_zone``: all of one cpu's lists, pindex 0..13, each from its tail."""
    if z.pcp_count[cpu] > z.pcp_state[cpu, PCP_HELD]:
        free_pcppages_bulk(z.pcp_count[cpu], cpu, 0, z, prm, counters)


@njit(cache=True, _nrt=False)
def drain_all(z, prm, counters):  # type: ignore[no-untyped-def]
    """``drain_all_pages``: every cpu's lists (``drain_local`` of each)."""
    for cpu in range(prm[P_NCPU]):
        drain_local(cpu, z, prm, counters)


@njit(cache=True, inline="always", _nrt=False)
def zone_free_page_count(z):  # type: ignore[no-untyped-def]
    """NR_FREE_PAGES: pages in the buddy's free blocks (pcp pages are not free)."""
    free = np.int64(0)
    for j in range(NR_PAGE_ORDERS):
        free += z.nr_free[j] << j
    return free


@njit(cache=True, inline="always", _nrt=False)
def check_below_high(k, z, prm):  # type: ignore[no-untyped-def]
    """``get_page_from_freelist``: ZONE_BELOW_HIGH set when the zone fails its high
    watermark for this order (``zone_watermark_fast``); cleared on the free side."""
    if z.zone_flags[ZONE_BELOW_HIGH] != 0:
        return
    free = zone_free_page_count(z)
    nr_free_mt = z.nr_free_mt.reshape((NR_PAGE_ORDERS, MIGRATE_PCPTYPES))
    if not zone_watermark_ok(k, prm[P_WHIGH], free, nr_free_mt, 0):
        z.zone_flags[ZONE_BELOW_HIGH] = 1


@njit(cache=True, inline="always", _nrt=False)
def nr_pcp_high(cpu, batch, free_high, z, prm):  # type: ignore[no-untyped-def]
    """``nr_pcp_high``: the count at which a free triggers a bulk free; tunes pcp->high."""
    st = z.pcp_state
    high_min = prm[P_HIGH]
    high_max = prm[P_HIGH_MAX]
    high = min(max(st[cpu, PCP_HIGH], high_min), high_max)
    st[cpu, PCP_HIGH] = high
    if high == 0:
        return np.int64(0)
    if free_high:
        st[cpu, PCP_HIGH] = max(high - (batch << PCP_BATCH_SCALE_MAX), high_min)
        return np.int64(0)
    # reclaim is active: limit the pages pcp lists may hold
    if z.zone_flags[ZONE_RECLAIM_ACTIVE] != 0:
        free_count = max(st[cpu, PCP_FREE_COUNT], batch)
        st[cpu, PCP_HIGH] = max(high - free_count, high_min)
        return min(batch << 2, st[cpu, PCP_HIGH])
    if high_min == high_max:
        return high
    if z.zone_flags[ZONE_BELOW_HIGH] != 0:
        free_count = max(st[cpu, PCP_FREE_COUNT], batch)
        st[cpu, PCP_HIGH] = max(high - free_count, high_min)
        high = max(z.pcp_count[cpu], high_min)
    elif z.pcp_count[cpu] >= high:
        need_high = st[cpu, PCP_FREE_COUNT] + batch
        # pcp->high should be large enough to hold batch freed pages
        if st[cpu, PCP_HIGH] < need_high:
            st[cpu, PCP_HIGH] = min(max(need_high, high_min), high_max)
    return high


@njit(cache=True, inline="always", _nrt=False)
def nr_pcp_free(cpu, batch, high, free_high, z):  # type: ignore[no-untyped-def]
    """``nr_pcp_free``: pages a bulk free takes, at least batch left on the lists."""
    if free_high:
        return min(z.pcp_count[cpu], batch << PCP_BATCH_SCALE_MAX)
    if high < batch:  # pcp disabled or a boot pageset
        return np.int64(1)
    # clamp_t(free_count, batch, high - batch): the consecutive frees, bounded
    return min(max(z.pcp_state[cpu, PCP_FREE_COUNT], batch), high - batch)


@njit(cache=True, inline="always", _nrt=False)
def nr_pcp_alloc(cpu, k, z, prm):  # type: ignore[no-untyped-def]
    """``nr_pcp_alloc``: blocks a refill takes; with tuning, doubled for each order-0
    refill without a free in between (``alloc_factor``) and raising pcp->high."""
    base_batch = prm[P_BATCH]
    if prm[P_PCP_TUNE] == 0:
        # without auto-tuning: 1 when high < batch, else max(batch >> k, 2)
        if prm[P_HIGH] < base_batch:
            return np.int64(1)
        return max(base_batch >> k, np.int64(2)) if base_batch > 1 else base_batch
    st = z.pcp_state
    high_min = prm[P_HIGH]
    high_max = prm[P_HIGH_MAX]
    high = min(max(st[cpu, PCP_HIGH], high_min), high_max)
    st[cpu, PCP_HIGH] = high
    if high < base_batch:
        return np.int64(1)
    batch = base_batch if k else base_batch << st[cpu, PCP_ALLOC_FACTOR]
    # with a larger pcp->high the refills would not need the zone
    if high_min != high_max and z.zone_flags[ZONE_BELOW_HIGH] == 0:
        high = min(high + batch, high_max)
        st[cpu, PCP_HIGH] = high
    if k == 0:
        max_nr_alloc = max(high - z.pcp_count[cpu] - base_batch, base_batch)
        if batch <= max_nr_alloc and st[cpu, PCP_ALLOC_FACTOR] < PCP_BATCH_SCALE_MAX:
            st[cpu, PCP_ALLOC_FACTOR] += 1
        batch = min(batch, max_nr_alloc)
    if batch > 1:
        batch = max(batch >> k, np.int64(2))
    return batch


@njit(cache=True, inline="always", _nrt=False)
def below_high_recheck(z, prm):  # type: ignore[no-untyped-def]
    """``free_frozen_page_commit`` after a bulk free: ZONE_BELOW_HIGH cleared once the zone
    is back at its high watermark."""
    if z.zone_flags[ZONE_BELOW_HIGH] != 0:
        nr_free_mt = z.nr_free_mt.reshape((NR_PAGE_ORDERS, MIGRATE_PCPTYPES))
        if zone_watermark_ok(0, prm[P_WHIGH], zone_free_page_count(z), nr_free_mt, 0):
            z.zone_flags[ZONE_BELOW_HIGH] = 0


@njit(cache=True, inline="always", _nrt=False)
def pcp_free(pfn, k, cpu, z, prm, counters):  # type: ignore[no-untyped-def]
    """``free_unref_page_commit``: to the head of the pageblock type's list; a bulk free
    at high (``nr_pcp_high``, ``nr_pcp_free``; fixed high and batch without tuning)."""
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
    if prm[P_PCP_TUNE] == 0:
        if prm[P_PCP_RECORDED] == 0 and z.pcp_count[cpu] >= prm[P_HIGH]:
            counters[C_BULK] += 1
            # nr_pcp_free without auto-tuning: batch pages (1 when high < batch)
            n = np.int64(1) if prm[P_HIGH] < prm[P_BATCH] else prm[P_BATCH]
            free_pcppages_bulk(n, cpu, p, z, prm, counters)
        return
    st = z.pcp_state
    st[cpu, PCP_ALLOC_FACTOR] >>= 1  # fewer pages per refill after a free
    batch = prm[P_BATCH]
    free_high = False
    # high-order pages other than THPs on pcp lists fragment memory: when freeing
    # them in a row without allocating, free them all (free_high); 6.15+ asks for
    # batch + high_min / 2 consecutive frees (free_count is capped at batch << 5)
    if k != 0 and k <= PAGE_ALLOC_COSTLY_ORDER:
        threshold = batch + (prm[P_HIGH] >> 1 if prm[P_PCP_FREE_HIGH_MIN] != 0 else 0)
        free_high = (
            st[cpu, PCP_FREE_COUNT] >= threshold
            and (st[cpu, PCP_FLAGS] & PCPF_PREV_FREE_HIGH_ORDER) != 0
            and ((st[cpu, PCP_FLAGS] & PCPF_FREE_HIGH_BATCH) == 0 or z.pcp_count[cpu] >= batch)
        )
        st[cpu, PCP_FLAGS] |= PCPF_PREV_FREE_HIGH_ORDER
    elif st[cpu, PCP_FLAGS] & PCPF_PREV_FREE_HIGH_ORDER:
        st[cpu, PCP_FLAGS] &= ~PCPF_PREV_FREE_HIGH_ORDER
    if st[cpu, PCP_FREE_COUNT] < (batch << PCP_BATCH_SCALE_MAX):
        st[cpu, PCP_FREE_COUNT] += np.int64(1) << k
    high = nr_pcp_high(cpu, batch, free_high, z, prm)
    if prm[P_PCP_RECORDED] != 0:
        return  # the recorded kernel's bulk frees come as inputs (pcp_bulk_recorded)
    if z.pcp_count[cpu] >= high:
        counters[C_BULK] += 1
        free_pcppages_bulk(nr_pcp_free(cpu, batch, high, free_high, z), cpu, p, z, prm, counters)
        below_high_recheck(z, prm)


@njit(cache=True, inline="always", _nrt=False)
def rmqueue_bulk(n, k, mt, cpu, nofrag, z, prm, counters, ef, seq, mode):  # type: ignore[no-untyped-def]
    """``rmqueue_bulk``: up to ``n`` blocks of order ``k`` from the buddy (``__rmqueue``)
    onto ``cpu``'s list of (k, mt)."""
    li = cpu * NR_PCP_LISTS + order_to_pindex(k, mt)
    mode[0] = MODE_NORMAL
    for _ in range(n):
        o = rmqueue(k, mt, mode, nofrag, z, prm, counters, ef, seq)
        if o < 0:
            break
        list_add(o, li, True, z.list_next, z.list_prev, z.pcp_head, z.pcp_tail)
        z.pcp_count[cpu] += np.int64(1) << k
        counters[C_PCP_PAGES] += np.int64(1) << k


@njit(cache=True, inline="always", _nrt=False)
def pcp_alloc(k, mt, cpu, nofrag, z, prm, counters, ef, seq, mode):  # type: ignore[no-untyped-def]
    """``__rmqueue_pcplist``: the list head, after a refill of ``nr_pcp_alloc`` blocks.

    With tuning, an allocation halves the cpu's ``free_count`` first
    (``rmqueue_pcplist``).
    """
    if prm[P_PCP_TUNE] != 0:
        z.pcp_state[cpu, PCP_FREE_COUNT] >>= 1
    li = cpu * NR_PCP_LISTS + order_to_pindex(k, mt)
    if z.pcp_head[li] < 0:
        counters[C_REFILLS] += 1
        # with the kernel's refills as inputs, a list the kernel's did not find empty:
        # one block, as rmqueue_buddy would take it
        n = np.int64(1) if prm[P_REFILL_RECORDED] != 0 else nr_pcp_alloc(cpu, k, z, prm)
        rmqueue_bulk(n, k, mt, cpu, nofrag, z, prm, counters, ef, seq, mode)
    o = z.pcp_head[li]
    if o < 0:
        return np.int64(-1)
    list_del(o, li, z.list_next, z.list_prev, z.pcp_head, z.pcp_tail)
    z.pcp_count[cpu] -= np.int64(1) << k
    counters[C_PCP_PAGES] -= np.int64(1) << k
    return o


@njit(cache=True, _nrt=False)
def pcp_refill_recorded(n, k, mt, cpu, z, prm, counters, ef, seq, mode):  # type: ignore[no-untyped-def]
    """A refill the recorded kernel made (``rmqueue_bulk``: ``n`` blocks of order ``k``
    onto ``cpu``'s list of (k, mt)). Which blocks is the model's (``__rmqueue``)."""
    counters[C_REFILLS] += 1
    rmqueue_bulk(n, k, mt, cpu, False, z, prm, counters, ef, seq, mode)


@njit(cache=True, _nrt=False)
def pcp_bulk_recorded(n, cpu, pindex, z, prm, counters):  # type: ignore[no-untyped-def]
    """A bulk free the recorded kernel made (``free_pcppages_bulk``: ``n`` pages of
    ``cpu``'s lists, list ``pindex`` first), then, as ``free_frozen_page_commit`` does
    after one, ZONE_BELOW_HIGH cleared when the zone is back at its high watermark.
    Which pages go is the model's (its lists' tails)."""
    counters[C_BULK] += 1
    free_pcppages_bulk(n, cpu, pindex, z, prm, counters)
    below_high_recheck(z, prm)


@njit(cache=True, _nrt=False)
def decay_pcp_high(ts, z, prm, cz, counters):  # type: ignore[no-untyped-def]
    """``decay_pcp_high`` for every cpu, each ``P_PCP_DECAY_NS`` of trace time up to ``ts``
    (vmstat_update): pcp->high falls by an eighth towards high_min and pages above it
    go back to the buddy, a batch at a time. After a long idle gap at most 64 periods
    are run (each takes an eighth: high is at high_min long before)."""
    period = prm[P_PCP_DECAY_NS]
    if period <= 0 or prm[P_PCP] == 0:
        cz[CZ_PCP_DECAY] = CZ_DECAY_OFF
        return
    if cz[CZ_PCP_DECAY] == CZ_DECAY_UNSET:
        cz[CZ_PCP_DECAY] = ts + period
        return
    n = 0
    while cz[CZ_PCP_DECAY] <= ts and n < 64:
        n += 1
        cz[CZ_PCP_DECAY] += period
        batch = prm[P_BATCH]
        high_min = prm[P_HIGH]
        st = z.pcp_state
        for cpu in range(prm[P_NCPU]):
            if st[cpu, PCP_HIGH] > high_min:
                st[cpu, PCP_HIGH] = max(
                    z.pcp_count[cpu] - (batch << PCP_BATCH_SCALE_MAX),
                    st[cpu, PCP_HIGH] - (st[cpu, PCP_HIGH] >> 3),
                    high_min,
                )
            to_drain = z.pcp_count[cpu] - st[cpu, PCP_HIGH]
            if prm[P_PCP_RECORDED] != 0:
                to_drain = 0  # the recorded decay's drains come as inputs
            while to_drain > 0:
                counters[C_BULK] += 1
                free_pcppages_bulk(min(to_drain, batch), cpu, 0, z, prm, counters)
                to_drain -= batch
    if cz[CZ_PCP_DECAY] <= ts:
        cz[CZ_PCP_DECAY] = ts + period


@njit(cache=True, _nrt=False)
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


@njit(cache=True, _nrt=False)
def pcp_load(offs, orders, cpus, quota, z, prm, counters):  # type: ignore[no-untyped-def]
    """Put blocks (offset, order) a starting state found on pcp lists back on pcp lists.

    For ``--start observed``: the blocks go to the tail of the cpus' lists for
    their order and pageblock type, without draining at ``high``: to ``cpus[i]``
    when known (>= 0: the cpu of the block's first event), else to the first
    cpu whose ``quota`` (pages, per cpu: what the snapshot's pagesets counted,
    less the blocks placed by their cpu) still has room, else cpu by cpu in
    turn. With pcp lists off they are freed to the buddy instead,
    merging (``free_to_buddy``).
    """
    start = prm[P_START]
    ncpu = prm[P_NCPU]
    rr = 0
    for i in range(offs.shape[0]):
        o = offs[i]
        k = orders[i]
        if prm[P_PCP] == 0 or not pcp_allowed_order(k):
            free_to_buddy(o + start, k, z, prm)
            continue
        cpu = np.int64(cpus[i])
        if cpu >= ncpu:
            cpu = -1
        if cpu < 0:
            for c in range(min(ncpu, quota.shape[0])):
                if quota[c] >= (np.int64(1) << k):
                    quota[c] -= np.int64(1) << k
                    cpu = c
                    break
        if cpu < 0:
            cpu = rr % ncpu
            rr += 1
        mt = z.pageblock_mt[((o + start) >> PAGEBLOCK_ORDER) - prm[P_PB0]]
        li = cpu * NR_PCP_LISTS + order_to_pindex(k, mt)
        list_add(o, li, True, z.list_next, z.list_prev, z.pcp_head, z.pcp_tail)
        z.pcp_count[cpu] += np.int64(1) << k
        counters[C_PCP_PAGES] += np.int64(1) << k
