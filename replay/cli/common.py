"""Options shared by every command (one definition, reused)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from replay.cli.output import Format
from replay.store import ENV_DB

DbOpt = Annotated[
    Path | None,
    typer.Option(
        "--db",
        envvar=ENV_DB,
        help="DuckDB file (default: ./replay.duckdb, or $REPLAY_DB).",
        show_default=False,
    ),
]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format of tabular data.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar on stderr.")]
