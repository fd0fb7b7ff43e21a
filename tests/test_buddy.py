"""The exact ``buddy`` model (replay/models/plain_buddy.py) against SPEC-models.md.

Hand-worked examples first (expected free lists written out after every
step, list head first), then hypothesis streams run side by side on the
pure-Python reference (tests/ref_buddy.py) and on ``BuddyZone``: identical
pfns, identical free lists and the invariants after every step.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ref_buddy import NR_PAGE_ORDERS, RefBuddy, boot_blocks, check_invariants

from replay.models.plain_buddy import BuddyZone

IMPLS = [RefBuddy, BuddyZone]


def lists(**by_order: list[int]) -> list[list[int]]:
    """Expected free lists: ``lists(o0=[1, 30], o3=[8])``; unnamed orders are empty."""
    out: list[list[int]] = [[] for _ in range(NR_PAGE_ORDERS)]
    for name, pfns in by_order.items():
        out[int(name[1:])] = pfns
    return out


class Script:
    """Drives one zone through a hand-worked script, checking every step."""

    def __init__(self, impl: type, start_pfn: int, pages: int, expect: list[list[int]]) -> None:
        self.zone = impl(start_pfn, pages)
        self.allocated: dict[int, int] = {}
        self.check(expect)

    def check(self, expect: list[list[int]]) -> None:
        assert self.zone.free_lists() == expect
        assert [int(n) for n in self.zone.nr_free] == [len(x) for x in expect]
        check_invariants(self.zone, self.allocated)

    def alloc(self, order: int, want: int, expect: list[list[int]]) -> None:
        got = self.zone.alloc(order)
        assert got == want
        if got >= 0:
            self.allocated[got] = order
        self.check(expect)

    def free(self, pfn: int, order: int, expect: list[list[int]]) -> None:
        """Free a whole allocated block, or one piece of one (the rest stays allocated)."""
        if pfn in self.allocated and self.allocated[pfn] == order:
            del self.allocated[pfn]
        else:  # a piece of a larger non-compound block: split the record
            owner = max(p for p in self.allocated if p <= pfn)
            k = self.allocated.pop(owner)
            assert pfn + (1 << order) <= owner + (1 << k)
            for q in range(owner, owner + (1 << k), 1 << order):
                if q != pfn:
                    self.allocated[q] = order
        self.zone.free(pfn, order)
        self.check(expect)


# -- boot ------------------------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
def test_boot_unaligned_small_zone(impl: type) -> None:
    # [1, 31): 1(o0) 2(o1) 4(o2) 8(o3) 16(o3: 16+16 > 31) 24(o2) 28(o1) 30(o0),
    # each added at the tail in ascending pfn: the lowest pfn heads each list.
    Script(impl, 1, 30, lists(o0=[1, 30], o1=[2, 28], o2=[4, 24], o3=[8, 16]))


@pytest.mark.parametrize("impl", IMPLS)
def test_boot_0x1000_3000_pages(impl: type) -> None:
    # [4096, 7096): 4096(o10) 5120(o10) 6144(o9) 6656(o8) 6912(o7)
    # 7040(o5: o6 would end at 7104) 7072(o4) 7088(o3); 2048+512+256+128+32+16+8 = 3000.
    s = Script(impl, 0x1000, 3000,
               lists(o3=[7088], o4=[7072], o5=[7040], o7=[6912], o8=[6656], o9=[6144],
                     o10=[4096, 5120]))  # fmt: skip
    assert s.zone.free_pages() == 3000


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("start", "pages"), [(0, 1), (7, 1), (1023, 2), (5000, 5000), (3, 2049)])
def test_boot_is_the_maximal_aligned_cut(impl: type, start: int, pages: int) -> None:
    z = impl(start, pages)
    check_invariants(z, {})
    for lst in z.free_lists():
        assert lst == sorted(lst)  # ascending, each added at the tail
    got = sorted((p, k) for k, lst in enumerate(z.free_lists()) for p in lst)
    assert got == boot_blocks(start, pages)


# -- split, merge chain --------------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
def test_split_then_merge_chain(impl: type) -> None:
    # a lone order-4 block [16, 32)
    s = Script(impl, 16, 16, lists(o4=[16]))
    # alloc o0 -> 16: upper halves 24(o3) 20(o2) 18(o1) 17(o0) at the list heads
    s.alloc(0, 16, lists(o0=[17], o1=[18], o2=[20], o3=[24]))
    s.alloc(0, 17, lists(o1=[18], o2=[20], o3=[24]))
    # alloc o0: list 0 empty, takes 18(o1), 19 goes to list 0
    s.alloc(0, 18, lists(o0=[19], o2=[20], o3=[24]))
    # free 18: merges with 19 -> 18(o1); its buddy 16(o1) is in use; parent 16(o2)'s
    # buddy 20 is free at o2 -> TAIL of list 1
    s.free(18, 0, lists(o1=[18], o2=[20], o3=[24]))
    # free 16: buddy 17 in use; parent's buddy 18 free at o1 -> tail of list 0
    s.free(16, 0, lists(o0=[16], o1=[18], o2=[20], o3=[24]))
    # free 17: merge chain 16+17 -> 16(o1) +18 -> 16(o2) +20 -> 16(o3) +24 -> 16(o4);
    # buddy 0 is outside the zone: stop; back to the boot state
    s.free(17, 0, lists(o4=[16]))


@pytest.mark.parametrize("impl", IMPLS)
def test_split_from_order_6(impl: type) -> None:
    s = Script(impl, 0, 64, lists(o6=[0]))
    s.alloc(0, 0, lists(o0=[1], o1=[2], o2=[4], o3=[8], o4=[16], o5=[32]))
    s.alloc(3, 8, lists(o0=[1], o1=[2], o2=[4], o4=[16], o5=[32]))
    s.alloc(3, 16, lists(o0=[1], o1=[2], o2=[4], o3=[24], o5=[32]))
    s.alloc(5, 32, lists(o0=[1], o1=[2], o2=[4], o3=[24]))
    s.alloc(4, -1, lists(o0=[1], o1=[2], o2=[4], o3=[24]))


# -- tail placement (buddy_merge_likely) -----------------------------------------------
def _fill_0_to_7(impl: type) -> Script:
    """Zone [0, 64) with pfns 0..7 allocated as order-0 pages, in that order."""
    s = Script(impl, 0, 64, lists(o6=[0]))
    s.alloc(0, 0, lists(o0=[1], o1=[2], o2=[4], o3=[8], o4=[16], o5=[32]))
    s.alloc(0, 1, lists(o1=[2], o2=[4], o3=[8], o4=[16], o5=[32]))
    s.alloc(0, 2, lists(o0=[3], o2=[4], o3=[8], o4=[16], o5=[32]))
    s.alloc(0, 3, lists(o2=[4], o3=[8], o4=[16], o5=[32]))
    s.alloc(0, 4, lists(o0=[5], o1=[6], o3=[8], o4=[16], o5=[32]))
    s.alloc(0, 5, lists(o1=[6], o3=[8], o4=[16], o5=[32]))
    s.alloc(0, 6, lists(o0=[7], o3=[8], o4=[16], o5=[32]))
    s.alloc(0, 7, lists(o3=[8], o4=[16], o5=[32]))
    return s


@pytest.mark.parametrize("impl", IMPLS)
def test_tail_placement_when_parent_buddy_is_free(impl: type) -> None:
    s = _fill_0_to_7(impl)
    rest = {"o3": [8], "o4": [16], "o5": [32]}
    # free 6: buddy 7 in use; parent 6(o1)'s buddy 4(o1) in use -> head
    s.free(6, 0, lists(o0=[6], **rest))
    # free 7: merges with 6 -> 6(o1); buddy 4(o1) in use; parent 4(o2)'s buddy 0(o2) in use
    s.free(7, 0, lists(o1=[6], **rest))
    # free 0: buddy 1 in use; parent 0(o1)'s buddy 2(o1) in use -> head
    s.free(0, 0, lists(o0=[0], o1=[6], **rest))
    # free 5: buddy 4 in use; parent 4(o1)'s buddy 6 IS free at o1 -> TAIL
    s.free(5, 0, lists(o0=[0, 5], o1=[6], **rest))
    # the head is handed out first: 0, not the later-freed 5
    s.alloc(0, 0, lists(o0=[5], o1=[6], **rest))
    s.free(0, 0, lists(o0=[0, 5], o1=[6], **rest))
    # free 2: buddy 3 in use; parent 2(o1)'s buddy 0 is free but at o0, not o1 -> head
    s.free(2, 0, lists(o0=[2, 0, 5], o1=[6], **rest))
    s.alloc(0, 2, lists(o0=[0, 5], o1=[6], **rest))
    # free 4: merges with 5 -> 4(o1), with 6 -> 4(o2); buddy 0(o2) not free;
    # parent 0(o3)'s buddy 8 is free at o3 -> tail of list 2 (alone there)
    s.free(4, 0, lists(o0=[0], o2=[4], **rest))
    # free 1: merges with 0 -> 0(o1); buddy 2 in use; parent 0(o2)'s buddy 4 free at o2 -> tail
    s.free(1, 0, lists(o1=[0], o2=[4], **rest))
    # free 3: buddy 2 in use; parent 2(o1)'s buddy 0 free at o1 -> tail (list 0 was empty)
    s.free(3, 0, lists(o0=[3], o1=[0], o2=[4], **rest))
    # free 2: 2+3 -> 2(o1), +0 -> 0(o2), +4 -> 0(o3), +8, +16, +32 -> 0(o6); 64 is outside
    s.free(2, 0, lists(o6=[0]))


@pytest.mark.parametrize("impl", IMPLS)
def test_never_tail_from_order_9_and_cap_at_order_10(impl: type) -> None:
    # [0, 4864): 0 1024 2048 3072 (o10), 4096 (o9), 4608 (o8)
    boot = {"o10": [0, 1024, 2048, 3072]}
    s = Script(impl, 0, 4864, lists(o8=[4608], o9=[4096], **boot))
    s.alloc(10, 0, lists(o8=[4608], o9=[4096], o10=[1024, 2048, 3072]))
    # partial frees of the non-compound order-10 block at 0, in pieces:
    # free 512(o9): buddy 0(o9) in use; at o9 never tail, even though parent 0(o10)'s
    # buddy 1024 is free at o10 -> HEAD of list 9
    s.free(512, 9, lists(o8=[4608], o9=[512, 4096], o10=[1024, 2048, 3072]))
    # free 256(o8): buddy 0(o8) in use; parent 0(o9)'s buddy 512 free at o9 -> TAIL
    s.free(256, 8, lists(o8=[4608, 256], o9=[512, 4096], o10=[1024, 2048, 3072]))
    # free 0(o8): 0+256 -> 0(o9), +512 -> 0(o10); 1024 is free at o10 but order 10 is
    # the cap: no merge -> head of list 10
    s.free(0, 8, lists(o8=[4608], o9=[4096], o10=[0, 1024, 2048, 3072]))
    assert s.zone.free_pages() == 4864


@pytest.mark.parametrize("impl", IMPLS)
def test_order_10_blocks_never_merge(impl: type) -> None:
    s = Script(impl, 0, 2048, lists(o10=[0, 1024]))
    s.alloc(10, 0, lists(o10=[1024]))
    s.alloc(10, 1024, lists())
    s.alloc(0, -1, lists())
    s.free(1024, 10, lists(o10=[1024]))
    # 0's buddy at order 10 would be 1024, free: order 10 is MAX_PAGE_ORDER, no merge
    s.free(0, 10, lists(o10=[0, 1024]))
    assert list(s.zone.nr_free) == [0] * 10 + [2]


# -- allocation failure -----------------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
def test_alloc_fails_when_nothing_of_order_k_or_more(impl: type) -> None:
    boot = lists(o0=[1, 30], o1=[2, 28], o2=[4, 24], o3=[8, 16])
    s = Script(impl, 1, 30, boot)
    s.alloc(4, -1, boot)  # 30 pages free, but no block of order >= 4
    s.alloc(10, -1, boot)
    s.alloc(3, 8, lists(o0=[1, 30], o1=[2, 28], o2=[4, 24], o3=[16]))
    s.alloc(3, 16, lists(o0=[1, 30], o1=[2, 28], o2=[4, 24]))
    s.alloc(3, -1, lists(o0=[1, 30], o1=[2, 28], o2=[4, 24]))  # lower lists untouched
    s.alloc(2, 4, lists(o0=[1, 30], o1=[2, 28], o2=[24]))
    s.alloc(2, 24, lists(o0=[1, 30], o1=[2, 28]))
    s.alloc(2, -1, lists(o0=[1, 30], o1=[2, 28]))
    s.alloc(0, 1, lists(o0=[30], o1=[2, 28]))
    s.alloc(0, 30, lists(o1=[2, 28]))
    s.alloc(0, 2, lists(o0=[3], o1=[28]))  # split 2(o1): 3 to list 0


@pytest.mark.parametrize("impl", IMPLS)
def test_zone_start_not_aligned_tail_check_needs_higher_page_in_zone(impl: type) -> None:
    # buddy_merge_likely -> find_buddy_page_pfn -> page_is_buddy(h, hb) also needs
    # page_zone_id(h) == page_zone_id(hb): when h = pfn & b lies below the zone
    # start (an unaligned zone such as DMA at pfn 1), the block goes to the HEAD.
    # [1, 16): 1(o0) 2(o1) 4(o2) 8(o3)
    s = Script(impl, 1, 15, lists(o0=[1], o1=[2], o2=[4], o3=[8]))
    s.alloc(0, 1, lists(o1=[2], o2=[4], o3=[8]))
    s.alloc(1, 2, lists(o2=[4], o3=[8]))
    s.alloc(0, 4, lists(o0=[5], o1=[6], o3=[8]))
    # free 2(o1): buddy 0 outside the zone; parent 0(o2)'s buddy 4 in use -> head
    s.free(2, 1, lists(o0=[5], o1=[2, 6], o3=[8]))
    # free 1(o0): buddy 0 outside; h = 0 is outside the zone -> HEAD (hb = 2 is free)
    s.free(1, 0, lists(o0=[1, 5], o1=[2, 6], o3=[8]))
    s.alloc(0, 1, lists(o0=[5], o1=[2, 6], o3=[8]))


# -- hypothesis: reference and BuddyZone side by side --------------------------------------
ORDERS = [0] * 8 + [1] * 4 + [2] * 3 + [3] * 2 + [4, 5, 6, 7, 8, 9, 10]
zones = st.tuples(
    st.one_of(st.integers(0, 5000), st.integers(0, 4).map(lambda i: i * 1024)),
    st.one_of(st.integers(1, 64), st.integers(1, 5000)),
)
alloc_op = st.tuples(st.just("alloc"), st.sampled_from(ORDERS))
free_op = st.tuples(st.just("free"), st.integers(0, 1 << 16))


class SideBySide:
    def __init__(self, start_pfn: int, pages: int) -> None:
        self.ref = RefBuddy(start_pfn, pages)
        self.impl = BuddyZone(start_pfn, pages)
        self.start_pfn, self.pages = start_pfn, pages
        self.live: dict[int, int] = {}  # pfn -> order of every block the caller holds
        self.step = 0
        self.compare()

    def compare(self) -> None:
        ref_lists = self.ref.free_lists()
        assert self.impl.free_lists() == ref_lists, f"free lists differ at step {self.step}"
        assert self.impl.nr_free.dtype == np.int64 and self.impl.nr_free.shape == (11,)
        check_invariants(self.impl, self.live)

    def alloc(self, order: int) -> None:
        self.step += 1
        want = self.ref.alloc(order)
        got = self.impl.alloc(order)
        assert got == want, f"step {self.step}: alloc({order}) gave {got}, reference {want}"
        if want >= 0:
            assert want not in self.live
            self.live[want] = order
        self.compare()

    def free(self, pfn: int, order: int) -> None:
        self.step += 1
        assert self.live.pop(pfn) == order
        self.ref.free(pfn, order)
        self.impl.free(pfn, order)
        self.compare()

    def pick(self, index: int) -> int:
        return sorted(self.live)[index % len(self.live)]

    def split(self, pfn: int, order: int) -> list[int]:
        """Turn the held block (pfn, k) into held pieces of ``order`` (split_page)."""
        k = self.live.pop(pfn)
        pieces = list(range(pfn, pfn + (1 << k), 1 << order))
        for q in pieces:
            self.live[q] = order
        return pieces

    def free_everything_and_compare_to_boot(self) -> None:
        for pfn in sorted(self.live):
            self.free(pfn, self.live[pfn])
        got = sorted((p, k) for k, lst in enumerate(self.impl.free_lists()) for p in lst)
        assert got == boot_blocks(self.start_pfn, self.pages)


FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(zones, st.lists(st.one_of(alloc_op, free_op), min_size=60, max_size=200))
def test_streams_whole_frees(zone: tuple[int, int], ops: list[tuple[str, int]]) -> None:
    sbs = SideBySide(*zone)
    for kind, arg in ops:
        if kind == "alloc":
            sbs.alloc(arg)
        elif sbs.live:
            pfn = sbs.pick(arg)
            sbs.free(pfn, sbs.live[pfn])
    sbs.free_everything_and_compare_to_boot()


split_free_op = st.tuples(st.just("split_free"), st.integers(0, 1 << 16), st.integers(0, 10),
                          st.integers(0, 1 << 30))  # fmt: skip
split_op = st.tuples(st.just("split"), st.integers(0, 1 << 16), st.integers(0, 10))


@FAST
@given(
    zones,
    st.lists(
        st.one_of(alloc_op, alloc_op, free_op, split_free_op, split_op),
        min_size=50,
        max_size=160,
    ),
)
def test_streams_partial_frees(zone: tuple[int, int], ops: list[tuple]) -> None:
    """Blocks freed in pieces: all 2^(k-j) order-j pieces at once in random order
    (split_free), or split first and the pieces freed later among other events (split)."""
    sbs = SideBySide(*zone)
    for op in ops:
        kind = op[0]
        if kind == "alloc":
            sbs.alloc(op[1])
            continue
        if not sbs.live:
            continue
        pfn = sbs.pick(op[1])
        k = sbs.live[pfn]
        if kind == "free":
            sbs.free(pfn, k)
        elif kind == "split":
            sbs.split(pfn, op[2] % (k + 1))
        else:
            j = op[2] % (k + 1)
            pieces = sbs.split(pfn, j)
            random.Random(op[3]).shuffle(pieces)
            for q in pieces:
                sbs.free(q, j)
    sbs.free_everything_and_compare_to_boot()


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 5000), st.integers(1, 600), st.randoms(use_true_random=False))
def test_exhaust_in_order_0_then_free_all(start: int, pages: int, rnd: random.Random) -> None:
    """Every page handed out once (ascending within each split), then -1; freeing all
    pages in any order merges back to the boot blocks."""
    sbs = SideBySide(start, pages)
    for _ in range(pages):
        sbs.alloc(0)
    assert sorted(sbs.live) == list(range(start, start + pages))
    sbs.alloc(0)
    assert len(sbs.live) == pages  # the last alloc failed
    order = list(sbs.live)
    rnd.shuffle(order)
    for pfn in order:
        sbs.free(pfn, 0)
    got = sorted((p, k) for k, lst in enumerate(sbs.impl.free_lists()) for p in lst)
    assert got == boot_blocks(start, pages)
