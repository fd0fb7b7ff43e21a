"""The zone a run replays into and the kernel settings it uses.

From the trace's zone (or ``--zone-pages``) and its zoneinfo snapshot: the
zone's start pfn and pages, watermarks (``__setup_per_zone_wmarks``), pcp
batch/high (``zone_batchsize``/``zone_highsize``) and CPUs; the dense object
numbering; and the background pages ``--fill-from-snapshot`` allocates.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace

import numpy as np

from replay.engine.present import PresentMemory, present_memory
from replay.errors import UsageError
from replay.limits import check_zone_fits
from replay.models.config import RunConfig
from replay.models.internal import (
    MAX_PAGE_ORDER,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    MIGRATE_RECLAIMABLE,
    MIGRATE_UNMOVABLE,
    PAGEBLOCK_ORDER,
    PAGEBLOCK_PAGES,
)
from replay.models.watermarks import (
    MIN_PERCPU_PAGELIST_HIGH_FRACTION,
    calculate_min_free_kbytes,
    mult_frac,
    setup_per_zone_wmarks,
    zone_batchsize,
    zone_highsize,
)
from replay.store import Store


@dataclass(frozen=True)
class Environment:
    """The zone and the kernel settings a run uses (pfn, pages)."""

    start_pfn: int
    pages: int
    zone: str | None  # the snapshot zone it came from, if any
    ncpus: int
    wmark: tuple[int, int, int]  # min, low, high (pages)
    batch: int
    high: int
    # pages the zone's buddy allocator managed at the start (the before-snapshot's
    # ``managed``); the zone's pages past ``start_pfn + managed`` are holes: memory not
    # in the allocator yet, until the trace frees it into the zone (memory onlining)
    managed: int | None = None
    high_max: int | None = None  # pcp high_max (pages), when the run tunes pcp->high
    kernel: str | None = None  # the capture's kernel release (uname -r), if recorded
    # the memory the trace shows to exist when it is less than the span (a model works on
    # its dense pfn space: replay.engine.present); None: the whole span [start_pfn, +pages)
    memory: PresentMemory | None = field(default=None, compare=False)

    @property
    def model_pages(self) -> int:
        """Pages of the model's zone: the span's, or the kept memory's (pages)."""
        return self.pages if self.memory is None else self.memory.pages

    def to_real(self, mpfns: np.ndarray) -> np.ndarray:
        """The trace's pfns of model pfns (negative values stay): identity on a whole span."""
        m = np.asarray(mpfns, np.int64)
        return m if self.memory is None else self.memory.to_real(m)

    def to_real_end(self, mpfns: np.ndarray) -> np.ndarray:
        """The trace's exclusive range ends of model ones (negative values stay)."""
        m = np.asarray(mpfns, np.int64)
        return m if self.memory is None else self.memory.to_real_end(m)

    def to_model(self, pfns: np.ndarray) -> np.ndarray:
        """Model pfns of the trace's pfns (-1: memory the model leaves out)."""
        p = np.asarray(pfns, np.int64)
        return p if self.memory is None else self.memory.to_model(p)

    def kernel_at_least(self, major: int, minor: int) -> bool:
        """Is the capture's kernel ``major.minor`` or newer? True when unknown (a model
        follows the newest kernel it knows unless the capture says otherwise)."""
        m = re.match(r"(\d+)\.(\d+)", self.kernel or "")
        return m is None or (int(m[1]), int(m[2])) >= (major, minor)

    @property
    def holes_from(self) -> int | None:
        """The first hole's offset from ``start_pfn`` (pages), or None without holes."""
        if self.managed is None or self.managed >= self.pages:
            return None
        return self.managed


def snapshot_zone(store: Store, trace_id: int, start: int, pages: int) -> tuple | None:
    """The before (else after) zoneinfo row of the zone starting at ``start`` whose
    managed pages or span are ``pages``, if any: (zone, min, low, high, managed,
    snapshot, node, pcp_high_min, pcp_high_max)."""
    return store.one(
        """SELECT zone, "min", low, high, managed, snapshot, node, pcp_high_min, pcp_high_max
           FROM snap_zoneinfo
           WHERE trace_id = $t AND start_pfn = $s AND (managed = $p OR spanned = $p)
           ORDER BY snapshot = 'before' DESC LIMIT 1""",
        {"t": trace_id, "s": start, "p": pages},
    )


def snapshot_pagesets(store: Store, trace_id: int, env: Environment) -> list[tuple[int, int]]:
    """Each cpu's (count, high) of the run's zone in the before-zoneinfo's pagesets (pages);
    empty when the capture has no such snapshot (or predates the column)."""
    if env.zone is None:
        return []
    row = store.one(
        """SELECT pcp_cpus FROM snap_zoneinfo WHERE trace_id = $t AND snapshot = 'before'
             AND zone = $z AND start_pfn = $s""",
        {"t": trace_id, "z": env.zone, "s": env.start_pfn},
    )
    if row is None or not row[0]:
        return []
    return [(int(c), int(h)) for c, h in json.loads(row[0])]


def zone_watermarks(
    store: Store, trace_id: int, snap: tuple | None, pages: int, config: RunConfig
) -> tuple[int, int, int]:
    """min/low/high (pages) as the kernel sets them for the run's zone.

    No parameters and a snapshot zone: the snapshot's own values. With
    ``min_free_kbytes``: ``__setup_per_zone_wmarks`` over every zone of the
    snapshot (pages_min is shared by managed pages among all lowmem zones),
    or over the run's zone alone without a snapshot. Only
    ``watermark_scale_factor``: the snapshot's min, low/high recomputed.
    """
    mfk = config.get("min_free_kbytes")
    wsf = config.get("watermark_scale_factor")
    if snap is not None and mfk is None and wsf is None:
        return int(snap[1]), int(snap[2]), int(snap[3])  # what the kernel had
    wsf = 10 if wsf is None else wsf
    if snap is not None and snap[4]:
        pages = int(snap[4])  # the kernel sizes a zone's watermarks by its managed pages
    if snap is not None and mfk is None:
        wmin = int(snap[1])
        tmp = max(wmin >> 2, mult_frac(pages, wsf, 10000))
        return wmin, wmin + tmp, wmin + 2 * tmp
    if snap is not None:
        zones = store.query(
            """SELECT zone, managed FROM snap_zoneinfo
               WHERE trace_id = $t AND snapshot = $s AND managed > 0 ORDER BY node, start_pfn""",
            {"t": trace_id, "s": snap[5]},
        ).to_pylist()
        managed = [int(z["managed"]) for z in zones]
        highmem = [z["zone"] in ("HighMem", "Movable") for z in zones]
        i = next(j for j, z in enumerate(zones) if z["zone"] == snap[0])
        w = setup_per_zone_wmarks(managed, mfk, wsf, highmem)[i]
        return w.min, w.low, w.high
    if mfk is None:
        mfk = calculate_min_free_kbytes(pages)
    w = setup_per_zone_wmarks([pages], mfk, wsf)[0]
    return w.min, w.low, w.high


# bytes a model keeps per page of its zone: buddy order (1), the list links (2 x 4), the
# unit's object (4), and the starting state's per-page arrays while it is set up
MODEL_BYTES_PER_PAGE = 24


def zone_environment(
    store: Store, trace_id: int, config: RunConfig, zone_pages: int | None
) -> Environment:
    if zone_pages is not None:
        if zone_pages <= 0:
            raise UsageError("--zone-pages must be positive")
        start, pages = 0, int(zone_pages)
    else:
        row = store.one(
            "SELECT zone_start_pfn, zone_pages FROM traces WHERE trace_id = $t", {"t": trace_id}
        )
        if row is None or row[1] is None:
            raise UsageError(
                "the trace has no zone (no zoneinfo snapshot and no pfns): pass --zone-pages N"
            )
        start, pages = int(row[0] or 0), int(row[1])
    # a zone known only by the trace's pfns keeps the memory they show (present.py)
    memory = present_memory(store, trace_id) if zone_pages is None else None
    # a model keeps about MODEL_BYTES_PER_PAGE bytes per page of its zone: refuse a zone
    # that cannot fit before allocating any of it
    what = f"the run's zone (pfn {start} to {start + pages})"
    if memory is not None:
        what = what[:-1] + f"; the {memory.stretches:,} stretches of it the trace touches)"
    present = pages if memory is None else memory.pages
    check_zone_fits(
        present, MODEL_BYTES_PER_PAGE, what,
        "pass --zone-pages N for a smaller zone, or record the trace with replay record "
        "(its zoneinfo snapshots give the zone the kernel had)",
    )  # fmt: skip
    snap = snapshot_zone(store, trace_id, start, pages) if zone_pages is None else None
    return environment_of(store, trace_id, config, start, pages, snap, memory)


def environment_of(
    store: Store, trace_id: int, config: RunConfig, start: int, pages: int, snap: tuple | None,
    memory: PresentMemory | None = None,
) -> Environment:  # fmt: skip
    """The Environment of the zone [start, start + pages) (pfn, pages) with its zoneinfo
    row ``snap`` (:func:`snapshot_zone`; None: none): watermarks, pcp batch and high."""
    present = pages if memory is None else memory.pages
    max_cpu = store.one("SELECT max(cpu) FROM events WHERE trace_id = $t", {"t": trace_id})
    ncpus = config.get("ncpus") or max(1, int(max_cpu[0] or 0) + 1 if max_cpu else 1)
    wmark = zone_watermarks(store, trace_id, snap, present, config)
    sized = int(snap[4]) if snap is not None and snap[4] else present  # managed pages
    batch = config.get("pcp_batch") or max(1, zone_batchsize(sized))
    high = config.get("pcp_high") or zone_highsize(wmark[1], batch, ncpus)
    high_max = None
    if config.get("pcp_tuning", False):
        # zone_set_pageset_high_and_batch: high_min from the low watermark, high_max from
        # managed / MIN_PERCPU_PAGELIST_HIGH_FRACTION; the snapshot's own when it has them
        if not config.get("pcp_high") and snap is not None and snap[7]:
            high = int(snap[7])
        high_max = config.get("pcp_high_max") or (
            int(snap[8]) if snap is not None and snap[8] else
            zone_highsize(sized // MIN_PERCPU_PAGELIST_HIGH_FRACTION, batch, ncpus)
        )  # fmt: skip
        high_max = max(high_max, high)
    managed = int(snap[4]) if snap is not None and snap[4] else None
    row = store.one("SELECT kernel FROM traces WHERE trace_id = $t", {"t": trace_id})
    kernel = str(row[0]) if row and row[0] else None
    return Environment(start, pages, snap[0] if snap else None, int(ncpus), wmark, batch, high,
                       managed, high_max, kernel, memory)  # fmt: skip


@dataclass(frozen=True)
class LowerZone:
    """The zone below the run's in its node's zonelist (DMA32 below Normal): its
    Environment and its ``lowmem_reserve`` for requests that could use the run's zone
    (pages; zoneinfo's ``protection`` at the run's zone's index)."""

    env: Environment
    reserve: int


# the zone indices of zoneinfo's protection tuple (enum zone_type on x86-64)
ZONE_INDEX = {"DMA": 0, "DMA32": 1, "Normal": 2, "Movable": 3, "Device": 4}


def lower_zone(store: Store, trace_id: int, config: RunConfig, env: Environment) -> LowerZone:
    """The zone below the run's (Normal) in the before-zoneinfo: the zonelist's next zone.

    Raises UsageError when the run's zone is not a snapshot's Normal zone or the node
    has no populated DMA32 zone right below it."""
    if env.zone != "Normal" or env.memory is not None:
        raise UsageError(
            "zone_choice = zonelist needs the trace's zone to be a zoneinfo snapshot's Normal "
            f"zone (a capture of replay record), not {env.zone or 'a zone without snapshot'}"
        )
    row = store.one(
        """SELECT l.start_pfn, l.spanned, l.protection FROM snap_zoneinfo n
           JOIN snap_zoneinfo l ON l.trace_id = n.trace_id AND l.snapshot = n.snapshot
             AND l.node = n.node AND l.zone = 'DMA32'
           WHERE n.trace_id = $t AND n.zone = 'Normal' AND n.start_pfn = $s
             AND l.managed > 0 AND l.start_pfn IS NOT NULL
           ORDER BY n.snapshot = 'before' DESC LIMIT 1""",
        {"t": trace_id, "s": env.start_pfn},
    )
    if row is None:
        raise UsageError("zone_choice = zonelist: the capture's zoneinfo has no populated "
                         "DMA32 zone in the run's node")  # fmt: skip
    start, pages = int(row[0]), int(row[1])
    if start + pages > env.start_pfn:
        raise UsageError(f"zone_choice = zonelist: DMA32 [{start:#x}, {start + pages:#x}) "
                         f"overlaps the run's zone at {env.start_pfn:#x}")  # fmt: skip
    prot = [int(v) for v in re.findall(r"-?\d+", str(row[2] or ""))]
    reserve = prot[ZONE_INDEX["Normal"]] if len(prot) > ZONE_INDEX["Normal"] else 0
    snap = snapshot_zone(store, trace_id, start, pages)
    lenv = environment_of(store, trace_id, config, start, pages, snap)
    return LowerZone(replace(lenv, ncpus=env.ncpus), reserve)


def object_index(store: Store, trace_id: int) -> tuple[np.ndarray | None, int]:
    """Dense object numbering: None when obj ids are already 0..n-1-ish."""
    # Each allocation event is an object of its own, and so is each object freed with
    # no allocation (pre-existing): their count is at most the distinct ids, so a cheap
    # bound decides most traces without counting distinct ids over every event.
    row = store.one(
        """SELECT min(obj), max(obj),
                  (SELECT coalesce(allocs, 0) + coalesce(preexisting, 0) FROM traces
                   WHERE trace_id = $t) FROM events WHERE trace_id = $t""",
        {"t": trace_id},
    )
    assert row is not None
    lo, hi, n = row
    if lo is None:
        raise UsageError("the trace has no events")
    if lo >= 0 and hi < 2 * int(n or 0) + (1 << 20):
        return None, int(hi) + 1
    row = store.one("SELECT count(DISTINCT obj) FROM events WHERE trace_id = $t",
                    {"t": trace_id})  # fmt: skip
    assert row is not None
    if lo >= 0 and hi < 2 * int(row[0]) + (1 << 20):
        return None, int(hi) + 1
    ids = (
        store.query(
            "SELECT DISTINCT obj FROM events WHERE trace_id = $t ORDER BY obj", {"t": trace_id}
        )
        .column("obj")
        .to_numpy()
    )
    return ids, int(ids.shape[0])


def background_pages(
    store: Store, trace_id: int, env: Environment, preexisting_pages: int
) -> dict[int, int]:
    """Pages to allocate per migratetype so the zone starts as full as the machine was.

    From the before-snapshot of the run's zone: used = managed - free pages
    (pagetypeinfo), scaled to the run's zone size, minus the pages of the
    trace's pre-existing objects (already allocated). It is shared among
    Unmovable/Movable/Reclaimable in proportion to each type's pages in use,
    ``nr_pageblocks[type] * 512 - free pages on that type's lists`` (floored
    at 0): a type's pageblocks minus its free pages.
    """
    if env.zone is None:
        raise UsageError(
            "--fill-from-snapshot needs the trace's zoneinfo/pagetypeinfo before-snapshot "
            "(a capture folder) and the run's zone taken from it (no --zone-pages)"
        )
    t = {"t": trace_id, "z": env.zone}
    free = store.query(
        """SELECT mt, sum(nr_free << "order") AS pages FROM snap_pagetypeinfo
           WHERE trace_id = $t AND snapshot = 'before' AND zone = $z GROUP BY mt""",
        t,
    ).to_pylist()
    blocks = store.query(
        """SELECT mt, sum(nr_pageblocks) AS n FROM snap_pageblocks
           WHERE trace_id = $t AND snapshot = 'before' AND zone = $z GROUP BY mt""",
        t,
    ).to_pylist()
    if not free or not blocks:
        raise UsageError(f"the trace has no before-pagetypeinfo for zone {env.zone}")
    free_by = {int(r["mt"]): int(r["pages"]) for r in free}
    used_total = max(0, env.pages - sum(free_by.values()) - preexisting_pages)
    share = {
        mt: max(0, int(r["n"]) * 512 - free_by.get(mt, 0))
        for r in blocks
        if (mt := int(r["mt"])) in (MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE)
    }
    total = sum(share.values())
    if total == 0 or used_total == 0:
        return {}
    out = {mt: used_total * v // total for mt, v in share.items()}
    out[max(share, key=lambda m: share[m])] += used_total - sum(out.values())
    return {mt: n for mt, n in out.items() if n > 0}


def background_stream(pages_by_mt: dict[int, int]) -> np.ndarray:
    """Order-0 request types, interleaved a pageblock (512 pages) of each type at a time."""
    left = dict(sorted(pages_by_mt.items()))
    parts: list[np.ndarray] = []
    while any(left.values()):
        for mt in left:
            n = min(512, left[mt])
            if n:
                parts.append(np.full(n, mt, np.int8))
                left[mt] -= n
    return np.concatenate(parts) if parts else np.zeros(0, np.int8)


def zone_pageblocks(start_pfn: int, pages: int) -> int:
    """Pageblocks the zone [start_pfn, start_pfn + pages) touches."""
    return ((start_pfn + pages - 1) >> PAGEBLOCK_ORDER) - (start_pfn >> PAGEBLOCK_ORDER) + 1


def pageblock_counts(start_pfn: int, page_mt: np.ndarray, mts: tuple[int, ...]
                     ) -> list[np.ndarray]:  # fmt: skip
    """Per pageblock the zone from ``start_pfn`` touches, how many of its pages
    ``page_mt`` (per page, int8) gives each of ``mts``: one int64 array per type. The
    pages as rows of a pageblock each (no per-page index: a 5M-page zone's was hundreds
    of MB of temporaries)."""
    head = start_pfn & (PAGEBLOCK_PAGES - 1)  # the first pageblock's pages before the zone
    n = page_mt.shape[0]
    npb = zone_pageblocks(start_pfn, n)
    rows = np.full(npb * PAGEBLOCK_PAGES, -1, np.int8)  # no type outside the zone
    rows[head : head + n] = page_mt
    rows = rows.reshape(npb, PAGEBLOCK_PAGES)
    return [np.count_nonzero(rows == mt, axis=1).astype(np.int64) for mt in mts]


def aligned_blocks(mask: np.ndarray, start_pfn: int) -> tuple[np.ndarray, np.ndarray]:
    """The maximal naturally aligned blocks (order <= 10) covering the True pages of
    ``mask`` (offsets from ``start_pfn``): (offsets, orders), ascending."""
    offs: list[int] = []
    orders: list[int] = []
    idx = np.flatnonzero(mask)
    if idx.shape[0] == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    cut = np.flatnonzero(np.diff(idx) != 1) + 1
    for run in np.split(idx, cut):
        o, end = int(run[0]), int(run[-1]) + 1
        while o < end:
            k = MAX_PAGE_ORDER
            while k > 0 and (((o + start_pfn) & ((1 << k) - 1)) != 0 or o + (1 << k) > end):
                k -= 1
            offs.append(o)
            orders.append(k)
            o += 1 << k
    return np.array(offs, np.int64), np.array(orders, np.int64)


def boot_blocks(pages: int, managed: int, start_pfn: int) -> np.ndarray:
    """``buddy_order`` per page of a zone whose first ``managed`` pages are free (as
    ``__free_pages_core`` leaves them: maximal aligned blocks) and the rest holes (-1)."""
    blk = np.full(pages, -1, np.int8)
    mask = np.zeros(pages, np.bool_)
    mask[:managed] = True
    offs, orders = aligned_blocks(mask, start_pfn)
    blk[offs] = orders
    return blk


def initial_pageblock_types(
    store: Store, trace_id: int, env: Environment, page_mt: np.ndarray,
    known: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    """Pageblock migratetypes for a zone starting from the kernel's state (int8 each).

    The capture records how many pageblocks of each type the zone has
    (pagetypeinfo's "Number of blocks type"), not which. The pageblocks in
    holes are MOVABLE (``memmap_init_range`` sets every new pageblock MOVABLE)
    and not counted, as pagetypeinfo does not count them. Of the others, the
    ones with the most unmovable pages (``page_mt`` UNMOVABLE: no KPF_LRU) are
    UNMOVABLE, as many as the snapshot counts, then the next ones RECLAIMABLE
    as many as it counts, the rest MOVABLE; an order-10 free block takes its
    first pageblock's type for both. Without a count: UNMOVABLE where
    unmovable pages outnumber movable ones. ``known`` (int8 per pageblock, -1
    unknown): types the trace shows (:func:`taken_pageblock_types`); they stand,
    count towards the snapshot's, and the rest are chosen as above.
    """
    npb = zone_pageblocks(env.start_pfn, env.pages)
    pb0 = env.start_pfn >> PAGEBLOCK_ORDER
    unmov, mov = pageblock_counts(env.start_pfn, page_mt[: env.pages],
                                  (MIGRATE_UNMOVABLE, MIGRATE_MOVABLE))  # fmt: skip
    hole = np.zeros(npb, np.bool_)
    if env.holes_from is not None:
        hole[(env.start_pfn + env.holes_from - (pb0 << PAGEBLOCK_ORDER)) >> PAGEBLOCK_ORDER :] = (
            True
        )
    counts = {
        int(r["mt"]): int(r["n"])
        for r in store.query(
            """SELECT mt, sum(nr_pageblocks) AS n FROM snap_pageblocks
               WHERE trace_id = $t AND snapshot = 'before' AND zone = $z GROUP BY mt""",
            {"t": trace_id, "z": env.zone},
        ).to_pylist()
    }
    pb_mt = np.full(npb, MIGRATE_MOVABLE, np.int8)
    fixed = np.zeros(npb, np.bool_) if known is None else (known >= 0) & ~hole
    if known is not None:
        pb_mt[fixed] = known[fixed]
    if not counts:
        pb_mt[(unmov > mov) & ~hole & ~fixed] = MIGRATE_UNMOVABLE
        return pb_mt
    order = np.argsort(-(unmov - mov), kind="stable")
    order = order[~hole[order] & ~fixed[order]]
    n_u = max(counts.get(MIGRATE_UNMOVABLE, 0) - int((pb_mt[fixed] == MIGRATE_UNMOVABLE).sum()), 0)
    n_r = max(counts.get(MIGRATE_RECLAIMABLE, 0)
              - int((pb_mt[fixed] == MIGRATE_RECLAIMABLE).sum()), 0)  # fmt: skip
    n_u = min(n_u, order.shape[0])
    n_r = min(n_r, order.shape[0] - n_u)
    pb_mt[order[:n_u]] = MIGRATE_UNMOVABLE
    pb_mt[order[n_u : n_u + n_r]] = MIGRATE_RECLAIMABLE
    return pb_mt


@dataclass(frozen=True)
class FirstTakes:
    """Blocks free or on pcp lists in a state rebuilt just before ``lo_seq`` (``offs``
    ascending, ``orders``) and, per block, the kernel's first take of one of its pages
    after it: ``first`` a key that sorts in trace order (``2 * seq`` for a
    ``mm_page_alloc_zone_locked``, the buddy giving a page up to a pcp list, which its
    line puts before event seq; ``2 * seq + 1`` for an allocation; int64 max for a block
    the trace never touches), ``cpu`` the cpu that took it (-1: none; an allocation
    takes from its own cpu's pcp list, so a pcp block's first taker names the list it
    was on) and ``mt`` the request's migratetype (-1: none)."""

    lo_seq: int
    offs: np.ndarray
    orders: np.ndarray
    first: np.ndarray
    cpu: np.ndarray
    mt: np.ndarray


def loose_blocks(blk: np.ndarray, pcp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The blocks of a rebuilt state that are free (``blk``: a free block's order at its
    offset, -1 elsewhere) or on a pcp list (``pcp``: order + 1 at the block's offset, 0
    elsewhere): offsets ascending and orders (int64)."""
    offs = np.flatnonzero((blk >= 0) | (pcp > 0)).astype(np.int64)
    orders = np.where(blk[offs] >= 0, blk[offs], pcp[offs].astype(np.int64) - 1)
    return offs, orders.astype(np.int64)


def first_taken(
    store: Store, trace_id: int, env: Environment, lo_seq: int, offs: np.ndarray,
    orders: np.ndarray,
) -> FirstTakes:  # fmt: skip
    """For blocks (offsets ascending, orders) free or on pcp lists just before
    ``lo_seq``: the kernel's first take of each after it (:class:`FirstTakes`)."""
    first = np.full(offs.shape[0], np.iinfo(np.int64).max, np.int64)
    cpu = np.full(offs.shape[0], -1, np.int64)
    mt = np.full(offs.shape[0], -1, np.int64)
    if offs.shape[0] == 0:
        return FirstTakes(lo_seq, offs, orders, first, cpu, mt)
    rows = store.query(
        """SELECT seq * 2 + 1 AS k, pfn, coalesce(cpu, -1) AS cpu,
                  coalesce(migratetype, -1) AS mt FROM events
           WHERE trace_id = $t AND op = 'alloc' AND seq >= $lo AND pfn >= $zs AND pfn < $ze
             AND NOT coalesce(failed, false)
           UNION ALL
           SELECT seq * 2, pfn, coalesce(cpu, -1), coalesce(migratetype, -1) FROM aux_events
           WHERE trace_id = $t AND event = 'mm_page_alloc_zone_locked' AND seq >= $lo
             AND pfn >= $zs AND pfn < $ze""",
        {"t": trace_id, "lo": lo_seq, "zs": env.start_pfn, "ze": env.start_pfn + env.pages},
    )
    keys = rows.column("k").to_numpy().astype(np.int64)
    pos = rows.column("pfn").to_numpy().astype(np.int64) - env.start_pfn
    h = np.searchsorted(offs, pos, side="right") - 1
    ok = h >= 0
    ok[ok] = pos[ok] < offs[h[ok]] + (np.int64(1) << orders[h[ok]].astype(np.int64))
    # by key, then pfn: the rows come in no fixed order, and a refill takes several
    # pages before one event (equal keys)
    by_key = np.lexsort((pos[ok], keys[ok]))
    hs = h[ok][by_key]
    blocks, at = np.unique(hs, return_index=True)  # each block's earliest take
    first[blocks] = keys[ok][by_key][at]
    cpu[blocks] = rows.column("cpu").to_numpy().astype(np.int64)[ok][by_key][at]
    mt[blocks] = rows.column("mt").to_numpy().astype(np.int64)[ok][by_key][at]
    return FirstTakes(lo_seq, offs, orders, first, cpu, mt)


def taken_pageblock_types(
    store: Store, trace_id: int, env: Environment, takes: FirstTakes
) -> np.ndarray:
    """The types of the pageblocks whose free or pcp pages at ``takes.lo_seq`` the
    kernel took from after it, as its first take there shows them (int8 per pageblock
    of the zone, -1 unknown): since 6.9 a free page sits on its pageblock type's list
    and a pcp page on the list of its pageblock's type when it was freed, and a request
    takes from its own type's lists unless it falls back (``mm_page_alloc_extfrag``,
    whose ``fallback_migratetype`` is then the pageblock's: a pageblock's first
    fallback after the fork, when no take came before it, types it too). pagetypeinfo
    counts the types, not which pageblock has which; the pages' flags cannot tell a
    free pageblock's."""
    npb = zone_pageblocks(env.start_pfn, env.pages)
    out = np.full(npb, -1, np.int8)
    offs, first, mt = takes.offs, takes.first, takes.mt
    pb0 = env.start_pfn >> PAGEBLOCK_ORDER
    pb = ((offs + env.start_pfn) >> PAGEBLOCK_ORDER) - pb0
    key = np.full(npb, np.iinfo(np.int64).max, np.int64)
    seen = (first < np.iinfo(np.int64).max) & (mt >= 0) & (mt < MIGRATE_PCPTYPES)
    by_key = np.lexsort((offs[seen], first[seen]))
    pbs, at = np.unique(pb[seen][by_key], return_index=True)
    key[pbs] = first[seen][by_key][at]
    out[pbs] = mt[seen][by_key][at]
    fb = store.query(
        """SELECT min(seq) * 2 AS k, (pfn >> $o) - $pb0 AS pb,
                  arg_min(TRY_CAST(args->>'fallback_migratetype' AS INTEGER),
                          seq * 4194304 + coalesce(line, 0) % 4194304) AS mt
           FROM aux_events
           WHERE trace_id = $t AND event = 'mm_page_alloc_extfrag' AND seq >= $lo
             AND pfn >= $zs AND pfn < $ze GROUP BY pb""",
        {"t": trace_id, "lo": takes.lo_seq, "zs": env.start_pfn, "ze": env.start_pfn + env.pages,
         "o": PAGEBLOCK_ORDER, "pb0": pb0},
    )  # fmt: skip
    fpb = fb.column("pb").to_numpy().astype(np.int64)
    fmt = fb.column("mt").to_numpy(zero_copy_only=False)
    fmt = np.where(np.isnan(fmt.astype(np.float64)), -1, fmt).astype(np.int64)
    first_fb = fb.column("k").to_numpy().astype(np.int64) <= key[fpb] + 1
    # a fallback came first: the block it took from was on its pageblock's list, of the
    # fallback type
    out[fpb[first_fb]] = np.where((fmt[first_fb] >= 0) & (fmt[first_fb] < MIGRATE_PCPTYPES),
                                  fmt[first_fb], -1)  # fmt: skip
    return out
