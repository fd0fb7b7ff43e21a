"""Declarations every model mechanism shares, as mm/internal.h and mmzone.h are for mm/.

The zone's state (:class:`Zone`), the objects the engine places
(:class:`Objects`), the layouts of the scalar arrays the kernels take
(``prm`` settings ``P_*``, ``counters`` ``C_*``, ``stats`` ``S_*``, the
models' scratch ``cz`` slots ``CZ_*``/``CC_*``), the buffers' columns
(extfrag ``EF_COLS``, model events ``ME_COLS``), the object flags ``F_*`` and
the small inline helpers every mechanism uses (intrusive lists,
``buddy_merge_likely``, pcp list indices, ``emit`` of a model event).

Units: pfn (absolute page frame numbers); offsets ``o = pfn - start_pfn``
index per-page arrays; ``pb = (pfn >> pageblock_order) - pb0`` indexes
per-pageblock arrays; pages are 4 KiB; orders are blocks of ``1 << order``
pages; ns are trace time.

The mechanisms (``buddy``, ``pcp``, ``page_alloc``, ``watermarks``,
``compaction``, ``reclaim``, ``defrag``, ``pools``) import this module and
the ones below them, never each other in a circle; ``events`` dispatches
one trace event over all of them and ``zone`` is the Python handle.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from replay.jit import njit

# -- include/linux/mmzone.h ------------------------------------------------------------
MAX_PAGE_ORDER = 10
NR_PAGE_ORDERS = MAX_PAGE_ORDER + 1
PAGEBLOCK_ORDER = 9
PAGEBLOCK_PAGES = 1 << PAGEBLOCK_ORDER
PAGE_ALLOC_COSTLY_ORDER = 3
MIGRATE_UNMOVABLE = 0
MIGRATE_MOVABLE = 1
MIGRATE_RECLAIMABLE = 2
MIGRATE_PCPTYPES = 3
NR_PCP_LISTS = 14  # 3 types x orders 0..3, plus order 9 (movable, other)

# fallbacks[] of mm/page_alloc.c, row per requested type
FALLBACKS = np.array([[2, 1], [2, 0], [0, 1]], dtype=np.int64)


class Zone(NamedTuple):
    """One zone's arrays, as ``struct zone`` and its pages hold them.

    Per page (offset ``o``): ``buddy_order`` the order of the free block
    starting at o, else -1 (``buddy_order()``, valid with PageBuddy);
    ``list_next``/``list_prev`` the links of whichever list the page heads (a
    free list, a pcp list or compaction's isolated list: ``page->lru``);
    ``pg_obj`` the object whose unit starts at o (-1: none; kept when
    ``prm[P_UNITS]``). Per free list ``li = order * MIGRATE_PCPTYPES + mt``:
    ``free_head``/``free_tail`` (``free_area[order].free_list[mt]``) and
    ``nr_free_mt``; per order ``nr_free`` (``free_area[order].nr_free``).
    Per pageblock: ``pageblock_mt`` (``get_pageblock_migratetype``),
    ``pageblock_free`` (free pages in it) and ``pageblock_alloc`` (allocated
    pages by request type, ``pb * MIGRATE_PCPTYPES + mt``). Per pcp list
    ``cpu * NR_PCP_LISTS + pindex``: ``pcp_head``/``pcp_tail``; per cpu
    ``pcp_count`` (``pcp->count``, pages). ``isolated_head``/
    ``isolated_tail``: per order, compaction's isolated free pages
    (``cc->freepages[order]``). ``pcp_state``: per cpu, the 6.7+ tuning
    state of its pcp (``pcp->high``, ``free_count``, ``alloc_factor``,
    ``flags``) and PCP_HELD; ``zone_flags``: ZONE_BELOW_HIGH, ZONE_RECLAIM_ACTIVE.
    ``capture``: the running direct compaction's ``capture_control`` (CAPC_*): the
    order and free-list type a freed block is captured at (CAPC_ORDER -1: none armed),
    and the captured block (CAPC_PAGE pfn, -1 none; CAPC_PAGE_ORDER).
    """

    buddy_order: np.ndarray  # int8 per page
    list_next: np.ndarray  # int32 per page
    list_prev: np.ndarray  # int32 per page
    free_head: np.ndarray  # int64 per free list
    free_tail: np.ndarray  # int64 per free list
    nr_free: np.ndarray  # int64 per order (blocks)
    nr_free_mt: np.ndarray  # int64 per free list (blocks)
    pageblock_mt: np.ndarray  # int8 per pageblock
    pageblock_free: np.ndarray  # int64 per pageblock (pages)
    pageblock_alloc: np.ndarray  # int64 per pageblock and type (pages)
    pcp_head: np.ndarray  # int64 per pcp list
    pcp_tail: np.ndarray  # int64 per pcp list
    pcp_count: np.ndarray  # int64 per cpu (pages)
    pg_obj: np.ndarray  # int32 per page
    isolated_head: np.ndarray  # int64 per order
    isolated_tail: np.ndarray  # int64 per order
    pcp_state: np.ndarray  # int64 (ncpus, 5): PCP_HIGH .. PCP_FLAGS, PCP_HELD
    zone_flags: np.ndarray  # int64 per ZONE_* flag (0/1)
    capture: np.ndarray  # int64 per CAPC_* field
    pageblock_skip: np.ndarray  # int8 per pageblock: PB_migrate_skip (compaction's hint)


def new_zone(start_pfn: int, pages: int, ncpus: int) -> Zone:
    """Uninitialised arrays for the zone [start_pfn, start_pfn + pages) and ``ncpus`` CPUs."""
    pb0 = start_pfn >> PAGEBLOCK_ORDER
    npb = ((start_pfn + pages - 1) >> PAGEBLOCK_ORDER) - pb0 + 1
    nl = NR_PAGE_ORDERS * MIGRATE_PCPTYPES
    return Zone(
        buddy_order=np.empty(pages, np.int8),
        list_next=np.empty(pages, np.int32),
        list_prev=np.empty(pages, np.int32),
        free_head=np.empty(nl, np.int64),
        free_tail=np.empty(nl, np.int64),
        nr_free=np.zeros(NR_PAGE_ORDERS, np.int64),
        nr_free_mt=np.zeros(nl, np.int64),
        pageblock_mt=np.empty(npb, np.int8),
        pageblock_free=np.zeros(npb, np.int64),
        pageblock_alloc=np.zeros(npb * MIGRATE_PCPTYPES, np.int64),
        pcp_head=np.empty(ncpus * NR_PCP_LISTS, np.int64),
        pcp_tail=np.empty(ncpus * NR_PCP_LISTS, np.int64),
        pcp_count=np.zeros(ncpus, np.int64),
        pg_obj=np.full(pages, -1, np.int32),
        isolated_head=np.full(NR_PAGE_ORDERS, -1, np.int64),
        isolated_tail=np.full(NR_PAGE_ORDERS, -1, np.int64),
        pcp_state=np.zeros((ncpus, 5), np.int64),
        zone_flags=np.zeros(2, np.int64),
        capture=np.array([-1, 0, -1, -1], np.int64),
        pageblock_skip=np.zeros(npb, np.int8),
    )


class Objects(NamedTuple):
    """The engine's objects (allocations), by dense object id.

    ``placed``: the pfn (``PLACED_FAILED``, ``PLACED_EVICTED``, at most
    ``PLACED_VC_BASE``: a virtual compound in the pool ``vc``, or at most
    ``PLACED_SPLIT_BASE``: a folio split into order-0 pieces, objects of the split room);
    ``obj_mt``/``obj_order``/``obj_flags``: request migratetype, order and
    F_* flags (three columns of one (n, 4) int8 array: a free reads all
    three, and with random ids separate arrays were a cache miss each);
    ``lru_next``/``lru_prev`` and ``lru_head``/``lru_tail``: kswapd's LRU
    (replay.models.reclaim), oldest at the head; ``split``: the split room, the object
    ids compaction may give the pieces of folios it splits (next free id, end, start).
    """

    placed: np.ndarray  # int64 per object
    obj_mt: np.ndarray  # int8 per object
    obj_order: np.ndarray  # int8 per object
    obj_flags: np.ndarray  # int8 per object
    lru_next: np.ndarray  # int32 per object
    lru_prev: np.ndarray  # int32 per object
    lru_head: np.ndarray  # int64, one
    lru_tail: np.ndarray  # int64, one
    split: np.ndarray  # int64, three: the split room's next free object id, end, start


def objects_from(arrays: list[np.ndarray]) -> Objects:
    """Objects from its nine arrays (a checkpoint's, in field order), laid out as
    :func:`new_objects` lays them out: obj_mt, obj_order and obj_flags as columns of one
    (n, 4) array. The kernels take them as such (strided); contiguous copies would be
    another signature, compiled and loaded again."""
    n = arrays[0].shape[0]
    info = np.zeros((n, 4), np.int8)
    for col in range(3):
        info[:, col] = arrays[1 + col]
    # a checkpoint from before the split room: none
    split = arrays[8] if len(arrays) > 8 else np.array([n, n, n], np.int64)
    return Objects(arrays[0], info[:, 0], info[:, 1], info[:, 2], *arrays[4:8], split)


def new_objects(n: int, lru: bool = True, split_room: int = 0) -> Objects:
    """Arrays for ``n`` objects, none placed yet, then ``split_room`` more for the
    pieces of folios compaction splits. Without ``lru`` (kswapd off: the
    kernels touch the LRU only when P_KSWAPD is set) its per-object links are one
    entry each, not ``n``: 8 bytes less per object to allocate and checkpoint. At
    least two objects: numba types a one-row column view as contiguous, and the replay
    kernel was compiled (and loaded) twice, once for warm_up's one object."""
    first = max(n, 2)
    n = first + max(split_room, 0)
    return objects_over(np.full(n, -1, np.int64), np.zeros((n, 4), np.int8), first, lru)


def objects_over(placed: np.ndarray, info: np.ndarray, first: int, lru: bool) -> Objects:
    """Objects over given arrays: ``placed`` (int64 per object: pfn, or a PLACED_*
    value) and ``info`` (int8, [objects, 4]: type, order, flags), ``first`` objects and
    then the split room; fresh LRU links (one entry each without ``lru``)."""
    n = placed.shape[0]
    links = n if lru else 1
    return Objects(
        placed=placed,
        obj_mt=info[:, 0],
        obj_order=info[:, 1],
        obj_flags=info[:, 2],
        lru_next=np.full(links, -1, np.int32),
        lru_prev=np.full(links, -1, np.int32),
        lru_head=np.full(1, -1, np.int64),
        lru_tail=np.full(1, -1, np.int64),
        split=np.array([first, n, first], np.int64),
    )


# -- prm: the zone's settings (int64 array) -------------------------------------------
# P_GROUP = 0: grouping by mobility off, every list is MOVABLE: the plain buddy.
# P_NOFRAG: try with ALLOC_NOFRAGMENT first (the kernel sets it for ZONE_NORMAL below DMA32).
# P_BATCH/P_HIGH: pcp batch and high (pages); P_NCPU: CPUs with pcp lists.
P_START, P_PAGES, P_PB0, P_PCP, P_BATCH, P_HIGH, P_NCPU, P_GROUP, P_NOFRAG = range(9)
# the defragmentation models' switches and settings (replay.models.compaction, .reclaim):
# P_COMPACT: COMPACT_DIRECT | COMPACT_PROACTIVE bits; P_EXTFRAG: extfrag_threshold;
# P_PROACTIVE: compaction_proactiveness; P_WMIN/LOW/HIGH: watermarks (pages);
# P_KSWAPD: 0 off, 1 LRU-like, 2 targeted; P_VCOMPOUND: lowest order that may fall back
# (0: off); P_PRESSURE_RECLAIM/OOM: free-page thresholds of the notifications (0: off)
P_COMPACT, P_EXTFRAG, P_PROACTIVE, P_WMIN, P_WLOW, P_WHIGH = range(9, 15)
P_KSWAPD, P_VCOMPOUND, P_PRESSURE_RECLAIM, P_PRESSURE_OOM = range(15, 19)
# active defragmentation (replay.models.defrag): P_DEFRAG_IDLE the idle gap (ns; 0 off),
# P_DEFRAG_T0 + k the free order-k blocks wanted (0: no threshold for order k);
# per-owner pools (replay.models.pools): P_POOL_ORDER the chunk order (0 off)
P_DEFRAG_IDLE, P_DEFRAG_T0 = 19, 20
P_POOL_ORDER = 31
# P_UNITS: keep pg_obj (the object whose unit starts at each page). Every model that
# moves, evicts or reads units needs it; a plain buddy/mobility run skips the writes
# (a cache miss per event).
P_UNITS = 32
# pcp high auto-tuning (Linux 6.7+): P_HIGH is high_min, P_HIGH_MAX high_max (pages);
# P_PCP_TUNE 1: nr_pcp_high/nr_pcp_free/nr_pcp_alloc/decay_pcp_high as 6.7+, 0: high
# fixed at P_HIGH and batch-sized refills and bulk frees; P_PCP_FREE_HIGH_BATCH: every
# cpu has PCPF_FREE_HIGH_BATCH (its cache slice holds three batches);
# P_PCP_DECAY_NS: decay_pcp_high's period (vmstat_update, ns of trace time; 0 off);
# P_PCP_FREE_HIGH_MIN: 1 when free_high needs free_count >= batch + high_min / 2 (Linux
# 6.15+, "mm: pcp: increase pcp->free_count threshold to trigger free_high"), 0: batch
P_HIGH_MAX, P_PCP_TUNE, P_PCP_FREE_HIGH_BATCH, P_PCP_DECAY_NS = 33, 34, 35, 36
P_PCP_FREE_HIGH_MIN = 37
# the zonelist (replay.models.zonelist): a lower zone's ``lowmem_reserve`` against
# requests whose highest zone is the one above it (pages; zoneinfo's ``protection``)
P_LOWMEM_RESERVE = 38
# P_PCP_RECORDED 1: the recorded kernel's pcp bulk frees are the run's inputs
# (replay.engine.recorded.recorded_pcp_frees, applied by pcp.pcp_bulk_recorded): the free
# path and decay_pcp_high still tune pcp->high but never give pages back themselves
P_PCP_RECORDED = 39
# P_REFILL_RECORDED 1: the recorded kernel's pcp refills are the run's inputs
# (replay.engine.recorded.recorded_pcp_refills, pcp.pcp_refill_recorded): a list the
# model finds empty takes one block from the buddy, not a batch of its own
P_REFILL_RECORDED = 40
# P_KSWAPD_RECORDED 1: the recorded kswapd's try_to_sleep is an input (where it wakes
# kcompactd, reset_isolation_suitable clears the skip hints a direct compaction's met
# scanners flagged); 0: the hints are cleared where the scanners meet
P_KSWAPD_RECORDED = 41
NR_PRM = 42

# -- counters (int64 array) -------------------------------------------------------------
# C_EF, C_ME: rows used in the extfrag and model-event buffers; C_PRESSURE: the pressure
# level now; the others are cumulative: pages for MIGRATED/SCANNED/EVICTED/PCP_PAGES,
# allocations for DEGRADED, events for CLAIMS/STEALS/REFILLS/BULK/DRAINS.
C_EF, C_CLAIMS, C_STEALS, C_REFILLS, C_BULK, C_DRAINS, C_PCP_PAGES = range(7)
C_ME, C_MIGRATED, C_SCANNED, C_EVICTED, C_DEGRADED, C_PRESSURE = range(7, 13)
C_EXCHANGED = 13  # pages moved by exchange_pages (both units of each exchange)
C_POOL_CHUNKS, C_POOL_PAGES = 14, 15  # per-owner pools now: chunks held, pages in use
# pages of units compaction migrated whose request type is not MOVABLE: movable driver
# pages (movable_classes, the zram pages of replay.models.zsmalloc), cumulative
C_DRIVER_MIGRATED = 16
# large folios compaction split to migrate their pages one by one (try_split_folio on
# -ENOMEM: no isolated free block of the folio's order), cumulative
C_SPLIT = 17
C_SPLIT_FULL = 18  # ... that stayed whole: the split room had too few object ids left
NR_COUNTERS = 19

# -- stats (int64 array, the trace's events) ---------------------------------------------
S_ALLOCS, S_FREES, S_FAILURES, S_IGNORED, S_BELOW_LOW, S_BELOW_MIN, S_EVICTED_FREES = range(7)
S_POOL_FALLBACKS = 7  # pooled requests served by the normal allocator (no chunk to be had)
S_SERVED_KERNEL_FAILED = 8  # requests the recorded kernel failed that the model served
NR_STATS = 9
# step outcomes (index into replay.engine.results.OUTCOMES)
OUT_OK = 0
OUT_FAILED = 1
OUT_IGNORED = 2
OUT_EVICTED = 4  # index 3 is "inconsistent" (observed runs)
OUT_DEGRADED = 5

# -- extfrag buffer (rows of trace_mm_page_alloc_extfrag) -----------------------------
EF_COLS = ("seq", "pfn", "alloc_order", "fallback_order", "alloc_migratetype",
           "fallback_migratetype", "fragmenting", "change_ownership")  # fmt: skip
EF_MAX_PER_ALLOC = 2 * 64 + 2  # refill, drain, refill again, plus a direct fallback

# the pcp tuning state (Zone.pcp_state columns, pcp->flags, CONFIG_PCP_BATCH_SCALE_MAX)
PCP_HIGH, PCP_FREE_COUNT, PCP_ALLOC_FACTOR, PCP_FLAGS = range(4)
# PCP_HELD: pages a pagesets snapshot counted on the cpu's lists that the trace never
# names (no event ever allocates or drains them, so they stay for the whole run): part
# of pcp_count (the lists' fill, against pcp->high), on no list, never bulk-freed
PCP_HELD = 4
PCPF_PREV_FREE_HIGH_ORDER = 1
PCPF_FREE_HIGH_BATCH = 2
PCP_BATCH_SCALE_MAX = 5
# zone->flags the pcp tuning reads (Zone.zone_flags indices)
ZONE_BELOW_HIGH, ZONE_RECLAIM_ACTIVE = 0, 1
# struct capture_control (Zone.capture indices): what direct compaction captures
# (cc->order, cc->migratetype; CAPC_ORDER -1: no capture armed, as current->capture_control
# NULL) and the page it captured (capc->page: pfn, -1 none; and its order)
CAPC_ORDER, CAPC_MT, CAPC_PAGE, CAPC_PAGE_ORDER = 0, 1, 2, 3

# __rmqueue's modes (rmqueue_mode), carried across a pcp refill in ``mode[0]``
MODE_NORMAL = 0
MODE_CLAIM = 1
MODE_STEAL = 2

# -- objects ----------------------------------------------------------------------------
F_MOVABLE = 1  # compaction may migrate the object's unit
F_PINNED = 2  # partly freed: no longer a unit, never moves
F_RECLAIM = 4  # kswapd may evict it
F_EVICTED = 8  # evicted by kswapd: later frees are no-ops
F_VCOMPOUND = 16  # may fall back to order-0 pages (virtual compound)
F_POOLED = 32  # the page came from its owner's pool chunk (replay.models.pools)
# The request cannot enter direct reclaim (no __GFP_DIRECT_RECLAIM: GFP_ATOMIC, GFP_NOWAIT,
# GFP_TRANSHUGE_LIGHT): its failure neither drains the pcp lists nor compacts (the kernel's
# slow path runs both only when can_direct_reclaim).
F_NORECLAIM = 64
# An event flag, never an object's: the recorded kernel failed this request. A model
# that serves it gives the block straight back (the trace goes on without it). Event
# flags are int16; object flags keep the low seven bits (OBJ_FLAGS_MASK).
F_KERNEL_FAILED = 128
# An event flag: the allocation the recorded kernel served right after its own direct
# compaction, which the model serves with the block its replay of that pass captured
# (compaction_capture), if it captured one of this order.
F_CAPTURE = 256
# An event flag: the request cannot be served above the lower zone (GFP_DMA32: its
# zonelist starts at DMA32), for a node of two zones (replay.models.zonelist).
F_LOWER_ZONE = 512
# An event flag: __GFP_NORETRY. Its costly-order failure after direct compaction ends
# the slow path without reclaim (__alloc_pages_slowpath; a zonelist run's, for now).
F_NORETRY = 1024
OBJ_FLAGS_MASK = 0x7F
PLACED_FAILED = -1
PLACED_EVICTED = -2
PLACED_VC_BASE = -3  # placed[x] = PLACED_VC_BASE - index into the vcompound page pool
# placed[x] = PLACED_SPLIT_BASE - the first of its pieces: a folio compaction split
# (replay.models.compaction split_folio); below every vcompound pool index
PLACED_SPLIT_BASE = -(1 << 40)

# -- model events ----------------------------------------------------------------------
# compaction switches (prm[P_COMPACT] bits)
COMPACT_DIRECT = 1
COMPACT_PROACTIVE = 2
COMPACT_CLUSTER_MAX = 32
COMPACT_MAX_DEFER_SHIFT = 6
HPAGE_FRAG_CHECK_INTERVAL_NS = 500_000_000
# compact_result values, then the other mechanisms' results (model_events.result)
SUCCESS, COMPLETE, PARTIAL_SKIPPED, SKIPPED, DEFERRED, CONTINUE = range(6)
BALANCED, UNBALANCED, DEGRADED, FAILED, LEVEL_NORMAL, LEVEL_RECLAIM, LEVEL_OOM = range(6, 13)
RESULTS = ("SUCCESS", "COMPLETE", "PARTIAL_SKIPPED", "SKIPPED", "DEFERRED", "CONTINUE",
           "BALANCED", "UNBALANCED", "DEGRADED", "FAILED", "normal", "reclaim",
           "oom")  # fmt: skip
MODE_ASYNC = 0
MODE_SYNC = 1
MODES = ("async", "sync")
# model event kinds (model_events.kind)
K_COMPACT_DIRECT, K_COMPACT_PROACTIVE, K_COMPACT_ONESHOT = 0, 1, 2
K_KSWAPD, K_VCOMPOUND, K_PRESSURE = 3, 4, 5
K_DEFRAG, K_EXCHANGE, K_CONTIG = 6, 7, 8
K_COMPACT_RECORDED = 9  # the model's compaction where the recorded kernel compacted
KINDS = ("compact_direct", "compact_proactive", "compact_oneshot", "kswapd", "vcompound",
         "pressure", "defrag", "exchange", "contig", "compact_recorded")  # fmt: skip
# model event columns
ME_COLS = ("seq", "kind", "order", "mode", "start_pfn", "end_pfn", "migrate_pfn", "free_pfn",
           "scanned_migrate", "scanned_free", "moved", "failed", "evicted", "result",
           "free_pages", "exchanged")  # fmt: skip
ME_MAX_PER_EVENT = 8  # direct compaction (2), kswapd (1), vcompound (1), pressure (2), spare

# -- cz: the models' zone state (int64 array) -------------------------------------------
# compaction: cached scanner positions, deferral, proactive checks
CZ_MIG0, CZ_MIG1, CZ_FREE, CZ_CONSIDERED, CZ_SHIFT, CZ_ORDER_FAILED = range(6)
CZ_PDEFER, CZ_NEXT_CHECK, CZ_TS0_SET = 6, 7, 8
CZ_VC_USED = 9  # reclaim: used length of the vcompound pool
# pcp: trace time (ns) of the next decay_pcp_high: CZ_DECAY_UNSET until the first event
# sets it, CZ_DECAY_OFF (never) without pcp tuning
CZ_PCP_DECAY = 15
CZ_DECAY_UNSET = -(1 << 62)
CZ_DECAY_OFF = (1 << 63) - 1
# active defragmentation (replay.models.defrag)
CZ_DF_LAST_TS, CZ_DF_DUE, CZ_DF_CONSIDERED, CZ_DF_SHIFT, CZ_DF_SEEN = 10, 11, 12, 13, 14
# the zone's skip-hint state: compact_blockskip_flush (1: a direct compaction's scanners
# met, so the next reset_isolation_suitable clears the hints) and the scanners' first
# pageblocks __reset_isolation_suitable found (compact_init_migrate_pfn,
# compact_init_free_pfn; 0 until the first reset, as a booted zone has them)
CZ_BLOCKSKIP_FLUSH, CZ_INIT_MIGRATE, CZ_INIT_FREE = 16, 17, 18
# the running compact_control
CC_ORDER, CC_MODE, CC_WHOLE, CC_PROACTIVE, CC_MT = 20, 21, 22, 23, 24
CC_MIGRATE_PFN, CC_FREE_PFN, CC_NR_MIGRATE, CC_NR_FREE = 25, 26, 27, 28
CC_SCAN_M, CC_SCAN_F, CC_MOVED, CC_FAILED, CC_NUNITS = 29, 30, 31, 32, 33
CC_MIG_START, CC_FREE_START = 34, 35  # where the pass's scanners started (pfn)
# the compacting task's cpu (whose pcp list gets the migrated folios' old pages) and
# compact_zone's last_migrated_pfn (-1: none since the last drain)
CC_CPU, CC_LAST_MIGRATED = 36, 37
# the pass's capture_control while it is not running (a recorded pass between its
# batches): the order it captures at (-1: none, as kcompactd's and /proc passes) and the
# page it captured (pfn, -1 none). Running, it is Zone.capture.
CC_CAPC, CC_CAPC_PAGE = 38, 39
# cc->direct_compaction (1: a task's direct compaction; 0: kcompactd, /proc, proactive),
# cc->finish_pageblock (1: this round scans the rest of the pageblock it migrated from)
# and cc->search_order (fast_isolate_freepages' order to search first)
CC_DIRECT, CC_FINISH_PB, CC_SEARCH_ORDER = 40, 41, 42
# isolated units' offsets: COMPACT_CLUSTER_MAX pages' worth at most, a pageblock's when
# the round finishes one (cc->finish_pageblock)
CC_UNITS = 43
# A unit list entry below zero: a folio migrate_pages split (split_folios), its pages
# waiting for the pass after the batch: -1 - ((folio << CC_SPLIT_SHIFT) | its offset);
# CC_UNIT_DONE: a unit this migrate_pages call is done with.
CC_SPLIT_SHIFT = 30  # offsets below 1 << 30 pages (4 TiB zones), folios below 1 << 33
CC_UNIT_DONE = -(1 << 63)
# fast_find_migrateblock's cc->fast_search_fail and cc->fast_start_pfn (0 unset,
# FAST_START_DONE: ULONG_MAX)
CC_FAST_FAIL = CC_UNITS + PAGEBLOCK_PAGES
CC_FAST_START = CC_FAST_FAIL + 1
FAST_START_DONE = -1
# 1: migrate_pfn was set to a recorded batch's range: the kernel's fast_find_migrateblock
# chose it, and the model's next isolate_migratepages takes it as its own search's answer
CC_FAST_GIVEN = CC_FAST_START + 1
# the recorded free-scanner isolations of the running step already replayed (the next
# one's index in its ``scan`` array's list)
CC_FREE_GIVEN = CC_FAST_GIVEN + 1
NR_CZ = CC_FREE_GIVEN + 1

# A recorded pass's ``scan`` array (int64, pfns; -1 unknown): the scanners at its begin
# (0, 1) and end (2, 3), the step's migration range [lo, hi) (4, 5), then how many
# free-scanner isolations the step's batch made (SCAN_NFREE; -1: the trace records none,
# so the model's own free scanner chooses) and, from SCAN_FREE0, each as GIVEN_COLS
# values: its kind (GIVEN_*), [start, stop) pfns and the pages it took (nr_taken).
SCAN_NFREE = 6
SCAN_FREE0 = 7
GIVEN_COLS = 4
# isolate_freepages' linear scan of a pageblock; fast_isolate_around's of the pageblock
# around a fast pick; fast_isolate_freepages' pick ([min_pfn, free_pfn) and one block)
GIVEN_LINEAR, GIVEN_AROUND, GIVEN_FAST = 0, 1, 2


def new_cz(start_pfn: int, pages: int) -> np.ndarray:
    """The models' zone state as ``reset_cached_positions`` and a zeroed zone leave it."""
    cz = np.zeros(NR_CZ, np.int64)
    cz[CZ_MIG0] = cz[CZ_MIG1] = start_pfn
    cz[CZ_FREE] = (start_pfn + pages - 1) & ~(PAGEBLOCK_PAGES - 1)
    return cz


# -- intrusive lists (list_add / list_add_tail / list_del) ---------------------------
@njit(cache=True, inline="always", _nrt=False)
def list_add(o, li, to_tail, nxt, prv, head, tail):  # type: ignore[no-untyped-def]
    """Add block ``o`` at the head (or tail) of list ``li``."""
    if to_tail:
        t = tail[li]
        prv[o] = t
        nxt[o] = -1
        if t >= 0:
            nxt[t] = o
        else:
            head[li] = o
        tail[li] = o
    else:
        h = head[li]
        nxt[o] = h
        prv[o] = -1
        if h >= 0:
            prv[h] = o
        else:
            tail[li] = o
        head[li] = o


@njit(cache=True, inline="always", _nrt=False)
def list_del(o, li, nxt, prv, head, tail):  # type: ignore[no-untyped-def]
    """Remove block ``o`` from list ``li``."""
    p = prv[o]
    n = nxt[o]
    if p >= 0:
        nxt[p] = n
    else:
        head[li] = n
    if n >= 0:
        prv[n] = p
    else:
        tail[li] = p
    nxt[o] = -1
    prv[o] = -1


# -- page_alloc.c's small helpers ------------------------------------------------------
@njit(cache=True, inline="always", _nrt=False)
def buddy_merge_likely(pfn, k, start_pfn, pages, buddy_order):  # type: ignore[no-untyped-def]
    """``buddy_merge_likely``: is the parent's buddy a free block of order k + 1?

    Then the just-freed block (pfn, order k) goes to the list TAIL: it will
    probably merge soon. Never from order MAX_PAGE_ORDER - 1 up. The parent's
    first page must be in the zone (page_is_buddy's zone check).
    """
    if k >= MAX_PAGE_ORDER - 1:
        return False
    b = pfn ^ (np.int64(1) << k)
    h = pfn & b
    hbo = (h ^ (np.int64(1) << (k + 1))) - start_pfn
    return h >= start_pfn and hbo >= 0 and hbo < pages and buddy_order[hbo] == k + 1


@njit(cache=True, inline="always", _nrt=False)
def pageblock_start_pfn(pfn):  # type: ignore[no-untyped-def]
    """``pageblock_start_pfn``: the first pfn of pfn's pageblock."""
    return pfn & ~np.int64(PAGEBLOCK_PAGES - 1)


@njit(cache=True, inline="always", _nrt=False)
def pageblock_end_pfn(pfn):  # type: ignore[no-untyped-def]
    """``pageblock_end_pfn``: the first pfn after pfn's pageblock."""
    return pageblock_start_pfn(pfn) + PAGEBLOCK_PAGES


@njit(cache=True, inline="always", _nrt=False)
def pcp_allowed_order(k):  # type: ignore[no-untyped-def]
    """``pcp_allowed_order``: orders up to PAGE_ALLOC_COSTLY_ORDER and the THP order."""
    return k <= PAGE_ALLOC_COSTLY_ORDER or k == PAGEBLOCK_ORDER


@njit(cache=True, inline="always", _nrt=False)
def order_to_pindex(k, mt):  # type: ignore[no-untyped-def]
    """``order_to_pindex``."""
    if k > PAGE_ALLOC_COSTLY_ORDER:
        return 12 + (1 if mt == MIGRATE_MOVABLE else 0)
    return MIGRATE_PCPTYPES * k + mt


@njit(cache=True, inline="always", _nrt=False)
def pindex_to_order(p):  # type: ignore[no-untyped-def]
    """``pindex_to_order``."""
    if p >= 12:
        return PAGEBLOCK_ORDER
    return p // MIGRATE_PCPTYPES


@njit(cache=True, inline="always", _nrt=False)
def zone_free_pages(nr_free):  # type: ignore[no-untyped-def]
    """NR_FREE_PAGES (pages) from nr_free per order."""
    free = np.int64(0)
    for j in range(NR_PAGE_ORDERS):
        free += nr_free[j] << j
    return free


# -- prefetch -------------------------------------------------------------------------
# Events ahead whose object the replay kernels prefetch (``prefetch_object``). An object's
# ``placed`` (8 bytes) and its ``obj_mt``/``obj_order``/``obj_flags`` row (4 bytes) are a
# cache miss each for a free of a random object; the kernels are otherwise bound by those
# misses, one event after another. 16 events ahead covers the miss at 20-30 M events/s.
PREFETCH_EVENTS = 16


@intrinsic
def prefetch(typingctx: Any, arr: Any, idx: Any) -> Any:
    """``prefetch(arr, idx)``: ``__builtin_prefetch(&arr[idx])`` (llvm.prefetch: read, keep
    in all cache levels), as ``prefetch()`` of include/linux/prefetch.h. A hint: it changes
    no value and never faults, whatever ``idx`` is; no bounds check, no wraparound."""
    if not isinstance(arr, types.Array) or arr.ndim != 1 or not isinstance(idx, types.Integer):
        return None
    sig = types.void(arr, idx)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        aryty, idxty = signature.args
        ary = context.make_array(aryty)(context, builder, args[0])
        ind = context.cast(builder, args[1], idxty, types.intp)
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [ind], wraparound=False,
                                       boundscheck=False)  # fmt: skip
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        # rw 0 (read), locality 3 (keep in every level), cache type 1 (data)
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, inline="always", _nrt=False)
def prefetch_object(x, ob):  # type: ignore[no-untyped-def]
    """Prefetch what an event on object ``x`` reads of it first: ``placed[x]`` and its
    type/order/flags row. Any ``x`` in range; a hint only."""
    prefetch(ob.placed, x)
    prefetch(ob.obj_mt, x)


@njit(cache=True, _nrt=False)
def emit(z, me, counters, seq, kind, order, mode, a, b, c, d, sm, sf, moved, failed, evicted,
         result):  # type: ignore[no-untyped-def]  # fmt: skip
    """One model_events row (dropped, but counted, when the buffer is full).

    a..d: start_pfn, end_pfn, migrate_pfn, free_pfn; sm/sf: pages scanned by
    the migration and free scanners; moved, failed, evicted: pages.
    """
    n = counters[C_ME]
    if n < me.shape[0]:
        me[n, 0] = seq
        me[n, 1] = kind
        me[n, 2] = order
        me[n, 3] = mode
        me[n, 4] = a
        me[n, 5] = b
        me[n, 6] = c
        me[n, 7] = d
        me[n, 8] = sm
        me[n, 9] = sf
        me[n, 10] = moved
        me[n, 11] = failed
        me[n, 12] = evicted
        me[n, 13] = result
        me[n, 14] = zone_free_pages(z.nr_free)
        me[n, 15] = 0
    counters[C_ME] = n + 1
