"""The kernel's real ``compact_memory`` next to the model's, from the same starting state.

A capture of ``echo 1 > /proc/sys/vm/compact_memory`` (traces/compact-6.18)
records the kernel compacting each zone between an ``mm_compaction_begin``
and an ``mm_compaction_end`` event. :func:`compare` takes the Normal zone's
pair, rebuilds the observed buddy state at its begin event (replay.engine.observed:
the before-kpageflags, the snapshot window settled, then every recorded event
up to the begin line), loads it into a model zone, runs the one-shot
whole-zone compaction model (replay.models.compaction.compact_memory) and
puts the model's result next to the kernel's: pages migrated, pages isolated
and not migrated, the scanners' start and end positions, pages scanned, and
free blocks per order afterwards (the model's, the observed replay's at the
end event, and the after-snapshot's buddyinfo). docs/kernel-compaction.md
has the measured table and explains each gap.

Units: pfn (absolute page frame numbers), pages (4 KiB), orders (blocks of
``1 << order`` pages), trace lines (1-based line numbers of the trace text).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from replay.engine.observed import (
    AFTER_BEGIN,
    BEFORE_BEGIN,
    BEFORE_END,
    INCONSISTENCIES,
    NF,
    UNKNOWN,
    HiddenFree,
    initial_state,
    kpageflags_bits,
    marker_line,
    pcp_page_count,
    settle_snapshot_window,
)
from replay.errors import UsageError
from replay.models.compaction import compact_memory
from replay.models.internal import F_MOVABLE, ME_COLS, MIGRATE_MOVABLE, MIGRATE_UNMOVABLE, RESULTS
from replay.models.zone import ZoneState
from replay.store import Store
from replay.trace.snapshots import KPF_LRU

# /proc/kpageflags bits (include/uapi/linux/kernel-page-flags.h)
KPF_COMPOUND_HEAD = 15
KPF_COMPOUND_TAIL = 16
PAGEBLOCK_ORDER = 9

# Where each page's type came from (page_source values, see ObservedStart)
SRC_FREE, SRC_PCP, SRC_EVENT, SRC_FOLIO, SRC_KPF_LRU, SRC_KPF_OTHER, SRC_STALE = range(7)
SOURCES = ("free", "pcp", "event", "kpageflags_folio", "kpageflags_lru", "kpageflags_other",
           "stale")  # fmt: skip


@dataclass
class KernelCompaction:
    """One ``mm_compaction_begin``/``mm_compaction_end`` pair of the trace (pfn, lines)."""

    begin_line: int
    end_line: int
    begin_seq: int | None  # the canonical seq recorded with the begin event
    end_seq: int | None
    zone_start: int
    zone_end: int
    migrate_start: int  # the scanners' start positions (the begin event)
    free_start: int
    migrate_end: int  # and their end positions (the end event)
    free_end: int
    mode: str
    status: str
    pid: int | None  # the compacting task


@dataclass
class ObservedStart:
    """The observed zone at a line, typed for the compaction model.

    ``blk`` (int8 per page of the zone): order of the free block starting
    there, else -1. ``page_mt`` (int8 per page): -1 for free pages and for
    pages on pcp lists (see :func:`observed_start`), else the migratetype the
    allocated page counts as. Units (the model's movable objects): their
    first page's offset ``unit_off``, order ``unit_order``, migratetype
    ``unit_mt`` and whether compaction may move them ``unit_movable``.
    ``page_source`` (int8 per page): which SOURCES entry typed the page.
    """

    start_pfn: int
    pages: int
    blk: np.ndarray
    page_mt: np.ndarray
    page_source: np.ndarray
    unit_off: np.ndarray
    unit_order: np.ndarray
    unit_mt: np.ndarray
    unit_movable: np.ndarray
    folios_irregular: int  # kpageflags compound LRU runs that are no whole aligned folio (pages)
    # pfns of the pageblocks whose first page heads a compound page of order >= 9, LRU or not
    # (pageblock_skip_persistent: the kernel's migration scanner skips them without a trace)
    persistent_skip: np.ndarray

    def blk_free_pages(self) -> np.ndarray:
        """1 for each page of a free block, else 0 (int64 per page)."""
        out = np.zeros(self.pages, np.int64)
        for o in np.flatnonzero(self.blk >= 0).tolist():
            out[o : o + (1 << int(self.blk[o]))] = 1
        return out


def _hex(v: Any) -> int:
    return int(str(v), 16) if str(v).lower().startswith("0x") else int(v)


def compactions(store: Store, trace_id: int) -> list[KernelCompaction]:
    """The trace's begin/end pairs, in line order (each begin with the next end of its zone)."""
    rows = store.query(
        """SELECT line, seq, pid, event, args FROM aux_events WHERE trace_id = $t
             AND event IN ('mm_compaction_begin', 'mm_compaction_end') ORDER BY line""",
        {"t": trace_id},
    ).to_pylist()
    out: list[KernelCompaction] = []
    open_: dict[int, dict[str, Any]] = {}
    for r in rows:
        a = json.loads(r["args"]) if r["args"] else {}
        zs = _hex(a["zone_start"])
        if r["event"] == "mm_compaction_begin":
            open_[zs] = {**r, "args": a}
            continue
        b = open_.pop(zs, None)
        if b is None:
            continue
        ba = b["args"]
        out.append(KernelCompaction(
            begin_line=int(b["line"]), end_line=int(r["line"]),
            begin_seq=None if b["seq"] is None else int(b["seq"]),
            end_seq=None if r["seq"] is None else int(r["seq"]),
            zone_start=zs, zone_end=_hex(ba["zone_end"]),
            migrate_start=_hex(ba["migrate_pfn"]), free_start=_hex(ba["free_pfn"]),
            migrate_end=_hex(a["migrate_pfn"]), free_end=_hex(a["free_pfn"]),
            mode=str(ba.get("mode", "")), status=str(a.get("status", "")),
            pid=None if b["pid"] is None else int(b["pid"]),
        ))  # fmt: skip
    return out


def zone_info(store: Store, trace_id: int, zone: str = "Normal") -> dict[str, Any]:
    """The zone's before-snapshot zoneinfo row: start_pfn, managed pages, watermarks (pages)."""
    row = store.one(
        """SELECT zone, start_pfn, spanned, managed, "min", low, high FROM snap_zoneinfo
           WHERE trace_id = $t AND zone = $z AND managed > 0 AND start_pfn IS NOT NULL
           ORDER BY snapshot = 'before' DESC, node LIMIT 1""",
        {"t": trace_id, "z": zone},
    )
    if row is None:
        raise UsageError(f"the trace has no zoneinfo snapshot of a populated {zone} zone")
    keys = ("zone", "start_pfn", "spanned", "managed", "min", "low", "high")
    return dict(zip(keys, row, strict=True))


def kernel_sums(store: Store, trace_id: int, kc: KernelCompaction) -> dict[str, int]:
    """The kernel's own counts between the begin and end lines (pages; isolate events
    restricted to ranges inside the zone, migrate events to reason=compaction)."""
    row = store.one(
        r"""WITH e AS (
              SELECT event, args,
                     hexint(regexp_extract(args->>'range', '\((0x[0-9a-fA-F]+) ~', 1)) AS lo
              FROM aux_events WHERE trace_id = $t AND line > $b AND line < $e)
            SELECT
              sum(CASE WHEN event = 'mm_migrate_pages' AND args->>'reason' = 'compaction'
                       THEN TRY_CAST(args->>'nr_succeeded' AS BIGINT) END),
              sum(CASE WHEN event = 'mm_migrate_pages' AND args->>'reason' = 'compaction'
                       THEN TRY_CAST(args->>'nr_failed' AS BIGINT) END),
              sum(CASE WHEN event = 'mm_migrate_pages' AND args->>'reason' = 'compaction'
                       THEN TRY_CAST(args->>'nr_thp_succeeded' AS BIGINT) END),
              sum(CASE WHEN event = 'mm_migrate_pages' AND args->>'reason' = 'compaction'
                       THEN TRY_CAST(args->>'nr_split' AS BIGINT) END),
              sum(CASE WHEN event = 'mm_compaction_migratepages'
                       THEN TRY_CAST(args->>'nr_migrated' AS BIGINT) END),
              sum(CASE WHEN event = 'mm_compaction_migratepages'
                       THEN TRY_CAST(args->>'nr_failed' AS BIGINT) END),
              sum(CASE WHEN event = 'mm_compaction_isolate_migratepages' AND lo >= $zs
                       AND lo < $ze THEN TRY_CAST(args->>'nr_scanned' AS BIGINT) END),
              sum(CASE WHEN event = 'mm_compaction_isolate_migratepages' AND lo >= $zs
                       AND lo < $ze THEN TRY_CAST(args->>'nr_taken' AS BIGINT) END),
              sum(CASE WHEN event = 'mm_compaction_isolate_freepages' AND lo >= $zs
                       AND lo < $ze THEN TRY_CAST(args->>'nr_scanned' AS BIGINT) END),
              sum(CASE WHEN event = 'mm_compaction_isolate_freepages' AND lo >= $zs
                       AND lo < $ze THEN TRY_CAST(args->>'nr_taken' AS BIGINT) END),
              count(*) FILTER (WHERE event = 'mm_compaction_isolate_migratepages'),
              count(*) FILTER (WHERE event = 'mm_compaction_isolate_freepages'),
              count(*) FILTER (WHERE event = 'mm_compaction_begin'),
              count(*) FILTER (WHERE event = 'mm_migrate_pages')
            FROM e""",
        {"t": trace_id, "b": kc.begin_line, "e": kc.end_line, "zs": kc.zone_start,
         "ze": kc.zone_end},
    )  # fmt: skip
    keys = ("migrated", "migrate_failed", "thp_migrated", "split", "compaction_migrated",
            "isolated_not_migrated", "scanned_migrate", "isolated_migrate", "scanned_free",
            "isolated_free", "isolate_migrate_calls", "isolate_free_calls", "other_begins",
            "migrate_calls")  # fmt: skip
    assert row is not None
    return {k: int(v or 0) for k, v in zip(keys, row, strict=True)}


def _events_between(
    store: Store, trace_id: int, lo: int, hi: int | None, pid: int | None
) -> dict[str, int]:
    """Allocator events with lo < line < hi (None: to the end), by task ``pid`` (the
    compacting task) and by the others (counts; pages)."""
    row = store.one(
        """SELECT
             count(*) FILTER (WHERE op = 'alloc' AND mine),
             coalesce(sum(1::BIGINT << "order") FILTER (WHERE op = 'alloc' AND mine), 0),
             count(*) FILTER (WHERE op = 'free' AND mine),
             coalesce(sum(1::BIGINT << "order") FILTER (WHERE op = 'free' AND mine), 0),
             count(*) FILTER (WHERE op = 'alloc' AND NOT mine),
             coalesce(sum(1::BIGINT << "order") FILTER (WHERE op = 'alloc' AND NOT mine), 0),
             count(*) FILTER (WHERE op = 'alloc' AND NOT mine AND "order" = 9),
             count(*) FILTER (WHERE op = 'free' AND NOT mine),
             coalesce(sum(1::BIGINT << "order") FILTER (WHERE op = 'free' AND NOT mine), 0)
           FROM (SELECT op, "order", coalesce(pid = $pid, false) AS mine FROM events
                 WHERE trace_id = $t AND line > $lo AND ($hi IS NULL OR line < $hi))""",
        {"t": trace_id, "lo": lo, "hi": hi, "pid": pid},
    )
    assert row is not None
    keys = (
        "task_allocs",
        "task_alloc_pages",
        "task_frees",
        "task_free_pages",
        "other_allocs",
        "other_alloc_pages",
        "other_order9_allocs",
        "other_frees",
        "other_free_pages",
    )
    return dict(zip(keys, (int(v) for v in row), strict=True))


def _window_allocs(store: Store, trace_id: int, first: int | None, last: int) -> Any:
    """Canonical events with a pfn in first < line < last, in line order (Arrow)."""
    return store.query(
        """SELECT line, op, pfn, "order", migratetype FROM events
           WHERE trace_id = $t AND pfn IS NOT NULL AND ($f IS NULL OR line > $f) AND line < $l
           ORDER BY line""",
        {"t": trace_id, "f": first, "l": last},
    )


def observed_start(
    store: Store,
    trace_id: int,
    start_pfn: int,
    pages: int,
    blk_all: np.ndarray,
    pcp_all: np.ndarray,
    base: int,
    first_line: int | None,
    line: int,
    folios: bool = True,
) -> ObservedStart:
    """Type every page of [start_pfn, start_pfn + pages) for the model, at ``line``.

    ``blk_all``/``pcp_all``/``base``: the observed state (replay.engine.observed)
    after the events before ``line``. Free pages are those of free blocks
    wholly inside the range. Pages on pcp lists there (known from the replay)
    are neither free nor movable: the kernel's scanners step over them (not
    PageBuddy, not on an LRU list), so they get no object, and they do not
    vote on their pageblock's type (page_mt -1 without a free block): they
    are free pages parked per CPU, not evidence of unmovable use. Pages
    the kpageflags snapshot counts as on pcp lists before the trace cannot be
    told from other non-LRU pages: they stay UNMOVABLE, as in
    ``replay.engine.observed.fork_state``.

    Every other page is allocated; its unit (object) comes from, in order:
    the last recorded allocation covering it after ``first_line`` (the
    start of the before-snapshot window: kpageflags is read inside it) (order
    and migratetype of the event; movable when MOVABLE); else the
    before-kpageflags: a compound LRU folio (KPF_COMPOUND_HEAD + tails,
    naturally aligned, a power of two pages) is one unit of its order, so
    the model skips order-9 folios and moves smaller ones whole as the
    kernel does; other LRU pages are order-0 movable units; the rest are
    order-0 UNMOVABLE units. Pages last touched by a recorded free but not
    free or on a pcp list in the replay (taken by an untraced path) are
    UNMOVABLE. ``folios`` False: no kpageflags folio units (every LRU page
    of one is an order-0 unit), to measure what the folio units change.
    """
    lo, hi = start_pfn - base, start_pfn + pages - base
    blk = blk_all[lo:hi].copy()
    free = np.zeros(pages, np.bool_)
    for o in np.flatnonzero(blk >= 0):
        k = int(blk[o])
        if o + (1 << k) > pages:
            blk[o] = -1
        else:
            free[o : o + (1 << k)] = True
    pc = pcp_all[lo:hi]
    pcp = np.zeros(pages, np.bool_)
    for o in np.flatnonzero((pc > 0) & (pc < UNKNOWN)):
        pcp[o : o + (1 << (int(pc[o]) - 1))] = True
    pcp &= ~free
    taken = ~free & ~pcp

    # the last recorded event per page (index into ev, -1: none), and whether it freed
    ev = _window_allocs(store, trace_id, first_line, line)
    e_pfn = ev.column("pfn").to_numpy().astype(np.int64)
    e_ord = ev.column("order").to_numpy().astype(np.int64)
    e_alloc = np.array([s == "alloc" for s in ev.column("op").to_pylist()], np.bool_)
    e_mt = ev.column("migratetype").to_numpy().astype(np.int64)
    last = np.full(pages, -1, np.int64)
    for i in range(e_pfn.shape[0]):
        o = int(e_pfn[i]) - start_pfn
        if 0 <= o < pages:
            last[o : min(pages, o + (1 << int(e_ord[i])))] = i

    page_mt = np.full(pages, -1, np.int8)
    source = np.full(pages, SRC_FREE, np.int8)
    source[pcp] = SRC_PCP
    in_unit = ~taken  # pages already settled (free, pcp, or in a unit)
    u_off: list[np.ndarray] = []
    u_ord: list[np.ndarray] = []
    u_mt: list[np.ndarray] = []

    def add_units(off: np.ndarray, order: np.ndarray, mt: np.ndarray, src: int) -> None:
        u_off.append(off.astype(np.int64))
        u_ord.append(order.astype(np.int64))
        u_mt.append(mt.astype(np.int64))
        for o, k, t in zip(off.tolist(), order.tolist(), mt.tolist(), strict=True):
            page_mt[o : o + (1 << k)] = t
            in_unit[o : o + (1 << k)] = True
            source[o : o + (1 << k)] = src

    # 1. recorded allocations still holding all their pages
    heads = []
    for i in np.flatnonzero(e_alloc).tolist():
        o = int(e_pfn[i]) - start_pfn
        n = 1 << int(e_ord[i])
        if o < 0 or o + n > pages:
            continue
        if (last[o : o + n] == i).all() and taken[o : o + n].all():
            heads.append(i)
    h = np.array(heads, np.int64)
    if h.size:
        add_units(e_pfn[h] - start_pfn, e_ord[h], e_mt[h].clip(0, 2), SRC_EVENT)
    # pieces of recorded allocations (rare): order-0 pages of the event's type
    touched_alloc = (last >= 0) & taken & ~in_unit
    piece = touched_alloc & e_alloc[np.maximum(last, 0)]
    off = np.flatnonzero(piece)
    if off.size:
        add_units(off, np.zeros(off.size), e_mt[last[off]].clip(0, 2), SRC_EVENT)
    stale = np.flatnonzero(touched_alloc & ~piece)
    if stale.size:
        add_units(stale, np.zeros(stale.size), np.zeros(stale.size), SRC_STALE)

    # 2. the before-kpageflags: compound LRU folios, then LRU pages, then the rest
    lru, chead, ctail = kpageflags_bits(store, trace_id, start_pfn, start_pfn + pages,
                                  (KPF_LRU, KPF_COMPOUND_HEAD, KPF_COMPOUND_TAIL))  # fmt: skip
    non_tail = np.flatnonzero(~ctail)

    def run_end(heads: np.ndarray) -> np.ndarray:
        """The offset after each head's run of compound tails."""
        nxt = np.searchsorted(non_tail, heads + 1)
        return np.where(nxt < non_tail.size, non_tail[np.minimum(nxt, non_tail.size - 1)], pages)

    pb_heads = np.flatnonzero(chead & (((np.arange(pages) + start_pfn) % 512) == 0))
    persistent_skip = pb_heads[run_end(pb_heads) - pb_heads >= 512] + start_pfn
    fh = np.flatnonzero(chead & lru) if folios else np.zeros(0, np.int64)
    flen = run_end(fh) - fh
    regular = (flen > 1) & ((flen & (flen - 1)) == 0) & (((fh + start_pfn) % flen) == 0)
    regular &= flen <= (1 << (NF - 1))
    ok = []
    for j in np.flatnonzero(regular).tolist():
        a, n = int(fh[j]), int(flen[j])
        if taken[a : a + n].all() and not in_unit[a : a + n].any():
            ok.append(j)
    folios_irregular = int(flen[~regular].sum())
    if ok:
        sel = np.array(ok, np.int64)
        add_units(fh[sel], np.log2(flen[sel]).astype(np.int64),
                  np.full(sel.size, MIGRATE_MOVABLE), SRC_FOLIO)  # fmt: skip
    rest = taken & ~in_unit
    off = np.flatnonzero(rest & lru)
    if off.size:
        u_off.append(off)
        u_ord.append(np.zeros(off.size, np.int64))
        u_mt.append(np.full(off.size, MIGRATE_MOVABLE, np.int64))
        page_mt[off] = MIGRATE_MOVABLE
        source[off] = SRC_KPF_LRU
    off = np.flatnonzero(rest & ~lru)
    if off.size:
        u_off.append(off)
        u_ord.append(np.zeros(off.size, np.int64))
        u_mt.append(np.full(off.size, MIGRATE_UNMOVABLE, np.int64))
        page_mt[off] = MIGRATE_UNMOVABLE
        source[off] = SRC_KPF_OTHER

    unit_off = np.concatenate(u_off) if u_off else np.zeros(0, np.int64)
    unit_order = np.concatenate(u_ord) if u_ord else np.zeros(0, np.int64)
    unit_mt = np.concatenate(u_mt) if u_mt else np.zeros(0, np.int64)
    return ObservedStart(
        start_pfn=start_pfn, pages=pages, blk=blk, page_mt=page_mt, page_source=source,
        unit_off=unit_off, unit_order=unit_order, unit_mt=unit_mt,
        unit_movable=unit_mt == MIGRATE_MOVABLE, folios_irregular=folios_irregular,
        persistent_skip=persistent_skip.astype(np.int64),
    )  # fmt: skip


def pageblock_types(obs: ObservedStart, non_movable: int | None) -> np.ndarray:
    """Each pageblock's type (int8 per pageblock of the zone) for the model.

    ``non_movable`` None: the vote of ``ZoneState.load`` (UNMOVABLE where the
    pageblock's unmovable pages outnumber its movable ones). Else exactly that
    many pageblocks are UNMOVABLE (the snapshot's count of non-MOVABLE
    pageblocks, pagetypeinfo "Number of blocks type"): those with the largest
    share of unmovable among their allocated pages (free and pcp pages do not
    count), ties to the ones with fewer free pages; the rest are MOVABLE. For
    compaction only MOVABLE or not matters (the free scanner's
    ``suitable_migration_target``), so RECLAIMABLE and HIGHATOMIC count as
    UNMOVABLE. An order-10 free block gives its second pageblock its first
    one's type, as ``ZoneState.load`` does.
    """
    pb0 = obs.start_pfn >> PAGEBLOCK_ORDER
    npb = ((obs.start_pfn + obs.pages - 1) >> PAGEBLOCK_ORDER) - pb0 + 1
    idx = ((np.arange(obs.pages, dtype=np.int64) + obs.start_pfn) >> PAGEBLOCK_ORDER) - pb0
    unmov = np.bincount(idx, weights=obs.page_mt == MIGRATE_UNMOVABLE, minlength=npb)
    mov = np.bincount(idx, weights=obs.page_mt == MIGRATE_MOVABLE, minlength=npb)
    if non_movable is None:
        pb_mt = np.where(unmov > mov, MIGRATE_UNMOVABLE, MIGRATE_MOVABLE).astype(np.int8)
    else:
        free = np.bincount(idx, weights=obs.blk_free_pages(), minlength=npb)
        share = unmov / np.maximum(unmov + mov, 1)
        rank = np.lexsort((free, -share))
        pb_mt = np.full(npb, MIGRATE_MOVABLE, np.int8)
        pb_mt[rank[: max(0, min(non_movable, npb))]] = MIGRATE_UNMOVABLE
    for o in np.flatnonzero(obs.blk > PAGEBLOCK_ORDER):
        first = ((int(o) + obs.start_pfn) >> PAGEBLOCK_ORDER) - pb0
        pb_mt[first + 1 : first + (1 << (int(obs.blk[o]) - PAGEBLOCK_ORDER))] = pb_mt[first]
    return pb_mt


def run_model(
    obs: ObservedStart,
    wmark: tuple[int, int, int],
    pb_mt: np.ndarray | None = None,
    seq: int = -1,
) -> tuple[ZoneState, dict[str, int]]:
    """Load the observed start into a model zone and run ``compact_memory`` on it.

    ``pb_mt``: the pageblock types (:func:`pageblock_types`); None: the
    vote of ``ZoneState.load``. Every unit becomes an object (order, type,
    F_MOVABLE when movable) whose unit starts at its offset (``pg_obj``), as
    ``replay run --start observed`` sets them up. Returns the zone (after
    compaction) and the model event's columns (ME_COLS: pfn, pages) plus
    ``free_pages_before`` (pages).
    """
    n = int(obs.unit_off.shape[0])
    # (room for every movable unit's pages as split pieces)
    zone = ZoneState(obs.start_pfn, obs.pages, grouping=True, wmark=wmark,
                     max_objects=max(n, 1), split_room=obs.pages)  # fmt: skip
    zone.load(obs.blk, obs.page_mt, pb_mt)
    zone.adopt(np.arange(n, dtype=np.int64), obs.unit_off, obs.unit_order, obs.unit_mt,
               np.where(obs.unit_movable, F_MOVABLE, 0))  # fmt: skip
    before = zone.free_pages()
    zone.counters[:] = 0
    compact_memory(np.int64(seq), zone.arrays, zone.prm, zone.objects, zone.cz, zone.counters,
                     zone.me)  # fmt: skip
    row = {name: int(v) for name, v in zip(ME_COLS, zone.me[0], strict=True)}
    row["free_pages_before"] = before
    return zone, row


def _nr_free(blk: np.ndarray) -> list[int]:
    """Free blocks per order of a blk_order slice."""
    b = blk[blk >= 0].astype(np.int64)
    return [int(v) for v in np.bincount(b, minlength=NF)[:NF]]


def _free_pages(nr: list[int]) -> int:
    return sum(v << k for k, v in enumerate(nr))


def snapshot_pageblocks(store: Store, trace_id: int, zone: str) -> dict[str, int] | None:
    """The before-snapshot's pageblocks of the zone by type (pagetypeinfo), or None."""
    rows = store.query(
        """SELECT mt, sum(nr_pageblocks) AS n FROM snap_pageblocks
           WHERE trace_id = $t AND snapshot = 'before' AND zone = $z GROUP BY mt""",
        {"t": trace_id, "z": zone},
    ).to_pylist()
    if not rows:
        return None
    movable = sum(int(r["n"]) for r in rows if int(r["mt"]) in (MIGRATE_MOVABLE, 4))  # + CMA
    return {"movable": movable, "non_movable": sum(int(r["n"]) for r in rows) - movable}


# The model runs compared: (name, pageblock types from the snapshot's counts, folio units)
VARIANTS = (("model", True, True), ("vote pageblocks", False, True),
            ("no folio units", True, False), ("vote, no folio units", False, False))  # fmt: skip


def compare(store: Store, trace: str, zone: str = "Normal") -> dict[str, Any]:
    """The model's one-shot compaction next to the kernel's, for one zone of a capture.

    Returns ``summary`` (which compaction, how the start was typed, the
    kernel's sums, timings in seconds), ``rows`` (one dict per compared
    quantity: ``metric``; ``model``; ``kernel``; ``rebuilt``, the observed
    replay, at the begin event for the start rows and at the end event for
    the end rows; ``source``, where the kernel number comes from),
    ``variants`` (the model's key numbers under other starting assumptions,
    VARIANTS) and ``gaps`` (each gap explained with the numbers measured).
    The ``model`` column is the first variant: pageblock types calibrated to
    the snapshot's per-type counts, compound LRU folios as units.
    """
    t0 = time.perf_counter()
    trace_id = store.trace_id(trace)
    zi = zone_info(store, trace_id, zone)
    start, pages = int(zi["start_pfn"]), int(zi["managed"])
    pairs = [c for c in compactions(store, trace_id) if c.zone_start == start]
    if not pairs:
        raise UsageError(f"the trace has no mm_compaction_begin/end pair of the {zone} zone "
                         f"(zone_start {start:#x})")  # fmt: skip
    kc = pairs[0]
    wmark = (int(zi["min"]), int(zi["low"]), int(zi["high"]))
    pbs = snapshot_pageblocks(store, trace_id, zone)

    # the observed state at the begin event
    hidden = HiddenFree()
    _zones, base, blk_order, pcp, zlo, zhi = initial_state(store, trace_id, hidden=hidden)
    zb = (zlo, zhi, base, blk_order, pcp)
    settle_snapshot_window(store, trace_id, zb, hidden)
    first = marker_line(store, trace_id, BEFORE_END)
    incons = np.zeros(len(INCONSISTENCIES), np.int64)
    n_pre = hidden.apply(first, kc.begin_line, zb, incons)
    t_obs = time.perf_counter()
    # typing looks at the events from the snapshot window's start: kpageflags is read in it
    opened = marker_line(store, trace_id, BEFORE_BEGIN)
    typed = {f: observed_start(store, trace_id, start, pages, blk_order, pcp, base,
                               first if opened is None else opened, kc.begin_line, folios=f)
             for f in (True, False)}  # fmt: skip
    obs = typed[True]
    nr_begin = _nr_free(obs.blk)
    t_typed = time.perf_counter()
    seq = -1 if kc.begin_seq is None else kc.begin_seq
    runs: dict[str, tuple[ZoneState, dict[str, int], np.ndarray]] = {}
    for name, calibrated, folios in VARIANTS:
        o = typed[folios]
        pb_mt = pageblock_types(o, pbs["non_movable"] if calibrated and pbs else None)
        z, me_v = run_model(o, wmark, pb_mt, seq)
        runs[name] = (z, me_v, pb_mt)
    mz, me, pb_main = runs[VARIANTS[0][0]]
    t_model = time.perf_counter()
    nr_model = [int(v) for v in mz.nr_free]
    # the observed state at the end event (the same arrays, replayed on)
    incons_during = np.zeros(len(INCONSISTENCIES), np.int64)
    n_during = hidden.apply(kc.begin_line, kc.end_line + 1, zb, incons_during)
    lo, hi = start - base, start + pages - base
    nr_end = _nr_free(blk_order[lo:hi])
    pcp_end = pcp_page_count(pcp[lo:hi])
    kern = kernel_sums(store, trace_id, kc)
    during = _events_between(store, trace_id, kc.begin_line, kc.end_line, kc.pid)
    after_end = _events_between(
        store, trace_id, kc.end_line, marker_line(store, trace_id, AFTER_BEGIN), kc.pid
    )
    nr_after = _buddyinfo(store, trace_id, zone, "after")
    free_after = None if nr_after is None else _free_pages(nr_after)

    rows: list[dict[str, Any]] = []

    def row(metric: str, model: int | None, kernel: int | None, rebuilt: int | None,
            source: str) -> None:  # fmt: skip
        rows.append({"metric": metric, "model": model, "kernel": kernel, "rebuilt": rebuilt,
                     "source": source})  # fmt: skip

    end_src = "kernel: buddyinfo after; rebuilt: observed replay at mm_compaction_end"
    row("zone start pfn", start, kc.zone_start, None, "mm_compaction_begin zone_start")
    row("zone end pfn", start + pages, kc.zone_end, None, "mm_compaction_begin zone_end")
    row(
        "migrate scanner start pfn",
        me["start_pfn"],
        kc.migrate_start,
        None,
        "mm_compaction_begin migrate_pfn",
    )
    row(
        "free scanner start pfn", me["end_pfn"], kc.free_start, None, "mm_compaction_begin free_pfn"
    )
    row(
        "migrate scanner end pfn",
        me["migrate_pfn"],
        kc.migrate_end,
        None,
        "mm_compaction_end migrate_pfn",
    )
    row("free scanner end pfn", me["free_pfn"], kc.free_end, None, "mm_compaction_end free_pfn")
    row("pages migrated", me["moved"], kern["migrated"], None, "sum mm_migrate_pages nr_succeeded")
    row(
        "pages isolated for migration",
        me["moved"] + me["failed"],
        kern["isolated_migrate"],
        None,
        "sum mm_compaction_isolate_migratepages nr_taken",
    )
    row(
        "pages isolated, not migrated",
        me["failed"],
        kern["isolated_not_migrated"],
        None,
        "sum mm_compaction_migratepages nr_failed",
    )
    row("pages failed migration", 0, kern["migrate_failed"], None, "sum mm_migrate_pages nr_failed")
    row("large folios split", mz.splits, kern["split"], None, "sum mm_migrate_pages nr_split")
    row(
        "migrate scanner pages scanned",
        me["scanned_migrate"],
        kern["scanned_migrate"],
        None,
        "sum mm_compaction_isolate_migratepages nr_scanned",
    )
    row(
        "free scanner pages scanned",
        me["scanned_free"],
        kern["scanned_free"],
        None,
        "sum mm_compaction_isolate_freepages nr_scanned",
    )
    row(
        "free pages isolated as targets",
        None,
        kern["isolated_free"],
        None,
        "sum mm_compaction_isolate_freepages nr_taken",
    )
    row(
        "MOVABLE pageblocks",
        int(np.count_nonzero(pb_main == MIGRATE_MOVABLE)),
        None if pbs is None else pbs["movable"],
        None,
        "pagetypeinfo before",
    )
    row(
        "free pages at begin",
        me["free_pages_before"],
        None,
        _free_pages(nr_begin),
        "rebuilt: observed replay at mm_compaction_begin",
    )
    row("free pages at end", mz.free_pages(), free_after, _free_pages(nr_end), end_src)
    for k in range(NF):
        row(
            f"free blocks order {k} at end",
            nr_model[k],
            None if nr_after is None else nr_after[k],
            nr_end[k],
            end_src,
        )

    variants = []
    for name, calibrated, folios in VARIANTS:
        z, m, pb = runs[name]
        variants.append({
            "variant": name, "pageblocks": "snapshot counts" if calibrated else "vote",
            "folio_units": folios,
            "movable_pageblocks": int(np.count_nonzero(pb == MIGRATE_MOVABLE)),
            "migrated": m["moved"], "not_migrated": m["failed"], "split": z.splits,
            "migrate_end_pfn": m["migrate_pfn"], "free_end_pfn": m["free_pfn"],
            "scanned_migrate": m["scanned_migrate"], "scanned_free": m["scanned_free"],
            "order9_end": int(z.nr_free[9]), "order10_end": int(z.nr_free[10]),
        })  # fmt: skip
    variants.append({
        "variant": "kernel", "pageblocks": "real", "folio_units": True,
        "movable_pageblocks": None if pbs is None else pbs["movable"],
        "migrated": kern["migrated"], "not_migrated": kern["isolated_not_migrated"],
        "split": kern["split"], "migrate_end_pfn": kc.migrate_end, "free_end_pfn": kc.free_end,
        "scanned_migrate": kern["scanned_migrate"], "scanned_free": kern["scanned_free"],
        "order9_end": nr_end[9], "order10_end": nr_end[10],
    })  # fmt: skip

    src = np.bincount(obs.page_source.astype(np.int64), minlength=len(SOURCES))
    movable = obs.unit_movable
    by_order = np.bincount(obs.unit_order[movable], minlength=NF)
    ts = store.one(
        "SELECT max(ts_ns) - min(ts_ns) FROM aux_events WHERE trace_id = $t AND line IN ($b, $e)",
        {"t": trace_id, "b": kc.begin_line, "e": kc.end_line},
    )
    summary: dict[str, Any] = {
        "trace": store.trace_row(trace_id)["name"], "zone": zone,
        "zone_start_pfn": start, "zone_pages": pages, "wmark_min_low_high": list(wmark),
        "begin_line": kc.begin_line, "end_line": kc.end_line,
        "begin_seq": kc.begin_seq, "end_seq": kc.end_seq,
        "duration_ms": None if ts is None or ts[0] is None else round(int(ts[0]) / 1e6, 1),
        "compacting_pid": kc.pid,
        "kernel_mode": kc.mode, "kernel_status": kc.status,
        "model_result": RESULTS[me["result"]],
        "events_replayed_to_begin": n_pre,
        "inconsistencies_to_begin": _nonzero(incons),
        "events_replayed_during": n_during,
        "inconsistencies_during": _nonzero(incons_during),
        "allocator_events_during": during,
        "allocator_events_end_to_after_snapshot": after_end,
        "pages_by_source": {SOURCES[i]: int(src[i]) for i in range(len(SOURCES))},
        "movable_unit_pages_by_order": {int(k): int(by_order[k]) << k for k in range(NF)
                                        if by_order[k]},
        "movable_pages": int(np.count_nonzero(obs.page_mt == MIGRATE_MOVABLE)),
        "unmovable_pages": int(np.count_nonzero(obs.page_mt == MIGRATE_UNMOVABLE)),
        "folio_pages_irregular": obs.folios_irregular,
        "persistent_skip_pageblocks_below_end": {
            "model": int(np.count_nonzero(obs.persistent_skip < me["migrate_pfn"])),
            "kernel": int(np.count_nonzero(obs.persistent_skip < kc.migrate_end)),
        },
        "pageblocks": int(pb_main.shape[0]),
        "pageblocks_snapshot": pbs,
        "pcp_pages_at_end_rebuilt": pcp_end,
        "kernel": kern,
        "seconds": {"observed": round(t_obs - t0, 2), "typing": round(t_typed - t_obs, 2),
                    "model": round(t_model - t_typed, 2),
                    "total": round(time.perf_counter() - t0, 2)},
    }  # fmt: skip
    return {"summary": summary, "rows": rows, "variants": variants,
            "gaps": _gaps(summary, rows, variants, kc)}  # fmt: skip


def _nonzero(incons: np.ndarray) -> dict[str, int]:
    return {k: int(v) for k, v in zip(INCONSISTENCIES, incons, strict=True) if v}


def _buddyinfo(store: Store, trace_id: int, zone: str, snapshot: str) -> list[int] | None:
    """Free blocks per order of the zone in a buddyinfo snapshot, or None."""
    rows = store.query(
        """SELECT "order", sum(nr_free) AS n FROM snap_buddyinfo
           WHERE trace_id = $t AND snapshot = $s AND zone = $z GROUP BY 1""",
        {"t": trace_id, "s": snapshot, "z": zone},
    ).to_pylist()
    if not rows:
        return None
    out = [0] * NF
    for r in rows:
        if 0 <= int(r["order"]) < NF:
            out[int(r["order"])] = int(r["n"])
    return out


def _gaps(summary: dict[str, Any], rows: list[dict[str, Any]], variants: list[dict[str, Any]],
          kc: KernelCompaction) -> list[dict[str, str]]:  # fmt: skip
    """Each gap between the model's and the kernel's numbers, explained with the measurements."""
    by = {r["metric"]: r for r in rows}
    var = {v["variant"]: v for v in variants}
    k = summary["kernel"]
    d = summary["allocator_events_during"]
    a = summary["allocator_events_end_to_after_snapshot"]
    ps = summary["persistent_skip_pageblocks_below_end"]
    src = summary["pages_by_source"]
    m, kv = var["model"], var["kernel"]
    vote, flat = var["vote pageblocks"], var["no folio units"]
    pbs = summary["pageblocks_snapshot"] or {"movable": None}
    return [
        {"gap": "scanner start positions",
         "why": "None: both scanners start where the kernel's did (zone start, last "
                "pageblock). compact_memory compacts the whole zone with ignore_skip_hint, "
                "and for order -1 neither fast_find_migrateblock nor fast_isolate_freepages "
                "does anything, so the kernel's scanners are linear, like the model's."},
        {"gap": "pageblock types",
         "why": "The free scanner only takes targets from MOVABLE pageblocks, and where "
                "the scanners meet depends on how many free pages lie above. kpageflags does "
                "not record pageblock types. ZoneState.load's vote (UNMOVABLE where "
                f"unmovable pages outnumber movable ones) gives {vote['movable_pageblocks']} "
                f"MOVABLE pageblocks where the kernel had {pbs['movable']}. With it the "
                f"model migrates {vote['migrated']:,} pages and meets at "
                f"{vote['migrate_end_pfn']:#x}. Calibrated to the snapshot's counts (the "
                f"model column) it migrates {m['migrated']:,} and meets at "
                f"{m['migrate_end_pfn']:#x}; the kernel migrated {kv['migrated']:,} and met "
                f"at {kv['migrate_end_pfn']:#x}."},
        {"gap": "large folios: split when no block of their order is free",
         "why": "The page cache here is mostly large folios (movable unit pages by order: "
                f"{summary['movable_unit_pages_by_order']}). Order-9 folios are skipped "
                "(skip_isolation_on_order); smaller ones move whole and need a free block of "
                "their order. When compaction_alloc finds none, migrate_pages_batch splits "
                "the folio (try_split_folio on -ENOMEM) and moves its pages one by one, in "
                f"the kernel ({k['split']:,} splits, {k['isolated_not_migrated']:,} isolated "
                f"pages put back) as in the model ({m['split']:,} splits, "
                f"{m['not_migrated']:,} pages not migrated): which folios find no target "
                "depends on the free blocks above the meeting point. Treating every folio "
                f"as order-0 pages from the start: {flat['migrated']:,} migrated, "
                f"{flat['not_migrated']:,} not, meeting at {flat['migrate_end_pfn']:#x}."},
        {"gap": "pages migration failed",
         "why": f"The kernel failed {k['migrate_failed']} pages in migrate_pages (busy, "
                "pinned or under writeback). The model's migrations never fail. Pages the "
                "kernel could not isolate (locked, or off the LRU for a moment) are in its "
                "nr_scanned but not in nr_taken; the model isolates every movable unit."},
        {"gap": "pages scanned",
         "why": "Migration scanner: both count pages and step over free blocks and whole "
                f"compound folios: {by['migrate scanner pages scanned']['model']:,} against "
                f"{k['scanned_migrate']:,}, as close as the meeting points. The kernel "
                "skips a pageblock that begins with a compound page of order 9 or more "
                "without scanning or tracing it (pageblock_skip_persistent in "
                "suitable_migration_source), the model steps over its 512 pages: "
                f"{ps['kernel']} such pageblocks lie below the kernel's meeting point (its "
                f"nr_scanned is {kc.migrate_end - kc.zone_start - k['scanned_migrate']:,} "
                f"pages short of the range it covered), {ps['model']} below the model's. "
                "Free scanner: the "
                "kernel's nr_scanned counts probes. In sync mode isolate_freepages doubles "
                "its stride after each pageblock that yields nothing (1, 2, 4 ... up to 32 "
                "pages), so a barren pageblock costs 512/stride probes and only free blocks "
                "whose first page is probed are found. The model reads every page of every "
                f"MOVABLE pageblock: {by['free scanner pages scanned']['model']:,} against "
                f"{k['scanned_free']:,}."},
        {"gap": "concurrent allocations and frees",
         "why": f"The kernel's compaction took {summary['duration_ms']} ms "
                f"({kc.end_line - kc.begin_line:,} trace lines). The compacting task "
                f"(pid {kc.pid}) freed {d['task_free_pages']:,} pages, mostly migrated "
                f"sources. Other tasks allocated {d['other_alloc_pages']:,} pages "
                f"({d['other_allocs']:,} allocations, {d['other_order9_allocs']} of them "
                f"order 9) and freed {d['other_free_pages']:,}. The model compacts the begin "
                "state at once: the pages others took and gave back are not in it, the "
                "order-9 allocations used up blocks that compaction had just freed, and "
                "their frees gave the kernel's free scanner targets the model never had."},
        {"gap": "pcp pages",
         "why": f"At the begin event {src['pcp']:,} pages are on pcp lists in the replay. "
                "The model steps over them (neither free nor movable, no pageblock vote), as "
                "the kernel's scanners do (not PageBuddy, not on an LRU). compact_memory "
                "never drains pcp lists for order -1 (check_drain is for order > 0), and "
                "the kernel frees migrated sources through them: "
                f"{summary['pcp_pages_at_end_rebuilt']:,} pages are on pcp lists in the "
                "replay at the end event instead of merged. The model frees sources straight "
                "to the buddy. Pages that were on pcp lists before the trace began cannot "
                "be told apart in kpageflags and count as UNMOVABLE."},
        {"gap": "free pages and blocks at the end",
         "why": f"The model conserves free pages ({by['free pages at begin']['model']:,} "
                f"before and {by['free pages at end']['model']:,} after). The kernel's zone "
                f"had {by['free pages at end']['rebuilt']:,} free pages at the end event "
                f"(replay) and {by['free pages at end']['kernel']:,} at the after-snapshot: "
                "other tasks' allocations during the compaction, and sources parked on pcp "
                "lists, are not free, and between the end event and the after-snapshot "
                f"other tasks allocated {a['other_alloc_pages']:,} more pages "
                f"({a['other_order9_allocs']} order-9 blocks). Order-10 blocks: model "
                f"{m['order10_end']}, replay at the end event {kv['order10_end']}, "
                f"buddyinfo after {by['free blocks order 10 at end']['kernel']}. The replay "
                "at the end event is the like-for-like kernel state."},
    ]  # fmt: skip
