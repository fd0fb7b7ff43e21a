"""What runs write: the result tables' Arrow schemas, the per-step buffers a
kernel fills, the ``steps`` batches made from them, and the ``runs`` row.

Shared by the what-if driver (``replay.engine.whatif``) and observed replay
(``replay.engine.observed``). Pages are pages, pfns absolute.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from replay.errors import ReplayError
from replay.models.internal import EF_COLS, ME_COLS, NR_PAGE_ORDERS
from replay.store import NARROW_DROPPED, Store

# "inconsistent": an observed run's event that the rebuilt state could not explain
# "evicted": a free of an object kswapd reclaimed; "degraded": a virtual compound success
OUTCOMES = pa.array(["ok", "failed", "ignored", "inconsistent", "evicted", "degraded"],
                    type=pa.string())  # fmt: skip


NF = NR_PAGE_ORDERS


# nr_free_k (free blocks of order k) and pcp_pages (pages) are int32: at most a zone's
# pages, stored as INTEGER (replay.store's steps tables; steps_batch checks the bound)
STEPS_SCHEMA = pa.schema(
    [pa.field("seq", pa.int64(), nullable=False), pa.field("pfn", pa.int64()),
     pa.field("outcome", pa.dictionary(pa.int8(), pa.string()), nullable=False),
     pa.field("free_pages", pa.int64())]
    + [pa.field(f"nr_free_{k}", pa.int32()) for k in range(NF)]
    + [pa.field("largest_free_order", pa.int8()), pa.field("failures", pa.int64()),
       pa.field("pcp_pages", pa.int32()), pa.field("fallbacks", pa.int64())]
    + [pa.field(c, pa.int64())
       for c in ("migrated", "scanned", "evicted", "degraded", "exchanged")]
)  # fmt: skip

# The rows of steps_narrow (replay.store): a run whose model keeps no pcp lists and no
# units has 0 in the other columns at every step.
STEPS_NARROW_SCHEMA = pa.schema([f for f in STEPS_SCHEMA if f.name not in NARROW_DROPPED])

INT32_MAX = (1 << 31) - 1


MODEL_EVENTS_SCHEMA = pa.schema(
    [pa.field("seq", pa.int64()), pa.field("kind", pa.string()), pa.field("order", pa.int8()),
     pa.field("mode", pa.string())]
    + [pa.field(c, pa.int64()) for c in ME_COLS[4:13]]
    + [pa.field("result", pa.string()), pa.field("free_pages", pa.int64()),
       pa.field("exchanged", pa.int64())]
)  # fmt: skip


CONTIGUITY_SCHEMA = pa.schema(
    [pa.field("seq", pa.int64()), pa.field("phase", pa.string()), pa.field("region", pa.int64())]
    + [pa.field(c, pa.int64()) for c in ("pages", "runs", "largest_run", "in_place")]
    + [pa.field("top1_pct", pa.float64()), pa.field("top4_pct", pa.float64())]
)  # fmt: skip


EXTFRAG_SCHEMA = pa.schema(
    [pa.field("seq", pa.int64()), pa.field("pfn", pa.int64())]
    + [pa.field(c, pa.int8()) for c in EF_COLS[2:6]]
    + [pa.field("fragmenting", pa.bool_()), pa.field("change_ownership", pa.bool_())]
)


PAGEBLOCKS_SCHEMA = pa.schema(
    [pa.field("seq", pa.int64()), pa.field("pageblock", pa.int64()),
     pa.field("migratetype", pa.int8())]
    + [pa.field(c, pa.int32())
       for c in ("free_pages", "unmovable", "movable", "reclaimable", "pcp_pages")]
)  # fmt: skip


def outputs(m: int) -> tuple[np.ndarray, ...]:
    """Per-row result arrays: pfn, outcome, nr_free, has_counters, failures, pcp, fallbacks,
    migrated, scanned, evicted, degraded, exchanged. The last five start at 0: the kernel
    writes them only when a model keeps units (``P_UNITS``)."""
    return (np.empty(m, np.int64), np.empty(m, np.int8), np.zeros((m, NF), np.int64),
            np.empty(m, np.bool_), np.empty(m, np.int64), np.empty(m, np.int64),
            np.empty(m, np.int64), np.zeros(m, np.int64), np.zeros(m, np.int64),
            np.zeros(m, np.int64), np.zeros(m, np.int64), np.zeros(m, np.int64))  # fmt: skip


@dataclass
class RunResult:
    """What a run measured (the row of ``runs``)."""

    run_id: int
    trace: str
    model: str
    events: int
    events_per_s: float
    wall_s: float
    allocs: int
    frees: int
    failures: int
    ignored_frees: int
    preexisting: int
    background: int
    zone_start_pfn: int
    zone_pages: int
    free_pages: int
    pcp_pages: int
    nr_free: list[int]
    fallbacks: int
    claims: int
    steals: int
    below_low: int
    below_min: int
    wmark_min: int
    wmark_low: int
    wmark_high: int
    migrated: int = 0
    folios_split: int = 0  # large folios compaction split to migrate (try_split_folio)
    scanned: int = 0
    evicted: int = 0
    evicted_frees: int = 0
    degraded: int = 0
    compactions: int = 0
    model_events: int = 0
    exchanged: int = 0
    contig_pages: int = 0
    pool_chunks: int = 0
    pool_waste: int = 0
    pool_fallbacks: int = 0
    served_kernel_failures: int = 0  # requests the recorded kernel failed that the model served
    # zsmalloc (replay.engine.zram; None without it): objects zs_compact moved, bytes of
    # zram data copied (objects, and 4 KiB per zram page migrated), pages zs_compact freed
    # to the buddy allocator, zram pages page compaction migrated, zram pages at the end
    zs_objects_moved: int | None = None
    zs_bytes_copied: int | None = None
    zs_pages_freed: int | None = None
    zs_pages_migrated: int | None = None
    zs_pages: int | None = None
    start_seq: int = 0  # the first seq replayed (a fork's --at)
    end_seq: int = -1  # the last seq replayed
    preset: str | None = None  # the preset the configuration came from (runs.config)
    # what the model needed that the trace lacks (the run went on without it)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return asdict(self)


RUNS_COLUMNS = (
    "run_id", "trace_id", "model", "config", "started", "wall_s", "replay_s", "events",
    "events_per_s", "allocs", "frees", "failures", "ignored_frees", "preexisting",
    "zone_start_pfn", "zone_pages", "every", "free_pages", "nr_free", "pcp_pages", "background",
    "ncpus", "pcp_batch", "pcp_high", "wmark_min", "wmark_low", "wmark_high", "below_low",
    "below_min", "fallbacks", "claims", "steals", "pcp_refills", "pcp_bulk_frees",
    "drain_retries", "pageblock_every", "start", "migrated", "scanned", "evicted",
    "evicted_frees", "degraded", "compactions", "model_events", "exchanged", "contig_pages",
    "pool_chunks", "pool_waste", "pool_fallbacks", "served_kernel_failures",
    "start_seq", "end_seq", "forked_from", "zs_objects_moved", "zs_bytes_copied",
    "zs_pages_freed", "zs_pages_migrated", "zs_pages",
)  # fmt: skip


class Spool:
    """Rows of one result table written to a temporary Parquet file as they come."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = path
        self.schema = schema
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, self.schema, compression="snappy")
        self.writer.write_batch(batch)
        self.rows += batch.num_rows

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def insert_run(store: Store, values: dict[str, Any]) -> None:
    """One ``runs`` row: every column of RUNS_COLUMNS, NULL where ``values`` has none."""
    cols = ", ".join(RUNS_COLUMNS)
    store.run(
        f"INSERT INTO runs ({cols}) VALUES ({', '.join('$' + c for c in RUNS_COLUMNS)})",
        {c: values.get(c) for c in RUNS_COLUMNS},
    )


# Rows per block of the nr_free transpose: 2,048 rows x 11 orders, 176 KiB read (int64)
# and 88 KiB written (int32) per block, in L2. numpy's whole-buffer transpose of a
# 64K-row step (5.6 MB) into fresh memory cost 0.67 s per 3M steps (cProfile); by blocks,
# 0.25 s.
TRANSPOSE_ROWS = 2048


def _transpose_nr(nr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kernel's (rows, NF) nr_free buffer as NF contiguous int32 columns (free blocks
    per order), with each row's free pages (sum of nr_free_k << k, in pages, int64) and
    largest free order (-1: none free), block by block so each stays in cache."""
    m = nr.shape[0]
    nr_t = np.empty((NF, m), np.int32)
    free_pages = np.empty(m, np.int64)
    largest = np.empty(m, np.int8)
    for lo in range(0, m, TRANSPOSE_ROWS):
        hi = min(m, lo + TRANSPOSE_ROWS)
        blk = nr[lo:hi].T
        nr_t[:, lo:hi] = blk
        fp = free_pages[lo:hi]
        fp[:] = blk[0]
        lg = largest[lo:hi]
        lg[:] = -1
        lg[blk[0] > 0] = 0
        for k in range(1, NF):
            fp += blk[k] << k
            lg[blk[k] > 0] = k
    return nr_t, free_pages, largest


def _int(values: np.ndarray, valid: pa.Buffer | None, null_count: int) -> pa.Array:
    """An int64 or int32 Arrow array (as ``values``' dtype) over ``values`` (contiguous,
    owned by the array from now on) with a shared validity bitmap: no copy, no
    per-column mask."""
    typ = pa.int32() if values.dtype == np.int32 else pa.int64()
    return pa.Array.from_buffers(typ, values.shape[0], [valid, pa.py_buffer(values)],
                                 null_count=null_count)  # fmt: skip


def _validity(mask: np.ndarray) -> tuple[pa.Buffer | None, int]:
    """An Arrow validity bitmap of the True rows of ``mask`` (None when all are) and the
    number of nulls."""
    nulls = int(mask.shape[0] - np.count_nonzero(mask))
    if nulls == 0:
        return None, 0
    return pa.array(mask, pa.bool_()).buffers()[1], nulls


def steps_batch(
    seq: np.ndarray, is_alloc: np.ndarray, out: tuple[np.ndarray, ...], *, narrow: bool = False
) -> pa.RecordBatch:
    """The ``steps`` rows of a chunk from the kernel's buffers ``out`` (replay_chunk's
    order): the counters (nr_free_k in blocks, free_pages in pages, largest_free_order)
    are NULL on the rows without them, the pfn on frees. ``narrow``: the rows of
    steps_narrow (STEPS_NARROW_SCHEMA), for a run whose pcp_pages and costs are 0 at
    every step (ReplayError if a row's are not)."""
    pfn, outcome, nr, has, failures, pcp, fallbacks, *costs = out
    m = seq.shape[0]
    # Copies (one pass each): the buffers are reused for the next chunk while DuckDB may
    # still hold this one. nr_free transposed so each order is one contiguous column.
    nr_t, free_pages, largest = _transpose_nr(nr)
    if m and int(free_pages.max()) > INT32_MAX:  # free_pages >= every nr_free_k
        raise ReplayError(f"{int(free_pages.max()):,} free pages: more than the steps "
                          f"table's INTEGER nr_free columns hold")  # fmt: skip
    valid, nulls = _validity(has)
    alloc_valid, frees = _validity(is_alloc)
    cols: list[pa.Array] = [
        _int(np.array(seq, np.int64), None, 0),
        _int(np.array(pfn, np.int64), alloc_valid, frees),
        pa.DictionaryArray.from_arrays(
            pa.array(np.array(outcome, np.int8), pa.int8()), OUTCOMES, safe=False
        ),
        _int(free_pages, valid, nulls),
    ]
    cols += [_int(nr_t[k], valid, nulls) for k in range(NF)]
    cols += [
        pa.Array.from_buffers(pa.int8(), m, [valid, pa.py_buffer(largest)], null_count=nulls),
        _int(np.array(failures, np.int64), None, 0),
    ]
    fb = _int(np.array(fallbacks, np.int64), None, 0)
    if narrow:
        kept = pcp[has] if nulls else pcp
        if np.any(kept) or any(np.any(c) for c in costs):
            raise ReplayError("a steps_narrow run has pcp pages or costs at a step")
        return pa.RecordBatch.from_arrays([*cols, fb], schema=STEPS_NARROW_SCHEMA)
    if m and int(pcp.max()) > INT32_MAX:
        raise ReplayError(f"{int(pcp.max()):,} pcp pages: more than an INTEGER holds")
    cols += [_int(pcp.astype(np.int32), valid, nulls), fb]
    cols += [_int(np.array(c, np.int64), None, 0) for c in costs]
    return pa.RecordBatch.from_arrays(cols, schema=STEPS_SCHEMA)
