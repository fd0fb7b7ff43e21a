"""``replay run``: replay a stored trace through a model (``replay runs`` lists them:
replay/cli/inspect.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from replay.cli.common import DbOpt, FormatOpt, QuietOpt
from replay.cli.output import Format, emit_table, progress_bar, write_json
from replay.engine.whatif import run as do_run
from replay.models.config import PRESETS, load_model
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
    pageblock_every: Annotated[
        int | None,
        typer.Option(
            "--pageblock-every",
            help="Snapshot every pageblock's type and pages every K steps "
            "(default: about 100 snapshots; 0: first and last only).",
        ),
    ] = None,
    checkpoint_every: Annotated[
        int | None,
        typer.Option(
            "--checkpoint-every",
            min=0,
            help="Store the model's whole state after about every K events, so replay "
            "explain forks from the nearest one (default: eight over a run of more than "
            "two million events; 0: none).",
            show_default=False,
        ),
    ] = None,
    observed: Annotated[
        bool,
        typer.Option(
            "--observed",
            help="Observed replay: the kernel's real placements, the state rebuilt from the "
            "capture's kpageflags and recorded events (no model).",
        ),
    ] = False,
    start: Annotated[
        str,
        typer.Option(
            "--start",
            help="Initial state: empty (a booted zone) or observed (the kernel's real state, "
            "rebuilt from the capture's kpageflags and events, just before --at).",
        ),
    ] = "empty",
    at: Annotated[
        int | None,
        typer.Option(
            "--at",
            min=0,
            help="With --start observed: fork from the kernel's state just before event SEQ "
            "(default: the first event after the before-snapshot).",
            show_default=False,
        ),
    ] = None,
    until: Annotated[
        int | None,
        typer.Option(
            "--until",
            min=1,
            help="Stop before event SEQ (a short fork is cheap).",
            show_default=False,
        ),
    ] = None,
    fill_from_snapshot: Annotated[
        bool,
        typer.Option(
            "--fill-from-snapshot",
            help="Start as full as the machine was: allocate background pages by migratetype "
            "from the trace's before-pagetypeinfo.",
        ),
    ] = False,
    db: DbOpt = None,
    fmt: FormatOpt = Format.table,
    quiet: QuietOpt = False,
) -> None:
    """Replay a stored trace through a model (what-if: the model places every allocation).

    Models: buddy (plain binary buddy), mobility (grouping pages by mobility,
    Linux 6.10+ claim/steal), mobility+pcp (with per-CPU lists), the
    defragmentation presets (buddy+compaction, mobility+compaction,
    mobility+proactive, mobility+kswapd, mobility+kswapd-targeted,
    mobility+vcompound, mobility+exchange, mobility+defrag, mobility+pools),
    kernel (the closest model of the recorded kernel: pcp with 6.7+ tuning, each
    request in the zone the kernel chose, direct compaction; docs/fidelity.md),
    kernel+zonelist (the same choosing the zone itself: Normal, then DMA32), or
    a TOML file: model = "mobility" plus parameters (pcp, nofragment, pcp_batch,
    pcp_high, pcp_tuning, pcp_high_max, ncpus, min_free_kbytes,
    watermark_scale_factor: docs/mobility.md; zone_choice, recorded_compaction:
    docs/fidelity.md;
    compaction, compact_at, kswapd, vcompound_order, pressure:
    docs/compaction.md; exchange_at, contig_at, defrag_thresholds, pool_order:
    docs/defrag.md).

    Prints the run id, the events/s of the replay itself and the outcome counts;
    per-step results go to the steps table, fallbacks to extfrag, pageblock
    snapshots to pageblocks. A failed run leaves nothing behind. --observed
    stores the kernel's own placements and the rebuilt state instead
    (docs/observed.md), for side-by-side SQL with modelled runs.

    --start observed --at SEQ forks the model from the kernel's real state just
    before event SEQ (each event is applied once: the rebuild up to SEQ, the
    model from SEQ on); --until SEQ stops early.

    Example: replay run compact-6.18 --model mobility+pcp --every 100 --format json
    """
    if observed:
        from replay.engine.observed import run_observed

        with Store(db) as store:
            summary = run_observed(store, trace, every=every, pageblock_every=pageblock_every)
        _emit_summary(summary, fmt)
        return
    config = load_model(model)
    with Store(db) as store, progress_bar(quiet, "events") as progress:
        result = do_run(
            store, trace, config, zone_pages=zone_pages, every=every,
            pageblock_every=pageblock_every, fill_from_snapshot=fill_from_snapshot, start=start,
            at=at, until=until, progress=progress, checkpoint_every=checkpoint_every,
        )  # fmt: skip
    for w in result.warnings:  # what the model needed that the trace lacks
        typer.echo(f"warning: {w}", err=True)
    _emit_summary(result.summary(), fmt)


def _emit_summary(summary: dict, fmt: Format) -> None:
    if fmt == Format.json:
        write_json(summary)
    else:
        import pyarrow as pa

        emit_table(
            pa.table({"key": list(summary), "value": [str(v) for v in summary.values()]}), fmt
        )
