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
- ``mm_page_alloc_extfrag`` with no ``mm_page_alloc_zone_locked`` of its page
  right before (``__rmqueue_steal``, and ``try_to_claim_block``'s claim of a whole
  free pageblock, trace only it, 6.15+): the same, for ``alloc_order``;
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

An allocation from the buddy with no ``mm_page_alloc_zone_locked`` is
inconsistent, unless it is the task's first page event after its own direct
compaction pass (``mm_compaction_end``): ``compaction_capture`` handed it the
block without rmqueue (counted as ``compaction_captures``).

Pages on pcp lists are kept apart from buddy-free pages, as the kernel does.
What the trace cannot explain is counted by kind (see INCONSISTENCIES), never
fatal. Between the snapshot markers (``snapshot before end`` ...
``snapshot after begin``) the rebuilt state can be compared with the
after-snapshot's buddyinfo: ``replay validate``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from replay.analysis.metrics import percent
from replay.engine.present import PresentMemory, present_memory
from replay.errors import UsageError
from replay.jit import njit
from replay.limits import check_zone_fits
from replay.models.internal import COMPACT_CLUSTER_MAX, PAGEBLOCK_ORDER
from replay.store import Store
from replay.trace.record import MARKERS
from replay.trace.snapshots import KPF_LRU

MAX_ORDER = 10
NF = MAX_ORDER + 1
# remove_migration_pte's pte: a present x86-64 pte, pfn in bits 12..51
PRESENT_PTE_PFN_SQL = "TRY_CAST('0x' || substr(lpad(args->>'pte', 16, '0'), 4, 10) AS BIGINT)"
KPF_BUDDY = 10

# The markers replay record writes around its snapshots (the shipped capture has them too).
BEFORE_BEGIN, BEFORE_END, AFTER_BEGIN, _ = MARKERS

K_ALLOC, K_FREE, K_ZONE_LOCKED, K_DRAIN, K_ISOLATE_FREE = range(5)
OBSERVED_BYTES_PER_PAGE = 8  # blk_order, pcp, the free mask, flags, the fork's copies
K_FAILED = 5  # an allocation the kernel failed (no pfn): changes nothing
K_FAST_ISOLATE = 6  # mm_compaction_fast_isolate_freepages: one free block taken, pfn unknown
K_MIGRATE_NEW = 7  # remove_migration_pte: a migrated page's new pfn (a migration target)
# How far ahead (events) a fast-isolated block is looked for: the first later event on
# one of the candidate blocks tells which one the kernel took.
FAST_ISOLATE_LOOKAHEAD = 1 << 18
# Pages the fallback choice of a fast-isolated block scans at most (from free_pfn down).
FAST_ISOLATE_SCAN = 1 << 20
FAST_ISOLATE_MARKS = 1 << 16  # blocks a fast isolation's look-ahead may rule out
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
    "unknown_pages",  # events on pages whose state was unknown (no kpageflags): learned
    "fast_isolate_unmatched",  # a fast-isolated block with no free block of its order left
)
(I_ZL_NOT_FREE, I_ALLOC_OF_FREE, I_ALLOC_UNSEEN_PCP, I_FREE_OF_FREE, I_FREE_OF_PCP,
 I_DRAIN_UNSEEN, I_OUTSIDE, I_ISOLATE_MISMATCH,
 I_UNKNOWN, I_FAST_UNMATCHED) = range(len(INCONSISTENCIES))  # fmt: skip
# What the rebuild inferred from events that are not allocations (counted, consistent).
INFERRED = (
    "fast_isolate_seen",  # fast-isolated blocks placed by a later event on them
    "fast_isolate_guessed",  # ... placed by the kernel's search order, no later event
    "migration_targets",  # pages taken as migration targets (remove_migration_pte)
    # blocks a task allocated from the buddy with no zone_locked event right after its own
    # direct compaction: compaction_capture handed them over (no rmqueue)
    "compaction_captures",
    "hidden_pcp_pages",  # flagless at the snapshot, first allocated or drained: on pcp lists
    "hidden_buddy_pages",  # flagless, first taken from the buddy: held by page reporting
)
N_INFERRED = len(INFERRED)
# Kernel threads by the names the kernel gives them (the trace's comm): their direct
# compactions capture nothing (task_capc: PF_KTHREAD), nor do kcompactd's passes.
KTHREAD_COMMS = ("kworker/", "kswapd", "kcompactd", "khugepaged", "kthreadd", "ksoftirqd/",
                 "migration/", "kdamond", "rcu_", "cpuhp/", "irq/", "jbd2/", "kblockd",
                 "writeback", "kauditd", "oom_reaper", "watchdog")  # fmt: skip


def is_kthread(comm: str | None) -> bool:
    """Whether a task named ``comm`` is one of the kernel's own threads (KTHREAD_COMMS)."""
    return comm is not None and comm.startswith(KTHREAD_COMMS)


def kthread_sql(column: str) -> str:
    """A SQL predicate: the comm in ``column`` names a kernel thread (as :func:`is_kthread`)."""
    return " OR ".join(f"starts_with(coalesce({column}, ''), '{c}')" for c in KTHREAD_COMMS)


# pcp[] value of a page whose state is unknown (a trace without a kpageflags snapshot)
UNKNOWN = 100


@njit(cache=True, inline="always")
def _pcp_order(k):  # type: ignore[no-untyped-def]
    return k <= 3 or k == 9


@njit(cache=True, _nrt=False)  # never allocates: no refcounting
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


@njit(cache=True, _nrt=False)  # never allocates: no refcounting
def _containing_free(pfn, k, lo, base, blk_order):  # type: ignore[no-untyped-def]
    """(start, order) of the free block that contains [pfn, pfn + 2^k), or (-1, -1)."""
    for c in range(k, NF):
        s = pfn & ~((np.int64(1) << c) - 1)
        if s < lo:
            break
        if blk_order[s - base] == c:
            return s, c
    return np.int64(-1), np.int64(-1)


@njit(cache=True, _nrt=False)  # never allocates: no refcounting
def _clear_inside(pfn, k, base, blk_order, nr):  # type: ignore[no-untyped-def]
    """Remove free blocks lying inside [pfn, pfn + 2^k); returns how many.

    ``nr`` (free blocks per order of the zone) is kept up to date.
    """
    n = 0
    for q in range(pfn, pfn + (np.int64(1) << k)):
        b = blk_order[q - base]
        if b >= 0:
            nr[b] -= 1
            blk_order[q - base] = -1
            n += 1
    return n


@njit(cache=True, _nrt=False)  # never allocates: no refcounting
def take_nr(pfn, k, lo, base, blk_order, nr):  # type: ignore[no-untyped-def]
    """Take [pfn, pfn + 2^k) out of the buddy, splitting its free block (``expand``).

    Returns True when a free block held it; else removes whatever free pages
    lie inside and returns False. ``nr``: the zone's free blocks per order.
    """
    s, c = _containing_free(pfn, k, lo, base, blk_order)
    if s < 0:
        _clear_inside(pfn, k, base, blk_order, nr)
        return False
    blk_order[s - base] = -1
    nr[c] -= 1
    while c > k:
        c -= 1
        half = s + (np.int64(1) << c)
        nr[c] += 1
        if pfn >= half:
            blk_order[s - base] = c
            s = half
        else:
            blk_order[half - base] = c
    return True


@njit(cache=True)
def take(pfn, k, lo, base, blk_order):  # type: ignore[no-untyped-def]
    """:func:`take_nr` without the per-order counts."""
    return take_nr(pfn, k, lo, base, blk_order, np.zeros(NF, np.int64))


@njit(cache=True, _nrt=False)  # never allocates: no refcounting
def give_nr(pfn, k, lo, hi, base, blk_order, nr):  # type: ignore[no-untyped-def]
    """``__free_one_page``: return [pfn, pfn + 2^k) to the buddy, merging within the zone.

    Returns False (and changes nothing) if the buddy already holds all of it;
    a partial overlap is cleared first (also False). ``nr``: the zone's free
    blocks per order.
    """
    ok = True
    s, _c = _containing_free(pfn, k, lo, base, blk_order)
    if s >= 0:
        return False
    if _clear_inside(pfn, k, base, blk_order, nr) > 0:
        ok = False
    while k < MAX_ORDER:
        b = pfn ^ (np.int64(1) << k)
        if b < lo or b + (np.int64(1) << k) > hi or blk_order[b - base] != k:
            break
        blk_order[b - base] = -1
        nr[k] -= 1
        pfn = pfn & b
        k += 1
    blk_order[pfn - base] = k
    nr[k] += 1
    return ok


@njit(cache=True)
def give(pfn, k, lo, hi, base, blk_order):  # type: ignore[no-untyped-def]
    """:func:`give_nr` without the per-order counts."""
    return give_nr(pfn, k, lo, hi, base, blk_order, np.zeros(NF, np.int64))


@njit(cache=True)
def hidden_free(kind, pfn, order, zlo, zhi, cpu, base, flagless, blk_order, pcp, pcp_cpu, found):  # type: ignore[no-untyped-def]
    """Free pages the before-kpageflags cannot show, named by their first later event.

    A page on a pcp list, or a free block that free page reporting holds off
    the free lists while it reports it (``page_reporting_cycle``:
    ``__isolate_free_page``), has no flag at all in /proc/kpageflags (no
    KPF_BUDDY, refcount 0), like an allocated page nobody flagged. The kernel
    never allocates an allocated page, so a flagless block whose first event
    after the snapshot allocates it (``mm_page_alloc``), drains it from a pcp
    list or takes it from the buddy (``mm_page_alloc_zone_locked``, a
    migration target) was free then: on a pcp list for the first two (pcp
    orders), in the buddy otherwise (``give_nr``, merging). A first free says
    it was allocated. ``flagless``: per page of ``[base, base + n)``, no flag
    set and not free in the kpageflags decomposition. ``pcp_cpu`` (int16 per
    page) gets, at a block put on a pcp list, the cpu of its first event (the
    cpu whose list an allocation takes from; -1 unknown). ``found``: pages put
    on pcp lists, pages put in the buddy (int64[2]). Events are in trace
    order, from the before-snapshot's start; ``cpu`` is each one's cpu.
    """
    n = blk_order.shape[0]
    touched = np.zeros(n, np.bool_)
    scratch = np.zeros(NF, np.int64)
    for i in range(kind.shape[0]):
        e = kind[i]
        if (
            e != K_ALLOC
            and e != K_FREE
            and e != K_ZONE_LOCKED
            and e != K_DRAIN
            and (e != K_MIGRATE_NEW)
        ):
            continue
        p = pfn[i]
        k = np.int64(order[i])
        o = p - base
        npg = np.int64(1) << k
        if o < 0 or o + npg > n or zlo[i] < 0 or p + npg > zhi[i]:
            continue
        first = True
        hidden = True
        for q in range(o, o + npg):
            if touched[q]:
                first = False
            if not flagless[q] or pcp[q] != 0:
                hidden = False
            touched[q] = True
        if not first or not hidden or e == K_FREE:
            continue
        if (e == K_ALLOC or e == K_DRAIN) and _pcp_order(k):
            pcp[o] = k + 1
            pcp_cpu[o] = cpu[i]
            found[0] += npg
        else:
            give_nr(p, k, zlo[i], zhi[i], base, blk_order, scratch)
            found[1] += npg


@njit(cache=True, _nrt=False)  # never allocates: no refcounting
def free_scan(start, end, stride, nr_taken, base, blk_order, nr, apply):  # type: ignore[no-untyped-def]
    """One ``isolate_freepages_block`` over ``[start, end)`` (pfn) with ``stride``
    (pfns): the free blocks whose head the scan lands on, at most ``nr_taken``
    pages, taken out of ``blk_order`` (and ``nr``) when ``apply``. Returns the
    pages taken; without ``apply`` the count is ``taken << 32 | nr_scanned``
    (the tracepoint's nr_scanned: each position, plus each block's other pages).

    mm/compaction.c ``isolate_freepages_block``: a position that is not a buddy
    head is skipped; a head's whole block is isolated and the scan goes on
    ``stride`` pfns past its last page.
    """
    taken = np.int64(0)
    scanned = np.int64(0)
    q = start
    while q < end and taken < nr_taken:
        b = blk_order[q - base]
        if b >= 0:
            npg = np.int64(1) << b
            if apply:
                blk_order[q - base] = -1
                nr[b] -= 1
            taken += npg
            scanned += npg
            q += npg - 1 + stride
        else:
            scanned += 1
            q += stride
    if apply:
        return taken
    return (taken << 32) | scanned


@njit(cache=True, _nrt=False)  # never allocates: no refcounting
def scan_stride(start, end, nr_scanned, nr_taken, base, blk_order):  # type: ignore[no-untyped-def]
    """The stride (pfns) of a recorded ``isolate_freepages_block``: the one of 1, 2,
    4, ..., COMPACT_CLUSTER_MAX whose scan of the rebuilt free blocks takes the
    recorded pages and counts the recorded nr_scanned (closest first on the pages,
    then on the count). mm/compaction.c ``isolate_freepages``: an async pass starts
    at COMPACT_CLUSTER_MAX, drops to 1 after a block that isolated pages and
    doubles after one that did not; the tracepoint does not say which.
    """
    best = np.int64(1)
    best_score = np.int64(-1)
    s = np.int64(1)
    while s <= COMPACT_CLUSTER_MAX:
        r = free_scan(start, end, s, nr_taken, base, blk_order, blk_order[:0], False)
        # the pages first (a scan never counts 2^20 positions in one pageblock)
        score = (abs((r >> 32) - nr_taken) << 20) + abs((r & 0xFFFFFFFF) - nr_scanned)
        if best_score < 0 or score < best_score:
            best = s
            best_score = score
        s <<= 1
    return best


@njit(cache=True, _nrt=False)  # never allocates: no refcounting
def fast_isolate_block(i, k, min_pfn, free_pfn, kind, pfn, lo, hi, base, blk_order, marks):  # type: ignore[no-untyped-def]
    """The free order-k block ``fast_isolate_freepages`` took at event ``i``: (pfn, seen).

    The kernel takes one free block of exactly order k off the MOVABLE free
    list (searched from its tail for a pfn at or above ``low_pfn``, else the
    highest candidate at or above ``min_pfn``: mm/compaction.c
    ``fast_isolate_freepages``); the tracepoint gives only ``min_pfn``,
    ``free_pfn`` and the pages taken. A rebuilt free order-k block at or above
    ``min_pfn`` whose first later event frees a page of it, or names it a
    migration's new page, names it (``seen``: the block was a migration
    target or came back unused). A block whose first later event hands a page
    of it out (an allocation, a pcp refill, a drain) was not isolated: the
    kernel allocated it as usual. Without a named block: the highest other
    such block below ``free_pfn``, else above it (the kernel's preference for
    the top of the search space). -1 when the zone has no free order-k block
    at or above ``min_pfn``. ``marks`` (int64 scratch): the blocks ruled out,
    set aside in ``blk_order`` while the search runs.
    """
    end = min(kind.shape[0], i + 1 + FAST_ISOLATE_LOOKAHEAD)
    n_marked = 0
    found = np.int64(-1)
    seen = False
    for j in range(i + 1, end):
        e = kind[j]
        if (
            e != K_FREE
            and e != K_MIGRATE_NEW
            and e != K_ALLOC
            and e != K_ZONE_LOCKED
            and e != K_DRAIN
        ):
            continue
        q = pfn[j]
        if q < lo or q >= hi:
            continue
        # only a free order-k block at q's k-aligned head can hold it at order k: the
        # search below would find none of order k otherwise (one look, not eleven, for
        # the many events of the look-ahead that touch no such block)
        h = q & ~((np.int64(1) << k) - 1)
        if h < lo or blk_order[h - base] != k:
            continue
        s, c = _containing_free(q, 0, lo, base, blk_order)
        if s < 0 or c != k or s < min_pfn:
            continue
        if e == K_FREE or e == K_MIGRATE_NEW:
            found = s
            seen = True
            break
        if n_marked == marks.shape[0]:
            break
        marks[n_marked] = s
        n_marked += 1
        blk_order[s - base] = -2  # ruled out: the kernel handed it out as usual
    if found < 0:
        top = min(free_pfn, hi)
        stop = max(min_pfn, lo, top - FAST_ISOLATE_SCAN)
        q = top - (np.int64(1) << k)
        q -= q & ((np.int64(1) << k) - 1)
        while q >= stop:
            if blk_order[q - base] == k:
                found = q
                break
            q -= np.int64(1) << k
    if found < 0:
        q = max(free_pfn, min_pfn, lo)
        q += (-q) & ((np.int64(1) << k) - 1)
        stop = min(hi, q + FAST_ISOLATE_SCAN)
        while q + (np.int64(1) << k) <= stop:
            if blk_order[q - base] == k:
                found = q
                break
            q += np.int64(1) << k
    for m in range(n_marked):
        blk_order[marks[m] - base] = k
    return found, seen


@njit(cache=True, _nrt=False)  # never allocates: no refcounting
def observe_steps(  # type: ignore[no-untyped-def]
    kind, pfn, order, refill, arg, arg2, zlo, zhi, i0, i1, base, blk_order, pcp, incons,
    inferred, track_lo, nr, pcp_pages, keep_row, out_nr, out_pcp, out_bad, scratch, saved,
    marks,
):  # fmt: skip
    """Apply recorded events ``i0 .. i1-1`` to the buddy state (see the module docstring).

    The event arrays are the whole trace's (a fast isolation looks ahead).
    ``zlo``/``zhi``: each event's zone bounds (pfn; -1 when in no zone).
    ``arg``/``arg2``: for an isolate-freepages event, the range end (pfn)
    and nr_taken (pages), and ``order`` is its nr_scanned (which stride the
    scan took: :func:`scan_stride`); for a fast isolation, ``free_pfn`` and
    the pages taken (``pfn`` is ``min_pfn``). ``marks``: int64 scratch of
    FAST_ISOLATE_MARKS (:func:`fast_isolate_block`). ``inferred``: counts of INFERRED.
    ``pcp[i]``: k+1 when an order-k block starting at ``base + i`` is on a pcp
    list, -(k+1) when ``mm_page_alloc_zone_locked`` took it for a caller.
    The zone starting at ``track_lo`` is followed: ``nr`` (its free blocks per
    order) and ``pcp_pages[0]`` (its pages on pcp lists) stay current, and
    after every event with ``keep_row`` a row of ``out_nr``/``out_pcp``/
    ``out_bad`` (the event was inconsistent) is written. ``scratch``: 11
    int64 counts for the zones not followed. Returns the rows.
    A page marked ``UNKNOWN`` in ``pcp`` (no snapshot told its state) is
    learned from its first event: what that event would count as
    inconsistent counts as ``unknown_pages`` instead, and the block becomes
    known. ``saved``: a scratch copy of ``incons``.
    """
    r = 0
    for i in range(i0, i1):
        p = pfn[i]
        k = np.int64(order[i])
        lo = zlo[i]
        hi = zhi[i]
        e = kind[i]
        mine = lo == track_lo
        zn = nr if mine else scratch
        before = incons.sum()
        if e == K_FAILED:
            pass  # the kernel failed the request: no page changed hands
        elif e == K_FAST_ISOLATE:
            # one free block of order log2(pages taken) left the buddy, no pfn given
            if lo < 0:
                incons[I_OUTSIDE] += 1
            else:
                fk = np.int64(0)
                while (np.int64(1) << (fk + 1)) <= arg2[i]:
                    fk += 1
                s, seen = fast_isolate_block(i, fk, p, arg[i], kind, pfn, lo, hi, base,
                                             blk_order, marks)  # fmt: skip
                if s < 0:
                    incons[I_FAST_UNMATCHED] += 1
                else:
                    take_nr(s, fk, lo, base, blk_order, zn)
                    inferred[0 if seen else 1] += 1
        elif e == K_MIGRATE_NEW:
            # a migrated page's new home: a target compaction_alloc handed out from
            # isolated free pages; if the rebuild still holds it free, take it now
            if lo >= 0 and p + (np.int64(1) << k) <= hi:
                if take_nr(p, k, lo, base, blk_order, zn):
                    inferred[2] += np.int64(1) << k
        elif e == K_ISOLATE_FREE:
            if lo < 0:
                incons[I_OUTSIDE] += 1
            else:
                end = min(arg[i], hi)
                stride = scan_stride(p, end, k, arg2[i], base, blk_order)
                taken = free_scan(p, end, stride, arg2[i], base, blk_order, zn, True)
                incons[I_ISOLATE_MISMATCH] += abs(taken - arg2[i])
        elif lo < 0 or p + (np.int64(1) << k) > hi:
            incons[I_OUTSIDE] += 1
        else:
            o = p - base
            unknown = pcp[o] == UNKNOWN
            if unknown:
                for j in range(incons.shape[0]):
                    saved[j] = incons[j]
                for q in range(o, o + (np.int64(1) << k)):
                    if pcp[q] == UNKNOWN:
                        pcp[q] = 0
            was = pcp[o]
            if e == K_ZONE_LOCKED:
                if not take_nr(p, k, lo, base, blk_order, zn):
                    incons[I_ZL_NOT_FREE] += 1
                pcp[o] = (k + 1) if refill[i] else -(k + 1)
            elif e == K_ALLOC:
                if pcp[o] == k + 1 or pcp[o] == -(k + 1):
                    pcp[o] = 0
                elif take_nr(p, k, lo, base, blk_order, zn):
                    # refill: the task's first page event after its compaction pass
                    # (buddy_events): __alloc_pages_direct_compact's captured page,
                    # which compaction_capture took in __free_one_page, no rmqueue
                    if refill[i]:
                        inferred[3] += 1
                    else:
                        incons[I_ALLOC_OF_FREE] += 1
                elif _pcp_order(k):
                    incons[I_ALLOC_UNSEEN_PCP] += 1
            elif e == K_FREE:
                if _pcp_order(k):
                    if pcp[o] > 0:
                        incons[I_FREE_OF_PCP] += 1
                    if take_nr(p, k, lo, base, blk_order, zn):
                        incons[I_FREE_OF_FREE] += 1
                    pcp[o] = k + 1
                elif not give_nr(p, k, lo, hi, base, blk_order, zn):
                    incons[I_FREE_OF_FREE] += 1
            else:  # K_DRAIN
                if pcp[o] == k + 1:
                    pcp[o] = 0
                else:
                    incons[I_DRAIN_UNSEEN] += 1
                    pcp[o] = 0
                if not give_nr(p, k, lo, hi, base, blk_order, zn):
                    incons[I_FREE_OF_FREE] += 1
            if unknown:
                learned = incons.sum() - saved.sum()
                for j in range(incons.shape[0]):
                    incons[j] = saved[j]
                incons[I_UNKNOWN] += 1 if learned >= 0 else 0
            if mine:
                if was > 0:
                    pcp_pages[0] -= np.int64(1) << (was - 1)
                if pcp[o] > 0:
                    pcp_pages[0] += np.int64(1) << (pcp[o] - 1)
        if keep_row[i - i0]:
            for j in range(NF):
                out_nr[r, j] = nr[j]
            out_pcp[r] = pcp_pages[0]
            out_bad[r] = incons.sum() != before
            r += 1
    return r


@njit(cache=True)
def observe(kind, pfn, order, refill, arg, arg2, zlo, zhi, base, blk_order, pcp, incons,
            inferred, i0=0, i1=-1):  # type: ignore[no-untyped-def]  # fmt: skip
    """:func:`observe_steps` over events ``i0 .. i1-1`` (default: all), without a followed
    zone or step rows. A fast isolation among them looks ahead past ``i1``."""
    n = kind.shape[0] if i1 < 0 else i1
    observe_steps(kind, pfn, order, refill, arg, arg2, zlo, zhi, i0, n, base, blk_order, pcp,
                  incons, inferred, np.int64(-2), np.zeros(NF, np.int64), np.zeros(1, np.int64),
                  np.zeros(n - i0, np.bool_), np.zeros((1, NF), np.int64), np.zeros(1, np.int64),
                  np.zeros(1, np.bool_), np.zeros(NF, np.int64),
                  np.zeros(incons.shape[0], np.int64),
                  np.zeros(FAST_ISOLATE_MARKS, np.int64))  # fmt: skip


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
    inferred: dict[str, int] = field(default_factory=dict)


def marker_line(store: Store, trace_id: int, text: str) -> int | None:
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


@njit(cache=True)
def extend_heads(zero, free, base):  # type: ignore[no-untyped-def]
    """Free blocks from head pages only (kernels whose kpageflags marks only the first page).

    ``free[i]`` (pfn ``base + i``) is set on head pages; each head grows to
    the largest naturally aligned order (<= 10) whose other pages all have no
    flags at all (``zero``): the pages of a free block carry none. Modifies
    ``free`` in place.
    """
    n = free.shape[0]
    heads = np.flatnonzero(free)
    for h in heads:
        k = 0
        while k < MAX_ORDER:
            size = np.int64(1) << (k + 1)
            if ((h + base) & (size - 1)) != 0 or h + size > n:
                break
            ok = True
            for q in range(h + (np.int64(1) << k), h + size):
                if not zero[q] or free[q]:
                    ok = False
                    break
            if not ok:
                break
            k += 1
        for q in range(h, h + (np.int64(1) << k)):
            free[q] = True


def head_pages_only(free: np.ndarray, expected_free_pages: int | None) -> bool:
    """Does this kernel's kpageflags mark only the first page of a free block?

    On 6.18 every page of a free block carries KPF_BUDDY, so free runs are
    long and their pages add up to the buddyinfo total. Head-only marking
    shows as isolated pages adding up to far less (under half) than the free
    pages the same snapshot's buddyinfo reports.
    """
    marked = int(np.count_nonzero(free))
    if marked == 0 or not expected_free_pages:
        return False
    return marked * 2 < expected_free_pages


def _free_mask(
    store: Store, trace_id: int, snapshot: str, base: int, n: int,
    keep: HiddenFree | None = None,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Free pages of [base, base + n) from the stored kpageflags runs (KPF_BUDDY), and
    the pages with no flag at all that are not free (``flagless``: see :func:`hidden_free`).
    ``keep`` gets the runs read (``kpageflags``).

    Detects kernels that mark only a free block's first page
    (:func:`head_pages_only`) and then grows each head over the flagless pages
    after it (:func:`extend_heads`).
    """
    runs = store.query(  # in any order: covered_pages sorts what it merges
        "SELECT pfn, nr_pages, flags FROM snap_kpageflags WHERE trace_id = $t AND snapshot = $s",
        {"t": trace_id, "s": snapshot},
    )
    pfns = runs.column("pfn").to_numpy().astype(np.int64)
    lens = runs.column("nr_pages").to_numpy().astype(np.int64)
    flags = runs.column("flags").to_numpy()
    if keep is not None:
        keep.kpageflags = (pfns, lens, flags)
    lo = np.clip(pfns - base, 0, n)
    hi = np.clip(pfns + lens - base, 0, n)

    free = covered_pages(lo, hi, n, ((flags >> np.uint64(KPF_BUDDY)) & np.uint64(1)) == 1)
    zero = covered_pages(lo, hi, n, flags == 0)
    row = store.one(
        """SELECT sum(nr_free << "order") FROM snap_buddyinfo
           WHERE trace_id = $t AND snapshot = $s""",
        {"t": trace_id, "s": snapshot},
    )
    if head_pages_only(free, int(row[0]) if row and row[0] is not None else None):
        extend_heads(zero, free, base)
    zero &= ~free
    return free, zero


def pcp_page_count(pcp: np.ndarray) -> int:
    """Pages on pcp lists in a ``pcp`` array (k+1 where an order-k block starts)."""
    on = pcp[(pcp > 0) & (pcp < UNKNOWN)].astype(np.int64)
    return int((np.int64(1) << (on - 1)).sum())


def _counts(zones: list[dict[str, Any]], base: int, blk_order: np.ndarray,
            pcp: np.ndarray) -> list[ZoneState]:  # fmt: skip
    out = []
    for z in zones:
        lo, hi = int(z["start_pfn"]) - base, int(z["start_pfn"]) + int(z["spanned"]) - base
        b = blk_order[lo:hi]
        nr = np.bincount(b[b >= 0].astype(np.int64), minlength=NF)[:NF]
        out.append(ZoneState(int(z["node"]), str(z["zone"]), lo + base, hi + base,
                             [int(v) for v in nr], pcp_page_count(pcp[lo:hi])))  # fmt: skip
    return out


# The allocations a compaction capture may have served (mm/page_alloc.c
# __alloc_pages_direct_compact: a page compaction_capture took for the task in
# __free_one_page while its compact_zone ran is handed over with no rmqueue, so no
# mm_page_alloc_zone_locked): a user task's first page event after its
# mm_compaction_end, an allocation (task_capc: kernel threads never capture). A CTE
# ``captures(line)`` over trace $t.
CAPTURES_SQL = f"""
    cap_end AS (SELECT line AS end_line, pid FROM aux_events
                WHERE trace_id = $t AND event = 'mm_compaction_end'),
    cap_ev AS (SELECT line, pid, op, comm,
                      lag(line) OVER (PARTITION BY pid ORDER BY line) AS prev_line
               FROM events WHERE trace_id = $t AND pid IN (SELECT pid FROM cap_end)),
    captures AS (SELECT cap_ev.line FROM cap_ev ASOF JOIN cap_end
                   ON cap_ev.pid = cap_end.pid AND cap_ev.line > cap_end.end_line
                 WHERE cap_ev.op = 'alloc'
                   AND (cap_ev.prev_line IS NULL OR cap_ev.prev_line < cap_end.end_line)
                   AND NOT ({kthread_sql("cap_ev.comm")}))"""


# The buddy's takes mm_page_alloc_zone_locked does not trace (mm/page_alloc.c, 6.15+):
# __rmqueue_steal and try_to_claim_block's claim of a whole free pageblock hand the
# block out with only mm_page_alloc_extfrag (its page, alloc_order, alloc_migratetype);
# the claim of part of a pageblock goes through __rmqueue_smallest, whose zone_locked
# event on the same page comes right before on the same cpu. An extfrag without one
# within 64 lines before is a take of its own: to the cpu's pcp list when
# ``percpu_refill`` (a zone_locked's: a pcp order, a pcp type), else to the caller. A
# FROM item over trace $t: (line, pfn, alloc_order, alloc_mt, cpu, percpu_refill).
UNTRACED_TAKES_SQL = f"""(
    SELECT x.line, x.pfn, x.alloc_order, x.alloc_mt, x.cpu,
           (x.alloc_order <= 3 OR x.alloc_order = {PAGEBLOCK_ORDER})
             AND x.alloc_mt BETWEEN 0 AND 2 AS percpu_refill
    FROM (SELECT line, pfn, coalesce(cpu, -1) AS cpu,
                 TRY_CAST(args->>'alloc_order' AS INTEGER) AS alloc_order,
                 TRY_CAST(args->>'alloc_migratetype' AS INTEGER) AS alloc_mt
          FROM aux_events WHERE trace_id = $t AND event = 'mm_page_alloc_extfrag'
            AND pfn IS NOT NULL) x
    ASOF LEFT JOIN (SELECT line, pfn, coalesce(cpu, -1) AS cpu FROM aux_events
                    WHERE trace_id = $t AND event = 'mm_page_alloc_zone_locked') z
      ON z.pfn = x.pfn AND z.line < x.line
    WHERE x.alloc_order IS NOT NULL
      AND (z.line IS NULL OR z.line < x.line - 64 OR z.cpu <> x.cpu)) x"""


def buddy_events(
    store: Store, trace_id: int, after: int | None, before: int | None, with_seq: bool = False,
    with_cpu: bool = False,
) -> Any:  # fmt: skip
    """The buddy-level events with ``after < line < before``, in line order (Arrow).

    ``with_seq``: add the canonical events' ``seq`` (NULL for the others);
    ``with_cpu``: add each event's ``cpu`` (-1 when not recorded). An
    isolate-freepages event's ``order`` is its nr_scanned (:func:`observe_steps`).
    An allocation's ``refill`` is true when it may be a compaction capture
    (:data:`CAPTURES_SQL`).
    """
    seq = (", seq" if with_seq else "") + (", cpu" if with_cpu else "")
    return store.query(
        rf"""WITH {CAPTURES_SQL}
            SELECT line, kind, pfn, "order", refill, arg, arg2{seq} FROM (
              SELECT line, CASE WHEN op = 'alloc' THEN {K_ALLOC} ELSE {K_FREE} END AS kind,
                     pfn, "order", line IN (SELECT line FROM captures) AS refill,
                     0::BIGINT AS arg, 0::BIGINT AS arg2, seq, coalesce(cpu, -1) AS cpu
              FROM events WHERE trace_id = $t AND pfn IS NOT NULL
              UNION ALL
              SELECT line, {K_FAILED}, -1, "order", false, 0, 0, seq, coalesce(cpu, -1)
              FROM events WHERE trace_id = $t AND failed
              UNION ALL
              SELECT line, CASE WHEN event = 'mm_page_alloc_zone_locked' THEN {K_ZONE_LOCKED}
                                ELSE {K_DRAIN} END,
                     pfn, "order", coalesce(args->>'percpu_refill' = '1', false), 0, 0, NULL,
                     coalesce(cpu, -1)
              FROM aux_events WHERE trace_id = $t AND pfn IS NOT NULL AND "order" IS NOT NULL
                AND event IN ('mm_page_alloc_zone_locked', 'mm_page_pcpu_drain')
              UNION ALL
              SELECT x.line, {K_ZONE_LOCKED}, x.pfn, x.alloc_order, x.percpu_refill,
                     0, 0, NULL, x.cpu
              FROM {UNTRACED_TAKES_SQL}
              UNION ALL
              SELECT line, {K_ISOLATE_FREE},
                     hexint(regexp_extract(args->>'range', '\((0x[0-9a-fA-F]+) ~', 1)),
                     coalesce(TRY_CAST(args->>'nr_scanned' AS BIGINT), 0), false,
                     hexint(regexp_extract(args->>'range', '~ (0x[0-9a-fA-F]+)\)', 1)),
                     TRY_CAST(args->>'nr_taken' AS BIGINT), NULL, coalesce(cpu, -1)
              FROM aux_events WHERE trace_id = $t AND event = 'mm_compaction_isolate_freepages'
                AND TRY_CAST(args->>'nr_taken' AS BIGINT) > 0
              UNION ALL
              SELECT line, {K_FAST_ISOLATE},
                     hexint(regexp_extract(args->>'range', '\((0x[0-9a-fA-F]+) ~', 1)),
                     0, false,
                     hexint(regexp_extract(args->>'range', '~ (0x[0-9a-fA-F]+)\)', 1)),
                     TRY_CAST(args->>'nr_taken' AS BIGINT), NULL, coalesce(cpu, -1)
              FROM aux_events WHERE trace_id = $t
                AND event = 'mm_compaction_fast_isolate_freepages'
                AND TRY_CAST(args->>'nr_taken' AS BIGINT) > 0
              UNION ALL
              SELECT line, {K_MIGRATE_NEW}, {PRESENT_PTE_PFN_SQL},
                     TRY_CAST(args->>'order' AS INTEGER), false, 0, 0, NULL, coalesce(cpu, -1)
              FROM aux_events WHERE trace_id = $t AND event = 'remove_migration_pte')
            WHERE pfn IS NOT NULL
              AND ($after IS NULL OR line > $after) AND ($before IS NULL OR line < $before)
            ORDER BY line""",
        {"t": trace_id, "after": after, "before": before},
    )


def _event_columns(ev: Any, zlo: np.ndarray, zhi: np.ndarray,
                   memory: PresentMemory | None = None) -> tuple[np.ndarray, ...]:  # fmt: skip
    """The first eight arguments of :func:`observe_steps` from an :func:`buddy_events` table.

    kind, pfn, order, refill, arg, arg2, and each event's zone bounds (-1
    when its pfn is in no zone). With ``memory``, pfns (and the isolate ranges'
    ends in ``arg``) are the model's dense pfns (replay.engine.present).
    """
    kind = ev.column("kind").to_numpy().astype(np.int8)
    pfns = ev.column("pfn").to_numpy().astype(np.int64)
    arg = ev.column("arg").to_numpy().astype(np.int64)
    if memory is not None:
        ranges = (kind == K_ISOLATE_FREE) | (kind == K_FAST_ISOLATE)  # [pfn, arg)
        pfns = np.where(ranges, memory.to_model_bound(pfns), memory.to_model(pfns))
        arg = np.where(ranges, memory.to_model_bound(arg), arg)
    zi = np.clip(np.searchsorted(zlo, pfns, side="right") - 1, 0, None)
    inside = (pfns >= zlo[zi]) & (pfns < zhi[zi])
    return (
        kind,
        pfns,
        ev.column("order").to_numpy().astype(np.int64),
        ev.column("refill").to_numpy(zero_copy_only=False).astype(np.bool_),
        arg,
        ev.column("arg2").to_numpy().astype(np.int64),
        np.where(inside, zlo[zi], -1).astype(np.int64),
        np.where(inside, zhi[zi], -1).astype(np.int64),
    )


def settle_snapshot_window(store: Store, trace_id: int, zb: tuple, hidden: HiddenFree) -> None:
    """Replay the before-snapshot window's own events over the kpageflags state.

    The kpageflags file is read over a fraction of a second inside that
    window, so it mixes states from it. Replaying the window's events settles
    those pages (a free of a page already free, or an allocation of a page
    already allocated, is a no-op); what they would count as inconsistent is
    not counted. ``hidden``: what :func:`initial_state` read (its events start
    at the window's opening marker).
    """
    first = marker_line(store, trace_id, BEFORE_END)
    if marker_line(store, trace_id, BEFORE_BEGIN) is not None and first is not None:
        hidden.apply(None, first, zb, np.zeros(len(INCONSISTENCIES), np.int64))


def _has_kpageflags(store: Store, trace_id: int) -> bool:
    row = store.one(
        "SELECT count(*) FROM snap_kpageflags WHERE trace_id = $t AND snapshot = 'before'",
        {"t": trace_id},
    )
    return bool(row and row[0])


@dataclass
class HiddenFree:
    """What :func:`hidden_free` found: ``pages`` (int64[2]: put on pcp lists, put in
    the buddy) and ``pcp_cpu`` (int16 per page of the state's range: the cpu whose
    pcp list held the block starting there, -1 unknown)."""

    pages: np.ndarray = field(default_factory=lambda: np.zeros(2, np.int64))
    pcp_cpu: np.ndarray | None = None
    # the buddy-level events it read (from the before-snapshot's opening marker), as
    # :func:`_event_columns` arrays, their lines and seqs (NaN for non-canonical events):
    # the rebuild applies slices of them
    cols: tuple[np.ndarray, ...] | None = None
    lines: np.ndarray | None = None
    seqs: np.ndarray | None = None
    # the memory a trace with no snapshot shows (initial_state's dense pfns), if less
    # than its zone's span
    memory: PresentMemory | None = None
    # the before-kpageflags runs initial_state read (pfn, nr_pages, flags): a fork's page
    # types read them again from here
    kpageflags: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def span(self, after: int | None, before: int | None) -> tuple[int, int]:
        """The indices ``i0, i1`` of the events with ``after < line < before`` in the
        arrays read (either None: unbounded)."""
        assert self.lines is not None
        i0 = 0 if after is None else int(np.searchsorted(self.lines, after, side="right"))
        i1 = (self.lines.shape[0] if before is None
              else int(np.searchsorted(self.lines, before, side="left")))  # fmt: skip
        return i0, max(i0, i1)

    def apply(self, after: int | None, before: int | None, zb: tuple, incons: np.ndarray,
              inferred: np.ndarray | None = None) -> int:  # fmt: skip
        """Apply the events with ``after < line < before`` (either None: unbounded) to
        the state ``zb`` (:func:`observe`), from the arrays already read; returns how
        many. A fast isolation among them names its block from the events after it,
        past ``before`` too, as :func:`run_observed` does: a state rebuilt up to a line
        holds the very blocks a compaction pass isolated before it."""
        assert self.cols is not None
        i0, i1 = self.span(after, before)
        _zlo, _zhi, base, blk_order, pcp = zb
        if inferred is None:
            inferred = np.zeros(N_INFERRED, np.int64)
        observe(*self.cols, base, blk_order, pcp, incons, inferred, i0, i1)
        return i1 - i0


def initial_state(
    store: Store, trace_id: int, need_snapshot: bool = True, hidden: HiddenFree | None = None
) -> tuple:
    """Zones, base pfn, blk_order and pcp arrays, zone bounds: the before-kpageflags state.

    Free pages kpageflags cannot show (on pcp lists, or held by free page
    reporting) are found from their first later event (:func:`hidden_free`);
    ``hidden`` (optional) gets what was found. Without a kpageflags snapshot (``need_snapshot``
    False) every page starts UNKNOWN and is learned from its first event; the
    zones come from the zoneinfo snapshot, else the trace's zone.
    """
    zones = _zones(store, trace_id, "before")
    has_flags = _has_kpageflags(store, trace_id)
    if need_snapshot and (not zones or not has_flags):
        raise UsageError(
            "this needs the trace's before-snapshot zoneinfo and kpageflags "
            "(a capture folder, or replay record)"
        )
    if not zones:
        row = store.one(
            "SELECT zone_start_pfn, zone_pages FROM traces WHERE trace_id = $t", {"t": trace_id}
        )
        if row is None or row[1] is None:
            raise UsageError("the trace has no zone (no zoneinfo snapshot and no pfns)")
        zones = [{"node": 0, "zone": "trace", "start_pfn": int(row[0] or 0),
                  "spanned": int(row[1])}]  # fmt: skip
        # pfns far apart: the state covers the memory they touch (dense pfns, present.py)
        memory = None if has_flags else present_memory(store, trace_id)
        if memory is not None:
            zones[0]["spanned"] = memory.pages
            if hidden is not None:
                hidden.memory = memory
    base = min(int(z["start_pfn"]) for z in zones)
    end = max(int(z["start_pfn"]) + int(z["spanned"]) for z in zones)
    n = end - base
    # the rebuild keeps a few bytes per page of the zones' span (block orders, pcp
    # marks, the snapshot's free mask): refuse a span that cannot fit before allocating
    what = f"the zones' span (pfn {base} to {end})"
    if hidden is not None and hidden.memory is not None:
        what = (f"the trace's zone (pfn {base} to {hidden.memory.end_pfn}; the "
                f"{hidden.memory.stretches:,} stretches of it the trace touches)")  # fmt: skip
    check_zone_fits(n, OBSERVED_BYTES_PER_PAGE, what,
                    "the observed rebuild needs the trace's zones from its snapshots "
                    "(replay record saves them)")  # fmt: skip
    blk_order = np.full(n, -1, np.int8)
    zlo = np.array([int(z["start_pfn"]) for z in zones], np.int64)
    zhi = np.array([int(z["start_pfn"]) + int(z["spanned"]) for z in zones], np.int64)
    if has_flags:
        free, flagless = _free_mask(store, trace_id, "before", base, n, hidden)
        init_blocks(free, base, zlo, zhi, blk_order)
        del free
        pcp = np.zeros(n, np.int8)
        found = hidden if hidden is not None else HiddenFree()
        found.pcp_cpu = np.full(n, -1, np.int16)
        ev = buddy_events(store, trace_id, marker_line(store, trace_id, BEFORE_BEGIN), None,
                          with_seq=True, with_cpu=True)  # fmt: skip
        cols = _event_columns(ev, zlo, zhi)
        cpu = ev.column("cpu").to_numpy().astype(np.int16)
        hidden_free(*cols[:3], *cols[6:], cpu, base, flagless, blk_order, pcp, found.pcp_cpu,
                    found.pages)  # fmt: skip
        found.cols, found.lines = cols, ev.column("line").to_numpy().astype(np.int64)
        found.seqs = ev.column("seq").to_numpy(zero_copy_only=False).astype(np.float64)
        del ev, cpu, flagless
    else:
        pcp = np.full(n, UNKNOWN, np.int8)
    return zones, base, blk_order, pcp, zlo, zhi


def rebuild(store: Store, trace_id: int) -> Observed:
    """Rebuild the buddy state from the before-kpageflags and the recorded events.

    The before-snapshot window's own events (between the ``snapshot before
    begin`` and ``end`` markers) are replayed over the kpageflags state first,
    then events are applied up to the ``snapshot after begin`` marker
    (buddyinfo is the first file of the after-snapshot); without markers, all
    of them.
    """
    hidden = HiddenFree()
    zones, base, blk_order, pcp, zlo, zhi = initial_state(store, trace_id, hidden=hidden)
    initial = _counts(zones, base, blk_order, pcp)

    zb = (zlo, zhi, base, blk_order, pcp)
    settle_snapshot_window(store, trace_id, zb, hidden)
    first = marker_line(store, trace_id, BEFORE_END)
    last = marker_line(store, trace_id, AFTER_BEGIN)
    incons = np.zeros(len(INCONSISTENCIES), np.int64)
    inferred = np.zeros(N_INFERRED, np.int64)
    inferred[N_INFERRED - 2 :] = hidden.pages
    n_events = hidden.apply(first, last, zb, incons, inferred)
    return Observed(
        trace_id=trace_id,
        first_line=first,
        last_line=last,
        events=n_events,
        zones=_counts(zones, base, blk_order, pcp),
        initial=initial,
        inconsistencies=dict(zip(INCONSISTENCIES, (int(v) for v in incons), strict=True)),
        inferred=dict(zip(INFERRED, (int(v) for v in inferred), strict=True)),
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
    reporting_order = _reporting_order(store, trace_id)
    zones = []
    for z in obs.zones:
        k = by_zone.get((z.node, z.zone))
        if k is None:
            continue
        fk = sum(n << o for o, n in enumerate(k))
        in_flight = reported_in_flight(k, z.nr_free, reporting_order)
        high_k = sum(n << o for o, n in enumerate(k) if o >= 3)
        high_r = sum(n << o for o, n in enumerate(z.nr_free) if o >= 3)
        zones.append({
            "zone": z.zone, "node": z.node,
            "free_pages_kernel": fk, "free_pages_rebuilt": z.free_pages,
            "free_pages_diff_pct": percent(z.free_pages - fk, fk),
            "order3_pages_diff_pct": percent(high_r - high_k, high_k),
            "nr_free_kernel": k, "nr_free_rebuilt": z.nr_free,
            "order_diff_pct": [percent(r - n, n) if n else None for r, n in zip(z.nr_free, k,
                                                                             strict=True)],
            "pcp_pages_rebuilt": z.pcp_pages,
            "reporting_in_flight_pages": in_flight,
            "free_pages_diff_pct_reporting": percent(z.free_pages - in_flight - fk, fk),
        })  # fmt: skip
    return {
        "trace": store.trace_row(trace_id)["name"],
        "events_applied": obs.events,
        "from_line": obs.first_line,
        "to_line": obs.last_line,
        "zones": zones,
        "inconsistencies": obs.inconsistencies,
        "inferred": obs.inferred,
        "missing_events": missing_events(store, trace_id),
    }


# What the rebuild needs from a trace when the kernel did something (a vmstat counter
# grew over the capture): the events that show it, and what is lost without them.
NEEDED_EVENTS = (
    (("compact_isolated", "compact_free_scanned"),
     ("mm_compaction_isolate_freepages", "mm_compaction_fast_isolate_freepages"),
     "compaction took free pages as migration targets with no allocation event: the "
     "rebuild keeps them free until they are freed"),
    (("pgmigrate_success",), ("remove_migration_pte",),
     "migration targets of mapped pages are only named by their new pte"),
    (("pgalloc_normal", "pgalloc_dma32"), ("mm_page_alloc_zone_locked", "mm_page_pcpu_drain"),
     "pages moving between the buddy and the pcp lists (refills, drains) are invisible: "
     "the rebuild cannot tell pcp pages from allocated ones"),
)  # fmt: skip


def missing_events(store: Store, trace_id: int) -> list[dict[str, Any]]:
    """Events the rebuild needs that the trace lacks, though the kernel used their paths.

    From the capture's vmstat (after minus before): a counter in NEEDED_EVENTS
    that grew while none of its events is in the trace. Each entry names the
    events, the counters that grew and what the rebuild cannot follow.
    """
    grown = {
        str(r["key"]): int(r["d"])
        for r in store.query(
            """SELECT key, max(value) FILTER (snapshot = 'after')
                          - max(value) FILTER (snapshot = 'before') AS d
               FROM snap_vmstat WHERE trace_id = $t GROUP BY key""",
            {"t": trace_id},
        ).to_pylist()
        if r["d"] is not None and r["d"] > 0
    }
    seen = {
        str(r["event"])
        for r in store.query(
            "SELECT DISTINCT event FROM aux_events WHERE trace_id = $t", {"t": trace_id}
        ).to_pylist()
    }
    out = []
    for counters, events, why in NEEDED_EVENTS:
        used = {c: grown[c] for c in counters if c in grown}
        if used and not seen.intersection(events):
            out.append({"events": list(events), "vmstat": used, "without_them": why})
    return out


# mm/page_reporting.h: PAGE_REPORTING_CAPACITY, the blocks one report cycle isolates
PAGE_REPORTING_CAPACITY = 32


def _reporting_order(store: Store, trace_id: int) -> int | None:
    """page_reporting_order from the capture's sysctl snapshot (None: not recorded)."""
    row = store.one(
        """SELECT TRY_CAST(value AS INTEGER) FROM snap_sysctl
           WHERE trace_id = $t AND key = 'page_reporting.page_reporting_order'
           ORDER BY snapshot = 'after' DESC LIMIT 1""",
        {"t": trace_id},
    )
    return None if row is None or row[0] is None else int(row[0])


def reported_in_flight(kernel: list[int], rebuilt: list[int], order: int | None) -> int:
    """Pages free page reporting may have held off the free lists when buddyinfo was read.

    ``page_reporting_cycle`` (mm/page_reporting.c) isolates up to
    PAGE_REPORTING_CAPACITY free blocks of one order >= ``page_reporting_order``
    (``__isolate_free_page``, no tracepoint) while the host is told, then puts
    them back (``__putback_isolated_page``, no tracepoint either). A snapshot
    taken meanwhile lacks them. Returns the pages of the largest surplus of
    rebuilt over kernel blocks, at one order >= ``order``, that one cycle can
    hold (1..32 blocks); 0 when there is none or reporting is off/unknown.
    """
    if order is None or order < 0:
        return 0
    best = 0
    for o in range(max(order, 0), NF):
        d = rebuilt[o] - kernel[o]
        if 0 < d <= PAGE_REPORTING_CAPACITY:
            best = max(best, d << o)
    return best


def page_types(
    store: Store, trace_id: int, lo: int, blk: np.ndarray, pcp: np.ndarray,
    runs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:  # fmt: skip
    """Per page of [lo, lo + n) (pfn), from its ``blk`` and ``pcp`` arrays (one entry
    per page of the range): -1 free (in a free block or on a pcp list), else the
    migratetype an allocated page counts as: MOVABLE where the before-kpageflags has
    KPF_LRU (what ``prep_move_freepages_block`` counts as movable), else UNMOVABLE.
    ``runs``: the before-kpageflags runs if already read (:func:`kpageflags_bits`)."""
    n = blk.shape[0]
    free = np.zeros(n, np.bool_)
    for o in np.flatnonzero(blk >= 0):
        free[o : o + (1 << int(blk[o]))] = True
    for o in np.flatnonzero((pcp > 0) & (pcp < UNKNOWN)):
        free[o : o + (1 << (int(pcp[o]) - 1))] = True
    (lru,) = kpageflags_bits(store, trace_id, lo, lo + n, (KPF_LRU,), runs)
    return np.where(free, np.int8(-1), lru.astype(np.int8))  # (int8 throughout)


class PageblockTypes:
    """The kernel's pageblock migratetypes over an observed run of the zone [lo, hi).

    At the before-snapshot: the types the kernel's first takes after it show
    (:func:`replay.engine.environment.taken_pageblock_types`), the rest pagetypeinfo's
    count of each type placed by each page's flags
    (:func:`replay.engine.environment.initial_pageblock_types`), as a fork's model
    starts; then each recorded claim: an ``mm_page_alloc_extfrag`` with
    ``change_ownership=1`` gives the fallback block's pageblocks the allocation's type
    (``try_to_claim_block``; a block of order >= pageblock_order, all of its
    pageblocks). ``pb_mt``: int8 per pageblock of the range, current up to
    :meth:`advance`'s line.
    """

    def __init__(self, store: Store, trace_id: int, zone: str, managed: int | None, lo: int,
                 hi: int, base: int, blk_order: np.ndarray, pcp: np.ndarray) -> None:  # fmt: skip
        from replay.engine.environment import (
            Environment,
            first_taken,
            initial_pageblock_types,
            loose_blocks,
            taken_pageblock_types,
        )

        env = Environment(lo, hi - lo, zone, 1, (0, 0, 0), 1, 1, managed)
        blk = blk_order[lo - base : hi - base]
        on_pcp = pcp[lo - base : hi - base]
        mt = page_types(store, trace_id, lo, blk, on_pcp)
        self.pb0 = lo >> PAGEBLOCK_ORDER
        # the pageblocks the kernel's first takes after the snapshot show (a fork's too)
        try:
            after = first_fork_seq(store, trace_id)
        except UsageError:  # no event after the snapshot: nothing shows a type
            after = None
        known = None
        if after is not None:
            loose = loose_blocks(blk, np.where(on_pcp < UNKNOWN, on_pcp, 0))
            takes = first_taken(store, trace_id, env, after, *loose)
            known = taken_pageblock_types(store, trace_id, env, takes)
        self.pb_mt = initial_pageblock_types(store, trace_id, env, mt, known)
        claims = store.query(
            """SELECT line, pfn, TRY_CAST(args->>'alloc_migratetype' AS INTEGER) AS mt,
                      coalesce(TRY_CAST(args->>'fallback_order' AS INTEGER), 0) AS k
               FROM aux_events WHERE trace_id = $t AND event = 'mm_page_alloc_extfrag'
                 AND args->>'change_ownership' = '1' AND pfn >= $lo AND pfn < $hi
                 AND TRY_CAST(args->>'alloc_migratetype' AS INTEGER) BETWEEN 0 AND 2
               ORDER BY line""",
            {"t": trace_id, "lo": lo, "hi": hi},
        )
        self._line = claims.column("line").to_numpy().astype(np.int64)
        self._pfn = claims.column("pfn").to_numpy().astype(np.int64)
        self._mt = claims.column("mt").to_numpy().astype(np.int8)
        self._k = claims.column("k").to_numpy().astype(np.int64)
        self._next = 0

    def advance(self, line: int) -> None:
        """Apply the claims recorded at or before ``line``."""
        n = self.pb_mt.shape[0]
        while self._next < self._line.shape[0] and self._line[self._next] <= line:
            i = self._next
            first = (self._pfn[i] >> PAGEBLOCK_ORDER) - self.pb0
            span = 1 << max(int(self._k[i]) - PAGEBLOCK_ORDER, 0)
            self.pb_mt[max(first, 0) : min(first + span, n)] = self._mt[i]
            self._next += 1


def _pageblock_rows(
    seq: int, lo: int, hi: int, base: int, blk_order: np.ndarray, pcp: np.ndarray,
    pb_mt: np.ndarray | None = None, memory: PresentMemory | None = None,
) -> Any:  # fmt: skip
    """``pageblocks`` rows of the followed zone [lo, hi) (pfn): free and pcp pages, and
    each pageblock's type when ``pb_mt`` gives it (:class:`PageblockTypes`). With
    ``memory``, [lo, hi) are its dense pfns and the rows name the trace's pageblocks.

    The allocated pages' types are not recorded: NULL.
    """
    import pyarrow as pa

    from replay.engine.results import PAGEBLOCKS_SCHEMA

    pb0, pb1 = lo >> 9, (hi - 1) >> 9
    n = pb1 - pb0 + 1
    b = blk_order[lo - base : hi - base]
    starts = np.flatnonzero(b >= 0)
    k = b[starts].astype(np.int64)
    first = ((starts + lo) >> 9) - pb0
    small = k < 9
    free = np.bincount(first[small], weights=np.left_shift(1, k[small]), minlength=n)
    for j in range(1 << (MAX_ORDER - 9)):  # blocks of order >= 9: 512 in each pageblock
        big = (k >= 9) & (j < np.left_shift(1, np.maximum(k - 9, 0)))
        free += np.bincount(first[big] + j, minlength=n)[:n] * 512
    free = free.astype(np.int64)
    pc = pcp[lo - base : hi - base]
    on = np.flatnonzero((pc > 0) & (pc < UNKNOWN))
    pcp_pb = np.bincount(((on + lo) >> 9) - pb0, weights=(1 << (pc[on].astype(np.int64) - 1)),
                         minlength=n).astype(np.int64)  # fmt: skip
    null32 = pa.nulls(n, pa.int32())
    types = pa.nulls(n, pa.int8()) if pb_mt is None else pa.array(pb_mt[:n].astype(np.int8))
    index = np.arange(pb0, pb1 + 1, dtype=np.int64)
    if memory is not None:
        index = memory.to_real(index << 9) >> 9
    return pa.RecordBatch.from_arrays(
        [pa.array(np.full(n, seq, np.int64)), pa.array(index),
         types, pa.array(free.astype(np.int32)), null32, null32, null32,
         pa.array(pcp_pb.astype(np.int32))],
        schema=PAGEBLOCKS_SCHEMA,
    )  # fmt: skip


def run_observed(
    store: Store,
    trace: str,
    *,
    every: int = 1,
    pageblock_every: int | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """An observed run: the rebuilt state after every recorded event, into runs/steps.

    Like a what-if run's rows (``model = 'observed'``), for the zone holding
    the trace's default zone start: each allocation's ``pfn`` is the pfn the
    kernel handed out; ``outcome`` is ``inconsistent`` where the event could
    not be explained (see INCONSISTENCIES), else ``ok``; ``nr_free_*``,
    ``free_pages``, ``pcp_pages`` are the rebuilt zone's. The events of the
    before-snapshot window are applied too (their inconsistencies are not
    counted: the kpageflags file mixes states from that window). The whole
    trace is held in memory (captures are small).
    """
    import json
    import time
    from datetime import UTC, datetime

    import pyarrow as pa

    from replay.engine.results import STEPS_SCHEMA, insert_run, outputs, steps_batch
    from replay.errors import UsageError as _UsageError

    if every < 1:
        raise _UsageError("--every must be at least 1")
    t_start = time.perf_counter()
    started = datetime.now(UTC).replace(tzinfo=None)
    trace_id = store.trace_id(trace)
    hidden = HiddenFree()
    zones, base, blk_order, pcp, zlo, zhi = initial_state(store, trace_id, need_snapshot=False,
                                                          hidden=hidden)  # fmt: skip
    row = store.one(
        "SELECT zone_start_pfn, zone_pages FROM traces WHERE trace_id = $t", {"t": trace_id}
    )
    zstart = int(row[0]) if row and row[0] is not None else int(zlo[0])
    zi = int(np.searchsorted(zlo, zstart, side="right") - 1)
    if zi < 0 or zstart >= zhi[zi]:
        raise _UsageError(f"the trace's zone start pfn {zstart:#x} is in no snapshot zone")
    track_lo = int(zlo[zi])
    # pageblocks rows cover the trace's zone (as a what-if run's), within the snapshot zone
    pb_lo = max(zstart, track_lo)
    pb_hi = min(zstart + int(row[1]), int(zhi[zi])) if row and row[1] else int(zhi[zi])
    lo, hi = track_lo - base, int(zhi[zi]) - base
    b = blk_order[lo:hi]
    nr = np.bincount(b[b >= 0].astype(np.int64), minlength=NF)[:NF].astype(np.int64)
    # the pages found on pcp lists at the snapshot (hidden_free) are the zone's pcp pages
    pcp_pages = np.array([pcp_page_count(pcp[lo:hi])], np.int64)
    opened = marker_line(store, trace_id, BEFORE_BEGIN)
    first = marker_line(store, trace_id, BEFORE_END)
    incons = np.zeros(len(INCONSISTENCIES), np.int64)
    inferred = np.zeros(N_INFERRED, np.int64)
    parts = []
    t_replay = 0.0
    n_all = int(store.one("SELECT events FROM traces WHERE trace_id = $t", {"t": trace_id})[0])
    pbe = max(1, -(-n_all // 100)) if pageblock_every is None else pageblock_every
    # the kernel's pageblock types, with a kpageflags snapshot (else NULL)
    types = None
    zrow = store.one(
        """SELECT zone, managed FROM snap_zoneinfo WHERE trace_id = $t AND snapshot = 'before'
             AND start_pfn = $s""",
        {"t": trace_id, "s": track_lo},
    )
    if zrow is not None and _has_kpageflags(store, trace_id):
        types = PageblockTypes(store, trace_id, str(zrow[0]),
                               int(zrow[1]) - (pb_lo - track_lo) if zrow[1] else None, pb_lo,
                               pb_hi, base, blk_order, pcp)  # fmt: skip

    def pb_types(line: int | None) -> np.ndarray | None:
        if types is None:
            return None
        if line is not None:
            types.advance(line)
        return types.pb_mt

    memory = hidden.memory  # pfns far apart: the state's pfns are dense (present.py)
    pb_rows: list[pa.RecordBatch] = [
        _pageblock_rows(-1, pb_lo, pb_hi, base, blk_order, pcp, pb_types(None), memory)
    ]
    last_line: int | None = None
    for after, before, counted in ((opened, first, False), (first, None, True)):
        if after is None and not counted:
            continue
        if hidden.cols is not None and (after is not None or opened is None):
            # the events initial_state read (from the opening marker on), whole: a fast
            # isolation looks ahead past this range, as HiddenFree.apply's (fork_state)
            assert hidden.lines is not None and hidden.seqs is not None
            cols = hidden.cols
            at, end = hidden.span(after, before)
            lines, seq = hidden.lines[at:end], hidden.seqs[at:end]
        else:
            ev = buddy_events(store, trace_id, after, before, with_seq=True)
            lines = ev.column("line").to_numpy().astype(np.int64)
            seq = ev.column("seq").to_numpy(zero_copy_only=False)
            cols = _event_columns(ev, zlo, zhi, memory)
            at = 0
        if lines.shape[0]:
            last_line = int(lines[-1])
        is_canon = ~np.isnan(seq) if seq.dtype.kind == "f" else np.ones(seq.shape, bool)
        kind = cols[0][at : at + lines.shape[0]]
        # the steps name the pfns the kernel handed out (the trace's, not the dense ones)
        pfns = (cols[1][at : at + lines.shape[0]] if memory is None
                else ev.column("pfn").to_numpy().astype(np.int64))  # fmt: skip
        keep = is_canon & ((kind == K_ALLOC) | (kind == K_FREE) | (kind == K_FAILED))
        m = int(np.count_nonzero(keep))
        out_nr = np.zeros((m, NF), np.int64)
        out_pcp = np.zeros(m, np.int64)
        out_bad = np.zeros(m, np.bool_)
        # Segments end after the canonical events whose seq is a pageblock snapshot point.
        canon_seq = np.where(keep, np.nan_to_num(seq, nan=-1), -1).astype(np.int64)
        snap_at = np.flatnonzero(keep & (canon_seq % pbe == 0)) if pbe > 0 else np.zeros(0, int)
        bounds = [int(j) + 1 for j in snap_at]
        if not bounds or bounds[-1] != len(kind):
            bounds.append(len(kind))
        snap_set = {int(j) for j in snap_at}
        i0 = r0 = 0
        for i1 in bounds:
            seg = keep[i0:i1]
            r1 = r0 + int(np.count_nonzero(seg))
            t0 = time.perf_counter()
            observe_steps(
                *cols, at + i0, at + i1, base, blk_order, pcp,
                incons if counted else np.zeros_like(incons),
                inferred if counted else np.zeros_like(inferred), np.int64(track_lo), nr,
                pcp_pages, seg, out_nr[r0:r1], out_pcp[r0:r1], out_bad[r0:r1],
                np.zeros(NF, np.int64), np.zeros(len(INCONSISTENCIES), np.int64),
                np.zeros(FAST_ISOLATE_MARKS, np.int64),
            )  # fmt: skip
            t_replay += time.perf_counter() - t0
            if i1 - 1 in snap_set and counted:
                mt_now = pb_types(int(lines[i1 - 1]))
                pb_rows.append(_pageblock_rows(int(canon_seq[i1 - 1]), pb_lo, pb_hi, base,
                                               blk_order, pcp, mt_now, memory))  # fmt: skip
            i0, r0 = i1, r1
        if not counted:
            out_bad[:] = False  # the snapshot window settles the kpageflags state
        failed_kept = kind[keep] == K_FAILED
        parts.append((seq[keep].astype(np.int64), (kind[keep] == K_ALLOC) | failed_kept,
                      pfns[keep], out_nr, out_pcp, out_bad, failed_kept))  # fmt: skip
        if progress is not None:
            progress.advance_to(int(seq[keep][-1]) + 1 if m else 0)
    seq = np.concatenate([p[0] for p in parts])
    is_alloc = np.concatenate([p[1] for p in parts])
    n_events = int(seq.shape[0])
    last_seq = int(seq.max()) if n_events else -1
    keep_counters = (seq % every == 0) | (seq == last_seq)
    keep_row = keep_counters | is_alloc
    m = int(np.count_nonzero(keep_row))
    out = outputs(m)
    out[0][:] = np.concatenate([p[2] for p in parts])[keep_row]
    failed = np.concatenate([p[6] for p in parts])
    # outcome: failed where the kernel failed the request, inconsistent where the
    # rebuilt state could not explain the event, else ok (OUTCOMES' indices)
    outcome = np.where(np.concatenate([p[5] for p in parts]), 3, 0)
    out[1][:] = np.where(failed, 1, outcome)[keep_row]
    out[2][:] = np.concatenate([p[3] for p in parts])[keep_row]
    out[3][:] = keep_counters[keep_row]
    out[4][:] = np.cumsum(failed)[keep_row]
    out[5][:] = np.concatenate([p[4] for p in parts])[keep_row]
    for a in out[6:]:
        a[:] = 0
    batch = steps_batch(seq[keep_row], is_alloc[keep_row], out)
    # no model: no fallbacks or defragmentation costs to count
    for name in ("fallbacks", "migrated", "scanned", "evicted", "degraded"):
        i = batch.schema.get_field_index(name)
        batch = batch.set_column(i, STEPS_SCHEMA.field(name), pa.nulls(m, pa.int64()))
    inconsistencies = dict(zip(INCONSISTENCIES, (int(v) for v in incons), strict=True))
    inferred_by = dict(zip(INFERRED, (int(v) for v in inferred), strict=True))
    with store.transaction():
        r = store.one("SELECT coalesce(max(run_id), 0) + 1 FROM runs")
        run_id = int(r[0]) if r else 1
        store.append_stream(
            "steps_wide",
            pa.RecordBatchReader.from_batches(STEPS_SCHEMA, [batch]),
            run_id,
            "run_id",
        )
        if last_seq >= 0 and (pbe == 0 or last_seq % pbe != 0):
            pb_rows.append(_pageblock_rows(last_seq, pb_lo, pb_hi, base, blk_order, pcp,
                                           pb_types(last_line), memory))  # fmt: skip
        store.append_stream(
            "pageblocks",
            pa.RecordBatchReader.from_batches(pb_rows[0].schema, pb_rows),
            run_id,
            "run_id",
        )
        free_pages = int(sum(int(v) << k for k, v in enumerate(nr)))
        values: dict[str, Any] = {
            "run_id": run_id, "trace_id": trace_id, "model": "observed",
            "config": json.dumps({"model": "observed", "inconsistencies": inconsistencies,
                                  "inferred": inferred_by}),
            "started": started, "wall_s": time.perf_counter() - t_start, "replay_s": t_replay,
            "events": n_events, "events_per_s": n_events / t_replay if t_replay else 0.0,
            "allocs": int(is_alloc.sum()), "frees": int((~is_alloc).sum()),
            "failures": int(failed.sum()),
            "ignored_frees": 0, "preexisting": 0, "zone_start_pfn": track_lo,
            "zone_pages": int(zhi[zi] - zlo[zi]) if memory is None
            else memory.end_pfn - memory.start_pfn, "every": every, "free_pages": free_pages,
            "nr_free": [int(v) for v in nr], "pcp_pages": int(pcp_pages[0]), "background": 0,
            "pageblock_every": pbe, "start": "observed",
        }  # fmt: skip
        insert_run(store, values)
    return {
        "run_id": run_id, "trace": store.trace_row(trace_id)["name"], "model": "observed",
        "zone": zones[zi]["zone"], "events": n_events,
        "events_per_s": n_events / t_replay if t_replay else 0.0,
        "failures": int(failed.sum()),
        "free_pages": free_pages, "pcp_pages": int(pcp_pages[0]),
        "nr_free": [int(v) for v in nr], "inconsistencies": inconsistencies,
        "inferred": inferred_by,
    }  # fmt: skip


def kpageflags_bits(
    store: Store, trace_id: int, lo: int, hi: int, bits: tuple[int, ...],
    runs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> list[np.ndarray]:  # fmt: skip
    """Per page of [lo, hi) (pfn), whether each of ``bits`` is set in the before-kpageflags
    (``runs``: its runs' pfn, nr_pages and flags if already read, any range: the runs
    outside [lo, hi) cover none of its pages)."""
    if runs is None:
        got = store.query(
            """SELECT pfn, nr_pages, flags FROM snap_kpageflags WHERE trace_id = $t
                 AND snapshot = 'before' AND pfn < $hi AND pfn + nr_pages > $lo""",
            {"t": trace_id, "lo": lo, "hi": hi},
        )
        runs = (got.column("pfn").to_numpy(), got.column("nr_pages").to_numpy(),
                got.column("flags").to_numpy())  # fmt: skip
    n = hi - lo
    p = runs[0].astype(np.int64)
    m = runs[1].astype(np.int64)
    f = runs[2]
    a = np.clip(p - lo, 0, n)
    b = np.clip(p + m - lo, 0, n)
    return [covered_pages(a, b, n, ((f >> np.uint64(bit)) & np.uint64(1)) == 1) for bit in bits]


def covered_pages(lo: np.ndarray, hi: np.ndarray, n: int, sel: np.ndarray) -> np.ndarray:
    """Per page of ``[0, n)``, whether a selected run ``[lo, hi)`` (offsets; ``sel``,
    bool per run) covers it. The runs' union, as the pages between merged bounds (no
    per-page count: a difference array and its sum over millions of pages were
    hundreds of MB of int64 temporaries)."""
    keep = sel & (hi > lo)
    a, b = lo[keep], hi[keep]
    order = np.argsort(a, kind="stable")
    a, b = a[order], np.maximum.accumulate(b[order])
    if a.shape[0] == 0:
        return np.zeros(n, np.bool_)
    # a run starting past every earlier one's end opens a stretch of covered pages
    opens = np.flatnonzero(np.concatenate([[True], a[1:] > b[:-1]]))
    ends = np.append(b[opens[1:] - 1], b[-1])
    bounds = np.stack([a[opens], ends], axis=1).reshape(-1)
    lengths = np.diff(np.concatenate([[0], bounds, [n]]))
    return np.repeat(np.tile(np.array([False, True]), opens.shape[0] + 1)[:-1], lengths)


@dataclass
class ForkState:
    """The kernel's rebuilt state just before canonical event ``seq``, for one pfn range.

    ``blk``: int8 per page of ``[start_pfn, start_pfn + pages)``, the order of
    the free block starting there (-1 elsewhere; only blocks wholly inside).
    ``page_mt``: int8 per page, -1 free (or on a pcp list), else the migratetype
    an allocated page counts as: MOVABLE where the before-kpageflags has
    KPF_LRU (what ``prep_move_freepages_block`` counts as movable), else
    UNMOVABLE. ``pcp``: int8 per page, k+1 where an order-k block on a pcp list
    starts (the pages the rebuild saw arrive there, or found there:
    :func:`hidden_free`). ``pcp_cpu``: int16 per page, the cpu whose list held
    the block starting there when its first event says (-1 unknown).
    ``first_seq``: the first seq a fork may start at (the first event after
    the before-snapshot). ``start_pfn``: the range's first pfn (None: a model's
    state, in its own zone).
    """

    seq: int
    first_seq: int
    blk: np.ndarray
    page_mt: np.ndarray
    pcp: np.ndarray
    pcp_cpu: np.ndarray
    start_pfn: int | None = None
    # what forks of this state derive from it before changing their copies (the kernel's
    # first takes after it, its pageblock types), shared by every copy
    derived: dict[tuple[Any, ...], Any] = field(default_factory=dict, compare=False,
                                                repr=False)  # fmt: skip

    def copy(self) -> ForkState:
        """A copy whose arrays a fork may change (one state, many forks)."""
        return ForkState(seq=self.seq, first_seq=self.first_seq, blk=self.blk.copy(),
                         page_mt=self.page_mt.copy(), pcp=self.pcp.copy(),
                         pcp_cpu=self.pcp_cpu.copy(), start_pfn=self.start_pfn,
                         derived=self.derived)  # fmt: skip


def first_fork_seq(store: Store, trace_id: int) -> int:
    """The first canonical seq after the ``snapshot before end`` marker (0 without one)."""
    first = marker_line(store, trace_id, BEFORE_END)
    row = store.one(
        "SELECT min(seq) FROM events WHERE trace_id = $t AND ($l IS NULL OR line > $l)",
        {"t": trace_id, "l": first},
    )
    if row is None or row[0] is None:
        raise UsageError("the trace has no events after its before-snapshot")
    return int(row[0])


def fork_state(
    store: Store, trace_id: int, start_pfn: int, pages: int, seq: int | None = None
) -> ForkState:
    """The rebuilt state just before canonical event ``seq`` (default: the first event
    after the before-snapshot), for ``[start_pfn, start_pfn + pages)`` (pfn, pages).

    The before-kpageflags decomposition, the snapshot window's events replayed over
    it (as :func:`rebuild`), then every buddy-level event up to ``seq``. Each event
    is applied once: a model forked here replays the events from ``seq`` on.
    """
    first_seq = first_fork_seq(store, trace_id)
    at = first_seq if seq is None else int(seq)
    row = store.one(
        "SELECT line FROM events WHERE trace_id = $t AND seq = $s", {"t": trace_id, "s": at}
    )
    if row is None:
        raise UsageError(f"the trace has no event with seq {at}")
    if at < first_seq:
        raise UsageError(
            f"--at {at} is before the before-snapshot: the kernel's state is known from "
            f"seq {first_seq} on"
        )
    hidden = HiddenFree()
    _, base, blk_order, pcp, zlo, zhi = initial_state(store, trace_id, hidden=hidden)
    zb = (zlo, zhi, base, blk_order, pcp)
    settle_snapshot_window(store, trace_id, zb, hidden)
    first = marker_line(store, trace_id, BEFORE_END)
    if at > first_seq:
        hidden.apply(first, int(row[0]), zb, np.zeros(len(INCONSISTENCIES), np.int64))
    if start_pfn < base or start_pfn + pages > base + blk_order.shape[0]:
        raise UsageError(
            f"the run's zone [{start_pfn:#x}, {start_pfn + pages:#x}) is outside the snapshot's"
        )
    # blocks reaching past the range: their pages count as used
    blk = blk_order[start_pfn - base : start_pfn + pages - base].copy()
    for o in np.flatnonzero(blk >= 0):
        if o + (1 << int(blk[o])) > pages:
            blk[o] = -1
    on_pcp = pcp[start_pfn - base : start_pfn + pages - base].copy()
    on_pcp[(on_pcp < 0) | (on_pcp >= UNKNOWN)] = 0
    for o in np.flatnonzero(on_pcp > 0):
        if o + (1 << (int(on_pcp[o]) - 1)) > pages:
            on_pcp[o] = 0
    # pages on pcp lists are not allocated: the model's pcp lists hold them
    page_mt = page_types(store, trace_id, start_pfn, blk, on_pcp, hidden.kpageflags)
    cpus = (hidden.pcp_cpu[start_pfn - base : start_pfn + pages - base]
            if hidden.pcp_cpu is not None else np.full(pages, -1, np.int16))  # fmt: skip
    return ForkState(seq=at, first_seq=first_seq, blk=blk, page_mt=page_mt, pcp=on_pcp,
                     pcp_cpu=np.where(on_pcp > 0, cpus, -1).astype(np.int16),
                     start_pfn=int(start_pfn))  # fmt: skip
