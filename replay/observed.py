"""Observed replay: rebuild the kernel's real buddy state from the recorded pfns.

The what-if engine asks what a model would do; this asks what the kernel
did. The initial state is the before-snapshot's kpageflags: on 6.18 every
page of a free buddy block carries KPF_BUDDY, and free buddies are always
merged, so the maximal naturally aligned decomposition of the free set (per
zone, order <= 10) gives the blocks. The recorded events are then applied at
buddy level, in trace line order (Linux 6.18, mm/page_alloc.c):

- ``mm_page_alloc_zone_locked`` (``rmqueue_bulk`` / ``rmqueue_buddy``): the
  block leaves the buddy, to a pcp list when ``percpu_refill=1``, else to the
  caller;
- ``mm_page_alloc``: the caller gets the block: from its pcp list, or the
  block ``mm_page_alloc_zone_locked`` just took;
- ``mm_page_free`` (and its batched twin): pcp orders (0-3, 9) go to a pcp
  list (``free_frozen_page_commit``), others to the buddy
  (``__free_pages_ok`` -> ``__free_one_page``, merging);
- ``mm_page_pcpu_drain`` (``free_pcppages_bulk``): a page leaves a pcp list
  for the buddy (merging);
- ``mm_compaction_isolate_freepages`` (``isolate_freepages_block``): the
  free scanner took free blocks in ``[range start, range end)`` out of the
  buddy (``__isolate_free_page``, no allocation event) as migration targets,
  ascending, ``nr_taken`` pages in all; they are taken here the same way
  (``isolate_mismatch_pages`` counts what could not be matched). Targets the
  migration did not use are released at the end of compaction without an
  event: they stay taken here.

Pages on pcp lists are kept apart from buddy-free pages, as the kernel does.
What the trace cannot explain is counted by kind (see INCONSISTENCIES), never
fatal. Between the snapshot markers (``snapshot before end`` ...
``snapshot after begin``) the rebuilt state can be compared with the
after-snapshot's buddyinfo: ``replay validate``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numba as nb
import numpy as np

from replay.errors import UsageError
from replay.store import Store

MAX_ORDER = 10
NF = MAX_ORDER + 1
KPF_BUDDY = 10

K_ALLOC, K_FREE, K_ZONE_LOCKED, K_DRAIN, K_ISOLATE_FREE = range(5)
# Inconsistencies: what the recorded events cannot explain, by kind.
INCONSISTENCIES = (
    "zone_locked_not_free",  # the buddy did not hold the block it handed out
    "alloc_of_buddy_free",  # allocated while free in the buddy, with no zone_locked event
    "alloc_not_seen_on_pcp",  # a pcp-order allocation of a page never seen on a pcp list
    "free_of_free",  # a free (or drain) of pages the buddy already holds
    "free_of_pcp_page",  # a free to pcp of a page already on a pcp list
    "drain_not_seen_on_pcp",  # drained from pcp, but never seen arriving there
    "outside_zones",  # a pfn in no zone of the snapshot
    "isolate_mismatch_pages",  # |pages found free in an isolate range - nr_taken|
)
(I_ZL_NOT_FREE, I_ALLOC_OF_FREE, I_ALLOC_UNSEEN_PCP, I_FREE_OF_FREE, I_FREE_OF_PCP,
 I_DRAIN_UNSEEN, I_OUTSIDE, I_ISOLATE_MISMATCH) = range(len(INCONSISTENCIES))  # fmt: skip


@nb.njit(cache=True, inline="always")
def _pcp_order(k):  # type: ignore[no-untyped-def]
    return k <= 3 or k == 9


@nb.njit(cache=True)
def init_blocks(free, base, zlo, zhi, blk_order):  # type: ignore[no-untyped-def]
    """Maximal naturally aligned free blocks of each zone [zlo[z], zhi[z]) (pfn).

    ``free[i]`` says whether pfn ``base + i`` is free; ``blk_order`` gets the
    block's order at its first page (-1 elsewhere).
    """
    for z in range(zlo.shape[0]):
        pfn = zlo[z]
        while pfn < zhi[z]:
            if not free[pfn - base]:
                pfn += 1
                continue
            k = 0
            while k < MAX_ORDER:
                size = np.int64(1) << (k + 1)
                if (pfn & (size - 1)) != 0 or pfn + size > zhi[z]:
                    break
                ok = True
                for q in range(pfn + (np.int64(1) << k), pfn + size):
                    if not free[q - base]:
                        ok = False
                        break
                if not ok:
                    break
                k += 1
            blk_order[pfn - base] = k
            pfn += np.int64(1) << k


@nb.njit(cache=True)
def _containing_free(pfn, k, lo, base, blk_order):  # type: ignore[no-untyped-def]
    """(start, order) of the free block that contains [pfn, pfn + 2^k), or (-1, -1)."""
    for c in range(k, NF):
        s = pfn & ~((np.int64(1) << c) - 1)
        if s < lo:
            break
        if blk_order[s - base] == c:
            return s, c
    return np.int64(-1), np.int64(-1)


@nb.njit(cache=True)
def _clear_inside(pfn, k, base, blk_order):  # type: ignore[no-untyped-def]
    """Remove free blocks lying inside [pfn, pfn + 2^k); returns how many."""
    n = 0
    for q in range(pfn, pfn + (np.int64(1) << k)):
        if blk_order[q - base] >= 0:
            blk_order[q - base] = -1
            n += 1
    return n


@nb.njit(cache=True)
def take(pfn, k, lo, base, blk_order):  # type: ignore[no-untyped-def]
    """Take [pfn, pfn + 2^k) out of the buddy, splitting its free block (``expand``).

    Returns True when a free block held it; else removes whatever free pages
    lie inside and returns False.
    """
    s, c = _containing_free(pfn, k, lo, base, blk_order)
    if s < 0:
        _clear_inside(pfn, k, base, blk_order)
        return False
    blk_order[s - base] = -1
    while c > k:
        c -= 1
        half = s + (np.int64(1) << c)
        if pfn >= half:
            blk_order[s - base] = c
            s = half
        else:
            blk_order[half - base] = c
    return True


@nb.njit(cache=True)
def give(pfn, k, lo, hi, base, blk_order):  # type: ignore[no-untyped-def]
    """``__free_one_page``: return [pfn, pfn + 2^k) to the buddy, merging within the zone.

    Returns False (and changes nothing) if the buddy already holds all of it;
    a partial overlap is cleared first (also False).
    """
    ok = True
    s, _c = _containing_free(pfn, k, lo, base, blk_order)
    if s >= 0:
        return False
    if _clear_inside(pfn, k, base, blk_order) > 0:
        ok = False
    while k < MAX_ORDER:
        b = pfn ^ (np.int64(1) << k)
        if b < lo or b + (np.int64(1) << k) > hi or blk_order[b - base] != k:
            break
        blk_order[b - base] = -1
        pfn = pfn & b
        k += 1
    blk_order[pfn - base] = k
    return ok


@nb.njit(cache=True)
def observe(kind, pfn, order, refill, arg, arg2, zlo, zhi, base, blk_order, pcp, incons):  # type: ignore[no-untyped-def]
    """Apply recorded events to the buddy state (see the module docstring).

    ``zlo``/``zhi``: each event's zone bounds (pfn; -1 when in no zone).
    ``arg``/``arg2``: for an isolate-freepages event, the range end (pfn)
    and nr_taken (pages).
    ``pcp[i]``: k+1 when an order-k block starting at ``base + i`` is on a pcp
    list, -(k+1) when ``mm_page_alloc_zone_locked`` took it for a caller.
    """
    for i in range(kind.shape[0]):
        p = pfn[i]
        k = np.int64(order[i])
        lo = zlo[i]
        hi = zhi[i]
        e = kind[i]
        if e == K_ISOLATE_FREE:
            if lo < 0:
                incons[I_OUTSIDE] += 1
                continue
            taken = np.int64(0)
            q = p
            end = min(arg[i], hi)
            while q < end and taken < arg2[i]:
                b = blk_order[q - base]
                if b >= 0:
                    blk_order[q - base] = -1
                    taken += np.int64(1) << b
                    q += np.int64(1) << b
                else:
                    q += 1
            incons[I_ISOLATE_MISMATCH] += abs(taken - arg2[i])
            continue
        if lo < 0 or p + (np.int64(1) << k) > hi:
            incons[I_OUTSIDE] += 1
            continue
        o = p - base
        if e == K_ZONE_LOCKED:
            if not take(p, k, lo, base, blk_order):
                incons[I_ZL_NOT_FREE] += 1
            pcp[o] = (k + 1) if refill[i] else -(k + 1)
        elif e == K_ALLOC:
            if pcp[o] == k + 1 or pcp[o] == -(k + 1):
                pcp[o] = 0
            elif take(p, k, lo, base, blk_order):
                incons[I_ALLOC_OF_FREE] += 1
            elif _pcp_order(k):
                incons[I_ALLOC_UNSEEN_PCP] += 1
        elif e == K_FREE:
            if _pcp_order(k):
                if pcp[o] > 0:
                    incons[I_FREE_OF_PCP] += 1
                if take(p, k, lo, base, blk_order):
                    incons[I_FREE_OF_FREE] += 1
                pcp[o] = k + 1
            elif not give(p, k, lo, hi, base, blk_order):
                incons[I_FREE_OF_FREE] += 1
        else:  # K_DRAIN
            if pcp[o] == k + 1:
                pcp[o] = 0
            else:
                incons[I_DRAIN_UNSEEN] += 1
                pcp[o] = 0
            if not give(p, k, lo, hi, base, blk_order):
                incons[I_FREE_OF_FREE] += 1


@dataclass
class ZoneState:
    """One zone's rebuilt counts (pages, blocks per order)."""

    node: int
    zone: str
    start_pfn: int
    end_pfn: int
    nr_free: list[int]
    pcp_pages: int

    @property
    def free_pages(self) -> int:
        return sum(n << k for k, n in enumerate(self.nr_free))


@dataclass
class Observed:
    """The rebuilt state at the end of the applied events."""

    trace_id: int
    first_line: int | None  # events after this line were applied
    last_line: int | None  # ... and before this one
    events: int
    zones: list[ZoneState]
    initial: list[ZoneState]
    inconsistencies: dict[str, int] = field(default_factory=dict)


def _marker_line(store: Store, trace_id: int, text: str) -> int | None:
    row = store.one(
        "SELECT min(line) FROM aux_events WHERE trace_id = $t AND event = 'tracing_mark_write' "
        "AND trim(text) = $m",
        {"t": trace_id, "m": text},
    )
    return None if row is None or row[0] is None else int(row[0])


def _zones(store: Store, trace_id: int, snapshot: str) -> list[dict[str, Any]]:
    return store.query(
        """SELECT node, zone, start_pfn, spanned FROM snap_zoneinfo
           WHERE trace_id = $t AND snapshot = $s AND spanned > 0 AND start_pfn IS NOT NULL
           ORDER BY start_pfn""",
        {"t": trace_id, "s": snapshot},
    ).to_pylist()


def _free_mask(store: Store, trace_id: int, snapshot: str, base: int, n: int) -> np.ndarray:
    """KPF_BUDDY per pfn of [base, base + n) from the stored kpageflags runs."""
    runs = store.query(
        f"""SELECT pfn, nr_pages FROM snap_kpageflags
            WHERE trace_id = $t AND snapshot = $s AND (flags >> {KPF_BUDDY}) & 1 = 1
            ORDER BY pfn""",
        {"t": trace_id, "s": snapshot},
    )
    free = np.zeros(n, np.bool_)
    for p, m in zip(runs.column("pfn").to_numpy(), runs.column("nr_pages").to_numpy(), strict=True):
        lo, hi = max(int(p), base), min(int(p + m), base + n)
        if hi > lo:
            free[lo - base : hi - base] = True
    return free


def _counts(zones: list[dict[str, Any]], base: int, blk_order: np.ndarray,
            pcp: np.ndarray) -> list[ZoneState]:  # fmt: skip
    out = []
    for z in zones:
        lo, hi = int(z["start_pfn"]) - base, int(z["start_pfn"]) + int(z["spanned"]) - base
        b = blk_order[lo:hi]
        nr = np.bincount(b[b >= 0].astype(np.int64), minlength=NF)[:NF]
        pc = pcp[lo:hi]
        pcp_pages = int((np.int64(1) << (pc[pc > 0].astype(np.int64) - 1)).sum())
        out.append(ZoneState(int(z["node"]), str(z["zone"]), lo + base, hi + base,
                             [int(v) for v in nr], pcp_pages))  # fmt: skip
    return out


def _events(store: Store, trace_id: int, after: int | None, before: int | None) -> Any:
    """The buddy-level events with ``after < line < before``, in line order (Arrow)."""
    return store.query(
        rf"""SELECT line, kind, pfn, "order", refill, arg, arg2 FROM (
              SELECT line, CASE WHEN op = 'alloc' THEN {K_ALLOC} ELSE {K_FREE} END AS kind,
                     pfn, "order", false AS refill, 0::BIGINT AS arg, 0::BIGINT AS arg2
              FROM events WHERE trace_id = $t AND pfn IS NOT NULL
              UNION ALL
              SELECT line, CASE WHEN event = 'mm_page_alloc_zone_locked' THEN {K_ZONE_LOCKED}
                                ELSE {K_DRAIN} END,
                     pfn, "order", coalesce(args['percpu_refill'] = '1', false), 0, 0
              FROM aux_events WHERE trace_id = $t AND pfn IS NOT NULL AND "order" IS NOT NULL
                AND event IN ('mm_page_alloc_zone_locked', 'mm_page_pcpu_drain')
              UNION ALL
              SELECT line, {K_ISOLATE_FREE},
                     hexint(regexp_extract(args['range'], '\((0x[0-9a-fA-F]+) ~', 1)),
                     0, false,
                     hexint(regexp_extract(args['range'], '~ (0x[0-9a-fA-F]+)\)', 1)),
                     TRY_CAST(args['nr_taken'] AS BIGINT)
              FROM aux_events WHERE trace_id = $t AND event = 'mm_compaction_isolate_freepages'
                AND TRY_CAST(args['nr_taken'] AS BIGINT) > 0)
            WHERE pfn IS NOT NULL
              AND ($after IS NULL OR line > $after) AND ($before IS NULL OR line < $before)
            ORDER BY line""",
        {"t": trace_id, "after": after, "before": before},
    )


def _apply(ev: Any, zb: tuple, incons: np.ndarray) -> int:
    """Run ``observe`` over an Arrow table of events; returns how many were applied."""
    zlo, zhi, base, blk_order, pcp = zb
    pfns = ev.column("pfn").to_numpy().astype(np.int64)
    zi = np.clip(np.searchsorted(zlo, pfns, side="right") - 1, 0, None)
    inside = (pfns >= zlo[zi]) & (pfns < zhi[zi])
    observe(
        ev.column("kind").to_numpy().astype(np.int8),
        pfns,
        ev.column("order").to_numpy().astype(np.int64),
        ev.column("refill").to_numpy(zero_copy_only=False).astype(np.bool_),
        ev.column("arg").to_numpy().astype(np.int64),
        ev.column("arg2").to_numpy().astype(np.int64),
        np.where(inside, zlo[zi], -1).astype(np.int64),
        np.where(inside, zhi[zi], -1).astype(np.int64),
        base,
        blk_order,
        pcp,
        incons,
    )
    return int(ev.num_rows)


def rebuild(store: Store, trace_id: int) -> Observed:
    """Rebuild the buddy state from the before-kpageflags and the recorded events.

    The before-snapshot window's own events (between the ``snapshot before
    begin`` and ``end`` markers) are replayed over the kpageflags state first,
    then events are applied up to the ``snapshot after begin`` marker
    (buddyinfo is the first file of the after-snapshot); without markers, all
    of them.
    """
    zones = _zones(store, trace_id, "before")
    has_flags = store.one(
        "SELECT count(*) FROM snap_kpageflags WHERE trace_id = $t AND snapshot = 'before'",
        {"t": trace_id},
    )
    if not zones or not has_flags or not has_flags[0]:
        raise UsageError(
            "observed replay needs the trace's before-snapshot zoneinfo and kpageflags "
            "(a capture folder, or replay record)"
        )
    base = min(int(z["start_pfn"]) for z in zones)
    end = max(int(z["start_pfn"]) + int(z["spanned"]) for z in zones)
    n = end - base
    free = _free_mask(store, trace_id, "before", base, n)
    blk_order = np.full(n, -1, np.int8)
    zlo = np.array([int(z["start_pfn"]) for z in zones], np.int64)
    zhi = np.array([int(z["start_pfn"]) + int(z["spanned"]) for z in zones], np.int64)
    init_blocks(free, base, zlo, zhi, blk_order)
    del free
    pcp = np.zeros(n, np.int8)
    initial = _counts(zones, base, blk_order, pcp)

    # The kpageflags file is read over a fraction of a second inside the
    # before-snapshot window, so it mixes states from that window. Replaying
    # the window's own events over it settles those pages (a free of a page
    # already free, or an allocation of a page already allocated, is a no-op);
    # inconsistencies are counted from the end of the window on.
    opened = _marker_line(store, trace_id, "snapshot before begin")
    first = _marker_line(store, trace_id, "snapshot before end")
    last = _marker_line(store, trace_id, "snapshot after begin")
    zb = (zlo, zhi, base, blk_order, pcp)
    if opened is not None and first is not None:
        scratch = np.zeros(len(INCONSISTENCIES), np.int64)
        _apply(_events(store, trace_id, opened, first), zb, scratch)
    incons = np.zeros(len(INCONSISTENCIES), np.int64)
    n_events = _apply(_events(store, trace_id, first, last), zb, incons)
    return Observed(
        trace_id=trace_id,
        first_line=first,
        last_line=last,
        events=n_events,
        zones=_counts(zones, base, blk_order, pcp),
        initial=initial,
        inconsistencies=dict(zip(INCONSISTENCIES, (int(v) for v in incons), strict=True)),
    )


def validate(store: Store, trace: str) -> dict[str, Any]:
    """The rebuilt state next to the after-snapshot's buddyinfo, zone by zone."""
    trace_id = store.trace_id(trace)
    obs = rebuild(store, trace_id)
    kernel = store.query(
        """SELECT node, zone, "order", nr_free FROM snap_buddyinfo
           WHERE trace_id = $t AND snapshot = 'after'""",
        {"t": trace_id},
    ).to_pylist()
    if not kernel:
        raise UsageError("validate needs the trace's after-snapshot buddyinfo")
    by_zone: dict[tuple[int, str], list[int]] = {}
    for r in kernel:
        by_zone.setdefault((int(r["node"]), str(r["zone"])), [0] * NF)[int(r["order"])] = int(
            r["nr_free"]
        )
    zones = []
    for z in obs.zones:
        k = by_zone.get((z.node, z.zone))
        if k is None:
            continue
        fk = sum(n << o for o, n in enumerate(k))
        zones.append({
            "zone": z.zone, "node": z.node,
            "free_pages_kernel": fk, "free_pages_rebuilt": z.free_pages,
            "nr_free_kernel": k, "nr_free_rebuilt": z.nr_free,
            "pcp_pages_rebuilt": z.pcp_pages,
        })  # fmt: skip
    return {
        "trace": store.trace_row(trace_id)["name"],
        "events_applied": obs.events,
        "from_line": obs.first_line,
        "to_line": obs.last_line,
        "zones": zones,
        "inconsistencies": obs.inconsistencies,
    }
