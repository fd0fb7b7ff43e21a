"""A pure-Python reference of the zonelist over two mobility zones (no compaction).

Written from mm/page_alloc.c of Linux 6.18: ``alloc_flags_nofragment`` (the
preferred zone is ZONE_NORMAL and DMA32 is populated: ALLOC_NOFRAGMENT),
``get_page_from_freelist`` (each zone of the zonelist in turn, skipped unless
``zone_watermark_fast`` passes at the low watermark plus the zone's lowmem reserve;
the whole walk again without ALLOC_NOFRAGMENT when it found nothing), and
``__alloc_pages_slowpath`` (the walk at the min watermark). Whether a zone's
``rmqueue`` would find a page is found out by trying it on a copy of the zone
(:class:`RefMobility` is the one-zone reference), not by reading its free lists.
When no zone passes, the zones serve whatever their watermarks (the reclaim a
trace's frees stand for), then once more after every pcp list is drained.
"""

from __future__ import annotations

import copy

from ref_mobility import RefMobility, request_type


class RefNode:
    """``preferred`` over ``lower`` in one node. ``wmarks``: (min, low) of each zone
    (pages); ``reserve``: the lower zone's lowmem_reserve for requests that could use
    the preferred zone (pages)."""

    def __init__(
        self, preferred: RefMobility, lower: RefMobility,
        wmarks: tuple[tuple[int, int], tuple[int, int]], reserve: int,
    ) -> None:  # fmt: skip
        self.zones = (preferred, lower)
        self.wmarks = wmarks
        self.reserve = reserve
        self.drains = 0

    def zone_of(self, pfn: int) -> int:
        """0: the preferred zone, 1: the lower zone."""
        low = self.zones[1]
        return 1 if low.start_pfn <= pfn < low.end_pfn else 0

    @staticmethod
    def _watermark_fast(zone: RefMobility, k: int, mark: int) -> bool:
        """``zone_watermark_fast``: order 0 above the mark, else ``__zone_watermark_ok``."""
        if k == 0 and zone.free_pages() > mark:
            return True
        return zone._watermark_ok(k, mark)

    @staticmethod
    def _would_serve(zone: RefMobility, k: int, mt: int, cpu: int, nofrag: bool) -> bool:
        """Whether ``rmqueue`` (ALLOC_NOFRAGMENT or not) finds a block: tried on a copy."""
        return copy.deepcopy(zone)._alloc_once(k, mt, cpu, nofrag) >= 0

    def choose(self, k: int, mt: int, cpu: int, lower_only: bool) -> int | None:
        """The zone that serves the request (0 or 1), None when none passes its min mark."""
        (n_min, n_low), (l_min, l_low) = self.wmarks
        pref, low = self.zones
        if lower_only:  # GFP_DMA32: its own zonelist, no ALLOC_NOFRAGMENT, no reserve
            for mark in (l_low, l_min):
                if self._watermark_fast(low, k, mark) and self._would_serve(low, k, mt, cpu,
                                                                           False):  # fmt: skip
                    return 1
            return None
        walks = [(n_low, l_low + self.reserve, nofrag)
                 for nofrag in ((True, False) if pref.nofragment else (False,))]  # fmt: skip
        walks.append((n_min, l_min + self.reserve, False))  # the slow path's
        for n_mark, l_mark, nofrag in walks:
            if self._watermark_fast(pref, k, n_mark) and self._would_serve(pref, k, mt, cpu,
                                                                           nofrag):  # fmt: skip
                return 0
            if self._watermark_fast(low, k, l_mark) and self._would_serve(low, k, mt, cpu,
                                                                          nofrag):  # fmt: skip
                return 1
        return None

    @staticmethod
    def _take(zone: RefMobility, k: int, mt: int, cpu: int) -> int:
        """``get_page_from_freelist`` in one zone, no drain: the pfn or -1."""
        if zone.tuning and not zone.below_high and not zone._watermark_ok(k, zone.wmark_high):
            zone.below_high = True
        pfn = zone._get_page_from_freelist(k, mt, cpu)
        if pfn >= 0:
            zone._mark_allocated(pfn, k, mt)
        return pfn

    def alloc(self, order: int, mt: int, cpu: int = 0, lower_only: bool = False) -> int:
        """Allocate a block of ``order`` for a request of type ``mt``: its pfn or -1."""
        mt = request_type(mt)
        zi = self.choose(order, mt, cpu, lower_only)
        if zi is not None:
            pfn = self._take(self.zones[zi], order, mt, cpu)
            if pfn >= 0:
                return pfn
        order_of_zones = (self.zones[1],) if lower_only else self.zones
        for attempt in range(2):
            for zone in order_of_zones:
                pfn = self._take(zone, order, mt, cpu)
                if pfn >= 0:
                    return pfn
            if attempt == 0 and sum(z.pcp_pages() for z in self.zones) > 0:
                self.drains += 1
                for zone in self.zones:
                    zone.drain_all()
            else:
                break
        return -1

    def free(self, pfn: int, order: int, mt: int, cpu: int = 0) -> None:
        """Free the block (pfn, order) in the zone holding it."""
        self.zones[self.zone_of(pfn)].free(pfn, order, mt, cpu)
