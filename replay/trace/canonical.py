"""Canonical event files (Parquet, Arrow IPC, CSV) -> validated canonical batches, streamed.

A minimal file has just ``op,obj,order`` (and optionally ``migratetype``);
every other canonical column is filled in: ``seq`` is the row order, ``ts_ns``
a generated clock (= seq, ns), ``offset`` 0, a missing free order is the whole
object's order, a missing alloc migratetype is MOVABLE (1; pageblocks start
MOVABLE, so such a trace causes no fallbacks) and a free carries its object's
migratetype. Validation names the row (CSV: the line, counting the header).

The file is read batch by batch (Parquet row groups, Arrow IPC record
batches, CSV blocks) and each chunk is checked and filled in on its own; the
per-object state (one entry per allocation id) lives in a numba hash table
(replay.trace._canonical_kernels) carried across chunks. Memory grows with
the number of objects, not with the file. An input ``seq`` column gives the
replay order: a first pass reads only that column, and when it is strictly
increasing (the usual case) the file is replayed in file order; otherwise
the file is read whole and sorted by seq in memory. Errors name the first bad
row in replay order (file order, unless the seq column reorders the rows).
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from replay.errors import BadInputError
from replay.trace import _canonical_kernels as K
from replay.trace.schema import COMM_TYPE, EVENT_SCHEMA, MAX_ORDER, MAX_PFN, OP_DICTIONARY

META_KEY = b"replay"
REQUIRED = ("op", "obj", "order")
# Integer columns, in the order their values are checked within a row.
INT_COLUMNS = (
    "obj",
    "order",
    "offset",
    "migratetype",
    "ts_ns",
    "pfn",
    "cpu",
    "pid",
    "region",
    "vpn",
)
STRING_COLUMNS = ("gfp", "comm")
BOOL_COLUMNS = ("movable", "batched", "failed")
COLUMNS = ("seq", "op", *INT_COLUMNS, *STRING_COLUMNS, *BOOL_COLUMNS)
BATCH_ROWS = 1 << 18  # rows per chunk: bounds the memory of one chunk's columns
CSV_BLOCK_BYTES = 1 << 22  # bytes of CSV text parsed per block (about 100-200k rows)
FILLED = ("seq", "ts_ns", "op", "obj", "offset", "order", "migratetype", "line")

# Priorities of the checks within one row (lower first): a row's column checks
# come before its object checks, except empty ts_ns values and the narrowing
# of values to their column type, which the object checks precede.
P_OP = 1
P_INT = {
    "obj": 2,
    "order": 4,
    "offset": 6,
    "migratetype": 7,
    "ts_ns": 8,
    "pfn": 9,
    "cpu": 10,
    "pid": 11,
    "region": 12,
    "vpn": 13,
}
P_OBJ_NULL = 3
P_ORDER_RANGE = 5
P_MT_RANGE = 14
P_OBJECTS = 15
P_TS_NULL = 16
P_LATE = 17
_FLOAT_TEXT = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def sniff(path: Path) -> str | None:
    """``parquet``, ``arrow`` (IPC file or stream), ``csv`` or None."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"ARROW1") or head.startswith(b"\xff\xff\xff\xff"):
        return "arrow"
    first = head.split(b"\n", 1)[0].strip().lower()
    cols = [c.strip().strip(b'"') for c in first.split(b",")]
    if b"op" in cols and b"obj" in cols:
        return "csv"
    return None


def _where(kind: str, row: int) -> int:
    """The line number a row is reported at: CSV counts its header line."""
    return row + 2 if kind == "csv" else row + 1


def _fail(path: Path, kind: str, row: int, fieldname: str, message: str) -> BadInputError:
    unit = "" if kind == "csv" else f" (row {row + 1})"
    return BadInputError(message + unit, file=str(path), line=_where(kind, row), field=fieldname)


def _decode_meta(schema: pa.Schema) -> dict[str, Any]:
    raw = (schema.metadata or {}).get(META_KEY)
    if raw:
        try:
            meta = json.loads(raw)
        except ValueError:
            return {}
        return meta if isinstance(meta, dict) else {}
    return {}


def _rebatch(batches: Iterable[pa.RecordBatch], batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The batches in slices of at most ``batch_rows`` rows (zero-copy), empty ones left out."""
    for b in batches:
        for start in range(0, b.num_rows, batch_rows):
            yield b.slice(start, batch_rows)


@dataclass
class CanonicalFile:
    """A canonical input opened for streaming: its columns, replay metadata and rows.

    ``kind`` is parquet, arrow or csv (CSV rows are reported at line row + 2,
    the others at row + 1); ``names`` are the columns replay reads that the
    input has; ``num_rows`` is None when only reading the input tells.
    """

    path: Path
    kind: str
    names: list[str]
    meta: dict[str, Any] = field(default_factory=dict)
    num_rows: int | None = None
    table: pa.Table | None = None  # an in-memory input (from_table)

    def batches(self, columns: list[str], batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        """The input's ``columns`` (some of ``names``) in batches of at most ``batch_rows`` rows."""
        if self.table is not None:
            return _rebatch(
                self.table.select(columns).to_batches(max_chunksize=batch_rows), batch_rows
            )
        return _rebatch(self._read(columns, batch_rows), batch_rows)

    def read_all(self, columns: list[str]) -> pa.Table:
        """The input's ``columns`` as one in-memory table."""
        if self.table is not None:
            return self.table.select(columns)
        schema = None
        batches = []
        for b in self._read(columns, BATCH_ROWS):
            schema = b.schema
            batches.append(b)
        if schema is None:
            return pa.table({c: pa.array([], pa.null()) for c in columns})
        return pa.Table.from_batches(batches, schema=schema)

    def _read(self, columns: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
        try:
            if self.kind == "parquet":
                with pq.ParquetFile(self.path) as f:
                    yield from f.iter_batches(batch_size=batch_rows, columns=columns)
            elif self.kind == "arrow":
                yield from self._read_ipc(columns)
            else:
                yield from _open_csv(self.path, columns)
        except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
            raise _read_error(self.path, self.kind, exc) from exc

    def _read_ipc(self, columns: list[str]) -> Iterator[pa.RecordBatch]:
        # Only the columns asked for are decoded (the seq pass reads one).
        is_file, schema = _ipc_schema(self.path)
        opts = ipc.IpcReadOptions(included_fields=[schema.get_field_index(c) for c in columns])
        with pa.OSFile(str(self.path)) as f:
            if is_file:
                reader = ipc.open_file(f, options=opts)
                for i in range(reader.num_record_batches):
                    yield reader.get_batch(i)
            else:
                yield from ipc.open_stream(f, options=opts)


def _ipc_schema(path: Path) -> tuple[bool, pa.Schema]:
    """Whether an Arrow IPC file is in the file (not the stream) format, and its schema."""
    with pa.OSFile(str(path)) as f:
        is_file = f.read(6) == b"ARROW1"
    with pa.OSFile(str(path)) as f:
        return is_file, (ipc.open_file(f).schema if is_file else ipc.open_stream(f).schema)


def _open_csv(path: Path, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """A CSV file's ``columns``, every one read as strings (converted by the caller).

    Arrow reads a quote left open as one value that runs to the end of the
    file; so a value with a newline, or fewer rows than the file has lines,
    sends the file to _csv_problem, which names the line and field.
    """
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in columns},
            include_columns=columns,
            strings_can_be_null=True,
        ),
    )
    rows = 0
    with reader:
        for batch in reader:
            for col in batch.columns:
                data = col.buffers()[2]
                if data is not None and bool((np.frombuffer(data, np.uint8) == 10).any()):
                    raise _csv_problem(path) or BadInputError(
                        "a value runs over lines (a quote left open?)", file=str(path)
                    )
            rows += batch.num_rows
            yield batch
    if rows + 1 < _count_lines(path):
        # Blank lines (Arrow skips them), or a quoted value over lines in a column
        # not read here.
        problem = _csv_problem(path)
        if problem is not None:
            raise problem


def _count_lines(path: Path) -> int:
    """Lines of a text file (a last line without a newline counts)."""
    n = 0
    last = b"\n"
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            n += int(np.count_nonzero(np.frombuffer(block, np.uint8) == 10))
            last = block[-1:]
    return n + (last != b"\n")


def _read_error(path: Path, kind: str, exc: BaseException) -> BadInputError:
    """A reader's failure as a BadInputError; for CSV, naming the line and field."""
    if kind == "csv":
        problem = _csv_problem(path)
        if problem is not None:
            return problem
    return BadInputError(f"cannot read as {kind}: {exc}", file=str(path))


def _csv_problem(path: Path) -> BadInputError | None:
    """The first line of a CSV file that is not well formed, as an error naming the line
    (1-based) and the field; None when every line is.

    Not well formed: bytes that are not UTF-8, a row with more or fewer fields
    than the header, a quoted value that runs over lines (its closing quote is
    missing). Blank lines are allowed (Arrow skips them). A second, slow pass
    over the file in Python, made only after a fast read found something wrong.
    """
    name = str(path)
    where = [0]  # physical lines handed to the csv reader

    def lines() -> Iterator[str]:
        with open(path, "rb") as f:
            for raw in f:
                where[0] += 1
                try:
                    yield raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise _BadUtf8Error(where[0], raw, exc) from None

    header: list[str] | None = None
    reader = csv.reader(lines())
    try:
        while True:
            start = where[0] + 1
            try:
                row = next(reader)
            except StopIteration:
                return None
            if not row:
                continue
            for k, value in enumerate(row):
                if "\n" in value:
                    col = header[k] if header is not None and k < len(header) else None
                    return BadInputError(
                        f"a quoted value runs from line {start} over {where[0] - start + 1} "
                        f"lines{_column(k, col)}: is its closing quote missing?",
                        file=name, line=start, field=col,
                    )  # fmt: skip
            if header is None:
                header = [c.strip() for c in row]
                continue
            if len(row) != len(header):
                missing = len(row) < len(header)
                col = header[len(row)] if missing else None
                what = (
                    f"no value for column {len(row) + 1} ({header[len(row)]!r})"
                    if missing
                    else f"an extra value {row[len(header)]!r} in column {len(header) + 1}"
                )
                return BadInputError(
                    f"{len(row)} fields, but the header has {len(header)}: {what}",
                    file=name, line=start, field=col,
                )  # fmt: skip
    except _BadUtf8Error as bad:
        text = bad.raw.decode("utf-8", "surrogateescape")
        k = 0
        try:
            fields = next(csv.reader([text]))
            k = next(i for i, v in enumerate(fields) if any("\udc80" <= c <= "\udcff" for c in v))
        except (csv.Error, StopIteration):
            fields = []
        col = header[k] if header is not None and fields and k < len(header) else None
        return BadInputError(
            f"invalid UTF-8: byte {bad.raw[bad.exc.start]:#04x} at byte {bad.exc.start + 1} "
            f"of the line{_column(k, col) if fields else ''}",
            file=name, line=bad.line, field=col,
        )  # fmt: skip
    except csv.Error as exc:
        return BadInputError(f"malformed CSV: {exc}", file=name, line=where[0])


def _column(k: int, name: str | None) -> str:
    return f", column {k + 1}" + (f" ({name!r})" if name else "")


class _BadUtf8Error(Exception):
    """A line of a CSV file that is not UTF-8 (raised inside _csv_problem)."""

    def __init__(self, line: int, raw: bytes, exc: UnicodeDecodeError) -> None:
        super().__init__(line)
        self.line = line
        self.raw = raw
        self.exc = exc


def open_file(path: Path, kind: str) -> CanonicalFile:
    """Open a canonical Parquet, Arrow IPC (file or stream) or CSV file for streaming.

    Reads only the schema, the replay metadata stored with it (Parquet and
    Arrow) and, where the file says, the number of rows.
    """
    num_rows = None
    try:
        if kind == "parquet":
            with pq.ParquetFile(path) as f:
                schema = f.schema_arrow
                num_rows = f.metadata.num_rows
        elif kind == "arrow":
            schema = _ipc_schema(path)[1]
        else:
            with pacsv.open_csv(
                path,
                read_options=pacsv.ReadOptions(block_size=1 << 16),
                convert_options=pacsv.ConvertOptions(
                    column_types={c: pa.string() for c in COLUMNS}, strings_can_be_null=True
                ),
            ) as reader:
                schema = reader.schema
        have = set(schema.names)  # column names that are not UTF-8 fail here
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
        raise _read_error(Path(path), kind, exc) from exc
    names = [c for c in COLUMNS if c in have]
    return CanonicalFile(Path(path), kind, names, _decode_meta(schema), num_rows)


def from_table(table: pa.Table, path: Path, kind: str = "arrow") -> CanonicalFile:
    """An in-memory canonical table as an input; ``path`` names it in error messages."""
    names = [c for c in COLUMNS if c in table.column_names]
    return CanonicalFile(
        Path(path), kind, names, _decode_meta(table.schema), table.num_rows, table=table
    )


# -- column conversion ---------------------------------------------------------------------
@dataclass
class Ints:
    """An integer column of one chunk: int64 values (0 where null), validity, first bad row.

    ``valid`` is None when no value is null; ``bad`` is the chunk row of the
    first value that is not an integer (-1: none).
    """

    values: np.ndarray
    valid: np.ndarray | None
    bad: int = -1


def _valid_of(arr: pa.Array) -> np.ndarray | None:
    if arr.null_count == 0:
        return None
    return np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=np.bool_)


def parse_ints(arr: pa.Array, path: Path, col: str) -> Ints:
    """A column of any integer-like Arrow type (or strings of integers) as int64.

    Strings: blanks around an optional sign and decimal or ``0x`` hex
    digits; a decimal number with an integral value (``5.0``) is accepted
    too. A column of another type that does not convert is an error naming
    the field only.
    """
    typ = arr.type
    if pa.types.is_dictionary(typ):
        arr = arr.dictionary_decode()
        typ = arr.type
    n = len(arr)
    if pa.types.is_null(typ):
        return Ints(np.zeros(n, np.int64), np.zeros(n, np.bool_))
    if pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_string_view(typ):
        return _parse_strings(arr)
    valid = _valid_of(arr)
    if pa.types.is_floating(typ):
        vals = arr.to_numpy(zero_copy_only=False).astype(np.float64)
        ok = np.isfinite(vals) & (vals == np.floor(vals)) & (np.abs(vals) < 2.0**63)
        bad = ~ok if valid is None else (~ok & valid)
        first = int(np.argmax(bad)) if bad.any() else -1
        out = np.where(ok, vals, 0).astype(np.int64)
        return Ints(out, valid, first)
    try:
        cast = arr.cast(pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise BadInputError(str(exc), file=str(path), field=col) from exc
    if valid is not None:
        cast = cast.fill_null(0)
    return Ints(np.asarray(cast.to_numpy(zero_copy_only=False), dtype=np.int64), valid)


def _parse_strings(arr: pa.Array) -> Ints:
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = arr.cast(pa.large_string())
    n = len(arr)
    bufs = arr.buffers()
    off_type = np.int32 if pa.types.is_string(arr.type) else np.int64
    offsets = np.frombuffer(bufs[1], dtype=off_type)[arr.offset : arr.offset + n + 1]
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(1, np.uint8)
    valid = _valid_of(arr)
    out = np.empty(n, np.int64)
    bad = np.empty(n, np.bool_)
    nbad = K.parse_ints(
        _kernel_array(data, np.uint8),
        _kernel_array(offsets, np.int64),
        _kernel_array(valid if valid is not None else np.zeros(0, np.bool_), np.bool_),
        out,
        bad,
    )
    # Decimal numbers with an integral value (a CSV reader's 5.0 or 1e3), up to
    # the first value that is not an integer (rows after it are never used).
    for r in np.flatnonzero(bad) if nbad else ():
        text = arr[int(r)].as_py()
        f = float(text) if _FLOAT_TEXT.fullmatch(text) else math.nan
        if not (math.isfinite(f) and f.is_integer() and abs(f) < 2.0**63):
            return Ints(out, valid, int(r))
        out[r] = int(f)
    return Ints(out, valid)


def _kernel_array(a: np.ndarray, dtype: type) -> np.ndarray:
    """``a`` as a writable contiguous array of ``dtype`` (copied only if it is not one).

    Arrays viewed zero-copy from Arrow are read-only, and numba compiles a
    kernel once per combination of read-only and writable arguments: one
    kind for all keeps it to one compilation.
    """
    return np.require(a, dtype=dtype, requirements=["C", "W"])


def _lookup_codes(arr: pa.Array, code: Callable[[Any], int], null_code: int) -> np.ndarray:
    """Per row, ``code`` of its value (computed once per distinct value); nulls get null_code."""
    if not pa.types.is_dictionary(arr.type):
        arr = pc.dictionary_encode(arr)
    values = arr.dictionary.to_pylist()
    lut = np.array([code(v) for v in values] + [null_code], dtype=np.int8)
    idx = arr.indices.cast(pa.int32())
    if idx.null_count:
        idx = idx.fill_null(len(values))
    return lut[np.asarray(idx.to_numpy(zero_copy_only=False))]


def _op_code(v: Any) -> int:
    s = (v if isinstance(v, str) else str(v)).strip().lower()
    return K.OP_ALLOC if s == "alloc" else K.OP_FREE if s == "free" else 2


def _bool_code(v: Any) -> int:
    """0 false, 1 true, 3 not a truth value."""
    if isinstance(v, bool):
        return int(v)
    s = (v if isinstance(v, str) else str(v)).strip().lower()
    return 1 if s in ("true", "1") else 0 if s in ("false", "0") else 3


def _bools(arr: pa.Array) -> tuple[pa.Array, int]:
    """A truth-value column as bool; the chunk row of the first bad value (-1: none)."""
    typ = arr.type
    if pa.types.is_boolean(typ):
        return arr, -1
    if pa.types.is_null(typ) or pa.types.is_integer(typ) or pa.types.is_floating(typ):
        return arr.cast(pa.bool_()), -1
    codes = _lookup_codes(arr, _bool_code, 2)
    bad = codes == 3
    if bad.any():
        return arr, int(np.argmax(bad))
    return pa.array(codes == 1, mask=codes == 2), -1


def _dict_strings(arr: pa.Array) -> pa.Array:
    """A string column as dictionary<int32, string> (gfp, comm)."""
    if pa.types.is_dictionary(arr.type):
        if pa.types.is_string(arr.type.value_type) and pa.types.is_integer(arr.type.index_type):
            return arr.cast(COMM_TYPE)
        arr = arr.dictionary_decode()
    if arr.type != pa.string():
        arr = arr.cast(pa.string())
    return pc.dictionary_encode(arr)


_INT_INFO = {t: np.iinfo(t) for t in (np.int8, np.int16, np.int32)}


# -- the stream ----------------------------------------------------------------------------
class ObjectTable:
    """The per-object state of a stream (numba hash table plus bitmap pool), grown as needed."""

    LOAD = 0.75  # entries per slot at most
    CAPACITY = 1 << 16  # slots to start with (a power of two; 16 bytes each)
    POOL_WORDS = 1 << 10  # int64 words of bitmap pool to start with

    def __init__(self) -> None:
        self.tab = np.zeros((self.CAPACITY, 2), dtype=np.int64)
        self.pool = np.zeros(self.POOL_WORDS, dtype=np.int64)
        self.st = np.zeros(K.N_ST, dtype=np.int64)
        self.st[K.ST_LIMIT] = int(self.CAPACITY * self.LOAD)

    def pair(
        self,
        op: np.ndarray,
        obj: np.ndarray,
        order: np.ndarray,
        offset: np.ndarray,
        mt: np.ndarray,
        has_pfn: np.ndarray,
        rows: np.ndarray,
        stop: int,
        out_order: np.ndarray,
        out_mt: np.ndarray,
    ) -> bool:
        """Run pair_objects over rows 0..stop-1; False at an error (ST_ERR* say which)."""
        op, obj, order, offset, mt, has_pfn, rows = (
            _kernel_array(a, t)
            for a, t in ((op, np.int8), (obj, np.int64), (order, np.int64), (offset, np.int64),
                         (mt, np.int64), (has_pfn, np.bool_), (rows, np.int64))
        )  # fmt: skip
        i = 0
        while True:
            i = K.pair_objects(
                op,
                obj,
                order,
                offset,
                mt,
                has_pfn,
                rows,
                i,
                stop,
                self.tab,
                self.pool,
                self.st,
                out_order,
                out_mt,
            )
            if i >= stop:
                return True
            why = self.st[K.ST_STOP]
            self.st[K.ST_STOP] = 0
            if why == K.STOP_GROW_TABLE:
                new = np.zeros((2 * self.tab.shape[0], 2), dtype=np.int64)
                K.rehash_objects(self.tab, new)
                self.tab = new
                self.st[K.ST_LIMIT] = int(new.shape[0] * self.LOAD)
            elif why == K.STOP_GROW_POOL:
                if 2 * self.pool.shape[0] > K.MAX_POOL:
                    raise MemoryError("too many partly freed objects")
                pool = np.zeros(2 * self.pool.shape[0], dtype=np.int64)
                pool[: self.pool.shape[0]] = self.pool
                self.pool = pool
            else:
                self.st[K.ST_STOP] = why
                return False


class CanonicalStream:
    """Validated, filled-in EVENT_SCHEMA batches of a canonical input, and their totals.

    The batches have the EVENT_SCHEMA columns that are always filled in and
    those the input has (``schema``): a column the input lacks is all null,
    which an INSERT into the events table gives without carrying it.
    Iterate ``batches()`` once; afterwards ``counts`` holds the pairing counts
    (allocs, frees, partial_frees, preexisting, failed_allocs, batched,
    live_at_end), ``rows`` the number of events, ``ts_min``/``ts_max`` (ns)
    and ``pfn_min``/``pfn_max`` (pfn, None without one). ``on_rows`` is
    called with the number of rows done after each batch.
    """

    def __init__(
        self,
        src: CanonicalFile,
        *,
        batch_rows: int = BATCH_ROWS,
        on_rows: Callable[[int], None] | None = None,
    ) -> None:
        self.src = src
        self.schema = pa.schema(
            [f for f in EVENT_SCHEMA if f.name in FILLED or f.name in src.names]
        )
        self.path = src.path
        self.kind = src.kind
        self.batch_rows = batch_rows
        self.on_rows = on_rows
        self.counts: dict[str, int] = {}
        self.rows = 0
        self.ts_min: int | None = None
        self.ts_max: int | None = None
        self.pfn_min: int | None = None
        self.pfn_max: int | None = None
        self._objects = ObjectTable()
        self._batched = 0
        self._failed = 0  # allocation rows the kernel failed

    def _fail(self, row: int, col: str, message: str) -> BadInputError:
        return _fail(self.path, self.kind, row, col, message)

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The events in replay order, in EVENT_SCHEMA batches (seq 0..n-1)."""
        src = self.src
        missing = [c for c in REQUIRED if c not in src.names]
        if missing:
            raise BadInputError(
                f"missing required column(s) {', '.join(missing)} (need at least op,obj,order)",
                file=str(self.path),
                field=missing[0],
            )
        if src.num_rows == 0:
            raise BadInputError("no events (the file has no rows)", file=str(self.path))
        order = self._replay_order()
        columns = [c for c in src.names if c != "seq"]
        if order is None:
            row = 0
            for b in src.batches(columns, self.batch_rows):
                yield self._chunk(b, np.arange(row, row + b.num_rows, dtype=np.int64))
                row += b.num_rows
        else:
            # Rare: the seq column reorders the rows. Sorted in memory.
            table = src.read_all(columns).take(order)
            at = 0
            for b in _rebatch(table.to_batches(max_chunksize=self.batch_rows), self.batch_rows):
                yield self._chunk(b, order[at : at + b.num_rows])
                at += b.num_rows
        if self.rows == 0:
            raise BadInputError("no events (the file has no rows)", file=str(self.path))
        st = self._objects.st
        # Requests the kernel failed are rows of their own objects, never freed: they
        # are counted apart from the allocations that got pages.
        allocs = int(st[K.ST_ALLOCS]) - self._failed
        self.counts = {
            "allocs": allocs,
            "frees": int(st[K.ST_FREES]),
            "partial_frees": int(st[K.ST_PARTIAL]),
            "preexisting": int(st[K.ST_PRE]),
            "failed_allocs": self._failed,
            "batched": self._batched,
            "live_at_end": allocs - int(st[K.ST_FULL]),
        }

    def _replay_order(self) -> np.ndarray | None:
        """None when the rows are in replay order (no seq column, or one strictly
        increasing); else the input rows sorted by seq."""
        if "seq" not in self.src.names:
            return None
        row = 0
        last: int | None = None
        in_order = True
        for b in self.src.batches(["seq"], self.batch_rows):
            seq = parse_ints(b.column(0), self.path, "seq")
            if seq.bad >= 0:
                raise self._fail(
                    row + seq.bad,
                    "seq",
                    f"expected an integer, got {b.column(0)[seq.bad].as_py()!r}",
                )
            v = seq.values
            if in_order and (
                seq.valid is not None
                or (last is not None and v[0] <= last)
                or bool((v[1:] <= v[:-1]).any())
            ):
                in_order = False
            last = int(v[-1])
            row += b.num_rows
        if row == 0:
            raise BadInputError("no events (the file has no rows)", file=str(self.path))
        if in_order:
            return None
        # Read the column again, whole, now that it must be sorted.
        values = np.empty(row, np.int64)
        valid = np.ones(row, np.bool_)
        at = 0
        for b in self.src.batches(["seq"], self.batch_rows):
            seq = parse_ints(b.column(0), self.path, "seq")
            values[at : at + b.num_rows] = seq.values
            if seq.valid is not None:
                valid[at : at + b.num_rows] = seq.valid
            at += b.num_rows
        present = np.flatnonzero(valid)
        order = present[np.argsort(values[present], kind="stable")]
        ranked = values[order]
        same = ranked[1:] == ranked[:-1]
        bad = ~valid
        bad[order[1:][same]] = True  # every row of a value that repeats
        bad[order[:-1][same]] = True
        if bad.any():
            raise self._fail(int(np.argmax(bad)), "seq", "seq must be unique and not empty")
        return order

    def _chunk(self, b: pa.RecordBatch, rows: np.ndarray) -> pa.RecordBatch:
        """Check and fill in one chunk; ``rows`` are its input rows (for messages)."""
        m = b.num_rows
        cols = {name: b.column(name) for name in b.schema.names}
        first: list[tuple[int, int, Callable[[], BadInputError]]] = []

        def offer(r: int, prio: int, make: Callable[[], BadInputError]) -> None:
            if r >= 0:
                first.append((r, prio, make))

        def not_int(col: str, r: int) -> Callable[[], BadInputError]:
            return lambda: self._fail(
                int(rows[r]), col, f"expected an integer, got {cols[col][r].as_py()!r}"
            )

        op = _lookup_codes(cols["op"], _op_code, 2)
        bad_op = op == 2
        if bad_op.any():
            r_op = int(np.argmax(bad_op))
            offer(
                r_op,
                P_OP,
                lambda: self._fail(
                    int(rows[r_op]),
                    "op",
                    f"must be 'alloc' or 'free', got {cols['op'][r_op].as_py()!r}",
                ),
            )
        ints: dict[str, Ints] = {}
        for col in INT_COLUMNS:
            if col in cols:
                ints[col] = parse_ints(cols[col], self.path, col)
                offer(ints[col].bad, P_INT[col], not_int(col, ints[col].bad))
        obj = ints["obj"]
        if obj.valid is not None:
            r_obj = int(np.argmin(obj.valid))
            offer(
                r_obj,
                P_OBJ_NULL,
                lambda: self._fail(int(rows[r_obj]), "obj", "obj must not be empty"),
            )
        order_col = ints["order"]
        order = order_col.values
        order_ok = (order >= 0) & (order <= MAX_ORDER)
        if order_col.valid is not None:
            order_ok = np.where(order_col.valid, order_ok, op != K.OP_ALLOC)
        bad_order = ~order_ok
        if order_col.bad >= 0:
            bad_order[order_col.bad] = False  # reported as not an integer
        if bad_order.any():
            r_ord = int(np.argmax(bad_order))
            shown = (
                None
                if order_col.valid is not None and not order_col.valid[r_ord]
                else int(order[r_ord])
            )
            offer(
                r_ord,
                P_ORDER_RANGE,
                lambda: self._fail(
                    int(rows[r_ord]), "order", f"order {shown} is outside 0..{MAX_ORDER}"
                ),
            )
        mt_col = ints.get("migratetype")
        if mt_col is not None:
            bad_mt = (mt_col.values < -1) | (mt_col.values > 5)
            if mt_col.valid is not None:
                bad_mt &= mt_col.valid
            if bad_mt.any():
                r_mt = int(np.argmax(bad_mt))
                offer(
                    r_mt,
                    P_MT_RANGE,
                    lambda: self._fail(
                        int(rows[r_mt]),
                        "migratetype",
                        f"migratetype {mt_col.values[r_mt]} is not one of 0..5",
                    ),
                )
        ts_col = ints.get("ts_ns")
        if ts_col is not None and ts_col.valid is not None:
            r_ts = int(np.argmin(ts_col.valid))
            offer(
                r_ts,
                P_TS_NULL,
                lambda: self._fail(int(rows[r_ts]), "ts_ns", "ts_ns has empty values"),
            )
        bools: dict[str, pa.Array] = {}
        for col in BOOL_COLUMNS:
            if col in cols:
                bools[col], r_b = _bools(cols[col])
                if r_b >= 0:
                    offer(
                        r_b,
                        P_LATE,
                        lambda col=col, r_b=r_b: self._fail(
                            int(rows[r_b]),
                            col,
                            f"expected true or false, got {cols[col][r_b].as_py()!r}",
                        ),
                    )
        if "failed" in bools:
            # An allocation the recorded kernel failed: no pages, so no pfn.
            fl = bools["failed"].fill_null(False).to_numpy(zero_copy_only=False)
            has = (
                np.zeros(m, np.bool_)
                if "pfn" not in ints
                else (ints["pfn"].valid if ints["pfn"].valid is not None else np.ones(m, np.bool_))
            )
            bad_failed = fl & ((op != K.OP_ALLOC) | has)
            if bad_failed.any():
                r_f = int(np.argmax(bad_failed))
                why = "a free" if op[r_f] != K.OP_ALLOC else "an allocation with a pfn"
                offer(
                    r_f,
                    P_LATE,
                    lambda r_f=r_f, why=why: self._fail(
                        int(rows[r_f]),
                        "failed",
                        f"failed is true on {why}: only an allocation the kernel failed "
                        "(no pfn) can be failed",
                    ),
                )
            self._failed += int(np.count_nonzero(fl))
        pfn_col = ints.get("pfn")
        if pfn_col is not None:
            # A pfn no kernel has: the zone and the models would be sized by it.
            bad_pfn = (pfn_col.values < 0) | (pfn_col.values > MAX_PFN)
            if pfn_col.valid is not None:
                bad_pfn &= pfn_col.valid
            if pfn_col.bad >= 0:
                bad_pfn[pfn_col.bad] = False  # reported as not an integer
            if bad_pfn.any():
                r_pfn = int(np.argmax(bad_pfn))
                offer(
                    r_pfn,
                    P_LATE,
                    lambda: self._fail(
                        int(rows[r_pfn]),
                        "pfn",
                        f"pfn {cols['pfn'][r_pfn].as_py()} is outside 0..{MAX_PFN:#x}: no "
                        "kernel has a page there (physical addresses have at most 52 bits)",
                    ),
                )
        narrowed: dict[str, pa.Array] = {}
        for col, typ in (("offset", pa.int32()), ("cpu", pa.int16()), ("pid", pa.int32())):
            if col in ints:
                narrowed[col] = self._narrow(ints[col], typ, col, rows, offer)

        # The objects, up to the first bad row (and through it when its fault
        # comes after the object checks).
        stop = m
        if first:
            r, prio, _ = min(first, key=lambda f: (f[0], f[1]))
            stop = r + 1 if prio > P_OBJECTS else r
        order_in = (
            order if order_col.valid is None else np.where(order_col.valid, order, K.ORDER_NULL)
        )
        offset = ints["offset"].values if "offset" in ints else np.zeros(m, np.int64)
        if mt_col is None:
            mt_in = np.full(m, K.MT_NULL, np.int64)
        else:
            mt_in = (
                mt_col.values
                if mt_col.valid is None
                else np.where(mt_col.valid, mt_col.values, K.MT_NULL)
            )
        pfn = ints.get("pfn")
        if pfn is None:
            has_pfn = np.zeros(m, np.bool_)
        else:
            has_pfn = np.ones(m, np.bool_) if pfn.valid is None else pfn.valid
        out_order = np.empty(m, np.int8)
        out_mt = np.empty(m, np.int8)
        objects = self._objects
        if not objects.pair(
            op.astype(np.int8, copy=False),
            obj.values,
            order_in,
            offset,
            mt_in,
            has_pfn,
            rows,
            stop,
            out_order,
            out_mt,
        ):
            first.append((-1, 0, self._object_error))
        if first:
            raise min(first, key=lambda f: (f[0], f[1]))[2]()

        seq = np.arange(self.rows, self.rows + m, dtype=np.int64)
        ts = ts_col.values if ts_col is not None else seq
        out: dict[str, pa.Array] = {
            "seq": pa.array(seq),
            "ts_ns": pa.array(ts),
            "op": pa.DictionaryArray.from_arrays(
                pa.array(op.astype(np.int8, copy=False)), OP_DICTIONARY
            ),
            "obj": pa.array(obj.values),
            "offset": narrowed.get("offset", pa.array(np.zeros(m, np.int32))),
            "order": pa.array(out_order),
            "migratetype": pa.array(out_mt),
            "line": pa.array(rows + (2 if self.kind == "csv" else 1)),
        }
        for col in ("pfn", "region", "vpn"):
            if col in ints:
                out[col] = _int_array(ints[col])
        out.update((c, a) for c, a in narrowed.items() if c != "offset")
        for col in STRING_COLUMNS:
            if col in cols:
                out[col] = _dict_strings(cols[col])
        out.update(bools)
        batch = pa.RecordBatch.from_arrays([out[f.name] for f in self.schema], schema=self.schema)

        self.rows += m
        if "batched" in bools:
            self._batched += int(bools["batched"].true_count)
        lo, hi = int(ts.min()), int(ts.max())
        self.ts_min = lo if self.ts_min is None else min(self.ts_min, lo)
        self.ts_max = hi if self.ts_max is None else max(self.ts_max, hi)
        if pfn is not None:
            p = pfn.values if pfn.valid is None else pfn.values[pfn.valid]
            if p.shape[0]:
                lo, hi = int(p.min()), int(p.max())
                self.pfn_min = lo if self.pfn_min is None else min(self.pfn_min, lo)
                self.pfn_max = hi if self.pfn_max is None else max(self.pfn_max, hi)
        if self.on_rows is not None:
            self.on_rows(self.rows)
        return batch

    def _narrow(
        self,
        col_ints: Ints,
        typ: pa.DataType,
        col: str,
        rows: np.ndarray,
        offer: Callable[[int, int, Callable[[], BadInputError]], None],
    ) -> pa.Array:
        """An int column as Arrow ``typ`` (nulls kept; offset nulls are 0); out-of-range
        values are offered as errors."""
        np_type = typ.to_pandas_dtype()
        info = _INT_INFO[np_type]
        v = col_ints.values
        out_of = (v < info.min) | (v > info.max)
        if col_ints.valid is not None:
            out_of &= col_ints.valid
        if col_ints.bad >= 0:
            out_of[col_ints.bad] = False
        if out_of.any():
            r = int(np.argmax(out_of))
            value = int(v[r])  # the value as given (v is zeroed below)
            offer(
                r,
                P_LATE,
                lambda: self._fail(
                    int(rows[r]),
                    col,
                    f"{col} {value} does not fit in the {typ} {col} column "
                    f"({info.min}..{info.max})",
                ),
            )
            v = np.where(out_of, 0, v)
        mask = None if col_ints.valid is None or col == "offset" else ~col_ints.valid
        return pa.array(v.astype(np_type), mask=mask)

    def _object_error(self) -> BadInputError:
        st = self._objects.st
        kind = int(st[K.ST_ERR])
        row = int(st[K.ST_ERR_ROW])
        obj = int(st[K.ST_ERR_OBJ])
        if kind == K.E_ALLOC_TWICE:
            return self._fail(row, "obj", f"object {obj} is allocated twice")
        if kind == K.E_UNKNOWN:
            return self._fail(
                row,
                "obj",
                f"free of unknown object {obj} (no earlier alloc of "
                "it, and no pfn to mark it as allocated before tracing began)",
            )
        if kind == K.E_PRE_TWICE:
            return self._fail(row, "obj", f"object {obj} (allocated before tracing) is freed twice")
        if kind == K.E_PRE_ORDER:
            # Not knowing yet whether an alloc follows (the polars version
            # called that an unknown object), the object is what is wrong.
            return self._fail(
                row,
                "obj",
                f"free of unknown object {obj} (no earlier alloc of it, and no order to free "
                "it as an object allocated before tracing began)",
            )
        if kind == K.E_PART:
            return self._fail(
                row,
                "offset",
                f"freed part (offset {int(st[K.ST_ERR_OFFSET])}, order {int(st[K.ST_ERR_ORDER])}) "
                f"is not an aligned part of object {obj} (order {int(st[K.ST_ERR_OORDER])})",
            )
        return self._fail(row, "obj", f"object {obj} is freed twice")


def _int_array(col: Ints) -> pa.Array:
    """An int64 column as Arrow, nulls kept."""
    return pa.array(col.values, mask=None if col.valid is None else ~col.valid)


def canonicalise(
    table: pa.Table, path: Path, kind: str = "arrow", *, batch_rows: int = BATCH_ROWS
) -> tuple[pa.Table, dict[str, int]]:
    """Validate an in-memory canonical table and fill in the missing columns.

    Returns the table in EVENT_SCHEMA and the pairing counts. The same
    chunked path as a streamed file, ``batch_rows`` rows at a time (``kind``
    csv numbers the rows as lines of a CSV file).
    """
    stream = CanonicalStream(from_table(table, path, kind), batch_rows=batch_rows)
    part = pa.Table.from_batches(list(stream.batches()), schema=stream.schema)
    have = set(part.column_names)
    n = part.num_rows
    columns = [part[f.name] if f.name in have else pa.nulls(n, f.type) for f in EVENT_SCHEMA]
    out = pa.Table.from_arrays(columns, schema=EVENT_SCHEMA)
    return out, stream.counts


def with_metadata(table: pa.Table, meta: dict[str, Any]) -> pa.Table:
    """Attach replay's trace metadata (JSON) to the schema, for Parquet export."""
    md = dict(table.schema.metadata or {})
    md[META_KEY] = json.dumps(meta, default=str).encode()
    return table.replace_schema_metadata(md)
