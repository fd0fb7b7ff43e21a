"""What the recorded kernel did that is an input to the ``kernel`` model, not its decision.

Compaction: each ``mm_compaction_begin``/``mm_compaction_end`` pass of the
run's zone is replayed as the model's own compaction, batch by batch where
the kernel's ``migrate_pages`` calls were (:func:`recorded_compactions`).
kswapd: while the recorded kswapd reclaimed, the zone's ZONE_RECLAIM_ACTIVE
(:func:`kswapd_reclaim`). pcp lists: the kernel's drains of every list after direct
reclaim (:func:`recorded_drains`) and each bulk free of one cpu's lists: when, how many
pages, which list first (:func:`recorded_pcp_frees`). Migrations: the objects the
kernel moved, followed from their old pfn to their new one, so a migration's free of
the old folio is not the object's free (:func:`migration_map`): by the migration ptes
where the folio is mapped (:func:`migration_links`), and otherwise by matching each
free of a page the trace never allocated (a ``compaction_alloc`` target: no event) to
a migrated folio of its order (:func:`unnamed_migrations`).

Units: pfn, pages (4 KiB), order, seq (canonical event index), trace lines.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from replay.engine.environment import (
    Environment,
    FirstTakes,
    first_taken,
    initial_pageblock_types,
    loose_blocks,
    taken_pageblock_types,
)
from replay.engine.observed import (
    PRESENT_PTE_PFN_SQL,
    UNTRACED_TAKES_SQL,
    ForkState,
    is_kthread,
)
from replay.models.internal import (
    GIVEN_AROUND,
    GIVEN_FAST,
    GIVEN_LINEAR,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    MODE_ASYNC,
    MODE_SYNC,
    NR_PAGE_ORDERS,
    order_to_pindex,
)
from replay.store import Store

# a compaction scanner tracepoint's ``range=(start ~ stop)``: its pfns (SQL over aux_events)
RANGE_START_SQL = "hexint(regexp_extract(args->>'range', '[(] *(0x[0-9a-fA-F]+)', 1))"
RANGE_STOP_SQL = "hexint(regexp_extract(args->>'range', '(0x[0-9a-fA-F]+) *[)]', 1))"

# the phases of a recorded pass (the ``compact_recorded`` action's second field)
# PASS_INSIDE: a point inside a batch (another task allocated while the kernel's
# migrate_pages was freeing the batch's old folios)
PASS_ONCE, PASS_BEGIN, PASS_STEP, PASS_END, PASS_INSIDE = range(5)
AFTER_LAST = -1  # an action's seq: after the trace's last event


def recorded_compactions(
    store: Store, trace_id: int, env: Environment, lo_seq: int, hi_seq: int, total: int
) -> list[tuple[int, str, tuple[int, ...]]]:
    """The compactions the recorded kernel ran in the run's zone, as actions
    ``(seq, "compact_recorded", (pass, phase, order, mode, budget, mig0, fr0, mig1,
    fr1, cpu, capture, lo, hi))`` before the first event after the line they stand for (seq -1:
    after the trace's last event), in seq order.

    A pass is the task's ``mm_compaction_begin`` (phase PASS_BEGIN; ``pass`` is its
    line), each of its ``mm_compaction_migratepages`` up to its
    ``mm_compaction_end`` (PASS_STEP; budget: the pages its migrate_pages calls
    have migrated so far, the sum of nr_migrated), and the end (PASS_END; budget:
    the pass's total), so the model compacts while the kernel did, between the
    same allocations. Inside a batch, before each allocation of another task in the
    zone made after the pass's task had freed some of the batch's old folios
    (``migrate_pages_batch`` frees each as it moves it, and a task on that cpu gets
    them from its pcp list), a PASS_INSIDE action with the pages freed so far added to
    the budget: the model stops there inside its own batch. A trace without
    migratepages events gets one PASS_ONCE action per pass at its begin (budget -1: no
    bound). The order is the task's
    first ``mm_compaction_finished``'s after the begin (-1: a whole-zone pass), the
    mode the begin's (async 0, sync and sync_light 1), then the migrate and free
    scanners' pfns at the begin and at the end (-1 unknown), and the cpu the line was
    traced on (the compacting task's then, which moves between cpus: its pcp list gets
    the pages of the folios migrated in that batch), ``capture`` (below), and for a step
    the migration scanner's range of its batch (``lo``, ``hi``: the task's last
    ``mm_compaction_isolate_migratepages`` that took pages; -1 unknown): async passes'
    ``fast_find_migrateblock`` jumps between pageblocks, so the begin and end positions
    do not bound where the pass migrated from; a batch's first action carries its
    ``lo``, later ones -1 (the scanner jumps there once). ``capture``: for a direct compaction
    of a user task (``compaction_capture`` applies; not a kthread's, not kcompactd's,
    not a whole-zone pass) the seq of the allocation the kernel served it right after
    the pass (the task's next page event, an allocation of the pass's order: the
    captured page or the free lists' block), -2 when none follows; -1 for a pass that
    captures nothing.
    Passes that began before ``lo_seq`` (the fork) are left out: the fork's state holds
    what they did.
    Steps at or after ``hi_seq`` are left out unless ``hi_seq`` is the trace's end
    (``total``). Only the passes that begin between the events ``lo_seq - 1`` and
    ``hi_seq - 1`` are read (those whose begin stands before an event of the run), so a
    short fork reads its own few. When the trace records the free scanner, each action
    but a begin ends with the free-scanner isolations the task made since the pass's
    previous action (:func:`free_isolations`: their count, then kind, start, stop and
    pages taken of each; replay.models.internal's ``scan`` layout from SCAN_NFREE)."""
    # a pass's actions stand before the first event after its line: it begins in the run
    # when its line is after event lo_seq - 1's and before event hi_seq - 1's
    bounds = store.query(
        """SELECT coalesce(max(line) FILTER (WHERE seq = $lo - 1), -1) AS lo_line,
                  coalesce(max(line) FILTER (WHERE seq = $hi - 1), -1) AS hi_line
           FROM events WHERE trace_id = $t AND seq IN ($lo - 1, $hi - 1)""",
        {"t": trace_id, "lo": lo_seq, "hi": hi_seq},
    ).to_pylist()[0]
    rows = store.query(
        f"""WITH b AS (
               SELECT line, pid, comm, coalesce(cpu, 0) AS cpu, args->>'mode' AS mode,
                      hexint(args->>'migrate_pfn') AS mig0, hexint(args->>'free_pfn') AS fr0
               FROM aux_events
               WHERE trace_id = $t AND event = 'mm_compaction_begin'
                 AND hexint(args->>'zone_start') = $zs
                 AND line > $lo_line AND line < $hi_line),
           en AS (SELECT line, pid, coalesce(cpu, 0) AS end_cpu,
                         hexint(args->>'migrate_pfn') AS mig1,
                         hexint(args->>'free_pfn') AS fr1 FROM aux_events
                  WHERE trace_id = $t AND event = 'mm_compaction_end'),
           be AS (SELECT b.line, b.pid, b.comm, b.cpu, b.mode, en.line AS end_line,
                         en.end_cpu, b.mig0, b.fr0, en.mig1, en.fr1
                  FROM b ASOF LEFT JOIN en ON b.pid = en.pid AND b.line < en.line),
           mg0 AS (SELECT line, pid, coalesce(cpu, 0) AS cpu,
                          TRY_CAST(args->>'nr_migrated' AS BIGINT) AS n
                   FROM aux_events
                   WHERE trace_id = $t AND event = 'mm_compaction_migratepages'),
           -- the migration scanner's range of each batch: the task's last
           -- isolate_migratepages that took pages (fast_find_migrateblock jumps)
           im AS (SELECT line, pid, {RANGE_START_SQL} AS lo, {RANGE_STOP_SQL} AS hi
                  FROM aux_events
                  WHERE trace_id = $t AND event = 'mm_compaction_isolate_migratepages'
                    AND TRY_CAST(args->>'nr_taken' AS BIGINT) > 0),
           mg AS (SELECT mg0.*, im.line AS im_line, im.lo, im.hi
                  FROM mg0 ASOF LEFT JOIN im ON mg0.pid = im.pid AND mg0.line > im.line),
           st AS (SELECT be.line AS pass, mg.line AS at_line, mg.cpu, be.pid,
                         coalesce(mg.n, 0) AS n, mg.im_line,
                         sum(coalesce(mg.n, 0)) OVER (PARTITION BY be.line ORDER BY mg.line)
                           AS budget,
                         CASE WHEN mg.im_line > be.line THEN mg.lo END AS lo,
                         CASE WHEN mg.im_line > be.line THEN mg.hi END AS hi
                  FROM be JOIN mg ON mg.pid = be.pid AND mg.line > be.line
                    AND (be.end_line IS NULL OR mg.line < be.end_line)),
           -- inside a batch (from its isolate_migratepages to its migratepages): the
           -- old folios the task freed so far, before each allocation of another task
           pe AS (SELECT line, pid, op, (1::BIGINT << "order") AS pages,
                         op = 'alloc' AND NOT coalesce(failed, false)
                           AND pfn >= $zs AND pfn < $ze AS zone_alloc
                  FROM events WHERE trace_id = $t),
           w AS (SELECT st.pass, st.at_line AS batch, st.cpu, st.budget - st.n AS before,
                        st.budget, st.lo, st.hi, pe.line, pe.pid <> st.pid AND pe.zone_alloc
                          AS other_alloc,
                        sum(CASE WHEN pe.pid = st.pid AND pe.op = 'free' THEN pe.pages
                                 ELSE 0 END)
                          OVER (PARTITION BY st.pass, st.at_line ORDER BY pe.line) AS done
                 FROM st JOIN pe ON pe.line > st.im_line AND pe.line < st.at_line
                 WHERE st.im_line > st.pass),
           ins AS (SELECT pass, min(line) - 1 AS at_line, batch, any_value(cpu) AS cpu,
                          any_value(before) + done AS budget, any_value(lo) AS lo,
                          any_value(hi) AS hi
                   FROM w WHERE other_alloc AND done > 0 AND before + done < budget
                   GROUP BY pass, batch, done),
           f AS (SELECT line, pid, TRY_CAST(args->>'order' AS INTEGER) AS "order"
                 FROM aux_events WHERE trace_id = $t AND event = 'mm_compaction_finished'),
           p AS (SELECT be.*, coalesce(f."order", -1) AS "order",
                        coalesce((SELECT max(budget) FROM st WHERE st.pass = be.line), 0)
                          AS total
                 FROM be ASOF LEFT JOIN f ON be.pid = f.pid AND be.line < f.line),
           a AS (SELECT line AS pass, 1 AS phase, line AS at_line, 0 AS budget, cpu,
                        NULL::BIGINT AS lo, NULL::BIGINT AS hi, NULL::BIGINT AS batch FROM p
                 UNION ALL SELECT pass, 2, at_line, budget, cpu, lo, hi, at_line FROM st
                 UNION ALL SELECT pass, 4, at_line, budget, cpu, lo, hi, batch FROM ins
                 UNION ALL SELECT line, 3, end_line, total, end_cpu, NULL, NULL, NULL FROM p
                           WHERE end_line IS NOT NULL),
           e AS (SELECT line, seq FROM events WHERE trace_id = $t),
           -- the task's next page event after its pass: the allocation it compacted for
           te AS (SELECT line, pid, seq, op, "order" FROM events
                  WHERE trace_id = $t AND pid IN (SELECT pid FROM be)),
           nx AS (SELECT p.line AS pass,
                         CASE WHEN te.op = 'alloc' AND te."order" = p."order" THEN te.seq
                              ELSE -2 END AS taker
                  FROM p ASOF LEFT JOIN te ON p.pid = te.pid AND p.end_line < te.line
                  WHERE p.end_line IS NOT NULL),
           -- each action's seq: the first event after its line (materialized first:
           -- planned with the joins below, the ASOF join took 1.3 s of 1.4 s here)
           ae AS MATERIALIZED (SELECT a.*, coalesce(e.seq, -1) AS seq
                               FROM a ASOF LEFT JOIN e ON a.at_line < e.line)
           SELECT a.pass, a.phase, a.seq, a.budget, p."order", p.mode,
                  coalesce(p.mig0, -1) AS mig0, coalesce(p.fr0, -1) AS fr0,
                  coalesce(p.mig1, -1) AS mig1, coalesce(p.fr1, -1) AS fr1, a.cpu,
                  p.comm, coalesce(nx.taker, -2) AS taker, coalesce(a.lo, -1) AS lo,
                  coalesce(a.hi, -1) AS hi, a.batch, a.at_line, p.pid,
                  (SELECT count(*) FROM mg) AS n_mg
           FROM ae a JOIN p ON p.line = a.pass
             LEFT JOIN nx ON nx.pass = a.pass
           ORDER BY a.at_line, a.phase, a.pass""",
        {
            "t": trace_id,
            "zs": env.start_pfn,
            "ze": env.start_pfn + env.pages,
            "lo_line": int(bounds["lo_line"]),
            "hi_line": int(bounds["hi_line"]),
        },
    ).to_pylist()
    given = free_isolations(store, trace_id, rows)
    out: list[tuple[int, str, tuple[int, ...]]] = []
    started: set[int] = set()
    jumped: dict[int, int] = {}  # pass -> the batch whose range its scanner jumped to
    for r in rows:
        seq, phase, pass_ = int(r["seq"]), int(r["phase"]), int(r["pass"])
        if phase == PASS_BEGIN:
            if seq == AFTER_LAST or seq < lo_seq or seq >= hi_seq:
                continue  # began before the fork, or after the run
            started.add(pass_)
        elif pass_ not in started:
            continue
        if seq == AFTER_LAST and hi_seq < total:
            continue
        if seq != AFTER_LAST and seq >= hi_seq:
            continue
        if int(r["n_mg"]) == 0:  # no batches recorded: the whole pass at its begin
            if phase != PASS_BEGIN:
                continue
            phase = PASS_ONCE
        mode = MODE_ASYNC if r["mode"] == "async" else MODE_SYNC
        budget = -1 if phase == PASS_ONCE else int(r["budget"])
        order = int(r["order"])
        lo = int(r["lo"])
        if r["batch"] is not None:
            # a batch's range is jumped to once, at its first action (inside or its end)
            if jumped.get(pass_) == r["batch"]:
                lo = -1
            jumped[pass_] = r["batch"]
        capture = -1
        if order > 0 and phase != PASS_ONCE and not is_kthread(r["comm"]):
            capture = int(r["taker"])
            if capture >= 0 and (capture < lo_seq or capture >= hi_seq):
                capture = -2  # the allocation is outside the run
        tail: tuple[int, ...] = ()
        if given is not None and phase not in (PASS_ONCE, PASS_BEGIN):
            got = given.pop((pass_, int(r["at_line"])), [])
            tail = (len(got), *(v for g in got for v in g))
        out.append((seq, "compact_recorded",
                    (pass_, phase, order, mode, budget, int(r["mig0"]), int(r["fr0"]),
                     int(r["mig1"]), int(r["fr1"]), int(r["cpu"]), capture, lo,
                     int(r["hi"]), *tail)))  # fmt: skip
    out.sort(key=lambda a: (a[0] == AFTER_LAST, a[0]))  # stable: the lines' order within a seq
    return out


FREE_EVENTS = ("mm_compaction_isolate_freepages", "mm_compaction_fast_isolate_freepages")


def free_isolations(
    store: Store, trace_id: int, rows: list[dict[str, Any]]
) -> dict[tuple[int, int], list[tuple[int, int, int, int]]] | None:
    """The free scanner's isolations of the recorded passes ``rows`` (the actions of
    :func:`recorded_compactions`' query: pass, phase, at_line, pid), per action: for
    ``(pass, at_line)``, the ``(kind, start, stop, nr_taken)`` (GIVEN_*, pfns, pages) of
    each ``mm_compaction_isolate_freepages`` and ``mm_compaction_fast_isolate_freepages``
    that took pages, made by the pass's task after its previous action's line and
    before this one's, in line order. None when the trace has neither event (the model's
    own free scanner chooses).

    mm/compaction.c ``isolate_freepages``: ``fast_isolate_freepages`` traces its pick
    (``min_pfn ~ free_pfn``, one block) and then ``fast_isolate_around`` scans that
    pick's pageblock (an ``isolate_freepages_block``: a linear isolation right after a
    fast one that took pages is GIVEN_AROUND; the linear scanner runs only when the fast
    search isolated nothing)."""
    has = store.query(
        f"SELECT count(*) AS n FROM aux_events WHERE trace_id = $t AND event IN {FREE_EVENTS!r}",
        {"t": trace_id},
    ).to_pylist()[0]["n"]
    if not has:
        return None
    actions: dict[int, list[int]] = {}  # pass -> its actions' lines (begin first)
    pid_of: dict[int, int] = {}
    for r in rows:
        actions.setdefault(int(r["pass"]), []).append(int(r["at_line"]))
        pid_of[int(r["pass"])] = int(r["pid"])
    out: dict[tuple[int, int], list[tuple[int, int, int, int]]] = {}
    if not actions:
        return out
    lo = min(actions)
    hi = max(max(v) for v in actions.values())
    ev = store.query(
        f"""SELECT line, pid, event = '{FREE_EVENTS[1]}' AS fast,
                   {RANGE_START_SQL} AS s, {RANGE_STOP_SQL} AS e,
                   coalesce(TRY_CAST(args->>'nr_taken' AS BIGINT), 0) AS taken
            FROM aux_events
            WHERE trace_id = $t AND event IN {FREE_EVENTS!r} AND line > $lo AND line < $hi
              AND pid IN (SELECT unnest($pids))
            ORDER BY line""",
        {"t": trace_id, "lo": lo, "hi": hi, "pids": sorted(set(pid_of.values()))},
    ).to_pydict()
    # each task's isolations (their rows in ev) and their lines, in line order
    by_pid: dict[int, tuple[list[int], list[int]]] = {}
    for i, (pid, line) in enumerate(zip(ev["pid"], ev["line"], strict=True)):
        got = by_pid.setdefault(int(pid), ([], []))
        got[0].append(i)
        got[1].append(int(line))
    for pass_, lines in actions.items():
        lines.sort()
        idx, lns = by_pid.get(pid_of[pass_], ([], []))
        a = bisect.bisect_right(lns, pass_)
        b = bisect.bisect_left(lns, lines[-1])
        after_fast = False  # the task's previous isolation was a fast pick that took pages
        k = 1  # the action the next isolation belongs to
        for j in range(a, b):
            i = idx[j]
            line = lns[j]
            while k < len(lines) and lines[k] < line:
                k += 1
            fast = bool(ev["fast"][i])
            taken = int(ev["taken"][i])
            kind = GIVEN_FAST if fast else GIVEN_AROUND if after_fast else GIVEN_LINEAR
            after_fast = fast and taken > 0
            if taken <= 0 or ev["s"][i] is None or ev["e"][i] is None or k >= len(lines):
                continue
            out.setdefault((pass_, lines[k]), []).append(
                (kind, int(ev["s"][i]), int(ev["e"][i]), taken)
            )
    return out


def kswapd_reclaim(
    store: Store, trace_id: int, lo_seq: int, hi_seq: int
) -> list[tuple[int, str, tuple[int, ...]]]:
    """While the recorded kswapd balanced the node, as actions ``(seq, "reclaim_active",
    (1,))`` where it began and ``(seq, "reclaim_active", (0,))`` where it ended.

    ``kswapd`` traces ``mm_vmscan_kswapd_wake`` just before each ``balance_pgdat``,
    which sets ZONE_RECLAIM_ACTIVE on the node's zones (``set_reclaim_active``) and
    clears it when it returns (``clear_reclaim_active``): not traced. The window ends
    at kswapd's first ``mm_compaction_wakeup_kcompactd`` after the wake (it wakes
    kcompactd from ``kswapd_try_to_sleep``, after balance_pgdat), else at its last
    page event (the pages it reclaimed) before its next wake or sleep. While the flag
    is set, ``nr_pcp_high`` keeps each pcp list to at most ``batch << 2`` pages.
    A window open at the fork (``lo_seq``) starts there; one still open at
    ``hi_seq`` is left open."""
    rows = store.query(
        """WITH k AS (SELECT line, pid, event FROM aux_events WHERE trace_id = $t
                      AND event IN ('mm_vmscan_kswapd_wake', 'mm_vmscan_kswapd_sleep')),
                w AS (SELECT line AS l0, pid, lead(line) OVER (PARTITION BY pid ORDER BY line)
                             AS l_next
                      FROM k QUALIFY event = 'mm_vmscan_kswapd_wake'),
                kc AS (SELECT line, pid FROM aux_events WHERE trace_id = $t
                       AND event = 'mm_compaction_wakeup_kcompactd'),
                pe AS (SELECT line, pid FROM events WHERE trace_id = $t
                       AND pid IN (SELECT DISTINCT pid FROM w)),
                ends AS (
                    SELECT w.l0, w.pid,
                           coalesce(
                               (SELECT min(kc.line) FROM kc WHERE kc.pid = w.pid
                                  AND kc.line > w.l0 AND (w.l_next IS NULL OR kc.line < w.l_next)),
                               (SELECT max(pe.line) FROM pe WHERE pe.pid = w.pid
                                  AND pe.line > w.l0 AND (w.l_next IS NULL OR pe.line < w.l_next)),
                               w.l0) AS l1
                    FROM w),
                e AS (SELECT line, seq FROM events WHERE trace_id = $t)
           SELECT coalesce(s0.seq, -1) AS s0, coalesce(s1.seq, -1) AS s1
           FROM ends ASOF LEFT JOIN e s0 ON ends.l0 < s0.line
                ASOF LEFT JOIN e s1 ON ends.l1 < s1.line
           ORDER BY ends.l0""",
        {"t": trace_id},
    ).to_pylist()
    out: list[tuple[int, str, tuple[int, ...]]] = []
    for r in rows:
        s0, s1 = int(r["s0"]), int(r["s1"])
        s1 = hi_seq if s1 == AFTER_LAST else s1
        if s0 == AFTER_LAST or s1 <= lo_seq or s0 >= hi_seq or s1 <= s0:
            continue
        out.append((max(s0, lo_seq), "reclaim_active", (1,)))
        if s1 < hi_seq:
            out.append((s1, "reclaim_active", (0,)))
    out.sort(key=lambda a: a[0])
    return out


def next_event_sql(rows: str, line: str, cols: str = "", where: str = "TRUE") -> str:
    """The tail of a recorded input's query whose CTEs end with ``rows``: each row where
    ``where`` holds, with ``seq`` (the seq of the first page event after the row's
    ``line``; AFTER_LAST when none) and ``cols``, by seq, then line. The action goes
    before that event (:func:`in_window` keeps a run's)."""
    return f"""e AS (SELECT line, seq FROM events WHERE trace_id = $t)
           SELECT coalesce(e.seq, {AFTER_LAST}) AS seq{cols}
           FROM {rows} ASOF LEFT JOIN e ON {rows}.{line} < e.line
           WHERE {where}
           ORDER BY 1, {rows}.{line}"""


def in_window(seq: int, lo_seq: int, hi_seq: int) -> bool:
    """An action at ``seq`` (before that event) belongs to a run of ``(lo_seq, hi_seq)``."""
    return seq != AFTER_LAST and lo_seq < seq < hi_seq


def recorded_drains(
    store: Store, trace_id: int, lo_seq: int, hi_seq: int
) -> list[tuple[int, str, tuple[int, ...]]]:
    """Where the recorded kernel drained every cpu's pcp lists because direct reclaim
    left a request unserved, as actions ``(seq, "drain_all", ())`` before the event at
    that seq.

    ``__alloc_pages_direct_reclaim`` (mm/page_alloc.c) reclaims (traced as
    ``mm_vmscan_direct_reclaim_begin``/``_end``), retries the freelists, and when that
    still fails and it has not drained yet, calls ``drain_all_pages(NULL)``: every
    cpu's lists of every zone go back to the buddy, each page traced as
    ``mm_page_pcpu_drain`` by the reclaiming task (``__drain_all_pages`` drains the
    other cpus' lists from the calling cpu), before it retries. So a drain is this one
    when it is the task's next traced event after its ``mm_vmscan_direct_reclaim_end``.
    The task's other drains are of its own cpu's list (the free path trimming to
    ``pcp->high``), which the model does itself. A drain_all that found every list
    empty traces nothing and cannot be seen. Its seq is the next page event's."""
    rows = (
        store.query(
            f"""WITH ev AS (
               SELECT line, pid, 'page' AS event FROM events WHERE trace_id = $t
               UNION ALL
               SELECT line, pid, event FROM aux_events WHERE trace_id = $t
                 AND event IN ('mm_page_pcpu_drain', 'mm_vmscan_direct_reclaim_end',
                               'mm_vmscan_direct_reclaim_begin')),
           d AS (SELECT line FROM ev
                 QUALIFY event = 'mm_page_pcpu_drain'
                   AND lag(event) OVER (PARTITION BY pid ORDER BY line)
                       = 'mm_vmscan_direct_reclaim_end'),
           {next_event_sql("d", "line")}""",
            {"t": trace_id},
        )
        .column("seq")
        .to_pylist()
    )
    return [(int(s), "drain_all", ()) for s in rows if in_window(int(s), lo_seq, hi_seq)]


def zone_case(zones: tuple[tuple[int, int], ...]) -> str:
    """The WHEN arms of an SQL CASE giving a ``pfn``'s index in ``zones`` ((start pfn,
    end pfn) of each modelled zone)."""
    return " ".join(f"WHEN pfn >= {int(a)} AND pfn < {int(b)} THEN {i}"
                    for i, (a, b) in enumerate(zones))  # fmt: skip


def recorded_pcp_refills(
    store: Store, trace_id: int, lo_seq: int, hi_seq: int, zones: tuple[tuple[int, int], ...]
) -> list[tuple[int, str, tuple[int, ...]]]:
    """The recorded kernel's refills of pcp lists, as actions ``(seq, "pcp_refill",
    (zone, cpu, order, migratetype, blocks))`` before the event at that seq (``zone``:
    the index in ``zones``, as :func:`recorded_pcp_frees`).

    ``rmqueue_bulk`` (mm/page_alloc.c, from ``__rmqueue_pcplist`` when the list the
    request needs is empty) takes ``nr_pcp_alloc`` blocks from the buddy under the zone
    lock, each traced as ``mm_page_alloc_zone_locked`` with ``percpu_refill=1`` (or, when
    ``__rmqueue_steal`` or a whole-pageblock claim took it, as ``mm_page_alloc_extfrag``
    alone: observed.UNTRACED_TAKES_SQL, its ``alloc_migratetype`` the list's), then
    the request takes one of them from the list (its ``mm_page_alloc``). One refill is a
    run of such events on one cpu with no page event of that cpu between them, of one
    order and migratetype. Each action's seq is the next page event's after its run;
    only those in ``(lo_seq, hi_seq)``."""
    if not zones:
        return []
    zone_of = zone_case(zones)
    tail = next_event_sql(
        "runs", "last_line", ", runs.zone, runs.cpu, runs.o, runs.mt, runs.blocks", "runs.zone >= 0"
    )
    rows = store.query(
        f"""WITH ev AS (
               SELECT line, cpu, 0 AS refill, NULL::BIGINT AS pfn, NULL::TINYINT AS o,
                      NULL::TINYINT AS mt
               FROM events WHERE trace_id = $t
               UNION ALL
               SELECT line, cpu, 1, pfn, "order", migratetype
               FROM aux_events WHERE trace_id = $t AND event = 'mm_page_alloc_zone_locked'
                 AND args->>'percpu_refill' = '1'
               UNION ALL
               SELECT line, cpu, 1, pfn, alloc_order, alloc_mt FROM {UNTRACED_TAKES_SQL}
               WHERE percpu_refill),
           r AS (SELECT *, sum(1 - refill) OVER (PARTITION BY cpu ORDER BY line
                                                 ROWS UNBOUNDED PRECEDING) AS run
                 FROM ev),
           runs AS (SELECT cpu, run, CASE {zone_of} ELSE -1 END AS zone, o, mt,
                           max(line) AS last_line, count(*) AS blocks
                    FROM r WHERE refill = 1 GROUP BY ALL),
           {tail}""",
        {"t": trace_id},
    ).to_pylist()
    out: list[tuple[int, str, tuple[int, ...]]] = []
    for r in rows:
        s = int(r["seq"])
        if not in_window(s, lo_seq, hi_seq):
            continue
        mt = int(r["mt"])
        if not 0 <= mt < MIGRATE_PCPTYPES:
            continue
        out.append((s, "pcp_refill", (int(r["zone"]), int(r["cpu"]), int(r["o"]), mt,
                                      int(r["blocks"]))))  # fmt: skip
    return out


def recorded_deferrals(
    store: Store, trace_id: int, lo_seq: int, hi_seq: int, zones: tuple[str | None, ...]
) -> list[tuple[int, str, tuple[int, ...]]]:
    """The recorded kernel's compaction deferral state, as actions ``(seq, "defer_state",
    (zone, considered, defer_shift, order_failed))`` before the event at that seq
    (``zone``: the index in ``zones``, the run's zone names; a zone with no name, the
    zone of a trace without snapshots, takes the events of every zone).

    mm/compaction.c: ``compaction_deferred`` (traced when it defers, after counting the
    attempt), ``defer_compaction`` and ``compaction_defer_reset`` each trace the zone's
    ``compact_considered``, ``1 << compact_defer_shift`` (``limit``) and
    ``compact_order_failed`` after they change them. Only those in ``(lo_seq, hi_seq)``."""
    rows = store.query(
        """SELECT seq, args->>'zone' AS zone, TRY_CAST(args->>'consider' AS BIGINT) AS c,
                  TRY_CAST(args->>'limit' AS BIGINT) AS lim,
                  TRY_CAST(args->>'order_failed' AS BIGINT) AS f
           FROM aux_events WHERE trace_id = $t AND seq > $lo AND seq < $hi
             AND event IN ('mm_compaction_deferred', 'mm_compaction_defer_compaction',
                           'mm_compaction_defer_reset')
           ORDER BY line""",
        {"t": trace_id, "lo": lo_seq, "hi": hi_seq},
    ).to_pylist()
    out: list[tuple[int, str, tuple[int, ...]]] = []
    for r in rows:
        zi = 0 if zones[0] is None else zones.index(r["zone"]) if r["zone"] in zones else -1
        if zi < 0 or r["c"] is None or not r["lim"] or r["f"] is None:
            continue
        shift = int(r["lim"]).bit_length() - 1
        out.append((int(r["seq"]), "defer_state", (zi, int(r["c"]), shift, int(r["f"]))))
    return out


def recorded_pcp_frees(
    store: Store, trace_id: int, lo_seq: int, hi_seq: int, zones: tuple[tuple[int, int], ...]
) -> list[tuple[int, str, tuple[int, ...]]]:
    """The recorded kernel's bulk frees of pcp pages, as actions ``(seq, "pcp_bulk",
    (zone, cpu, pages, pindex))`` before the event at that seq: ``zone`` the index in
    ``zones`` ((start pfn, end pfn) of each modelled zone), ``cpu`` whose lists, how
    many ``pages``, and ``pindex`` the list freed from first (``order_to_pindex`` of the
    first page's order and pageblock type).

    ``free_pcppages_bulk`` (mm/page_alloc.c) gives pages back to the buddy and traces
    each as ``mm_page_pcpu_drain`` on the cpu whose lists it trims: from the free path
    (``free_frozen_page_commit`` once ``pcp->count`` reaches ``nr_pcp_high``; the
    requested list first, then round robin), from ``decay_pcp_high`` (vmstat_update)
    and from ``drain_local_pages``. One call is a run of such events on one cpu with
    no page event of that cpu between them (per zone: a drain of several zones is a
    call per zone). A run right after the task's ``mm_vmscan_direct_reclaim_end`` is
    ``drain_all_pages`` (every cpu's lists of every zone from one cpu:
    :func:`recorded_drains`), not here, whichever zone its first page was in. Each
    action's seq is the next page event's after its run; only those in ``(lo_seq,
    hi_seq)``."""
    if not zones:
        return []
    zone_of = zone_case(zones)
    tail = next_event_sql(
        "runs",
        "last_line",
        ", runs.zone, runs.cpu, runs.pages, runs.o0, runs.mt0",
        "NOT runs.after_reclaim",
    )
    rows = store.query(
        f"""WITH ev AS (
               SELECT line, cpu, pid, 0 AS kind, NULL::BIGINT AS pfn, NULL::TINYINT AS o,
                      NULL::TINYINT AS mt
               FROM events WHERE trace_id = $t
               UNION ALL
               SELECT line, cpu, pid,
                      CASE WHEN event = 'mm_page_pcpu_drain' THEN 1 ELSE 2 END AS kind,
                      pfn, "order", migratetype
               FROM aux_events WHERE trace_id = $t
                 AND event IN ('mm_page_pcpu_drain', 'mm_vmscan_direct_reclaim_end')),
           x AS (SELECT *, lag(kind) OVER (PARTITION BY pid ORDER BY line) AS prev_of_task,
                        lag(kind) OVER (PARTITION BY cpu ORDER BY line) AS prev_on_cpu
                 FROM ev),
           r AS (SELECT *, sum(CASE WHEN kind = 1 AND coalesce(prev_on_cpu, 0) <> 1
                                    THEN 1 ELSE 0 END)
                             OVER (PARTITION BY cpu ORDER BY line ROWS UNBOUNDED PRECEDING)
                             AS run
                 FROM x),
           d AS (SELECT cpu, run, CASE {zone_of} ELSE -1 END AS zone, line, o, mt,
                        -- a drain_all is one run over every zone's lists: its first
                        -- drain (after the reclaim) marks the whole run, whichever zone
                        bool_or(prev_of_task = 2) OVER (PARTITION BY cpu, run)
                          AS after_reclaim
                 FROM r WHERE kind = 1),
           runs AS (SELECT cpu, run, zone, max(line) AS last_line,
                           arg_min(o, line) AS o0, arg_min(mt, line) AS mt0,
                           sum(1::BIGINT << o) AS pages, bool_or(after_reclaim) AS after_reclaim
                    FROM d WHERE zone >= 0 GROUP BY cpu, run, zone),
           {tail}""",
        {"t": trace_id},
    ).to_pylist()
    out: list[tuple[int, str, tuple[int, ...]]] = []
    for r in rows:
        s = int(r["seq"])
        if not in_window(s, lo_seq, hi_seq):
            continue
        mt = int(r["mt0"])
        # free_frozen_pages puts HIGHATOMIC and CMA pages on the MOVABLE lists
        mt = mt if 0 <= mt < MIGRATE_PCPTYPES else MIGRATE_MOVABLE
        pindex = int(order_to_pindex(np.int64(r["o0"]), np.int64(mt)))
        out.append((s, "pcp_bulk", (int(r["zone"]), int(r["cpu"]), int(r["pages"]), pindex)))
    return out


# x86-64 ptes of set_/remove_migration_pte: a migration entry holds the old pfn inverted
# (L1TF) from bit 9 (__swp_entry: SWP_OFFSET_FIRST_BIT 9, the 5 type bits on top), of
# which swp_offset_pfn keeps SWP_PFN_BITS = 46 - 12 = 34 (the young/dirty bits are
# above); a present pte has its pfn in bits 12..51 (PRESENT_PTE_PFN_SQL).
_OLD_PFN_SQL = (
    "(((~TRY_CAST('0x' || right(lpad(args->>'pte', 16, '0'), 11) AS BIGINT)) "
    "& 17592186044415) >> 9) & 17179869183"
)


def migration_links(
    store: Store, trace_id: int, from_seq: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Objects the recorded kernel migrated, followed to their new pfn by the ptes.

    ``try_to_migrate`` writes a migration entry for the old pfn into each pte
    that maps the folio (``set_migration_pte``), ``remove_migration_pte`` the
    new pfn into the same address, and ``migrate_folio_done`` then frees the
    old folio (its ``mm_page_free``, by the migrating task). The trace pairs
    that free with the object; its later free at the new pfn is a free of an
    object never allocated in the trace (``compaction_alloc`` has no event).
    Returns, sorted by the first: the objects freed at a new pfn, the migrated
    object each one is, and the seqs of the migrations' frees of the old
    folios (the object lives on at its new pfn, freed where the trace frees
    the new one, if it does). Chains (an object migrated twice) lead to the
    first object. Folios no pte maps (unmapped page cache) are not named here
    (:func:`unnamed_migrations`). Only migrations from seq ``from_seq`` on (a
    run's first): an object migrated before it is where its new home is at the
    fork.
    """
    rows = store.query(
        f"""WITH s AS (SELECT line, pid, args->>'addr' AS addr, {_OLD_PFN_SQL} AS old_pfn
                       FROM aux_events WHERE trace_id = $t AND event = 'set_migration_pte'),
                r AS (SELECT line, pid, args->>'addr' AS addr, {PRESENT_PTE_PFN_SQL} AS new_pfn
                      FROM aux_events WHERE trace_id = $t AND event = 'remove_migration_pte'),
                m AS (SELECT r.line, r.pid, s.old_pfn, r.new_pfn
                      FROM r ASOF JOIN s ON r.pid = s.pid AND r.addr = s.addr AND s.line < r.line
                      WHERE s.old_pfn <> r.new_pfn),
                fr AS (SELECT line, pfn, obj, seq, pid FROM events
                       WHERE trace_id = $t AND op = 'free'),
                allocated AS (SELECT DISTINCT obj FROM events
                              WHERE trace_id = $t AND op = 'alloc')
           SELECT DISTINCT x.seq AS x_seq, x.obj AS x_obj,
                  CASE WHEN y.line > x.line AND y.obj NOT IN (SELECT obj FROM allocated)
                       THEN y.obj END AS y_obj
           FROM m ASOF JOIN fr x ON x.pfn = m.old_pfn AND x.line > m.line
                  ASOF LEFT JOIN fr y ON y.pfn = m.new_pfn AND y.line > m.line
           WHERE x.pid = m.pid AND x.seq >= $from""",
        {"t": trace_id, "from": from_seq},
    )
    import pyarrow.compute as pc  # (30 ms to import: only the kernel presets get here)

    seqs = np.unique(rows.column("x_seq").to_numpy().astype(np.int64))
    linked = rows.filter(pc.is_valid(rows.column("y_obj")))
    y = linked.column("y_obj").to_numpy().astype(np.int64)
    x = linked.column("x_obj").to_numpy().astype(np.int64)
    uy, first = np.unique(y, return_index=True)  # one migrated object per new home
    return uy, follow_chains(uy, x[first]), seqs


def follow_chains(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``x`` with each object that is itself a new home (in ``y``, sorted) replaced by
    the object it is, transitively (a folio migrated twice is the first object)."""
    x = x.copy()
    for _ in range(64):
        if y.shape[0] == 0:
            break
        i = np.minimum(np.searchsorted(y, x), y.shape[0] - 1)
        hit = y[i] == x
        if not hit.any():
            break
        x = np.where(hit, x[i], x)
    return x


@dataclass
class Migrations:
    """What the run treats as migrations, not frees (obj ids as the events table has
    them, seqs canonical)."""

    y_obj: np.ndarray  # objects freed at a new home (sorted)
    x_obj: np.ndarray  # the migrated object each one is
    seqs: np.ndarray  # the frees of migrated folios' old homes, left out of the run
    named: int  # of the links: by the migration ptes
    unnamed: int  # by matching a never-allocated page's free to a migrated folio


def _covering_ctes() -> str:
    """One CTE per order j of the events on blocks of order j or more (``ev`` from a query
    of (seq, pfn, order, freed)): those whose block can hold a pfn at its
    j-aligned head."""
    return ",\n".join(f'ev{j} AS (SELECT seq, pfn, freed FROM ev WHERE "order" >= {j})'
                       for j in range(NR_PAGE_ORDERS))  # fmt: skip


def _covering_joins() -> str:
    """ASOF joins of ``fr`` (frees: pfn, seq) with each ``ev{j}`` at the pfn's j-aligned
    head, before the free: the last event on a block holding the pfn is the latest."""
    return "\n".join(f"ASOF LEFT JOIN ev{j} p{j} ON p{j}.pfn = (fr.pfn >> {j}) << {j} "
                      f"AND p{j}.seq < fr.seq" for j in range(NR_PAGE_ORDERS))  # fmt: skip


def _covering_columns() -> str:
    return ", ".join(f"coalesce(p{j}.seq, -1) AS s{j}, coalesce(CAST(p{j}.freed AS TINYINT), -1)"
                     f" AS f{j}" for j in range(NR_PAGE_ORDERS))  # fmt: skip


def last_covering(rows: pa.Table) -> np.ndarray:
    """Per row of a query with :func:`_covering_columns`: 1 when the last event on a
    block holding the pfn freed it, 0 when it allocated it, -1 none."""
    s = np.stack([rows.column(f"s{j}").to_numpy() for j in range(NR_PAGE_ORDERS)], axis=1)
    f = np.stack([rows.column(f"f{j}").to_numpy() for j in range(NR_PAGE_ORDERS)], axis=1)
    best = np.argmax(s, axis=1)
    return f[np.arange(s.shape[0]), best].astype(np.int64)


def unnamed_migrations(
    store: Store, trace_id: int, lo_seq: int, hi_seq: int, start_pfn: int,
    page_mt: np.ndarray, named_seqs: np.ndarray, named_y: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Migrations of folios no pte maps (unmapped page cache), which the trace does
    not name: (new-home objects, the migrated object each one is, the old folios'
    free seqs left out of the run).

    Inside a compaction pass (between the task's ``mm_compaction_begin`` and
    ``mm_compaction_end``) the compacting task frees the folios it migrated
    (``migrate_folio_done``), at the end the free pages it isolated and did not use
    (``release_free_list``), and little else (slab pages it emptied). So each free
    the task makes there of a movable object of the pass's zone that was allocated
    (in the trace, or at the fork: ``page_mt``, the fork's type per page of the
    zone from ``start_pfn``, -1 free, MOVABLE for LRU pages) and that the ptes do
    not name is a migration: the folio lives on at a pfn the kernel took with
    ``compaction_alloc`` (no event). Such a new home is freed later as an object
    never allocated in the trace, outside its freeing task's own pass, on a page
    free just before (the last event at its pfn freed it, or there is none since
    the fork and it was free there). Each such free goes, in seq order, to the
    earliest unmatched migrated folio of its order migrated before it (which folio
    went where the trace does not say; the model places the folio itself). A
    migrated folio that no such free matches lives to the end of the run, as the
    kernel's did past the trace. Only frees in ``[lo_seq, hi_seq)`` in the zone.
    """
    pages = page_mt.shape[0]
    rows = store.query(
        f"""WITH b AS (SELECT line, pid, hexint(args->>'zone_start') AS z0,
                             hexint(args->>'zone_end') AS z1 FROM aux_events
                      WHERE trace_id = $t AND event = 'mm_compaction_begin'),
                en AS (SELECT line, pid FROM aux_events
                       WHERE trace_id = $t AND event = 'mm_compaction_end'),
                w AS (SELECT b.pid, b.line AS l0, en.line AS l1, b.z0, b.z1
                      FROM b ASOF LEFT JOIN en ON b.pid = en.pid AND b.line < en.line),
                fr AS (SELECT seq, line, pid, obj, pfn, "order", "offset",
                              count(*) OVER (PARTITION BY obj) AS n_free
                       FROM events WHERE trace_id = $t AND op = 'free'),
                a AS (SELECT obj, any_value(migratetype) AS mt FROM events
                      WHERE trace_id = $t AND op = 'alloc' AND NOT coalesce(failed, false)
                      GROUP BY obj),
                ev AS (SELECT seq, pfn, "order", op = 'free' AS freed FROM events
                       WHERE trace_id = $t AND pfn IS NOT NULL AND seq >= $lo
                         AND NOT coalesce(failed, false)),
                {_covering_ctes()}
           SELECT fr.seq, fr.obj, fr.pfn - $zs AS off, fr."order",
                  a.obj IS NOT NULL AS allocated, coalesce(a.mt, -1) AS mt,
                  coalesce(w.l0 IS NOT NULL AND (w.l1 IS NULL OR fr.line < w.l1), false)
                    AS in_pass,
                  coalesce(fr.pfn >= w.z0 AND fr.pfn < w.z1, false) AS in_pass_zone,
                  {_covering_columns()}
           FROM fr ASOF LEFT JOIN w ON fr.pid = w.pid AND fr.line > w.l0
                LEFT JOIN a ON a.obj = fr.obj
                {_covering_joins()}
           WHERE fr.seq >= $lo AND fr.seq < $hi AND fr.n_free = 1 AND fr."offset" = 0
             AND fr.pfn >= $zs AND fr.pfn + (1::BIGINT << fr."order") <= $ze
           ORDER BY fr.seq""",
        {"t": trace_id, "lo": lo_seq, "hi": hi_seq, "zs": start_pfn, "ze": start_pfn + pages},
    )
    seq = rows.column("seq").to_numpy().astype(np.int64)
    obj = rows.column("obj").to_numpy().astype(np.int64)
    off = rows.column("off").to_numpy().astype(np.int64)
    order = rows.column("order").to_numpy().astype(np.int64)
    allocated = rows.column("allocated").to_numpy(zero_copy_only=False).astype(np.bool_)
    in_pass = rows.column("in_pass").to_numpy(zero_copy_only=False).astype(np.bool_)
    in_zone = rows.column("in_pass_zone").to_numpy(zero_copy_only=False).astype(np.bool_)
    mt = rows.column("mt").to_numpy().astype(np.int64)
    prev = last_covering(rows)
    # the page was free just before this free: the last event since the fork on a block
    # holding its pfn freed it, or there is none and it was free at the fork (a part of a
    # block compaction isolated and gave back, `release_free_list`, has no event at its
    # own pfn: the block's free named its first page only)
    was_free = np.where(prev >= 0, prev == 1, page_mt[off] < 0)
    # compaction migrates movable folios of the zone it compacts (isolate_migratepages:
    # LRU pages and movable_ops pages); the task's other frees in the pass (slab pages
    # it emptied, another zone's pages, the unused isolated pages) are frees
    movable = np.where(allocated, mt == MIGRATE_MOVABLE,
                       (prev >= 0) | (page_mt[off] == MIGRATE_MOVABLE))  # fmt: skip
    source = in_pass & in_zone & movable & ~was_free & ~np.isin(seq, named_seqs)
    home = ~in_pass & ~allocated & was_free & ~np.isin(obj, named_y)
    ys, xs = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for k in np.unique(order[source]):
        src = np.flatnonzero(source & (order == k))  # in seq order
        dst = np.flatnonzero(home & (order == k))
        matched, taken = fifo_match(seq[src], seq[dst])
        ys.append(obj[dst[matched]])
        xs.append(obj[src[taken]])
    y, x = np.concatenate(ys), np.concatenate(xs)
    order_y = np.argsort(y)
    return y[order_y], x[order_y], seq[source]


def fifo_match(src_seq: np.ndarray, dst_seq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each destination in turn (``dst_seq`` ascending) takes the earliest source not yet
    taken if that one came before it (``src_seq`` ascending): (the destinations
    matched, as a bool mask; the indices of the sources they took, in order).

    Greedy, so with ``c[d]`` the sources before destination ``d``, the count taken
    after ``d`` is ``i[d] = min(i[d-1] + 1, c[d])``, that is
    ``d + 1 + min(0, min over j <= d of (c[j] - j - 1))``: a running minimum."""
    n = dst_seq.shape[0]
    if n == 0 or src_seq.shape[0] == 0:
        return np.zeros(n, np.bool_), np.zeros(0, np.int64)
    c = np.searchsorted(src_seq, dst_seq, side="left").astype(np.int64)
    d = np.arange(n, dtype=np.int64)
    taken_after = d + 1 + np.minimum(0, np.minimum.accumulate(c - d - 1))
    matched = np.diff(taken_after, prepend=0) > 0
    return matched, taken_after[matched] - 1


def migration_map(
    store: Store, trace_id: int, lo_seq: int, hi_seq: int, start_pfn: int,
    page_mt: np.ndarray | None, more: tuple[tuple[int, np.ndarray], ...] = (),
) -> Migrations:  # fmt: skip
    """Every migration of the recorded kernel the run can follow: by the ptes
    (:func:`migration_links`), then, given the fork's page types, the unnamed ones
    (:func:`unnamed_migrations`) in the zone from ``start_pfn`` and in each of ``more``
    ((start pfn, page types) of the node's other modelled zones); chains followed
    across all."""
    y, x, seqs = migration_links(store, trace_id, lo_seq)
    named = int(y.shape[0])
    unnamed = 0
    zones = ((start_pfn, page_mt),) if page_mt is not None else ()
    for zs, zmt in (*zones, *more):
        uy, ux, useqs = unnamed_migrations(store, trace_id, lo_seq, hi_seq, zs, zmt, seqs,
                                           y[:named])  # fmt: skip
        unnamed += int(uy.shape[0])
        y = np.concatenate([y, uy])
        x = np.concatenate([x, ux])
        seqs = np.union1d(seqs, useqs)
    if zones or more:
        order = np.argsort(y, kind="stable")
        y, x = y[order], x[order]
        keep = np.ones(y.shape[0], np.bool_)
        keep[1:] = y[1:] != y[:-1]
        y, x = y[keep], follow_chains(y[keep], x[keep])
    return Migrations(y_obj=y, x_obj=x, seqs=seqs, named=named, unnamed=unnamed)


def fork_first_takes(
    store: Store, trace_id: int, env: Environment, lo_seq: int, fork: ForkState
) -> FirstTakes:
    """The kernel's first take after ``lo_seq`` of each block free or on a pcp list in
    its state rebuilt just before it (``fork``): one pass over the trace's allocations
    serves the pageblock types, the free lists' order and the pcp lists'."""
    return first_taken(store, trace_id, env, lo_seq, *loose_blocks(fork.blk, fork.pcp))


def fork_takes_and_types(
    store: Store, trace_id: int, env: Environment, lo_seq: int, fork: ForkState
) -> tuple[FirstTakes, np.ndarray]:
    """:func:`fork_first_takes` and :func:`fork_pageblock_types` of a fork of the kernel's
    state not yet changed, found once per state (``fork.derived``, shared by its copies:
    an explanation forks seven models from one state). The pageblock types are the
    caller's own copy."""
    key = ("takes+types", trace_id, lo_seq, env.zone, env.start_pfn, env.pages)
    got = fork.derived.get(key)
    if got is None:
        takes = fork_first_takes(store, trace_id, env, lo_seq, fork)
        got = (takes, fork_pageblock_types(store, trace_id, env, fork, takes))
        fork.derived[key] = got
    return got[0], np.array(got[1], np.int8)


def fork_pageblock_types(
    store: Store, trace_id: int, env: Environment, fork: ForkState, takes: FirstTakes
) -> np.ndarray:
    """The pageblock types of the kernel's rebuilt state (``fork``, with its
    :func:`fork_first_takes`): those the kernel's first takes after it show
    (``environment.taken_pageblock_types``), the rest from the snapshot's counts and
    the pages' flags (``environment.initial_pageblock_types``). int8 per pageblock."""
    known = taken_pageblock_types(store, trace_id, env, takes)
    return initial_pageblock_types(store, trace_id, env, fork.page_mt, known)


def pcp_list_order(fork: ForkState, takes: FirstTakes | None
                   ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The blocks a rebuilt state (``fork``) had on pcp lists, each list from its head, and
    each block's cpu: (offsets, cpus; -1 unknown). With its first takes (``takes``), in
    the order the kernel allocated them first (``rmqueue_pcplist`` takes the head; frees
    and refills push), on the cpu that took each where no event before the fork names
    one; without, by offset as the rebuild knows them."""
    pcp_at = np.flatnonzero(fork.pcp > 0)
    pcp_cpu = fork.pcp_cpu[pcp_at].astype(np.int64)
    if takes is not None:
        on_pcp = fork.pcp[takes.offs] > 0  # takes.offs: ascending, as pcp_at
        pcp_cpu = np.where(pcp_cpu < 0, takes.cpu[on_pcp], pcp_cpu)
        by_first = np.lexsort((pcp_at, takes.first[on_pcp]))
        pcp_at, pcp_cpu = pcp_at[by_first], pcp_cpu[by_first]
    return pcp_at, pcp_cpu


def free_list_order(takes: FirstTakes, blk: np.ndarray) -> np.ndarray:
    """The free blocks of a rebuilt state (``blk``: each block's order at its offset, -1
    elsewhere; ``takes`` its first takes) in the order the kernel's free lists held
    them, as far as the trace shows it: by the first page the kernel took from each
    after the fork, since ``__rmqueue_smallest`` takes a list's head first; blocks the
    trace never touches follow, ascending. The rebuild knows which blocks were free,
    not the lists' order, which decides where the next allocations land: blocks go to
    the head as they are freed (to the tail for boot memory, FPI_TO_TAIL), so the order
    is the state's history, not pfn order. Returns offsets (int64)."""
    free = blk[takes.offs] >= 0
    heads = takes.offs[free]
    return heads[np.lexsort((heads, takes.first[free]))]
