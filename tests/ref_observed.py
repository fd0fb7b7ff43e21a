"""Pure-Python reference of the observed rebuild's rules (docs/observed.md).

Written from the rules, not from replay/engine/observed.py: the buddy state
of one zone ``[lo, hi)`` is a dict of free blocks (first pfn -> order) plus a
dict of blocks on pcp lists (first pfn -> order) and of blocks a
zone_locked event handed to a caller; events apply in order. It is the
oracle ``observe`` is checked against on random event streams
(tests/test_observed_reference.py).

Kinds (the kernel's numbering): 0 alloc, 1 free, 2 zone_locked, 3 drain,
4 isolate_freepages (pfn = range start, order = nr_scanned, arg = range end,
arg2 = nr_taken),
5 failed, 6 fast_isolate_freepages (pfn = min_pfn, arg = free_pfn, arg2 =
pages taken), 7 remove_migration_pte (pfn = new pfn). An allocation's refill
flag: it may be a compaction capture (the task's first page event after its pass).
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALLOC, FREE, ZONE_LOCKED, DRAIN, ISOLATE, FAILED, FAST_ISOLATE, MIGRATE_NEW = range(8)
MAX_ORDER = 10
PCP_ORDERS = {0, 1, 2, 3, 9}
LOOKAHEAD = 1 << 18
SCAN = 1 << 20


@dataclass
class RefObserved:
    """One zone [lo, hi) rebuilt from events; counts by the kernel's names."""

    lo: int
    hi: int
    free: dict[int, int]  # first pfn -> order of each free buddy block
    pcp: dict[int, int] = field(default_factory=dict)  # first pfn -> order, on a pcp list
    taken: dict[int, int] = field(default_factory=dict)  # zone_locked for a caller
    incons: dict[str, int] = field(default_factory=dict)
    inferred: dict[str, int] = field(default_factory=dict)

    def _count(self, name: str, n: int = 1, what: str = "incons") -> None:
        d = self.incons if what == "incons" else self.inferred
        if n:
            d[name] = d.get(name, 0) + n

    def _holder(self, pfn: int) -> tuple[int, int] | None:
        """The free block holding page ``pfn``: (first pfn, order), or None."""
        for k in range(MAX_ORDER + 1):
            s = pfn & ~((1 << k) - 1)
            if s < self.lo:
                break
            if self.free.get(s) == k:
                return s, k
        return None

    def _take(self, pfn: int, k: int) -> bool:
        """Take [pfn, pfn + 2^k) out of the free blocks (splitting the one holding it);
        without one, drop whatever free blocks lie inside. True when one held it."""
        h = self._holder(pfn)
        if h is None or h[1] < k:
            for s in [s for s in self.free if pfn <= s < pfn + (1 << k)]:
                del self.free[s]
            return False
        s, c = h
        del self.free[s]
        while c > k:  # expand: keep the half without pfn
            c -= 1
            half = s + (1 << c)
            if pfn >= half:
                self.free[s] = c
                s = half
            else:
                self.free[half] = c
        return True

    def _give(self, pfn: int, k: int) -> bool:
        """Return [pfn, pfn + 2^k) to the free blocks, merging with free buddies in the
        zone. False (nothing changes) when it is free already; a partial overlap is
        dropped first (also False)."""
        h = self._holder(pfn)
        if h is not None and h[1] >= k:
            return False
        ok = True
        inside = [s for s in self.free if pfn <= s < pfn + (1 << k)]
        for s in inside:
            del self.free[s]
            ok = False
        while k < MAX_ORDER:
            b = pfn ^ (1 << k)
            if b < self.lo or b + (1 << k) > self.hi or self.free.get(b) != k:
                break
            del self.free[b]
            pfn &= b
            k += 1
        self.free[pfn] = k
        return ok

    def _scan(self, start: int, end: int, stride: int, nr_taken: int,
              apply: bool) -> tuple[int, int]:  # fmt: skip
        """isolate_freepages_block: every ``stride``-th pfn from ``start``; a free block's
        head there is taken whole and the scan goes on ``stride`` past its end. (pages
        taken, the tracepoint's nr_scanned: positions plus each block's other pages)."""
        taken = scanned = 0
        q = start
        while q < end and taken < nr_taken:
            if q in self.free:
                o = self.free[q]
                if apply:
                    del self.free[q]
                taken += 1 << o
                scanned += 1 << o
                q += (1 << o) - 1 + stride
            else:
                scanned += 1
                q += stride
        return taken, scanned

    def _fast_block(self, i: int, k: int, min_pfn: int, free_pfn: int,
                    events: list[tuple[int, ...]]) -> tuple[int, bool]:  # fmt: skip
        ruled: set[int] = set()  # candidates the kernel handed out as usual later
        for j in range(i + 1, min(len(events), i + 1 + LOOKAHEAD)):
            kind, q = events[j][0], events[j][1]
            if kind not in (ALLOC, FREE, ZONE_LOCKED, DRAIN, MIGRATE_NEW):
                continue
            if not self.lo <= q < self.hi:
                continue
            h = self._holder(q)
            if h is None or h[1] != k or h[0] < min_pfn or h[0] in ruled:
                continue
            if kind in (FREE, MIGRATE_NEW):
                return h[0], True
            ruled.add(h[0])
        blocks = sorted(s for s, o in self.free.items() if o == k and s not in ruled)
        top = min(free_pfn, self.hi)
        stop = max(min_pfn, self.lo, top - SCAN)
        below = [s for s in blocks if stop <= s and s + (1 << k) <= top]
        if below:
            return below[-1], False
        q = max(free_pfn, min_pfn, self.lo)
        q += (-q) % (1 << k)
        end = min(self.hi, q + SCAN)
        above = [s for s in blocks if s >= q and s + (1 << k) <= end]
        return (above[0], False) if above else (-1, False)

    def apply(self, events: list[tuple[int, ...]]) -> None:
        """(kind, pfn, order, refill, arg, arg2) events, in order."""
        for i, (kind, p, k, refill, arg, arg2) in enumerate(events):
            if kind == FAILED:
                continue
            if kind == FAST_ISOLATE:
                if not self.lo <= p < self.hi:
                    self._count("outside_zones")
                    continue
                fk = arg2.bit_length() - 1
                s, seen = self._fast_block(i, fk, p, arg, events)
                if s < 0:
                    self._count("fast_isolate_unmatched")
                else:
                    self._take(s, fk)
                    self._count("fast_isolate_seen" if seen else "fast_isolate_guessed", 1,
                                "inferred")  # fmt: skip
                continue
            if kind == MIGRATE_NEW:
                if self.lo <= p and p + (1 << k) <= self.hi and self._take(p, k):
                    self._count("migration_targets", 1 << k, "inferred")
                continue
            if kind == ISOLATE:
                if not self.lo <= p < self.hi:
                    self._count("outside_zones")
                    continue
                end = min(arg, self.hi)
                # the stride (1, 2, 4, .., 32) whose scan takes the recorded pages, then
                # counts the recorded nr_scanned (``k``); the smallest on a tie
                scans = [(self._scan(p, end, st, arg2, False), st) for st in (1, 2, 4, 8, 16, 32)]
                best = min(scans, key=lambda r: (abs(r[0][0] - arg2), abs(r[0][1] - k), r[1]))
                got, _ = self._scan(p, end, best[1], arg2, True)
                self._count("isolate_mismatch_pages", abs(got - arg2))
                continue
            if not self.lo <= p or p + (1 << k) > self.hi:
                self._count("outside_zones")
                continue
            if kind == ZONE_LOCKED:
                if not self._take(p, k):
                    self._count("zone_locked_not_free")
                self.pcp.pop(p, None)
                self.taken.pop(p, None)
                (self.pcp if refill else self.taken)[p] = k
            elif kind == ALLOC:
                if self.pcp.get(p) == k or self.taken.get(p) == k:
                    self.pcp.pop(p, None)
                    self.taken.pop(p, None)
                elif self._take(p, k):
                    # refill on an allocation: right after the task's own compaction
                    # pass, the block compaction_capture handed over (no zone_locked)
                    if refill:
                        self._count("compaction_captures", 1, "inferred")
                    else:
                        self._count("alloc_of_buddy_free")
                elif k in PCP_ORDERS:
                    self._count("alloc_not_seen_on_pcp")
            elif kind == FREE:
                if k in PCP_ORDERS:
                    if p in self.pcp:
                        self._count("free_of_pcp_page")
                    if self._take(p, k):
                        self._count("free_of_free")
                    self.taken.pop(p, None)
                    self.pcp[p] = k
                elif not self._give(p, k):
                    self._count("free_of_free")
            else:  # DRAIN
                if self.pcp.get(p) == k:
                    del self.pcp[p]
                else:
                    self._count("drain_not_seen_on_pcp")
                    self.pcp.pop(p, None)
                    self.taken.pop(p, None)
                if not self._give(p, k):
                    self._count("free_of_free")
