"""Per-owner pools (Dave Hansen's suggestion in seed 000).

An owner (a region/VMA, a process or a command, chosen by the run's
``pool_owner``) takes an order-K chunk from the buddy allocator and hands out
its order-0 pages from it, lowest free page first; when the chunk is full the
owner takes another. A page freed goes back to its chunk; a chunk whose last
page is freed goes back to the buddy whole, so an owner that frees all its
pages returns whole order-K blocks instead of scattered pages. If no chunk
can be had the request is served by the normal allocator (a pool fallback).

Pages handed out from a chunk are pinned to it: compaction, kswapd and
exchange leave them in place (the model does not move a page between
chunks). The chunk's unused pages are reserved, neither free nor in use:
the pool's waste.

State ``pl`` = (ch_owner, ch_mt, ch_used, ch_bits, ch_next, ch_prev,
own_head, own_tail): per possible chunk c (the aligned order-K block
``(start_pfn >> K) + c``) its owner (-1: not a chunk), migratetype, pages in
use, a bitmap of the pages in use and links in its owner's list of chunks
with free pages; per owner the head and tail of that list.
"""

from __future__ import annotations

import numpy as np

from replay.jit import njit
from replay.models.internal import (
    C_POOL_CHUNKS,
    C_POOL_PAGES,
    P_POOL_ORDER,
    P_START,
    list_add,
    list_del,
)
from replay.models.page_alloc import alloc_pages, free_pages


def new_pools(start_pfn: int, pages: int, order: int, owners: int) -> tuple[np.ndarray, ...]:
    """Pool state for a zone [start_pfn, start_pfn + pages) and ``owners`` owners."""
    k = max(order, 0)
    n = ((start_pfn + pages - 1) >> k) - (start_pfn >> k) + 1 if order > 0 else 1
    words = max(1, (1 << k) // 64)
    nown = max(owners, 1)
    return (
        np.full(n, -1, np.int64),  # ch_owner
        np.zeros(n, np.int8),  # ch_mt
        np.zeros(n, np.int64),  # ch_used
        np.zeros((n, words), np.uint64),  # ch_bits
        np.full(n, -1, np.int32),  # ch_next
        np.full(n, -1, np.int32),  # ch_prev
        np.full(nown, -1, np.int64),  # own_head
        np.full(nown, -1, np.int64),  # own_tail
    )


@njit(cache=True, inline="always", _nrt=False)
def _first_free(bits, c, n):  # type: ignore[no-untyped-def]
    """The lowest clear bit of chunk c's bitmap (n pages), or -1."""
    for w in range(bits.shape[1]):
        v = bits[c, w]
        if v != np.uint64(0xFFFFFFFFFFFFFFFF):
            for b in range(64):
                i = w * 64 + b
                if i >= n:
                    return np.int64(-1)
                if (v >> np.uint64(b)) & np.uint64(1) == 0:
                    return np.int64(i)
    return np.int64(-1)


@njit(cache=True, _nrt=False)
def pool_alloc(x, own, m, cpu, seq, z, prm, ob, pl, counters, ef, mode, stats, s_fallback):  # type: ignore[no-untyped-def]  # fmt: skip
    """An order-0 page for object x of owner ``own`` from its pool; pfn, or -1 when no chunk
    could be had (the caller then allocates normally; ``stats[s_fallback]`` counts it)."""
    ch_owner, ch_mt, ch_used, ch_bits, ch_next, ch_prev, own_head, own_tail = pl
    K = prm[P_POOL_ORDER]
    n = np.int64(1) << K
    c = own_head[own]
    if c < 0:
        pfn = alloc_pages(K, m, cpu, z, prm, counters, ef, seq, mode)
        if pfn < 0:
            stats[s_fallback] += 1
            return np.int64(-1)
        c = (pfn >> K) - (prm[P_START] >> K)
        ch_owner[c] = own
        ch_mt[c] = m
        ch_used[c] = 0
        ch_bits[c, :] = 0
        list_add(c, own, True, ch_next, ch_prev, own_head, own_tail)
        counters[C_POOL_CHUNKS] += 1
    i = _first_free(ch_bits, c, n)
    ch_bits[c, i >> 6] |= np.uint64(1) << np.uint64(i & 63)
    ch_used[c] += 1
    counters[C_POOL_PAGES] += 1
    if ch_used[c] == n:
        list_del(c, own, ch_next, ch_prev, own_head, own_tail)
    return (((prm[P_START] >> K) + c) << K) + i


@njit(cache=True, _nrt=False)
def pool_free(pfn, cpu, z, prm, pl, counters):  # type: ignore[no-untyped-def]
    """Page ``pfn`` goes back to its chunk; an empty chunk goes back to the buddy."""
    ch_owner, ch_mt, ch_used, ch_bits, ch_next, ch_prev, own_head, own_tail = pl
    K = prm[P_POOL_ORDER]
    n = np.int64(1) << K
    c = (pfn >> K) - (prm[P_START] >> K)
    own = ch_owner[c]
    i = pfn & (n - 1)
    ch_bits[c, i >> 6] &= ~(np.uint64(1) << np.uint64(i & 63))
    if ch_used[c] == n:
        list_add(c, own, True, ch_next, ch_prev, own_head, own_tail)
    ch_used[c] -= 1
    counters[C_POOL_PAGES] -= 1
    if ch_used[c] == 0:
        list_del(c, own, ch_next, ch_prev, own_head, own_tail)
        ch_owner[c] = -1
        counters[C_POOL_CHUNKS] -= 1
        free_pages(pfn - i, K, np.int64(ch_mt[c]), cpu, z, prm, counters)
