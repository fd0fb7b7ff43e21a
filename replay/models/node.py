"""``NodeState``: two model zones of a node and the zonelist between them, in Python.

The handle tests drive (and tests/ref_zonelist.py mirrors): the object API
(``alloc_obj``/``free_obj``) over a preferred zone (Normal) and the zone below it
(DMA32), through the same event path the engine runs for ``zone_choice = zonelist``
(replay.models.zonelist.apply_node_event).
"""

from __future__ import annotations

import numpy as np

from replay.models.internal import (
    C_ME,
    F_CAPTURE,
    F_KERNEL_FAILED,
    F_LOWER_ZONE,
    F_MOVABLE,
    F_NORECLAIM,
    F_NORETRY,
    F_RECLAIM,
    MIGRATE_MOVABLE,
    MIGRATE_RECLAIMABLE,
    NR_PAGE_ORDERS,
    P_NCPU,
    Objects,
)
from replay.models.zone import ZoneState, objects_for
from replay.models.zonelist import apply_node_event


class NodeState:
    """A node of two zones: ``preferred`` (Normal) and ``lower`` (DMA32, below it, with
    its ``lowmem_reserve``); their objects are one set (the preferred zone's)."""

    def __init__(self, preferred: ZoneState, lower: ZoneState) -> None:
        if lower.start_pfn + lower.pages > preferred.start_pfn:
            raise ValueError("the lower zone must lie below the preferred one")
        if int(lower.prm[P_NCPU]) != int(preferred.prm[P_NCPU]):
            raise ValueError("both zones need the same CPUs")
        self.preferred = preferred
        self.lower = lower
        lower.objects = preferred.objects

    @property
    def objects(self) -> Objects:
        return self.preferred.objects

    def zone_of(self, pfn: int) -> str:
        """``"preferred"`` or ``"lower"``: the zone holding ``pfn``."""
        lz = self.lower
        return "lower" if lz.start_pfn <= pfn < lz.start_pfn + lz.pages else "preferred"

    def _event(self, is_alloc: bool, obj: int, offset: int, order: int, mt: int, flags: int,
               cpu: int, ts_ns: int, seq: int) -> int:  # fmt: skip
        z, lz = self.preferred, self.lower
        if not 0 <= cpu < z.prm[P_NCPU]:
            raise ValueError(f"cpu {cpu} outside 0..{int(z.prm[P_NCPU]) - 1}")
        z.objects = objects_for(z.objects, obj)
        lz.objects = z.objects
        z.make_room(1 << NR_PAGE_ORDERS)
        lz.make_room(1 << NR_PAGE_ORDERS)
        pfn, _ = apply_node_event(
            is_alloc, obj, offset, order, mt, flags, -1, cpu, ts_ns, seq, z.arrays, z.prm,
            z.objects, z.cz, z.counters, z.ef, z.me, z.mode, z.vc, z.stats, z.pools, lz.arrays,
            lz.prm, lz.cz, lz.counters, lz.ef, lz.me, lz.mode,
        )  # fmt: skip
        z.flush_model_events()
        lz.counters[C_ME] = 0
        return int(pfn)

    def alloc_obj(self, obj: int, order: int, mt: int, cpu: int = 0, *, lower_only: bool = False,
                  direct_reclaim: bool = True, noretry: bool = False, captured: bool = False,
                  kernel_failed: bool = False, ts_ns: int = 0, seq: int = -1) -> int:  # fmt: skip
        """Allocate object ``obj`` (order, request migratetype) on ``cpu``; pfn or -1.

        ``lower_only``: a GFP_DMA32 request (its zonelist starts at the lower zone);
        ``direct_reclaim`` False: it cannot drain or compact; ``noretry``: __GFP_NORETRY;
        ``captured``: it takes a recorded direct compaction's captured block;
        ``kernel_failed``: the recorded kernel failed it (a block served goes back)."""
        flags = F_MOVABLE if mt == MIGRATE_MOVABLE else 0
        flags |= F_RECLAIM if mt in (MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE) else 0
        flags |= F_LOWER_ZONE if lower_only else 0
        flags |= 0 if direct_reclaim else F_NORECLAIM
        flags |= F_NORETRY if noretry else 0
        flags |= F_CAPTURE if captured else 0
        flags |= F_KERNEL_FAILED if kernel_failed else 0
        return self._event(True, obj, 0, order, mt, flags, cpu, ts_ns, seq)

    def free_obj(self, obj: int, offset: int = 0, order: int | None = None, cpu: int = 0,
                 ts_ns: int = 0, seq: int = -1) -> None:  # fmt: skip
        """Free ``order`` pages at ``offset`` of object ``obj`` (default: all of it)."""
        ob = self.preferred.objects
        k = int(ob.obj_order[obj]) if order is None else order
        self._event(False, obj, offset, k, int(ob.obj_mt[obj]), 0, cpu, ts_ns, seq)

    def placement(self, obj: int) -> int:
        """Object ``obj``'s pfn (-1: failed or freed by a give-back)."""
        return int(np.asarray(self.preferred.objects.placed)[obj])
