"""The ``replay`` command: one typer app, thin commands over the core.

Exit codes: 0 ok, 1 runtime failure, 2 usage, 65 bad input data, 130
interrupted (SIGINT, Ctrl-C: one line on stderr, no traceback; the command's
transaction is rolled back).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it

try:  # loading the commands (numba, DuckDB, Arrow) takes a while: Ctrl-C may come now
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
except KeyboardInterrupt:
    sys.stderr.write("interrupted\n")
    raise SystemExit(EXIT_INTERRUPTED) from None

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


@contextlib.contextmanager
def _sigint_seen() -> Iterator[list[bool]]:
    """Note every SIGINT (then raise KeyboardInterrupt, as Python's own handler does).

    An interrupt reaches the code as many things: a KeyboardInterrupt, DuckDB's
    "Query interrupted", an error from a stream DuckDB was reading when it came,
    typer's exit 130. Whatever ends the command after a SIGINT, it was interrupted.
    """
    seen = [False]

    def handler(signum: int, frame: FrameType | None) -> None:
        seen[0] = True
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield seen  # only the main thread gets signals (and may set a handler)
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)


def main(argv: list[str] | None = None) -> int:
    """Run the app; map domain errors to exit codes (usage errors exit 2 in typer)."""
    with _sigint_seen() as interrupted:
        try:
            code = _run(argv, interrupted)
        except BaseException:
            if not interrupted[0]:
                raise
            code = EXIT_INTERRUPTED
        if interrupted[0] or code == EXIT_INTERRUPTED:
            sys.stderr.write("interrupted\n")
            return EXIT_INTERRUPTED
        return code


def _run(argv: list[str] | None, interrupted: list[bool]) -> int:
    try:
        app(args=argv, prog_name="replay")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except ReplayError as exc:
        if not interrupted[0]:  # else an effect of the interrupt, which main reports
            sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
