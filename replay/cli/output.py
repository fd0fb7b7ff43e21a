"""Output for every command: data to stdout as a table, JSON or CSV; progress to stderr."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import enum
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from replay.progress import Progress as CoreProgress


class Format(enum.StrEnum):
    """Output format of tabular data."""

    table = "table"
    json = "json"
    csv = "csv"


def _jsonable(v: Any) -> Any:
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, list) and v and isinstance(v[0], tuple) and len(v[0]) == 2:
        return {str(k): _jsonable(x) for k, x in v}  # an Arrow map
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v


def rows_of(table: pa.Table) -> list[dict[str, Any]]:
    return [{k: _jsonable(v) for k, v in r.items()} for r in table.to_pylist()]


def _cell(v: Any) -> str:
    v = _jsonable(v)
    if v is None:
        return ""
    if isinstance(v, dict | list):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def write_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(_jsonable(obj), indent=2, default=str) + "\n")


def emit_table(table: pa.Table, fmt: Format, *, title: str | None = None) -> None:
    """Write one table to stdout in the chosen format."""
    if fmt == Format.json:
        write_json(rows_of(table))
    elif fmt == Format.csv:
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(table.column_names)
        for r in table.to_pylist():
            w.writerow([_cell(r[c]) for c in table.column_names])
    else:
        print_rich(
            table.column_names,
            [[r[c] for c in table.column_names] for r in table.to_pylist()],
            title,
        )


def print_rich(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None
) -> None:
    t = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*[_cell(v) for v in r])
    # On a terminal fit its width; piped, print each table at its natural width.
    console = Console() if sys.stdout.isatty() else Console(width=100_000)
    console.print(t, crop=False)


def emit_sections(sections: Mapping[str, pa.Table | Mapping[str, Any]], fmt: Format) -> None:
    """Several named tables (``replay show``): one JSON object, CSV blocks, or tables."""
    if fmt == Format.json:
        write_json(
            {
                k: (rows_of(v) if isinstance(v, pa.Table) else _jsonable(dict(v)))
                for k, v in sections.items()
            }
        )
        return
    first = True
    for name, v in sections.items():
        table = (
            v
            if isinstance(v, pa.Table)
            else pa.table({"key": list(v), "value": [_cell(x) for x in v.values()]})
        )
        if fmt == Format.csv:
            if not first:
                sys.stdout.write("\n")
            sys.stdout.write(f"# {name}\n")
            emit_table(table, fmt)
        else:
            emit_table(table, fmt, title=name)
            sys.stdout.write("\n")
        first = False


@contextmanager
def progress_bar(quiet: bool, unit: str = "bytes") -> Iterator[CoreProgress]:
    """A rich progress bar on stderr feeding the core's Progress callbacks.

    ``unit``: what the totals count; ``bytes`` shows sizes (ingest reads bytes),
    anything else "done/total unit" (events, runs)."""
    if quiet:
        yield CoreProgress()
        return
    console = Console(stderr=True)
    count = (
        DownloadColumn()
        if unit == "bytes"
        else TextColumn("{task.completed:,}/{task.total:,} " + unit.replace("[", r"\["))
    )
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        count,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    state: dict[str, Any] = {}

    def start(desc: str, total: int) -> None:
        state["task"] = bar.add_task(desc, total=total)

    def advance_to(done: int) -> None:
        if "task" in state:
            bar.update(state["task"], completed=done)

    with bar:
        yield CoreProgress(start=start, advance_to=advance_to)
