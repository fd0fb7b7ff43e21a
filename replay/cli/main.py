"""The ``replay`` command: one typer app, thin commands over the core.

Exit codes: 0 ok, 1 runtime failure, 2 usage, 65 bad input data.
"""

from __future__ import annotations

import sys

import typer

from replay import __version__
from replay.cli import batch as batch_cmd
from replay.cli import compare_kernel as compare_kernel_cmd
from replay.cli import explain as explain_cmd
from replay.cli import generate as generate_cmd
from replay.cli import ingest as ingest_cmd
from replay.cli import inspect as inspect_cmd
from replay.cli import record as record_cmd
from replay.cli import report as report_cmd
from replay.cli import run as run_cmd
from replay.cli import serve as serve_cmd
from replay.cli import sql as sql_cmd
from replay.cli import validate as validate_cmd
from replay.errors import ReplayError

app = typer.Typer(
    name="replay",
    help="Trace-replay analysis of Linux physical-memory fragmentation.\n\n"
    "Example: replay ingest traces/compact-6.18 && replay show compact-6.18",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command()(ingest_cmd.ingest)
app.command()(inspect_cmd.traces)
app.command()(inspect_cmd.show)
app.command()(inspect_cmd.export)
app.command()(sql_cmd.sql)
app.command()(sql_cmd.query)
app.command()(run_cmd.run)
app.command()(run_cmd.runs)
app.command()(validate_cmd.validate)
app.command()(explain_cmd.explain)
app.command()(record_cmd.record)
app.command()(compare_kernel_cmd.compare_kernel_compaction)
app.command()(generate_cmd.generate)
app.command()(report_cmd.report)
app.command()(report_cmd.compare)
app.command()(batch_cmd.batch)
app.command()(serve_cmd.serve)


@app.command()
def version() -> None:
    """Print the version.

    Example: replay version
    """
    typer.echo(__version__)


def main(argv: list[str] | None = None) -> int:
    """Run the app; map domain errors to exit codes (usage errors exit 2 in typer)."""
    try:
        app(args=argv, prog_name="replay")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except ReplayError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
