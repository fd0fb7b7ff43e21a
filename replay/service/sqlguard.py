"""SQL from clients: exactly one SELECT, run with a time limit and a row cap.

What makes client SQL safe here (replay serve):

- :func:`check_select` parses the text with DuckDB's own parser
  (``duckdb.extract_statements``) and accepts exactly one statement of type
  SELECT (``SELECT``, ``WITH ... SELECT``, ``FROM t``, ``VALUES``, ``DESCRIBE``,
  ``SHOW``, ``SUMMARIZE``): no INSERT/UPDATE/DELETE/CREATE/DROP, no ATTACH,
  COPY, INSTALL, LOAD, SET, PRAGMA, CALL or EXPORT. Nested text such as
  ``query('...')`` is parsed by DuckDB as a single SELECT too.
- The database instance runs with external access disabled and its
  configuration locked (:data:`LOCKDOWN_SQL`): file functions
  (``read_csv``, ``read_parquet``, ``read_text``, ``glob``, ...), ATTACH,
  COPY, extension loading/installing and Python replacement scans all fail
  with a permission error, and no statement can turn that back on.
- :func:`run_limited` runs the statement inside a READ ONLY transaction that is
  always rolled back (DuckDB refuses any write in it), interrupts it after
  ``timeout_s`` seconds (``cursor.interrupt`` from a :class:`Watchdog` thread)
  and fetches at most ``max_rows + 1`` rows from the streaming result
  (``truncated`` says whether more were there).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import heapq
import itertools
import json
import math
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from replay.errors import QueryError, QueryTimeoutError, UsageError

# Executed once on the server's instance, after the schema is set up. Every
# setting applies to the whole instance (all cursors) and, once
# lock_configuration is on, cannot be changed again by anyone.
LOCKDOWN_SQL = (
    "SET enable_external_access = false",
    "SET autoload_known_extensions = false",
    "SET autoinstall_known_extensions = false",
    "SET allow_community_extensions = false",
    "SET lock_configuration = true",
)

MAX_SQL_CHARS = 100_000

# SELECT-able functions with side effects on the database or the instance: a client's
# SELECT must not checkpoint the file, truncate the logs or switch logging.
SIDE_EFFECT_FUNCTIONS = frozenset({
    "checkpoint", "force_checkpoint", "truncate_duckdb_logs", "enable_logging",
    "disable_logging", "enable_profiling", "disable_profiling",
})  # fmt: skip
_parser = duckdb.connect()  # an empty in-memory instance: only its SQL parser is used
_parser_lock = threading.Lock()


def _function_names(sql: str) -> set[str]:
    """Every function a statement calls, from DuckDB's own parse tree (json_serialize_sql)."""
    with _parser_lock:
        row = _parser.execute("SELECT json_serialize_sql($1)", [sql]).fetchone()
    names: set[str] = set()
    stack: list[Any] = [json.loads(row[0]) if row else {}]
    while stack:
        o = stack.pop()
        if isinstance(o, dict):
            for k, v in o.items():
                if k == "function_name" and isinstance(v, str):
                    names.add(v.lower())
                else:
                    stack.append(v)
        elif isinstance(o, list):
            stack.extend(o)
    return names


def check_select(sql: str) -> str:
    """Return ``sql`` if it is exactly one SELECT statement, else raise UsageError."""
    if not sql or not sql.strip():
        raise UsageError("empty SQL: send one SELECT statement")
    if len(sql) > MAX_SQL_CHARS:
        raise UsageError(f"SQL too long: {len(sql)} characters (at most {MAX_SQL_CHARS})")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise UsageError(f"cannot parse the SQL: {_first_line(exc)}") from exc
    if len(statements) != 1:
        raise UsageError(
            f"exactly one statement is allowed, got {len(statements)}: send one SELECT"
        )
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        name = getattr(kind, "name", str(kind))
        raise UsageError(f"only SELECT statements are allowed, not {name}")
    bad = sorted(_function_names(sql) & SIDE_EFFECT_FUNCTIONS)
    if bad:
        raise UsageError(f"function {bad[0]}() changes the database: not allowed from clients")
    return sql


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _Guard:
    """One watched statement: ``fired`` is set once the watchdog interrupted it."""

    __slots__ = ("cancelled", "cursor", "fired")

    def __init__(self, cursor: duckdb.DuckDBPyConnection) -> None:
        self.cursor = cursor
        self.fired = False
        self.cancelled = False


class Watchdog:
    """One thread interrupting cursors whose statements ran past their deadline.

    Cheaper than a ``threading.Timer`` (a thread) per query. Once
    :meth:`guard`'s block has exited, its cursor is never interrupted.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Guard]] = []
        self._cv = threading.Condition()
        self._ids = itertools.count()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="replay-sql-watchdog", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def guard(self, cursor: duckdb.DuckDBPyConnection, timeout_s: float) -> Iterator[_Guard]:
        g = _Guard(cursor)
        with self._cv:
            heapq.heappush(self._heap, (time.monotonic() + timeout_s, next(self._ids), g))
            self._cv.notify()
        try:
            yield g
        finally:
            with self._cv:  # the loop interrupts under this lock: after it, never again
                g.cancelled = True

    def _loop(self) -> None:
        with self._cv:
            while not self._stop:
                now = time.monotonic()
                while self._heap and (self._heap[0][2].cancelled or self._heap[0][0] <= now):
                    _, _, g = heapq.heappop(self._heap)
                    if not g.cancelled:
                        g.fired = True
                        with contextlib.suppress(duckdb.Error):
                            g.cursor.interrupt()
                wait = self._heap[0][0] - now if self._heap else None
                self._cv.wait(wait)

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(timeout=5)


@dataclass
class QueryResult:
    """A capped result: column names and DuckDB types, rows as JSON-able lists."""

    columns: list[str]
    types: list[str]
    rows: list[list[Any]]
    truncated: bool
    elapsed_ms: float
    _bodies: dict[bool, bytes] = field(default_factory=dict, repr=False, compare=False)

    def as_dict(self, cached: bool = False) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "types": self.types,
            "rows": self.rows,
            "row_count": len(self.rows),
            "truncated": self.truncated,
            "elapsed_ms": round(self.elapsed_ms, 3),
            "cached": cached,
        }

    def body(self, cached: bool = False) -> bytes:
        """The JSON text (rendered once per variant: results are shared by the cache)."""
        out = self._bodies.get(cached)
        if out is None:
            out = json.dumps(
                self.as_dict(cached), ensure_ascii=False, allow_nan=False, separators=(",", ":")
            ).encode()
            self._bodies[cached] = out
        return out

    @property
    def cells(self) -> int:
        return len(self.rows) * max(1, len(self.columns))


def run_limited(
    cursor: duckdb.DuckDBPyConnection,
    sql: str,
    params: Mapping[str, Any] | None,
    *,
    watchdog: Watchdog,
    timeout_s: float,
    max_rows: int,
) -> tuple[QueryResult, bool]:
    """Run one statement in a rolled-back transaction with a time limit and a row cap.

    Returns the result and whether the watchdog fired anyway (a query that
    finished just at its deadline: the cursor should then not be reused).
    Raises QueryTimeoutError past ``timeout_s`` seconds (discard the cursor)
    and QueryError for any other DuckDB error.
    """
    t0 = time.perf_counter()
    cursor.execute("BEGIN TRANSACTION READ ONLY")  # a write fails even if one got through
    try:
        with watchdog.guard(cursor, timeout_s) as g:
            try:
                cursor.execute(sql, dict(params) if params else None)
                desc = cursor.description or []
                if not desc:
                    fetched: list[Any] = []
                elif any("TIME ZONE" in str(d[1]) for d in desc):
                    fetched = _fetch_arrow(cursor, sql, params, max_rows + 1)
                else:
                    fetched = cursor.fetchmany(max_rows + 1)
                cursor.abort()  # cancel the rest of a capped result (DuckDB 2.0 requires it)
            except duckdb.Error as exc:
                if g.fired or isinstance(exc, duckdb.InterruptException):
                    raise QueryTimeoutError(
                        f"the query ran longer than the time limit of {timeout_s:g} s "
                        "and was interrupted"
                    ) from exc
                raise QueryError(str(exc).strip()) from exc
        fired = g.fired  # read after the guard: it cannot fire any more
    finally:
        with contextlib.suppress(duckdb.Error):
            cursor.execute("ROLLBACK")
    truncated = len(fetched) > max_rows
    rows = [jsonable_row(r) for r in fetched[:max_rows]]
    result = QueryResult(
        columns=[str(d[0]) for d in desc],
        types=[str(d[1]) for d in desc],
        rows=rows,
        truncated=truncated,
        elapsed_ms=(time.perf_counter() - t0) * 1e3,
    )
    return result, fired


def _fetch_arrow(
    cursor: duckdb.DuckDBPyConnection, sql: str, params: Mapping[str, Any] | None, n: int
) -> list[tuple[Any, ...]]:
    """At most ``n`` rows through Arrow (streamed): for results with time zone types.

    Python objects for TIMESTAMP WITH TIME ZONE need pytz, which replay does not
    depend on; Arrow converts them with zoneinfo. The statement runs again as a
    relation (only such results pay for it).
    """
    cursor.abort()
    reader = cursor.sql(sql, params=dict(params) if params else None).to_arrow_reader(
        min(n, 1 << 16)
    )
    rows: list[tuple[Any, ...]] = []
    try:
        for batch in reader:
            cols = []
            for field, col in zip(batch.schema, batch.columns, strict=True):
                values = col.to_pylist()
                if pa.types.is_map(field.type):
                    values = [None if v is None else dict(v) for v in values]
                cols.append(values)
            rows.extend(zip(*cols, strict=True))
            if len(rows) >= n:
                break
    finally:
        reader.close()
    return rows[:n]


_PLAIN = (int, str, bool, type(None))


def jsonable(v: Any) -> Any:
    """A DuckDB value as JSON: ISO times, numbers for decimals, null for NaN/inf."""
    if isinstance(v, _PLAIN):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, dt.timedelta):
        return v.total_seconds()
    if isinstance(v, decimal.Decimal):
        if not v.is_finite():
            return None
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, bytes | bytearray | memoryview):
        return bytes(v).decode("utf-8", "replace")
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple | set):
        return [jsonable(x) for x in v]
    return str(v)


def jsonable_row(row: tuple[Any, ...]) -> list[Any]:
    return [v if type(v) in _PLAIN else jsonable(v) for v in row]
