"""Output for every command: data to stdout as a table, JSON or CSV; progress to stderr."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import enum
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:  # imported where a table is built: `replay --help` and sql need no pyarrow
    import pyarrow as pa


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


@dataclass
class Rows:
    """A query result as Python rows (``Store.query_rows``): what :func:`emit_table` reads
    of an Arrow table, for the commands that need no pyarrow."""

    column_names: list[str]
    rows: list[tuple[Any, ...]] = field(default_factory=list)

    def to_pylist(self) -> list[dict[str, Any]]:
        return [dict(zip(self.column_names, r, strict=True)) for r in self.rows]


def rows_of(table: pa.Table | Rows) -> list[dict[str, Any]]:
    return [{k: _jsonable(v) for k, v in r.items()} for r in table.to_pylist()]


def _cell(v: Any) -> str:
    v = _jsonable(v)
    if v is None:
        return ""
    if isinstance(v, dict | list):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


# Integer columns people copy into a command or compare with hex (ids, seqs, pfns,
# lines, orders; forked_from: a run id): printed without thousands separators.
_RAW_INT = re.compile(
    r"(^|_)(id|ids|pid|seq|line|pfn|pageblock|order|cpu|migratetype|mt|year)(_|$)"
    r"|^(k|n\d+|forked_from)$"
)
SEPARATOR_WIDTH = 3  # " │ " between two columns of a rich table without edges
# A table too wide for the terminal with at most this many rows prints as records
# (``column value`` lines); a longer one keeps the columns that fit.
RECORDS_MAX_ROWS = 3


def human(v: Any, column: str = "") -> str:
    """A value as a person reads it in a table: integers with thousands separators
    (not ids, seqs, pfns, lines or orders), percentages to 2 decimals, seconds to 3
    significant digits (ms precision past 1 s), rates per second as whole numbers,
    other fractions to 4 significant digits, times to the second. JSON and CSV keep
    the raw values."""
    if isinstance(v, dt.datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S")  # to the second
    v = _jsonable(v)
    if isinstance(v, bool) or v is None or not isinstance(v, int | float):
        return _cell(v)
    name = column.lower()
    if isinstance(v, int):
        return str(v) if _RAW_INT.search(name) else f"{v:,}"
    if v != v or v in (float("inf"), float("-inf")):
        return str(v)
    if name.endswith(("_per_s", "_rate")):
        return f"{v:,.0f}"
    if name.endswith("pct") or "_pct_" in name or name.endswith("percent"):
        return f"{v:,.2f}"
    if name.endswith(("_s", "seconds")) or name == "s":
        return f"{v:,.3f}" if abs(v) >= 1 else f"{v:.3g}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.4g}"


def terminal_width() -> int | None:
    """The width tables must fit, in characters: ``$COLUMNS`` when set, else the
    terminal's when stdout is one; None (no limit) when piped, so each line holds a
    whole row for grep and awk."""
    env = os.environ.get("COLUMNS", "")
    if env.strip().isdigit() and int(env) > 0:
        return int(env)
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return None


def table_width(widths: Sequence[int]) -> int:
    """Characters a rich table (no edges) of columns this wide takes."""
    return sum(widths) + SEPARATOR_WIDTH * max(0, len(widths) - 1)


def _header_lines(name: str) -> str:
    """A long column name over several lines, broken at underscores (``pages\nallocd``;
    a part of one or two letters stays with the one before: ``events\nper_s``)."""
    if len(name) <= 8 or "_" not in name:
        return name
    parts: list[str] = []
    for part in name.split("_"):
        if parts and (len(part) <= 2 or len(parts[-1]) <= 2):
            parts[-1] += "_" + part
        else:
            parts.append(part)
    return "\n".join(parts)


def _col_width(header: str, cells: Sequence[str]) -> int:
    lines = header.split("\n")
    return max([len(x) for x in lines] + [len(c) for c in cells])


def write_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(_jsonable(obj), indent=2, default=str) + "\n")


def emit_table(
    table: pa.Table | Rows,
    fmt: Format,
    *,
    title: str | None = None,
    note: str | None = None,
    records_max_rows: int = RECORDS_MAX_ROWS,
) -> None:
    """Write one table to stdout in the chosen format.

    ``table``: numbers for people (:func:`human`), fitted to
    :func:`terminal_width`: long column names break over lines and text folds; a
    table still too wide prints each row as ``column value`` lines when it has at
    most ``records_max_rows`` rows, else loses its rightmost columns (a line
    says which; JSON and CSV have them all). ``note``: a line under the table
    (``title`` and ``note`` are for the table format only).
    """
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
            note=note,
            records_max_rows=records_max_rows,
        )


def print_rich(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    title: str | None = None,
    *,
    note: str | None = None,
    records_max_rows: int = RECORDS_MAX_ROWS,
) -> None:
    """Rows as a table for a person (see :func:`emit_table`)."""
    cells = [[human(v, c) for v, c in zip(r, columns, strict=True)] for r in rows]
    numeric = [
        bool(rows) and all(isinstance(_jsonable(r[i]), int | float | type(None)) for r in rows)
        for i in range(len(columns))
    ]
    headers = [_header_lines(c) for c in columns]
    widths = [_col_width(h, [r[i] for r in cells]) for i, h in enumerate(headers)]
    width = terminal_width()
    keep = list(range(len(columns)))
    notes = [note] if note else []
    # what each column can shrink to: numbers never fold, text folds down to 16
    least = [w if numeric[i] else min(w, max(16, len(max(headers[i].split("\n"), key=len))))
             for i, w in enumerate(widths)]  # fmt: skip
    if width is not None and table_width(least) > width:
        if len(rows) > records_max_rows:
            while len(keep) > 1 and table_width([least[i] for i in keep]) > width:
                keep.pop()
            gone = [columns[i] for i in range(len(columns)) if i not in keep]
            notes.append(f"not shown to fit {width} columns: {', '.join(gone)} (--format csv)")
        else:
            _print_records(columns, cells, title, width)
            for n in notes:
                _console(width).print(n, markup=False, highlight=False)
            return
    t = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for i in keep:
        t.add_column(headers[i], overflow="fold", justify="right" if numeric[i] else "left")
    for r in cells:
        t.add_row(*[r[i] for i in keep])
    console = _console(width)
    console.print(t, crop=False)
    for n in notes:
        console.print(n, markup=False, highlight=False, style="dim")


def _console(width: int | None) -> Console:
    # no width: a table is as wide as its rows (a piped table keeps a row on a line)
    return Console(width=width if width is not None else 100_000, highlight=False)


def _print_records(
    columns: Sequence[str], cells: Sequence[Sequence[str]], title: str | None, width: int
) -> None:
    """A table too wide for the terminal, a block of ``column value`` lines per row (as
    psql's expanded display)."""
    console = _console(width)
    if title:
        console.print(title, markup=False, style="italic")
    key_w = min(max((len(c) for c in columns), default=0), width // 2)
    for n, row in enumerate(cells):
        if len(cells) > 1:
            console.print(f"-[ row {n + 1} ]" + "-" * max(0, min(width, 40) - 12), markup=False)
        for c, v in zip(columns, row, strict=True):
            console.print(f"{c:<{key_w}} {v}", markup=False, overflow="fold", crop=False)


def emit_sections(sections: Mapping[str, pa.Table | Mapping[str, Any]], fmt: Format) -> None:
    """Several named tables (``replay show``): one JSON object, CSV blocks, or tables."""
    import pyarrow as pa

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
        if isinstance(v, pa.Table):
            table = v
        elif fmt == Format.csv:
            table = pa.table({"key": list(v), "value": [_cell(x) for x in v.values()]})
        else:
            table = pa.table({"key": list(v), "value": [human(x, k) for k, x in v.items()]})
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
    console = None if quiet else Console(stderr=True)
    if console is None or not console.is_interactive:
        # a bar that cannot redraw shows nothing; rich would still end it with a blank
        # line on stderr, before the command's own last line ("interrupted", an error)
        yield CoreProgress()
        return
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


# replay compare's table: a metric per row in these groups (columns not named here
# follow in "other"); success_pct_oK columns join the outcomes after success_pct.
COMPARE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("run", ("trace", "events")),
    ("outcomes", ("allocs", "successes", "failures", "degraded", "success_pct",
                  "high_order_success_pct")),
    ("fragmentation at the end", ("free_pages", "free_high_pct", "largest_free_order",
                                  "unusable_index", "fragmentation_index", "extfrag_for_order",
                                  "fragmentation_score", "mixed_pageblocks", "zone_pages")),
    ("cost (pages)", ("extfrag_events", "extfrag_fragmenting", "migrated", "scanned", "evicted",
                      "exchanged", "cost_pages")),
)  # fmt: skip
# metrics on a scale (percent, thousandths, an order) differ by their difference;
# counts by their change in percent of the first run's
_SCALED = re.compile(r"pct|_index$|extfrag_for_order|fragmentation_score|largest_free_order")


def _versus(v: Any, base: Any, column: str) -> str:
    """``v`` against the first run's ``base``: ``+1.25`` (a scale), ``+12.3%`` (a count),
    ``=`` (the same); empty when either is missing or not a number."""
    if not isinstance(v, int | float) or not isinstance(base, int | float):
        return ""
    if isinstance(v, bool) or v == base:
        return "=" if v == base else ""
    if _SCALED.search(column):
        d = v - base
        return f"{d:+,}" if isinstance(d, int) else f"{d:+,.2f}"
    if base == 0:
        return "new"
    return f"{100.0 * (v - base) / abs(base):+,.1f}%"


def print_runs_side_by_side(table: pa.Table, key: str = "run_id", label: str = "model") -> None:
    """Runs as columns, metrics as rows grouped as :data:`COMPARE_GROUPS` (as mmtests'
    compare-kernels prints them): each run's value, and after the first run how it
    differs from the first. Runs that do not fit :func:`terminal_width` continue in
    further blocks, each starting again with the first run."""
    runs = rows_of(table)
    if not runs:
        return
    names = [c for c in table.column_names if c not in (key, label)]
    order_pcts = [c for c in names if c.startswith("success_pct_o")]
    groups: list[tuple[str, list[str]]] = []
    placed: set[str] = set()
    for group, cols in COMPARE_GROUPS:
        chosen: list[str] = []
        for c in cols:
            if c in names:
                chosen.append(c)
            if c == "success_pct":
                chosen += order_pcts
        placed.update(chosen)
        groups.append((group, chosen))
    groups.append(("other", [c for c in names if c not in placed]))
    groups = [(g, cs) for g, cs in groups if cs]
    metric_w = max(len(c) for c in names) + 2
    cells = []
    for r in runs:
        col = {}
        for c in names:
            value = human(r[c], c)
            vs = "" if r is runs[0] else _versus(r[c], runs[0][c], c)
            col[c] = (value, vs)
        cells.append(col)
    value_w = max(len(v) for col in cells for v, _ in col.values())
    vs_w = max((len(x) for col in cells for _, x in col.values()), default=0)
    headers = [f"{r[key]}\n{r[label]}" for r in runs]
    run_w = [max(value_w + (vs_w + 1 if i else 0), *(len(x) for x in h.split("\n")))
             for i, h in enumerate(headers)]  # fmt: skip
    width = terminal_width()
    blocks: list[list[int]] = []
    rest = list(range(1, len(runs)))
    while True:
        block = [0]
        while rest and (
            width is None
            or table_width([metric_w, *(run_w[i] for i in (*block, rest[0]))]) <= width
        ):
            block.append(rest.pop(0))
        if len(block) == 1 and rest:
            block.append(rest.pop(0))  # one run a block at least, however narrow
        blocks.append(block)
        if not rest:
            break
    console = _console(width)
    for n, block in enumerate(blocks):
        t = Table(show_edge=False, pad_edge=False, title_justify="left")
        t.add_column(f"{key}\n{label}", no_wrap=True)
        for i in block:
            t.add_column(headers[i], justify="right", no_wrap=True)
        for g, (group, cols) in enumerate(groups):
            t.add_row(group, *[""] * len(block), style="bold")
            for j, c in enumerate(cols):
                row = []
                for i in block:
                    value, vs = cells[i][c]
                    row.append(value if i == 0 else f"{value} {vs:>{vs_w}}")
                last = j == len(cols) - 1 and g < len(groups) - 1
                t.add_row(f"  {c}", *row, end_section=last)
        if n:
            console.print()
        console.print(t, crop=False)
