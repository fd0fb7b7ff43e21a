"""ftrace text (trace_pipe, ``trace`` files, ``trace-cmd report``) -> Arrow batches.

The text is streamed in newline-aligned chunks (replay.trace.reader); each
chunk is parsed by numba kernels (replay.trace._kernels) into typed columns,
page events are paired into objects with state carried across chunks, and two
Arrow record batches come out per chunk: canonical events and aux events.
Memory is bounded by the chunk size plus the pairing state (which grows with
the pfns and objects seen, not with the trace length beyond the object count).

Format variants are detected from the data, per line, never from a version
number: the latency-flags width (none, 4, or 5 on 5.17+), the TGID column,
decimal or 0x-hex pfn (hex since 5.14-ish), pre-3.3 free event names, and
whether a batched free carries ``cold=`` (before 4.15, when it was traced just
before its mm_page_free) or not (4.15+, traced after it).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from replay.errors import BadInputError
from replay.limits import default_max_state_bytes
from replay.trace import _kernels as K
from replay.trace.callsites import StackCollector
from replay.trace.dictenc import SpanDictionary
from replay.trace.reader import DEFAULT_CHUNK_BYTES, ahead, iter_chunks
from replay.trace.schema import AUX_SCHEMA, EVENT_SCHEMA, OP_DICTIONARY

_EV_TABLE, _EV_LENS = K.name_table(K.EVENT_NAMES)
_KEY_TABLE, _KEY_LENS = K.name_table(K.FIELD_NAMES)

LOST_RE = re.compile(rb"LOST\s+(\d+)\s+EVENTS|(?:\[?\s*(\d+)\s+)?EVENTS\s+DROPPED", re.I)
# Lines trace-cmd report and the trace files print around the events.
PREAMBLE_RE = re.compile(
    rb"^\s*(?:cpus=\d+|version\s*=\s*\d+|CPU\s*\d+\s+is\s+empty|#{3,}.*buffer started.*"
    rb"|trace-cmd:.*|CPU\s*\d+\s+data recorded.*)\s*$"
)
# A stacktrace trigger's header line: "comm-pid [(tgid)] [cpu] [flags] secs: <stack trace>"
# (trace-cmd report: "... kernel_stack: <stack trace >"); its frames follow as " => func".
STACK_HEAD_RE = re.compile(rb"-(\d+)\s+(?:\(\s*[\d-]+\)\s+)?\[(\d+)\][^<]*<stack trace")
MAX_BAD_EXAMPLES = 5
# --skip-bad refuses a trace once more than this fraction of its non-blank lines is bad:
# mostly junk is not the trace the user meant.
DEFAULT_MAX_BAD_FRACTION = 0.5

_ERROR_TEXT = {
    K.E_NOT_INT: "expected an integer",
    K.E_MISSING: "is missing",
    K.E_RANGE: "is out of range",
}


@dataclass
class IngestStats:
    """What an ingest saw: line classes, pairing counts and format variants."""

    lines: int = 0
    event_lines: int = 0
    ignored_lines: int = 0
    skipped_bad: int = 0
    bad_examples: list[str] = field(default_factory=list)
    lost_events: int = 0
    lost_markers: int = 0
    lost_lines: list[int] = field(default_factory=list)
    events: int = 0
    aux_events: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    aux_by_event: Counter[str] = field(default_factory=Counter)
    flags_width: Counter[int] = field(default_factory=Counter)
    tgid_column: int = 0
    pfn_hex: int = 0
    pfn_decimal: int = 0
    batched_with_cold: int = 0
    batched_without_cold: int = 0
    pre_3_3_events: int = 0
    preamble_lines: int = 0
    ts_first: int | None = None
    ts_last: int | None = None
    ts_backwards: int = 0
    pfn_min: int | None = None
    pfn_max: int | None = None
    #: kernel stacks read (ftrace stacktrace triggers, trace.dat kernel_stack records)
    stacks: int = 0
    stack_lines: int = 0

    def format_description(self) -> str:
        """A one-line account of the format variants seen in the data."""
        parts = ["trace-cmd report" if self.preamble_lines else "ftrace text"]
        widths = [w for w in sorted(self.flags_width) if self.flags_width[w]]
        if widths == [0]:
            parts.append("no latency flags")
        else:
            parts.append(
                "latency flags "
                + "/".join(f"{w}-char" for w in widths if w)
                + (" (5.17+)" if 5 in widths else "")
            )
        if self.tgid_column:
            parts.append("TGID column")
        if self.pfn_hex and not self.pfn_decimal:
            parts.append("hex pfn (5.14+)")
        elif self.pfn_decimal and not self.pfn_hex:
            parts.append("decimal pfn (before 5.14)")
        elif self.pfn_hex:
            parts.append("mixed hex/decimal pfn")
        if self.pre_3_3_events:
            parts.append("mm_page_free_direct/mm_pagevec_free (before 3.3)")
        if self.batched_with_cold:
            parts.append("batched frees with cold= before their free (3.3-4.14)")
        if self.batched_without_cold:
            parts.append("batched frees after their free (4.15+)")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, object]:
        return {
            "lines": self.lines,
            "event_lines": self.event_lines,
            "ignored_lines": self.ignored_lines,
            "skipped_bad": self.skipped_bad,
            "bad_examples": self.bad_examples,
            "lost_events": self.lost_events,
            "lost_markers": self.lost_markers,
            "lost_lines": self.lost_lines[:100],
            "events": self.events,
            "aux_events": self.aux_events,
            **self.counters,
            "aux_by_event": dict(self.aux_by_event),
            "format": self.format_description(),
            "ts_backwards": self.ts_backwards,
            **({"stacks": self.stacks, "stack_lines": self.stack_lines} if self.stacks else {}),
        }


BLOCK_BYTES = K.PAGE_BLOCK * 8  # one page-map row: an int64 per page of a 1024-page block


class _PairState:
    """Pairing state carried across chunks (page map and per-object arrays).

    The page map has a pool row of K.PAGE_BLOCK pages for each block an event
    touched; ``blocks`` (sorted block numbers, pfn >> K.PAGE_SHIFT_BLOCK) and
    ``block_rows`` (their pool rows) are its directory. Its memory grows with
    the blocks a trace touches (8 KiB each), not with the span of its pfns,
    and never past ``max_bytes``.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.blocks = np.zeros(0, dtype=np.int64)
        self.block_rows = np.zeros(0, dtype=np.int64)
        self.pool = np.full((0, K.PAGE_BLOCK), K.V_UNKNOWN, dtype=np.int64)
        self.nblocks = 0
        cap = 1 << 16
        self.obj_start = np.zeros(cap, dtype=np.int64)
        self.obj_order = np.zeros(cap, dtype=np.int8)
        self.obj_mt = np.zeros(cap, dtype=np.int8)
        self.obj_live = np.zeros(cap, dtype=np.int64)
        self.counters = np.zeros(K.N_COUNTERS, dtype=np.int64)

    def rows_for(self, first: np.ndarray, last: np.ndarray, used: np.ndarray) -> np.ndarray:
        """The pool rows (n x 2) of pfns ``first[i]`` and ``last[i]`` for the events
        where ``used`` is set (-1 elsewhere), mapping the blocks not seen before.

        Raises _StateTooLargeError, with the index of the first event whose block
        would take the map past ``max_bytes``, before allocating anything.
        """
        n = first.shape[0]
        rows = np.full((n, 2), -1, dtype=np.int64)
        if not used.any():
            return rows
        # Interleaved (first, last) per event: np.unique's first index // 2 is the
        # earliest event that touches each block.
        touched = np.stack([first, last], axis=1) >> K.PAGE_SHIFT_BLOCK
        touched[~used] = -1
        flat = touched.ravel()
        cand, first_at = np.unique(flat, return_index=True)
        keep = cand >= 0
        cand, first_at = cand[keep], first_at[keep]
        pos = np.searchsorted(self.blocks, cand)
        known = pos < self.blocks.shape[0]
        known[known] = self.blocks[pos[known]] == cand[known]
        new = cand[~known]
        if new.size:
            self._grow(new, first_at[~known] // 2)
        rows_flat = self.block_rows[np.searchsorted(self.blocks, np.where(flat < 0, 0, flat))]
        rows[:] = np.where(flat < 0, -1, rows_flat).reshape(n, 2)
        return rows

    def _grow(self, new: np.ndarray, new_first_event: np.ndarray) -> None:
        need = self.nblocks + new.size
        limit = self.max_bytes // BLOCK_BYTES
        if need > limit:
            # The first event (in trace order) whose block is one too many.
            over = np.sort(new_first_event)[max(0, limit - self.nblocks)]
            raise _StateTooLargeError(int(over), need, limit)
        if need > self.pool.shape[0]:
            cap = min(max(need, 2 * self.pool.shape[0], 4), limit)
            grown_pool = np.full((cap, K.PAGE_BLOCK), K.V_UNKNOWN, dtype=np.int64)
            grown_pool[: self.nblocks] = self.pool[: self.nblocks]
            self.pool = grown_pool
        at = np.searchsorted(self.blocks, new)
        self.blocks = np.insert(self.blocks, at, new)
        self.block_rows = np.insert(
            self.block_rows, at, np.arange(self.nblocks, need, dtype=np.int64)
        )
        self.nblocks = need

    @property
    def nbytes(self) -> int:
        """Bytes the pairing state holds (page map, its directory, per-object arrays)."""
        return sum(
            a.nbytes
            for a in (self.pool, self.blocks, self.block_rows, self.obj_start,
                      self.obj_order, self.obj_mt, self.obj_live)
        )  # fmt: skip

    def ensure_objects(self, extra: int) -> None:
        need = int(self.counters[K.C_NOBJ]) + extra
        cap = self.obj_start.shape[0]
        if need <= cap:
            return
        cap = max(need, 2 * cap)
        for name in ("obj_start", "obj_order", "obj_mt", "obj_live"):
            old = getattr(self, name)
            new = np.zeros(cap, dtype=old.dtype)
            new[: old.shape[0]] = old
            setattr(self, name, new)


class _StateTooLargeError(Exception):
    """The page map would pass its byte limit at chunk event ``event``."""

    def __init__(self, event: int, blocks: int, limit: int) -> None:
        super().__init__(event)
        self.event = event
        self.blocks = blocks
        self.limit = limit


# Where each field that can be out of range is written in a line (its value, as written).
_VALUE_RE = {
    "timestamp": re.compile(rb"\]\s+(?:\S+\s+)?(\d[\d.]*):\s"),
    "cpu": re.compile(rb"\s\[(\d+)\]"),
    "pid": re.compile(rb"-(\d+)\s+(?:\([^)]*\)\s+)?\[\d+\]"),
    "tgid": re.compile(rb"\((\d+)\)\s+\[\d+\]"),
}
_RANGE_TEXT = {
    "timestamp": "is past the largest time an int64 of ns holds (about 292 years)",
    "cpu": f"does not fit in the int16 cpu column (at most {K.INT16_MAX})",
    "pid": f"does not fit in the int32 pid column (at most {K.INT32_MAX})",
    "tgid": f"does not fit in an int32 (at most {K.INT32_MAX})",
    "order": f"is outside 0..{K.MAX_ORDER}",
    "migratetype": f"is not one of -1..{K.MAX_MIGRATETYPE}",
    "pfn": (
        f"is outside 0..{K.MAX_PFN:#x}: no kernel has a page there "
        "(physical addresses have at most 52 bits)"
    ),
}


def _range_error(fname: str, text: bytes, parsed: object) -> str:
    """``FIELD VALUE is ...``: an out-of-range field's value as the line writes it
    (``parsed``, the value as parsed, when the line does not show it: a binary record)."""
    pattern = _VALUE_RE.get(fname) or re.compile(
        rb"(?:^|[\s,])" + re.escape(fname.encode()) + rb"=([^\s,]*)"
    )
    m = pattern.search(text)
    value = m.group(1).decode("utf-8", "replace") if m else str(parsed)
    return f"{fname} {value} {_RANGE_TEXT.get(fname, 'is out of range')}"


def _strings(buf: np.ndarray, s: np.ndarray, e: np.ndarray) -> pa.Array:
    """An Arrow string array of the byte spans (invalid UTF-8 replaced)."""
    data, offsets = K.gather_spans(buf, s.astype(np.int64), e.astype(np.int64))
    arr = pa.StringArray.from_buffers(len(s), pa.py_buffer(offsets), pa.py_buffer(data))
    try:
        arr.validate(full=True)
    except pa.ArrowInvalid:
        raw = data.tobytes()
        arr = pa.array(
            [raw[offsets[i] : offsets[i + 1]].decode("utf-8", "replace") for i in range(len(s))],
            type=pa.string(),
        )
    return arr


def _json_args(
    buf: np.ndarray,
    offsets: np.ndarray,
    ks: np.ndarray,
    ke: np.ndarray,
    vs: np.ndarray,
    ve: np.ndarray,
    empty: np.ndarray,
) -> pa.Array:
    """JSON object texts of each row's key=value spans (NULL where ``empty``)."""
    data, offs = K.json_objects(buf, offsets.astype(np.int64), ks, ke, vs, ve)
    n = len(empty)
    nulls = int(np.count_nonzero(empty))
    # A boolean array's bit-packed values are laid out as an Arrow validity bitmap.
    valid = pa.array(~empty).buffers()[1] if nulls else None
    arr = pa.StringArray.from_buffers(n, pa.py_buffer(offs), pa.py_buffer(data), valid, nulls)
    try:
        arr.validate(full=True)
    except pa.ArrowInvalid:  # bytes that are not UTF-8: decode with replacement
        raw = data.tobytes()
        arr = pa.array(
            [
                None if empty[i] else raw[offs[i] : offs[i + 1]].decode("utf-8", "replace")
                for i in range(n)
            ],
            type=pa.string(),
        )
    return arr


def _opt(values: np.ndarray, present: np.ndarray, typ: pa.DataType) -> pa.Array:
    """Arrow array from numpy values with nulls where ``present`` is False."""
    if bool(present.all()):
        return pa.array(values.astype(typ.to_pandas_dtype(), copy=False), type=typ)
    return pa.array(values.astype(typ.to_pandas_dtype(), copy=False), type=typ, mask=~present)


@dataclass
class Scanned:
    """One chunk's lines parsed by K.parse_lines (byte spans into ``buf``)."""

    chunk: bytes
    buf: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    n: int
    kind: np.ndarray
    comm_s: np.ndarray
    comm_e: np.ndarray
    pid: np.ndarray
    tgid: np.ndarray
    cpu: np.ndarray
    flags_len: np.ndarray
    ts_ns: np.ndarray
    code: np.ndarray
    ev_s: np.ndarray
    ev_e: np.ndarray
    pay_s: np.ndarray
    pay_e: np.ndarray
    fields: np.ndarray
    gfp_s: np.ndarray
    gfp_e: np.ndarray
    err_field: np.ndarray
    err_kind: np.ndarray
    pfn_hex: np.ndarray
    n_untyped: np.ndarray
    #: kernel stacks of a binary recording: (row, frames innermost first); their rows
    #: are K_BLANK (the text's ``<stack trace>`` and `` => `` lines are K_OTHER)
    stacks: list[tuple[int, tuple[str, ...]]] | None = None
    #: of them, stacks of the record on their own row (perf callchains), at its end
    own_stacks: int = 0


def _scan_chunk(chunk: bytes) -> Scanned:
    """Split a chunk into lines and parse each line's header and kmem fields."""
    buf = np.frombuffer(chunk, dtype=np.uint8)
    # numpy's SIMD compare and nonzero find the newlines faster than a byte loop
    # (both release the GIL on arrays this size).
    ends = np.flatnonzero(buf == 10)
    if len(chunk) and chunk[-1] != 10:
        ends = np.append(ends, len(chunk))
    starts = np.empty_like(ends)
    if ends.shape[0]:
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
    n = ends.shape[0]
    sc = Scanned(
        chunk=chunk,
        buf=buf,
        starts=starts,
        ends=ends,
        n=n,
        kind=np.empty(n, np.int8),
        comm_s=np.zeros(n, np.int64),
        comm_e=np.zeros(n, np.int64),
        pid=np.zeros(n, np.int32),
        tgid=np.zeros(n, np.int32),
        cpu=np.zeros(n, np.int32),
        flags_len=np.zeros(n, np.int8),
        ts_ns=np.zeros(n, np.int64),
        code=np.zeros(n, np.int8),
        ev_s=np.zeros(n, np.int64),
        ev_e=np.zeros(n, np.int64),
        pay_s=np.zeros(n, np.int64),
        pay_e=np.zeros(n, np.int64),
        fields=np.empty((n, K.N_INT_FIELDS), np.int64),
        gfp_s=np.zeros(n, np.int64),
        gfp_e=np.zeros(n, np.int64),
        err_field=np.zeros(n, np.int8),
        err_kind=np.zeros(n, np.int8),
        pfn_hex=np.zeros(n, np.int8),
        n_untyped=np.zeros(n, np.int32),
    )
    K.parse_lines(
        buf, starts, ends, _EV_TABLE, _EV_LENS, _KEY_TABLE, _KEY_LENS,
        sc.kind, sc.comm_s, sc.comm_e, sc.pid, sc.tgid, sc.cpu, sc.flags_len, sc.ts_ns,
        sc.code, sc.ev_s, sc.ev_e, sc.pay_s, sc.pay_e, sc.fields, sc.gfp_s, sc.gfp_e,
        sc.err_field, sc.err_kind, sc.pfn_hex, sc.n_untyped,
    )  # fmt: skip
    return sc


def scan_chunks(chunks: Iterator[bytes]) -> Iterator[Scanned]:
    try:
        for chunk in chunks:
            yield _scan_chunk(chunk)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


class FtraceParser:
    """Stream an ftrace text file as (events, aux) Arrow record batches.

    ``skip_bad`` skips and counts malformed lines instead of failing on the
    first one, up to ``max_bad_fraction`` of the lines that are not blank:
    past it the trace is refused at its end (BadInputError). The pairing page
    map may take at most ``max_state_bytes`` (default: a quarter of physical
    memory); a trace whose pfns need more is refused before it is allocated.
    After iteration, ``stats`` holds the counts.
    """

    def __init__(
        self,
        path: Path,
        *,
        skip_bad: bool = False,
        max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        on_raw: Callable[[int], None] | None = None,
        display_name: str | None = None,
        max_state_bytes: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.name = display_name or str(path)
        self.skip_bad = skip_bad
        self.max_bad_fraction = max_bad_fraction
        self.chunk_bytes = chunk_bytes
        self.on_raw = on_raw
        self.stats = IngestStats()
        self._state = _PairState(
            default_max_state_bytes() if max_state_bytes is None else max_state_bytes
        )
        self._comm = SpanDictionary()  # task names, of events and aux rows
        self._gfp = SpanDictionary()
        self._event = SpanDictionary()  # aux rows' event names
        self._g = 0  # canonical rows emitted so far (the next seq)
        #: kernel stacks read, for the callsites table (replay.trace.callsites)
        self.stacks = StackCollector()
        #: (line, cpu, pid) of the last chunk's last line when it is an event's
        self._last_event: tuple[int, int, int] | None = None

    # -- errors -------------------------------------------------------------
    def _bad(self, line_no: int, text: bytes, fieldname: str | None, message: str) -> None:
        if not self.skip_bad:
            snippet = text.decode("utf-8", "replace").strip()
            if len(snippet) > 160:
                snippet = snippet[:157] + "..."
            raise BadInputError(
                f"{message}: {snippet!r}", file=self.name, line=line_no, field=fieldname
            )
        self.stats.skipped_bad += 1
        if len(self.stats.bad_examples) < MAX_BAD_EXAMPLES:
            where = f"line {line_no}" + (f" field '{fieldname}'" if fieldname else "")
            self.stats.bad_examples.append(f"{where}: {message}")

    def _check_bad_fraction(self) -> None:
        """BadInputError when --skip-bad skipped more than max_bad_fraction of the lines."""
        st = self.stats
        lines = st.lines - st.ignored_lines
        if not st.skipped_bad or st.skipped_bad <= self.max_bad_fraction * lines:
            return
        first = st.bad_examples[0] if st.bad_examples else ""
        raise BadInputError(
            f"skipped {st.skipped_bad} of {lines} lines as malformed "
            f"({100 * st.skipped_bad / lines:.1f}%), more than the "
            f"{100 * self.max_bad_fraction:g}% allowed (--max-bad-fraction "
            f"{self.max_bad_fraction:g}): is this the trace you meant? First: {first}",
            file=self.name,
        )

    # -- main loop ----------------------------------------------------------
    def batches(self) -> Iterator[tuple[pa.RecordBatch | None, pa.RecordBatch | None]]:
        """Yield (events, aux) batches; either may be None for a chunk."""
        chunks = iter_chunks(self.path, self.chunk_bytes, on_raw=self.on_raw)
        # Line parsing (numba, GIL released) runs a chunk ahead in its own
        # thread, pairing and Arrow output in this one.
        saw_any = yield from self.scanned_batches(ahead(scan_chunks(chunks)))
        if not saw_any or self.stats.event_lines == 0:
            raise BadInputError(
                "no trace events found (empty file, or not ftrace text)", file=self.name
            )
        self.finish()

    def scanned_batches(
        self, scans: Iterable[Scanned]
    ) -> Generator[tuple[pa.RecordBatch | None, pa.RecordBatch | None], None, bool]:
        """Pair and convert scanned chunks (from text, or decoded from a binary recording)
        into (events, aux) batches; an event batch waits for the next chunk (its frees
        may pair with it). Returns whether there was any chunk."""
        line_base = 0
        pending: dict[str, object] | None = None
        saw_any = False
        for scanned in scans:
            saw_any = True
            ev_cols, aux = self._chunk(scanned, line_base, pending)
            line_base += int(ev_cols.pop("_nlines"))  # type: ignore[arg-type]
            if pending is not None:
                yield self._event_batch(pending), None
            pending = ev_cols
            if aux is not None:
                yield None, aux
        if pending is not None:
            yield self._event_batch(pending), None
        return saw_any

    def finish(self) -> None:
        """After the last batch: refuse past --max-bad-fraction, then the counters
        (batched frees never matched counted as orphans)."""
        self._check_bad_fraction()
        c = self._state.counters
        c[K.C_BATCHED_ORPHANS] += K.count_pending(self._state.pool, self._state.nblocks)
        self.stats.counters = {name: int(c[i]) for i, name in enumerate(K.COUNTER_NAMES)}
        self.stats.counters.pop("objects")

    def _event_batch(self, cols: dict[str, object]) -> pa.RecordBatch | None:
        n = int(cols["n"])  # type: ignore[call-overload]
        if n == 0:
            return None
        arrays = [
            pa.array(cols["seq"], type=pa.int64()),
            pa.array(cols["ts_ns"], type=pa.int64()),
            pa.DictionaryArray.from_arrays(pa.array(cols["op"], type=pa.int8()), OP_DICTIONARY),
            pa.array(cols["obj"], type=pa.int64()),
            pa.array(cols["offset"], type=pa.int32()),
            pa.array(cols["order"], type=pa.int8()),
            pa.array(cols["migratetype"], type=pa.int8()),
            cols["gfp"],
            pa.array(cols["pfn"], type=pa.int64(), mask=cols["failed"]),
            pa.array(cols["cpu"], type=pa.int16()),
            pa.array(cols["pid"], type=pa.int32()),
            cols["comm"],
            pa.nulls(n, pa.int64()),
            pa.nulls(n, pa.int64()),
            pa.nulls(n, pa.bool_()),
            pa.array(cols["line"], type=pa.int64()),
            pa.array(cols["batched"], type=pa.bool_()),
            pa.array(cols["failed"], type=pa.bool_()),
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=EVENT_SCHEMA)

    def _chunk(
        self, sc: Scanned, line_base: int, pending: dict[str, object] | None
    ) -> tuple[dict[str, object], pa.RecordBatch | None]:
        st = self.stats
        chunk, buf, starts, ends, n = sc.chunk, sc.buf, sc.starts, sc.ends, sc.n
        kind, comm_s, comm_e, pid, tgid = sc.kind, sc.comm_s, sc.comm_e, sc.pid, sc.tgid
        cpu, flags_len, ts_ns, code = sc.cpu, sc.flags_len, sc.ts_ns, sc.code
        ev_s, ev_e, pay_s, pay_e, fields = sc.ev_s, sc.ev_e, sc.pay_s, sc.pay_e, sc.fields
        gfp_s, gfp_e, err_field, err_kind = sc.gfp_s, sc.gfp_e, sc.err_field, sc.err_kind
        pfn_hex, n_untyped = sc.pfn_hex, sc.n_untyped
        st.lines += n

        good = kind == K.K_EVENT
        if sc.stacks:
            for i, frames in sc.stacks:
                self.stacks.add(line_base + i + 1, int(cpu[i]), int(pid[i]), frames)
            st.stacks += len(sc.stacks)
            rows_of_their_own = len(sc.stacks) - sc.own_stacks
            st.ignored_lines -= rows_of_their_own  # K_BLANK rows, counted as stack lines
            st.stack_lines += rows_of_their_own
        # Lines that are not events: stack traces, lost-event notices, preamble, or garbage.
        others = np.flatnonzero(kind == K.K_OTHER)
        stacks = self.stacks
        if stacks.is_open() and (others.size == 0 or others[0] != 0):
            stacks.close()  # the open stack's frames ended at the chunk's boundary
        prev = -1  # a frame on the chunk's first line continues the open stack
        for i in others.tolist():
            text = chunk[starts[i] : ends[i]]
            if i != prev + 1:
                stacks.close()
            prev = i
            head = text.lstrip()
            if head.startswith(b"=>"):
                # frames right after an event line: trace-cmd report's kernel_stack event
                # (the stack of the line before it), or perf script's callchain of the
                # sample itself (the stack of that line); that line may end the last chunk
                after = (
                    (line_base + i, int(cpu[i - 1]), int(pid[i - 1]))
                    if i > 0 and kind[i - 1] == K.K_EVENT
                    else self._last_event
                    if i == 0
                    else None
                )
                if not stacks.is_open() and after is not None:
                    stacks.open(*after)
                    st.stacks += 1
                if stacks.frame(head.decode("utf-8", "replace")):
                    st.stack_lines += 1
                    continue
            if b"<stack trace" in text:
                ms = STACK_HEAD_RE.search(text)
                if ms is not None:
                    stacks.open(line_base + i + 1, int(ms.group(2)), int(ms.group(1)))
                    st.stacks += 1
                    st.stack_lines += 1
                    continue
            m = LOST_RE.search(text)
            if m:
                st.lost_markers += 1
                st.lost_lines.append(line_base + i + 1)
                num = m.group(1) or m.group(2)
                st.lost_events += int(num) if num else 0
            elif PREAMBLE_RE.match(text):
                st.preamble_lines += 1
            else:
                self._bad(line_base + i + 1, text, None, "not an ftrace event line")
        if stacks.is_open() and (others.size == 0 or others[-1] != n - 1):
            stacks.close()  # an event line ends the chunk: no frame of this stack follows
        self._last_event = (
            (line_base + n, int(cpu[n - 1]), int(pid[n - 1]))
            if n and kind[n - 1] == K.K_EVENT
            else None
        )
        # Event lines with a bad or missing field.
        bad_ev = good & (err_field >= 0)
        for i in np.flatnonzero(bad_ev).tolist():
            text = chunk[starts[i] : ends[i]]
            code_i = int(err_field[i])
            fname = K.HEADER_FIELD_NAMES.get(code_i) or K.FIELD_NAMES[code_i]
            evname = chunk[ev_s[i] : ev_e[i]].decode("utf-8", "replace")
            msg = f"{evname}: {fname} {_ERROR_TEXT[int(err_kind[i])]}"
            if err_kind[i] == K.E_RANGE:
                parsed: object = {
                    "timestamp": ts_ns[i],
                    "cpu": cpu[i],
                    "pid": pid[i],
                    "tgid": tgid[i],
                }.get(fname)
                if parsed is None and code_i < K.N_INT_FIELDS:
                    parsed = fields[i, code_i]
                msg = f"{evname}: {_range_error(fname, text, parsed)}"
            self._bad(line_base + i + 1, text, fname, msg)
        good &= err_field < 0
        st.ignored_lines += int(np.count_nonzero(kind == K.K_BLANK))
        gi = np.flatnonzero(good)
        st.event_lines += gi.size

        # Format variants seen.
        fl = flags_len[gi]
        for w in (0, 4, 5):
            st.flags_width[w] += int(np.count_nonzero(fl == w))
        other_w = int(np.count_nonzero((fl != 0) & (fl != 4) & (fl != 5)))
        if other_w:
            st.flags_width[-1] += other_w
        st.tgid_column += int(np.count_nonzero(tgid[gi] >= 0))
        ph = pfn_hex[gi]
        st.pfn_hex += int(np.count_nonzero(ph == 1))
        st.pfn_decimal += int(np.count_nonzero(ph == 0))
        cg = code[gi]
        st.pre_3_3_events += int(
            np.count_nonzero((cg == K.EV_FREE_DIRECT) | (cg == K.EV_PAGEVEC_FREE))
        )
        if gi.size:
            ts_good = ts_ns[gi]
            if st.ts_first is None:
                st.ts_first = int(ts_good[0])
            elif ts_good[0] < (st.ts_last or 0):
                st.ts_backwards += 1
            st.ts_last = int(ts_good[-1])
            st.ts_backwards += int(np.count_nonzero(np.diff(ts_good) < 0))

        # Pairing of the page events.
        is_page = good & (code >= K.EV_ALLOC) & (code <= K.EV_PAGEVEC_FREE)
        pe = np.flatnonzero(is_page)
        pe_code = code[pe]
        pe_pfn = fields[pe, K.F_PFN]
        raw_order = fields[pe, K.F_ORDER]
        pe_order = np.where(raw_order == K.MISSING, 0, raw_order).astype(np.int64)
        raw_mt = fields[pe, K.F_MIGRATETYPE]
        pe_mt = np.where(raw_mt == K.MISSING, -1, raw_mt).astype(np.int8)
        pe_null = np.where(fields[pe, K.F_PAGE] == 1, 1, 0).astype(np.int8)
        pe_cold = (fields[pe, K.F_COLD] != K.MISSING).astype(np.int8)
        batched = pe_code == K.EV_FREE_BATCHED
        st.batched_with_cold += int(np.count_nonzero(batched & (pe_cold == 1)))
        st.batched_without_cold += int(np.count_nonzero(batched & (pe_cold == 0)))
        # A failed allocation's pfn (0, or 2.6-era garbage) names no page.
        has_page = ~((pe_code == K.EV_ALLOC) & ((pe_null == 1) | (pe_pfn == 0)))
        valid_pfn = pe_pfn[has_page & (pe_pfn > 0)]
        if valid_pfn.size:
            lo, hi = int(valid_pfn.min()), int(valid_pfn.max())
            st.pfn_min = lo if st.pfn_min is None else min(st.pfn_min, lo)
            st.pfn_max = hi if st.pfn_max is None else max(st.pfn_max, hi)
        state = self._state
        try:
            page_rows = state.rows_for(pe_pfn, pe_pfn + (np.int64(1) << pe_order) - 1, has_page)
        except _StateTooLargeError as exc:
            i = int(pe[exc.event])
            raise BadInputError(
                f"pfn {int(pe_pfn[exc.event]):#x}: the trace's pages lie in more than "
                f"{exc.limit} distinct {K.PAGE_BLOCK}-page blocks; pairing them would take "
                f"more than {state.max_bytes >> 20} MiB ({BLOCK_BYTES >> 10} KiB per block): "
                "its pfns are spread over too much memory",
                file=self.name,
                line=line_base + i + 1,
                field="pfn",
            ) from None
        state.ensure_objects(pe.size)
        m = pe.size
        out_kind = np.zeros(m, np.int8)
        out_obj = np.zeros(m, np.int64)
        out_offset = np.zeros(m, np.int64)
        out_mt = np.zeros(m, np.int8)
        out_batched = np.zeros(m, np.bool_)
        row_ev = np.zeros(m, np.int64)
        prev_base = int(pending["base"]) if pending is not None else -1  # type: ignore[call-overload]
        prev_batched = pending["batched"] if pending is not None else np.zeros(0, np.bool_)
        g_base = self._g
        emitted = K.pair_events(
            pe_code,
            pe_pfn,
            pe_order,
            pe_mt,
            pe_null,
            pe_cold,
            page_rows,
            state.pool,
            state.obj_start,
            state.obj_order,
            state.obj_mt,
            state.obj_live,
            state.counters,
            g_base,
            prev_base,
            prev_batched,
            out_kind,
            out_obj,
            out_offset,
            out_mt,
            out_batched,
            row_ev,
        )
        self._g += int(emitted)
        canon = (out_kind == K.OUT_ALLOC) | (out_kind == K.OUT_FREE) | (out_kind == K.OUT_FAILED)
        rows = pe[canon]
        st.events += rows.size
        failed = out_kind[canon] == K.OUT_FAILED

        ev_cols: dict[str, object] = {"_nlines": n, "n": rows.size, "base": g_base}
        ev_cols["seq"] = np.arange(g_base, g_base + rows.size, dtype=np.int64)
        ev_cols["ts_ns"] = ts_ns[rows]
        is_alloc = (out_kind[canon] == K.OUT_ALLOC) | failed
        ev_cols["op"] = np.where(is_alloc, 0, 1).astype(np.int8)
        ev_cols["obj"] = out_obj[canon]
        ev_cols["offset"] = out_offset[canon].astype(np.int32)
        ev_cols["order"] = pe_order[canon].astype(np.int8)
        ev_cols["migratetype"] = out_mt[canon]
        ev_cols["gfp"] = self._gfp.encode(buf, gfp_s, gfp_e, rows, valid=is_alloc)
        ev_cols["pfn"] = pe_pfn[canon]
        ev_cols["cpu"] = cpu[rows].astype(np.int16)
        ev_cols["pid"] = pid[rows]
        ev_cols["comm"] = self._comm.encode(buf, comm_s, comm_e, rows)
        ev_cols["line"] = rows.astype(np.int64) + (line_base + 1)
        ev_cols["batched"] = out_batched[canon].copy()
        ev_cols["failed"] = failed

        # Aux rows: every good event line that is not a canonical row. That
        # includes the mm_page_free_batched lines, which
        # are a flag on their free in the canonical table but are kept here so
        # per-process accounting can attribute them to the task that printed them.
        is_canon_line = np.zeros(n, np.bool_)
        is_canon_line[rows] = True
        aux_mask = good & ~is_canon_line
        ai = np.flatnonzero(aux_mask)
        aux = None
        if ai.size:
            before = np.cumsum(is_canon_line) - is_canon_line  # canonical rows before each line
            aux = self._aux_batch(
                buf,
                ai,
                before[ai] + g_base,
                line_base,
                code,
                fields,
                ts_ns,
                cpu,
                pid,
                comm_s,
                comm_e,
                ev_s,
                ev_e,
                pay_s,
                pay_e,
                n_untyped,
            )
        return ev_cols, aux

    def _aux_batch(
        self,
        buf: np.ndarray,
        ai: np.ndarray,
        seq: np.ndarray,
        line_base: int,
        code: np.ndarray,
        fields: np.ndarray,
        ts_ns: np.ndarray,
        cpu: np.ndarray,
        pid: np.ndarray,
        comm_s: np.ndarray,
        comm_e: np.ndarray,
        ev_s: np.ndarray,
        ev_e: np.ndarray,
        pay_s: np.ndarray,
        pay_e: np.ndarray,
        n_untyped: np.ndarray,
    ) -> pa.RecordBatch:
        n = ai.size
        event = self._event.encode(buf, ev_s, ev_e, ai)
        kmem = (code[ai] >= K.EV_ALLOC) & (code[ai] <= K.EV_EXTFRAG)
        pfn = fields[ai, K.F_PFN]
        order = fields[ai, K.F_ORDER]
        mt = fields[ai, K.F_MIGRATETYPE]
        # kmem events already know how many untyped pairs they have (most
        # have none: pcp drains); only the others are tokenised here.
        counts = n_untyped[ai].astype(np.int64)
        scan = np.flatnonzero(counts != 0)
        if scan.size:
            sub = ai[scan]
            counts[scan] = K.count_kv(buf, pay_s, pay_e, sub, kmem[scan], _KEY_TABLE, _KEY_LENS)
        offsets = np.zeros(n + 1, np.int32)
        np.cumsum(counts, out=offsets[1:])
        total = int(offsets[-1])
        ks = np.zeros(total, np.int64)
        ke = np.zeros(total, np.int64)
        vs = np.zeros(total, np.int64)
        ve = np.zeros(total, np.int64)
        if scan.size:
            K.fill_kv(
                buf,
                pay_s,
                pay_e,
                ai[scan],
                kmem[scan],
                _KEY_TABLE,
                _KEY_LENS,
                offsets[:-1][scan],
                ks,
                ke,
                vs,
                ve,
            )
        # The other key=value fields as one JSON object per row (DuckDB's JSON
        # type: a MAP cost DuckDB three times as much to store). Events whose
        # fields all have typed columns (pcp drains) get NULL.
        args = _json_args(buf, offsets, ks, ke, vs, ve, counts == 0)
        # Free text (tracing_mark_write markers, events without key=value), and the whole
        # payload of the page-cache events: their file is "dev MAJ:MIN ino HEX", no
        # key=value (include/trace/events/filemap.h), read back by page_cache_regions.
        free_text = (counts == 0) & ~kmem
        names = event.dictionary.to_pylist()
        filemap = [k for k, name in enumerate(names) if name.startswith("mm_filemap_")]
        if filemap:
            free_text |= np.isin(event.indices.to_numpy(), filemap)
        text = pa.nulls(n, pa.string())
        if free_text.any():
            text = pc.if_else(pa.array(free_text), _strings(buf, pay_s[ai], pay_e[ai]), text)
        self.stats.aux_events += n
        for k, c in enumerate(np.bincount(event.indices.to_numpy(), minlength=len(names))):
            if c:
                self.stats.aux_by_event[names[k]] += int(c)
        arrays = [
            pa.array(seq, type=pa.int64()),
            pa.array(ai.astype(np.int64) + (line_base + 1), type=pa.int64()),
            pa.array(ts_ns[ai], type=pa.int64()),
            pa.array(cpu[ai].astype(np.int16), type=pa.int16()),
            pa.array(pid[ai], type=pa.int32()),
            self._comm.encode(buf, comm_s, comm_e, ai),
            event,
            _opt(pfn, kmem & (pfn != K.MISSING), pa.int64()),
            _opt(np.where(order == K.MISSING, 0, order), kmem & (order != K.MISSING), pa.int8()),
            _opt(np.where(mt == K.MISSING, 0, mt), kmem & (mt != K.MISSING), pa.int8()),
            args,
            text,
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=AUX_SCHEMA)
