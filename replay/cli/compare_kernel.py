"""``replay compare-kernel-compaction``: the kernel's real compact_memory next to the model's."""

from __future__ import annotations

from typing import Annotated, Any

import pyarrow as pa
import typer

from replay.cli.common import DbOpt, FormatOpt
from replay.cli.output import Format, emit_sections, write_json
from replay.engine.kernel_compaction import compare
from replay.store import Store

# summary keys shown in the table and CSV output (all of them are in the JSON)
SUMMARY_KEYS = ("trace", "zone", "zone_start_pfn", "zone_pages", "begin_line", "end_line",
                "duration_ms", "compacting_pid", "kernel_status", "model_result",
                "pages_by_source", "movable_unit_pages_by_order", "pageblocks_snapshot",
                "allocator_events_during", "pcp_pages_at_end_rebuilt")  # fmt: skip


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows of equal keys as an Arrow table (columns in the first row's key order)."""
    return pa.table({k: [r[k] for r in rows] for k in rows[0]})


def compare_kernel_compaction(
    trace: Annotated[str, typer.Argument(help="Trace name or id (a capture with snapshots).")],
    zone: Annotated[str, typer.Option(help="Zone whose compaction to compare.")] = "Normal",
    db: DbOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Run the one-shot compaction model from the state the kernel's compact_memory began in.

    Rebuilds the observed buddy state at the zone's mm_compaction_begin event
    (before-kpageflags plus the recorded events), runs the model's whole-zone
    sync compaction on it, and prints the model's result next to the
    kernel's: pages migrated and not migrated, scanner start and end pfns,
    pages scanned, free pages and free blocks per order at the end (model,
    observed replay at mm_compaction_end, buddyinfo after); then the model
    under other starting assumptions, and each gap explained. See
    docs/kernel-compaction.md.

    Example: replay compare-kernel-compaction compact-6.18 --format json
    """
    with Store(db, read_only=True) as store:
        result = compare(store, trace, zone)
    if fmt == Format.json:
        write_json(result)
        return
    emit_sections(
        {
            "compaction": {k: result["summary"][k] for k in SUMMARY_KEYS},
            "comparison": _table(result["rows"]),
            "variants": _table(result["variants"]),
            "gaps": _table(result["gaps"]),
        },
        fmt,
    )
