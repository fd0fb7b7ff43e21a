"""``replay validate``: the observed (rebuilt) buddy state against the kernel's own."""

from __future__ import annotations

from typing import Annotated

import pyarrow as pa
import typer

from replay.cli.common import DbOpt, FormatOpt, QuietOpt
from replay.cli.output import Format, emit_sections, progress_bar, write_json
from replay.engine.observed import NF
from replay.engine.observed import validate as do_validate
from replay.store import Store


def validate(
    trace: Annotated[str, typer.Argument(help="Trace name or id (a capture with snapshots).")],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Also replay the capture through this model (a preset or a TOML file) from "
            "the kernel's real state and compare it with the observed run, step by step.",
            show_default=False,
        ),
    ] = None,
    every: Annotated[
        int,
        typer.Option("--every", min=1, help="With --model: compare every K-th step's counters."),
    ] = 100,
    db: DbOpt = None,
    fmt: FormatOpt = Format.table,
    quiet: QuietOpt = False,
) -> None:
    """Rebuild the real buddy state from the recorded pfns and compare it with the kernel.

    Starts from the before-snapshot's kpageflags, applies the recorded
    allocator, pcp and compaction events up to the 'snapshot after begin'
    marker, and prints each zone's free pages and free blocks per order next
    to the after-snapshot's buddyinfo, with the differences, and the
    inconsistencies counted on the way. See docs/observed.md.

    With --model: how closely the model reproduces the kernel (both runs are
    stored): failures against the kernel's, the mean difference of pages in
    free blocks of order >= 3 and >= 9 over the trace, the end state's
    per-order difference, pageblock type counts against the after-pagetypeinfo
    and the share of placements on the kernel's pfn (docs/fidelity.md).

    Example: replay validate compact-6.18 --format json
    Example: replay validate compact-6.18 --model mobility+compaction
    """
    if model is not None:
        from replay.analysis.fidelity import model_fidelity
        from replay.models.config import load_model

        config = load_model(model)
        with Store(db) as store, progress_bar(quiet, "events") as progress:
            fid = model_fidelity(store, trace, config, every=every, progress=progress)
        if fmt == Format.json:
            write_json(fid)
        else:
            emit_sections(
                {
                    "fidelity": {k: v for k, v in fid.items() if not isinstance(v, (dict, list))},
                    "pageblocks": fid["pageblocks"],
                },
                fmt,
            )
        return
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
            "inferred": result["inferred"],
            **(
                {
                    "missing events": {
                        ", ".join(m["events"]): m["without_them"] for m in result["missing_events"]
                    }
                }
                if result["missing_events"]
                else {}
            ),
        },
        fmt,
    )
