"""``replay run`` and ``replay runs``: replay a stored trace through a model."""

from __future__ import annotations

from typing import Annotated

import typer

from replay.cli.common import DbOpt, FormatOpt, QuietOpt
from replay.cli.output import Format, emit_table, progress_bar, write_json
from replay.engine import PRESETS, load_model
from replay.engine import run as do_run
from replay.store import Store


def run(
    trace: Annotated[str, typer.Argument(help="Trace name or id.")],
    model: Annotated[
        str, typer.Option("--model", "-m", help=f"A preset ({', '.join(PRESETS)}) or a TOML file.")
    ] = "buddy",
    zone_pages: Annotated[
        int | None,
        typer.Option("--zone-pages", help="Zone size in pages (default: the trace's zone)."),
    ] = None,
    every: Annotated[
        int,
        typer.Option("--every", help="Keep the counters of every K-th step (placements always)."),
    ] = 1,
    db: DbOpt = None,
    fmt: FormatOpt = Format.table,
    quiet: QuietOpt = False,
) -> None:
    """Replay a stored trace through a model (what-if: the model places every allocation).

    Prints the run id, the events/s of the replay itself and the outcome counts;
    per-step results go to the steps table. A failed run leaves nothing behind.

    Example: replay run compact-6.18 --model buddy --every 100 --format json
    """
    config = load_model(model)
    with Store(db) as store, progress_bar(quiet) as progress:
        result = do_run(store, trace, config, zone_pages=zone_pages, every=every, progress=progress)
    summary = result.summary()
    if fmt == Format.json:
        write_json(summary)
    else:
        import pyarrow as pa

        emit_table(
            pa.table({"key": list(summary), "value": [str(v) for v in summary.values()]}), fmt
        )


def runs(
    trace: Annotated[str | None, typer.Option("--trace", help="Only runs of this trace.")] = None,
    db: DbOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """List the stored runs with their model, speed and outcome counts.

    Example: replay runs --trace compact-6.18 --format json
    """
    with Store(db, read_only=True) as store:
        where, params = "", {}
        if trace is not None:
            where, params = "WHERE r.trace_id = $t", {"t": store.trace_id(trace)}
        emit_table(
            store.query(
                "SELECT r.run_id, t.name AS trace, r.model, r.events, round(r.events_per_s) AS "
                "events_per_s, r.failures, r.ignored_frees, r.zone_pages, r.free_pages, r.started "
                f"FROM runs r JOIN traces t USING (trace_id) {where} ORDER BY r.run_id",
                params,
            ),
            fmt,
        )
