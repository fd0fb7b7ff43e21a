"""Hand-worked examples of the ``mobility`` model (+ ``pcp``) against docs/mobility.md.

Every test goes through the public API only and is parametrised over
``IMPLS`` (today the pure-Python reference; the numba zone joins it later).
Expected free lists are dicts ``(order, migratetype) -> pfns head..tail``
written with ``fl(u0=[...], m10=[...])`` (u = UNMOVABLE, m = MOVABLE,
r = RECLAIMABLE, then the order); pcp lists are ``(cpu, pindex) -> pfns``.
The invariants are checked after every step.
"""

from __future__ import annotations

import random

import pytest
from ref_buddy import RefBuddy, boot_blocks
from ref_mobility import RefMobility, check_mobility_invariants

from replay.models.zone import ZoneState

IMPLS: list[type] = [RefMobility, ZoneState]

U, M, R = 0, 1, 2
TYPE_OF = {"u": U, "m": M, "r": R}

FreeLists = dict[tuple[int, int], list[int]]


def fl(**lists: list[int]) -> FreeLists:
    """Expected free lists: ``fl(u0=[1], m10=[1024])``; unnamed lists are empty."""
    return {(int(name[1:]), TYPE_OF[name[0]]): pfns for name, pfns in lists.items()}


def ctz(n: int) -> int:
    """Trailing zero bits of n > 0 (the order of the largest aligned block at n)."""
    return (n & -n).bit_length() - 1


class Script:
    """Drives one zone through a hand-worked script, checking every step."""

    def __init__(
        self, impl: type, start_pfn: int, pages: int, expect: FreeLists, **kw: int
    ) -> None:
        self.zone = impl(start_pfn, pages, **kw)
        self.allocated: dict[int, tuple[int, int]] = {}  # pfn -> (order, request type)
        self.seen = 0  # extfrag events already returned by new_extfrag()
        self.check(expect)

    def check(self, expect: FreeLists, pcp: dict[tuple[int, int], list[int]] | None = None) -> None:
        assert self.zone.free_lists() == expect
        if pcp is not None:
            assert self.zone.pcp_lists() == pcp
        check_mobility_invariants(self.zone, self.allocated)

    def alloc(
        self,
        order: int,
        mt: int,
        want: int,
        expect: FreeLists,
        *,
        cpu: int = 0,
        pcp: dict[tuple[int, int], list[int]] | None = None,
    ) -> None:
        got = self.zone.alloc(order, mt, cpu)
        assert got == want
        if got >= 0:
            self.allocated[got] = (order, mt)
        self.check(expect, pcp)

    def free(
        self,
        pfn: int,
        order: int,
        expect: FreeLists,
        *,
        cpu: int = 0,
        pcp: dict[tuple[int, int], list[int]] | None = None,
    ) -> None:
        """Free a whole allocated block, or one piece of one (the rest stays allocated)."""
        if pfn in self.allocated and self.allocated[pfn][0] == order:
            _, mt = self.allocated.pop(pfn)
        else:  # a piece of a larger non-compound block: split the record
            owner = max(p for p in self.allocated if p <= pfn)
            k, mt = self.allocated.pop(owner)
            assert pfn + (1 << order) <= owner + (1 << k)
            for q in range(owner, owner + (1 << k), 1 << order):
                if q != pfn:
                    self.allocated[q] = (order, mt)
        self.zone.free(pfn, order, mt, cpu)
        self.check(expect, pcp)

    def new_extfrag(self) -> list[tuple]:
        """The extfrag events emitted since the last call."""
        events = [tuple(e) for e in self.zone.extfrag]
        out = events[self.seen :]
        self.seen = len(events)
        return out

    def types(self) -> list[int]:
        return [int(t) for t in self.zone.pageblock_types()]


# -- (1) MOVABLE only, no pcp: exactly the plain buddy -----------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("start", "pages"), [(0, 4096), (256, 2048), (1, 3000), (5000, 1500)])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_movable_only_is_the_buddy_model(impl: type, start: int, pages: int, seed: int) -> None:
    """Random MOVABLE stream (types -1 and 5 count as MOVABLE), whole and partial frees:
    the same pfns as RefBuddy and its free lists, all on the MOVABLE lists."""
    rnd = random.Random(seed)
    ref = RefBuddy(start, pages)
    zone = impl(start, pages)
    live: dict[int, tuple[int, int]] = {}

    def compare() -> None:
        want = {(k, M): lst for k, lst in enumerate(ref.free_lists()) if lst}
        assert zone.free_lists() == want
        check_mobility_invariants(zone, live)

    orders = [0] * 8 + [1] * 4 + [2] * 3 + [3] * 2 + [4, 5, 6, 7, 8, 9, 10]
    compare()
    for _ in range(400):
        if not live or rnd.random() < 0.55:
            order, mt = rnd.choice(orders), rnd.choice([M, M, M, -1, 5])
            want = ref.alloc(order)
            assert zone.alloc(order, mt) == want
            if want >= 0:
                live[want] = (order, mt)
        else:
            pfn = rnd.choice(sorted(live))
            k, mt = live.pop(pfn)
            j = rnd.randint(0, k) if rnd.random() < 0.3 else k  # free in pieces of order j
            pieces = list(range(pfn, pfn + (1 << k), 1 << j))
            rnd.shuffle(pieces)
            n_free = rnd.randint(1, len(pieces))
            for q in pieces[n_free:]:
                live[q] = (j, mt)  # the rest stays allocated, freed later
            for q in pieces[:n_free]:
                ref.free(q, j)
                zone.free(q, j, mt)
        compare()
    assert list(zone.extfrag) == []
    assert all(int(t) == M for t in zone.pageblock_types())
    for pfn, (k, mt) in sorted(live.items()):
        ref.free(pfn, k)
        zone.free(pfn, k, mt)
    live.clear()
    compare()
    got = sorted((p, k) for (k, _), lst in zone.free_lists().items() for p in lst)
    assert got == boot_blocks(start, pages)


# -- (2) claim of an order-10 block ------------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
def test_unmovable_order0_claims_an_order10_block(impl: type) -> None:
    # [0, 2048): two order-10 blocks at the MOVABLE tail; pageblocks 0..3 all MOVABLE
    s = Script(impl, 0, 2048, fl(m10=[0, 1024]))
    assert s.types() == [M, M, M, M]
    # UNMOVABLE o0: no UNMOVABLE block; claim from order 10 down: (10, RECLAIMABLE) empty,
    # (10, MOVABLE) head 0 -> c >= 9: pageblocks 0 and 1 become UNMOVABLE, expand onto
    # the UNMOVABLE lists (upper halves 512, 256, ..., 1 at the heads)
    s.alloc(0, U, 0, fl(u0=[1], u1=[2], u2=[4], u3=[8], u4=[16], u5=[32], u6=[64], u7=[128],
                        u8=[256], u9=[512], m10=[1024]))  # fmt: skip
    assert s.types() == [U, U, M, M]
    assert s.new_extfrag() == [(0, 0, 10, U, M, False, True)]
    s.alloc(0, U, 1, fl(u1=[2], u2=[4], u3=[8], u4=[16], u5=[32], u6=[64], u7=[128], u8=[256],
                        u9=[512], m10=[1024]))  # fmt: skip
    # free 1: buddy 0 in use; parent 0(o1)'s buddy 2 is free at o1 -> tail of (0, U)
    s.free(1, 0, fl(u0=[1], u1=[2], u2=[4], u3=[8], u4=[16], u5=[32], u6=[64], u7=[128],
                    u8=[256], u9=[512], m10=[1024]))  # fmt: skip
    # free 0: merges all the way to 0(o10) on the UNMOVABLE list; the pageblocks stay U
    s.free(0, 0, fl(u10=[0], m10=[1024]))
    assert s.types() == [U, U, M, M]
    s.alloc(10, M, 1024, fl(u10=[0]))
    assert s.new_extfrag() == []
    # MOVABLE o0: fallbacks[MOVABLE] = RECLAIMABLE, UNMOVABLE: claims (10, U) head 0 back
    s.alloc(0, M, 0, fl(m0=[1], m1=[2], m2=[4], m3=[8], m4=[16], m5=[32], m6=[64], m7=[128],
                        m8=[256], m9=[512]))  # fmt: skip
    assert s.types() == [M, M, M, M]
    assert s.new_extfrag() == [(0, 0, 10, M, U, False, True)]


# -- (3) claims below pageblock order ----------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
def test_claim_below_order_9_succeeds(impl: type) -> None:
    s = Script(impl, 0, 1024, fl(m10=[0]))
    lower = {f"m{k}": [1 << k] for k in range(2, 10)}  # m2=[4] .. m9=[512]
    s.alloc(0, M, 0, fl(m0=[1], m1=[2], **lower))
    s.alloc(0, M, 1, fl(m1=[2], **lower))
    s.alloc(0, M, 2, fl(m0=[3], **lower))
    # free 1: buddy 0 in use; parent 0(o1)'s buddy 2 in use -> head
    s.free(1, 0, fl(m0=[1, 3], **lower))
    del lower["m9"]
    s.alloc(9, M, 512, fl(m0=[1, 3], **lower))
    # pageblock 0: 510 pages free (1, 3 at o0; 4(o2) 8(o3) .. 256(o8)), 0 and 2 movable;
    # pageblock 1 all movable.
    # UNMOVABLE o1: no U list; claim c=10, 9: nothing; c=8: (8, M) head 256 -> pageblock 0,
    # free 510 + alike (512 - 510 - 2 = 0) >= 256: P0's free blocks go, ascending, to the
    # TAIL of the U lists (1 then 3 on (0, U)); P0 -> UNMOVABLE; __rmqueue_smallest(1, U)
    # then takes 4(o2) and puts 6 on (1, U). The pfn is 4, the fallback order 8.
    s.alloc(1, U, 4, fl(u0=[1, 3], u1=[6], u3=[8], u4=[16], u5=[32], u6=[64], u7=[128],
                        u8=[256]))  # fmt: skip
    assert s.types() == [U, M]
    assert s.new_extfrag() == [(4, 1, 8, U, M, True, True)]


@pytest.mark.parametrize("impl", IMPLS)
def test_claim_below_order_9_fails_then_steals_then_alike_tips_it(impl: type) -> None:
    s = Script(impl, 0, 1024, fl(m10=[0]))
    s.alloc(9, M, 0, fl(m9=[512]))
    s.alloc(8, M, 512, fl(m8=[768]))
    rest = {"m2": [772], "m3": [776], "m4": [784], "m5": [800], "m6": [832], "m7": [896]}
    s.alloc(0, M, 768, fl(m0=[769], m1=[770], **rest))
    # pageblock 1 [512, 1024): 255 free, 257 movable.
    # UNMOVABLE o0: claim tries c=7 (896), 6 (832), ..., 0 (769), all in pageblock 1:
    # free 255 + alike (512 - 255 - 257 = 0) < 256 -> no claim. Steal c=0: (0, M) head 769.
    s.alloc(0, U, 769, fl(m1=[770], **rest))
    assert s.types() == [M, M]
    assert s.new_extfrag() == [(769, 0, 0, U, M, True, False)]
    # free 768: buddy 769 in use; parent 768(o1)'s buddy 770 free at o1 -> tail
    s.free(768, 0, fl(m0=[768], m1=[770], **rest))
    # now pageblock 1: 255 free, 256 movable, 1 unmovable (769): alike = 512 - 255 - 256 = 1,
    # 255 + 1 = 256 >= 256 -> claim at c=7 (head 896): 768(o0) 770(o1) .. 896(o7) move to
    # the U tails, pageblock 1 -> U, __rmqueue_smallest(0, U) takes 768
    s.alloc(0, U, 768, fl(u1=[770], u2=[772], u3=[776], u4=[784], u5=[800], u6=[832],
                          u7=[896]))  # fmt: skip
    assert s.types() == [M, U]
    assert s.new_extfrag() == [(768, 0, 7, U, M, True, True)]


# -- (4) steals --------------------------------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
def test_movable_steals_from_unmovable_and_a_pcp_refill_keeps_stealing(impl: type) -> None:
    s = Script(impl, 0, 1024, fl(m10=[0]), pcp=True)
    # order 10 is not a pcp order: straight to __rmqueue; claim (10, M) head 0 -> both U
    s.alloc(10, U, 0, fl())
    assert s.types() == [U, U]
    assert s.new_extfrag() == [(0, 10, 10, U, M, False, True)]
    # free [0, 16) of it (order 4: not a pcp order, to the buddy): head of (4, U)
    s.free(0, 4, fl(u4=[0]))
    # MOVABLE o0 on cpu 0: pcp list pindex(0, M) = 1 is empty -> refill 63 __rmqueue calls.
    # Call 1 (NORMAL): no M block; claim: c=10..5 no fallback; c=4: (4, U) head 0, pageblock
    # 0 has 16 free + alike (= movable = 0) < 256 -> no; c=3: should_try_claim_block is
    # false for MOVABLE below order 4 -> stop. Steal: c=4 (4, U) head 0 -> 0, the remainder
    # 8(o3) 4(o2) 2(o1) 1(o0) stays on the U lists. Mode = STEAL.
    # Calls 2..16 (STEAL): the smallest U block each time: 1, 2, 3, ..., 15.
    # Call 17 finds nothing: the refill stops with 16 pages, appended in order.
    # The head (0) is the result.
    s.alloc(0, M, 0, fl(), pcp={(0, 1): list(range(1, 16))})
    assert s.zone.pcp_count() == [15]
    want = [(0, 0, 4, M, U, True, False)]
    want += [(p, 0, ctz(p), M, U, True, False) for p in range(1, 16)]  # fallback order ctz(p)
    assert s.new_extfrag() == want
    assert s.types() == [U, U]
    s.alloc(0, M, 1, fl(), pcp={(0, 1): list(range(2, 16))})
    assert s.new_extfrag() == []
    # a free goes to the list of the pageblock's type (UNMOVABLE: pindex 0), whatever the
    # type of the request that allocated the page
    s.free(1, 0, fl(), pcp={(0, 0): [1], (0, 1): list(range(2, 16))})
    assert s.zone.pcp_count() == [15]
    s.alloc(0, U, 1, fl(), pcp={(0, 1): list(range(2, 16))})


@pytest.mark.parametrize("impl", IMPLS)
def test_claim_loop_stops_below_order_4_for_movable_not_for_reclaimable(impl: type) -> None:
    # one pageblock [0, 512)
    s = Script(impl, 0, 512, fl(m9=[0]))
    s.alloc(0, U, 0, fl(**{f"u{k}": [1 << k] for k in range(9)}))  # claims c=9: P0 -> U
    assert s.new_extfrag() == [(0, 0, 9, U, M, False, True)]
    for p in range(1, 512):
        assert s.zone.alloc(0, U) == p
        s.allocated[p] = (0, U)
    s.check(fl())
    # free every even page: 256 free order-0 blocks, each at the head (its parent's buddy
    # is never free at order 1)
    for p in range(0, 512, 2):
        del s.allocated[p]
        s.zone.free(p, 0, U)
    s.check(fl(u0=list(range(510, -1, -2))))
    # MOVABLE o0: the claim loop finds no fallback at c=10..4 and stops at c=3
    # (should_try_claim_block) although claiming at c=0 would pass (256 free >= 256):
    # it steals the head 510 instead; the pageblock stays UNMOVABLE
    s.alloc(0, M, 510, fl(u0=list(range(508, -1, -2))))
    assert s.new_extfrag() == [(510, 0, 0, M, U, True, False)]
    assert s.types() == [U]
    # free 511: buddy 510 in use; parent 510(o1)'s buddy 508 is free at o0 only -> head
    s.free(511, 0, fl(u0=[511, *range(508, -1, -2)]))
    # RECLAIMABLE o0 (should_try_claim_block always true): claim at c=0, (0, U) head 511:
    # 256 free + alike 0 (U -> R) >= 256: the 256 blocks move ascending to the TAIL of
    # (0, R), the pageblock becomes RECLAIMABLE, and the head 0 is taken
    s.alloc(0, R, 0, fl(r0=[*range(2, 509, 2), 511]))
    assert s.new_extfrag() == [(0, 0, 0, R, U, True, True)]
    assert s.types() == [R]


@pytest.mark.parametrize("impl", IMPLS)
def test_movable_claims_from_order_4_but_not_from_order_3(impl: type) -> None:
    s = Script(impl, 0, 512, fl(m9=[0]))
    s.alloc(0, U, 0, fl(**{f"u{k}": [1 << k] for k in range(9)}))  # claims c=9: P0 -> U
    assert s.new_extfrag() == [(0, 0, 9, U, M, False, True)]
    for p in range(1, 512):
        assert s.zone.alloc(0, U) == p
        s.allocated[p] = (0, U)
    # free [16i, 16i + 8) for i = 0..31: 32 order-3 blocks (256 pages), none mergeable,
    # each ends up at the head of (3, U)
    for i in range(32):
        for p in range(16 * i, 16 * i + 8):
            del s.allocated[p]
            s.zone.free(p, 0, U)
    s.check(fl(u3=list(range(496, -1, -16))))
    # MOVABLE o0: c=3 is below pageblock_order / 2: the claim loop stops before it (claiming
    # would pass: 256 free >= 256) and it steals the head 496(o3) instead
    s.alloc(0, M, 496, fl(u0=[497], u1=[498], u2=[500], u3=list(range(480, -1, -16))))
    assert s.new_extfrag() == [(496, 0, 3, M, U, True, False)]
    # free [8, 16): merges with 0(o3) into 0(o4) (parent's buddy 32 is not free at o5: head)
    for p in range(8, 16):
        del s.allocated[p]
        s.zone.free(p, 0, U)
    s.check(fl(u0=[497], u1=[498], u2=[500], u3=list(range(480, 15, -16)), u4=[0]))
    # MOVABLE o0: claim at c=4, head 0: 263 free + alike (movable: 496) 1 >= 256: the free
    # blocks move ascending to the MOVABLE tails (0(o4), 16, 32, .., 480(o3), 497, 498,
    # 500), the pageblock becomes MOVABLE, __rmqueue_smallest(0, M) takes 497
    s.alloc(0, M, 497, fl(m1=[498], m2=[500], m3=list(range(16, 481, 16)), m4=[0]))
    assert s.new_extfrag() == [(497, 0, 4, M, U, True, True)]
    assert s.types() == [M]


def split_10(prefix: str, base: int) -> dict[str, list[int]]:
    """The leftovers of the order-10 block at ``base`` split down to order 0 (expand)."""
    return {f"{prefix}{k}": [base + (1 << k)] for k in range(10)}


@pytest.mark.parametrize("impl", IMPLS)
def test_fallback_type_order(impl: type) -> None:
    s = Script(impl, 0, 4096, fl(m10=[0, 1024, 2048, 3072]))
    s.alloc(10, R, 0, fl(m10=[1024, 2048, 3072]))
    s.alloc(10, U, 1024, fl(m10=[2048, 3072]))
    assert s.new_extfrag() == [(0, 10, 10, R, M, False, True), (1024, 10, 10, U, M, False, True)]
    assert s.types() == [R, R, U, U, M, M, M, M]
    # order 10 frees as two order-9 halves, each with its pageblock's type, merging back
    s.free(0, 10, fl(r10=[0], m10=[2048, 3072]))
    # UNMOVABLE: fallbacks RECLAIMABLE then MOVABLE, both at order 10 -> the R block 0
    s.alloc(0, U, 0, fl(m10=[2048, 3072], **split_10("u", 0)))
    assert s.new_extfrag() == [(0, 0, 10, U, R, False, True)]
    s.free(1024, 10, fl(u10=[1024], m10=[2048, 3072], **split_10("u", 0)))
    # RECLAIMABLE: fallbacks UNMOVABLE then MOVABLE, both at order 10 -> the U block 1024
    s.alloc(0, R, 1024, fl(m10=[2048, 3072], **split_10("u", 0), **split_10("r", 1024)))
    assert s.new_extfrag() == [(1024, 0, 10, R, U, False, True)]
    assert s.types() == [U, U, R, R, M, M, M, M]
    s.alloc(10, M, 2048, fl(m10=[3072], **split_10("u", 0), **split_10("r", 1024)))
    s.alloc(10, M, 3072, fl(**split_10("u", 0), **split_10("r", 1024)))
    # MOVABLE: fallbacks RECLAIMABLE then UNMOVABLE; nothing at order 10; at order 9
    # (9, R) = [1536] comes before (9, U) = [512]: pageblock 3 becomes MOVABLE
    r_rest = {k: v for k, v in split_10("r", 1024).items() if k != "r9"}
    m_rest = {f"m{k}": [1536 + (1 << k)] for k in range(9)}
    s.alloc(0, M, 1536, fl(**split_10("u", 0), **r_rest, **m_rest))
    assert s.new_extfrag() == [(1536, 0, 9, M, R, False, True)]
    assert s.types() == [U, U, R, M, M, M, M, M]


# -- (5) merge across pageblock types ----------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
def test_merge_at_order_9_retypes_the_buddy_pageblock(impl: type) -> None:
    s = Script(impl, 0, 1024, fl(m10=[0]))
    s.alloc(10, M, 0, fl())
    # free the piece [0, 256): buddy 256 in use; parent's buddy 512 (o9) in use -> head
    s.free(0, 8, fl(m8=[0]))
    # UNMOVABLE o0: claim c=8, pageblock 0: 256 free + alike (512 - 256 - 256 = 0) >= 256
    s.alloc(0, U, 0, fl(u0=[1], u1=[2], u2=[4], u3=[8], u4=[16], u5=[32], u6=[64], u7=[128]))
    assert s.new_extfrag() == [(0, 0, 8, U, M, True, True)]
    assert s.types() == [U, M]
    s.free(0, 0, fl(u8=[0]))  # merges back to 0(o8); 256 in use
    # free [256, 512) (allocated MOVABLE, but pageblock 0 is UNMOVABLE now): merges with
    # 0(o8) into 0(o9) on the UNMOVABLE list; 512(o9) in use
    s.free(256, 8, fl(u9=[0]))
    # free [512, 768): buddy 768 in use; parent 512(o9)'s buddy 0 is free at o9 -> TAIL
    # (buddy_merge_likely does not look at types)
    s.free(512, 8, fl(m8=[512], u9=[0]))
    assert s.types() == [U, M]
    # free [768, 1024) with pageblock 1's type MOVABLE: +512 -> 512(o9), then the buddy
    # 0(o9) on the UNMOVABLE list merges too and its pageblock is retyped MOVABLE
    s.free(768, 8, fl(m10=[0]))
    assert s.types() == [M, M]
    assert s.new_extfrag() == []


# -- (6) pcp -----------------------------------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
def test_pcp_refill_alloc_from_head_free_to_head(impl: type) -> None:
    s = Script(impl, 0, 1024, fl(m10=[0]), pcp=True, ncpus=2)
    big = {"m7": [128], "m8": [256], "m9": [512]}
    # refill of 63 order-0 pages (0..62, each at the tail), the head is the result
    s.alloc(0, M, 0, fl(m0=[63], m6=[64], **big), pcp={(0, 1): list(range(1, 63))})
    assert s.zone.pcp_count() == [62, 0]
    assert s.zone.pcp_pages() == 62 and s.zone.free_pages() == 1024 - 63
    s.alloc(0, M, 1, fl(m0=[63], m6=[64], **big), pcp={(0, 1): list(range(2, 63))})
    # a free goes to the head of pindex(0, pageblock type MOVABLE) = 1; 62 < high 252
    s.free(0, 0, fl(m0=[63], m6=[64], **big), pcp={(0, 1): [0, *range(2, 63)]})
    # cpu 1 refills on its own: 63, then 64(o6) is split: 63..125; 126(o1) is left
    s.alloc(0, M, 63, fl(m1=[126], **big), cpu=1,
            pcp={(0, 1): [0, *range(2, 63)], (1, 1): list(range(64, 126))})  # fmt: skip
    assert s.zone.pcp_count() == [62, 62]
    # pageblock_counts: (free, alloc U, alloc M, alloc R, pcp) per pageblock
    assert [tuple(c) for c in s.zone.pageblock_counts()] == [(2 + 128 + 256, 0, 2, 0, 124),
                                                             (512, 0, 0, 0, 0)]  # fmt: skip
    assert s.zone.drains == 0


@pytest.mark.parametrize("impl", IMPLS)
def test_pcp_drain_at_high_round_robin(impl: type) -> None:
    s = Script(impl, 0, 1024, fl(m10=[0]), pcp=True, batch=4, high=9)
    big = {"m5": [32], "m6": [64], "m7": [128], "m8": [256], "m9": [512]}
    # order 3: pindex 3*3 + 1 = 10, refill max(4 >> 3, 2) = 2 blocks: 0 and 8
    s.alloc(3, M, 0, fl(m4=[16], **big), pcp={(0, 10): [8]})
    # order 0: refill 4 pages 16..19 (16(o4) split: 24(o3) 20(o2) stay)
    s.alloc(0, M, 16, fl(m2=[20], m3=[24], **big), pcp={(0, 1): [17, 18, 19], (0, 10): [8]})
    s.alloc(0, M, 17, fl(m2=[20], m3=[24], **big), pcp={(0, 1): [18, 19], (0, 10): [8]})
    s.alloc(0, M, 18, fl(m2=[20], m3=[24], **big), pcp={(0, 1): [19], (0, 10): [8]})
    assert s.zone.pcp_count() == [9]
    # free 16 -> head of list 1: [16, 19], count 10 >= high 9 -> free_pcppages_bulk(4, 1):
    # list 1 from the tail: 19 (buddy 18 in use; head of (0, M)), 16 (buddy 17 in use;
    # head), n = 2 left; round robin to the next non-empty list, 10: 8(o3), n = 2 - 8 < 0.
    # 8: buddy 0(o3) in use; parent 0(o4)'s buddy 16 is not free at o4 -> head of (3, M)
    s.free(16, 0, fl(m0=[16, 19], m2=[20], m3=[8, 24], **big), pcp={})
    assert s.zone.pcp_count() == [0]
    # the bulk starts at the freed page's list: 0(o3) freed to list 10 while 17 waits on 1
    s.free(17, 0, fl(m0=[16, 19], m2=[20], m3=[8, 24], **big), pcp={(0, 1): [17]})
    # count 1 + 8 = 9 >= high 9: list 10 first: 0(o3) + 8(o3) -> 0(o4); parent's buddy 32 free at o5
    # -> tail of (4, M); list 1 is not touched (n = 4 - 8 < 0)
    s.free(0, 3, fl(m0=[16, 19], m2=[20], m3=[24], m4=[0], **big), pcp={(0, 1): [17]})
    assert s.zone.pcp_count() == [1]


@pytest.mark.parametrize("impl", IMPLS)
def test_failure_retry_with_drain_all(impl: type) -> None:
    s = Script(impl, 0, 16, fl(m4=[0]), pcp=True, batch=4, high=100)
    s.alloc(3, M, 0, fl(), pcp={(0, 10): [8]})  # refill 0, 8; the head 0 is the result
    # order 0: refill finds nothing, the buddy neither; pcp holds 8 pages -> drain_all
    # (8(o3): buddy 0 in use, head of (3, M)) and once more: refill 8..11, head 8
    s.alloc(0, M, 8, fl(m2=[12]), pcp={(0, 1): [9, 10, 11]})
    assert s.zone.drains == 1
    # order 3: nothing, drain_all (11: head; 10: +11 -> 10(o1), parent's buddy 12 free at
    # o2 -> tail; 9: parent's buddy 10 free at o1 -> tail) and still nothing: -1
    s.alloc(3, M, -1, fl(m0=[9], m1=[10], m2=[12]), pcp={})
    assert s.zone.drains == 2
    # failing with empty pcp lists: no drain
    s.alloc(3, M, -1, fl(m0=[9], m1=[10], m2=[12]), pcp={})
    assert s.zone.drains == 2
    # explicit drain_all calls are not counted
    s.zone.drain_all()
    assert s.zone.drains == 2


@pytest.mark.parametrize("impl", IMPLS)
def test_drain_all_cpu_order_and_tail_first(impl: type) -> None:
    s = Script(impl, 0, 64, fl(m6=[0]), pcp=True, ncpus=2, batch=4, high=100)
    big = {"m3": [8], "m4": [16], "m5": [32]}
    s.alloc(0, M, 0, fl(m2=[4], **big), cpu=0, pcp={(0, 1): [1, 2, 3]})
    s.alloc(0, M, 4, fl(**big), cpu=1, pcp={(0, 1): [1, 2, 3], (1, 1): [5, 6, 7]})
    # cpu 0 tail first: 3 (head), 2 (+3 -> 2(o1), head), 1 (parent's buddy 2 free at o1:
    # tail); then cpu 1: 7 (head of (0, M): [7, 1]), 6 (+7 -> 6(o1), head of (1, M)),
    # 5 (parent's buddy 6 free at o1: tail). cpu 1 first would give m0=[5, 1], m1=[2, 6].
    s.zone.drain_all()
    s.check(fl(m0=[1, 5], m1=[6, 2], **big), pcp={})
    assert s.zone.pcp_count() == [0, 0]
    assert s.zone.drains == 0


@pytest.mark.parametrize("impl", IMPLS)
def test_pcp_order_9_lists_by_type_and_retry(impl: type) -> None:
    s = Script(impl, 0, 1024, fl(m10=[0]), pcp=True)
    # order 9 UNMOVABLE: pindex 12, refill max(63 >> 9, 2) = 2: claim (10, M) -> both
    # pageblocks U, 512 stays on (9, U); then 512 from (9, U). Head 0 is the result.
    s.alloc(9, U, 0, fl(), pcp={(0, 12): [512]})
    assert s.new_extfrag() == [(0, 9, 10, U, M, False, True)]
    assert s.types() == [U, U]
    # free 0(o9): pageblock U -> head of list 12, count 1024 >= 252: bulk(63, 12) frees the
    # tail 512 (n = 63 - 512 < 0); 0 stays
    s.free(0, 9, fl(u9=[512]), pcp={(0, 12): [0]})
    # order 9 MOVABLE: list 13; refill: claim (9, U) head 512 -> pageblock 1 MOVABLE; the
    # second call finds nothing. 0 on list 12 is not for MOVABLE requests.
    s.alloc(9, M, 512, fl(), pcp={(0, 12): [0]})
    assert s.new_extfrag() == [(512, 9, 9, M, U, False, True)]
    # again: nothing, pcp holds 512 pages -> drain_all frees 0(o9) to (9, U), retry claims it
    s.alloc(9, M, 0, fl(), pcp={})
    assert s.zone.drains == 1
    assert s.new_extfrag() == [(0, 9, 9, M, U, False, True)]
    assert s.types() == [M, M]


# -- (7) a zone that starts inside a pageblock -------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
def test_unaligned_zone_partial_pageblocks_are_never_claimed(impl: type) -> None:
    # [256, 2304): 256(o8) 512(o9) 1024(o10) 2048(o8); pageblocks 0..4, 0 and 4 partial
    s = Script(impl, 256, 2048, fl(m8=[256, 2048], m9=[512], m10=[1024]))
    assert s.types() == [M] * 5
    s.alloc(8, M, 256, fl(m8=[2048], m9=[512], m10=[1024]))
    # free 256(o8): buddy 0 outside; h = 0 < start_pfn, so HEAD although 512 is free at o9
    s.free(256, 8, fl(m8=[256, 2048], m9=[512], m10=[1024]))
    s.alloc(10, M, 1024, fl(m8=[256, 2048], m9=[512]))
    s.alloc(9, M, 512, fl(m8=[256, 2048]))
    # UNMOVABLE o0: claim c=8 head 256: pageblock 0 = [0, 512) is not inside the zone ->
    # refused (no other order has a block); steal c=8 head 256, remainder on the M lists
    lows = {"m1": [258], "m2": [260], "m3": [264], "m4": [272], "m5": [288], "m6": [320],
            "m7": [384]}  # fmt: skip
    s.alloc(0, U, 256, fl(m0=[257], m8=[2048], **lows))
    assert s.new_extfrag() == [(256, 0, 8, U, M, True, False)]
    # again: c=8 head 2048 (pageblock 4 = [2048, 2560) ends outside), c=7..0 heads in
    # pageblock 0: all refused; steal c=0: 257
    s.alloc(0, U, 257, fl(m8=[2048], **lows))
    assert s.new_extfrag() == [(257, 0, 0, U, M, True, False)]
    assert s.types() == [M] * 5
    # a whole pageblock inside the zone is claimed: free 512(o9) (buddy 0 outside), then
    # UNMOVABLE o0 claims it at c=9
    s.free(512, 9, fl(m8=[2048], m9=[512], **lows))
    s.alloc(0, U, 512, fl(u0=[513], u1=[514], u2=[516], u3=[520], u4=[528], u5=[544],
                          u6=[576], u7=[640], u8=[768], m8=[2048], **lows))  # fmt: skip
    assert s.new_extfrag() == [(512, 0, 9, U, M, False, True)]
    assert s.types() == [M, U, M, M, M]


# -- mixed random streams: the reference's own invariants --------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("pcp", [False, True])
@pytest.mark.parametrize(("start", "pages", "seed"), [(0, 2048, 1), (256, 2048, 2), (3, 3000, 3)])
def test_mixed_streams_keep_invariants(
    impl: type, pcp: bool, start: int, pages: int, seed: int
) -> None:
    """Mixed types, orders, cpus and partial frees: invariants after every step; after
    freeing everything and draining, the zone is back to its boot blocks."""
    rnd = random.Random(seed)
    zone = impl(start, pages, pcp=pcp, ncpus=2, batch=8, high=40)
    live: dict[int, tuple[int, int]] = {}
    orders = [0] * 8 + [1] * 3 + [2] * 2 + [3] * 2 + [4, 5, 6, 9, 10]
    for _ in range(600):
        if not live or rnd.random() < 0.6:
            order, mt = rnd.choice(orders), rnd.choice([U, M, M, R, -1])
            pfn = zone.alloc(order, mt, rnd.randrange(2))
            if pfn >= 0:
                assert pfn not in live
                live[pfn] = (order, mt)
        else:
            pfn = rnd.choice(sorted(live))
            k, mt = live.pop(pfn)
            j = rnd.randint(0, k) if rnd.random() < 0.3 else k
            pieces = list(range(pfn, pfn + (1 << k), 1 << j))
            rnd.shuffle(pieces)
            n_free = rnd.randint(1, len(pieces))
            for q in pieces[n_free:]:
                live[q] = (j, mt)
            for q in pieces[:n_free]:
                zone.free(q, j, mt, rnd.randrange(2))
        check_mobility_invariants(zone, live)
    for pfn, (k, mt) in sorted(live.items()):
        zone.free(pfn, k, mt)
    live.clear()
    zone.drain_all()
    check_mobility_invariants(zone, live)
    got = sorted((p, k) for (k, _), lst in zone.free_lists().items() for p in lst)
    assert got == boot_blocks(start, pages)
    for e in zone.extfrag:
        pfn, k, c, mt, f, fragmenting, _ = e
        assert k <= c and mt != f and fragmenting == (c < 9) and mt in (U, M, R)
