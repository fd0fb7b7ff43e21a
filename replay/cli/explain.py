"""``replay explain``: why an allocation failed (or nearly did), and what other models did."""

from __future__ import annotations

import gc
from typing import Annotated

import pyarrow as pa
import typer

from replay.cli.common import DbOpt, FormatOpt, QuietOpt
from replay.cli.output import Format, emit_sections, emit_table, write_json
from replay.store import Store


def explain(
    run_id: Annotated[int, typer.Argument(help="The run (replay runs lists them).")],
    seq: Annotated[
        int | None,
        typer.Option(
            "--seq",
            help="The allocation to explain (its seq); without it, rank the "
            "run's failed and most at-risk allocations.",
            show_default=False,
        ),
    ] = None,
    models: Annotated[
        str | None,
        typer.Option(
            "--models",
            help="Comma-separated presets or TOML files to fork at SEQ "
            "(default: mobility, mobility+pcp, mobility+compaction, "
            "mobility+kswapd-targeted, mobility+vcompound, kernel).",
            show_default=False,
        ),
    ] = None,
    horizon: Annotated[
        int, typer.Option("--horizon", min=0, help="Events after SEQ each fork replays.")
    ] = 1000,
    top: Annotated[int, typer.Option("--top", min=1, help="Candidates (or ranked rows).")] = 5,
    db: DbOpt = None,
    fmt: FormatOpt = Format.table,
    quiet: QuietOpt = False,
) -> None:
    """Explain one allocation of a run from the state just before it.

    The request and what its GFP flags allow; the zone's state (nr_free per
    order and type, watermarks with the lowmem reserve and whether they pass,
    unusable and fragmentation index, compaction_suitable's verdict, the
    fragmentation score); the aligned blocks of its order nearest to free
    and what freeing each would take; and each model forked from the
    kernel's real state just before it (stored as runs): the outcome, pages
    migrated, scanned and evicted, failures in the next --horizon events.
    Without --seq: the run's failed and most at-risk allocations, ranked.
    See docs/explain.md.

    Example: replay explain 3 --seq 159449
    Example: replay explain 3 --top 10 --format json
    """
    from replay.analysis.explain import explain as do_explain
    from replay.analysis.explain import rank

    # numba's, pyarrow's and the engine's modules, just imported, are most of the objects
    # the process will hold, all of them to its end: the cyclic collector need not walk
    # them again at each of its full collections (gc.freeze)
    gc.freeze()
    del quiet  # forks are short; no progress bar
    with Store(db) as store:
        if seq is None:
            rows = rank(store, run_id, top=top)
            if fmt == Format.json:
                write_json(rows)
            else:
                emit_table(pa.Table.from_pylist(rows), fmt, title=f"run {run_id}: at risk")
            return
        names = None if models is None else [m.strip() for m in models.split(",") if m.strip()]
        out = do_explain(store, run_id, seq, models=names, horizon=horizon, top=top)
    if fmt == Format.json:
        write_json(out)
        return
    state = out["state"]
    nr = pa.table({
        "order": list(range(len(state["nr_free"]))), "nr_free": state["nr_free"],
        **{t: v for t, v in state["nr_free_by_type"].items()},
    })  # fmt: skip
    flat = {k: v for k, v in state.items() if not isinstance(v, (dict, list))}
    flat.update({f"watermark_{k}": v for k, v in state["watermarks"].items()})
    flat.update({f"watermark_ok_{k}": v for k, v in state["watermark_ok"].items()})
    flat["compaction_suitable"] = state["compaction_suitable"]["verdict"]
    flat["compaction_reason"] = state["compaction_suitable"]["reason"]
    # the page maps (a letter per page) are for --format json and the web page
    cands = [{**{k: v for k, v in c.items()
                 if k not in ("allocated", "pageblock_types", "map", "map_pfn", "map_offset")},
              "pageblock_types": ",".join(c["pageblock_types"]),
              **{f"alloc_{t}": n for t, n in c["allocated"].items()}}
             for c in out["candidates"]]  # fmt: skip
    sections: dict[str, pa.Table | dict[str, object]] = {
        "request": {k: v for k, v in out["request"].items()},
        "state": flat,
        "nr_free": nr,
        "candidates": pa.Table.from_pylist(cands) if cands else {"candidates": "none"},
    }
    if out["counterfactuals"]:
        sections["counterfactuals"] = pa.Table.from_pylist(out["counterfactuals"])
    emit_sections(sections, fmt)
