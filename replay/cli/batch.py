"""``replay batch``: traces x models from a TOML spec, on a process pool or a Dask cluster."""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import Annotated

import typer

from replay.cli.common import DbOpt, FormatOpt, QuietOpt
from replay.cli.output import Format, emit_table, progress_bar, write_json
from replay.store import default_db_path


class Executor(enum.StrEnum):
    """Where the runs go."""

    local = "local"
    dask = "dask"


def batch(
    spec: Annotated[Path, typer.Argument(help="The batch spec (TOML; see examples/compare.toml).")],
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            help="Local worker processes (default: the number of CPUs).",
            show_default=False,
        ),
    ] = None,
    executor: Annotated[
        Executor,
        typer.Option("--executor", help="local: a process pool; dask: an existing cluster."),
    ] = Executor.local,
    address: Annotated[
        str | None,
        typer.Option("--address", help="The Dask scheduler, tcp://HOST:PORT (--executor dask)."),
    ] = None,
    workdir: Annotated[
        Path | None,
        typer.Option(
            "--workdir",
            help="Trace exports and run partitions (default: <db file>.batch/<batch name>/). "
            "With a remote Dask cluster: a path shared by every worker.",
            show_default=False,
        ),
    ] = None,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace", help="Delete the batch's runs and run its spec again (a changed spec)."
        ),
    ] = False,
    db: DbOpt = None,
    fmt: FormatOpt = Format.table,
    quiet: QuietOpt = False,
) -> None:
    """Replay every trace of a spec through every model of it, in parallel, into the store.

    The spec (TOML) names the batch, options for every run (table run: every,
    pageblock_every, fill_from_snapshot, start, zone_pages), the traces
    (array traces: scenario + seed/seeds + events + zone_pages, generated once;
    name, a stored trace; or file, ingested once; paths relative to the spec)
    and the models (array models: preset, or file, a model TOML). Each run goes to
    a worker process (--jobs N) or a Dask cluster (--executor dask --address
    tcp://HOST:PORT); its results are loaded into the store in one transaction
    and linked to the batch (tables batches, batch_runs).

    Re-running a batch skips its finished runs; a changed spec under the same
    name needs --replace. A failing run is reported and the others go on.
    Prints one row per run: key (trace|model), trace, model, run_id, status
    (done, recovered, skipped, failed), events_per_s (the replay kernel),
    wall_s (the worker's load + replay + export, s), peak_rss_mib (the worker
    process's peak, MiB), error. Exit code 1 when a run failed.

    Example: replay batch examples/compare.toml --jobs 2
    """
    from replay.batch.sweep import run_batch

    path = db if db is not None else default_db_path()
    with progress_bar(quiet, "runs") as progress:
        result = run_batch(
            path,
            spec,
            jobs=jobs,
            executor=executor.value,
            address=address,
            workdir=workdir,
            replace=replace,
            progress=progress,
        )
    if fmt == Format.json:
        write_json(result.summary())
    else:
        emit_table(result.table(), fmt)
    if not quiet:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(result.counts().items()))
        sys.stderr.write(
            f"batch {result.name}: {counts or 'no runs'} in {result.wall_s:.1f} s ({path})\n"
        )
    if result.failed:
        raise typer.Exit(1)
