"""A small pure-Python reference of the ``buddy`` model (SPEC-models.md), for tests.

Written from the spec, not from replay/models/plain_buddy.py: plain Python lists
per order (index 0 = list head) and a dict ``pfn -> order`` of free blocks.
Kernel functions followed (mm/page_alloc.c, Linux 6.x):

- boot: ``__free_pages_memory`` (mm/memblock.c) cuts the range into the
  largest naturally aligned blocks (order <= MAX_PAGE_ORDER) in ascending pfn
  order; each goes through ``__free_pages_core`` -> ``__free_one_page`` with
  FPI_TO_TAIL (always the list tail). Here boot literally calls the same
  free path with ``to_tail`` forced, so any merge would happen as in the
  kernel (none can: the blocks are maximal).
- ``alloc``: ``__rmqueue_smallest`` + ``expand`` (head of the first non-empty
  list at order >= k; each split puts the upper half at the HEAD).
- ``free``: ``__free_one_page`` + ``buddy_merge_likely``.

``check_invariants`` works on this class and on ``replay.models.plain_buddy.BuddyZone``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_PAGE_ORDER = 10
NR_PAGE_ORDERS = MAX_PAGE_ORDER + 1
PAGEBLOCK_ORDER = 9


class RefBuddy:
    """The zone ``[start_pfn, start_pfn + pages)`` run by the plain buddy allocator."""

    def __init__(self, start_pfn: int, pages: int) -> None:
        assert start_pfn >= 0 and pages > 0
        self.start_pfn = start_pfn
        self.pages = pages
        self.end_pfn = start_pfn + pages
        self.lists: list[list[int]] = [[] for _ in range(NR_PAGE_ORDERS)]
        self.free_order: dict[int, int] = {}  # first pfn of a free block -> its order
        pfn = start_pfn
        while pfn < self.end_pfn:
            # the largest order whose block is aligned at pfn and fits in the zone
            order = max(
                k
                for k in range(NR_PAGE_ORDERS)
                if pfn % (1 << k) == 0 and pfn + (1 << k) <= self.end_pfn
            )
            self._free(pfn, order, fpi_to_tail=True)
            pfn += 1 << order

    # -- list primitives ------------------------------------------------------
    def _add(self, pfn: int, order: int, to_tail: bool) -> None:
        assert pfn not in self.free_order
        if to_tail:
            self.lists[order].append(pfn)
        else:
            self.lists[order].insert(0, pfn)
        self.free_order[pfn] = order

    def _remove(self, pfn: int, order: int) -> None:
        assert self.free_order[pfn] == order
        del self.free_order[pfn]
        self.lists[order].remove(pfn)

    def _is_free_block(self, pfn: int, order: int) -> bool:
        """A free block of exactly ``order`` starts at ``pfn`` (so it lies in the zone)."""
        return self.free_order.get(pfn) == order

    # -- the allocator --------------------------------------------------------
    def alloc(self, order: int) -> int:
        """A block of ``order``: its first pfn, or -1 if no block of order >= order is free."""
        for c in range(order, NR_PAGE_ORDERS):
            if not self.lists[c]:
                continue
            pfn = self.lists[c][0]
            self._remove(pfn, c)
            while c > order:  # expand(): the upper half goes back, at the head
                c -= 1
                self._add(pfn + (1 << c), c, to_tail=False)
            return pfn
        return -1

    def free(self, pfn: int, order: int) -> None:
        """Free the block ``(pfn, order)`` the caller owns (or a piece of one)."""
        self._free(pfn, order, fpi_to_tail=False)

    def _free(self, pfn: int, order: int, fpi_to_tail: bool) -> None:
        assert 0 <= order <= MAX_PAGE_ORDER
        assert pfn % (1 << order) == 0, "misaligned free"
        assert self.start_pfn <= pfn and pfn + (1 << order) <= self.end_pfn, "free outside zone"
        k = order
        while k < MAX_PAGE_ORDER:
            buddy = pfn ^ (1 << k)
            if not self._is_free_block(buddy, k):
                break
            self._remove(buddy, k)
            pfn &= buddy
            k += 1
        if fpi_to_tail:
            to_tail = True
        elif k < PAGEBLOCK_ORDER:  # buddy_merge_likely: false from MAX_PAGE_ORDER - 1 up
            buddy = pfn ^ (1 << k)
            higher = pfn & buddy
            higher_buddy = higher ^ (1 << (k + 1))
            # page_is_buddy(higher, higher_buddy): both pages in the zone.
            to_tail = higher >= self.start_pfn and self._is_free_block(higher_buddy, k + 1)
        else:
            to_tail = False
        self._add(pfn, k, to_tail)

    # -- views ------------------------------------------------------------------
    @property
    def nr_free(self) -> np.ndarray:
        return np.array([len(lst) for lst in self.lists], dtype=np.int64)

    def free_lists(self) -> list[list[int]]:
        """Per order, the free blocks' pfns from head to tail."""
        return [list(lst) for lst in self.lists]

    def free_pages(self) -> int:
        return sum(len(lst) << k for k, lst in enumerate(self.lists))


def boot_blocks(start_pfn: int, pages: int) -> list[tuple[int, int]]:
    """The boot decomposition as sorted (pfn, order): also the fully merged state."""
    out = []
    for k, lst in enumerate(RefBuddy(start_pfn, pages).free_lists()):
        out += [(p, k) for p in lst]
    return sorted(out)


def check_invariants(zone: Any, allocated: dict[int, int]) -> None:
    """Assert the structural invariants of a buddy zone (RefBuddy or BuddyZone).

    ``allocated`` maps the first pfn of every block the caller holds to its
    order. Checks: every block (free or allocated) naturally aligned, of order
    0..10 and inside the zone; no two blocks overlap; free + allocated pages
    == zone pages; no free block of order < 10 has a free buddy of the same
    order; ``nr_free[k] == len(free_lists()[k])``; ``free_pages()`` agrees.
    """
    start, end = zone.start_pfn, zone.start_pfn + zone.pages
    lists = zone.free_lists()
    assert len(lists) == NR_PAGE_ORDERS
    nr_free = [int(n) for n in zone.nr_free]
    assert nr_free == [len(lst) for lst in lists], (nr_free, [len(lst) for lst in lists])

    free_at: dict[int, int] = {}
    blocks: list[tuple[int, int, str]] = []
    for k, lst in enumerate(lists):
        for p in lst:
            assert p not in free_at, f"pfn {p} twice in the free lists"
            free_at[p] = k
            blocks.append((p, k, "free"))
    blocks += [(p, k, "allocated") for p, k in allocated.items()]

    total = 0
    prev_end, prev = start, None
    for p, k, what in sorted(blocks):
        assert 0 <= k <= MAX_PAGE_ORDER, (what, p, k)
        assert p % (1 << k) == 0, f"{what} block {p} order {k} misaligned"
        assert start <= p and p + (1 << k) <= end, f"{what} block {p} order {k} outside zone"
        assert p >= prev_end, f"{what} block {p} order {k} overlaps {prev}"
        prev_end, prev = p + (1 << k), (p, k, what)
        total += 1 << k
    assert total == zone.pages, f"pages not conserved: {total} != {zone.pages}"

    for p, k in free_at.items():
        if k < MAX_PAGE_ORDER:
            assert free_at.get(p ^ (1 << k)) != k, f"free buddies {p} and {p ^ (1 << k)} unmerged"
    free_pages = sum(len(lst) << k for k, lst in enumerate(lists))
    assert zone.free_pages() == free_pages
    assert free_pages == total - sum(1 << k for k in allocated.values())
