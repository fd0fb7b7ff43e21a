"""The ``replay`` command: one typer app, thin commands over the core.

Exit codes: 0 ok, 1 runtime failure, 2 usage, 65 bad input data, 130
interrupted (SIGINT, Ctrl-C: one line on stderr, no traceback; the command's
transaction is rolled back).
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it

# The commands in the order `replay --help` lists them: name -> (module, function).
# A command's module is imported only when that command runs (or prints its help):
# the JIT compiler, pyarrow and the kernels take most of a second to import, and `replay --help`,
# `traces`, `runs`, `sql` and `query` need none of them (python -X importtime shows it).
COMMANDS: dict[str, tuple[str, str]] = {
    "ingest": ("replay.cli.ingest", "ingest"),
    "traces": ("replay.cli.inspect", "traces"),
    "show": ("replay.cli.inspect", "show"),
    "export": ("replay.cli.inspect", "export"),
    "sql": ("replay.cli.sql", "sql"),
    "query": ("replay.cli.sql", "query"),
    "run": ("replay.cli.run", "run"),
    "runs": ("replay.cli.inspect", "runs"),
    "validate": ("replay.cli.validate", "validate"),
    "explain": ("replay.cli.explain", "explain"),
    "record": ("replay.cli.record", "record"),
    "compare-kernel-compaction": ("replay.cli.compare_kernel", "compare_kernel_compaction"),
    "generate": ("replay.cli.generate", "generate"),
    "report": ("replay.cli.report", "report"),
    "compare": ("replay.cli.report", "compare"),
    "batch": ("replay.cli.batch", "batch"),
    "serve": ("replay.cli.serve", "serve"),
}

try:  # typer takes a moment to import: Ctrl-C may come now
    import typer

    from replay import __version__
    from replay.errors import ReplayError
except KeyboardInterrupt:
    sys.stderr.write("interrupted\n")
    raise SystemExit(EXIT_INTERRUPTED) from None


def version() -> None:
    """Print the version.

    Example: replay version
    """
    typer.echo(__version__)


def _docstring(module: str, function: str) -> str:
    """A command's docstring read from its module's source, without importing the module."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return ""
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            return ast.get_docstring(node) or ""
    return ""


def _stub(name: str, doc: str) -> Callable[[], None]:
    """A command that only names itself in the group's help (never run)."""

    def stub() -> None:
        raise AssertionError(f"the stub of {name} ran")  # _app registers the real one to run

    stub.__doc__ = doc
    return stub


def _new_app() -> typer.Typer:
    return typer.Typer(
        name="replay",
        help="Trace-replay analysis of Linux physical-memory fragmentation.\n\n"
        "Example: replay ingest traces/compact-6.18 && replay show compact-6.18",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )


def _app(run: str | None = None) -> typer.Typer:
    """The app with every command; only ``run``'s module imported (None: all of them).

    Other commands are stubs carrying their docstring (read from the source when the
    group's own help may list them), so the group, its help and its errors for an
    unknown command are the same whichever command runs.
    """
    listing = run is not None and run not in COMMANDS and run != "version"
    app = _new_app()
    for name, (module, function) in COMMANDS.items():
        if run is None or name == run:
            app.command(name)(getattr(importlib.import_module(module), function))
        else:
            app.command(name)(_stub(name, _docstring(module, function) if listing else ""))
    app.command()(version)
    return app


def __getattr__(name: str) -> typer.Typer:
    """``app``: the whole app, every command module imported (tests list its commands)."""
    if name == "app":
        return _app(None)
    raise AttributeError(name)


@dataclass
class Interrupts:
    """What ``_sigint_seen`` noted: ``seen`` a SIGINT; while ``deferred``, a SIGINT is
    only noted (no KeyboardInterrupt), and the code checks ``seen`` afterwards."""

    seen: bool = False
    deferred: bool = False


@contextlib.contextmanager
def _sigint_seen() -> Iterator[Interrupts]:
    """Note every SIGINT (then raise KeyboardInterrupt, as Python's own handler does).

    An interrupt reaches the code as many things: a KeyboardInterrupt, DuckDB's
    "Query interrupted", an error from a stream DuckDB was reading when it came,
    typer's exit 130. Whatever ends the command after a SIGINT, it was interrupted.
    """
    seen = Interrupts()

    def handler(signum: int, frame: FrameType | None) -> None:
        seen.seen = True
        if not seen.deferred:
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
            if not interrupted.seen:
                raise
            code = EXIT_INTERRUPTED
        if interrupted.seen or code == EXIT_INTERRUPTED:
            sys.stderr.write("interrupted\n")
            return EXIT_INTERRUPTED
        return code


def _command(argv: list[str]) -> str:
    """The command an argument list names ("" for none: the group's help)."""
    return argv[0] if argv and not argv[0].startswith("-") else ""


def _run(argv: list[str] | None, interrupted: Interrupts) -> int:
    args = sys.argv[1:] if argv is None else argv
    # The command's module imports numba, pyarrow and DuckDB: a KeyboardInterrupt raised
    # inside those imports can leave CPython's "unhandled KeyboardInterrupt" mark set
    # (a nested PyRun_* call), so that the process then kills itself with SIGINT instead
    # of exiting 130. Ctrl-C during the import is noted and acted on once it is done.
    interrupted.deferred = True
    try:
        app = _app(_command(args))
    finally:
        interrupted.deferred = False
    if interrupted.seen:
        return EXIT_INTERRUPTED
    try:
        app(args=args, prog_name="replay")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except ReplayError as exc:
        if not interrupted.seen:  # else an effect of the interrupt, which main reports
            sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())


# Commands that hold nothing to tear down once they return (their store closed, their
# threads joined, their output written): the console script then ends the process
# without the interpreter's own teardown, which frees every object the JIT compiler
# and LLVM made, one by one (0.1-0.2 s after `replay explain`, whose target is 2 s).
QUICK_EXIT = frozenset({"explain"})


def entry() -> None:
    """Console-script entry point."""
    code = main()
    if _command(sys.argv[1:]) in QUICK_EXIT:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except OSError:  # a closed pipe: as the interpreter's own exit says it
                code = code or 120
        os._exit(code)
    sys.exit(code)
