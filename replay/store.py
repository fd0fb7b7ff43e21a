"""The DuckDB store: one file holding traces, their events, aux events and snapshots.

Appends go through Arrow record batches, never row by row. An ingest is one
transaction: on any failure it is rolled back, and a database file that the
failed ingest created is removed, so the store is left exactly as it was.
(DuckDB keeps an open transaction's rows in memory, about 100 MB per million
events; BENCHMARKS.md has the figures for a 10M-line trace.)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from replay.analysis.metrics import install_macros, metric_macros_sql
from replay.errors import (
    DatabaseBusyError,
    QueryError,
    TraceExistsError,
    TraceNotFoundError,
    UsageError,
)
from replay.spool import NewDatabase, remove_leftovers

if TYPE_CHECKING:  # pyarrow costs 0.2-0.5 s to import: the light commands never need it
    import pyarrow as pa

DEFAULT_DB = "replay.duckdb"
ENV_DB = "REPLAY_DB"

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS traces (
    trace_id INTEGER NOT NULL,
    name VARCHAR NOT NULL,
    source VARCHAR,
    kind VARCHAR,            -- ftrace | capture | canonical | synthetic
    format VARCHAR,          -- format variants detected in the data
    kernel VARCHAR,
    command VARCHAR,
    created TIMESTAMP,
    lines BIGINT,
    events BIGINT,
    aux_events BIGINT,
    allocs BIGINT,
    frees BIGINT,
    partial_frees BIGINT,
    preexisting BIGINT,      -- objects freed without an allocation in the trace
    live_at_end BIGINT,      -- objects still holding pages at the end
    failed_allocs BIGINT,
    batched BIGINT,          -- frees also reported by a batched/pagevec tracepoint
    lost_events BIGINT,
    lost_markers BIGINT,
    skipped_bad BIGINT,
    ts_first BIGINT,         -- ns
    ts_last BIGINT,          -- ns
    pfn_min BIGINT,
    pfn_max BIGINT,
    zone_start_pfn BIGINT,   -- the zone a replay uses by default (pfn)
    zone_pages BIGINT,       -- its size (pages)
    page_size INTEGER,
    meta JSON
);
CREATE TABLE IF NOT EXISTS events (
    trace_id INTEGER NOT NULL,
    seq BIGINT NOT NULL,
    ts_ns BIGINT NOT NULL,
    op VARCHAR NOT NULL,
    obj BIGINT NOT NULL,
    "offset" INTEGER NOT NULL,
    "order" TINYINT NOT NULL,
    migratetype TINYINT NOT NULL,
    gfp VARCHAR,
    pfn BIGINT,
    cpu SMALLINT,
    pid INTEGER,
    comm VARCHAR,
    region BIGINT,
    vpn BIGINT,
    movable BOOLEAN,
    line BIGINT,
    batched BOOLEAN,
    failed BOOLEAN           -- an allocation the recorded kernel failed (pfn NULL)
);
CREATE TABLE IF NOT EXISTS aux_events (
    trace_id INTEGER NOT NULL,
    seq BIGINT NOT NULL,     -- canonical events before this one
    line BIGINT,
    ts_ns BIGINT,
    cpu SMALLINT,
    pid INTEGER,
    comm VARCHAR,
    event VARCHAR NOT NULL,
    pfn BIGINT,
    "order" TINYINT,
    migratetype TINYINT,
    args JSON,               -- the other key=value fields: {"key": "value", ...} (text values)
    text VARCHAR
);
CREATE TABLE IF NOT EXISTS callsites (  -- kernel stacks of events (replay.trace.callsites)
    trace_id INTEGER NOT NULL,
    seq BIGINT NOT NULL,     -- the events row the stack was recorded for
    callsite VARCHAR,        -- its first frame outside the page allocator (perf kmem's callsite)
    stack VARCHAR            -- every frame, innermost first, one per line
);
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER NOT NULL,
    trace_id INTEGER NOT NULL,
    model VARCHAR,
    config JSON,             -- the model configuration (replay.engine.whatif.RunConfig)
    started TIMESTAMP,
    wall_s DOUBLE,           -- whole run, s
    replay_s DOUBLE,         -- the model kernels alone, s
    events BIGINT,
    events_per_s DOUBLE,     -- events / replay_s
    allocs BIGINT,
    frees BIGINT,
    failures BIGINT,         -- failed allocations (pre-existing pages that did not fit included)
    ignored_frees BIGINT,    -- frees of objects whose allocation failed
    preexisting BIGINT,      -- objects allocated before the first event
    zone_start_pfn BIGINT,
    zone_pages BIGINT,
    every INTEGER,           -- counters kept every N steps
    free_pages BIGINT,       -- at the end (pages)
    nr_free BIGINT[],        -- at the end, per order
    pcp_pages BIGINT,        -- at the end, on per-CPU lists (pages)
    background BIGINT,       -- pages allocated by --fill-from-snapshot
    ncpus INTEGER,
    pcp_batch INTEGER,       -- pages (pcp layer)
    pcp_high INTEGER,        -- pages (pcp layer)
    wmark_min BIGINT, wmark_low BIGINT, wmark_high BIGINT,  -- pages
    below_low BIGINT,        -- allocations made below the low watermark (kswapd would wake)
    below_min BIGINT,        -- allocations made below the min watermark
    fallbacks BIGINT,        -- extfrag events (claims + steals)
    claims BIGINT,
    steals BIGINT,
    pcp_refills BIGINT,
    pcp_bulk_frees BIGINT,   -- free_pcppages_bulk calls at pcp high
    drain_retries BIGINT,    -- failed allocations retried after draining every pcp list
    pageblock_every BIGINT,  -- pageblocks snapshot every N steps
    start VARCHAR,           -- initial state: empty (booted zone) | observed (from the capture)
    migrated BIGINT,         -- pages moved by compaction
    scanned BIGINT,          -- pages stepped over by compaction's two scanners
    evicted BIGINT,          -- pages reclaimed by kswapd
    evicted_frees BIGINT,    -- frees of evicted objects (no-ops)
    degraded BIGINT,         -- allocations served as order-0 pages (virtual compound)
    compactions BIGINT,      -- compact_zone calls (model_events)
    model_events BIGINT,     -- rows in model_events
    exchanged BIGINT,        -- pages moved by exchange pages (both units of each exchange)
    contig_pages BIGINT,     -- pages handed out by contiguous range allocations
    pool_chunks BIGINT,      -- per-owner pool chunks held at the end
    pool_waste BIGINT,       -- pages reserved in pool chunks but not in use at the end
    pool_fallbacks BIGINT,   -- pooled requests served by the normal allocator
    served_kernel_failures BIGINT,  -- requests the recorded kernel failed that the model served
    start_seq BIGINT,        -- the first seq replayed (a fork's --at)
    end_seq BIGINT,          -- the last seq replayed
    zs_objects_moved BIGINT, -- zsmalloc: objects zs_compact moved (NULL: no zsmalloc)
    zs_bytes_copied BIGINT,  -- zsmalloc: bytes of zram data copied (objects, migrated pages)
    zs_pages_freed BIGINT,   -- zsmalloc: pages zs_compact freed to the buddy allocator
    zs_pages_migrated BIGINT, -- zsmalloc: zram pages page compaction migrated
    zs_pages BIGINT          -- zsmalloc: zram pages held at the end
);
CREATE TABLE IF NOT EXISTS zram_pool (
    run_id INTEGER NOT NULL,
    seq BIGINT NOT NULL,     -- a call of zsmalloc's shrinker, before this event
    compacted BOOLEAN,       -- zs_compact ran
    objects_moved BIGINT, bytes_copied BIGINT,  -- by this zs_compact
    pages_freed BIGINT,      -- by this zs_compact, to the buddy allocator
    pages BIGINT,            -- zram pages held after it (zspages' pages)
    objects BIGINT,          -- objects stored
    slots BIGINT             -- object slots of the zspages held
);
CREATE TABLE IF NOT EXISTS contiguity (
    run_id INTEGER NOT NULL,
    seq BIGINT NOT NULL,     -- state before this event (-1: after the last)
    phase VARCHAR,           -- before_exchange | after_exchange | end (of the run)
    region BIGINT NOT NULL,  -- the trace's region (VMA) id
    pages BIGINT,            -- the region's pages in memory
    runs BIGINT,             -- maximal runs of consecutive vpns with pfn - vpn constant
    largest_run BIGINT,      -- pages
    in_place BIGINT,         -- pages at their exchange anchor's target
    top1_pct DOUBLE,         -- share of the region's pages in its largest run, %
    top4_pct DOUBLE          -- share in its four largest runs, %
);
CREATE TABLE IF NOT EXISTS batches (
    batch_id INTEGER NOT NULL,
    name VARCHAR NOT NULL,   -- unique
    spec VARCHAR,            -- the batch's TOML text
    created TIMESTAMP
);
CREATE TABLE IF NOT EXISTS batch_runs (
    batch_id INTEGER NOT NULL,
    key VARCHAR NOT NULL,    -- trace x model key inside the batch (re-runs skip finished keys)
    trace VARCHAR,           -- stored trace name
    model VARCHAR,           -- preset name or TOML file
    run_id INTEGER,          -- NULL while pending or when the run failed
    status VARCHAR,          -- done | failed
    error VARCHAR,           -- the failure's message
    finished TIMESTAMP
);
CREATE TABLE IF NOT EXISTS model_events (
    run_id INTEGER NOT NULL,
    seq BIGINT NOT NULL,     -- before (proactive, one-shot) or at (direct, kswapd) this event
    kind VARCHAR NOT NULL,   -- compact_direct | compact_proactive | compact_oneshot | kswapd
                             -- | vcompound | pressure | defrag | exchange | contig
    "order" TINYINT,         -- the request's order (-1: whole zone)
    mode VARCHAR,            -- async | sync (compaction); lru | targeted (kswapd)
    start_pfn BIGINT, end_pfn BIGINT,      -- compaction: the scanners' start pfns;
                                           -- kswapd: the victims' pfn range;
                                           -- exchange: the region's target range;
                                           -- contig: the range allocated
    migrate_pfn BIGINT, free_pfn BIGINT,   -- compaction: the scanners' end pfns
    scanned_migrate BIGINT, scanned_free BIGINT,  -- pages
    moved BIGINT,            -- pages migrated (vcompound: order-0 pages handed out)
    failed BIGINT,           -- pages isolated but not migrated
    evicted BIGINT,          -- pages reclaimed
    result VARCHAR,          -- SUCCESS | COMPLETE | PARTIAL_SKIPPED | SKIPPED | DEFERRED |
                             -- BALANCED | UNBALANCED | DEGRADED | FAILED | normal | reclaim | oom
    free_pages BIGINT,       -- after the action
    exchanged BIGINT         -- exchange: pages moved by exchanges (both units of each)
);
-- A run's steps are stored in one of two tables and read through the steps view
-- (STEPS_VIEW_SQL): steps_narrow for runs whose model keeps no per-CPU lists and no
-- compaction/reclaim units (buddy, mobility: their pcp_pages and cost columns are 0 at
-- every step, and the view supplies them), steps_wide for the others.
-- nr_free_k and pcp_pages are stored as INTEGER (at most a zone's pages) and read as
-- BIGINT. DuckDB's INSERT costs by the values stored: a 3M-step buddy run's 23 columns
-- took 2.1 s of CPU, 18 of them with INTEGER counters 1.4 s (BENCHMARKS.md, seventeenth
-- session).
CREATE TABLE IF NOT EXISTS steps_wide (
    run_id INTEGER NOT NULL,
    seq BIGINT NOT NULL,
    pfn BIGINT,              -- the model's placement; -1 failed; NULL for frees
    outcome VARCHAR NOT NULL, -- ok | failed | ignored | inconsistent (observed runs)
    free_pages BIGINT,       -- NULL where counters were not kept (--every)
    nr_free_0 INTEGER, nr_free_1 INTEGER, nr_free_2 INTEGER, nr_free_3 INTEGER,
    nr_free_4 INTEGER, nr_free_5 INTEGER, nr_free_6 INTEGER, nr_free_7 INTEGER,
    nr_free_8 INTEGER, nr_free_9 INTEGER, nr_free_10 INTEGER,
    largest_free_order TINYINT,
    failures BIGINT,         -- cumulative failed allocations
    pcp_pages INTEGER,       -- pages on per-CPU lists
    fallbacks BIGINT,        -- cumulative extfrag events
    migrated BIGINT,         -- cumulative pages moved by compaction
    scanned BIGINT,          -- cumulative pages scanned by compaction
    evicted BIGINT,          -- cumulative pages reclaimed by kswapd
    degraded BIGINT,         -- cumulative virtual compound (degraded) successes
    exchanged BIGINT         -- cumulative pages swapped by exchange pages
);
CREATE TABLE IF NOT EXISTS steps_narrow (
    run_id INTEGER NOT NULL,
    seq BIGINT NOT NULL,
    pfn BIGINT,
    outcome VARCHAR NOT NULL,
    free_pages BIGINT,
    nr_free_0 INTEGER, nr_free_1 INTEGER, nr_free_2 INTEGER, nr_free_3 INTEGER,
    nr_free_4 INTEGER, nr_free_5 INTEGER, nr_free_6 INTEGER, nr_free_7 INTEGER,
    nr_free_8 INTEGER, nr_free_9 INTEGER, nr_free_10 INTEGER,
    largest_free_order TINYINT,
    failures BIGINT,
    fallbacks BIGINT
);
CREATE TABLE IF NOT EXISTS extfrag (
    run_id INTEGER NOT NULL,
    seq BIGINT NOT NULL,     -- the trace event whose allocation fell back
    pfn BIGINT,
    alloc_order TINYINT, fallback_order TINYINT,
    alloc_migratetype TINYINT, fallback_migratetype TINYINT,
    fragmenting BOOLEAN,     -- fallback_order < pageblock_order
    change_ownership BOOLEAN -- the pageblock now has the allocation's type
);
CREATE TABLE IF NOT EXISTS pageblocks (
    run_id INTEGER NOT NULL,
    seq BIGINT NOT NULL,     -- state after this step
    pageblock BIGINT NOT NULL, -- pfn >> 9
    migratetype TINYINT,
    free_pages INTEGER,      -- in free buddy blocks
    unmovable INTEGER, movable INTEGER, reclaimable INTEGER,  -- allocated pages by request type
    pcp_pages INTEGER
);
CREATE TABLE IF NOT EXISTS checkpoints (
    run_id INTEGER NOT NULL,
    seq BIGINT NOT NULL,     -- the model's whole state after this step (replay.engine.checkpoint)
    events BIGINT,           -- the run's events replayed up to it
    state BLOB,              -- its arrays, zstd-compressed: part `part` of the BLOB
    part INTEGER DEFAULT 0   -- 0, 1, ...: 64 KiB parts (replay.engine.checkpoint)
);
CREATE TABLE IF NOT EXISTS snap_buddyinfo (
    trace_id INTEGER, snapshot VARCHAR, node SMALLINT, zone VARCHAR,
    "order" TINYINT, nr_free BIGINT
);
CREATE TABLE IF NOT EXISTS snap_pagetypeinfo (
    trace_id INTEGER, snapshot VARCHAR, node SMALLINT, zone VARCHAR,
    migratetype VARCHAR, mt TINYINT, "order" TINYINT, nr_free BIGINT,
    capped BOOLEAN           -- printed as ">100000": nr_free is a lower bound
);
CREATE TABLE IF NOT EXISTS snap_pageblocks (
    trace_id INTEGER, snapshot VARCHAR, node SMALLINT, zone VARCHAR,
    migratetype VARCHAR, mt TINYINT, nr_pageblocks BIGINT
);
CREATE TABLE IF NOT EXISTS snap_zoneinfo (
    trace_id INTEGER, snapshot VARCHAR, node SMALLINT, zone VARCHAR,
    start_pfn BIGINT, spanned BIGINT, present BIGINT, managed BIGINT, cma BIGINT,
    boost BIGINT, "min" BIGINT, low BIGINT, high BIGINT, promo BIGINT,
    nr_free_pages BIGINT, protection VARCHAR, pcp_high BIGINT, pcp_batch BIGINT,
    pcp_high_min BIGINT, pcp_high_max BIGINT,  -- pages, the first cpu's (6.7+)
    pcp_count BIGINT,        -- pages on the pcp lists of every cpu
    pcp_cpus VARCHAR         -- JSON [[count, high], ...] per cpu, pages
);
CREATE TABLE IF NOT EXISTS snap_vmstat (
    trace_id INTEGER, snapshot VARCHAR, key VARCHAR, value BIGINT
);
CREATE TABLE IF NOT EXISTS snap_sysctl (
    trace_id INTEGER, snapshot VARCHAR, key VARCHAR, value VARCHAR
);
CREATE TABLE IF NOT EXISTS snap_meminfo (
    trace_id INTEGER, snapshot VARCHAR, key VARCHAR, value BIGINT, unit VARCHAR
);
CREATE TABLE IF NOT EXISTS snap_kpageflags (
    trace_id INTEGER, snapshot VARCHAR, pfn BIGINT, nr_pages BIGINT, flags UBIGINT
);
"""

_NR_FREE = ", ".join(f"CAST(nr_free_{k} AS BIGINT) AS nr_free_{k}" for k in range(11))
_UNIT_COLUMNS = ("migrated", "scanned", "evicted", "degraded", "exchanged")

# What users query: every run's steps with the columns and types one steps table had
# before the two (SCHEMA_SQL). A steps_narrow row's pcp_pages is 0 where its counters
# were kept, NULL where not, as steps_batch writes it; its costs are 0.
# (Written on every writable open: a file keeps the view of the version that opened it
# last, as it keeps that version's macros.)
STEPS_VIEW_SQL = (
    "CREATE OR REPLACE VIEW steps AS\n"
    f"SELECT run_id, seq, pfn, outcome, free_pages, {_NR_FREE}, largest_free_order, "
    "failures, CAST(pcp_pages AS BIGINT) AS pcp_pages, fallbacks, "
    + ", ".join(_UNIT_COLUMNS)
    + " FROM steps_wide\nUNION ALL\n"
    f"SELECT run_id, seq, pfn, outcome, free_pages, {_NR_FREE}, largest_free_order, "
    "failures, CASE WHEN free_pages IS NOT NULL THEN CAST(0 AS BIGINT) END AS pcp_pages, "
    "fallbacks, "
    + ", ".join(f"CAST(0 AS BIGINT) AS {c}" for c in _UNIT_COLUMNS)
    + " FROM steps_narrow;\n"
)

# The stored steps tables, and the columns a steps_narrow row leaves to the view.
STEPS_TABLES = ("steps_wide", "steps_narrow")
NARROW_DROPPED = ("pcp_pages", *_UNIT_COLUMNS)

# Tables keyed by run_id (rows of a run besides its ``runs`` row).
RUN_TABLES = (*STEPS_TABLES, "extfrag", "pageblocks", "model_events", "contiguity", "checkpoints",
              "zram_pool")  # fmt: skip

# Tables keyed by trace_id, in the order rows are deleted on --replace.
TRACE_TABLES = (
    "events",
    "aux_events",
    "callsites",
    "snap_buddyinfo",
    "snap_pagetypeinfo",
    "snap_pageblocks",
    "snap_zoneinfo",
    "snap_vmstat",
    "snap_meminfo",
    "snap_sysctl",
    "snap_kpageflags",
    "traces",
)

# Columns added after the first release, for database files created before them.
MIGRATIONS_SQL = """
ALTER TABLE events ADD COLUMN IF NOT EXISTS failed BOOLEAN;
ALTER TABLE snap_pagetypeinfo ADD COLUMN IF NOT EXISTS capped BOOLEAN;
ALTER TABLE snap_zoneinfo ADD COLUMN IF NOT EXISTS pcp_high_min BIGINT;
ALTER TABLE snap_zoneinfo ADD COLUMN IF NOT EXISTS pcp_high_max BIGINT;
ALTER TABLE snap_zoneinfo ADD COLUMN IF NOT EXISTS pcp_count BIGINT;
ALTER TABLE snap_zoneinfo ADD COLUMN IF NOT EXISTS pcp_cpus VARCHAR;
ALTER TABLE steps_wide ADD COLUMN IF NOT EXISTS pcp_pages BIGINT;
ALTER TABLE steps_wide ADD COLUMN IF NOT EXISTS fallbacks BIGINT;
ALTER TABLE model_events ADD COLUMN IF NOT EXISTS exchanged BIGINT;
ALTER TABLE contiguity ADD COLUMN IF NOT EXISTS phase VARCHAR;
ALTER TABLE checkpoints ADD COLUMN IF NOT EXISTS part INTEGER DEFAULT 0;
""" + "".join(
    f"ALTER TABLE steps_wide ADD COLUMN IF NOT EXISTS {c} BIGINT;\n"
    for c in ("migrated", "scanned", "evicted", "degraded", "exchanged")
) + "".join(
    f"ALTER TABLE runs ADD COLUMN IF NOT EXISTS {c} {t};\n"
    for c, t in [
        ("pcp_pages", "BIGINT"), ("background", "BIGINT"), ("ncpus", "INTEGER"),
        ("pcp_batch", "INTEGER"), ("pcp_high", "INTEGER"), ("wmark_min", "BIGINT"),
        ("wmark_low", "BIGINT"), ("wmark_high", "BIGINT"), ("below_low", "BIGINT"),
        ("below_min", "BIGINT"), ("fallbacks", "BIGINT"), ("claims", "BIGINT"),
        ("steals", "BIGINT"), ("pcp_refills", "BIGINT"), ("pcp_bulk_frees", "BIGINT"),
        ("drain_retries", "BIGINT"), ("pageblock_every", "BIGINT"), ("start", "VARCHAR"),
        ("migrated", "BIGINT"), ("scanned", "BIGINT"), ("evicted", "BIGINT"),
        ("evicted_frees", "BIGINT"), ("degraded", "BIGINT"), ("compactions", "BIGINT"),
        ("model_events", "BIGINT"), ("exchanged", "BIGINT"), ("contig_pages", "BIGINT"),
        ("pool_chunks", "BIGINT"), ("pool_waste", "BIGINT"), ("pool_fallbacks", "BIGINT"),
        ("served_kernel_failures", "BIGINT"), ("start_seq", "BIGINT"), ("end_seq", "BIGINT"),
        ("forked_from", "INTEGER"),  # the run whose model state a fork started from
        ("zs_objects_moved", "BIGINT"), ("zs_bytes_copied", "BIGINT"),
        ("zs_pages_freed", "BIGINT"), ("zs_pages_migrated", "BIGINT"), ("zs_pages", "BIGINT"),
    ]
)  # fmt: skip


def gfp_direct_reclaim_sql(g: str) -> str:
    """SQL: whether a request with the printed GFP flags ``g`` may enter direct reclaim
    (and so direct compaction and the pcp drain retry).

    show_gfp_flags prints composite names first, and every composite holding
    __GFP_DIRECT_RECLAIM is listed; a raw hex mask has it at bit 10 (0x400, since 4.4).
    Unknown (NULL or empty): assumed true.
    """
    t = f"trim({g})"
    return (
        f"(CASE WHEN {g} IS NULL OR {t} = '' THEN true "
        f"WHEN regexp_full_match({t}, '(0x)?[0-9a-fA-F]+') THEN (coalesce(TRY_CAST("
        f"CASE WHEN starts_with({t}, '0x') THEN {t} ELSE '0x' || {t} END AS BIGINT), 0) "
        f"& 1024) != 0 "
        f"ELSE list_has_any(string_split(replace({g}, ' ', ''), '|'), ['GFP_KERNEL', "
        f"'GFP_KERNEL_ACCOUNT', 'GFP_NOFS', 'GFP_NOIO', 'GFP_USER', 'GFP_HIGHUSER', "
        f"'GFP_HIGHUSER_MOVABLE', 'GFP_TRANSHUGE', 'GFP_TEMPORARY', '__GFP_RECLAIM', "
        f"'__GFP_DIRECT_RECLAIM', '__GFP_WAIT']) END)"
    )


MACROS_SQL = (
    """
CREATE OR REPLACE TEMP MACRO hexint(s) AS TRY_CAST(s AS BIGINT);
CREATE OR REPLACE TEMP MACRO mt_name(m) AS CASE m
    WHEN 0 THEN 'Unmovable' WHEN 1 THEN 'Movable' WHEN 2 THEN 'Reclaimable'
    WHEN 3 THEN 'HighAtomic' WHEN 4 THEN 'CMA' WHEN 5 THEN 'Isolate'
    ELSE 'unknown' END;
"""
    + f"CREATE OR REPLACE TEMP MACRO gfp_direct_reclaim(g) AS {gfp_direct_reclaim_sql('g')};\n"
)

TRACE_COLUMNS = (
    "trace_id",
    "name",
    "source",
    "kind",
    "format",
    "kernel",
    "command",
    "created",
    "lines",
    "events",
    "aux_events",
    "allocs",
    "frees",
    "partial_frees",
    "preexisting",
    "live_at_end",
    "failed_allocs",
    "batched",
    "lost_events",
    "lost_markers",
    "skipped_bad",
    "ts_first",
    "ts_last",
    "pfn_min",
    "pfn_max",
    "zone_start_pfn",
    "zone_pages",
    "page_size",
    "meta",
)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


def default_db_path() -> Path:
    """``$REPLAY_DB`` if set, else ``replay.duckdb`` in the working directory."""
    return Path(os.environ.get(ENV_DB) or DEFAULT_DB)


def check_name(name: str) -> str:
    """A trace name: letters, digits and ``._+-``, at most 128 characters."""
    if not NAME_RE.match(name):
        raise UsageError(
            f"invalid trace name {name!r}: use letters, digits and '._+-' "
            "(starting with a letter or digit, at most 128 characters)"
        )
    return name


def busy_message(path: Path, error: str) -> str | None:
    """What to tell a user whose command cannot open ``path`` because another process
    holds it (DuckDB's lock ``error`` names its PID), or None for any other error."""
    m = re.search(r"Could not set lock.*?\(PID (\d+)\)", error)
    if m is None:
        return None
    pid = int(m.group(1))
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        argv = []
    words = [os.path.basename(a) for a in argv if a]
    if "serve" in words and any(w.startswith("replay") for w in words):
        return (
            f"{path} is held by replay serve (PID {pid}): while it runs, do the work "
            "through its API (POST /api/jobs/ingest, /api/jobs/run, /api/sql; "
            "docs/service.md), or stop it first"
        )
    what = " ".join(a for a in argv if a)[:120] or "another process"
    return (
        f"{path} is in use by another process (PID {pid}: {what}); "
        "wait for it to finish, or stop it"
    )


# DuckDB's buffer memory while a run's steps stream in (Store.bulk_write)
BULK_INSERT_MEMORY = "256MB"


class Store:
    """A replay database file. Use as a context manager, or call close().

    Opening it removes what killed replay processes left beside it
    (replay.spool.remove_leftovers). DatabaseBusyError when another process
    holds the file.
    """

    def __init__(self, path: Path | str | None = None, *, read_only: bool = False) -> None:
        self.path = Path(path) if path is not None else default_db_path()
        self.read_only = read_only
        self._new: NewDatabase | None = None
        self._restore: tuple[Any, ...] | None = None  # see unordered
        remove_leftovers(self.path)
        if read_only and not self.path.exists():
            raise UsageError(
                f"{self.path}: no such database (ingest a trace first, or pass --db FILE)"
            )
        self._created = not self.path.exists()
        if self._created:
            # Held until the first commit: a kill before it leaves a file the next
            # Store removes (replay.spool).
            self._new = NewDatabase(self.path)
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.Error as exc:
            self._release_new()
            busy = busy_message(self.path, str(exc))
            if busy is not None:
                raise DatabaseBusyError(busy) from exc
            raise UsageError(f"{self.path}: cannot open as a DuckDB database ({exc})") from exc
        # DuckDB prints its own progress bar on stdout for long statements: data goes there
        self.run("SET enable_progress_bar = false")
        if not read_only:
            self._migrate_steps_table()
            self.run(SCHEMA_SQL)
            self.run(MIGRATIONS_SQL)
            self.run(STEPS_VIEW_SQL)
            self._migrate_args_to_json()
            self._store_macros()
        self.run(MACROS_SQL)
        install_macros(self.con)

    def _store_macros(self) -> None:
        """Keep this version's macros in the file (mt_name, unusable_index, ...), so a
        plain DuckDB client (the duckdb CLI, a notebook) can call them.

        The connection's temporary macros shadow the stored ones, so a read-only
        open of a file an older version wrote still computes with this version's.
        A stored ``replay_macros_sha()`` names the definitions: they are rewritten
        only when it differs (rewriting all of them takes about 50 ms).
        """
        sql = MACROS_SQL.replace(" TEMP MACRO ", " MACRO ") + metric_macros_sql(temporary=False)
        sha = hashlib.sha256(sql.encode()).hexdigest()[:16]
        try:
            stored = self.one("SELECT main.replay_macros_sha()")
        except duckdb.CatalogException:
            stored = None
        if stored is None or stored[0] != sha:
            self.run(sql + f"\nCREATE OR REPLACE MACRO replay_macros_sha() AS '{sha}';")

    def _migrate_steps_table(self) -> None:
        """Database files before 2026-12-07 kept every run's steps in one steps table:
        it becomes steps_wide (its BIGINT counters stay; the view reads them as they are),
        and steps the view over it and steps_narrow."""
        row = self.one(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = 'main' AND table_name = 'steps'"
        )
        if row is not None and row[0]:
            self.run("ALTER TABLE steps RENAME TO steps_wide")

    def _migrate_args_to_json(self) -> None:
        """Database files before 2026-11-22 kept aux_events.args as MAP(VARCHAR, VARCHAR)."""
        row = self.one(
            """SELECT data_type FROM information_schema.columns
               WHERE table_name = 'aux_events' AND column_name = 'args'"""
        )
        if row is not None and str(row[0]).upper().startswith("MAP"):
            self.run("ALTER TABLE aux_events ALTER COLUMN args TYPE JSON USING to_json(args)")

    def cursor(self) -> Store:
        """The same database on a connection of its own (DuckDB's ``cursor``), for a
        thread of its own: a connection is not to be shared across threads. Its temporary
        macros are this one's; it reads what this one has committed. Close it (or use it
        as a context manager) before this one."""
        other = Store.__new__(Store)
        other.path, other.read_only = self.path, self.read_only
        other._new, other._restore, other._created = None, None, False
        other.con = self.con.cursor()
        other.run(MACROS_SQL)
        install_macros(other.con)
        return other

    def one(self, sql: str, params: Mapping[str, Any] | None = None) -> tuple[Any, ...] | None:
        """The first row of a query (the result is drained, as DuckDB requires)."""
        rows = self.con.execute(sql, dict(params) if params else None).fetchall()
        return rows[0] if rows else None

    def run(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        """Execute a statement whose result is not wanted (and complete it)."""
        self.con.execute(sql, dict(params) if params else None).fetchall()

    def close(self) -> None:
        self.con.close()
        self._release_new()  # closed on purpose: whatever the file holds stays

    def _release_new(self) -> None:
        if self._new is not None:
            self._new.release()
            self._new = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions ---------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One transaction: committed on success, rolled back on any exception."""
        self.run("BEGIN TRANSACTION")
        try:
            yield self.con
        except BaseException:
            self.run("ROLLBACK")
            if (
                self._restore is not None
            ):  # settings a failed INSERT kept unordered() from restoring
                self._set(self._restore)
                self._restore = None
            raise
        self.run("COMMIT")
        self._created = False  # it holds committed data now: never discard it
        self._release_new()

    def _settings(self) -> tuple[Any, ...] | None:
        """memory_limit and preserve_insertion_order as they are; None when the
        configuration is locked (``replay serve``'s connection: a SET would fail, and a
        failed statement aborts the transaction it is in)."""
        row = self.one(
            "SELECT current_setting('memory_limit'), current_setting('preserve_insertion_order'),"
            " current_setting('lock_configuration')"
        )
        return None if row is None or row[2] else row[:2]

    @contextlib.contextmanager
    def bulk_write(self, memory_limit: str = BULK_INSERT_MEMORY) -> Iterator[None]:
        """Around a transaction that streams a run's steps in (:meth:`unordered` around
        the INSERT itself): DuckDB holds at most ``memory_limit`` of buffers until the
        commit and the checkpoint after it, which write the rows into the file now rather
        than at the close. A 100M-step run peaked at 4.4 GB with the defaults (80% of
        the machine's memory), 2.5 GB with these (BENCHMARKS.md); a 10M-step run's
        checkpoint at the close peaked at 2.9 GB once. The connection's own limit comes
        back afterwards. Best effort: nothing changes on a locked configuration, and a
        checkpoint DuckDB refuses (another cursor's open transaction) is left to the
        close."""
        old = self._settings()
        if old is not None:
            self.run(f"SET memory_limit = '{memory_limit}'")
        try:
            yield
        finally:
            if old is not None:
                with contextlib.suppress(duckdb.Error):
                    self.run("CHECKPOINT")
                self.run(f"SET memory_limit = '{old[0]}'")

    @contextlib.contextmanager
    def unordered(self) -> Iterator[None]:
        """Around one long streaming INSERT: DuckDB may keep the rows' order where it
        likes (``preserve_insertion_order``; every query of steps orders by seq, and the
        storage order differs little: in a 10M-step run the first chunk of rows stood
        after the others). With it a bounded :meth:`bulk_write` needs no more time (88 s
        for 100M steps against 137 s keeping the order). The setting comes back after;
        after a failed INSERT, whose transaction refuses even SET, once the transaction
        has rolled back (:meth:`transaction`)."""
        old = self._settings()
        if old is not None:
            self.run("SET preserve_insertion_order = false")
        try:
            yield
        finally:
            if old is not None:
                try:
                    self._set(old)
                except duckdb.Error:
                    self._restore = old  # the transaction is aborted: after its ROLLBACK

    def _set(self, settings: tuple[Any, ...]) -> None:
        self.run(f"SET memory_limit = '{settings[0]}'")
        self.run(f"SET preserve_insertion_order = {'true' if settings[1] else 'false'}")

    def discard_if_new(self) -> None:
        """Remove the database file if this Store created it (after a failed first write)."""
        if not self._created:
            return
        self.con.close()
        for suffix in ("", ".wal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(str(self.path) + suffix)
        self._release_new()

    def _insert(
        self,
        table: str,
        columns: list[str],
        source: str,
        const: Mapping[str, Any],
        params: Mapping[str, Any] | None = None,
    ) -> None:
        """INSERT the ``columns`` of ``source`` into ``table`` with constant columns added."""
        cols = ", ".join(f'"{c}"' for c in columns)
        names = "".join(f'"{k}", ' for k in const)
        values = "".join(f"${k}, " for k in const)
        self.run(
            f"INSERT INTO {table} ({names}{cols}) SELECT {values}{cols} FROM {source}",
            {**const, **(params or {})},
        )

    def _insert_arrow(
        self, table: str, data: pa.RecordBatch | pa.Table | pa.RecordBatchReader,
        const: Mapping[str, Any],
    ) -> None:  # fmt: skip
        view = "_replay_append"
        self.con.register(view, data)
        try:
            self._insert(table, list(data.schema.names), view, const)
        finally:
            # After a failed INSERT the transaction is aborted; unregistering
            # must not replace the real error with a transaction error.
            with contextlib.suppress(duckdb.Error):
                self.con.unregister(view)

    def append(
        self, table: str, data: pa.RecordBatch | pa.Table, trace_id: int, **const: Any
    ) -> None:
        """Append an Arrow batch to ``table`` with trace_id (and constant columns) added."""
        if data.num_rows:
            self._insert_arrow(table, data, {"trace_id": trace_id, **const})

    def append_stream(
        self, table: str, reader: pa.RecordBatchReader, key_value: int, key: str = "trace_id"
    ) -> None:
        """Append every batch of ``reader`` to ``table`` in ONE statement.

        One streaming INSERT lets DuckDB write full row groups to the file
        before the transaction commits (many small INSERTs keep them all in
        memory).
        """
        self._insert_arrow(table, reader, {key: key_value})

    def append_parquet(self, table: str, path: Path, key_value: int, key: str = "trace_id") -> None:
        """Append a Parquet file's rows to ``table`` (one streaming INSERT).

        DuckDB's own parallel ``read_parquet`` when the instance may read files
        (the path ingest's BENCHMARKS.md figures were measured with); on an instance whose
        external access is disabled, as ``replay serve`` runs it, pyarrow reads
        the file row group by row group and streams it as an Arrow reader
        (bounded memory).
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        row = self.one("SELECT current_setting('enable_external_access')")
        if row is not None and row[0] in (True, "true", "True", 1):
            names = list(pq.read_schema(path).names)
            self._insert(table, names, "read_parquet($path)", {key: key_value},
                         {"path": str(path)})  # fmt: skip
            return
        with pq.ParquetFile(path) as f:
            reader = pa.RecordBatchReader.from_batches(f.schema_arrow, f.iter_batches())
            self._insert_arrow(table, reader, {key: key_value})

    # -- traces -----------------------------------------------------------------
    def trace_id(self, name_or_id: str | int) -> int:
        """The id of a trace given by name (or by numeric id)."""
        row = self.one(
            "SELECT trace_id FROM traces WHERE name = $n OR CAST(trace_id AS VARCHAR) = $n",
            {"n": str(name_or_id)},
        )
        if row is None:
            names = [
                r[0]
                for r in self.con.execute("SELECT name FROM traces ORDER BY trace_id").fetchall()
            ]
            hint = (
                f" (stored: {', '.join(names[:10])})" if names else " (the store has no traces yet)"
            )
            raise TraceNotFoundError(f"no trace named {name_or_id!r} in {self.path}{hint}")
        return int(row[0])

    def exists(self, name: str) -> bool:
        row = self.one("SELECT count(*) FROM traces WHERE name = $n", {"n": name})
        return bool(row and row[0] > 0)

    def begin_trace(self, name: str, *, replace: bool) -> int:
        """Inside the ingest transaction: check ``name``, drop the trace it replaces.

        Returns the new trace id.
        """
        check_name(name)
        if self.exists(name):
            if not replace:
                raise TraceExistsError(
                    f"a trace named {name!r} exists in {self.path}; use --replace to overwrite it"
                )
            self.delete_trace_rows(self.trace_id(name))
        row = self.one("SELECT coalesce(max(trace_id), 0) + 1 FROM traces")
        return int(row[0]) if row else 1

    def delete_trace_rows(self, trace_id: int) -> None:
        """Delete every row of ``trace_id``, its runs included (inside the caller's transaction)."""
        for t in RUN_TABLES:
            self.run(
                f"DELETE FROM {t} WHERE run_id IN (SELECT run_id FROM runs WHERE trace_id = $id)",
                {"id": trace_id},
            )
        self.run("DELETE FROM runs WHERE trace_id = $id", {"id": trace_id})
        for t in TRACE_TABLES:
            self.run(f"DELETE FROM {t} WHERE trace_id = $id", {"id": trace_id})

    def insert_trace_row(self, trace_id: int, row: Mapping[str, Any]) -> None:
        values = {c: row.get(c) for c in TRACE_COLUMNS}
        values["trace_id"] = trace_id
        values["created"] = values.get("created") or datetime.now(UTC).replace(tzinfo=None)
        meta = values.get("meta")
        values["meta"] = json.dumps(meta if meta is not None else {}, default=str)
        cols = ", ".join(TRACE_COLUMNS)
        params = ", ".join(f"${c}" for c in TRACE_COLUMNS)
        self.run(f"INSERT INTO traces ({cols}) VALUES ({params})", values)

    def trace_row(self, name_or_id: str | int) -> dict[str, Any]:
        tid = self.trace_id(name_or_id)
        cur = self.con.execute("SELECT * FROM traces WHERE trace_id = $id", {"id": tid})
        names = [d[0] for d in cur.description]
        rows = cur.fetchall()
        row = rows[0] if rows else None
        assert row is not None
        out = dict(zip(names, row, strict=True))
        out["meta"] = json.loads(out["meta"]) if out.get("meta") else {}
        return out

    # -- queries ----------------------------------------------------------------
    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        """Run SQL and return the result as an Arrow table (QueryError on failure)."""
        import pyarrow as pa

        try:
            rel = self.con.sql(sql, params=dict(params) if params else None)
            if rel is None:  # a statement without a result
                return pa.table({})
            return rel.to_arrow_table()
        except duckdb.Error as exc:
            raise QueryError(str(exc).strip()) from exc

    def query_rows(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run SQL; its column names and rows as Python values (QueryError on failure).

        For the light commands (``replay sql``, ``traces``, ``runs``): no pyarrow import.
        """
        try:
            rel = self.con.sql(sql, params=dict(params) if params else None)
            if rel is None:  # a statement without a result
                return [], []
            return list(rel.columns), rel.fetchall()
        except duckdb.Error as exc:
            raise QueryError(str(exc).strip()) from exc
