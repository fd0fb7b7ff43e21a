"""``replay validate``: the observed (rebuilt) buddy state against the kernel's own."""

from __future__ import annotations

from typing import Annotated

import pyarrow as pa
import typer

from replay.cli.common import DbOpt, FormatOpt
from replay.cli.output import Format, emit_sections, write_json
from replay.engine.observed import NF
from replay.engine.observed import validate as do_validate
from replay.store import Store


def validate(
    trace: Annotated[str, typer.Argument(help="Trace name or id (a capture with snapshots).")],
    db: DbOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Rebuild the real buddy state from the recorded pfns and compare it with the kernel.

    Starts from the before-snapshot's kpageflags, applies the recorded
    allocator, pcp and compaction events up to the 'snapshot after begin'
    marker, and prints each zone's free pages and free blocks per order next
    to the after-snapshot's buddyinfo, with the differences, and the
    inconsistencies counted on the way. See docs/observed.md.

    Example: replay validate compact-6.18 --format json
    """
    with Store(db, read_only=True) as store:
        result = do_validate(store, trace)
    if fmt == Format.json:
        write_json(result)
        return
    zones = result["zones"]
    summary = pa.table({
        "zone": [z["zone"] for z in zones],
        "free_pages_kernel": [z["free_pages_kernel"] for z in zones],
        "free_pages_rebuilt": [z["free_pages_rebuilt"] for z in zones],
        "diff_pct": [
            round(100.0 * (z["free_pages_rebuilt"] - z["free_pages_kernel"])
                  / max(z["free_pages_kernel"], 1), 2)
            for z in zones
        ],
        "pcp_pages_rebuilt": [z["pcp_pages_rebuilt"] for z in zones],
    })  # fmt: skip
    rows = [(z["zone"], k, z["nr_free_kernel"][k], z["nr_free_rebuilt"][k])
            for z in zones for k in range(NF)]  # fmt: skip
    orders = pa.table({
        "zone": [r[0] for r in rows], "order": [r[1] for r in rows],
        "nr_free_kernel": [r[2] for r in rows], "nr_free_rebuilt": [r[3] for r in rows],
        "diff": [r[3] - r[2] for r in rows],
    })  # fmt: skip
    emit_sections(
        {
            "trace": {k: result[k] for k in ("trace", "events_applied", "from_line", "to_line")},
            "zones": summary,
            "orders": orders,
            "inconsistencies": result["inconsistencies"],
        },
        fmt,
    )
