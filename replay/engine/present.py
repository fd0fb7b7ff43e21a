"""The memory a trace shows to exist, as a dense pfn space for the models and the rebuild.

A trace with no zoneinfo snapshot has only its own pfns to say where memory is;
its zone is their span rounded out to 1024-page blocks (ingest's
``_zone_from_pfns``). When those pfns lie far apart (9,000 allocations 64Ki
pages apart span 590M pages, 2.4 TB) a model or the rebuild holding state for
every page of the span needs gigabytes for memory nothing shows exists.

:class:`PresentMemory` keeps the memory that exists: the MAX_PAGE_ORDER blocks
(1024 pages, naturally aligned) the trace's events touch, and the untouched
stretches between them shorter than a memory section (PAGES_PER_SECTION =
32768 pages: SECTION_SIZE_BITS 27 with 4 KiB pages,
arch/x86/include/asm/sparsemem.h), which lie in sections the trace touches,
memory the kernel had present. Untouched stretches of a section or more are
left out. The kept stretches are laid end to end, in pfn order, from the zone's
start: a model pfn is the zone's start plus the kept pages below the pfn.

This is exact for what the models and the rebuild do with pfns:

- a buddy block (order <= MAX_PAGE_ORDER) and its buddy lie in one naturally
  aligned 1024-page block (``__find_buddy_pfn``: ``pfn ^ (1 << order)``), and
  the map moves whole 1024-page blocks by multiples of 1024 pages, so merging
  and splitting, pageblocks (512 pages) and their alignment are unchanged;
- compaction's scanners walk pageblocks in pfn order, and the map is monotone;
  the kernel itself skips memory that is not present (``pfn_valid``,
  ``pageblock_pfn_to_page``, mm/compaction.c).

What is not the same: a range of more than 1024 pages (``contig_at``, a region's
contiguous run) may span a left-out stretch in the model, where the kernel would
find a hole. A trace whose zone has no stretch to leave out (every trace with a
snapshot, or a declared zone, or pfns close together) keeps its whole span and
the identity map (:func:`present_memory` returns None): its runs are what they
were.

Units: pfn (real: the trace's; model: the dense space), pages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from replay.models.internal import MAX_PAGE_ORDER
from replay.store import Store

BLOCK_PAGES = 1 << MAX_PAGE_ORDER  # MAX_ORDER_NR_PAGES: the unit the map moves
PAGES_PER_SECTION = 1 << 15  # SECTION_SIZE_BITS 27 - PAGE_SHIFT 12 (x86_64)
# an untouched stretch of at least this many pages is left out
ABSENT_GAP_PAGES = PAGES_PER_SECTION


@dataclass(frozen=True)
class PresentMemory:
    """The kept stretches of a zone: real pfns ``[lo[i], hi[i])`` (ascending, 1024-page
    aligned), the model pfn of each one's first page ``model_lo[i]`` (the first is the
    zone's start pfn), and the zone's real span ``[start_pfn, end_pfn)``."""

    lo: np.ndarray
    hi: np.ndarray
    model_lo: np.ndarray
    start_pfn: int
    end_pfn: int

    @property
    def pages(self) -> int:
        """Pages kept: the model zone's size."""
        return int((self.hi - self.lo).sum())

    @property
    def stretches(self) -> int:
        return int(self.lo.shape[0])

    def to_model(self, pfns: np.ndarray) -> np.ndarray:
        """Model pfns of real ``pfns`` (int64); -1 where a pfn is in no kept stretch
        (or negative)."""
        p = np.asarray(pfns, np.int64)
        i = np.clip(np.searchsorted(self.lo, p, side="right") - 1, 0, None)
        inside = (p >= self.lo[i]) & (p < self.hi[i])
        return np.where(inside, self.model_lo[i] + (p - self.lo[i]), -1).astype(np.int64)

    def to_model_bound(self, pfns: np.ndarray) -> np.ndarray:
        """Model pfns of real range bounds ``pfns``: the zone's start plus the kept pages
        below each (a bound in a left-out stretch goes to the next kept page), so a real
        range ``[a, b)`` maps to the model range of its kept pages."""
        p = np.asarray(pfns, np.int64)
        i = np.searchsorted(self.lo, p, side="right") - 1
        j = np.clip(i, 0, None)
        below = self.model_lo[j] + np.minimum(p - self.lo[j], self.hi[j] - self.lo[j])
        return np.where(i < 0, self.model_lo[0], below).astype(np.int64)

    def to_real(self, mpfns: np.ndarray) -> np.ndarray:
        """Real pfns of model ``mpfns`` (int64); negative values (none) stay as they are.
        A model pfn at or past the model zone's end maps past the last stretch."""
        m = np.asarray(mpfns, np.int64)
        i = np.clip(np.searchsorted(self.model_lo, m, side="right") - 1, 0, None)
        return np.where(m < 0, m, self.lo[i] + (m - self.model_lo[i])).astype(np.int64)

    def to_real_end(self, mpfns: np.ndarray) -> np.ndarray:
        """Real exclusive ends of model exclusive ends: one past the real pfn of the page
        before (negative values stay)."""
        m = np.asarray(mpfns, np.int64)
        return np.where(m <= 0, m, self.to_real(m - 1) + 1).astype(np.int64)

    def describe(self) -> str:
        """A phrase for messages: pages kept, in how many stretches, of the span."""
        return (f"{self.pages:,} pages in {self.stretches:,} stretches the trace touches, "
                f"of its span of {self.end_pfn - self.start_pfn:,}")  # fmt: skip


def touched_blocks(store: Store, trace_id: int) -> np.ndarray:
    """The 1024-page blocks (pfn >> MAX_PAGE_ORDER) any event or aux event of the trace
    touches (an event of order k: all of its 2^k pages), ascending."""
    b = MAX_PAGE_ORDER
    rows = store.query(
        f"""WITH e AS (SELECT pfn, greatest(least(coalesce("order", 0), 40), 0) AS k
                       FROM events WHERE trace_id = $t AND pfn IS NOT NULL AND pfn >= 0)
            SELECT DISTINCT blk FROM (
              SELECT pfn >> {b} AS blk FROM e
              UNION ALL SELECT (pfn + (1::BIGINT << k) - 1) >> {b} FROM e
              UNION ALL SELECT unnest(range((pfn >> {b}) + 1, (pfn + (1::BIGINT << k) - 1)
                                            >> {b})) FROM e WHERE k > {b}
              UNION ALL SELECT pfn >> {b} FROM aux_events
                        WHERE trace_id = $t AND pfn IS NOT NULL AND pfn >= 0)
            ORDER BY blk""",
        {"t": trace_id},
    )
    return rows.column("blk").to_numpy().astype(np.int64)


def _pfn_zone(store: Store, trace_id: int) -> tuple[int, int] | None:
    """The trace's zone (start pfn, pages) when it is only its pfns' span: no zoneinfo
    snapshot, and the zone is the pfn range rounded out to 1024-page blocks (a zone a
    canonical file or a scenario declares, or a snapshot gives, is memory that exists)."""
    row = store.one(
        """SELECT zone_start_pfn, zone_pages, pfn_min, pfn_max,
                  (SELECT count(*) FROM snap_zoneinfo WHERE trace_id = $t)
           FROM traces WHERE trace_id = $t""",
        {"t": trace_id},
    )
    if row is None or row[1] is None or row[2] is None or row[3] is None or row[4]:
        return None
    start, pages, lo, hi = int(row[0] or 0), int(row[1]), int(row[2]), int(row[3])
    first = (lo // BLOCK_PAGES) * BLOCK_PAGES
    end = ((hi + BLOCK_PAGES) // BLOCK_PAGES) * BLOCK_PAGES
    if (start, pages) != (first, end - first):
        return None
    return start, pages


def present_memory(store: Store, trace_id: int) -> PresentMemory | None:
    """The kept memory of the trace's zone (see the module), or None when the whole zone
    is kept (a snapshot's or a declared zone, or no untouched stretch of a section)."""
    zone = _pfn_zone(store, trace_id)
    if zone is None or zone[1] < 2 * ABSENT_GAP_PAGES:
        return None
    start, pages = zone
    end = start + pages
    blocks = touched_blocks(store, trace_id)
    blocks = blocks[(blocks >= start // BLOCK_PAGES) & (blocks < end // BLOCK_PAGES)]
    if blocks.shape[0] == 0:
        return None
    # the zone's edges are touched stretches too: an untouched edge shorter than a
    # section is kept, as a gap between touched blocks is
    edges = np.concatenate([[start // BLOCK_PAGES - 1], blocks, [end // BLOCK_PAGES]])
    gap = np.diff(edges) - 1  # untouched blocks between neighbours
    absent = gap * BLOCK_PAGES >= ABSENT_GAP_PAGES
    if not absent.any():
        return None
    # the kept stretches: from each absent gap's end to the next absent gap's start
    cut = np.flatnonzero(absent)
    kept_lo = np.concatenate([[start], edges[cut + 1] * BLOCK_PAGES])
    kept_hi = np.concatenate([(edges[cut] + 1) * BLOCK_PAGES, [end]])
    # an absent edge gap leaves an empty first or last stretch: drop it
    nonempty = kept_hi > kept_lo
    kept_lo, kept_hi = kept_lo[nonempty], kept_hi[nonempty]
    sizes = kept_hi - kept_lo
    model_lo = start + np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    return PresentMemory(lo=kept_lo.astype(np.int64), hi=kept_hi.astype(np.int64),
                         model_lo=model_lo, start_pfn=start, end_pfn=end)  # fmt: skip
