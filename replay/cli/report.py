"""``replay report`` (a self-contained HTML comparison) and ``replay compare`` (its table)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from replay.cli.common import DbOpt, FormatOpt, QuietOpt
from replay.cli.output import Format, emit_table, print_runs_side_by_side, progress_bar
from replay.errors import UsageError
from replay.report.html import MAX_POINTS, render_report, runs_of_batch, summary_table
from replay.store import Store

RunIdsArg = Annotated[
    list[int] | None,
    typer.Argument(help="Run ids (replay runs lists them).", show_default=False),
]
BatchOpt = Annotated[
    str | None,
    typer.Option("--batch", "-b", help="Every finished run of this batch.", show_default=False),
]
OrderOpt = Annotated[
    int,
    typer.Option(
        "--order",
        help="Order (0-10) of the unusable index, fragmentation index, extfrag_for_order and "
        "of 'free in large blocks'.",
    ),
]


def _run_ids(store: Store, run_ids: list[int] | None, batch: str | None) -> list[int]:
    """The batch's finished runs, then the given ids (duplicates dropped)."""
    ids = runs_of_batch(store, batch) if batch is not None else []
    ids += list(run_ids or [])
    if not ids:
        raise UsageError("no runs given: pass run ids or --batch NAME (replay runs lists them)")
    return list(dict.fromkeys(ids))


def _write_atomic(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (a temporary file beside it, then renamed)."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"{path}: no such directory {folder}")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def report(
    run_ids: RunIdsArg = None,
    batch: BatchOpt = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="HTML file to write (replaced whole).")
    ] = Path("report.html"),
    order: OrderOpt = 9,
    points: Annotated[
        int,
        typer.Option("--points", help=f"Most points per run and series (2-{MAX_POINTS})."),
    ] = 400,
    title: Annotated[
        str | None, typer.Option("--title", help="Page title (default: models and traces).")
    ] = None,
    db: DbOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Write a self-contained HTML report comparing runs (one file, works offline).

    The page holds a summary table (success rate overall and per order,
    failures, degraded successes, extfrag events, pages migrated, scanned,
    evicted and exchanged, final free pages and fragmentation indices), time
    series of free pages, largest free order, unusable index (--order),
    fragmentation score, failures and cost, a buddyinfo heatmap (order x
    time) and a pageblock ownership map per run, and cost against benefit.
    Series are downsampled in SQL to at most --points buckets per run; the
    data, script and style are inlined, the page loads nothing (a
    Content-Security-Policy forbids it). Prints the file's path and size on
    stderr (not with --quiet).

    Example: replay report 1 2 3 -o report.html
    """
    with Store(db, read_only=True) as store:
        ids = _run_ids(store, run_ids, batch)
        with progress_bar(quiet, "parts") as progress:
            html = render_report(store, ids, order, title, points=points, progress=progress)
    _write_atomic(output, html)
    if not quiet:
        size = len(html.encode("utf-8"))
        sys.stderr.write(f"wrote {output} ({size / 1024:.0f} KiB, {len(ids)} runs)\n")


def compare(
    run_ids: RunIdsArg = None,
    batch: BatchOpt = None,
    order: OrderOpt = 9,
    db: DbOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Print runs side by side: the summary table of replay report.

    The table has a column per run and a row per metric, grouped (outcomes,
    fragmentation at the end, cost), each run after the first with its
    difference to the first (percent change of a count, the difference of a
    percentage or index), fitted to the terminal; json and csv have one row per
    run with the raw values: allocations, successes (ok + degraded), failures,
    degraded, success_pct overall, per order (success_pct_oK) and above order
    3, extfrag events, pages migrated/scanned/evicted/exchanged and their sum,
    then the final free pages, share of them in blocks of order >= --order,
    largest free order, unusable and fragmentation index (thousandths),
    extfrag_for_order and fragmentation score (percent) and mixed pageblocks.

    Example: replay compare 1 2 3 --format json
    """
    with Store(db, read_only=True) as store:
        ids = _run_ids(store, run_ids, batch)
        table = summary_table(store, ids, order)
    if fmt == Format.table:
        print_runs_side_by_side(table)
    else:
        emit_table(table, fmt)
