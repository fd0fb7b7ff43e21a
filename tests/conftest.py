"""Shared fixtures: paths, a parse helper, and the CLI runner."""

from __future__ import annotations

import fcntl
import io
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from replay.trace.ftrace import FtraceParser

ROOT = Path(__file__).resolve().parent.parent
CAPTURE = ROOT / "traces" / "compact-6.18"
ERAS = Path(__file__).resolve().parent / "fixtures" / "eras"
sys.path.insert(0, str(Path(__file__).resolve().parent))

EVENT_FIELDS = ("op", "obj", "offset", "order", "migratetype", "pfn", "ts_ns", "cpu", "pid",
                "comm", "batched")  # fmt: skip


def parse(
    path: Path, chunk_bytes: int | None = None, skip_bad: bool = False
) -> tuple[list[list[Any]], FtraceParser, pa.Table | None]:
    """Parse a text trace; returns (event rows as EVENT_FIELDS lists, parser, aux table)."""
    kw: dict[str, Any] = {"skip_bad": skip_bad}
    if chunk_bytes is not None:
        kw["chunk_bytes"] = chunk_bytes
    p = FtraceParser(path, **kw)
    evs: list[pa.RecordBatch] = []
    auxs: list[pa.RecordBatch] = []
    for ev, aux in p.batches():
        if ev is not None:
            evs.append(ev)
        if aux is not None:
            auxs.append(aux)
    rows: list[list[Any]] = []
    for b in evs:
        for r in b.to_pylist():
            rows.append([r[f] for f in EVENT_FIELDS])
    aux_table = pa.Table.from_batches(auxs) if auxs else None
    return rows, p, aux_table


class CliResult:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code = code
        self.out = out
        self.err = err

    def json(self) -> Any:
        return json.loads(self.out)


def run_cli(*args: str | Path) -> CliResult:
    """Run ``replay ARGS`` in-process; returns exit code, stdout and stderr."""
    from replay.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in args])
    return CliResult(code, out.getvalue(), err.getvalue())


def sql(db: Path, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of ``query`` (``?`` parameters) over a database file, opened read-only."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(query, list(params)).fetchall()
    finally:
        con.close()


@pytest.fixture
def cli() -> Any:
    return run_cli


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "t.duckdb"


@pytest.fixture(scope="session")
def capture_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with the shipped real capture ingested as 'compact' (built once)."""
    path = tmp_path_factory.mktemp("capture") / "capture.duckdb"
    res = run_cli("ingest", CAPTURE, "--name", "compact", "--db", path, "--quiet")
    assert res.code == 0, res.err
    return path


TRACEFS_TESTS = ("test_record.py", "test_binary_ingest.py")
TRACEFS_LOCK = Path(tempfile.gettempdir()) / "replay-tests-tracefs.lock"


@contextmanager
def tracefs_lock() -> Iterator[None]:
    """Hold the machine-wide lock of the tests that create ftrace instances.

    They create and remove instances and check none is left behind by a process that
    has gone, so two xdist workers recording at once would see each other's instances.
    A file lock, not an ``xdist_group``: xdist 3.8 renames a grouped test's node id
    through an attribute pytest 9 no longer reads, so its groups silently do nothing.
    """
    with open(TRACEFS_LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture(autouse=True)
def _tracefs_serial(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test of TRACEFS_TESTS runs holding tracefs_lock."""
    if request.node.path.name not in TRACEFS_TESTS:
        yield
        return
    with tracefs_lock():
        yield


def pytest_configure(config: pytest.Config) -> None:
    """On the xdist controller, compile the kernels once before the workers start
    (tests/warm_kernels.py: its two roles in parallel, one core each)."""
    if hasattr(config, "workerinput") or not config.getoption("numprocesses", None):
        return
    warm = Path(__file__).resolve().parent / "warm_kernels.py"
    with tempfile.TemporaryDirectory() as tmp:
        procs = []
        for role in ("models", "traces"):
            d = Path(tmp) / role
            d.mkdir()
            cmd = [sys.executable, str(warm), role, str(d)]
            quiet = subprocess.DEVNULL
            procs.append(subprocess.Popen(cmd, stdout=quiet, stderr=quiet))
        for proc in procs:
            proc.wait()  # a failure shows again, with its test, in the run itself
