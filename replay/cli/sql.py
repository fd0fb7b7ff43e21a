"""``replay sql`` and ``replay query``: SQL over the store."""

from __future__ import annotations

from typing import Annotated

import typer

from replay.analysis import queries
from replay.cli.common import DbOpt, FormatOpt
from replay.cli.output import Format, Rows, emit_table
from replay.errors import UsageError
from replay.store import Store


def sql(
    statement: Annotated[str, typer.Argument(help="A SQL statement (DuckDB dialect).")],
    db: DbOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Run SQL over the store (read-only) and print the result.

    Tables: traces, events, aux_events, snap_* (see README). Quote the
    columns named like SQL keywords: "order", "offset".

    Example: replay sql 'SELECT "order", count(*) FROM events GROUP BY ALL ORDER BY 1'
    """
    with Store(db, read_only=True) as store:
        emit_table(Rows(*store.query_rows(statement)), fmt)


def _params(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        if "=" not in v:
            raise UsageError(f"--param takes KEY=VALUE, got {v!r}")
        k, _, val = v.partition("=")
        out[k.strip()] = val
    return out


def query(
    name: Annotated[
        str | None, typer.Argument(help="Query name (a file queries/NAME.sql); omit to list them.")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE, repeatable.")
    ] = None,
    db: DbOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Run a named query from queries/ with parameters; without a name, list the queries.

    Example: replay query per_process --param trace=compact
    """
    if name is None:
        rows = [
            (q.name, q.description,
             ", ".join(f"{k}={v}" if v is not None else k for k, v in q.params.items()))
            for q in queries.list_queries()
        ]  # fmt: skip
        emit_table(Rows(["name", "description", "params"], rows), fmt)
        return
    with Store(db, read_only=True) as store:
        emit_table(Rows(*queries.run_rows(store, name, _params(param or []))), fmt)
