"""``replay record``: record a capture on this machine and ingest it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from replay.cli.common import DbOpt, FormatOpt, QuietOpt
from replay.cli.output import Format, emit_sections, progress_bar
from replay.errors import ReplayError, TraceExistsError
from replay.store import Store, check_name, default_db_path
from replay.trace.ingest import default_name
from replay.trace.ingest import ingest as do_ingest
from replay.trace.record import (
    DEFAULT_BUFFER_KB,
    DEFAULT_DURATION_S,
    compress_trace,
    default_out_dir,
    parse_events,
    record_capture,
)


def _check_name_free(db: Path | None, name: str, replace: bool) -> None:
    """Refuse a taken name before recording, not after (the store is only read)."""
    path = db if db is not None else default_db_path()
    if replace or not path.exists():
        return
    with Store(path, read_only=True) as store:
        if store.exists(name):
            raise TraceExistsError(
                f"a trace named {name!r} exists in {store.path}; use --replace to overwrite "
                "it, or --name"
            )


def record(
    command: Annotated[
        list[str] | None,
        typer.Argument(
            help="Workload command, after '--' (default: sleep --duration seconds).",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", "-n", help="Trace name (default: the capture folder's name)."),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(
            "--duration",
            "-d",
            min=0.0,
            help=f"Seconds to record without a command (default {DEFAULT_DURATION_S:g}); "
            "with a command, a time limit after which it is stopped.",
            show_default=False,
        ),
    ] = None,
    events: Annotated[
        str | None,
        typer.Option(
            "--events",
            "-e",
            help="Comma list of 'subsystem:event' or 'subsystem' replacing the default set: "
            "every kmem page event (pfn level, watermark changes), compaction, migrate "
            "(with remove_migration_pte's new pfns), kswapd wake/sleep and direct reclaim "
            "('default' stands for it: default,filemap). "
            "Events this kernel lacks are skipped and reported.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Capture folder to create (default: ./capture-<timestamp>).",
            show_default=False,
        ),
    ] = None,
    buffer_kb: Annotated[
        int,
        typer.Option(
            "--buffer-kb",
            min=64,
            help="Ring buffer per CPU, KiB (capped at MemAvailable/8 over all CPUs).",
        ),
    ] = DEFAULT_BUFFER_KB,
    text: Annotated[
        bool,
        typer.Option(
            "--text",
            help="Read the text trace_pipe into OUT/trace.txt instead of each CPU's "
            "trace_pipe_raw pages into OUT/trace.dat.",
        ),
    ] = False,
    compress: Annotated[
        bool, typer.Option("--compress", help="With --text: store the trace as trace.txt.zst.")
    ] = False,
    stacks: Annotated[
        bool,
        typer.Option(
            "--stacks",
            help="Record the kernel stack of every page allocation (a stacktrace trigger on "
            "kmem:mm_page_alloc): the callsites table, 'replay show TRACE --by callsite'. "
            "About 100 bytes more per allocation in the ring buffer.",
        ),
    ] = False,
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite a trace of the same name.")
    ] = False,
    db: DbOpt = None,
    fmt: FormatOpt = Format.table,
    quiet: QuietOpt = False,
) -> None:
    """Record a capture on this machine (root): page events plus /proc snapshots, then ingest it.

    Uses its own ftrace instance (the global tracer is untouched, the instance
    is removed on exit, error, Ctrl-C or SIGTERM). Enables the page allocator,
    compaction, migration and kswapd events that exist, copies each CPU's
    ring-buffer pages from per_cpu/cpuN/trace_pipe_raw (a reader per CPU) into
    OUT/trace.dat (trace-cmd's format; --text: trace_pipe into OUT/trace.txt),
    and takes before/after snapshots of buddyinfo,
    pagetypeinfo, zoneinfo, vmstat, meminfo and kpageflags between the
    'snapshot before/after begin/end' markers that replay validate uses.

    The workload is the command after '--' (its stdout goes to stderr), run
    in a session of its own to its end or stopped at --duration (with every
    process it started); without one, a sleep of --duration seconds. A
    failing command still gives a complete capture, ingested, but the exit
    status is 1. Mounts tracefs if needed; the mount point is
    $REPLAY_TRACEFS or /sys/kernel/tracing. Lost events: the kernel's per-CPU
    overrun and dropped counts (lost_events_kernel) and the '[LOST N EVENTS]'
    lines of the text (lost_events).

    Example: replay record --name dd --out cap-dd -- dd if=/dev/zero of=/dev/null bs=1M count=200
    """
    argv = list(command or [])
    wanted = parse_events(events)
    folder = out if out is not None else default_out_dir()
    trace_name = check_name(name if name is not None else default_name(folder))
    _check_name_free(db, trace_name, replace)

    def status(msg: str) -> None:
        if not quiet:
            sys.stderr.write(f"record: {msg}\n")
            sys.stderr.flush()

    try:
        res = record_capture(
            folder,
            command=argv,
            duration_s=duration,
            events=wanted,
            buffer_kb=buffer_kb,
            status=status,
            raw=not text,
            stacks=("kmem:mm_page_alloc",) if stacks else (),
        )
    except KeyboardInterrupt:
        if folder.is_dir():
            sys.stderr.write(
                f"record: interrupted; tracing stopped and its instance removed; the partial "
                f"capture in {folder} was not ingested\n"
            )
        raise
    status(f"{res.trace_bytes / 1e6:.1f} MB of trace, {res.lost_events_kernel} events lost")
    if res.lost_events_kernel:
        sys.stderr.write(
            f"record: warning: the kernel dropped {res.lost_events_kernel} events (ring buffer "
            f"full); a larger --buffer-kb (now {res.buffer_kb_per_cpu} KiB per CPU) helps\n"
        )
    if compress and text:
        status("compressing trace.txt")
        compress_trace(folder)
    try:
        with Store(db) as store, progress_bar(quiet) as progress:
            row = do_ingest(store, folder, name=trace_name, replace=replace, progress=progress)
    except ReplayError:
        sys.stderr.write(
            f"record: the capture is kept in {folder}; once fixed, ingest it with: "
            f"replay ingest {folder} --name {trace_name}\n"
        )
        raise
    summary: dict[str, Any] = {
        "name": row.get("name"),
        "trace_id": row.get("trace_id"),
        "out_dir": res.out_dir,
        "kernel": res.kernel,
        "workload": res.workload,
        "workload_exit": res.workload_exit,
        "timed_out": res.timed_out,
        "workload_s": res.workload_s,
        "lines": row.get("lines"),
        "events": row.get("events"),
        "aux_events": row.get("aux_events"),
        "lost_events": row.get("lost_events"),
        "lost_events_kernel": res.lost_events_kernel,
        "trace_bytes": res.trace_bytes,
        "drained": res.drained,
        "buffer_kb_per_cpu": res.buffer_kb_per_cpu,
        "events_enabled": len(res.events_enabled),
        "events_skipped": res.events_skipped,
        "stacks_armed": res.stacks_armed,
        "snapshot_files": res.snapshot_files,
        "kpageflags_pages": res.kpageflags_pages,
        "before_snapshot_s": res.before_snapshot_s,
        "after_snapshot_s": res.after_snapshot_s,
    }
    emit_sections({"recorded": summary}, fmt)
    if res.workload_exit not in (None, 0) and not res.timed_out:
        raise ReplayError(
            f"the workload exited with status {res.workload_exit}; the capture was recorded "
            f"and ingested as {trace_name!r}"
        )
