"""How closely a model reproduces the recorded kernel: ``replay validate TRACE --model M``.

A model started from the kernel's real state (``--start observed``) is
replayed over the same requests the kernel served, and compared with the
observed run (the kernel's own state, rebuilt from the recorded pfns) step by
step over the same seqs:

- ``failures``: the model's failed allocations against the kernel's, and
  those the kernel did not have;
- ``order3_diff_pct`` / ``order9_diff_pct``: the mean, over the steps both
  runs kept counters for, of |model - kernel| pages in free blocks of order
  >= 3 (>= 9), relative to the kernel's mean (percent);
- ``pcp_diff_pct``: the mean, over the same steps, of |model - kernel| pages on
  pcp lists, relative to the kernel's mean (percent; the kernel's are what the
  rebuild knows to be on its lists);
- ``end_diff_pct``: the end state's per-order difference weighted by block
  size, sum_o |m_o - k_o| << o, over the kernel's free pages (percent);
- ``pageblocks``: the model's pageblock type counts at its end (over the zone's
  online pageblocks then, as pagetypeinfo counts them) against the
  after-pagetypeinfo's, and
  the largest difference relative to all of them (percent);
- ``same_pfn_pct`` / ``same_pageblock_pct``: the share of allocations both
  served that the model placed on the kernel's pfn, and on its pageblock;
  ``same_zone_pct``: in the kernel's zone (the run's or one below it: a model that
  chooses zones, ``zone_choice = zonelist``; 100 when the trace chooses).

Units: pages, percent. Targets (issue 14): no failure the kernel did not
have; order >= 9 difference and end-state difference at most 10%; pageblock
type counts within 5%.
"""

from __future__ import annotations

from typing import Any

from replay.analysis.metrics import NR_PAGE_ORDERS, percent
from replay.engine.observed import run_observed
from replay.engine.whatif import run
from replay.models.config import RunConfig
from replay.progress import Progress
from replay.store import Store

MIGRATETYPE_KEYS = {0: "unmovable", 1: "movable", 2: "reclaimable"}


def _pages_from(k: int, prefix: str = "") -> str:
    """SQL: pages in free blocks of order >= k from a steps row's nr_free_* columns."""
    return " + ".join(f"({prefix}nr_free_{o} << {o})" for o in range(k, NR_PAGE_ORDERS))


def compare_runs(store: Store, observed_run: int, model_run: int) -> dict[str, Any]:
    """The fidelity figures of ``model_run`` against ``observed_run`` (same trace)."""
    seqs = store.one(
        "SELECT start_seq, end_seq, trace_id FROM runs WHERE run_id = $m", {"m": model_run}
    )
    assert seqs is not None
    lo, hi, trace_id = int(seqs[0] or 0), seqs[1], int(seqs[2])
    p = {"o": observed_run, "m": model_run, "lo": lo, "hi": hi}
    in_range = "seq >= $lo AND ($hi IS NULL OR seq <= $hi)"
    fail = store.one(
        f"""SELECT count(*) FILTER (o.outcome = 'failed'),
                   count(*) FILTER (m.outcome = 'failed'),
                   count(*) FILTER (m.outcome = 'failed' AND o.outcome <> 'failed')
            FROM steps o JOIN steps m USING (seq)
            WHERE o.run_id = $o AND m.run_id = $m AND o.{in_range}""",
        p,
    )
    assert fail is not None
    diffs = store.one(
        f"""SELECT count(*), avg(abs(({_pages_from(3, "m.")}) - ({_pages_from(3, "o.")}))),
                   avg({_pages_from(3, "o.")}),
                   avg(abs(({_pages_from(9, "m.")}) - ({_pages_from(9, "o.")}))),
                   avg({_pages_from(9, "o.")}),
                   avg(abs(m.pcp_pages - o.pcp_pages)), avg(o.pcp_pages)
            FROM steps o JOIN steps m USING (seq)
            WHERE o.run_id = $o AND m.run_id = $m AND o.{in_range}
              AND o.free_pages IS NOT NULL AND m.free_pages IS NOT NULL""",
        p,
    )
    assert diffs is not None
    cols = ", ".join(f"nr_free_{o}" for o in range(NR_PAGE_ORDERS))
    ends = {
        key: store.one(
            f"""SELECT {cols} FROM steps WHERE run_id = $r AND free_pages IS NOT NULL
                  AND seq <= coalesce($hi, seq) ORDER BY seq DESC LIMIT 1""",
            {"r": run_id, "hi": hi},
        )
        for key, run_id in (("kernel", observed_run), ("model", model_run))
    }
    k_end, m_end = ends["kernel"], ends["model"]
    end_diff = None
    if k_end is not None and m_end is not None:
        pairs = enumerate(zip(m_end, k_end, strict=True))
        weighted = sum(abs(int(a) - int(b)) << o for o, (a, b) in pairs)
        end_diff = percent(weighted, sum(int(b) << o for o, b in enumerate(k_end)))
    zs = store.one("SELECT zone_start_pfn FROM runs WHERE run_id = $m", {"m": model_run})
    place = store.one(
        f"""SELECT count(*), count(*) FILTER (o.pfn = m.pfn),
                   count(*) FILTER (o.pfn >> 9 = m.pfn >> 9),
                   count(*) FILTER ((o.pfn >= $zs) = (m.pfn >= $zs))
            FROM steps o JOIN steps m USING (seq)
            WHERE o.run_id = $o AND m.run_id = $m AND o.{in_range}
              AND o.pfn >= 0 AND m.pfn >= 0""",
        {**p, "zs": int(zs[0] or 0) if zs is not None else 0},
    )
    assert place is not None
    zone = store.one(
        """SELECT z.zone, z.start_pfn FROM runs r JOIN snap_zoneinfo z
             ON z.trace_id = r.trace_id AND z.start_pfn = r.zone_start_pfn
           WHERE r.run_id = $m ORDER BY z.snapshot = 'after' DESC LIMIT 1""",
        {"m": model_run},
    )
    pageblocks: dict[str, Any] = {}
    worst = None
    if zone is not None:
        kernel_pb = {
            int(r["mt"]): int(r["n"])
            for r in store.query(
                """SELECT mt, sum(nr_pageblocks) AS n FROM snap_pageblocks
                   WHERE trace_id = $t AND snapshot = 'after' AND zone = $z GROUP BY mt""",
                {"t": trace_id, "z": zone[0]},
            ).to_pylist()
        }
        # pagetypeinfo counts every online pageblock of the zone, whatever its pages
        # (pagetypeinfo_showblockcount_print: pfn_to_online_page), reserved ones too
        # (memmap_init_range typed them MOVABLE): the model's pageblocks from the zone's
        # start as many as the kernel's of every type, not the model's holes past them
        # (memory the kernel had not brought online; onlining grows the zone upwards).
        # Not the managed pages' span: a zone's reserved pages (its memmap) are 216
        # pageblocks' worth on the 24 GiB captures, all counted by pagetypeinfo.
        model_pb = {
            int(r["migratetype"]): int(r["n"])
            for r in store.query(
                """SELECT migratetype, count(*) AS n FROM pageblocks
                   WHERE run_id = $m AND seq = (SELECT max(seq) FROM pageblocks WHERE run_id = $m)
                     AND pageblock < ($start >> 9) + $online
                   GROUP BY ALL""",
                {
                    "m": model_run,
                    "start": int(zone[1]),
                    "online": sum(kernel_pb.values()),
                },
            ).to_pylist()
        }
        for mt, name in MIGRATETYPE_KEYS.items():
            k, m = kernel_pb.get(mt, 0), model_pb.get(mt, 0)
            pageblocks[name] = {"kernel": k, "model": m, "diff_pct": percent(m - k, k)}
        total = sum(kernel_pb.get(mt, 0) for mt in MIGRATETYPE_KEYS)
        worst = max((abs(m["model"] - m["kernel"]) for m in pageblocks.values()), default=0)
        worst = percent(worst, total)
    return {
        "observed_run": observed_run,
        "model_run": model_run,
        "start_seq": lo,
        "end_seq": hi,
        "steps_compared": int(diffs[0]),
        "kernel_failures": int(fail[0]),
        "model_failures": int(fail[1]),
        "failures_kernel_did_not_have": int(fail[2]),
        "order3_diff_pct": percent(float(diffs[1] or 0), float(diffs[2] or 0)),
        "order9_diff_pct": percent(float(diffs[3] or 0), float(diffs[4] or 0)),
        "pcp_diff_pct": percent(float(diffs[5] or 0), float(diffs[6] or 0)),
        "end_diff_pct": end_diff,
        "end_nr_free_kernel": [int(v) for v in k_end] if k_end else None,
        "end_nr_free_model": [int(v) for v in m_end] if m_end else None,
        "pageblocks": pageblocks,
        "pageblock_worst_diff_pct": worst,
        "allocations_compared": int(place[0]),
        "same_pfn_pct": percent(int(place[1]), int(place[0])),
        "same_pageblock_pct": percent(int(place[2]), int(place[0])),
        "same_zone_pct": percent(int(place[3]), int(place[0])),
    }


def model_fidelity(
    store: Store,
    trace: str,
    config: RunConfig,
    *,
    every: int = 100,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Replay ``trace`` observed and through ``config`` from the kernel's state at the
    first event after the before-snapshot; both runs are stored. The figures of
    :func:`compare_runs`, with the model's name."""
    obs = run_observed(store, trace, every=every, pageblock_every=0)
    model = run(store, trace, config, start="observed", every=every, pageblock_every=0,
                progress=progress)  # fmt: skip
    out = compare_runs(store, int(obs["run_id"]), model.run_id)
    return {"trace": model.trace, "model": config.preset or config.model, **out}
