"""``replay generate``: store a deterministic synthetic trace (a named scenario)."""

from __future__ import annotations

from typing import Annotated

import typer

from replay.cli.common import DbOpt, FormatOpt, QuietOpt
from replay.cli.output import Format, emit_sections, progress_bar
from replay.scenarios.workloads import MAX_ZONE_PAGES, MIN_ZONE_PAGES, SCENARIOS, ZONE_ALIGN
from replay.scenarios.workloads import generate as make_events
from replay.store import Store
from replay.trace.ingest import ingest_table

SUMMARY_KEYS = (
    "trace_id", "name", "kind", "events", "allocs", "frees", "live_at_end",
    "zone_start_pfn", "zone_pages", "ts_first", "ts_last",
)  # fmt: skip


def generate(
    scenario: Annotated[str, typer.Argument(help=f"One of: {', '.join(SCENARIOS)}.")],
    seed: Annotated[int, typer.Option("--seed", "-s", help="Random seed (0 or more).")] = 0,
    events: Annotated[
        int | None,
        typer.Option(
            "--events",
            "-e",
            help="Number of events (default: the scenario's, scaled with the zone).",
            show_default=False,
        ),
    ] = None,
    zone_pages: Annotated[
        int | None,
        typer.Option(
            "--zone-pages",
            help=f"Zone size in pages, a multiple of {ZONE_ALIGN} from {MIN_ZONE_PAGES} to "
            f"{MAX_ZONE_PAGES} (default: the scenario's).",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Trace name (default: the scenario).")
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite a trace of the same name.")
    ] = False,
    db: DbOpt = None,
    fmt: FormatOpt = Format.table,
    quiet: QuietOpt = False,
) -> None:
    # The docstring is built below, from the scenario table.
    table, meta = make_events(scenario, seed=seed, events=events, zone_pages=zone_pages)
    with Store(db) as store, progress_bar(quiet) as progress:
        row = ingest_table(
            store,
            table,
            meta,
            name=name or scenario,
            replace=replace,
            progress=progress,
            source=f"<scenario {scenario} seed {seed}>",
        )
    summary = {k: row.get(k) for k in SUMMARY_KEYS}
    first, last = row.get("ts_first"), row.get("ts_last")
    summary["ts_span_s"] = (last - first) / 1e9 if first is not None and last is not None else None
    summary["scenario"] = scenario
    summary["seed"] = seed
    summary["peak_pages"] = meta["peak_pages"]
    emit_sections({"generated": summary}, fmt)


def _help() -> str:
    lines = [
        "Generate a deterministic synthetic trace and store it (kind 'synthetic').",
        "",
        "The same scenario, seed, --events and --zone-pages always give the same "
        "events. The trace records its zone (start pfn 0, --zone-pages pages), so "
        "'replay run NAME' needs no --zone-pages. Every free frees a whole live "
        "object and the allocated pages never exceed the zone. Scenarios (default "
        "zone pages / events; events scale with the zone; see docs/scenarios.md):",
        "",
    ]
    for sc in SCENARIOS.values():
        ev = "from the zone" if sc.auto_events else f"{sc.events}"
        lines += [f"{sc.name} ({sc.zone_pages} pages / {ev}): {sc.summary}.", ""]
    lines.append(
        "Example: replay generate kernel-build --seed 1 && replay run kernel-build --model mobility"
    )
    return "\n".join(lines)


generate.__doc__ = _help()
