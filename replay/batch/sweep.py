"""Batch sweeps: traces x model configs, run in parallel, loaded into one store.

``replay batch SPEC.toml`` (and ``run_batch``) replays every trace of a spec
through every model of it. The spec (TOML, validated up front; errors name the
spec file and the field, exit 65)::

    name = "compare"                 # the batch's name (letters, digits, '._+-')
    [run]                            # engine.run options for every run (all optional)
    every = 100                      # keep the counters of every K-th step
    pageblock_every = 1000           # a pageblocks snapshot every K steps
    fill_from_snapshot = false       # start as full as the machine was (captures)
    start = "empty"                  # or "observed" (captures)
    zone_pages = 65536               # zone size (pages; default: each trace's zone)
    [[traces]]                       # a scenario, generated and stored once
    scenario = "stress-highalloc"
    seed = 1                         # or seeds = [1, 2, 3]: one trace per seed
    events = 100000                  # optional (default: the scenario's)
    zone_pages = 65536               # optional (pages; default: the scenario's)
    [[traces]]
    name = "compact-6.18"            # a trace already in the store
    [[traces]]
    file = "traces/compact-6.18"     # ingested once (relative to the spec file)
    [[models]]
    preset = "mobility"
    [[models]]
    file = "my-model.toml"           # relative to the spec file; label = "..." optional

Entries of ``[[traces]]`` and ``[[models]]`` are numbered from 1 in error
messages (``traces[2].seed``). A scenario trace is stored as
``<scenario>-s<seed>-e<events>-z<zone pages>`` unless it has a ``name``; a
file as its ``replay ingest`` default name unless it has one; a trace already
stored under that name is reused. A run's key is ``<trace name>|<model
label>`` (label: the preset, the file as written in the spec, or ``label``).

How it runs. The coordinator (this process) owns the only read-write DuckDB
connection. Trace by trace it generates/ingests the trace (one transaction; a
trace that fails to ingest fails its runs), exports its rows of every table in
``store.TRACE_TABLES`` to Parquet under the work directory (default
``<db file>.batch/<batch name>/``) and submits its runs, one task each, to a
local process pool (``spawn``; ``jobs`` processes) or to a Dask cluster; the
workers start on the first trace's runs while it prepares the next. A task
(``run_task``) opens a private temporary DuckDB file (``Store``: the schema
and macros) and puts the trace in it (each trace table a view over its
Parquet file, cast to the table's types: read as the engine scans it rather
than copied in first, a third of a 1M-event task's CPU), calls
``replay.engine.whatif.run`` exactly as ``replay run`` does, and exports the
``runs`` row and the run's rows of every table in ``store.RUN_TABLES`` to
``<workdir>/runs/<key hash>/`` (written to a temporary directory and renamed:
a partition is complete or absent). The coordinator loads each finished
partition in one transaction (a fresh run_id, the trace's id in the main
store, a ``batch_runs`` row with status done) and deletes it. A failed run
gets a ``batch_runs`` row with status failed and its error; the others go on.
Local workers use ``cpus // jobs`` DuckDB threads, Dask tasks one: processes
(or the cluster's threads) are the parallelism.

Re-running a batch (same name) skips keys whose status is done; a spec that
differs from the stored one (or a done run whose stored config differs from
the model's current one) is a usage error unless ``replace`` (which deletes
the batch's runs first). Partitions found complete on disk but not loaded
(the coordinator was killed) are loaded without running again.

With Dask on a remote cluster, the work directory must be a path every
worker and the coordinator see at the same place (a shared file system), and
the workers need this package (``fragreplay``) installed. Workers load the
compiled kernels from the on-disk JIT cache (``replay/__init__.py``), so
kernels compile once per machine. (This module must not name the JIT library:
the cache is keyed by a hash of the files that do.)
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import multiprocessing
import os
import resource
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import tomllib
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from dataclasses import replace as with_fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from replay.errors import BadInputError, ReplayError, UsageError
from replay.progress import Progress
from replay.store import NAME_RE, RUN_TABLES, TRACE_TABLES, Store, default_db_path

EXECUTORS = ("local", "dask")
RUN_OPTIONS: dict[str, type] = {
    "every": int,
    "pageblock_every": int,
    "fill_from_snapshot": bool,
    "start": str,
    "zone_pages": int,
}
TYPE_NAMES = {int: "an integer", bool: "a boolean", str: "a string", float: "a float",
              list: "an array", dict: "a table"}  # fmt: skip
TOP_KEYS = ("name", "description", "run", "traces", "models")
SCENARIO_KEYS = ("scenario", "seed", "seeds", "events", "zone_pages", "name")
FILE_KEYS = ("file", "name")
MODEL_KEYS = ("preset", "file", "label")
META_FILE = "meta.json"
DASK_TIMEOUT_S = 20.0  # to connect to the scheduler, s
LOADER_MEMORY_LIMIT = "512MB"  # DuckDB's buffer pool in the coordinator while it loads runs
SUMMARY_COLUMNS = (
    "key",
    "trace",
    "model",
    "run_id",
    "status",
    "events_per_s",
    "wall_s",
    "peak_rss_mib",
    "error",
)


# -- the spec -----------------------------------------------------------------------


@dataclass(frozen=True)
class TraceSpec:
    """One trace of a batch: where it comes from and the name it is stored under."""

    name: str
    kind: str  # scenario | stored | file
    field: str  # where in the spec, for messages: traces[i]
    scenario: str | None = None
    seed: int = 0
    events: int | None = None
    zone_pages: int | None = None
    path: Path | None = None


@dataclass(frozen=True)
class ModelSpec:
    """One model of a batch: its label (in keys) and its configuration (RunConfig JSON)."""

    label: str
    config: str  # RunConfig.to_json()
    field: str


@dataclass(frozen=True)
class BatchSpec:
    """A validated batch spec."""

    name: str
    path: Path
    text: str
    data: dict[str, Any]
    options: dict[str, Any]
    traces: tuple[TraceSpec, ...]
    models: tuple[ModelSpec, ...]

    def keys(self) -> Iterator[tuple[str, TraceSpec, ModelSpec]]:
        """Every run of the batch: (key, trace, model), traces outermost."""
        for t in self.traces:
            for m in self.models:
                yield run_key(t.name, m.label), t, m


def run_key(trace: str, model: str) -> str:
    """A run's key inside its batch: ``<trace name>|<model label>``."""
    return f"{trace}|{model}"


def _canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, default=str)


def load_spec(path: Path | str) -> BatchSpec:
    """Read and validate a batch spec (BadInputError naming the file and field)."""
    path = Path(path)
    file = str(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such batch spec file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BadInputError(
            f"not UTF-8 text (byte {exc.start}): a TOML file must be UTF-8", file=file
        ) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BadInputError(f"not valid TOML: {exc}", file=file) from exc

    def bad(field: str, message: str) -> BadInputError:
        return BadInputError(message, file=file, field=field)

    for k in data:
        if k not in TOP_KEYS:
            raise bad(k, f"unknown key (known: {', '.join(TOP_KEYS)})")
    name = data.get("name")
    if not isinstance(name, str):
        raise bad("name", "the batch needs a name (a string)")
    if not NAME_RE.match(name):
        raise bad(
            "name",
            f"invalid name {name!r}: use letters, digits and '._+-' "
            "(starting with a letter or digit, at most 128 characters)",
        )
    if not isinstance(data.get("description", ""), str):
        raise bad("description", "must be a string")
    options = _run_options(data.get("run", {}), bad)
    base = path.resolve().parent
    traces = _traces(data.get("traces"), base, bad)
    models = _models(data.get("models"), base, bad, file)
    return BatchSpec(name, path.resolve(), text, data, options, traces, models)


def _want(value: Any, typ: type, field: str, bad: Callable[[str, str], BadInputError]) -> Any:
    if type(value) is not typ:  # bool is an int subclass: compare exactly
        want, got = TYPE_NAMES.get(typ, typ.__name__), TYPE_NAMES.get(type(value))
        raise bad(field, f"must be {want}, not {got or type(value).__name__} ({value!r})")
    return value


def _run_options(run: Any, bad: Callable[[str, str], BadInputError]) -> dict[str, Any]:
    if not isinstance(run, dict):
        raise bad("run", "must be a table ([run])")
    out: dict[str, Any] = {}
    for k, v in run.items():
        f = f"run.{k}"
        if k not in RUN_OPTIONS:
            raise bad(f, f"unknown run option (known: {', '.join(RUN_OPTIONS)})")
        out[k] = _want(v, RUN_OPTIONS[k], f, bad)
    if out.get("every", 1) < 1:
        raise bad("run.every", f"must be at least 1, not {out['every']}")
    if out.get("pageblock_every", 0) < 0:
        raise bad("run.pageblock_every", f"must be 0 or more, not {out['pageblock_every']}")
    if out.get("zone_pages", 1) < 1:
        raise bad("run.zone_pages", f"must be at least 1 (pages), not {out['zone_pages']}")
    if out.get("start", "empty") not in ("empty", "observed"):
        raise bad("run.start", f"must be empty or observed, not {out['start']!r}")
    if out.get("start") == "observed" and (out.get("fill_from_snapshot") or "zone_pages" in out):
        raise bad(
            "run.start",
            "start = observed takes the zone and its contents from the "
            "capture: it cannot be combined with fill_from_snapshot or zone_pages",
        )
    return out


def _entries(value: Any, what: str, bad: Callable[[str, str], BadInputError]) -> list[dict]:
    if value is None:
        raise bad(what, f"the batch needs at least one [[{what}]] entry")
    if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
        raise bad(what, f"must be an array of tables ([[{what}]])")
    if not value:
        raise bad(what, f"the batch needs at least one [[{what}]] entry")
    return value


def _traces(
    value: Any, base: Path, bad: Callable[[str, str], BadInputError]
) -> tuple[TraceSpec, ...]:
    from replay.scenarios.workloads import (
        MAX_ZONE_PAGES,
        MIN_ZONE_PAGES,
        SCENARIOS,
        ZONE_ALIGN,
        check_args,
    )
    from replay.trace.ingest import default_name

    out: list[TraceSpec] = []
    seen: dict[str, str] = {}
    for i, e in enumerate(_entries(value, "traces", bad), start=1):
        at = f"traces[{i}]"
        sources = [k for k in ("scenario", "file") if k in e]
        if len(sources) > 1:
            raise bad(
                at,
                "give one of scenario, file or name (a stored trace), not both scenario and file",
            )
        if not sources and "name" not in e:
            raise bad(at, "give one of scenario (generate), file (ingest) or name (stored)")
        allowed = SCENARIO_KEYS if "scenario" in e else FILE_KEYS if "file" in e else ("name",)
        for k in e:
            if k not in allowed:
                raise bad(f"{at}.{k}", f"unknown key here (known: {', '.join(allowed)})")
        name = e.get("name")
        if name is not None:
            _want(name, str, f"{at}.name", bad)
            if not NAME_RE.match(name):
                raise bad(
                    f"{at}.name",
                    f"invalid trace name {name!r}: use letters, digits "
                    "and '._+-' (starting with a letter or digit, at most 128 "
                    "characters)",
                )
        items: list[TraceSpec] = []
        if "scenario" in e:
            sc = _want(e["scenario"], str, f"{at}.scenario", bad)
            if sc not in SCENARIOS:
                raise bad(
                    f"{at}.scenario", f"unknown scenario {sc!r} (known: {', '.join(SCENARIOS)})"
                )
            if "seed" in e and "seeds" in e:
                raise bad(f"{at}.seeds", "give seed or seeds, not both")
            if "seeds" in e:
                seeds = e["seeds"]
                if not isinstance(seeds, list) or not seeds:
                    raise bad(f"{at}.seeds", "must be a non-empty array of integers")
                if name is not None and len(seeds) > 1:
                    raise bad(
                        f"{at}.name",
                        "one name cannot hold several seeds: drop name "
                        "(the traces get generated names) or list one seed",
                    )
            else:
                seeds = [e.get("seed", 0)]
            for s in seeds:
                if type(s) is not int or s < 0:
                    f = f"{at}.seeds" if "seeds" in e else f"{at}.seed"
                    raise bad(f, f"a seed must be an integer of 0 or more, not {s!r}")
            events = e.get("events")
            if events is not None and (type(events) is not int or events < 1):
                raise bad(f"{at}.events", f"must be a positive integer, not {events!r}")
            zp = e.get("zone_pages")
            if zp is not None and (
                type(zp) is not int or zp % ZONE_ALIGN or not MIN_ZONE_PAGES <= zp <= MAX_ZONE_PAGES
            ):
                raise bad(
                    f"{at}.zone_pages",
                    f"must be a multiple of {ZONE_ALIGN} from "
                    f"{MIN_ZONE_PAGES} to {MAX_ZONE_PAGES} (pages), not {zp!r}",
                )
            for s in seeds:
                try:
                    _, n, pages = check_args(sc, s, events, zp)
                except UsageError as exc:
                    raise bad(f"{at}.events", str(exc)) from None
                tname = name or f"{sc}-s{s}-e{n}-z{pages}"
                items.append(TraceSpec(tname, "scenario", at, sc, s, n, pages))
        elif "file" in e:
            rel = _want(e["file"], str, f"{at}.file", bad)
            p = (base / rel).resolve()
            if not p.exists():
                raise bad(
                    f"{at}.file",
                    f"{rel}: no such file or folder (relative to the spec's folder {base})",
                )
            tname = name or default_name(p)
            if not NAME_RE.match(tname):
                raise bad(
                    f"{at}.name",
                    f"the file's default name {tname!r} is not a valid "
                    'trace name: give name = "..."',
                )
            items.append(TraceSpec(tname, "file", at, path=p))
        else:
            items.append(TraceSpec(str(name), "stored", at))
        for t in items:
            if t.name in seen:
                raise bad(
                    f"{at}.name", f"trace {t.name!r} is already in the batch ({seen[t.name]})"
                )
            seen[t.name] = at
            out.append(t)
    return tuple(out)


def _models(
    value: Any, base: Path, bad: Callable[[str, str], BadInputError], file: str
) -> tuple[ModelSpec, ...]:
    from replay.models.config import PRESETS, load_model

    out: list[ModelSpec] = []
    seen: dict[str, str] = {}
    for i, e in enumerate(_entries(value, "models", bad), start=1):
        at = f"models[{i}]"
        for k in e:
            if k not in MODEL_KEYS:
                raise bad(f"{at}.{k}", f"unknown key (known: {', '.join(MODEL_KEYS)})")
        if ("preset" in e) == ("file" in e):
            raise bad(at, "give exactly one of preset (a built-in model) or file (a model TOML)")
        if "preset" in e:
            preset = _want(e["preset"], str, f"{at}.preset", bad)
            if preset not in PRESETS:
                raise bad(
                    f"{at}.preset", f"unknown preset {preset!r} (known: {', '.join(PRESETS)})"
                )
            config, label = load_model(preset), preset
        else:
            rel = _want(e["file"], str, f"{at}.file", bad)
            p = (base / rel).resolve()
            if not p.is_file():
                raise bad(
                    f"{at}.file",
                    f"{rel}: no such model file (relative to the spec's folder {base})",
                )
            try:
                config = load_model(str(p))
            except BadInputError as exc:  # the model file's own error, named in the spec
                raise bad(f"{at}.file", str(exc)) from None
            label = rel
        label = _want(e.get("label", label), str, f"{at}.label", bad)
        if not label or "|" in label:
            raise bad(f"{at}.label", f"a model label must be non-empty without '|': {label!r}")
        if label in seen:
            raise bad(
                f"{at}.label",
                f"model label {label!r} is already in the batch "
                f'({seen[label]}): give label = "..."',
            )
        seen[label] = at
        out.append(ModelSpec(label, config.to_json(), at))
    return tuple(out)


# -- tasks: what a worker runs --------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """One run for a worker (picklable: plain fields, absolute paths)."""

    key: str
    trace: str
    model: str
    config: str  # RunConfig JSON
    options: dict[str, Any]  # engine.run keyword arguments
    trace_dir: str  # the trace's exported Parquet files
    part_dir: str  # where the finished partition goes
    threads: int | None = None  # DuckDB threads in the worker (None: DuckDB's default)


def _peak_rss_mib() -> float:
    """This process's peak resident set size so far (MiB; ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sql_path(p: Path | str) -> str:
    return "'" + str(p).replace("'", "''") + "'"


def quiet_duckdb(store: Store) -> None:
    """No DuckDB progress bar: it writes to stdout (the data stream) for statements over 2 s."""
    store.run("SET enable_progress_bar = false")


def attach_trace(store: Store, trace_dir: Path) -> None:
    """Put a trace's exported Parquet files in ``store`` as its TRACE_TABLES tables.

    Each table becomes a view of the same name and columns (cast to the table's
    types) over the trace's Parquet file: the engine reads the trace as from the
    main store, and the rows are read from the files as it scans them instead of
    being copied in first (which cost a third of a 1M-event task's CPU)."""
    for t in TRACE_TABLES:
        cols = store.con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = $t "
            "AND database_name = current_database() AND schema_name = 'main' "
            "ORDER BY column_index",
            {"t": t},
        ).fetchall()
        select = ", ".join(f'CAST("{c}" AS {typ}) AS "{c}"' for c, typ in cols)
        store.run(f"DROP TABLE {t}")
        store.run(
            f"CREATE VIEW {t} AS SELECT {select} "
            f"FROM read_parquet({_sql_path(trace_dir / f'{t}.parquet')})"
        )


def partition_complete(part: Path) -> bool:
    """A partition is complete when its directory (renamed into place last) holds meta.json."""
    return (part / META_FILE).is_file()


def run_task(task: Task) -> dict[str, Any]:
    """Run one batch run in this process (a pool worker or a Dask worker).

    Opens a private temporary DuckDB file with the trace's Parquet files
    attached (``attach_trace``), runs ``replay.engine.whatif.run``, exports the
    ``runs`` row and the run's rows of every RUN_TABLES table to
    ``task.part_dir`` (a temporary directory renamed into place), deletes
    the temporary database and returns small metadata:
    status (done | failed), error, events, events_per_s, run_wall_s (the
    engine's run, s), wall_s (the whole task, s), cpu_s (this process's CPU
    during the task, s), peak_rss_mib (the process's peak so far, MiB), pid,
    host. Never raises for a failing run: the error comes back as metadata.
    """
    t0, cpu0 = time.perf_counter(), time.process_time()
    base: dict[str, Any] = {"key": task.key, "pid": os.getpid(), "host": socket.gethostname()}
    part = Path(task.part_dir)
    if partition_complete(part):  # already done (a retry after a lost result)
        return _read_meta(part)
    tmp = Path(tempfile.mkdtemp(prefix="replay-batch-"))
    staging = part.parent / f".{part.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        from replay.engine.whatif import run as engine_run
        from replay.models.config import RunConfig

        if not (Path(task.trace_dir) / "done").is_file():
            raise ReplayError(
                f"{task.trace_dir}: the trace's exported files are not there (with a remote "
                "Dask cluster, --workdir must be a path every worker shares)"
            )
        with Store(tmp / "run.duckdb") as store:
            quiet_duckdb(store)
            # Scratch rows read once: compressing them would cost CPU for nothing.
            store.run("PRAGMA force_compression = 'uncompressed'")
            if task.threads:
                store.run(f"SET threads = {int(task.threads)}")
            attach_trace(store, Path(task.trace_dir))
            config = RunConfig.from_json(task.config)
            result = engine_run(store, task.trace, config, **task.options)
            staging.mkdir(parents=True)
            rid = int(result.run_id)
            for t in ("runs", *RUN_TABLES):
                store.run(
                    f"COPY (SELECT * FROM {t} WHERE run_id = {rid}) "
                    f"TO {_sql_path(staging / f'{t}.parquet')} (FORMAT parquet)"
                )
        meta = {
            **base,
            "status": "done",
            "error": None,
            "trace": task.trace,
            "model": task.model,
            "events": result.events,
            "events_per_s": result.events_per_s,
            "run_wall_s": result.wall_s,
            "wall_s": time.perf_counter() - t0,
            "cpu_s": time.process_time() - cpu0,
            "peak_rss_mib": _peak_rss_mib(),
        }
        (staging / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
        try:
            os.rename(staging, part)
        except OSError:
            if not partition_complete(part):  # not a twin that finished first
                raise
        return meta
    except Exception as exc:
        return {
            **base,
            "status": "failed",
            "error": _message(exc),
            "trace": task.trace,
            "model": task.model,
            "wall_s": time.perf_counter() - t0,
            "cpu_s": time.process_time() - cpu0,
            "peak_rss_mib": _peak_rss_mib(),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)


def _message(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if isinstance(exc, ReplayError) else f"{type(exc).__name__}: {text}"


def _read_meta(part: Path) -> dict[str, Any]:
    return dict(json.loads((part / META_FILE).read_text(encoding="utf-8")))


# -- the coordinator ------------------------------------------------------------------


@dataclass
class BatchResult:
    """What a batch did: one row per key (SUMMARY_COLUMNS plus worker figures)."""

    name: str
    batch_id: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0  # the whole batch, s
    peak_rss_mib: float = 0.0  # the coordinator's own peak (the workers': in rows), MiB

    @property
    def failed(self) -> int:
        return sum(1 for r in self.rows if r["status"] == "failed")

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r["status"]] = out.get(r["status"], 0) + 1
        return out

    def table(self) -> pa.Table:
        """The summary: key, trace, model, run_id, status (done | recovered | skipped |
        failed), events_per_s, wall_s (the worker task: load, replay, export; s),
        peak_rss_mib (the worker process's peak; MiB), error."""
        digits = {"events_per_s": 0, "wall_s": 2, "peak_rss_mib": 1}
        return pa.Table.from_pylist(
            [{c: _round(r.get(c), digits.get(c)) for c in SUMMARY_COLUMNS} for r in self.rows],
            schema=pa.schema(
                [
                    ("key", pa.string()),
                    ("trace", pa.string()),
                    ("model", pa.string()),
                    ("run_id", pa.int64()),
                    ("status", pa.string()),
                    ("events_per_s", pa.float64()),
                    ("wall_s", pa.float64()),
                    ("peak_rss_mib", pa.float64()),
                    ("error", pa.string()),
                ]
            ),
        )

    def summary(self) -> dict[str, Any]:
        """The batch as a JSON-able dict: name, batch_id, wall_s, peak_rss_mib, counts
        by status, and every run's row with the worker's figures (pid, host, cpu_s, ...)."""
        return {
            "name": self.name,
            "batch_id": self.batch_id,
            "wall_s": self.wall_s,
            "peak_rss_mib": self.peak_rss_mib,
            "counts": self.counts(),
            "runs": self.rows,
        }


def _round(v: Any, digits: int | None) -> Any:
    return round(float(v), digits) if digits is not None and v is not None else v


def default_workdir(store_path: Path, name: str) -> Path:
    """``<db file>.batch/<batch name>/`` next to the database file."""
    return store_path.parent / f"{store_path.name}.batch" / name


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _fingerprint(store: Store, name: str) -> str:
    """A stored trace's identity: id, creation time and events (a replaced trace differs)."""
    row = store.one("SELECT trace_id, created, events FROM traces WHERE name = $n", {"n": name})
    assert row is not None
    return f"{row[0]}:{row[1]}:{row[2]}"


def _digest(*parts: Any) -> str:
    return hashlib.sha256(_canonical(parts).encode()).hexdigest()[:16]


class _Coordinator:
    """State of one batch in the coordinator: the store, the spec, results so far."""

    def __init__(self, store: Store, spec: BatchSpec, workdir: Path, progress: Progress) -> None:
        self.store = store
        self.spec = spec
        self.workdir = workdir
        self.progress = progress  # one bar across runs (trace ingests do not report)
        self.finished = 0  # runs recorded (done, recovered or failed) in this invocation
        self.batch_id = 0
        self.own_workdir = True  # the default work directory: removed at the end when empty
        self.rows: dict[str, dict[str, Any]] = {}

    # batch rows ------------------------------------------------------------------------
    def open_batch(self, replace: bool) -> None:
        """Find or create the batches row; check the spec against the stored one."""
        s, spec = self.store, self.spec
        row = s.one("SELECT batch_id, spec FROM batches WHERE name = $n", {"n": spec.name})
        if row is None:
            with s.transaction():
                nxt = s.one("SELECT coalesce(max(batch_id), 0) + 1 FROM batches")
                self.batch_id = int(nxt[0]) if nxt else 1
                s.run(
                    "INSERT INTO batches VALUES ($b, $n, $s, $c)",
                    {"b": self.batch_id, "n": spec.name, "s": spec.text, "c": _now()},
                )
            return
        self.batch_id = int(row[0])
        changed = self._changes(str(row[1] or ""))
        if changed and not replace:
            raise UsageError(
                f"a batch named {spec.name!r} exists in {s.path} with a different spec "
                f"({changed}): use --replace to delete its runs and run the new spec, "
                "or give the batch another name"
            )
        if replace:
            with s.transaction():
                ids = "SELECT run_id FROM batch_runs WHERE batch_id = $b AND run_id IS NOT NULL"
                for t in (*RUN_TABLES, "runs"):
                    s.run(f"DELETE FROM {t} WHERE run_id IN ({ids})", {"b": self.batch_id})
                s.run("DELETE FROM batch_runs WHERE batch_id = $b", {"b": self.batch_id})
                s.run(
                    "UPDATE batches SET spec = $s, created = $c WHERE batch_id = $b",
                    {"s": spec.text, "c": _now(), "b": self.batch_id},
                )
            for sub in ("runs", "traces"):  # partitions and exports of the old spec
                shutil.rmtree(self.workdir / sub, ignore_errors=True)

    def _changes(self, stored_text: str) -> str | None:
        """Why the stored batch differs from this spec, or None when it does not."""
        try:
            stored = tomllib.loads(stored_text)
        except tomllib.TOMLDecodeError:
            stored = None
        if stored is None or _canonical(stored) != _canonical(self.spec.data):
            return "the spec's contents differ"
        configs = {m.label: m.config for m in self.spec.models}
        for key, model, config in self.store.con.execute(
            "SELECT b.key, b.model, r.config FROM batch_runs b JOIN runs r USING (run_id) "
            "WHERE b.batch_id = $b AND b.status = 'done'",
            {"b": self.batch_id},
        ).fetchall():
            if model in configs and _canonical(json.loads(config)) != _canonical(
                json.loads(configs[model])
            ):
                return f"run {key}: the model's configuration changed"
        return None

    def done_keys(self) -> dict[str, dict[str, Any]]:
        """Keys finished earlier whose run is still stored: key -> summary row."""
        out: dict[str, dict[str, Any]] = {}
        for key, trace, model, run_id, eps in self.store.con.execute(
            "SELECT b.key, b.trace, b.model, b.run_id, r.events_per_s FROM batch_runs b "
            "JOIN runs r USING (run_id) WHERE b.batch_id = $b AND b.status = 'done'",
            {"b": self.batch_id},
        ).fetchall():
            out[key] = {
                "key": key,
                "trace": trace,
                "model": model,
                "run_id": int(run_id),
                "status": "skipped",
                "events_per_s": eps,
                "wall_s": None,
                "peak_rss_mib": None,
                "error": None,
            }
        return out

    def record_failed(
        self, key: str, trace: str, model: str, error: str, extra: dict[str, Any] | None = None
    ) -> None:
        with self.store.transaction():
            self._batch_row(key, trace, model, None, "failed", error)
        self.rows[key] = {
            "key": key,
            "trace": trace,
            "model": model,
            "run_id": None,
            "status": "failed",
            "events_per_s": None,
            "wall_s": (extra or {}).get("wall_s"),
            "peak_rss_mib": (extra or {}).get("peak_rss_mib"),
            "error": error,
            **{k: v for k, v in (extra or {}).items() if k not in ("status", "error")},
        }
        self._advance()

    def _advance(self) -> None:
        self.finished += 1
        self.progress.advance_to(self.finished)

    def _batch_row(
        self, key: str, trace: str, model: str, run_id: int | None, status: str, error: str | None
    ) -> None:
        self.store.run(
            "DELETE FROM batch_runs WHERE batch_id = $b AND key = $k",
            {"b": self.batch_id, "k": key},
        )
        self.store.run(
            "INSERT INTO batch_runs VALUES ($b, $k, $t, $m, $r, $s, $e, $f)",
            {
                "b": self.batch_id,
                "k": key,
                "t": trace,
                "m": model,
                "r": run_id,
                "s": status,
                "e": error,
                "f": _now(),
            },
        )

    # traces -----------------------------------------------------------------------------
    def ensure_trace(self, t: TraceSpec) -> None:
        """Generate or ingest ``t`` unless a trace of its name is stored (one transaction)."""
        if self.store.exists(t.name):
            return
        if t.kind == "stored":
            raise ReplayError(f"no trace named {t.name!r} in {self.store.path}")
        if t.kind == "file":
            from replay.trace.ingest import ingest

            assert t.path is not None
            ingest(self.store, t.path, name=t.name)
            return
        from replay.scenarios.workloads import generate
        from replay.trace.ingest import ingest_table

        assert t.scenario is not None
        table, meta = generate(t.scenario, seed=t.seed, events=t.events, zone_pages=t.zone_pages)
        ingest_table(
            self.store,
            table,
            meta,
            name=t.name,
            source=f"<scenario {t.scenario} seed {t.seed}>",
        )

    def export_trace(self, name: str, fingerprint: str) -> Path:
        """The trace's rows of every TRACE_TABLES table as Parquet files (reused if there)."""
        out = self.workdir / "traces" / f"{name}-{_digest(fingerprint)}"
        if (out / "done").is_file():
            return out
        staging = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.tmp"
        staging.mkdir(parents=True)
        try:
            tid = self.store.trace_id(name)
            for t in TRACE_TABLES:
                self.store.run(
                    f"COPY (SELECT * FROM {t} WHERE trace_id = {int(tid)}) "
                    f"TO {_sql_path(staging / f'{t}.parquet')} (FORMAT parquet)"
                )
            (staging / "done").write_text(fingerprint, encoding="utf-8")
            shutil.rmtree(out, ignore_errors=True)
            os.rename(staging, out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return out

    # loading ------------------------------------------------------------------------------
    def load(self, task: Task, meta: dict[str, Any], status: str = "done") -> None:
        """Insert a finished partition in one transaction, then delete it from disk."""
        part = Path(task.part_dir)
        s = self.store
        try:
            with s.transaction():
                nxt = s.one("SELECT coalesce(max(run_id), 0) + 1 FROM runs")
                rid = int(nxt[0]) if nxt else 1
                tid = s.trace_id(task.trace)
                n = s.one(
                    "SELECT count(*) FROM read_parquet($p)", {"p": str(part / "runs.parquet")}
                )
                if not n or n[0] != 1:
                    raise ReplayError(f"{part}: the partition's runs.parquet has no single row")
                s.run(
                    "INSERT INTO runs BY NAME SELECT * REPLACE (CAST($r AS INTEGER) AS run_id, "
                    "CAST($t AS INTEGER) AS trace_id) FROM read_parquet($p)",
                    {"r": rid, "t": tid, "p": str(part / "runs.parquet")},
                )
                for t in RUN_TABLES:
                    s.run(
                        f"INSERT INTO {t} BY NAME SELECT * REPLACE (CAST($r AS INTEGER) AS "
                        "run_id) FROM read_parquet($p)",
                        {"r": rid, "p": str(part / f"{t}.parquet")},
                    )
                self._batch_row(task.key, task.trace, task.model, rid, "done", None)
        except Exception as exc:  # a damaged partition: report it, run it again next time
            shutil.rmtree(part, ignore_errors=True)
            self.record_failed(
                task.key,
                task.trace,
                task.model,
                f"loading the run's results failed: {_message(exc)}",
                meta,
            )
            return
        shutil.rmtree(part, ignore_errors=True)
        self.rows[task.key] = {
            **meta,
            "key": task.key,
            "trace": task.trace,
            "model": task.model,
            "run_id": rid,
            "status": status,
            "error": None,
        }
        self._advance()

    def finish(self, task: Task, meta: dict[str, Any]) -> None:
        """Handle a task's result: load its partition, or record its failure."""
        if meta.get("status") == "done" and partition_complete(Path(task.part_dir)):
            self.load(task, meta)
        else:
            err = meta.get("error") or "the worker returned no results"
            self.record_failed(task.key, task.trace, task.model, str(err), meta)


PR_SET_PDEATHSIG = 1  # prctl(2) option, <linux/prctl.h>
WATCH_PARENT_S = 1.0  # s between checks of the coordinator, where prctl is not there


def worker_init(coordinator_pid: int) -> None:
    """First thing in every local pool worker: die with the coordinator, leave Ctrl-C to it.

    On Linux the kernel sends the worker SIGKILL when the coordinator's thread
    that spawned it (its main thread) ends, however it ends, ``kill -9``
    included (prctl PR_SET_PDEATHSIG); elsewhere a thread checks every
    WATCH_PARENT_S seconds that the coordinator is still its parent. A
    terminal's Ctrl-C reaches the whole process group: workers ignore it, and
    the coordinator stops them (_Executor.abort).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not _die_with_parent():
        threading.Thread(target=_watch_parent, args=(coordinator_pid,), daemon=True).start()
    if os.getppid() != coordinator_pid:  # it died before the prctl: nobody wants our results
        os._exit(1)


def _die_with_parent() -> bool:
    """prctl(PR_SET_PDEATHSIG, SIGKILL) for this process; False where there is none."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)) == 0


def _watch_parent(coordinator_pid: int) -> None:
    while os.getppid() == coordinator_pid:
        time.sleep(WATCH_PARENT_S)
    os._exit(1)


class _Executor:
    """Where tasks run: a local pool of spawned processes, or a Dask cluster (``client``).

    ``submit`` as tasks become ready (the coordinator prepares the next trace while
    workers run the first one's); ``results`` yields (task, metadata) in completion
    order once everything is submitted."""

    def __init__(self, jobs: int, client: Any | None) -> None:
        self.jobs = jobs
        self.client = client
        self.pool: ProcessPoolExecutor | None = None
        self.futures: dict[Any, Task] = {}
        self.tag = uuid.uuid4().hex[:8]

    def submit(self, task: Task) -> None:
        if self.client is not None:
            key = f"replay-batch-{self.tag}-{Path(task.part_dir).name}"
            # One DuckDB thread: the cluster's worker threads are the parallelism.
            task1 = with_fields(task, threads=1)
            fut = self.client.submit(run_task, task1, key=key, pure=False, retries=0)
        else:
            if self.pool is None:  # never fork once the JIT/DuckDB are loaded
                ctx = multiprocessing.get_context("spawn")
                self.pool = ProcessPoolExecutor(
                    max_workers=self.jobs,
                    mp_context=ctx,
                    initializer=worker_init,
                    initargs=(os.getpid(),),
                )
            # Processes are the parallelism: DuckDB threads only for the cores left over.
            threads = max(1, (os.cpu_count() or 1) // self.jobs)
            fut = self.pool.submit(run_task, with_fields(task, threads=threads))
        self.futures[fut] = task

    def results(self) -> Iterator[tuple[Task, dict[str, Any]]]:
        if not self.futures:
            return
        if self.client is not None:
            from distributed import as_completed as dask_completed

            with self.client.as_current():  # as_completed finds its client here
                done: Iterable[Any] = dask_completed(list(self.futures))
        else:
            done = as_completed(self.futures)
        for fut in done:
            yield self.futures[fut], _result_of(fut.result, self.futures[fut])

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        if self.client is not None:
            for fut in self.futures:
                fut.release()

    def abort(self) -> None:
        """Stop at once (an interrupt, an error): running tasks are killed, not awaited."""
        if self.pool is not None:
            pool, self.pool = self.pool, None
            # No public way to stop a pool's running workers before Python 3.14
            # (ProcessPoolExecutor.terminate_workers).
            terminate = getattr(pool, "terminate_workers", None)
            if terminate is not None:
                terminate()
            else:
                for proc in list(getattr(pool, "_processes", {}).values()):
                    proc.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
        if self.client is not None:
            self.client.cancel(list(self.futures))


def _result_of(get: Callable[[], dict[str, Any]], task: Task) -> dict[str, Any]:
    """A future's metadata; a worker that died (killed, out of memory) is a failed run."""
    try:
        return get()
    except Exception as exc:
        return {
            "key": task.key,
            "status": "failed",
            "error": f"the worker running it failed: {_message(exc)}",
        }


def dask_client(address: str, timeout_s: float | None = None) -> Any:
    """A ``distributed.Client`` of the scheduler at ``address`` (ReplayError if unreachable
    within ``timeout_s`` seconds, default DASK_TIMEOUT_S); not the global default client."""
    from distributed import Client

    try:
        return Client(address, timeout=timeout_s or DASK_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ReplayError(f"cannot connect to the Dask scheduler at {address}: {exc}") from exc


def _check_stored(store: Store, spec: BatchSpec) -> None:
    for t in spec.traces:
        if t.kind == "stored" and not store.exists(t.name):
            names = [r[0] for r in store.con.execute("SELECT name FROM traces").fetchall()]
            hint = f" (stored: {', '.join(names[:10])})" if names else " (the store has no traces)"
            raise BadInputError(
                f"no trace named {t.name!r} in {store.path}{hint}",
                file=str(spec.path),
                field=f"{t.field}.name",
            )


def run_batch(
    store_path: Path | str | None,
    spec_path: Path | str,
    *,
    jobs: int | None = None,
    executor: str = "local",
    address: str | None = None,
    workdir: Path | str | None = None,
    replace: bool = False,
    progress: Progress | None = None,
) -> BatchResult:
    """Run the batch of ``spec_path`` into the store at ``store_path`` (see the module doc).

    ``jobs``: local worker processes (default: os.cpu_count()); ``executor``:
    local | dask (``address``: the scheduler, e.g. tcp://127.0.0.1:8786);
    ``workdir``: trace exports and run partitions (default
    ``<db file>.batch/<name>/``; shared by every worker with a remote Dask
    cluster); ``replace``: delete the batch's runs and run its (new) spec.
    ``progress`` gets one bar across runs (total: the runs to load).
    Failed runs are in the result (status failed); it raises only for a bad
    spec (BadInputError), bad arguments (UsageError) or an unreachable
    cluster (ReplayError), before any run.
    """
    t_start = time.perf_counter()
    spec = load_spec(spec_path)
    if executor not in EXECUTORS:
        raise UsageError(f"--executor must be one of {', '.join(EXECUTORS)}, not {executor!r}")
    if executor == "dask" and not address:
        raise UsageError("--executor dask needs --address tcp://HOST:PORT (the scheduler)")
    if executor == "local" and address:
        raise UsageError("--address is for --executor dask")
    jobs = (os.cpu_count() or 1) if jobs is None else jobs
    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1, not {jobs}")
    progress = progress or Progress()
    path = Path(store_path) if store_path is not None else default_db_path()
    client = dask_client(str(address)) if executor == "dask" else None
    try:
        return _run(path, spec, jobs, client, workdir, replace, progress, t_start)
    finally:
        if client is not None:
            client.close()


def _run(
    path: Path,
    spec: BatchSpec,
    jobs: int,
    client: Any | None,
    workdir: Path | str | None,
    replace: bool,
    progress: Progress,
    t_start: float,
) -> BatchResult:
    with Store(path) as store:
        quiet_duckdb(store)
        wd = Path(workdir) if workdir is not None else default_workdir(path, spec.name)
        co = _Coordinator(store, spec, wd.resolve(), progress)
        co.own_workdir = workdir is None
        try:
            _check_stored(store, spec)
            co.open_batch(replace)
        except BaseException:
            store.discard_if_new()
            raise
        done = co.done_keys()
        co.rows.update(done)
        pending = [(key, t, m) for key, t, m in spec.keys() if key not in done]
        progress.start(f"batch {spec.name}", len(pending))
        ex = _Executor(max(1, min(jobs, len(pending))), client)
        try:
            for task in _prepare(co, pending):
                ex.submit(task)
            # Traces are stored and exported: from here on the coordinator only loads
            # runs, small transactions, and DuckDB's cache would otherwise grow with each.
            store.run(f"SET memory_limit = '{LOADER_MEMORY_LIMIT}'")
            for task, meta in ex.results():
                co.finish(task, meta)
        except BaseException:
            ex.abort()
            raise
        finally:
            ex.close()
        _cleanup(co.workdir, own=co.own_workdir)
        rows = [co.rows[k] for k, _, _ in spec.keys() if k in co.rows]
        return BatchResult(
            spec.name, co.batch_id, rows, time.perf_counter() - t_start, _peak_rss_mib()
        )


def _prepare(co: _Coordinator, pending: list[tuple[str, TraceSpec, ModelSpec]]) -> Iterator[Task]:
    """Trace by trace: store it (generate/ingest) and export it, then yield its runs' tasks.

    Partitions already complete on disk are loaded here instead (recovered), and keys
    whose trace cannot be prepared are recorded as failed."""
    by_trace: dict[str, list[tuple[str, ModelSpec]]] = {}
    for key, t, m in pending:
        by_trace.setdefault(t.name, []).append((key, m))
    for t in co.spec.traces:
        runs = by_trace.get(t.name, [])
        if not runs:
            continue
        try:
            co.ensure_trace(t)
        except Exception as exc:
            for key, m in runs:
                co.record_failed(
                    key, t.name, m.label, f"preparing the trace failed: {_message(exc)}"
                )
            continue
        fp = _fingerprint(co.store, t.name)
        todo: list[Task] = []
        for key, m in runs:
            h = _digest(key, m.config, co.spec.options, fp)
            part = co.workdir / "runs" / h
            task = Task(key, t.name, m.label, m.config, dict(co.spec.options), "", str(part))
            if partition_complete(part):
                co.load(task, _read_meta(part), status="recovered")
            else:
                shutil.rmtree(part, ignore_errors=True)  # a partial one: run again
                todo.append(task)
        if not todo:
            continue
        try:
            tdir = str(co.export_trace(t.name, fp))
        except Exception as exc:
            for task in todo:
                co.record_failed(
                    task.key, t.name, task.model, f"exporting the trace failed: {_message(exc)}"
                )
            continue
        for task in todo:
            yield Task(**{**asdict(task), "trace_dir": tdir})


def _cleanup(workdir: Path, *, own: bool) -> None:
    """After every run finished: remove the trace exports and what is left of the runs'
    partitions (loaded ones are deleted as they load; what remains is stale: of keys
    finished earlier, or staging directories of failed tasks). The default work
    directory and its ``<db file>.batch`` parent are removed when empty."""
    shutil.rmtree(workdir / "traces", ignore_errors=True)
    shutil.rmtree(workdir / "runs", ignore_errors=True)
    for d in (workdir, workdir.parent) if own else ():
        with contextlib.suppress(OSError):
            d.rmdir()  # only when empty
