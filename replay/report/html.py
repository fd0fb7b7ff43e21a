"""Comparison reports over stored runs: the summary table and a self-contained HTML page.

``summary_table`` is one row per run (``replay compare``); ``report_data`` is
everything the charts need, downsampled in SQL (at most ``points`` buckets of
steps per run, at most :data:`PAGEBLOCK_ROWS` x :data:`PAGEBLOCK_COLS` cells
of pageblock ownership per run); ``render_report`` inlines that data, the
chart layer (``assets/charts.js``, ``window.ReplayCharts.render``) and
its stylesheet into one HTML file that makes no network request.

Units: orders are buddy orders; pages are base pages (4 KiB); ``seq`` is the
index of a trace event; the unusable index and fragmentation index are in
thousandths, ``extfrag_for_order``, the fragmentation score and every
``*_pct`` column in percent. Every metric comes from the DuckDB macros of
replay/metrics.py (installed on every Store connection), never from the
chart code. The fragmentation score is the kernel's node score of a node
holding only the run's zone, ``fragmentation_score_zone_weighted(pages,
pages, ...)``, i.e. ``extfrag_for_order(9) * pages // (pages + 1)``, the
number proactive compaction compares with its watermarks (docs/compaction.md).
"""

from __future__ import annotations

import datetime as dt
import html
import itertools
import json
from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Any

import pyarrow as pa

from replay import __version__
from replay.analysis.metrics import MAX_PAGE_ORDER, NR_PAGE_ORDERS
from replay.errors import RunNotFoundError, UsageError
from replay.progress import Progress
from replay.store import Store

__all__ = [
    "ASSETS",
    "COSTLY_ORDER",
    "MAX_POINTS",
    "PAGEBLOCK_COLS",
    "PAGEBLOCK_ROWS",
    "asset",
    "check_runs",
    "render_report",
    "report_data",
    "runs_of_batch",
    "summary_table",
]

COSTLY_ORDER = 3
"""``PAGE_ALLOC_COSTLY_ORDER``: requests above this order are the "high-order" ones whose
success rate is the benefit axis of the cost/benefit chart."""

MAX_POINTS = 5000
"""Most step buckets per run a report accepts (``points``)."""

PAGEBLOCK_ROWS = 64
"""Most rows of a pageblock ownership map: neighbouring pageblocks are aggregated above."""

PAGEBLOCK_COLS = 100
"""Most snapshots (columns) of a pageblock ownership map: the last one of each bucket is kept."""

ASSETS = "assets"
"""Folder of the inlined assets inside the ``replay`` package (charts.js, report.css)."""

COSTS = ("migrated", "scanned", "evicted", "exchanged")
"""Pages moved, stepped over, reclaimed and swapped by the defragmentation mechanisms."""

MOVED = ("migrated", "evicted", "exchanged")
"""The costs that move or drop a page's contents (``scanned`` only looks at pages)."""

SERIES = ("free_pages", "largest_free_order", "unusable_index", "fragmentation_score")
"""The metrics of each bucket's last counters row (pages, order, thousandths, percent)."""

FINAL = ("largest_free_order", "unusable_index", "fragmentation_index", "extfrag_for_order",
         "fragmentation_score", "mixed_pageblocks", "pageblocks")  # fmt: skip
"""Summary columns of the run's final state (order, thousandths, percent, pageblocks)."""

_NF = [f"nr_free_{k}" for k in range(NR_PAGE_ORDERS)]
_N = ", ".join(_NF)
_RN = ", ".join(f"r.nr_free[{k + 1}]" for k in range(NR_PAGE_ORDERS))


def asset(name: str) -> str:
    """The text of a report asset (``charts.js``, ``report.css``), for pages that reuse it."""
    return resources.files("replay.report").joinpath(ASSETS, name).read_text(encoding="utf-8")


def _ids_sql(run_ids: Sequence[int]) -> str:
    """A SQL list of validated integer run ids (for IN, so DuckDB prunes by run_id)."""
    return ", ".join(str(int(r)) for r in run_ids)


def _table_columns(store: Store, table: str) -> set[str]:
    """The columns of ``table`` (empty when the table does not exist: an older file)."""
    rows = store.con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE table_name = $t AND schema_name = 'main'",
        {"t": table},
    ).fetchall()
    return {r[0] for r in rows}


def _col(have: set[str], name: str, alias: str = "", default: str = "NULL") -> str:
    """``alias.name`` when the column exists, else ``default`` (files made before it)."""
    return f"{alias}{name}" if name in have else default


def _column(store: Store, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
    """The first column of a query's rows."""
    return [r[0] for r in store.con.execute(sql, params).fetchall()]


def _some(values: Sequence[Any], n: int) -> str:
    """The first ``n`` values, comma-separated, with ', ...' when there are more."""
    return ", ".join(map(str, values[:n])) + (", ..." if len(values) > n else "")


def check_runs(store: Store, run_ids: Iterable[int]) -> list[int]:
    """The run ids, deduplicated in the given order; RunNotFoundError for any not stored."""
    ids = list(dict.fromkeys(int(r) for r in run_ids))
    if not ids:
        raise UsageError("no runs given: pass run ids or --batch NAME (replay runs lists them)")
    valid = [r for r in ids if -(2**31) <= r < 2**31]  # runs.run_id is an INTEGER
    found: set[int] = set()
    if valid:
        found = set(_column(store, f"SELECT run_id FROM runs WHERE run_id IN ({_ids_sql(valid)})"))
    missing = [r for r in ids if r not in found]
    if missing:
        stored = _column(store, "SELECT run_id FROM runs ORDER BY run_id LIMIT 11")
        hint = "stored runs: " + _some(stored, 10) if stored else "the store has no runs yet"
        what = "run" if len(missing) == 1 else "runs"
        raise RunNotFoundError(
            f"no {what} {', '.join(map(str, missing))} in {store.path} ({hint}; see replay runs)"
        )
    return ids


def runs_of_batch(store: Store, name: str) -> list[int]:
    """The finished runs of batch ``name`` (status done), in run id order.

    RunNotFoundError when no batch has that name or none of its runs finished.
    """
    if not {"batch_id", "name"} <= _table_columns(store, "batches") or not _table_columns(
        store, "batch_runs"
    ):
        raise RunNotFoundError(f"no batch named {name!r} in {store.path} (it holds no batches)")
    row = store.one("SELECT batch_id FROM batches WHERE name = $n", {"n": name})
    if row is None:
        names = _column(store, "SELECT name FROM batches ORDER BY batch_id LIMIT 11")
        hint = "batches: " + _some(names, 10) if names else "the store has no batches"
        raise RunNotFoundError(f"no batch named {name!r} in {store.path} ({hint})")
    ids = _column(
        store,
        "SELECT DISTINCT b.run_id FROM batch_runs b JOIN runs r ON r.run_id = b.run_id "
        "WHERE b.batch_id = $b AND b.status = 'done' ORDER BY b.run_id",
        {"b": int(row[0])},
    )
    if not ids:
        raise RunNotFoundError(f"batch {name!r} has no finished runs (status done) yet")
    return ids


def _check_order(order: int) -> int:
    if not 0 <= order <= MAX_PAGE_ORDER:
        raise UsageError(f"--order must be from 0 to {MAX_PAGE_ORDER}, not {order}")
    return order


def _model_label(preset: str | None, model: str | None, config: str | None) -> str:
    """The preset name, else the model with its parameters (``buddy vcompound_order=1``)."""
    if preset:
        return preset
    params: dict[str, Any] = {}
    if config:
        try:
            params = json.loads(config).get("params") or {}
        except (ValueError, AttributeError):
            params = {}
    extra = " ".join(
        f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in sorted(params.items())
    )
    return f"{model or '?'} {extra}".strip()


def _runs(store: Store, run_ids: list[int], order: int) -> list[dict[str, Any]]:
    """The runs rows with the final fragmentation computed by the macros, in run_ids order."""
    have = _table_columns(store, "runs")
    costs = ", ".join(f"coalesce({_col(have, c, 'r.', '0')}, 0) AS {c}" for c in COSTS)
    sql = f"""
    SELECT r.run_id, t.name AS trace, json_extract_string(r.config, '$.preset') AS preset,
           r.model, r.config, r.events, r.allocs, r.failures,
           coalesce({_col(have, "degraded", "r.", "0")}, 0) AS degraded,
           r.zone_pages, r.free_pages, {costs},
           (SELECT count(*) FROM extfrag x WHERE x.run_id = r.run_id) AS extfrag_events,
           (SELECT count(*) FILTER (x.fragmenting) FROM extfrag x WHERE x.run_id = r.run_id)
               AS extfrag_fragmenting,
           largest_free_order({_RN}) AS largest_free_order,
           unusable_index($order, {_RN}) AS unusable_index,
           fragmentation_index($order, {_RN}) AS fragmentation_index,
           extfrag_for_order($order, {_RN}) AS extfrag_for_order,
           fragmentation_score_zone_weighted(r.zone_pages, r.zone_pages, {_RN})
               AS fragmentation_score,
           suitable_blocks($order, {_RN}) << $order AS free_high_pages,
           (SELECT CASE WHEN count(*) = 0 THEN NULL ELSE count(*) FILTER (
                       (p.migratetype <> 0 AND p.unmovable > 0)
                       OR (p.migratetype <> 1 AND p.movable > 0)
                       OR (p.migratetype <> 2 AND p.reclaimable > 0)) END
            FROM pageblocks p
            WHERE p.run_id = r.run_id
              AND p.seq = (SELECT max(q.seq) FROM pageblocks q WHERE q.run_id = r.run_id))
               AS mixed_pageblocks,
           (SELECT count(DISTINCT p.pageblock) FROM pageblocks p WHERE p.run_id = r.run_id)
               AS pageblocks
    FROM runs r LEFT JOIN traces t USING (trace_id)
    WHERE r.run_id IN ({_ids_sql(run_ids)})
    """
    rows = {r["run_id"]: r for r in store.query(sql, {"order": order}).to_pylist()}
    out = []
    for rid in run_ids:
        r = rows[rid]
        r["model"] = _model_label(r.pop("preset"), r["model"], r.pop("config"))
        out.append(r)
    return out


def _per_order(store: Store, run_ids: list[int]) -> dict[int, dict[int, dict[str, int]]]:
    """run -> order -> alloc steps, ok, degraded, failed (allocations of the run's trace)."""
    sql = f"""
    SELECT s.run_id, e."order" AS "order", count(*) AS allocs,
           -- an observed run's inconsistent step is an allocation the kernel served
           count(*) FILTER (s.outcome IN ('ok', 'inconsistent')) AS ok,
           count(*) FILTER (s.outcome = 'degraded') AS degraded,
           count(*) FILTER (s.outcome = 'failed') AS failed
    FROM steps s JOIN runs r ON r.run_id = s.run_id
    JOIN events e ON e.trace_id = r.trace_id AND e.seq = s.seq
    WHERE s.run_id IN ({_ids_sql(run_ids)}) AND e.op = 'alloc'
    GROUP BY ALL ORDER BY 1, 2
    """
    out: dict[int, dict[int, dict[str, int]]] = {r: {} for r in run_ids}
    for row in store.query(sql).to_pylist():
        out[row["run_id"]][int(row["order"])] = {
            k: int(row[k]) for k in ("allocs", "ok", "degraded", "failed")
        }
    return out


def _pct(num: float | None, den: float | None, digits: int = 2) -> float | None:
    if num is None or not den:
        return None
    return round(100.0 * num / den, digits)


def _summary_rows(
    store: Store, run_ids: list[int], order: int
) -> tuple[list[str], list[dict[str, Any]]]:
    runs = _runs(store, run_ids, order)
    per_order = _per_order(store, run_ids)
    orders = sorted({o for po in per_order.values() for o in po})
    rows = []
    for r in runs:
        po = per_order[r["run_id"]]
        steps = sum(v["allocs"] for v in po.values())
        ok = sum(v["ok"] + v["degraded"] for v in po.values())
        hi = [v for o, v in po.items() if o > COSTLY_ORDER]
        hi_n = sum(v["allocs"] for v in hi)
        hi_ok = sum(v["ok"] + v["degraded"] for v in hi)
        row: dict[str, Any] = {
            "run_id": r["run_id"],
            "trace": r["trace"],
            "model": r["model"],
            "events": r["events"],
            "allocs": steps,
            "successes": ok,
            "failures": r["failures"],
            "degraded": r["degraded"],
            "success_pct": _pct(ok, steps, 3),
        }
        for o in orders:
            v = po.get(o)
            row[f"success_pct_o{o}"] = _pct(v["ok"] + v["degraded"], v["allocs"]) if v else None
        row["high_order_success_pct"] = _pct(hi_ok, hi_n)
        row["extfrag_events"] = r["extfrag_events"]
        row["extfrag_fragmenting"] = r["extfrag_fragmenting"]
        for c in COSTS:
            row[c] = r[c]
        row["cost_pages"] = sum(r[c] for c in COSTS)
        row["zone_pages"] = r["zone_pages"]
        row["free_pages"] = r["free_pages"]
        row["free_high_pct"] = _pct(r["free_high_pages"], r["free_pages"])
        for c in FINAL:
            row[c] = r[c]
        rows.append(row)
    return list(rows[0]), rows


_TEXT = {"trace", "model"}
_FLOAT = "pct"


def summary_table(store: Store, run_ids: list[int], order: int = 9) -> pa.Table:
    """One row per run (in ``run_ids`` order): outcomes, costs and the final fragmentation.

    Columns: ``allocs`` (allocation steps), ``successes`` (ok + degraded),
    ``failures`` (runs.failures: pre-existing pages that did not fit
    included), ``degraded`` (virtual compound successes, counted as
    successes too), ``success_pct`` and ``success_pct_oK`` for every order K
    any of the runs' traces allocates (percent; NULL where a trace has no
    order-K allocation), ``high_order_success_pct`` (orders above
    ``PAGE_ALLOC_COSTLY_ORDER`` 3), ``extfrag_events`` (extfrag rows: claims
    + steals) and how many were ``extfrag_fragmenting``, the costs
    ``migrated``/``scanned``/``evicted``/``exchanged`` and their sum
    ``cost_pages`` (pages), then at the end of the run: ``free_pages``,
    ``free_high_pct`` (share of free pages in blocks of order >= ``order``),
    ``largest_free_order``, ``unusable_index`` and ``fragmentation_index``
    (thousandths, for ``order``), ``extfrag_for_order`` (percent, for
    ``order``), ``fragmentation_score`` (percent, order 9) and
    ``mixed_pageblocks`` of ``pageblocks`` in the last snapshot.
    """
    _check_order(order)
    ids = check_runs(store, run_ids)
    columns, rows = _summary_rows(store, ids, order)
    fields = []
    for c in columns:
        if c in _TEXT:
            t: pa.DataType = pa.string()
        elif _FLOAT in c:
            t = pa.float64()
        else:
            t = pa.int64()
        fields.append(pa.field(c, t))
    schema = pa.schema(fields)
    return pa.Table.from_pylist(rows, schema=schema)


def _series(store: Store, run_ids: list[int], order: int, points: int) -> dict[int, Any]:
    """Per run, at most ``points`` step buckets (by seq): the last counters row of each
    bucket (nr_free and the metrics computed from it), and the cumulative counters."""
    have = _table_columns(store, "steps")
    ids = _ids_sql(run_ids)
    arg = ", ".join(f"arg_max({c}, c.seq) AS {c}" for c in _NF)
    cum = ", ".join(
        f"max({_col(have, c)}) AS {c}" for c in ("failures", "degraded", "fallbacks", *COSTS)
    )
    sql = f"""
    WITH n AS (SELECT run_id, max(seq) + 1 AS n FROM steps WHERE run_id IN ({ids})
               GROUP BY run_id),
    c AS (SELECT run_id, seq, {_N} FROM steps
          WHERE run_id IN ({ids}) AND free_pages IS NOT NULL AND seq >= 0),
    b AS (SELECT c.run_id, (c.seq * $points) // n.n AS bucket, max(c.seq) AS seq, {arg}
          FROM c JOIN n USING (run_id) GROUP BY ALL)
    SELECT b.run_id, b.bucket, b.seq, {_N},
           free_pages({_N}) AS free_pages,
           largest_free_order({_N}) AS largest_free_order,
           unusable_index($order, {_N}) AS unusable_index,
           fragmentation_score_zone_weighted(r.zone_pages, r.zone_pages, {_N})
               AS fragmentation_score
    FROM b JOIN runs r USING (run_id)
    ORDER BY b.run_id, b.bucket
    """
    csql = f"""
    WITH n AS (SELECT run_id, max(seq) + 1 AS n FROM steps WHERE run_id IN ({ids})
               GROUP BY run_id)
    SELECT s.run_id, (s.seq * $points) // n.n AS bucket, max(s.seq) AS seq, {cum}
    FROM steps s JOIN n USING (run_id)
    WHERE s.run_id IN ({ids}) AND s.seq >= 0
    GROUP BY ALL ORDER BY 1, 2
    """
    out: dict[int, Any] = {}
    for rid in run_ids:
        out[rid] = {
            "series": {k: [] for k in ("seq", *SERIES, "nr_free")},
            "counters": {
                k: [] for k in ("seq", "failures", "degraded", "fallbacks", "cost", *COSTS)
            },
        }
    tab = store.query(sql, {"order": order, "points": points}).to_pydict()
    for i, rid in enumerate(tab["run_id"]):
        s = out[rid]["series"]
        for k in ("seq", *SERIES):
            s[k].append(tab[k][i])
        s["nr_free"].append([tab[c][i] for c in _NF])
    ctab = store.query(csql, {"points": points}).to_pydict()
    for i, rid in enumerate(ctab["run_id"]):
        c = out[rid]["counters"]
        for k in ("seq", "failures", "degraded", "fallbacks", *COSTS):
            c[k].append(ctab[k][i])
        parts = [ctab[k][i] for k in COSTS]
        known = [p for p in parts if p is not None]
        c["cost"].append(sum(known) if known else None)
    parts = [{"run_id": rid, "seq": out[rid][k]["seq"]} for rid in run_ids
             for k in ("series", "counters")]  # fmt: skip
    _add_seconds(store, parts)
    for i, rid in enumerate(run_ids):
        out[rid]["series"]["t"] = parts[2 * i]["t"]
        out[rid]["counters"]["t"] = parts[2 * i + 1]["t"]
    return out


def _add_seconds(store: Store, parts: list[dict[str, Any]]) -> None:
    """Give each part (a dict with ``run_id`` or its run's, and ``seq``) a ``t``: the
    seconds of trace time of each seq (its event's ts_ns less the trace's first event's;
    None for a seq with no event, such as -1, the state before the first)."""
    runs = [int(p["run_id"]) for p in parts for _ in p["seq"]]
    seqs = [int(q) for p in parts for q in p["seq"]]
    if not seqs:
        for p in parts:
            p["t"] = []
        return
    ids = _ids_sql(sorted(set(runs)))
    sql = f"""
    WITH t0 AS (SELECT trace_id, min(ts_ns) AS ts0 FROM events
                WHERE trace_id IN (SELECT trace_id FROM runs WHERE run_id IN ({ids}))
                GROUP BY trace_id)
    SELECT q.run_id, q.seq, (e.ts_ns - t0.ts0) / 1e9 AS t
    FROM (SELECT unnest($runs) AS run_id, unnest($seqs) AS seq) q
    JOIN runs r USING (run_id) JOIN t0 USING (trace_id)
    JOIN events e ON e.trace_id = r.trace_id AND e.seq = q.seq
    """
    got = store.query(sql, {"runs": runs, "seqs": seqs}).to_pydict()
    at = {(r, q): t for r, q, t in zip(got["run_id"], got["seq"], got["t"], strict=True)}
    for p in parts:
        p["t"] = [_seconds(at.get((int(p["run_id"]), int(q)))) for q in p["seq"]]


def _seconds(t: float | None) -> float | None:
    """Seconds rounded to the microsecond (the charts need no more)."""
    return None if t is None else round(t, 6)


RUG_BUCKETS = 1000
"""Most marks of a run's failure rug: failures are bucketed by seq, the first of each kept."""


def _failure_rugs(store: Store, run_ids: list[int]) -> dict[int, dict[str, list[Any]]]:
    """Per run, its failed allocations in at most :data:`RUG_BUCKETS` buckets of seq:
    ``seq`` (the first failure of each bucket), ``t`` (seconds of trace time), ``n``
    (failures in the bucket)."""
    ids = _ids_sql(run_ids)
    sql = f"""
    WITH n AS (SELECT run_id, max(seq) + 1 AS n FROM steps WHERE run_id IN ({ids})
               GROUP BY run_id),
    t0 AS (SELECT trace_id, min(ts_ns) AS ts0 FROM events
           WHERE trace_id IN (SELECT trace_id FROM runs WHERE run_id IN ({ids}))
           GROUP BY trace_id),
    f AS (SELECT s.run_id, (s.seq * $buckets) // n.n AS bucket, min(s.seq) AS seq,
                 count(*) AS k
          FROM steps s JOIN n USING (run_id)
          WHERE s.run_id IN ({ids}) AND s.outcome = 'failed' AND s.seq >= 0
          GROUP BY ALL)
    SELECT f.run_id, f.seq, (e.ts_ns - t0.ts0) / 1e9 AS t, f.k
    FROM f JOIN runs r USING (run_id) JOIN t0 USING (trace_id)
    LEFT JOIN events e ON e.trace_id = r.trace_id AND e.seq = f.seq
    ORDER BY f.run_id, f.seq
    """
    out: dict[int, dict[str, list[Any]]] = {r: {"seq": [], "t": [], "n": []} for r in run_ids}
    tab = store.query(sql, {"buckets": RUG_BUCKETS}).to_pydict()
    for i, rid in enumerate(tab["run_id"]):
        rug = out[rid]
        rug["seq"].append(tab["seq"][i])
        rug["t"].append(_seconds(tab["t"][i]))
        rug["n"].append(int(tab["k"][i]))
    return out


def _pageblocks(store: Store, run_ids: list[int]) -> dict[int, Any]:
    """Per run, the ownership map: at most PAGEBLOCK_COLS snapshots x PAGEBLOCK_ROWS groups
    of neighbouring pageblocks; per cell the commonest migratetype, the share of mixed
    pageblocks (holding allocated pages of another type) and of free pages (percent)."""
    ids = _ids_sql(run_ids)
    sql = f"""
    WITH p AS (
        SELECT run_id, seq, pageblock, migratetype, free_pages,
               ((migratetype <> 0 AND unmovable > 0) OR (migratetype <> 1 AND movable > 0)
                OR (migratetype <> 2 AND reclaimable > 0)) AS mixed
        FROM pageblocks WHERE run_id IN ({ids})
    ),
    snaps AS (
        SELECT run_id, seq,
               (row_number() OVER (PARTITION BY run_id ORDER BY seq) - 1) * $cols
                   // count(*) OVER (PARTITION BY run_id) AS col
        FROM (SELECT DISTINCT run_id, seq FROM p)
    ),
    keep AS (SELECT run_id, col, max(seq) AS seq FROM snaps GROUP BY ALL),
    dims AS (
        SELECT run_id, min(pageblock) AS pb0,
               (max(pageblock) - min(pageblock) + $rows) // $rows AS per_row
        FROM p GROUP BY run_id
    ),
    cells AS (
        SELECT p.run_id, k.col, k.seq, (p.pageblock - d.pb0) // d.per_row AS "row",
               p.migratetype, count(*) AS n, count(*) FILTER (p.mixed) AS mixed,
               sum(p.free_pages) AS free, d.pb0, d.per_row
        FROM p JOIN keep k USING (run_id, seq) JOIN dims d USING (run_id)
        GROUP BY ALL
    )
    SELECT run_id, col, seq, "row", pb0, per_row,
           arg_max(migratetype, n * 64 - coalesce(migratetype, 63)) AS mt,
           sum(n) AS blocks, sum(mixed) AS mixed, sum(free) AS free
    FROM cells GROUP BY ALL ORDER BY run_id, col, "row"
    """
    tab = store.query(sql, {"cols": PAGEBLOCK_COLS, "rows": PAGEBLOCK_ROWS}).to_pydict()
    raw: dict[int, list[int]] = {}
    for i, rid in enumerate(tab["run_id"]):
        raw.setdefault(rid, []).append(i)
    out: dict[int, Any] = {}
    for rid in run_ids:
        idx = raw.get(rid)
        if not idx:
            out[rid] = None
            continue
        cols = sorted({tab["col"][i] for i in idx})
        col_at = {c: j for j, c in enumerate(cols)}
        seqs = [0] * len(cols)
        nrows = max(tab["row"][i] for i in idx) + 1
        mt = [-1] * (len(cols) * nrows)
        mixed = [0] * len(mt)
        free = [0] * len(mt)
        blocks = [0] * len(mt)
        for i in idx:
            j = col_at[tab["col"][i]]
            seqs[j] = tab["seq"][i]
            cell = j * nrows + tab["row"][i]
            n = int(tab["blocks"][i])
            mt[cell] = -1 if tab["mt"][i] is None else int(tab["mt"][i])
            blocks[cell] = n
            mixed[cell] = round(100 * int(tab["mixed"][i]) / n)
            free[cell] = round(100 * int(tab["free"][i] or 0) / (n * 512))
        out[rid] = {
            "seq": seqs,
            "rows": nrows,
            "first_pageblock": int(tab["pb0"][idx[0]]),
            "pageblocks_per_row": int(tab["per_row"][idx[0]]),
            "mt": mt,
            "mixed": mixed,
            "free": free,
            "blocks": blocks,
        }
    return out


def report_data(
    store: Store,
    run_ids: list[int],
    order: int = 9,
    points: int = 400,
    *,
    progress: Progress | None = None,
    failure_maps: bool = True,
) -> dict[str, Any]:
    """Everything the report's charts need, JSON-able (ints, floats, strings, None).
    ``failure_maps``: map the candidates of each run's first failure (a state rebuilt
    per run; the web page asks for an explanation instead).

    ``order``: the order of the unusable index and of the other per-order
    metrics (0..10). ``points``: at most this many step buckets per run and
    series (the last counters row of each bucket of seq). Keys: ``order``,
    ``points``, ``costly_order``, ``summary`` (``columns`` and ``rows`` of
    :func:`summary_table`), and ``runs``: per run ``run_id``, ``label``,
    ``trace``, ``model``, ``zone_pages``, ``events``, ``series`` (``seq``,
    ``t`` (seconds of trace time: the step's event's ts_ns less the trace's
    first), ``free_pages``, ``largest_free_order``, ``unusable_index``,
    ``fragmentation_score``, ``nr_free`` per bucket), ``counters`` (``seq``,
    ``t``, cumulative ``failures``, ``degraded``, ``fallbacks``, the pages
    ``migrated``, ``scanned``, ``evicted``, ``exchanged`` and their sum
    ``cost``, per bucket), ``pageblocks`` (the ownership map, or None without
    snapshots), ``failure_rug`` (its failed allocations bucketed by seq:
    :func:`_failure_rugs`) and ``cost_benefit`` (``cost_pages``, each of
    :data:`COSTS`, ``moved_pages`` = migrated + evicted + exchanged,
    ``high_order_success_pct``, ``free_high_pct``); ``failures``
    (:func:`failures_table`).
    """
    _check_order(order)
    if not 2 <= points <= MAX_POINTS:
        raise UsageError(f"--points must be from 2 to {MAX_POINTS}, not {points}")
    progress = progress or Progress()
    progress.start("report", 4)
    ids = check_runs(store, run_ids)
    columns, rows = _summary_rows(store, ids, order)
    progress.advance_to(1)
    series = _series(store, ids, order, points)
    progress.advance_to(2)
    blocks = _pageblocks(store, ids)
    maps = [{"run_id": rid, "seq": m["seq"]} for rid, m in blocks.items() if m is not None]
    _add_seconds(store, maps)
    for m in maps:
        blocks[m["run_id"]]["t"] = m["t"]
    rugs = _failure_rugs(store, ids)
    progress.advance_to(3)
    runs = []
    for row in rows:
        rid = row["run_id"]
        runs.append(
            {
                "run_id": rid,
                "label": f"#{rid} {row['model']} on {row['trace']}",
                "trace": row["trace"],
                "model": row["model"],
                "zone_pages": row["zone_pages"],
                "events": row["events"],
                **series[rid],
                "pageblocks": blocks[rid],
                "failure_rug": rugs[rid],
                "cost_benefit": {
                    **{
                        k: row[k]
                        for k in ("cost_pages", *COSTS, "high_order_success_pct", "free_high_pct")
                    },
                    "moved_pages": sum(row[k] or 0 for k in MOVED),
                },
            }
        )
    progress.advance_to(4)
    zsmalloc = zsmalloc_section(store, ids)
    return {
        **({"zsmalloc": zsmalloc} if zsmalloc is not None else {}),
        "version": 1,
        "order": order,
        "points": points,
        "costly_order": COSTLY_ORDER,
        "summary": {"columns": columns, "rows": [[r[c] for c in columns] for r in rows]},
        "runs": runs,
        "failures": failures_table(
            store, [(r["run_id"], r["label"]) for r in runs], maps=failure_maps
        ),
    }


def zsmalloc_section(store: Store, run_ids: list[int]) -> dict[str, Any] | None:
    """Seed 002's three choices side by side: ``columns`` and ``rows`` of
    queries/zsmalloc_compare.sql over the runs that have zsmalloc, and per such run
    its zram pages over the run (``footprint``: ``seq``, ``t`` seconds of trace time,
    ``pages``, from queries/zram_footprint.sql); None when no run has zsmalloc."""
    from replay.analysis.queries import run as run_query

    if "zs_pages" not in _table_columns(store, "runs") or not _table_columns(store, "zram_pool"):
        return None  # a database from before zsmalloc, opened read-only
    tab = run_query(store, "zsmalloc_compare", {"runs": ",".join(str(r) for r in run_ids)})
    if tab.num_rows == 0:
        return None
    footprint = {}
    for rid in tab.column("run_id").to_pylist():
        f = run_query(store, "zram_footprint", {"run": str(rid)})
        footprint[rid] = {"seq": f.column("seq").to_pylist(), "t": f.column("t_s").to_pylist(),
                          "pages": f.column("pages").to_pylist()}  # fmt: skip
    rows = [[_plain(v) for v in r.values()] for r in tab.to_pylist()]
    return {"columns": tab.column_names, "rows": rows, "footprint": footprint}


def _plain(v: Any) -> Any:
    """A JSON-able cell (DuckDB's rounded DECIMALs become floats)."""
    import decimal

    return float(v) if isinstance(v, decimal.Decimal) else v


FAILURE_COLUMNS = ("run", "seq", "order", "migratetype", "comm", "free_blocks_at_order",
                   "watermark_headroom", "after_fallback", "after_compaction")  # fmt: skip


def failures_table(
    store: Store, runs: Sequence[tuple[int, str]], per_run: int = 5, *, maps: bool = True
) -> dict[str, Any]:
    """The first failed allocations of each run (at most ``per_run``), each with the
    summary of its explanation the stored steps give (replay.analysis.explain.rank):
    free blocks of at least its order just before it, free pages above the min
    watermark (pages), whether the model fell back or compacted for it.
    ``replay explain RUN --seq SEQ`` gives the whole explanation."""
    from replay.analysis.explain import rank
    from replay.errors import BadInputError

    rows: list[list[Any]] = []
    run_ids: list[int] = []
    mapped: list[dict[str, Any]] = []
    for run_id, label in runs:
        try:
            ranked = rank(store, run_id, top=per_run)
        except BadInputError:  # no allocation steps
            continue
        failed = list(itertools.takewhile(lambda q: q["outcome"] == "failed", ranked))
        rows += [[label, *(q[c] for c in FAILURE_COLUMNS[1:])] for q in failed]
        run_ids += [run_id] * len(failed)
        if maps and failed and len(mapped) < MAX_FAILURE_MAPS:
            first = failed[0]
            mapped.append(failure_map(store, run_id, label, int(first["seq"]), int(first["order"])))
    return {"columns": list(FAILURE_COLUMNS), "rows": rows, "run_ids": run_ids,
            "maps": mapped}  # fmt: skip


MAX_FAILURE_MAPS = 8  # runs whose first failure's candidates the report maps


def failure_map(store: Store, run_id: int, label: str, seq: int, order: int,
                top: int = 3) -> dict[str, Any]:  # fmt: skip
    """The ``top`` blocks of ``order`` nearest to free just before allocation ``seq`` of
    the run, each with its pageblocks' page map (replay.analysis.explain.pageblock_map):
    the state the run had there (the kernel's rebuilt one, or its model's, from the
    nearest checkpoint)."""
    from replay.analysis.explain import candidates, run_info, state_view

    view, _env, _ms = state_view(store, run_info(store, run_id), seq)
    keep = ("pfn", "map_pfn", "map_offset", "map", "to_migrate", "to_reclaim",
            "pinned_pages", "possible", "blocked_by_pfn")  # fmt: skip
    return {
        "run_id": run_id,
        "label": label,
        "seq": seq,
        "order": order,
        "candidates": [{k: c[k] for k in keep} for c in candidates(view, order, top)],
    }


def _json_for_html(obj: Any) -> str:
    """JSON safe inside <script>: no '<', '>' or '&' that could end or confuse the element."""
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False, default=_default)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _default(v: Any) -> Any:
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    raise TypeError(f"not JSON-able: {type(v).__name__}")


# default-src 'none': the page cannot load or send anything; only its inline code runs.
CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data:; base-uri 'none'; form-action 'none'"
)


def render_report(
    store: Store,
    run_ids: list[int],
    order: int = 9,
    title: str | None = None,
    *,
    points: int = 400,
    progress: Progress | None = None,
) -> str:
    """The whole report as one HTML document (data, script and style inlined; no network).

    The data is one JSON blob (``<script type="application/json"
    id="replay-report-data">``, :func:`report_data`); the page draws it with
    ``window.ReplayCharts.render`` from ``assets/charts.js``.
    """
    data = report_data(store, run_ids, order, points, progress=progress)
    if title is None:
        models = ", ".join(dict.fromkeys(r["model"] for r in data["runs"]))
        traces = ", ".join(dict.fromkeys(str(r["trace"]) for r in data["runs"]))
        title = f"replay: {models} on {traces}"
    data["title"] = title
    data["generated"] = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    data["source"] = store.path.name
    data["replay_version"] = __version__
    css = asset("report.css")
    js = asset("charts.js")
    if "</script" in js.lower() or "</style" in css.lower():  # pragma: no cover - asset bug
        raise RuntimeError("a report asset contains a closing tag")
    blob = _json_for_html(data)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>{html.escape(title)}</title>\n"
        f"<style>\n{css}</style>\n</head>\n<body>\n"
        '<main id="replay-report" class="rc-report">\n'
        "<noscript>This report draws its tables and charts with JavaScript "
        "(inline, no network): enable it to see them.</noscript>\n</main>\n"
        f'<script type="application/json" id="replay-report-data">{blob}</script>\n'
        f"<script>\n{js}</script>\n"
        "<script>\nReplayCharts.render(document.getElementById('replay-report'),\n"
        "  JSON.parse(document.getElementById('replay-report-data').textContent));\n"
        "</script>\n</body>\n</html>\n"
    )
