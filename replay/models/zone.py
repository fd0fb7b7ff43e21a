"""``ZoneState``: one model zone in Python, the handle tests and the engine drive.

It owns the zone's arrays (replay.models.internal.Zone), the objects, the
models' state and buffers, and offers the allocator API (``alloc``/``free``,
shared with tests/ref_mobility.py) and the object API (``alloc_obj``/
``free_obj``/``tick``/``compact_memory``, shared with tests/ref_compaction.py),
which go through the same event path the engine runs
(replay.models.events.apply_event).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from replay.cow import SHARED, SharedArray
from replay.models.buddy import adopt_unclaimed, init_zone, load_state
from replay.models.compaction import compact_memory, compact_recorded, proactive_tick
from replay.models.defrag import alloc_contig, defrag_due, defrag_pass, exchange_pages
from replay.models.events import apply_event
from replay.models.internal import (
    C_DRAINS,
    C_EF,
    C_ME,
    C_SPLIT,
    COMPACT_PROACTIVE,
    CZ_DECAY_OFF,
    CZ_DECAY_UNSET,
    CZ_PCP_DECAY,
    CZ_VC_USED,
    EF_COLS,
    EF_MAX_PER_ALLOC,
    F_CAPTURE,
    F_MOVABLE,
    F_NORECLAIM,
    F_RECLAIM,
    F_VCOMPOUND,
    KINDS,
    ME_COLS,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    MIGRATE_RECLAIMABLE,
    MIGRATE_UNMOVABLE,
    MODES,
    NR_COUNTERS,
    NR_PAGE_ORDERS,
    NR_PCP_LISTS,
    NR_PRM,
    NR_STATS,
    P_COMPACT,
    P_DEFRAG_IDLE,
    P_HIGH,
    P_HIGH_MAX,
    P_KSWAPD,
    P_NCPU,
    P_PCP,
    P_PCP_DECAY_NS,
    P_PCP_TUNE,
    PAGEBLOCK_ORDER,
    PCP_FLAGS,
    PCP_HELD,
    PCP_HIGH,
    PCPF_FREE_HIGH_BATCH,
    PLACED_FAILED,
    PLACED_SPLIT_BASE,
    RESULTS,
    Objects,
    Zone,
    new_cz,
    new_objects,
    new_zone,
    objects_over,
)
from replay.models.page_alloc import alloc_pages, free_pages
from replay.models.pcp import (
    decay_pcp_high,
    drain_all,
    pageblock_snapshot,
    pcp_bulk_recorded,
    pcp_load,
    pcp_refill_recorded,
)
from replay.models.pools import new_pools
from replay.models.reclaim import lru_add_all
from replay.models.reclaim import lru_add_range as lru_add_id_range

# -- Python handle -------------------------------------------------------------------------
# the per-page arrays a zone image shares copy-on-write (the others are small: copied)
_PAGE_ARRAYS = frozenset({"buddy_order", "list_next", "list_prev", "pg_obj"})


class ZoneImage:
    """A started zone kept once, for many zones to start from (the models an explanation
    forks from one state): the arrays and the first ``objects`` objects (placements,
    types, orders, flags) of the zone of ``start_pfn``, ``pages`` and ``ncpus`` that
    ``start`` leaves, given a :class:`ZoneState` of no settings of its own to load
    (:meth:`ZoneState.load`) and adopt objects into (:meth:`ZoneState.adopt`). Neither
    depends on a zone's settings, so a zone of any model made from the image
    (``ZoneState(..., image=...)``) starts as if it had loaded and adopted the same
    itself; its settings, LRU (kswapd's: the objects join it as each zone's
    :meth:`ZoneState.lru_add` says) and buffers are its own.

    The per-page arrays and the objects' arrays are :class:`replay.cow.SharedArray`,
    written in place while ``start`` runs (no copy of them is made), which each zone
    then maps copy-on-write: a fork of 1,000 events writes a few thousand of the 4 KiB
    pages, and copies only those. The small arrays are copied. ``shared`` False: plain
    copies (:data:`replay.cow.SHARED`: where there is no memfd).
    """

    def __init__(self, start_pfn: int, pages: int, ncpus: int, objects: int,
                 start: Callable[[ZoneState], None], *, shared: bool = SHARED) -> None:  # fmt: skip
        self.start_pfn, self.pages, self.ncpus = int(start_pfn), int(pages), int(ncpus)
        self.objects = max(int(objects), 2)  # as new_objects counts them
        blank = new_zone(self.start_pfn, self.pages, self.ncpus)  # (its per-page arrays unused)
        self._page = {f: SharedArray(self.pages, getattr(blank, f).dtype,
                                     -1 if f == "pg_obj" else 0, shared=shared)
                      for f in _PAGE_ARRAYS}  # fmt: skip
        self._small = {f: getattr(blank, f) for f in Zone._fields if f not in _PAGE_ARRAYS}
        del blank
        self._placed = SharedArray(self.objects, np.int64, -1, shared=shared)
        self._info = SharedArray(self.objects * 4, np.int8, shared=shared)
        # while building, the zone's arrays are the shared ones themselves
        self._building = True
        zone = ZoneState(self.start_pfn, self.pages, ncpus=self.ncpus, max_objects=self.objects,
                         split_room=0, image=self)  # fmt: skip
        start(zone)
        self._building = False
        self._small = {f: np.array(getattr(zone.arrays, f), copy=True) for f in self._small}

    def zone_arrays(self) -> Zone:
        """The zone's arrays, a zone's own (the per-page ones copy-on-write); while the
        image is built, the shared ones themselves."""
        if self._building:
            return Zone(**{f: self._page[f].shared_view() if f in self._page
                           else self._small[f] for f in Zone._fields})  # fmt: skip
        return Zone(**{f: self._page[f].private() if f in self._page else self._small[f].copy()
                       for f in Zone._fields})  # fmt: skip

    def new_objects(self, n: int, lru: bool = True, split_room: int = 0) -> Objects:
        """:func:`replay.models.internal.new_objects` (``n`` objects, then
        ``split_room``) holding the image's objects; ``n`` must be the image's."""
        first = max(n, 2)
        if first != self.objects:
            raise ValueError(f"the zone image holds {self.objects} objects, not {first}")
        total = first + max(split_room, 0)
        if self._building:
            placed, info = self._placed.shared_view(), self._info.shared_view()
        else:
            placed, info = self._placed.private(total), self._info.private(total * 4)
        return objects_over(placed, info.reshape(total, 4), first, lru)


def objects_for(objects: Objects, obj: int) -> Objects:
    """``objects``, or a copy grown to hold object ``obj`` (at least twice as many): the
    per-object arrays, not the LRU's head and tail. The split room (the ids of split
    folios' pieces) stays after every object: an ``obj`` in it moves it up while it is
    unused; once pieces hold ids there, such an ``obj`` is an error."""
    n = objects.placed.shape[0]
    nxt, end, room = (int(v) for v in objects.split)
    if obj < room:
        return objects
    if nxt != room:
        raise ValueError(
            f"object id {obj} falls in the split room ({room}..{end}), which holds pieces"
        )
    size = end - room
    lru = objects.lru_next.shape[0] == n
    first = max(obj + 1, 2 * room)
    grown = new_objects(first, lru=lru, split_room=size)
    for a, b in zip(objects[:6], grown[:6], strict=True):
        b[:room] = a[:room]
    return Objects(*grown[:6], *objects[6:8], grown.split)


class ZoneState:
    """The arrays of one zone under ``mobility`` (optionally with ``pcp``).

    ``arrays`` is the tuple the kernels take: blk_order, nxt, prv, head, tail,
    nr_free, nr_free_mt, pb_mt, pb_free, pb_alloc, pcp_head, pcp_tail,
    pcp_count, pg_obj, iso_head, iso_tail. ``high`` and ``batch`` are in
    pages (``high`` is high_min; ``high_max``, ``pcp_tuning``, ``free_high_batch``,
    ``pcp_decay_ns`` and ``free_high_min`` (6.15+) are the 6.7+ auto-tuning's,
    replay.models.pcp). The
    defragmentation models' settings (docs/compaction.md,
    replay.models.reclaim) are keyword arguments: ``compaction`` off, direct,
    proactive or both; ``wmark`` (min, low, high) pages; ``kswapd`` off, lru
    or targeted; ``vcompound_order`` (0 off); ``pressure`` (reclaim, oom)
    free-page thresholds; ``defrag_idle_ns`` and ``defrag_thresholds`` {order:
    free blocks wanted} (active defragmentation, replay.models.defrag);
    ``pool_order`` and ``pool_owners`` (per-owner pools, replay.models.pools).
    ``objects`` holds ``max_objects`` objects for the object API
    (``alloc_obj``/``free_obj``) that tests drive. ``lowmem_reserve`` (pages): a
    lower zone's reserve against requests that could use the zone above it
    (replay.models.zonelist). ``pcp_recorded``: the pcp lists give pages back only
    through :meth:`pcp_bulk` (the recorded kernel's bulk frees), never at their own
    ``pcp->high``. ``split_room``: object ids kept after the others for the order-0
    pieces of the folios compaction splits (none left: a folio without a target
    stays whole). ``image``: a :class:`ZoneImage` of this zone to start from (its arrays
    and objects, copy-on-write) instead of a booted zone: loaded and adopted already.
    """

    def __init__(
        self,
        start_pfn: int,
        pages: int,
        *,
        pcp: bool = False,
        ncpus: int = 1,
        batch: int = 63,
        high: int = 252,
        grouping: bool = True,
        nofragment: bool = True,
        compaction: str = "off",
        extfrag_threshold: int = 500,
        proactiveness: int = 20,
        wmark: tuple[int, int, int] = (0, 0, 0),
        kswapd: str = "off",
        vcompound_order: int = 0,
        pressure: tuple[int, int] = (0, 0),
        defrag_idle_ns: int = 0,
        defrag_thresholds: dict[int, int] | None = None,
        pool_order: int = 0,
        pool_owners: int = 1,
        max_objects: int = 1 << 12,
        high_max: int | None = None,
        pcp_tuning: bool = False,
        free_high_batch: bool = False,
        pcp_decay_ns: int = 0,
        free_high_min: bool = False,
        lowmem_reserve: int = 0,
        pcp_recorded: bool = False,
        split_room: int = 1 << 12,
        image: ZoneImage | None = None,
    ) -> None:
        if pages <= 0 or start_pfn < 0:
            raise ValueError("a zone needs pages > 0 and start_pfn >= 0")
        if ncpus < 1 or batch < 1 or high < 1:
            raise ValueError("pcp needs ncpus, batch and high >= 1")
        high_max = high if high_max is None else high_max
        if high_max < high:
            raise ValueError("pcp high_max must be at least high (high_min)")
        self.start_pfn = int(start_pfn)
        self.pages = int(pages)
        pb0 = self.start_pfn >> PAGEBLOCK_ORDER
        npb = ((self.start_pfn + self.pages - 1) >> PAGEBLOCK_ORDER) - pb0 + 1
        self.npb = npb
        if image is not None and (image.start_pfn, image.pages, image.ncpus) != (
            self.start_pfn, self.pages, ncpus,
        ):  # fmt: skip
            raise ValueError("a zone image is of another zone (start_pfn, pages, ncpus)")
        self.arrays = (new_zone(self.start_pfn, self.pages, ncpus) if image is None
                       else image.zone_arrays())  # fmt: skip
        self.prm = np.array(
            [
                self.start_pfn,
                self.pages,
                pb0,
                int(pcp),
                batch,
                high,
                ncpus,
                int(grouping),
                int(nofragment),
                {"off": 0, "direct": 1, "proactive": 2, "both": 3}[compaction],
                extfrag_threshold,
                proactiveness,
                *wmark,
                {"off": 0, "lru": 1, "targeted": 2}[kswapd],
                vcompound_order,
                *pressure,
                defrag_idle_ns,
                *[(defrag_thresholds or {}).get(k, 0) for k in range(NR_PAGE_ORDERS)],
                pool_order,
                1,  # P_UNITS: the object API and the models rely on pg_obj
                high_max,
                int(pcp_tuning),
                int(free_high_batch),
                pcp_decay_ns if pcp_tuning else 0,
                int(free_high_min),
                lowmem_reserve,
                int(pcp_recorded),
                0,  # P_REFILL_RECORDED: the run sets it (replay.engine.whatif)
                0,  # P_KSWAPD_RECORDED: likewise
            ],
            dtype=np.int64,
        )
        assert self.prm.shape[0] == NR_PRM
        self.pools = new_pools(self.start_pfn, self.pages, pool_order, pool_owners)
        self.cz = new_cz(self.start_pfn, self.pages)
        # decay_pcp_high's clock: the first event sets it; never without decaying tuning
        decays = pcp and pcp_tuning and pcp_decay_ns > 0
        self.cz[CZ_PCP_DECAY] = CZ_DECAY_UNSET if decays else CZ_DECAY_OFF
        self.me = np.zeros((256, len(ME_COLS)), np.int64)
        self.objects = (new_objects if image is None else image.new_objects)(
            max_objects, lru=kswapd != "off", split_room=split_room
        )
        self.vc = np.zeros(1 << 12, np.int64)
        self.stats = np.zeros(NR_STATS, np.int64)
        self._me_rows: list[tuple[int, ...]] = []
        self.counters = np.zeros(NR_COUNTERS, np.int64)
        self.mode = np.zeros(1, np.int64)
        self.ef = np.zeros((4096, len(EF_COLS)), np.int64)
        if image is None:
            init_zone(self.arrays, self.prm)
        # setup_pageset: pcp->high starts at high_min; PCPF_FREE_HIGH_BATCH per cpu
        self.arrays.pcp_state[:, PCP_HIGH] = high
        self.arrays.pcp_state[:, PCP_FLAGS] = PCPF_FREE_HIGH_BATCH if free_high_batch else 0

    # the API shared with tests/ref_mobility.py -------------------------------------
    @property
    def nr_free(self) -> np.ndarray:
        return self.arrays.nr_free

    @property
    def extfrag(self) -> list[tuple[int, int, int, int, int, bool, bool]]:
        n = min(int(self.counters[C_EF]), self.ef.shape[0])
        return [
            (int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]), bool(r[6]), bool(r[7]))
            for r in self.ef[:n]
        ]

    @property
    def drains(self) -> int:
        return int(self.counters[C_DRAINS])

    def alloc(self, order: int, mt: int, cpu: int = 0) -> int:
        """Allocate a block of ``order`` for a request of migratetype ``mt``; pfn or -1."""
        if int(self.counters[C_EF]) + EF_MAX_PER_ALLOC > self.ef.shape[0]:
            self.ef = np.concatenate([self.ef, np.zeros_like(self.ef)])
        return int(alloc_pages(order, mt, cpu, self.arrays, self.prm, self.counters, self.ef,
                               -1, self.mode))  # fmt: skip

    def free(self, pfn: int, order: int, mt: int, cpu: int = 0) -> None:
        """Free the block (pfn, order) that a request of migratetype ``mt`` allocated."""
        free_pages(pfn, order, mt, cpu, self.arrays, self.prm, self.counters)

    def decay(self) -> None:
        """One ``decay_pcp_high`` period on every cpu now (vmstat_update)."""
        saved = int(self.prm[P_PCP_DECAY_NS])
        self.prm[P_PCP_DECAY_NS] = max(saved, 1)
        clock = int(self.cz[CZ_PCP_DECAY])
        self.cz[CZ_PCP_DECAY] = 1
        decay_pcp_high(np.int64(1), self.arrays, self.prm, self.cz, self.counters)
        self.prm[P_PCP_DECAY_NS] = saved
        self.cz[CZ_PCP_DECAY] = clock

    def drain_all(self) -> None:
        drain_all(self.arrays, self.prm, self.counters)

    def pcp_refill(self, blocks: int, k: int, mt: int, cpu: int, seq: int) -> None:
        """A refill the recorded kernel made: ``blocks`` blocks of order ``k`` from the
        buddy onto ``cpu``'s list of (k, mt) (replay.models.pcp.pcp_refill_recorded)."""
        pcp_refill_recorded(np.int64(blocks), np.int64(k), np.int64(mt), np.int64(cpu),
                            self.arrays, self.prm, self.counters, self.ef, np.int64(seq),
                            self.mode)  # fmt: skip

    def pcp_bulk(self, pages: int, cpu: int, pindex: int) -> None:
        """A bulk free the recorded kernel made: ``pages`` pages of ``cpu``'s pcp lists
        back to the buddy, list ``pindex`` first (replay.models.pcp.pcp_bulk_recorded)."""
        pcp_bulk_recorded(np.int64(pages), np.int64(cpu), np.int64(pindex), self.arrays,
                          self.prm, self.counters)  # fmt: skip

    # the object API (docs/compaction.md), shared with tests/ref_compaction.py ----------
    def make_room(self, pages: int) -> None:
        """Room in the buffers for one event's output and ``pages`` more virtual compound
        pages (the model events so far go to :meth:`model_events`)."""
        if int(self.counters[C_EF]) + EF_MAX_PER_ALLOC > self.ef.shape[0]:
            self.ef = np.concatenate([self.ef, np.zeros_like(self.ef)])
        self.flush_model_events()
        while int(self.cz[CZ_VC_USED]) + pages + 1024 > self.vc.shape[0]:
            self.vc = np.concatenate([self.vc, np.zeros_like(self.vc)])

    def flush_model_events(self) -> None:
        """Move the buffered model events to :meth:`model_events`' list."""
        n = int(self.counters[C_ME])
        self._me_rows.extend(tuple(int(v) for v in row) for row in self.me[:n])
        self.counters[C_ME] = 0

    def _event(self, is_alloc: bool, obj: int, offset: int, order: int, mt: int, flags: int,
               cpu: int, ts_ns: int, seq: int, owner: int = -1) -> int:  # fmt: skip

        if not 0 <= cpu < self.prm[P_NCPU]:
            raise ValueError(f"cpu {cpu} outside 0..{int(self.prm[P_NCPU]) - 1}")

        self.objects = objects_for(self.objects, obj)
        self.make_room(1 << NR_PAGE_ORDERS)
        if self.prm[P_DEFRAG_IDLE] > 0 and defrag_due(ts_ns, self.arrays, self.prm, self.cz):
            self.active_defrag(seq)
        pfn, _ = apply_event(is_alloc, obj, offset, order, mt, flags, owner, cpu, ts_ns, seq,
                             self.arrays, self.prm, self.objects, self.cz, self.counters, self.ef,
                             self.me, self.mode, self.vc, self.stats, self.pools)  # fmt: skip
        self.flush_model_events()
        return int(pfn)

    def active_defrag(self, seq: int = -1) -> tuple[int, int, int, int]:
        """One active defragmentation pass now: (order, blocks freed, pages migrated, tried)."""

        self.make_room(0)
        r = defrag_pass(seq, self.arrays, self.prm, self.objects, self.cz, self.counters,
                          self._pass_ef(), self.mode, self.me)  # fmt: skip
        self.flush_model_events()
        return tuple(int(v) for v in r)  # type: ignore[return-value]

    def exchange(self, objs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Exchange pages: put each object at its target pfn, in order; the EX_* per object."""

        res = np.zeros(objs.shape[0], np.int8)
        exchange_pages(objs.astype(np.int64), targets.astype(np.int64), self.arrays, self.prm,
                         self.objects, self.counters, res)  # fmt: skip
        return res

    def alloc_contig(self, nr_pages: int, pfn: int = -1, best: bool = False,
                     seq: int = -1) -> tuple[int, int, int]:  # fmt: skip
        """``alloc_contig_pages``: (first pfn or -1, pages migrated, ranges tried)."""

        r = alloc_contig(nr_pages, pfn, best, seq, self.arrays, self.prm, self.objects,
                           self.counters, self._pass_ef(), self.mode)  # fmt: skip
        return tuple(int(v) for v in r)  # type: ignore[return-value]

    def _pass_ef(self) -> np.ndarray:
        """The extfrag buffer, with room for a pass between events (its targets' rows)."""
        need = int(self.counters[C_EF]) + 4 * self.pages + 1024
        if need > self.ef.shape[0]:
            self.ef = np.concatenate([self.ef, np.zeros((need - self.ef.shape[0],
                                                         len(EF_COLS)), np.int64)])  # fmt: skip
        return self.ef

    def alloc_obj(self, obj: int, order: int, mt: int, movable: bool | None = None,
                  cpu: int = 0, ts_ns: int = 0, seq: int = -1, reclaimable: bool | None = None,
                  vcompound: bool = False, owner: int = -1,
                  direct_reclaim: bool = True, captured: bool = False) -> int:  # fmt: skip
        """Allocate object ``obj`` (order, request migratetype); pfn or -1.

        ``movable`` None: movable when mt is MOVABLE; ``reclaimable`` None:
        when mt is RECLAIMABLE or MOVABLE (kswapd victims). ``direct_reclaim``
        False: a GFP_ATOMIC-like request, whose failure neither drains the pcp
        lists nor compacts. ``captured``: the allocation a recorded direct
        compaction ran for (F_CAPTURE): it takes the block the pass captured.
        """

        mov = (mt == MIGRATE_MOVABLE) if movable is None else movable
        rec = mt in (MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE) if reclaimable is None else reclaimable
        flags = (F_MOVABLE if mov else 0) | (F_RECLAIM if rec else 0)
        flags |= F_VCOMPOUND if vcompound else 0
        flags |= 0 if direct_reclaim else F_NORECLAIM
        flags |= F_CAPTURE if captured else 0
        return self._event(True, obj, 0, order, mt, flags, cpu, ts_ns, seq, owner)

    def free_obj(self, obj: int, offset: int = 0, order: int | None = None, cpu: int = 0,
                 ts_ns: int = 0, seq: int = -1) -> None:  # fmt: skip
        """Free ``order`` pages at ``offset`` of object ``obj`` (default: all of it)."""
        k = int(self.objects.obj_order[obj]) if order is None else order
        self._event(False, obj, offset, k, int(self.objects.obj_mt[obj]), 0, cpu, ts_ns, seq)

    def tick(self, ts_ns: int) -> None:
        """Run the proactive compaction checks due by trace time ``ts_ns``."""

        if int(self.prm[P_COMPACT]) & COMPACT_PROACTIVE:
            self.make_room(0)
            proactive_tick(ts_ns, -1, self.arrays, self.prm, self.objects, self.cz,
                             self.counters, self.me)  # fmt: skip
            self.flush_model_events()

    def compact_memory(self, seq: int = -1) -> str:
        """One-shot whole-zone compaction; the result name."""

        self.make_room(0)
        r = compact_memory(seq, self.arrays, self.prm, self.objects, self.cz, self.counters,
                             self.me)  # fmt: skip
        self.flush_model_events()
        return RESULTS[int(r)]

    def compact_recorded(self, order: int, mode: str, budget: int = -1,
                         scan: tuple[int, int, int, int] = (-1, -1, -1, -1),
                         seq: int = -1, cpu: int = 0) -> str:  # fmt: skip
        """The model's compaction where a recorded kernel compacted: for ``order`` (-1:
        the whole zone) in ``mode`` (async or sync), moving at most ``budget`` pages
        (-1: no bound), the scanners from and to the recorded pfns ``scan`` (migrate
        and free scanner at the begin, at the end; -1 unknown), on ``cpu`` (whose pcp
        lists get the migrated pages); the result name."""
        self.make_room(0)
        r = compact_recorded(order, MODES.index(mode), budget,
                             np.array([*scan, -1, -1], np.int64), cpu,
                             seq, self.arrays, self.prm, self.objects, self.cz, self.counters,
                             self.me)  # fmt: skip
        self.flush_model_events()
        return RESULTS[int(r)]

    def placement(self, obj: int) -> int:
        """The object's pfn, or -1 (failed, evicted, freed, a virtual compound or split)."""
        pfn = int(self.objects.placed[obj])
        return pfn if pfn >= 0 else -1

    def pieces(self, obj: int) -> list[int] | None:
        """The pfn of each page of a folio compaction split (-1: freed or evicted since),
        in page order; None when ``obj`` is not split."""
        base = int(self.objects.placed[obj])
        if base > PLACED_SPLIT_BASE:
            return None
        first = PLACED_SPLIT_BASE - base
        n = 1 << int(self.objects.obj_order[obj])
        return [max(int(p), -1) for p in self.objects.placed[first : first + n]]

    @property
    def splits(self) -> int:
        """Folios compaction split so far (``try_split_folio``)."""
        return int(self.counters[C_SPLIT])

    @property
    def model_events(self) -> list[tuple[object, ...]]:
        """(kind, seq, order, mode, start_pfn, end_pfn, migrate_pfn, free_pfn,
        scanned_migrate, scanned_free, moved, failed, result) per model event."""

        out: list[tuple[object, ...]] = []
        for r in self._me_rows:
            out.append((KINDS[r[1]], r[0], r[2], MODES[r[3]] if r[3] in (0, 1) else r[3],
                        *r[4:12], RESULTS[r[13]]))  # fmt: skip
        return out

    def load(self, blk: np.ndarray, page_mt: np.ndarray, pb_mt: np.ndarray | None = None,
             heads: np.ndarray | None = None) -> None:  # fmt: skip
        """Start from a given state (offsets from start_pfn; see :func:`load_state`).
        ``heads``: the free blocks' offsets in the order their lists hold them
        (default ascending).

        Pageblock types: ``pb_mt`` when given, else UNMOVABLE where unmovable
        pages outnumber movable ones, else MOVABLE; an order-10 free block
        takes its first pageblock's type for both.
        """
        if pb_mt is None:
            pb0 = self.start_pfn >> PAGEBLOCK_ORDER
            idx = (
                (np.arange(self.pages, dtype=np.int64) + self.start_pfn) >> PAGEBLOCK_ORDER
            ) - pb0
            unmov = np.bincount(idx, weights=(page_mt == MIGRATE_UNMOVABLE), minlength=self.npb)
            mov = np.bincount(idx, weights=(page_mt == MIGRATE_MOVABLE), minlength=self.npb)
            pb_mt = np.where(unmov > mov, MIGRATE_UNMOVABLE, MIGRATE_MOVABLE).astype(np.int8)
        else:
            pb_mt = pb_mt.astype(np.int8, copy=True)
        pb0 = self.start_pfn >> PAGEBLOCK_ORDER
        for o in np.flatnonzero(blk > PAGEBLOCK_ORDER):
            first = ((int(o) + self.start_pfn) >> PAGEBLOCK_ORDER) - pb0
            pb_mt[first + 1 : first + (1 << (int(blk[o]) - PAGEBLOCK_ORDER))] = pb_mt[first]
        self.arrays.pageblock_mt[:] = pb_mt
        if heads is None:
            heads = np.flatnonzero(blk >= 0)
        load_state(self.arrays, self.prm, blk.astype(np.int8), page_mt.astype(np.int8),
                   np.asarray(heads, np.int64))  # fmt: skip

    def load_pcp(self, offsets: np.ndarray, orders: np.ndarray,
                 cpus: list[tuple[int, int]] | None = None,
                 block_cpus: np.ndarray | None = None) -> None:  # fmt: skip
        """Blocks (offsets from start_pfn, orders) a loaded state had on pcp lists:
        onto the pcp lists (:func:`replay.models.pcp.pcp_load`), or the buddy without pcp.

        ``block_cpus``: each block's cpu when known (-1 not). ``cpus``: each cpu's
        (count, high) from a pagesets snapshot (pages): the other blocks fill
        each cpu's lists up to its count, what is left of the count is held
        (PCP_HELD: pages the trace never names, which stay on the lists), and
        with pcp tuning each cpu's ``pcp->high`` starts at the snapshot's
        (within high_min..high_max).
        """
        n = offsets.shape[0]
        bc = (np.full(n, -1, np.int64) if block_cpus is None
              else block_cpus.astype(np.int64))  # fmt: skip
        quota = np.array([c[0] for c in cpus or []], np.int64)
        for c in range(quota.shape[0]):  # what the known blocks already hold
            quota[c] -= int((np.int64(1) << orders[bc == c].astype(np.int64)).sum())
        pcp_load(offsets.astype(np.int64), orders.astype(np.int64), bc, quota, self.arrays,
                 self.prm, self.counters)  # fmt: skip
        if self.prm[P_PCP] != 0:
            # what the snapshot counted beyond the pages the trace names: PCP_HELD
            for cpu in range(min(quota.shape[0], int(self.prm[P_NCPU]))):
                held = max(int(quota[cpu]), 0)
                self.arrays.pcp_state[cpu, PCP_HELD] = held
                self.arrays.pcp_count[cpu] += held
        if cpus and self.prm[P_PCP_TUNE] != 0:
            for cpu, (_count, high) in enumerate(cpus[: int(self.prm[P_NCPU])]):
                self.arrays.pcp_state[cpu, PCP_HIGH] = min(
                    max(int(high), int(self.prm[P_HIGH])), int(self.prm[P_HIGH_MAX])
                )

    def adopt(self, ids: np.ndarray | int, offsets: np.ndarray, orders: np.ndarray | int,
              mts: np.ndarray, flags: np.ndarray) -> None:  # fmt: skip
        """Make the allocated units at ``offsets`` (from start_pfn) objects ``ids``.

        For a state given by :meth:`load`: each unit (order, request type,
        F_* flags) starts at its offset (``pg_obj``); with kswapd on, the
        reclaimable ones join the LRU in ``ids`` order. ``ids`` an int: the
        consecutive ids from it (a fork's background objects, millions: written
        by slices, not scatters).
        """
        placed, obj_mt, obj_order, obj_flags = self.objects[:4]
        n = offsets.shape[0]
        at: slice | np.ndarray
        if isinstance(ids, (int, np.integer)):
            # no temporaries of millions of rows beyond the ids' int32 (each a fresh
            # mapping the kernel faults in and zeroes)
            first = int(ids)
            at = slice(first, first + n)
            np.add(offsets, self.start_pfn, out=placed[at])
            self.arrays.pg_obj[offsets] = np.arange(first, first + n, dtype=np.int32)
        else:
            at = ids
            placed[at] = offsets + self.start_pfn
            self.arrays.pg_obj[offsets] = ids.astype(np.int32)
        obj_mt[at] = mts
        obj_order[at] = orders
        obj_flags[at] = flags
        if isinstance(at, slice):
            self.lru_add_range(at.start, n)
        else:
            self.lru_add(at)

    def adopt_unclaimed(self, first: int, claimed: np.ndarray, page_mt: np.ndarray,
                        flags_of: np.ndarray) -> int:  # fmt: skip
        """:meth:`adopt` of every page ``claimed`` (bool per page) does not mark as an
        order-0 object of the type ``page_mt`` (int8 per page) gives it, ids from ``first``
        in page order, its F_* flags ``flags_of`` (int8 by the type's byte: -1 is 255);
        with kswapd on, the reclaimable ones join the LRU in id order. One pass over the
        pages (a fork's millions of background pages: no arrays of their ids or offsets).
        Returns how many."""
        placed, obj_mt, obj_order, obj_flags = self.objects[:4]
        n = int(adopt_unclaimed(np.int64(first), claimed, page_mt, flags_of,
                                np.int64(self.start_pfn), placed, obj_mt, obj_order, obj_flags,
                                self.arrays.pg_obj))  # fmt: skip
        self.lru_add_range(first, n)
        return n

    def adopt_split(self, x: int, order: int, mt: int, flags: int, offsets: np.ndarray) -> None:
        """Make object ``x`` a folio compaction split (a fork of a model state that had
        split it): its ``1 << order`` pages are pieces from the split room, each an
        order-0 unit at its offset (from start_pfn; -1: that piece is gone), of the
        folio's type and flags (replay.models.compaction ``split_folio``)."""
        placed, obj_mt, obj_order, obj_flags = self.objects[:4]
        n = 1 << order
        first = int(self.objects.split[0])
        if first + n > int(self.objects.split[1]):
            raise ValueError(f"no room for the {n} pieces of split object {x}")
        self.objects.split[0] = first + n
        ids = np.arange(first, first + n, dtype=np.int64)
        live = offsets >= 0
        placed[ids] = np.where(live, offsets + self.start_pfn, PLACED_FAILED)
        obj_mt[ids] = mt
        obj_order[ids] = 0
        obj_flags[ids] = flags
        self.arrays.pg_obj[offsets[live]] = ids[live].astype(np.int32)
        placed[x] = PLACED_SPLIT_BASE - first
        obj_mt[x] = mt
        obj_order[x] = order
        obj_flags[x] = flags
        self.lru_add(ids[live])

    def lru_add(self, ids: np.ndarray) -> None:
        """With kswapd on: the placed reclaimable objects among ``ids`` join the LRU tail."""

        if not self.prm[P_KSWAPD]:
            return
        placed, obj_flags = self.objects.placed, self.objects.obj_flags
        xs = ids[((obj_flags[ids] & F_RECLAIM) != 0) & (placed[ids] >= 0)]
        lru_add_all(xs.astype(np.int64), self.objects)

    def lru_add_range(self, first: int, n: int) -> None:
        """:meth:`lru_add` of the consecutive ids ``first .. first + n - 1`` (a fork's
        background objects, millions: one kernel call over them, no array of ids)."""
        if self.prm[P_KSWAPD]:
            lru_add_id_range(np.int64(first), np.int64(n), self.objects)

    def free_lists(self) -> dict[tuple[int, int], list[int]]:
        """(order, migratetype) -> free blocks' pfns, head to tail (non-empty lists only)."""
        nxt, head = self.arrays.list_next, self.arrays.free_head
        out: dict[tuple[int, int], list[int]] = {}
        for k in range(NR_PAGE_ORDERS):
            for mt in range(MIGRATE_PCPTYPES):
                o = int(head[k * MIGRATE_PCPTYPES + mt])
                blocks = []
                while o >= 0:
                    blocks.append(o + self.start_pfn)
                    o = int(nxt[o])
                if blocks:
                    out[(k, mt)] = blocks
        return out

    def pcp_lists(self) -> dict[tuple[int, int], list[int]]:
        """(cpu, pindex) -> pfns on that pcp list, head to tail (non-empty lists only)."""
        nxt, pcp_head = self.arrays.list_next, self.arrays.pcp_head
        out: dict[tuple[int, int], list[int]] = {}
        for li in range(pcp_head.shape[0]):
            o = int(pcp_head[li])
            pfns = []
            while o >= 0:
                pfns.append(o + self.start_pfn)
                o = int(nxt[o])
            if pfns:
                out[(li // NR_PCP_LISTS, li % NR_PCP_LISTS)] = pfns
        return out

    def pcp_count(self) -> list[int]:
        return [int(v) for v in self.arrays.pcp_count]

    def pageblock_types(self) -> list[int]:
        return [int(v) for v in self.arrays.pageblock_mt]

    def nr_free_mt(self) -> list[list[int]]:
        m = self.arrays.nr_free_mt
        return [[int(m[k * 3 + t]) for t in range(3)] for k in range(NR_PAGE_ORDERS)]

    def free_pages(self) -> int:
        return int(sum(int(n) << k for k, n in enumerate(self.arrays.nr_free)))

    def pcp_pages(self) -> int:
        """Pages on the pcp lists (not the held ones a snapshot counted: PCP_HELD)."""
        return int(self.arrays.pcp_count.sum() - self.arrays.pcp_state[:, PCP_HELD].sum())

    def pageblock_counts(self) -> list[tuple[int, int, int, int, int]]:
        """Per pageblock: (free, unmovable, movable, reclaimable allocated, pcp) pages."""
        snap = np.zeros((self.npb, 6), np.int64)
        pageblock_snapshot(self.arrays, self.prm, snap)
        return [tuple(int(v) for v in row[1:]) for row in snap]  # type: ignore[misc]
