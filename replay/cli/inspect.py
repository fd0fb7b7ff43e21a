"""``replay traces``, ``replay show``, ``replay export``: look at stored traces."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pyarrow.parquet as pq
import typer

from replay.analysis import queries
from replay.analysis.traces import EVENT_TYPES_SQL, MIGRATETYPES_SQL, ORDERS_SQL, SUMMARY_SQL
from replay.cli.common import DbOpt, FormatOpt
from replay.cli.output import Format, emit_sections, emit_table
from replay.store import Store
from replay.trace.canonical import with_metadata
from replay.trace.schema import CANONICAL_COLUMNS


def traces(db: DbOpt = None, fmt: FormatOpt = Format.table) -> None:
    """List the stored traces with their sizes and pairing counts.

    Example: replay traces --format json
    """
    with Store(db, read_only=True) as store:
        emit_table(
            store.query(
                "SELECT trace_id, name, kind, kernel, lines, events, allocs, frees, "
                "preexisting, live_at_end, failed_allocs, lost_events, "
                "round((ts_last - ts_first) / 1e9, 3) AS seconds, created "
                "FROM traces ORDER BY trace_id"
            ),
            fmt,
        )


def show(
    trace: Annotated[str, typer.Argument(help="Trace name or id.")],
    db: DbOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Summarise one trace: counts, event types, order and migratetype histograms,
    pairing and lost events, the per-process table of the kernel's
    trace-pagealloc-postprocess.pl, and any real compaction it recorded.

    Example: replay show compact --format json
    """
    with Store(db, read_only=True) as store:
        tid = store.trace_id(trace)
        name = store.trace_row(tid)["name"]
        p = {"id": tid}
        summary = store.query(SUMMARY_SQL, p).to_pylist()[0]
        sections = {
            "summary": summary,
            "event types": store.query(EVENT_TYPES_SQL, p),
            "orders": store.query(ORDERS_SQL, p),
            "migratetypes": store.query(MIGRATETYPES_SQL, p),
            "processes": queries.run(store, "per_process", {"trace": name}),
        }
        compaction = queries.run(store, "compaction", {"trace": name})
        if compaction.num_rows:
            sections["compaction"] = compaction
        emit_sections(sections, fmt)  # type: ignore[arg-type]


def export(
    trace: Annotated[str, typer.Argument(help="Trace name or id.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Parquet file to write.")],
    db: DbOpt = None,
) -> None:
    """Write a trace's canonical event table to Parquet, with its metadata in the schema.

    The file ingests back unchanged (replay ingest FILE).

    Example: replay export compact -o compact.parquet
    """
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
