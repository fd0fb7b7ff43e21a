"""Ingest any supported input into the store, as one transaction.

Inputs: ftrace text (plain, .gz, .zst, .xz, .bz2), a capture folder
(``trace.txt[.zst]`` plus ``before.*``/``after.*`` snapshots), or a canonical
Parquet / Arrow IPC / CSV file. The kind is detected from the content.
"""

from __future__ import annotations

import contextlib
import gc
import queue
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.ipc as ipc

from replay.errors import BadInputError, UnknownFormatError, UsageError
from replay.progress import Progress
from replay.spool import Spool
from replay.store import Store, check_name
from replay.trace import canonical, perfscript, recordings, snapshots
from replay.trace.callsites import store_callsites
from replay.trace.ftrace import DEFAULT_MAX_BAD_FRACTION
from replay.trace.reader import compression_of, file_size, iter_chunks
from replay.trace.schema import AUX_SCHEMA, EVENT_SCHEMA, MAX_PFN

TRACE_NAMES = (
    "trace.txt",
    "trace_pipe.txt",
    "trace",
    "trace.report",
    "trace.txt.zst",
    "trace.txt.gz",
    "trace.txt.xz",
)
COMPRESSED_SUFFIXES = (".zst", ".zstd", ".gz", ".xz", ".bz2")
PAGE_SIZE = 4096
MAX_ORDER_PAGES = 1 << 10


def default_name(path: Path) -> str:
    """A trace name from the path: folder name, or file name without suffixes."""
    p = Path(path)
    if p.is_dir():
        return p.resolve().name
    name = p.name
    for suffix in (*COMPRESSED_SUFFIXES, ".txt", ".parquet", ".arrow", ".feather", ".csv", ".dat"):
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return name


def find_capture_trace(folder: Path) -> Path:
    for name in TRACE_NAMES:
        cand = folder / name
        if cand.is_file():
            return cand
    for cand in sorted(folder.glob("trace*")):
        if cand.is_file() and cand.suffix != ".dat":
            return cand
    if (folder / "trace.dat").is_file():  # replay record's raw recording (trace_pipe_raw)
        return folder / "trace.dat"
    raise BadInputError(
        "capture folder has no trace.txt[.zst|.gz|.xz] or trace.dat", file=str(folder)
    )


# An ftrace event line's header: "comm-pid [(tgid)] [cpu] [flags] secs.usecs: event:".
EVENT_LINE_RE = re.compile(rb"-\d+\s+(?:\([^)]*\)\s+)?\[\d+\]\s+(?:\S+\s+)?\d+(?:\.\d+)?:\s+\w+:")
SKIP_BAD_SCAN_BYTES = 64 << 20  # how far --skip-bad looks for a first ftrace event line


def _has_event_line(path: Path, limit: int) -> bool:
    """Whether an ftrace event line starts within the first ``limit`` bytes of the text."""
    seen = 0
    for chunk in iter_chunks(path, 1 << 20, threaded=False):
        if EVENT_LINE_RE.search(chunk):
            return True
        seen += len(chunk)
        if seen >= limit:
            break
    return False


def detect(path: Path, skip_bad: bool = False) -> str:
    """``capture``, ``ftrace``, ``parquet``, ``arrow`` or ``csv``.

    Text is ftrace when one of its first 200 lines looks like an event line;
    with ``skip_bad`` (junk lines are to be skipped) the first
    SKIP_BAD_SCAN_BYTES bytes are searched for one.
    """
    if not path.exists():
        raise UsageError(f"{path}: no such file or directory")
    if path.is_dir():
        return "capture"
    if file_size(path) == 0:
        raise BadInputError("empty file", file=str(path))
    kind = recordings.sniff(path) or (
        canonical.sniff(path) if compression_of(path) is None else None
    )
    if kind is not None:
        return kind
    # Text (maybe compressed): look at the first lines.
    head = b""
    for chunk in iter_chunks(path, 1 << 16, threaded=False):
        head = chunk
        break
    if not head.strip():
        raise BadInputError("empty file (no text)", file=str(path))
    if b"\x00" in head[:4096]:
        raise UnknownFormatError(
            "binary data in an unknown format (expected ftrace text, a capture folder, "
            "or canonical Parquet/Arrow/CSV)",
            file=str(path),
        )
    text_lines = [ln for ln in head.split(b"\n")[:200] if ln.strip()]
    first = text_lines[0].strip().lower() if text_lines else b""
    cols = [c.strip().strip(b'"') for c in first.split(b",")]
    if b"op" in cols and b"obj" in cols:
        if compression_of(path) is not None:
            raise UnknownFormatError(
                "compressed CSV is not supported: decompress it first", file=str(path)
            )
        return "csv"
    if perfscript.sniff(text_lines):
        return "perfscript"
    if any(b"]" in ln and b": " in ln for ln in text_lines):
        return "ftrace"
    if skip_bad and _has_event_line(path, SKIP_BAD_SCAN_BYTES):
        return "ftrace"
    raise UnknownFormatError(
        "not a recognised trace format (expected ftrace text, a capture folder, "
        "or canonical Parquet/Arrow/CSV with columns op,obj,order)",
        file=str(path),
    )


def _zone_from_zoneinfo(
    zi: pa.Table, pfn_min: int | None, pfn_max: int | None
) -> tuple[int, int] | None:
    """The default what-if zone: the zone the trace's pfns fall in that manages the most
    pages (the one a model of one zone stands for: Normal on a 64-bit machine), from its
    start pfn, sized by the pages its buddy allocator manages (``managed``).

    ``spanned`` can be far larger than what the allocator had: on the shipped
    6.18 capture the Normal zone spans 5.5M pages but manages 1M, exactly the
    pfn range [0x100000, 0x200000) its events use. When the trace uses pfns past
    ``start + managed`` (memory the kernel added during the trace: this
    machine's ``deferred_init=lazy`` grows the zone by sections), the zone is
    the whole span; a run treats the pages past the managed ones as holes until
    the trace frees them into the zone.
    """
    rows = [r for r in zi.to_pylist() if r.get("start_pfn") is not None and r.get("spanned")]
    if not rows:
        return None
    if pfn_min is not None and pfn_max is not None:
        hit = [
            r for r in rows if r["start_pfn"] <= pfn_max and r["start_pfn"] + r["spanned"] > pfn_min
        ]
        rows = hit or rows
    z = max(rows, key=lambda r: int(r.get("managed") or r.get("present") or r["spanned"]))
    start, spanned = int(z["start_pfn"]), int(z["spanned"])
    pages = int(z.get("managed") or z.get("present") or spanned)
    if pfn_max is not None and start + pages <= pfn_max < start + spanned:
        pages = spanned  # the trace onlines memory past the managed pages: the whole span
    return start, pages


def _zone_from_pfns(pfn_min: int | None, pfn_max: int | None) -> tuple[int | None, int | None]:
    """The pfn span rounded out to MAX_PAGE_ORDER blocks (1024 pages)."""
    if pfn_min is None or pfn_max is None:
        return None, None
    start = (pfn_min // MAX_ORDER_PAGES) * MAX_ORDER_PAGES
    end = ((pfn_max + MAX_ORDER_PAGES) // MAX_ORDER_PAGES) * MAX_ORDER_PAGES
    return start, end - start


# mm_filemap_add_to_page_cache's payload: "dev %d:%d ino %lx pfn=0x%lx ofs=%lu order=%u"
# (include/trace/events/filemap.h; ofs is the byte offset, index << PAGE_SHIFT)
_FILEMAP_FILE_RE = r"dev (\d+:\d+) ino ([0-9a-f]+)"


def page_cache_regions(store: Store, trace_id: int) -> int:
    """Give the trace's page-cache folios regions: each file (device and inode) is a
    region and a folio's page index in it its vpn (``ofs >> 12``), set on the allocation
    the folio came from (the latest ``mm_page_alloc`` at its pfn before its
    ``mm_filemap_add_to_page_cache``). Exchange pages and the contiguity table then work
    on real page-cache traces. Returns the allocations given a region."""
    has = store.one(
        "SELECT count(*) FROM aux_events WHERE trace_id = $t "
        "AND event = 'mm_filemap_add_to_page_cache'",
        {"t": trace_id},
    )
    if not has or not has[0]:  # no page-cache events: no join over every allocation
        return 0
    store.run(
        f"""UPDATE events SET region = r.region, vpn = r.vpn
            FROM (
              WITH a0 AS (
                SELECT line, TRY_CAST(args->>'pfn' AS BIGINT) AS pfn_v,
                       TRY_CAST(args->>'ofs' AS BIGINT) AS ofs,
                       regexp_extract(text, '{_FILEMAP_FILE_RE}', 1) || ' ' ||
                         regexp_extract(text, '{_FILEMAP_FILE_RE}', 2) AS file
                FROM aux_events WHERE trace_id = $t
                  AND event = 'mm_filemap_add_to_page_cache' AND text IS NOT NULL),
              a AS (SELECT * FROM a0
                    WHERE file <> ' ' AND ofs IS NOT NULL AND pfn_v IS NOT NULL),
              al AS (SELECT seq, line, pfn FROM events WHERE trace_id = $t AND op = 'alloc'
                       AND pfn IS NOT NULL)
              SELECT al.seq, dense_rank() OVER (ORDER BY a.file) - 1 AS region,
                     a.ofs >> 12 AS vpn
              FROM a ASOF JOIN al ON a.pfn_v = al.pfn AND a.line > al.line
              QUALIFY row_number() OVER (PARTITION BY al.seq ORDER BY a.line DESC) = 1
            ) r
            WHERE events.trace_id = $t AND events.seq = r.seq""",
        {"t": trace_id},
    )
    row = store.one("SELECT count(*) FROM events WHERE trace_id = $t AND region IS NOT NULL",
                    {"t": trace_id})  # fmt: skip
    return int(row[0]) if row else 0


def ingest(
    store: Store,
    path: Path | str,
    *,
    name: str | None = None,
    replace: bool = False,
    skip_bad: bool = False,
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
    progress: Progress | None = None,
    chunk_bytes: int | None = None,
    max_state_bytes: int | None = None,
) -> dict[str, Any]:
    """Ingest ``path`` under ``name``; returns the stored trace row.

    One transaction: on any error nothing is written (and a database file this
    call created is removed). ``skip_bad`` skips malformed ftrace lines, up to
    ``max_bad_fraction`` of the non-blank lines; ``max_state_bytes`` bounds
    the pairing page map (bytes; see FtraceParser).
    """
    path = Path(path)
    progress = progress or Progress()
    if not 0 <= max_bad_fraction <= 1:
        raise UsageError(f"max_bad_fraction must be within 0..1, got {max_bad_fraction}")
    kind = detect(path, skip_bad)
    name = check_name(default_name(path) if name is None else name)
    canonical_file = kind not in ("ftrace", "capture", "perfscript", *recordings.RECORDING_KINDS)
    try:
        with _insert_threads(store, 1 if canonical_file else None), store.transaction():
            trace_id = store.begin_trace(name, replace=replace)
            if not canonical_file:
                parser_opts = {
                    "skip_bad": skip_bad,
                    "max_bad_fraction": max_bad_fraction,
                    "max_state_bytes": max_state_bytes,
                }
                if chunk_bytes is not None:
                    parser_opts["chunk_bytes"] = chunk_bytes
                row, snaps = _ingest_text(store, trace_id, path, kind, progress, parser_opts)
            else:
                row, snaps = _ingest_canonical(store, trace_id, path, kind, progress)
            row["name"] = name
            _store_snapshots(store, trace_id, snaps)
            store.insert_trace_row(trace_id, row)
    except BaseException:
        store.discard_if_new()
        raise
    return store.trace_row(trace_id)


@contextlib.contextmanager
def _insert_threads(store: Store, threads: int | None) -> Iterator[None]:
    """DuckDB's thread count set to ``threads`` (None: left alone) inside the block.

    Used around a canonical ingest (enter it before the transaction: DuckDB
    settings are not transactional, and the reset runs after the commit or
    rollback, when a SET cannot fail). The streaming INSERT of a canonical
    file on one DuckDB thread, its producer (reading and checking the file)
    on another core: on the 2-core VM, 10M rows took 6.7 s of CPU, a 25 MB
    file and nothing more at close; on two DuckDB threads 9.8 s of CPU, a
    39 MB file and a checkpoint at close that rewrote the row groups for
    1.8-3.3 s, raising the peak RSS by 470 MiB.
    """
    if threads is None:
        yield
        return
    locked = store.one("SELECT current_setting('lock_configuration')")
    if locked is not None and locked[0] in (True, "true", 1):
        yield  # replay serve locks DuckDB's configuration: its ingests keep the threads
        return
    row = store.one("SELECT current_setting('threads')")
    store.run(f"SET threads = {int(threads)}")
    try:
        yield
    finally:
        if row is not None:
            store.run(f"SET threads = {int(row[0])}")


def _ingest_text(
    store: Store,
    trace_id: int,
    path: Path,
    kind: str,
    progress: Progress,
    parser_opts: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    folder = path if kind == "capture" else None
    text_path = find_capture_trace(path) if folder is not None else path
    snaps: dict[str, dict[str, Any]] = {"before": {}, "after": {}}
    kernel = command = None
    if folder is not None:
        snaps = snapshots.load_capture_snapshots(folder)
        if (folder / "kernel").is_file():
            kernel = (folder / "kernel").read_text().strip() or None
        if (folder / "command").is_file():
            command = (folder / "command").read_text().strip() or None
    progress.start(f"ingest {text_path.name}", file_size(text_path))
    parser = recordings.open_parser(kind, text_path, on_raw=progress.advance_to, **parser_opts)
    kernel = kernel or getattr(parser, "kernel", None)
    _stream_into_store(store, trace_id, parser)
    page_cache_regions(store, trace_id)
    n_callsites = store_callsites(store, trace_id, parser.stacks)
    st = parser.stats
    if folder is not None:
        check_same_machine(store, trace_id, folder, text_path, snaps, st.pfn_min, st.pfn_max)
    zi = snaps["before"].get("zoneinfo") or snaps["after"].get("zoneinfo")
    zone = _zone_from_zoneinfo(zi, st.pfn_min, st.pfn_max) if zi is not None else None
    zone_start, zone_pages = zone if zone else _zone_from_pfns(st.pfn_min, st.pfn_max)
    c = st.counters
    meta = st.as_dict()
    meta["text_file"] = str(text_path)
    if n_callsites:
        meta["callsites"] = n_callsites
    meta["snapshots"] = {w: sorted(s) for w, s in snaps.items()}
    row = {
        "source": str(path.resolve()),
        "kind": kind,
        "format": st.format_description(),
        "kernel": kernel,
        "command": command,
        "lines": st.lines,
        "events": st.events,
        "aux_events": st.aux_events,
        "allocs": c["allocs"],
        "frees": c["frees"],
        "partial_frees": c["partial_frees"],
        "preexisting": c["preexisting"],
        "live_at_end": c["live_at_end"],
        "failed_allocs": c["failed_allocs"],
        "batched": c["batched"],
        "lost_events": st.lost_events,
        "lost_markers": st.lost_markers,
        "skipped_bad": st.skipped_bad,
        "ts_first": st.ts_first,
        "ts_last": st.ts_last,
        "pfn_min": st.pfn_min,
        "pfn_max": st.pfn_max,
        "zone_start_pfn": zone_start,
        "zone_pages": zone_pages,
        "page_size": PAGE_SIZE,
        "meta": meta,
    }
    return row, snaps


class BatchProducer(Protocol):
    """What _stream_into_store reads: (events, aux) batch pairs, either may be None."""

    def batches(self) -> Iterator[tuple[pa.RecordBatch | None, pa.RecordBatch | None]]: ...


def _stream_into_store(
    store: Store, trace_id: int, parser: BatchProducer, schema: pa.Schema = EVENT_SCHEMA
) -> None:
    """Append a producer's batches to events and aux_events, in bounded memory.

    DuckDB holds the rows of an open transaction in memory unless one large
    INSERT streams them, in which case it writes full row groups to the file
    as it goes. So the parser runs in a thread; its event batches feed one
    streaming ``INSERT INTO events`` through a short queue (parsing and DuckDB
    overlap on two cores), and its aux batches are spooled to a temporary
    LZ4-compressed Arrow IPC stream (a quarter of Parquet's encoding cost)
    that a second streaming INSERT reads back. A parse error stops the stream
    and is re-raised here, inside the caller's transaction. ``schema`` is
    that of the event batches (EVENT_SCHEMA, or some of its columns: the
    others are inserted as NULL).
    """
    # The stream allocates few Python objects that could form cycles, but
    # enough of them to trigger the cyclic collector every few milliseconds.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        _stream(store, trace_id, parser, schema)
    finally:
        if gc_was_enabled:
            gc.enable()


def _stream(store: Store, trace_id: int, parser: BatchProducer, schema: pa.Schema) -> None:
    events_q: queue.Queue[pa.RecordBatch | None] = queue.Queue(maxsize=4)
    failure: list[BaseException] = []
    stop = threading.Event()  # set when the INSERT failed: no point parsing on
    # Locked while it exists: a killed ingest's spool is a leftover (replay.spool).
    with Spool(store.path.parent, ".replay-ingest-") as tmp:
        aux_path = Path(tmp) / "aux.arrows"
        n_aux = [0]

        aux_q: queue.Queue[pa.RecordBatch | None] = queue.Queue(maxsize=4)

        def produce() -> None:
            try:
                for events, aux in parser.batches():
                    if stop.is_set():
                        break
                    if events is not None:
                        events_q.put(events)
                    if aux is not None:
                        aux_q.put(aux)
            except BaseException as exc:
                failure.append(exc)
            finally:
                events_q.put(None)
                aux_q.put(None)

        def spool() -> None:
            # Its own thread: compression releases the GIL and stays off the
            # parser's critical path.
            writer: ipc.RecordBatchStreamWriter | None = None
            try:
                while (aux := aux_q.get()) is not None:
                    if failure:
                        continue
                    if writer is None:
                        writer = ipc.new_stream(
                            aux_path, AUX_SCHEMA, options=ipc.IpcWriteOptions(compression="lz4")
                        )
                    writer.write_batch(aux)
                    n_aux[0] += aux.num_rows
            except BaseException as exc:
                failure.append(exc)
                while aux_q.get() is not None:
                    pass
            finally:
                if writer is not None:
                    writer.close()

        spooler = threading.Thread(target=spool, name="replay-spool", daemon=True)
        spooler.start()
        thread = threading.Thread(target=produce, name="replay-parse", daemon=True)
        thread.start()
        try:
            reader = pa.RecordBatchReader.from_batches(schema, iter(events_q.get, None))
            store.append_stream("events", reader, trace_id)
        finally:
            # On a DuckDB error, stop the producer and unblock it from the queue.
            stop.set()
            while thread.is_alive():
                try:
                    events_q.get(timeout=0.1)
                except queue.Empty:
                    pass
            thread.join()
            spooler.join()
        if failure:
            raise failure[0]
        if n_aux[0]:
            with pa.OSFile(str(aux_path)) as f, ipc.open_stream(f) as spooled:
                store.append_stream("aux_events", spooled, trace_id)


def _zone_spans(zi: pa.Table) -> dict[tuple[int, str], tuple[int, int]]:
    """(node, zone) -> (start_pfn, spanned pages) of the zones that span pages."""
    return {
        (int(r["node"]), str(r["zone"])): (int(r["start_pfn"]), int(r["spanned"]))
        for r in zi.select(["node", "zone", "start_pfn", "spanned"]).to_pylist()
        if r["start_pfn"] is not None and r["spanned"]
    }


def check_same_machine(
    store: Store, trace_id: int, folder: Path, trace_file: Path,
    snaps: dict[str, dict[str, Any]], pfn_min: int | None, pfn_max: int | None,
) -> None:  # fmt: skip
    """A capture's snapshots must be of the machine that recorded its trace: the before-
    and after-zoneinfo list the same zones from the same start pfns (memory onlined
    in between may grow a zone's span, never move its start), and the pfns the trace
    names lie in zones they span (most of them: a stray one is an inconsistency the
    observed replay counts). BadInputError otherwise, naming the file, the line and
    the field."""
    spans = {w: _zone_spans(s["zoneinfo"]) for w, s in snaps.items() if "zoneinfo" in s}
    if "before" in spans and "after" in spans:
        b, a = spans["before"], spans["after"]
        for key in sorted(set(b) | set(a)):
            if key not in b or key not in a or b[key][0] != a[key][0]:
                where = f"node {key[0]} zone {key[1]}"
                was = f"starts at pfn {b[key][0]:#x}" if key in b else "spans no pages"
                now = f"starts at pfn {a[key][0]:#x}" if key in a else "spans no pages"
                raise BadInputError(
                    f"{where} {now} here but {was} in before.zoneinfo: the snapshots are "
                    "not of one machine",
                    file=str(folder / "after.zoneinfo"), field="start_pfn",
                )  # fmt: skip
    if not spans or pfn_min is None or pfn_max is None:
        return
    ranges = sorted({r for sp in spans.values() for r in sp.values()})
    inside = " OR ".join(f"(pfn >= {start} AND pfn < {start + n})" for start, n in ranges)
    row = store.one(
        f"""SELECT count(*) FILTER (WHERE NOT ({inside})), count(*),
                   min(line) FILTER (WHERE NOT ({inside})),
                   arg_min(pfn, line) FILTER (WHERE NOT ({inside}))
            FROM events WHERE trace_id = $t AND pfn IS NOT NULL""",
        {"t": trace_id},
    )
    # a stray pfn is the observed replay's inconsistency (outside_zones); most of the
    # trace's pfns outside every zone is another machine's zoneinfo
    if row is None or not row[0] or 2 * int(row[0]) <= int(row[1]):
        return
    lo = min(start for start, _ in ranges)
    hi = max(start + n for start, n in ranges)
    which = " and ".join(f"{w}.zoneinfo" for w in spans)
    raise BadInputError(
        f"pfn {int(row[3]):#x} is in no zone of {which} (they span pfns [{lo:#x}, "
        f"{hi:#x})), nor are {int(row[0])} of the trace's {int(row[1])} pfns: the snapshots "
        "are not of the machine that recorded the trace",
        file=str(trace_file), line=int(row[2]), field="pfn",
    )  # fmt: skip


def _store_snapshots(store: Store, trace_id: int, snaps: dict[str, dict[str, Any]]) -> None:
    for when, s in snaps.items():
        if "buddyinfo" in s:
            store.append("snap_buddyinfo", s["buddyinfo"], trace_id, snapshot=when)
        if "pagetypeinfo" in s:
            free, blocks, _info = s["pagetypeinfo"]
            store.append("snap_pagetypeinfo", free, trace_id, snapshot=when)
            store.append("snap_pageblocks", blocks, trace_id, snapshot=when)
        if "zoneinfo" in s:
            zi = s["zoneinfo"]
            cols = [c for c in zi.column_names if c in _ZONEINFO_COLUMNS]
            store.append("snap_zoneinfo", zi.select(cols), trace_id, snapshot=when)
        if "vmstat" in s:
            store.append(
                "snap_vmstat", s["vmstat"].select(["key", "value"]), trace_id, snapshot=when
            )
        if "meminfo" in s:
            store.append("snap_meminfo", s["meminfo"], trace_id, snapshot=when)
        if "sysctl" in s:
            store.append("snap_sysctl", s["sysctl"], trace_id, snapshot=when)
        if "kpageflags" in s:
            flags = snapshots.read_kpageflags(s["kpageflags"])
            if "zoneinfo" in s and (spans := _zone_spans(s["zoneinfo"])):
                # /proc/kpageflags has a word per pfn up to max_pfn, past every zone's end
                end = max(start + n for start, n in spans.values())
                if flags.size < end:
                    raise BadInputError(
                        f"{flags.size} pfns, but {when}.zoneinfo's zones end at pfn "
                        f"{end:#x}: not a snapshot of the same machine",
                        file=str(s["kpageflags"]), field="kpageflags",
                    )  # fmt: skip
            store.append(
                "snap_kpageflags", snapshots.kpageflags_runs(flags), trace_id, snapshot=when
            )


_ZONEINFO_COLUMNS = {
    "node",
    "zone",
    "start_pfn",
    "spanned",
    "present",
    "managed",
    "cma",
    "boost",
    "min",
    "low",
    "high",
    "promo",
    "nr_free_pages",
    "protection",
    "pcp_high",
    "pcp_batch",
    "pcp_high_min",
    "pcp_high_max",
    "pcp_count",
    "pcp_cpus",
}


def _ingest_canonical(
    store: Store, trace_id: int, path: Path, kind: str, progress: Progress
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    size = file_size(path)
    progress.start(f"ingest {path.name}", size)
    src = canonical.open_file(path, kind)
    total = src.num_rows

    def on_rows(rows: int) -> None:
        if total:
            progress.advance_to(min(size, size * rows // total))

    row = _store_canonical(
        store,
        trace_id,
        src,
        src.meta,
        source=str(path.resolve()),
        fmt=f"canonical {kind}",
        row_meta={"file_metadata": src.meta, "format": f"canonical {kind}"},
        on_rows=on_rows,
    )
    progress.advance_to(size)
    return row, {"before": {}, "after": {}}


class _EventBatches:
    """A canonical stream as a producer for _stream_into_store (events only, no aux)."""

    def __init__(self, stream: canonical.CanonicalStream) -> None:
        self.stream = stream

    def batches(self) -> Iterator[tuple[pa.RecordBatch | None, pa.RecordBatch | None]]:
        for events in self.stream.batches():
            yield events, None


def _store_canonical(
    store: Store,
    trace_id: int,
    src: canonical.CanonicalFile,
    meta: dict[str, Any],
    *,
    source: str,
    fmt: str,
    row_meta: dict[str, Any],
    on_rows: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Validate and fill in a canonical input, stream it into events; the traces row.

    ``src`` names the input in error messages; ``meta`` is the trace-level
    metadata (kind, kernel, command, zone_start_pfn/zone_pages, page_size,
    lost events); ``row_meta`` is stored as the row's ``meta`` JSON. The
    input is checked chunk by chunk as one streaming INSERT consumes it (see
    _stream_into_store): a bad row stops the INSERT and its error is raised
    here, inside the caller's transaction.
    """
    stream = canonical.CanonicalStream(src, on_rows=on_rows)
    _stream_into_store(store, trace_id, _EventBatches(stream), stream.schema)
    if stream.counts["failed_allocs"]:
        # A request the kernel failed got no pages: nothing can free them.
        row = store.one(
            """SELECT min(f.line) FROM events f JOIN events a USING (trace_id, obj)
               WHERE f.trace_id = $t AND a.failed AND f.op = 'free'""",
            {"t": trace_id},
        )
        if row is not None and row[0] is not None:
            raise BadInputError(
                "a free of an object whose allocation failed (failed = true): it has no pages",
                file=source,
                line=int(row[0]),
                field="obj",
            )
    pfn_min, pfn_max = stream.pfn_min, stream.pfn_max
    zone_start = meta.get("zone_start_pfn")
    zone_pages = meta.get("zone_pages")
    if zone_pages is None:
        zone_start, zone_pages = _zone_from_pfns(pfn_min, pfn_max)
    else:
        zone_start, zone_pages = _check_zone(source, zone_start, zone_pages)
    return {
        "source": source,
        "kind": meta.get("kind", "canonical"),
        "format": fmt,
        "kernel": meta.get("kernel"),
        "command": meta.get("command"),
        "lines": stream.rows,
        "events": stream.rows,
        "aux_events": 0,
        **stream.counts,
        "lost_events": int(meta.get("lost_events") or 0),
        "lost_markers": int(meta.get("lost_markers") or 0),
        "skipped_bad": 0,
        "ts_first": stream.ts_min,
        "ts_last": stream.ts_max,
        "pfn_min": pfn_min,
        "pfn_max": pfn_max,
        "zone_start_pfn": zone_start,
        "zone_pages": zone_pages,
        "page_size": int(meta.get("page_size") or PAGE_SIZE),
        "meta": row_meta,
    }


def _check_zone(source: str, start: Any, pages: Any) -> tuple[int, int]:
    """The zone a canonical file's metadata gives (start pfn, pages), checked: whole
    numbers, at least one page, and no pfn past MAX_PFN."""
    ok = (
        isinstance(pages, int)
        and not isinstance(pages, bool)
        and isinstance(start if start is not None else 0, int)
        and not isinstance(start, bool)
    )
    start = 0 if start is None else start
    if not ok or start < 0 or pages < 1 or start + pages > MAX_PFN + 1:
        raise BadInputError(
            f"the metadata's zone (zone_start_pfn {start!r}, zone_pages {pages!r}) is not a "
            f"range of pfns within 0..{MAX_PFN:#x}",
            file=source,
            field="zone_pages",
        )
    return start, pages


def ingest_table(
    store: Store,
    table: pa.Table,
    meta: dict[str, Any],
    *,
    name: str,
    replace: bool = False,
    progress: Progress | None = None,
    source: str,
) -> dict[str, Any]:
    """Store an in-memory canonical table (e.g. a synthetic scenario) as trace ``name``.

    What ``ingest`` does for a canonical file, from an Arrow table: one
    transaction (on any error nothing is written), validation and filling in
    chunk by chunk by ``canonical.CanonicalStream`` (``source`` names the
    input in its error messages and is stored as the trace's source), one
    streaming INSERT, pairing counts. The
    trace's kind, format, command and zone (``zone_start_pfn``, ``zone_pages``,
    in pages) come from ``meta``, which is stored as the trace row's meta.
    Returns the stored trace row.
    """
    progress = progress or Progress()
    name = check_name(name)
    try:
        with _insert_threads(store, 1), store.transaction():
            trace_id = store.begin_trace(name, replace=replace)
            size = table.nbytes
            progress.start(f"store {name}", size)
            row = _store_canonical(
                store,
                trace_id,
                canonical.from_table(table, Path(source)),
                meta,
                source=source,
                fmt=str(meta.get("format") or "canonical arrow"),
                row_meta=meta,
                on_rows=lambda rows: progress.advance_to(size * rows // max(1, table.num_rows)),
            )
            progress.advance_to(table.nbytes)
            row["name"] = name
            store.insert_trace_row(trace_id, row)
    except BaseException:
        store.discard_if_new()
        raise
    return store.trace_row(trace_id)
