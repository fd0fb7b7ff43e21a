"""``replay ingest``: bring a trace into the store."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import pyarrow as pa
import typer

from replay.cli.common import DbOpt, FormatOpt, QuietOpt
from replay.cli.output import Format, emit_sections, progress_bar
from replay.store import Store
from replay.trace.ftrace import DEFAULT_MAX_BAD_FRACTION
from replay.trace.ingest import ingest as do_ingest

SUMMARY_KEYS = (
    "trace_id", "name", "kind", "format", "kernel", "lines", "events", "aux_events",
    "allocs", "frees", "partial_frees", "preexisting", "live_at_end", "failed_allocs",
    "batched", "lost_events", "lost_markers", "skipped_bad", "zone_start_pfn", "zone_pages",
)  # fmt: skip


def ingest(
    path: Annotated[
        Path,
        typer.Argument(
            help="ftrace text (.gz/.zst/.xz), capture folder, or canonical Parquet/Arrow/CSV."
        ),
    ],
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Trace name (default: from the path).")
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite a trace of the same name.")
    ] = False,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Skip and count malformed lines instead of failing.")
    ] = False,
    max_bad_fraction: Annotated[
        float,
        typer.Option(
            "--max-bad-fraction",
            min=0.0,
            max=1.0,
            help="With --skip-bad: refuse the trace when more than this fraction of its "
            "non-blank lines is malformed.",
        ),
    ] = DEFAULT_MAX_BAD_FRACTION,
    db: DbOpt = None,
    fmt: FormatOpt = Format.table,
    quiet: QuietOpt = False,
) -> None:
    """Ingest a trace: ftrace text of any kernel era, a capture folder, or a canonical file.

    Frees are paired with allocations by pfn; batched duplicates, partial frees,
    pre-existing pages and lost events are detected and counted. The whole
    ingest is one transaction: on error the database is left as it was.
    With --skip-bad, the malformed lines skipped are reported on stderr.

    Example: replay ingest traces/compact-6.18 --name compact
    """
    with Store(db) as store, progress_bar(quiet) as progress:
        row = do_ingest(
            store,
            path,
            name=name,
            replace=replace,
            skip_bad=skip_bad,
            max_bad_fraction=max_bad_fraction,
            progress=progress,
        )
    summary = {k: row.get(k) for k in SUMMARY_KEYS}
    meta = row.get("meta") or {}
    skipped = int(row.get("skipped_bad") or 0)
    if skipped:
        lines = int(row.get("lines") or 0) - int(meta.get("ignored_lines") or 0)
        first = (meta.get("bad_examples") or ["?"])[0]
        sys.stderr.write(
            f"ingest: warning: skipped {skipped} malformed line(s) of {lines} "
            f"({100 * skipped / max(1, lines):.1f}%); first: {first}\n"
        )
    sections: dict[str, object] = {"ingested": summary}
    if meta.get("bad_examples"):
        sections["skipped"] = pa.table({"example": meta["bad_examples"]})
    emit_sections(sections, fmt)  # type: ignore[arg-type]
