"""``replay traces``, ``replay runs``, ``replay show``, ``replay export``: look at the store.

``traces`` and ``runs`` are light commands (DuckDB only): pyarrow and the trace
readers are imported inside the commands that need them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from replay.cli.common import DbOpt, FormatOpt
from replay.cli.output import Format, Rows, emit_sections, emit_table
from replay.errors import UsageError
from replay.store import Store

if TYPE_CHECKING:
    import pyarrow as pa


def traces(db: DbOpt = None, fmt: FormatOpt = Format.table) -> None:
    """List the stored traces with their sizes and pairing counts.

    Example: replay traces --format json
    """
    with Store(db, read_only=True) as store:
        emit_table(
            Rows(*store.query_rows(
                "SELECT trace_id, name, kind, kernel, lines, events, allocs, frees, "
                "preexisting, live_at_end, failed_allocs, lost_events, "
                "round((ts_last - ts_first) / 1e9, 3) AS seconds, created "
                "FROM traces ORDER BY trace_id"
            )),
            fmt,
        )  # fmt: skip


def runs(
    trace: Annotated[str | None, typer.Option("--trace", help="Only runs of this trace.")] = None,
    db: DbOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """List the stored runs with their model, the seqs a run from the kernel's state
    starts and ends at (start_seq, end_seq) and the run a fork started from
    (forked_from: explain's counterfactuals), speed and outcome counts.

    Example: replay runs --trace compact-6.18 --format json
    """
    with Store(db, read_only=True) as store:
        where, params = "", {}
        if trace is not None:
            where, params = "WHERE r.trace_id = $t", {"t": store.trace_id(trace)}
        emit_table(
            Rows(*store.query_rows(
                "SELECT r.run_id, t.name AS trace, "
                "coalesce(json_extract_string(r.config, '$.preset'), r.model) AS model, "
                "r.start_seq, r.end_seq, r.forked_from, "
                "r.events, round(r.events_per_s) AS events_per_s, r.failures, r.ignored_frees, "
                "r.fallbacks, r.zone_pages, r.free_pages, r.started "
                f"FROM runs r JOIN traces t USING (trace_id) {where} ORDER BY r.run_id",
                params,
            )),
            fmt,
        )  # fmt: skip


# per_process's columns as the table names them (the JSON and CSV keep the query's names)
PROCESS_HEADERS = {
    "pages_allocd": "allocd", "allocd_under_lock": "allocd_locked", "freed_direct": "freed",
    "freed_pagevec": "freed_pagevec", "pcpu_drain_pages": "drained_pages",
    "pcpu_drains": "drains", "pcpu_refills": "refills", "extfrag_fallback": "extfrag",
    "extfrag_causing": "extfrag_causing", "extfrag_changed": "extfrag_changed",
    "extfrag_severe": "extfrag_severe", "extfrag_moderate": "extfrag_moderate",
}  # fmt: skip


# the compaction table's columns a person reads first (the rest follow while they fit)
COMPACTION_FIRST = ("comm", "pid", "run", "mode", "status", "zone_start", "begin_seq",
                    "migrate_scanned", "free_scanned", "migrated", "migrate_failed")  # fmt: skip


def processes_for_people(processes: pa.Table, top: int | None) -> tuple[pa.Table, str]:
    """The per-process table as ``replay show`` prints it: the ``top`` processes by pages
    allocated (None: all; the query orders them so), without the columns that are 0
    for every process, the columns named shortly; and a line saying what was left out."""
    import pyarrow.compute as pc

    total = processes.num_rows
    shown = processes if top is None else processes.slice(0, top)
    zero = [
        c
        for c in processes.column_names[1:]
        if pc.max(processes[c]).as_py() in (0, None)  # over all processes, not only the shown
    ]
    shown = shown.drop_columns(zero).rename_columns(
        [PROCESS_HEADERS.get(c, c) for c in shown.column_names if c not in zero]
    )
    what = [f"{shown.num_rows:,} of {total:,} processes, by pages allocated"]
    if shown.num_rows < total:
        what.append("--top N or --all for more")
    if zero:
        what.append(f"0 for all: {', '.join(zero)}")
    return shown, "; ".join(what) + "; --format csv has every process and column"


def _show_by(trace: str, by: str, sort: str, db: Path | None, fmt: Format) -> None:
    """``replay show TRACE --by callsite``: the named query callsites."""
    if by != "callsite":
        raise UsageError(f"--by {by!r}: the one grouping is 'callsite'")
    from replay.analysis import queries

    with Store(db, read_only=True) as store:
        name = store.trace_row(store.trace_id(trace))["name"]
        table = queries.run(store, "callsites", {"trace": name, "sort": sort})
    if not table.num_rows:
        raise UsageError(
            f"trace {name!r} has no call sites: record it with 'replay record --stacks', or "
            "with a stacktrace trigger on kmem:mm_page_alloc (trace.dat, ftrace text)"
        )
    emit_table(table, fmt, title="call sites")


def show(
    trace: Annotated[str, typer.Argument(help="Trace name or id.")],
    top: Annotated[
        int,
        typer.Option("--top", min=1, help="Processes shown in the table (most pages allocated)."),
    ] = 10,
    all_processes: Annotated[
        bool, typer.Option("--all", help="Every process in the table (--top is ignored).")
    ] = False,
    by: Annotated[
        str | None,
        typer.Option(
            "--by",
            help="'callsite': the allocations by call site, order, migratetype and GFP flags "
            "instead (perf kmem --page --caller; needs stacks: replay record --stacks), "
            "sorted by --sort.",
            show_default=False,
        ),
    ] = None,
    sort: Annotated[
        str,
        typer.Option(
            "--sort",
            help="With --by callsite: perf kmem's --page sort keys, a comma "
            "list of page, callsite, hit, bytes, order, migtype, gfp.",
        ),
    ] = "bytes,hit",
    db: DbOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Summarise one trace: counts, event types, order and migratetype histograms,
    pairing and lost events, the per-process table of the kernel's
    trace-pagealloc-postprocess.pl, and any real compaction it recorded.

    The table shows the --top processes by pages allocated, with the columns that
    fit the terminal ($COLUMNS); --format json and csv have every process and column.

    Example: replay show compact --top 5; replay show rec --by callsite --sort hit
    """
    if by is not None:
        _show_by(trace, by, sort, db, fmt)
        return
    from replay.analysis import queries
    from replay.analysis.traces import EVENT_TYPES_SQL, MIGRATETYPES_SQL, ORDERS_SQL, SUMMARY_SQL

    with Store(db, read_only=True) as store:
        tid = store.trace_id(trace)
        name = store.trace_row(tid)["name"]
        p = {"id": tid}
        summary = store.query(SUMMARY_SQL, p).to_pylist()[0]
        processes = queries.run(store, "per_process", {"trace": name})
        compaction = queries.run(store, "compaction", {"trace": name})
        sections: dict[str, Any] = {
            "summary": summary,
            "event types": store.query(EVENT_TYPES_SQL, p),
            "orders": store.query(ORDERS_SQL, p),
            "migratetypes": store.query(MIGRATETYPES_SQL, p),
        }
    if fmt != Format.table:
        sections["processes"] = processes
        if compaction.num_rows:
            sections["compaction"] = compaction
        emit_sections(sections, fmt)
        return
    emit_sections(sections, fmt)
    shown, note = processes_for_people(processes, None if all_processes else top)
    emit_table(shown, fmt, title="processes", note=note, records_max_rows=0)
    if compaction.num_rows:
        sys.stdout.write("\n")
        first = [c for c in COMPACTION_FIRST if c in compaction.column_names]
        rest = [c for c in compaction.column_names if c not in first]
        emit_table(compaction.select(first + rest), fmt, title="compaction")


def export(
    trace: Annotated[str, typer.Argument(help="Trace name or id.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Parquet file to write.")],
    db: DbOpt = None,
) -> None:
    """Write a trace's canonical event table to Parquet, with its metadata in the schema.

    The file ingests back unchanged (replay ingest FILE).

    Example: replay export compact -o compact.parquet
    """
    import pyarrow.parquet as pq

    from replay.trace.canonical import with_metadata
    from replay.trace.schema import CANONICAL_COLUMNS

    with Store(db, read_only=True) as store:
        row = store.trace_row(trace)
        cols = ", ".join(f'"{c}"' for c in (*CANONICAL_COLUMNS, "line", "batched"))
        table = store.query(
            f"SELECT {cols} FROM events WHERE trace_id = $id ORDER BY seq", {"id": row["trace_id"]}
        )
    keep = ("kind", "format", "kernel", "command", "zone_start_pfn", "zone_pages", "page_size",
            "lost_events", "lost_markers", "source")  # fmt: skip
    table = with_metadata(table, {k: row.get(k) for k in keep})
    tmp = output.with_name(output.name + ".tmp")
    pq.write_table(table, tmp)
    tmp.replace(output)
