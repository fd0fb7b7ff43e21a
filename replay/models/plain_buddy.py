"""``buddy``: the plain binary buddy allocator, exact (one free list per order).

Follows mm/page_alloc.c of Linux 6.x: ``__rmqueue_smallest`` + ``expand``
for allocation, ``__free_one_page`` (+ ``buddy_merge_likely``) for freeing,
``__free_pages_core`` with FPI_TO_TAIL for the initial state. The sequence of
pfns handed out for an event stream is fully determined: two correct
implementations agree at every step (tests/ref_buddy.py checks this one).

State (numpy arrays, indexed by pfn offset ``o = pfn - start_pfn``):
``blk_order[o]`` order of the free block whose first page is ``o`` (-1 if
none), ``nxt``/``prv`` intrusive free-list links (-1 = none), ``head``/
``tail`` the first/last block offset per free list, ``nr_free`` free blocks
per order. Free lists are identified by a list index ``li`` (= order here;
the mobility model uses order * MIGRATE_TYPES + migratetype with the same
primitives).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from replay.models.internal import (
    MAX_PAGE_ORDER,
    NR_PAGE_ORDERS,
    buddy_merge_likely,
    list_add,
    list_del,
)


@dataclass(frozen=True)
class BuddyConfig:
    """What a user sets for the ``buddy`` model (nothing yet: it has no knobs)."""

    model: str = "buddy"


# -- the allocator ----------------------------------------------------------------
@nb.njit(cache=True, _nrt=False)
def init_zone(start_pfn, pages, blk_order, nxt, prv, head, tail, nr_free):  # type: ignore[no-untyped-def]
    """Boot state: the zone cut into the largest naturally aligned blocks.

    Ascending pfn order, each added at the TAIL of its list (__free_pages_core
    frees with FPI_TO_TAIL), so the lowest pfn is at the head of each list.
    """
    blk_order[:] = -1
    nxt[:] = -1
    prv[:] = -1
    head[:] = -1
    tail[:] = -1
    nr_free[:] = 0
    pfn = np.int64(start_pfn)
    end = np.int64(start_pfn) + np.int64(pages)
    while pfn < end:
        k = MAX_PAGE_ORDER
        while k > 0 and ((pfn & ((np.int64(1) << k) - 1)) != 0 or pfn + (np.int64(1) << k) > end):
            k -= 1
        o = pfn - start_pfn
        list_add(o, k, True, nxt, prv, head, tail)
        blk_order[o] = k
        nr_free[k] += 1
        pfn += np.int64(1) << k


@nb.njit(cache=True, _nrt=False)
def rmqueue_smallest(order, start_pfn, blk_order, nxt, prv, head, tail, nr_free):  # type: ignore[no-untyped-def]
    """__rmqueue_smallest + expand: a block of ``order``; returns its pfn or -1.

    Takes the HEAD block of the first non-empty list at order >= ``order``;
    each split puts the upper half at the HEAD of the lower list.
    """
    for c in range(order, NR_PAGE_ORDERS):
        o = head[c]
        if o < 0:
            continue
        list_del(o, c, nxt, prv, head, tail)
        blk_order[o] = -1
        nr_free[c] -= 1
        while c > order:
            c -= 1
            u = o + (np.int64(1) << c)
            list_add(u, c, False, nxt, prv, head, tail)
            blk_order[u] = c
            nr_free[c] += 1
        return o + start_pfn
    return np.int64(-1)


@nb.njit(cache=True, _nrt=False)
def free_one_page(pfn, order, start_pfn, pages, blk_order, nxt, prv, head, tail, nr_free):  # type: ignore[no-untyped-def]
    """__free_one_page: merge with free buddies of equal order, then add to a list.

    The merged block goes to the TAIL when its parent's buddy is free at the
    next order (buddy_merge_likely: it will probably merge soon), else to the
    HEAD; never to the tail from order MAX_PAGE_ORDER - 1 up. As in the
    kernel's page_is_buddy, the parent's first page must be in the zone too
    (it is not when an unaligned zone starts inside the parent block).
    """
    pfn = np.int64(pfn)
    k = order
    while k < MAX_PAGE_ORDER:
        b = pfn ^ (np.int64(1) << k)
        bo = b - start_pfn
        if bo < 0 or bo >= pages or blk_order[bo] != k:
            break
        list_del(bo, k, nxt, prv, head, tail)
        blk_order[bo] = -1
        nr_free[k] -= 1
        pfn = pfn & b
        k += 1
    o = pfn - start_pfn
    list_add(o, k, buddy_merge_likely(pfn, k, start_pfn, pages, blk_order), nxt, prv, head, tail)
    blk_order[o] = k
    nr_free[k] += 1


class BuddyZone:
    """A zone run by the exact buddy allocator (a thin Python handle on the state).

    ``start_pfn`` and ``pages`` define ``[start_pfn, start_pfn + pages)``.
    """

    def __init__(self, start_pfn: int, pages: int) -> None:
        if pages <= 0 or start_pfn < 0:
            raise ValueError("a zone needs pages > 0 and start_pfn >= 0")
        self.start_pfn = int(start_pfn)
        self.pages = int(pages)
        self.blk_order = np.empty(pages, dtype=np.int8)
        self.nxt = np.empty(pages, dtype=np.int32)
        self.prv = np.empty(pages, dtype=np.int32)
        self.head = np.empty(NR_PAGE_ORDERS, dtype=np.int64)
        self.tail = np.empty(NR_PAGE_ORDERS, dtype=np.int64)
        self.nr_free = np.zeros(NR_PAGE_ORDERS, dtype=np.int64)
        init_zone(self.start_pfn, self.pages, self.blk_order, self.nxt, self.prv,
                  self.head, self.tail, self.nr_free)  # fmt: skip

    def alloc(self, order: int) -> int:
        """Allocate a block of ``order``; its first pfn, or -1 if none is free."""
        return int(rmqueue_smallest(order, self.start_pfn, self.blk_order, self.nxt, self.prv,
                                    self.head, self.tail, self.nr_free))  # fmt: skip

    def free(self, pfn: int, order: int) -> None:
        """Free the block of ``order`` at ``pfn`` (which the caller owns)."""
        free_one_page(pfn, order, self.start_pfn, self.pages, self.blk_order, self.nxt,
                      self.prv, self.head, self.tail, self.nr_free)  # fmt: skip

    def free_lists(self) -> list[list[int]]:
        """Per order, the free blocks' pfns from head to tail."""
        out: list[list[int]] = []
        for k in range(NR_PAGE_ORDERS):
            blocks = []
            o = int(self.head[k])
            while o >= 0:
                blocks.append(o + self.start_pfn)
                o = int(self.nxt[o])
            out.append(blocks)
        return out

    def free_pages(self) -> int:
        """Free pages (sum of nr_free[o] << o)."""
        return int(sum(int(n) << k for k, n in enumerate(self.nr_free)))
