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

from replay.models.internal import EF_COLS, ME_COLS, NR_PAGE_ORDERS
from replay.store import Store

# "inconsistent": an observed run's event that the rebuilt state could not explain
# "evicted": a free of an object kswapd reclaimed; "degraded": a virtual compound success
OUTCOMES = pa.array(["ok", "failed", "ignored", "inconsistent", "evicted", "degraded"],
                    type=pa.string())  # fmt: skip


NF = NR_PAGE_ORDERS


STEPS_SCHEMA = pa.schema(
    [pa.field("seq", pa.int64(), nullable=False), pa.field("pfn", pa.int64()),
     pa.field("outcome", pa.dictionary(pa.int8(), pa.string()), nullable=False),
     pa.field("free_pages", pa.int64())]
    + [pa.field(f"nr_free_{k}", pa.int64()) for k in range(NF)]
    + [pa.field("largest_free_order", pa.int8()), pa.field("failures", pa.int64()),
       pa.field("pcp_pages", pa.int64()), pa.field("fallbacks", pa.int64())]
    + [pa.field(c, pa.int64())
       for c in ("migrated", "scanned", "evicted", "degraded", "exchanged")]
)  # fmt: skip


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
    "start_seq", "end_seq", "forked_from",
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


def steps_batch(
    seq: np.ndarray, is_alloc: np.ndarray, out: tuple[np.ndarray, ...]
) -> pa.RecordBatch:
    # Copies: the buffers are reused for the next chunk while DuckDB may still hold this one.
    pfn, outcome, nr, has, failures, pcp, fallbacks, *costs = (a.copy() for a in out)
    no_counters = ~has
    free_pages = (nr << np.arange(NF, dtype=np.int64)).sum(axis=1)
    nonzero = nr > 0
    largest = np.where(nonzero.any(axis=1), NF - 1 - np.argmax(nonzero[:, ::-1], axis=1), -1)
    cols: list[pa.Array] = [
        pa.array(seq, pa.int64()),
        pa.array(pfn, pa.int64(), mask=~is_alloc),
        pa.DictionaryArray.from_arrays(pa.array(outcome, pa.int8()), OUTCOMES),
        pa.array(free_pages, pa.int64(), mask=no_counters),
    ]
    cols += [pa.array(nr[:, k], pa.int64(), mask=no_counters) for k in range(NF)]
    cols += [
        pa.array(largest.astype(np.int8), pa.int8(), mask=no_counters),
        pa.array(failures, pa.int64()),
        pa.array(pcp, pa.int64(), mask=no_counters),
        pa.array(fallbacks, pa.int64()),
    ]
    cols += [pa.array(c, pa.int64()) for c in costs]
    return pa.RecordBatch.from_arrays(cols, schema=STEPS_SCHEMA)
