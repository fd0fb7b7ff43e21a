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
  and fetches at most ``max_rows`` rows from the streaming result, in small
  batches encoded to JSON as they come, until the answer would pass
  ``max_bytes`` bytes or the time limit (which covers the fetching and the
  encoding too) has passed (``truncated`` says whether more rows were there).
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
from collections.abc import Generator, Iterator, Mapping
from typing import Any

import duckdb
import pyarrow as pa

from replay.errors import QueryError, QueryTimeoutError, ResultTooLargeError, UsageError

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


class QueryResult:
    """A capped result: column names and DuckDB types, and its rows as JSON text.

    The rows are kept encoded (``rows_json``, a JSON array of arrays): what the
    cache holds and what a client gets are the same bytes, and :attr:`nbytes`
    is what the result costs in memory.
    """

    __slots__ = ("columns", "elapsed_ms", "row_count", "rows_json", "truncated", "types")

    def __init__(
        self,
        columns: list[str],
        types: list[str],
        rows_json: bytes,
        row_count: int,
        truncated: bool,
        elapsed_ms: float,
    ) -> None:
        self.columns = columns
        self.types = types
        self.rows_json = rows_json
        self.row_count = row_count
        self.truncated = truncated  # more rows were there than returned (row or byte cap)
        self.elapsed_ms = elapsed_ms  # ms

    @classmethod
    def from_rows(
        cls, columns: list[str], types: list[str], rows: list[list[Any]], elapsed_ms: float
    ) -> QueryResult:
        """A whole (uncapped) result from rows of JSON-able values."""
        text = json.dumps(rows, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return cls(columns, types, text.encode(), len(rows), False, elapsed_ms)

    @property
    def rows(self) -> list[list[Any]]:
        """The rows as Python lists (decoded: for small results the server reads itself)."""
        return json.loads(self.rows_json)  # type: ignore[no-any-return]

    @property
    def nbytes(self) -> int:
        """Memory held by the result, bytes (its rows' JSON and the column names and types)."""
        return len(self.rows_json) + len(_head(self.columns, self.types)) + 200

    def body(self, cached: bool = False) -> bytes:
        """The JSON answer: columns, types, rows, row_count, truncated, elapsed_ms, cached."""
        tail = json.dumps(
            {
                "row_count": self.row_count,
                "truncated": self.truncated,
                "elapsed_ms": round(self.elapsed_ms, 3),
                "cached": cached,
            },
            separators=(",", ":"),
        )
        return b"".join((_head(self.columns, self.types), b',"rows":', self.rows_json, b",",
                         tail[1:].encode()))  # fmt: skip


def _head(columns: list[str], types: list[str]) -> bytes:
    """``{"columns":[...],"types":[...]`` (the answer's start, without the closing brace)."""
    text = json.dumps({"columns": columns, "types": types}, ensure_ascii=False,
                      separators=(",", ":"))  # fmt: skip
    return text[:-1].encode()


# Rows come from DuckDB as an Arrow stream and are converted to Python and JSON in
# slices of 1, 2, 4, ... rows, doubled while a slice stays cheap (BATCH_BYTES of
# Arrow data, BATCH_S) and halved when one was not: no huge value is turned into
# Python objects before its size is known, and the time limit is checked between
# slices.
ARROW_BATCH_ROWS = 2048  # rows per batch of the Arrow stream (DuckDB's vector size)
BATCH_BYTES = 1 << 20  # Arrow bytes of one converted slice
BATCH_S = 0.02  # s per slice
MAX_BATCH_ROWS = 2048
# A row whose Arrow data is larger than this many times the answer's byte limit
# is refused without converting it: its JSON would not fit either (a number of
# 8 bytes takes at least 2 bytes of JSON, a string at least its length).
ARROW_TO_JSON = 4


class _RowTooLargeError(Exception):
    """The next row's Arrow data alone is over the limit (``nbytes``, bytes)."""

    def __init__(self, nbytes: int) -> None:
        super().__init__(nbytes)
        self.nbytes = nbytes


def run_limited(
    cursor: duckdb.DuckDBPyConnection,
    sql: str,
    params: Mapping[str, Any] | None,
    *,
    watchdog: Watchdog,
    timeout_s: float,
    max_rows: int,
    max_bytes: int = 16 << 20,
) -> tuple[QueryResult, bool]:
    """Run one statement in a rolled-back transaction with a time limit, a row and a byte cap.

    The limit of ``timeout_s`` seconds covers running the statement, fetching its
    rows and encoding them; at most ``max_rows`` rows are returned, and no more
    than fit in an answer (:meth:`QueryResult.body`) of ``max_bytes`` bytes
    (``truncated`` says whether more were there). Returns the result and
    whether the watchdog fired anyway (a query that finished just at its
    deadline: the cursor should then not be reused). Raises QueryTimeoutError
    past the limit (discard the cursor), ResultTooLargeError when the first row
    alone is over ``max_bytes``, and QueryError for any other DuckDB error.
    """
    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout_s

    def too_slow() -> QueryTimeoutError:
        return QueryTimeoutError(
            f"the query ran longer than the time limit of {timeout_s:g} s and was interrupted"
        )

    cursor.execute("BEGIN TRANSACTION READ ONLY")  # a write fails even if one got through
    try:
        with watchdog.guard(cursor, timeout_s) as g:
            try:
                rel = cursor.sql(sql, params=dict(params) if params else None)
                columns = [str(c) for c in rel.columns] if rel is not None else []
                types = [str(t) for t in rel.types] if rel is not None else []
                head = _head(columns, types)
                budget = max_bytes - len(head) - 200  # bytes left for the rows' JSON
                if budget <= 0:
                    raise ResultTooLargeError(
                        f"the result's {len(columns)} column names alone are larger than "
                        f"the limit of {max_bytes} bytes of an answer: select fewer columns"
                    )
                batches = _no_rows() if rel is None else _batches(rel, budget)
                try:
                    rows_json, n, truncated = _encode_rows(
                        batches, max_rows, budget, max_bytes, deadline, g
                    )
                finally:
                    batches.close()  # the stream's reader: the rest of a capped result goes
                if n < 0:
                    raise too_slow()
            except (duckdb.Error, pa.ArrowException, OSError) as exc:  # OSError: Arrow's read
                if g.fired or isinstance(exc, duckdb.InterruptException):
                    raise too_slow() from exc
                raise QueryError(str(exc).strip()) from exc
        fired = g.fired  # read after the guard: it cannot fire any more
    finally:
        with contextlib.suppress(duckdb.Error):
            cursor.execute("ROLLBACK")
    result = QueryResult(
        columns=columns,
        types=types,
        rows_json=rows_json,
        row_count=n,
        truncated=truncated,
        elapsed_ms=(time.perf_counter() - t0) * 1e3,
    )
    return result, fired


# Slices of rows; each is sent the number of rows the next slice should have.
Batches = Generator[list[tuple[Any, ...]], int, None]


def _no_rows() -> Batches:
    """The rows of a statement without a result: none."""
    yield from ()


_convert = threading.local()  # a cursor per thread of an empty in-memory instance


def _python_rows(batch: pa.RecordBatch, arrow_tz: bool) -> list[tuple[Any, ...]]:
    """The rows of an Arrow batch as Python tuples, converted as DuckDB converts them.

    DuckDB reads the batch back (zero-copy) and converts it as its own fetch
    does; with a time zone column (``arrow_tz``) pyarrow converts it instead:
    DuckDB's Python values for TIMESTAMP WITH TIME ZONE need pytz, which replay
    does not depend on, and Arrow's use zoneinfo.
    """
    if not arrow_tz:
        cur = getattr(_convert, "cursor", None)
        if cur is None:
            cur = _convert.cursor = duckdb.connect().cursor()
        return cur.from_arrow(batch).fetchall()  # type: ignore[no-any-return]
    cols = []
    for fld, col in zip(batch.schema, batch.columns, strict=True):
        values = col.to_pylist()
        if pa.types.is_map(fld.type):
            values = [None if v is None else dict(v) for v in values]
        cols.append(values)
    return list(zip(*cols, strict=True))


def _batches(rel: duckdb.DuckDBPyRelation, budget: int) -> Batches:
    """The relation's rows in slices: one row first, then as many as are sent
    (fewer while a slice's Arrow data is over BATCH_BYTES). _RowTooLargeError when a
    single row's Arrow data is over ARROW_TO_JSON x ``budget`` bytes."""
    arrow_tz = any("TIME ZONE" in str(t) for t in rel.types)
    reader = rel.to_arrow_reader(ARROW_BATCH_ROWS)
    try:
        want = 1
        for batch in reader:
            start = 0
            while start < batch.num_rows:
                k = min(want, batch.num_rows - start)
                part = batch.slice(start, k)
                while k > 1 and part.nbytes > BATCH_BYTES:
                    k //= 2
                    part = batch.slice(start, k)
                if part.nbytes > ARROW_TO_JSON * budget:
                    raise _RowTooLargeError(part.nbytes)
                want = yield _python_rows(part, arrow_tz)
                start += k
    finally:
        reader.close()


def _encode_rows(
    batches: Batches,
    max_rows: int,
    budget: int,
    max_bytes: int,
    deadline: float,
    guard: _Guard,
) -> tuple[bytes, int, bool]:
    """The JSON array of at most ``max_rows`` rows in at most ``budget`` bytes.

    Returns (text, rows, truncated); rows is -1 when the time ran out (``deadline``,
    time.monotonic()) or the watchdog fired. Slices double while one stays
    cheap (BATCH_BYTES, BATCH_S) and halve when one was not; past ``max_rows``
    rows one more is asked for, to know whether there were more.
    """
    parts: list[bytes] = []
    size = 2  # the brackets, bytes
    n = 0
    want = 1  # rows in the next slice

    def too_large(nbytes: int) -> ResultTooLargeError:
        return ResultTooLargeError(
            f"the first row alone (about {nbytes} bytes) is larger than the limit of "
            f"{max_bytes} bytes of an answer: select fewer or shorter values"
        )

    def done(truncated: bool) -> tuple[bytes, int, bool]:
        return b"[" + b",".join(parts) + b"]", n, truncated

    try:
        batch = next(batches, None)
    except _RowTooLargeError as exc:
        raise too_large(exc.nbytes) from None
    while batch is not None:
        t_batch = time.monotonic()
        batch_bytes = 0
        for row in batch:
            if n == max_rows:
                return done(True)
            enc = encode_row(row)
            if size + len(enc) + 1 > budget:
                if n == 0:
                    raise too_large(len(enc))
                return done(True)
            parts.append(enc)
            size += len(enc) + 1
            batch_bytes += len(enc)
            n += 1
        now = time.monotonic()
        if now > deadline or guard.fired:
            return b"", -1, False
        cheap = batch_bytes < BATCH_BYTES // 2 and now - t_batch < BATCH_S / 2
        want = min(MAX_BATCH_ROWS, want * 2) if cheap else max(1, want // 2)
        try:
            batch = batches.send(min(want, max_rows - n + 1))
        except StopIteration:
            batch = None
        except _RowTooLargeError:
            return done(True)
    return done(False)


def encode_row(row: tuple[Any, ...] | list[Any]) -> bytes:
    """One row as a JSON array (UTF-8): :func:`jsonable`'s conversions, in C where it can.

    The json module's encoder takes numbers, strings, lists and dicts as they
    are; other values go through :func:`jsonable`. A NaN or infinity (which JSON
    cannot hold) or a dict with keys JSON cannot take sends the row through
    :func:`jsonable_row` whole.
    """
    try:
        text = json.dumps(row, ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                          default=jsonable)  # fmt: skip
    except (ValueError, TypeError):
        text = json.dumps(jsonable_row(tuple(row)), ensure_ascii=False, allow_nan=False,
                          separators=(",", ":"))  # fmt: skip
    return text.encode()


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
