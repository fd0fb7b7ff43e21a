"""The what-if replay engine: a trace's events through a model, steps into DuckDB.

The engine owns chunking, timing and writing results; a model only transforms
its state arrays and fills result arrays (replay.models.*). Events are read
from the store in ``seq`` order in chunks and the ``steps`` rows stream back
in one INSERT, so memory does not grow with the trace length beyond the
per-object placement array. A run is one transaction: a failure leaves no
``runs`` or ``steps`` row behind.

Objects: every allocation is placed by the model (its pfn remembered per
object); a free frees ``placed[obj] + offset`` at its order. A failed
allocation's later frees are ignored (outcome ``ignored``). Objects whose
first event is a free (pages allocated before the trace began) are allocated
first, in order of first appearance, before the trace's first event.
"""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numba as nb
import numpy as np
import pyarrow as pa

from replay.errors import BadInputError, UsageError
from replay.ingest import Progress
from replay.models import buddy as B
from replay.store import Store

OUT_OK = 0
OUT_FAILED = 1
OUT_IGNORED = 2
OUTCOMES = pa.array(["ok", "failed", "ignored"], type=pa.string())
CHUNK_EVENTS = 1 << 20
NF = B.NR_PAGE_ORDERS

STEPS_SCHEMA = pa.schema(
    [pa.field("seq", pa.int64(), nullable=False), pa.field("pfn", pa.int64()),
     pa.field("outcome", pa.dictionary(pa.int8(), pa.string()), nullable=False),
     pa.field("free_pages", pa.int64())]
    + [pa.field(f"nr_free_{k}", pa.int64()) for k in range(NF)]
    + [pa.field("largest_free_order", pa.int8()), pa.field("failures", pa.int64())]
)  # fmt: skip

PRESETS: dict[str, dict[str, Any]] = {
    "buddy": {"model": "buddy"},
}


@dataclass(frozen=True)
class RunConfig:
    """A run's model configuration, stored as JSON in ``runs.config``."""

    model: str = "buddy"
    preset: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def load_model(spec: str) -> RunConfig:
    """A preset name or a TOML file (``model = "buddy"`` plus the model's parameters)."""
    if spec in PRESETS:
        return RunConfig(model=PRESETS[spec]["model"], preset=spec)
    path = Path(spec)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise UsageError(f"{spec}: no such model file")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise BadInputError(f"not valid TOML: {exc}", file=str(path)) from exc
        model = data.pop("model", None)
        if model not in PRESETS:
            raise BadInputError(
                f"model {model!r} is not one of: {', '.join(PRESETS)}",
                file=str(path),
                field="model",
            )
        if data:
            raise BadInputError(
                f"model {model!r} has no parameter(s) {', '.join(sorted(data))}",
                file=str(path),
                field=sorted(data)[0],
            )
        return RunConfig(model=model, preset=None, params={})
    raise UsageError(f"unknown model {spec!r}: use one of {', '.join(PRESETS)} or a .toml file")


@nb.njit(cache=True, nogil=True)
def replay_buddy(  # type: ignore[no-untyped-def]
    is_alloc,
    obj,
    offset,
    order,
    keep_row,
    keep_counters,
    placed,
    start_pfn,
    pages,
    blk_order,
    nxt,
    prv,
    head,
    tail,
    nr_free,
    counters,
    out_pfn,
    out_outcome,
    out_nr_free,
    out_has_counters,
    out_failures,
):
    """Apply one chunk of events to a buddy zone.

    Per event: alloc -> rmqueue_smallest (placed[obj] = pfn, or -1 when it
    fails); free -> free_one_page(placed[obj] + offset, order), ignored when
    the object's allocation failed. Rows with keep_row set are written to the
    out_* arrays in order (nr_free only where keep_counters). counters:
    [allocs, frees, failures, ignored]. Returns the number of rows written.
    """
    r = 0
    for i in range(is_alloc.shape[0]):
        x = obj[i]
        k = order[i]
        pfn = np.int64(-1)
        outcome = OUT_OK
        if is_alloc[i]:
            pfn = B.rmqueue_smallest(k, start_pfn, blk_order, nxt, prv, head, tail, nr_free)
            placed[x] = pfn
            counters[0] += 1
            if pfn < 0:
                outcome = OUT_FAILED
                counters[2] += 1
        else:
            counters[1] += 1
            base = placed[x]
            if base < 0:
                outcome = OUT_IGNORED
                counters[3] += 1
            else:
                B.free_one_page(base + offset[i], k, start_pfn, pages, blk_order, nxt, prv,
                                head, tail, nr_free)  # fmt: skip
        if keep_row[i]:
            out_pfn[r] = pfn
            out_outcome[r] = outcome
            out_failures[r] = counters[2]
            out_has_counters[r] = keep_counters[i]
            if keep_counters[i]:
                for j in range(NF):
                    out_nr_free[r, j] = nr_free[j]
            r += 1
    return r


def warm_up() -> None:
    """Compile (or load from the cache) the kernels, so no timing includes a JIT."""
    z = B.BuddyZone(0, 2)
    one = np.ones(1, np.bool_)
    i64 = np.zeros(1, np.int64)
    replay_buddy(one, i64, i64.copy(), i64.copy(), one, one, np.full(1, -1, np.int64),
                 z.start_pfn, z.pages, z.blk_order, z.nxt, z.prv, z.head, z.tail, z.nr_free,
                 np.zeros(4, np.int64), i64.copy(), np.zeros(1, np.int8),
                 np.zeros((1, NF), np.int64), one.copy(), i64.copy())  # fmt: skip


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
    zone_start_pfn: int
    zone_pages: int
    free_pages: int
    nr_free: list[int]

    def summary(self) -> dict[str, Any]:
        return asdict(self)


RUNS_COLUMNS = (
    "run_id", "trace_id", "model", "config", "started", "wall_s", "replay_s", "events",
    "events_per_s", "allocs", "frees", "failures", "ignored_frees", "preexisting",
    "zone_start_pfn", "zone_pages", "every", "free_pages", "nr_free",
)  # fmt: skip


def _zone(store: Store, trace_id: int, zone_pages: int | None) -> tuple[int, int]:
    if zone_pages is not None:
        if zone_pages <= 0:
            raise UsageError("--zone-pages must be positive")
        return 0, int(zone_pages)
    row = store.one(
        "SELECT zone_start_pfn, zone_pages FROM traces WHERE trace_id = $t", {"t": trace_id}
    )
    if row is None or row[1] is None:
        raise UsageError(
            "the trace has no zone (no zoneinfo snapshot and no pfns): pass --zone-pages N"
        )
    return int(row[0] or 0), int(row[1])


def _object_index(store: Store, trace_id: int) -> tuple[np.ndarray | None, int]:
    """Dense object numbering: None when obj ids are already 0..n-1-ish."""
    row = store.one(
        "SELECT min(obj), max(obj), count(DISTINCT obj) FROM events WHERE trace_id = $t",
        {"t": trace_id},
    )
    assert row is not None
    lo, hi, n = row
    if lo is None:
        raise UsageError("the trace has no events")
    if lo >= 0 and hi < 2 * n + (1 << 20):
        return None, int(hi) + 1
    ids = (
        store.query(
            "SELECT DISTINCT obj FROM events WHERE trace_id = $t ORDER BY obj", {"t": trace_id}
        )
        .column("obj")
        .to_numpy()
    )
    return ids, int(ids.shape[0])


def run(
    store: Store,
    trace: str,
    config: RunConfig,
    *,
    zone_pages: int | None = None,
    every: int = 1,
    progress: Progress | None = None,
) -> RunResult:
    """Replay ``trace`` through the configured model; returns what the run measured."""
    if every < 1:
        raise UsageError("--every must be at least 1")
    trace_id = store.trace_id(trace)
    start_pfn, pages = _zone(store, trace_id, zone_pages)
    warm_up()
    ids, n_obj = _object_index(store, trace_id)
    zone = B.BuddyZone(start_pfn, pages)
    placed = np.full(n_obj, -1, dtype=np.int64)
    counters = np.zeros(4, dtype=np.int64)
    n_events = int(store.one("SELECT events FROM traces WHERE trace_id = $t", {"t": trace_id})[0])
    last_seq = n_events - 1
    timing = {"replay": 0.0}
    progress = progress or Progress()
    progress.start(f"replay {trace} ({config.preset or config.model})", n_events)
    t_start = time.perf_counter()
    started = datetime.now(UTC).replace(tzinfo=None)

    def dense(objs: np.ndarray) -> np.ndarray:
        return objs if ids is None else np.searchsorted(ids, objs)

    # Objects freed before any allocation: allocated first, by first appearance.
    pre = store.query(
        """SELECT obj, max("offset" + (1::BIGINT << "order")) AS pages, min(seq) AS first
           FROM events WHERE trace_id = $t AND op = 'free'
             AND obj NOT IN (SELECT obj FROM events WHERE trace_id = $t AND op = 'alloc')
           GROUP BY obj ORDER BY first""",
        {"t": trace_id},
    )
    n_pre = pre.num_rows
    if n_pre:
        pre_pages = pre.column("pages").to_numpy()
        pre_order = np.ceil(np.log2(pre_pages.astype(np.float64))).astype(np.int64)
        pre_obj = dense(pre.column("obj").to_numpy()).astype(np.int64, copy=True)
        keep = np.zeros(n_pre, np.bool_)
        dummy = np.zeros(1, np.int64)
        t0 = time.perf_counter()
        replay_buddy(np.ones(n_pre, np.bool_), pre_obj, np.zeros(n_pre, np.int64), pre_order,
                     keep, keep, placed, zone.start_pfn, zone.pages, zone.blk_order, zone.nxt,
                     zone.prv, zone.head, zone.tail, zone.nr_free, counters, dummy,
                     dummy.astype(np.int8), np.zeros((1, NF), np.int64), keep, dummy)  # fmt: skip
        timing["replay"] += time.perf_counter() - t0
        pre_failed = int(counters[2])
        counters[:] = 0
        counters[2] = pre_failed  # a pre-existing page that does not fit is a failure too

    failure: list[BaseException] = []

    def steps() -> Iterator[pa.RecordBatch]:
        try:
            yield from _steps()
        except BaseException as exc:  # DuckDB wraps it; the caller re-raises the original
            failure.append(exc)
            raise

    def _steps() -> Iterator[pa.RecordBatch]:
        # A cursor of its own: the main connection is busy with the INSERT. It
        # is closed in all cases, so a failed run never leaves a streaming
        # result open while the transaction rolls back.
        cur = store.con.cursor()
        reader = None
        try:
            reader = cur.sql(
                'SELECT seq, op = \'alloc\' AS is_alloc, obj, "offset", "order" FROM events '
                "WHERE trace_id = $t ORDER BY seq",
                params={"t": trace_id},
            ).to_arrow_reader(CHUNK_EVENTS)
            for batch in reader:
                seq = batch.column("seq").to_numpy()
                is_alloc = batch.column("is_alloc").to_numpy(zero_copy_only=False)
                # Writable copies: numba compiles read-only (zero-copy) arrays separately.
                objs = dense(batch.column("obj").to_numpy()).astype(np.int64, copy=True)
                off = batch.column("offset").to_numpy().astype(np.int64)
                order = batch.column("order").to_numpy().astype(np.int64)
                keep_counters = (seq % every == 0) | (seq == last_seq)
                keep_row = keep_counters | is_alloc
                m = int(np.count_nonzero(keep_row))
                out_pfn = np.empty(m, np.int64)
                out_outcome = np.empty(m, np.int8)
                out_nr = np.zeros((m, NF), np.int64)
                out_has = np.empty(m, np.bool_)
                out_fail = np.empty(m, np.int64)
                t0 = time.perf_counter()
                r = replay_buddy(is_alloc, objs, off, order, keep_row, keep_counters, placed,
                                 zone.start_pfn, zone.pages, zone.blk_order, zone.nxt, zone.prv,
                                 zone.head, zone.tail, zone.nr_free, counters, out_pfn,
                                 out_outcome, out_nr, out_has, out_fail)  # fmt: skip
                timing["replay"] += time.perf_counter() - t0
                assert r == m
                progress.advance_to(int(seq[-1]) + 1)
                yield _steps_batch(seq[keep_row], is_alloc[keep_row], out_pfn, out_outcome, out_nr,
                                   out_has, out_fail)  # fmt: skip
        finally:
            if reader is not None:
                reader.close()
            cur.close()

    with store.transaction():
        row = store.one("SELECT coalesce(max(run_id), 0) + 1 FROM runs")
        run_id = int(row[0]) if row else 1
        try:
            store.append_stream(
                "steps",
                pa.RecordBatchReader.from_batches(STEPS_SCHEMA, steps()),
                run_id,
                key="run_id",
            )
        except duckdb.Error:
            if failure:
                raise failure[0] from None
            raise
        wall = time.perf_counter() - t_start
        events = n_events
        eps = events / timing["replay"] if timing["replay"] > 0 else 0.0
        nr_free = [int(v) for v in zone.nr_free]
        result = RunResult(
            run_id=run_id, trace=store.trace_row(trace_id)["name"], model=config.model,
            events=events, events_per_s=eps, wall_s=wall, allocs=int(counters[0]),
            frees=int(counters[1]), failures=int(counters[2]), ignored_frees=int(counters[3]),
            preexisting=n_pre, zone_start_pfn=start_pfn, zone_pages=pages,
            free_pages=zone.free_pages(), nr_free=nr_free,
        )  # fmt: skip
        values = {
            "run_id": run_id, "trace_id": trace_id, "model": config.model,
            "config": config.to_json(), "started": started, "wall_s": wall,
            "replay_s": timing["replay"], "events": events, "events_per_s": eps,
            "allocs": result.allocs, "frees": result.frees, "failures": result.failures,
            "ignored_frees": result.ignored_frees, "preexisting": n_pre,
            "zone_start_pfn": start_pfn, "zone_pages": pages, "every": every,
            "free_pages": result.free_pages, "nr_free": nr_free,
        }  # fmt: skip
        cols = ", ".join(RUNS_COLUMNS)
        store.run(
            f"INSERT INTO runs ({cols}) VALUES ({', '.join('$' + c for c in RUNS_COLUMNS)})",
            values,
        )
    return result


def _steps_batch(
    seq: np.ndarray,
    is_alloc: np.ndarray,
    pfn: np.ndarray,
    outcome: np.ndarray,
    nr: np.ndarray,
    has: np.ndarray,
    failures: np.ndarray,
) -> pa.RecordBatch:
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
    ]
    return pa.RecordBatch.from_arrays(cols, schema=STEPS_SCHEMA)
