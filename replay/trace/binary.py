"""One decoder for binary tracepoint records, driven by the events' format files.

Both binary containers (trace-cmd's trace.dat: :mod:`replay.trace.tracedat`;
perf.data: :mod:`replay.trace.perfdata`) hand this module blocks of raw
records (:class:`RecordBlock`: the bytes, each record's payload offset,
timestamp in ns, CPU and the events lost just before it) in the order their
text renderings print them. The decoder reads each record's fields at the
offsets and sizes its event's ``format`` file gives, with numba over the
whole block, one event type at a time, and evaluates the print format over
those columns (:mod:`replay.trace.tpformat`) to get exactly the values
``trace-cmd report`` and ``perf script`` print: the pfn (``REC->pfn != -1UL ?
REC->pfn : 0``), a null page, the gfp flag names. The result is the same
per-line arrays the ftrace text scanner produces (:class:`Scanned`), so
pairing, aux rows, counts and lost-event accounting are the text ingester's
own code: the event table of a binary recording is the one of its text
rendering. Nothing here knows a kernel version.

Per-record Python runs only for what the text path also handles per line:
lost-event marks, and the payload text of aux events whose printed fields
have no typed column (compaction, vmscan, zone_locked's percpu_refill), which
are rendered from the print format.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from replay.errors import BadInputError
from replay.trace import _kernels as K
from replay.trace._binary_kernels import read_field
from replay.trace.ftrace import FtraceParser, IngestStats, Scanned
from replay.trace.reader import ahead
from replay.trace.tpformat import EventFormat, ExprError, factorize

_EVENT_CODE = {name: i for i, name in enumerate(K.EVENT_NAMES) if name}
_FIELD_INDEX = {name: i for i, name in enumerate(K.FIELD_NAMES)}
_NO_TEXT = {K.EV_ALLOC, K.EV_FREE, K.EV_FREE_DIRECT, K.EV_PAGEVEC_FREE}  # always canonical rows
#: what each page event needs in its format (the text parser's required fields)
REQUIRED_KEYS = {
    K.EV_ALLOC: ("pfn", "order", "migratetype"),
    K.EV_FREE: ("pfn", "order"),
    K.EV_FREE_DIRECT: ("pfn", "order"),
    K.EV_PAGEVEC_FREE: ("pfn", "order"),
    K.EV_FREE_BATCHED: ("pfn",),
    K.EV_ZONE_LOCKED: ("pfn", "order"),
    K.EV_PCPU_DRAIN: ("pfn", "order"),
    K.EV_EXTFRAG: ("pfn",),
}


@dataclass
class RecordBlock:
    """Raw records in print order: payloads in ``buf`` at ``off`` (bytes), ``size`` bytes each.

    ``ts_ns`` (ns), ``cpu``, ``lost`` (events lost just before the record: 0,
    a count, or -1 when unknown). ``comm`` (optional) gives each record's task
    name as an index into the source's ``comm_names``; without it the decoder
    asks the source by pid.
    """

    buf: np.ndarray
    off: np.ndarray
    size: np.ndarray
    ts_ns: np.ndarray
    cpu: np.ndarray
    lost: np.ndarray
    comm: np.ndarray | None = None
    #: lost-event marks not tied to a page (perf's LOST records): the record each is
    #: printed before (``n`` = after the last) and its (cpu, count)
    marks: list[tuple[int, int, int]] = field(default_factory=list)
    #: kernel stacks that belong to a record itself (perf callchains): (record, frames)
    stacks: list[tuple[int, tuple[str, ...]]] | None = None


class BinarySource(Protocol):
    """A container of tracepoint records (trace.dat, perf.data)."""

    path: Path
    formats: Mapping[int, EventFormat]
    big_endian: bool
    comm_names: list[str]

    def blocks(self) -> Iterator[RecordBlock]:
        """The records in the order the container's text rendering prints them."""
        ...

    def comm_index(self, pid: np.ndarray) -> np.ndarray:
        """Index into ``comm_names`` of each pid's task name (for blocks without ``comm``)."""
        ...

    def symbol(self, addr: int) -> str:
        """The kernel symbol at ``addr`` (``%ps``), or its hex."""
        ...

    def describe(self) -> str:
        """A one-line account of the container (format, version, compression, buffers)."""
        ...

    def meta(self) -> dict[str, object]:
        """Container metadata stored with the trace (kernel, buffers, options)."""
        ...

    def kernel(self) -> str | None:
        """The recorded kernel's release, when the container says."""
        ...


class Symbols:
    """Kernel symbols from kallsyms text (``addr type name [module]`` lines), for ``%ps``."""

    def __init__(self, text: str | Callable[[], str]) -> None:
        self._text = text  # or what reads it, on the first lookup
        self._addrs: list[int] | None = None
        self._names: list[str] = []

    def _load(self) -> None:
        pairs = []
        text = self._text if isinstance(self._text, str) else self._text()
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[1] in "tTwW":
                try:
                    pairs.append((int(parts[0], 16), parts[2]))
                except ValueError:
                    continue
        pairs.sort()
        self._addrs = [a for a, _ in pairs]
        self._names = [n for _, n in pairs]

    def __call__(self, addr: int) -> str:
        """The function containing ``addr`` (``%ps``), or ``0x..`` when none does."""
        if self._addrs is None:
            self._load()
        assert self._addrs is not None
        i = bisect.bisect_right(self._addrs, addr) - 1
        if i < 0 or not self._addrs:
            return f"0x{addr:x}"
        return self._names[i]


class _Text:
    """The synthetic text a block's spans point into (names, marks, payloads)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, s: bytes) -> tuple[int, int]:
        start = self.size
        self.parts.append(s)
        self.size += len(s)
        return start, self.size

    def add_many(self, items: list[str]) -> tuple[np.ndarray, np.ndarray]:
        raw = [s.encode("utf-8", "replace") for s in items]
        lens = np.fromiter((len(r) for r in raw), np.int64, len(raw))
        ends = np.cumsum(lens) + self.size
        starts = ends - lens
        blob = b"".join(raw)
        self.parts.append(blob)
        self.size += len(blob)
        return starts, ends


@dataclass
class BinaryStats(IngestStats):
    """IngestStats of a binary recording: its format line names the container."""

    container: str = ""
    formats_rendered_raw: list[str] = field(default_factory=list)
    #: the container's own metadata (version, compression, buffers, attrs)
    recording: dict[str, object] = field(default_factory=dict)

    def format_description(self) -> str:
        parts = [self.container]
        if self.pfn_hex and not self.pfn_decimal:
            parts.append("hex pfn (5.14+)")
        elif self.pfn_decimal and not self.pfn_hex:
            parts.append("decimal pfn (before 5.14)")
        if self.pre_3_3_events:
            parts.append("mm_page_free_direct/mm_pagevec_free (before 3.3)")
        if self.batched_with_cold:
            parts.append("batched frees with cold= before their free (3.3-4.14)")
        if self.batched_without_cold:
            parts.append("batched frees after their free (4.15+)")
        return ", ".join(p for p in parts if p)

    def as_dict(self) -> dict[str, object]:
        out = super().as_dict()
        if self.formats_rendered_raw:
            out["formats_rendered_raw"] = self.formats_rendered_raw
        out["recording"] = self.recording
        return out


class _Event:
    """Per event type: its code, name and what the decoder needs of its format."""

    def __init__(self, fmt: EventFormat, source: str) -> None:
        self.fmt = fmt
        self.code = _EVENT_CODE.get(fmt.name, K.EV_OTHER)
        if fmt.system == "ftrace" and fmt.name == "print":
            self.code = K.EV_OTHER  # trace-cmd report prints markers as "print:"
        self.name = fmt.name.encode()
        self.printer = None
        self.error: str | None = None
        try:
            self.printer = fmt.printer
        except (ExprError, IndexError) as exc:
            self.error = str(exc)
        keys = self.printer.keys() if self.printer is not None else list(self._own_fields())
        self.n_untyped = sum(
            1 for k in keys if _FIELD_INDEX.get(k, -1) < 0 or _FIELD_INDEX[k] > K.F_MIGRATETYPE
        )
        if K.EV_ALLOC <= self.code <= K.EV_EXTFRAG:
            for key in REQUIRED_KEYS.get(self.code, ()):
                if key not in keys and key not in fmt.fields:
                    raise BadInputError(
                        f"the format of {fmt.system}:{fmt.name} (ID {fmt.id}) has no field "
                        f"'{key}', which a page event needs",
                        file=source,
                        field=key,
                    )

    def _own_fields(self) -> list[str]:
        return [f for f in self.fmt.fields if not f.startswith("common_")]


class BinaryDecoder:
    """Turns RecordBlocks of a source into the text scanner's per-line arrays."""

    def __init__(
        self, source: BinarySource, stats: BinaryStats, name: str, trace_pipe_print: bool = False
    ) -> None:
        self.source = source
        #: ftrace ``print`` records (trace_marker writes) as trace_pipe prints them
        #: (kernel/trace/trace_output.c, trace_print_print: ``%ps: %s`` of ip and buf, no
        #: event name: ``tracing_mark_write: TEXT``), not as trace-cmd report does
        #: (``print: tracing_mark_write: TEXT``)
        self.trace_pipe_print = trace_pipe_print
        self.stats = stats
        self.name = name
        self.big = source.big_endian
        self.events: dict[int, _Event] = {}
        common = None
        for ident in source.formats:  # parses formats until one has the common fields
            fmt = source.formats[ident]
            if "common_type" in fmt.fields and "common_pid" in fmt.fields:
                common = fmt
                break
        if common is None:
            raise BadInputError(
                "no event format with common_type and common_pid fields", file=name,
                field="common_type",
            )  # fmt: skip
        self.type_field = common.fields["common_type"]
        self.pid_field = common.fields["common_pid"]

    def _event(self, ident: int, at: int) -> _Event:
        ev = self.events.get(ident)
        if ev is None:
            fmt = self.source.formats.get(ident)
            if fmt is None:
                raise BadInputError(
                    f"a record of event type {ident} at byte offset {at}, and the file has "
                    "no format for that type",
                    file=self.name,
                    field="common_type",
                )
            ev = _Event(fmt, self.name)
            if ev.error is not None:
                self.stats.formats_rendered_raw.append(f"{fmt.system}:{fmt.name}: {ev.error}")
            self.events[ident] = ev
        return ev

    def _read(
        self, buf: np.ndarray, offs: np.ndarray, f: object, size: int | None = None
    ) -> np.ndarray:
        out = np.empty(offs.shape[0], np.int64)
        read_field(buf, offs, f.offset, size or f.size, f.signed, self.big, out)  # type: ignore[attr-defined]
        return out

    def _columns(
        self, blk: RecordBlock, ev: _Event, sel: np.ndarray
    ) -> Callable[[str], np.ndarray]:
        offs = blk.off[sel]
        cache: dict[str, np.ndarray] = {}
        fields = ev.fmt.fields

        def col(name: str) -> np.ndarray:
            if name in cache:
                return cache[name]
            if name.startswith("@str:"):
                out = self._strings(blk, sel, fields.get(name[5:]), ev)
            else:
                f = fields.get(name)
                if f is None:
                    raise ExprError(f"no field {name}")
                if f.dynamic or f.array or f.size not in (1, 2, 4, 8):
                    out = self._strings(blk, sel, f, ev)
                else:
                    out = self._read(blk.buf, offs, f)
            cache[name] = out
            return out

        return col

    def _strings(self, blk: RecordBlock, sel: np.ndarray, f: object, ev: _Event) -> np.ndarray:
        if f is None:
            raise ExprError(f"{ev.fmt.name}: no such string field")
        out = np.empty(sel.size, object)
        raw = blk.buf
        for j, i in enumerate(sel.tolist()):
            base = int(blk.off[i])
            if f.dynamic:  # type: ignore[attr-defined]
                loc = int(self._read(raw, np.array([base], np.int64), f, 4)[0])
                s, ln = base + (loc & 0xFFFF), loc >> 16
            elif f.size:  # type: ignore[attr-defined]
                s, ln = base + f.offset, f.size  # type: ignore[attr-defined]
            else:  # char buf[]: to the end of the record
                s = base + f.offset  # type: ignore[attr-defined]
                ln = int(blk.size[i]) - f.offset  # type: ignore[attr-defined]
            b = raw[s : s + max(ln, 0)].tobytes()
            cut = b.find(b"\0")
            if cut >= 0:
                b = b[:cut]
            out[j] = b.decode("utf-8", "replace").rstrip("\n")
        return out

    def _raw_payload(self, ev: _Event, col: Callable[[str], np.ndarray], m: int) -> list[str]:
        """``name=value`` of every non-common field, when the print format cannot be evaluated."""
        names = ev._own_fields()
        cols = [col(nm) for nm in names]
        return [
            " ".join(f"{nm}={c[i]}" for nm, c in zip(names, cols, strict=True)) for i in range(m)
        ]

    def decode(self, blk: RecordBlock) -> Scanned:
        """The block as per-line arrays (records, and a line before each lost-events mark)."""
        n = int(blk.off.shape[0])
        buf = blk.buf
        ids = self._read(buf, blk.off, self.type_field)
        pid = self._read(buf, blk.off, self.pid_field).astype(np.int32)
        # lost-event marks: one line before each record that follows a loss
        mark_at = np.flatnonzero(blk.lost != 0)
        mark_what = [(int(blk.cpu[i]), int(blk.lost[i])) for i in mark_at.tolist()]
        if blk.marks:
            extra = sorted(blk.marks, key=lambda m: m[0])
            mark_at = np.concatenate([mark_at, np.array([m[0] for m in extra], np.int64)])
            mark_what += [(c, k) for _, c, k in extra]
            by = np.argsort(mark_at, kind="stable")
            mark_at = mark_at[by]
            mark_what = [mark_what[i] for i in by.tolist()]
        nmarks = mark_at.size
        rows = np.arange(n, dtype=np.int64) + np.searchsorted(mark_at, np.arange(n), side="right")
        nrows = n + nmarks
        text = _Text()
        sc = Scanned(
            chunk=b"",
            buf=np.zeros(0, np.uint8),
            starts=np.zeros(nrows, np.int64),
            ends=np.zeros(nrows, np.int64),
            n=nrows,
            kind=np.full(nrows, K.K_EVENT, np.int8),
            comm_s=np.zeros(nrows, np.int64),
            comm_e=np.zeros(nrows, np.int64),
            pid=np.zeros(nrows, np.int32),
            tgid=np.full(nrows, -1, np.int32),
            cpu=np.zeros(nrows, np.int32),
            flags_len=np.zeros(nrows, np.int8),
            ts_ns=np.zeros(nrows, np.int64),
            code=np.zeros(nrows, np.int8),
            ev_s=np.zeros(nrows, np.int64),
            ev_e=np.zeros(nrows, np.int64),
            pay_s=np.zeros(nrows, np.int64),
            pay_e=np.zeros(nrows, np.int64),
            fields=np.full((nrows, K.N_INT_FIELDS), K.MISSING, np.int64),
            gfp_s=np.zeros(nrows, np.int64),
            gfp_e=np.zeros(nrows, np.int64),
            err_field=np.full(nrows, -1, np.int8),
            err_kind=np.zeros(nrows, np.int8),
            pfn_hex=np.full(nrows, -1, np.int8),
            n_untyped=np.full(nrows, -1, np.int32),
        )
        if nmarks:
            # the mark before record i is on row i + (marks before it); marks in order
            mrows = mark_at + np.arange(nmarks)
            sc.kind[mrows] = K.K_OTHER
            for r, (cpu, lost) in zip(mrows.tolist(), mark_what, strict=True):
                # as trace-cmd report prints it (-1: the kernel did not store the count)
                line = (
                    f"CPU:{cpu} [{lost} EVENTS DROPPED]"
                    if lost > 0
                    else f"CPU:{cpu} [EVENTS DROPPED]"
                )
                sc.starts[r], sc.ends[r] = text.add(line.encode())
        sc.pid[rows] = pid
        sc.cpu[rows] = blk.cpu
        sc.ts_ns[rows] = blk.ts_ns
        comm = blk.comm if blk.comm is not None else self.source.comm_index(pid)
        where, used = factorize(comm)
        names = self.source.comm_names
        cs, ce = text.add_many([names[int(k)] for k in used.tolist()])
        sc.comm_s[rows] = cs[where]
        sc.comm_e[rows] = ce[where]

        # common_type is a u16: numpy sorts 16-bit keys stably by radix
        order = np.argsort(ids.astype(np.uint16) if ids.max(initial=0) < 1 << 16 else ids,
                           kind="stable")  # fmt: skip
        bounds = np.flatnonzero(np.diff(ids[order])) + 1
        for sel in np.split(order, bounds):
            if sel.size == 0:
                continue
            ident = int(ids[sel[0]])
            ev = self._event(ident, int(blk.off[sel[0]]))
            r = rows[sel]
            m = sel.size
            sc.code[r] = ev.code
            es, ee = text.add(ev.name)
            sc.ev_s[r] = es
            sc.ev_e[r] = ee
            col = self._columns(blk, ev, sel)
            if ev.fmt.system == "ftrace" and ev.fmt.name == "kernel_stack":
                self._kernel_stacks(sc, blk, r, sel, ev)
                continue
            if self.trace_pipe_print and ev.fmt.system == "ftrace" and ev.fmt.name == "print":
                self._trace_pipe_print(sc, r, col, text)
                continue
            kmem = K.EV_ALLOC <= ev.code <= K.EV_EXTFRAG
            if kmem:
                self._kmem_fields(sc, r, ev, col, m, text)
                sc.n_untyped[r] = ev.n_untyped
            if ev.code in _NO_TEXT or (kmem and ev.n_untyped == 0):
                sc.pay_s[r] = sc.pay_e[r] = text.size
                continue
            payload = self._payload(ev, col, m)
            ps, pe = text.add_many(payload)
            sc.pay_s[r] = ps
            sc.pay_e[r] = pe
        if blk.stacks:
            # a sample's own stack: its line (the callsites join takes a stack's line
            # itself when it is an event's)
            own = [(int(rows[i]), frames) for i, frames in blk.stacks]
            sc.stacks = (sc.stacks or []) + own
            sc.own_stacks = len(own)
        ev_rows = rows
        sc.starts[ev_rows] = sc.pay_s[ev_rows]
        sc.ends[ev_rows] = sc.pay_e[ev_rows]
        chunk = b"".join(text.parts)
        sc.chunk = chunk
        sc.buf = np.frombuffer(chunk, np.uint8) if chunk else np.zeros(1, np.uint8)
        return sc

    def _kernel_stacks(
        self, sc: Scanned, blk: RecordBlock, r: np.ndarray, sel: np.ndarray, ev: _Event
    ) -> None:
        """ftrace ``kernel_stack`` records (a stacktrace trigger's): their frames, symbolized.

        ``size`` is the frame count (kernel/trace/trace.c, __ftrace_trace_stack:
        ``entry->size = nr_entries``), ``caller[]`` as long as the record holds;
        the rows become K_BLANK lines and the stacks go to ``sc.stacks``.
        """
        f_size = ev.fmt.fields.get("size")
        f_call = ev.fmt.fields.get("caller")
        sc.kind[r] = K.K_BLANK
        if f_size is None or f_call is None:
            return
        offs = blk.off[sel]
        count = self._read(blk.buf, offs, f_size)
        room = (blk.size[sel] - f_call.offset) // 8
        count = np.clip(np.minimum(count, room), 0, None)
        width = int(count.max(initial=0))
        frames = np.zeros((sel.size, width), np.int64)
        out = np.empty(sel.size, np.int64)
        for k in range(width):
            read_field(blk.buf, offs + 8 * k, f_call.offset, 8, False, self.big, out)
            frames[:, k] = np.where(k < count, out, 0)
        names: dict[int, str] = {}
        stacks = sc.stacks if sc.stacks is not None else []
        for j, (row, n) in enumerate(zip(r.tolist(), count.tolist(), strict=True)):
            addrs = [a for a in frames[j, :n].tolist() if a not in (0, -1)]
            for a in addrs:
                if a not in names:
                    names[a] = self.source.symbol(a & (2**64 - 1))
            stacks.append((row, tuple(names[a] for a in addrs)))
        sc.stacks = stacks

    def _trace_pipe_print(
        self, sc: Scanned, r: np.ndarray, col: Callable[[str], np.ndarray], text: _Text
    ) -> None:
        """A trace_marker record as trace_pipe prints it: the ip's symbol as the event."""
        inv, uniq = factorize(col("ip"))
        es, ee = text.add_many([self.source.symbol(int(v) & (2**64 - 1)) for v in uniq.tolist()])
        sc.ev_s[r] = es[inv]
        sc.ev_e[r] = ee[inv]
        ps, pe = text.add_many([str(v) for v in col("buf")])
        sc.pay_s[r] = ps
        sc.pay_e[r] = pe

    def _payload(self, ev: _Event, col: Callable[[str], np.ndarray], m: int) -> list[str]:
        if ev.printer is not None:
            try:
                return ev.printer.render(col, m, self.source.symbol)
            except (ExprError, IndexError, KeyError) as exc:
                ev.printer = None
                self.stats.formats_rendered_raw.append(f"{ev.fmt.system}:{ev.fmt.name}: {exc}")
        return self._raw_payload(ev, col, m)

    def _kmem_fields(
        self,
        sc: Scanned,
        r: np.ndarray,
        ev: _Event,
        col: Callable[[str], np.ndarray],
        m: int,
        text: _Text,
    ) -> None:
        """Typed columns of a page event from its printed values (or raw fields)."""
        pr = ev.printer
        for key, fi in _FIELD_INDEX.items():
            conv = pr.conversion(key) if pr is not None else None
            vals: np.ndarray | None = None
            if fi == K.F_GFP and conv is not None and pr is not None:
                try:
                    inv, labels = pr.coded(conv, col, m)
                except (ExprError, IndexError, KeyError):
                    inv = None
                if inv is not None:
                    us, ue = text.add_many([_gfp_label(v) for v in labels])
                    sc.gfp_s[r] = us[inv]
                    sc.gfp_e[r] = ue[inv]
                    continue
            if conv is not None and pr is not None:
                try:
                    vals = pr.values(conv, col, m)
                except (ExprError, IndexError, KeyError):
                    vals = None
            if vals is None:
                if key not in ev.fmt.fields or key == "page":
                    if key == "page" and "pfn" in ev.fmt.fields:
                        sc.fields[r, K.F_PAGE] = (col("pfn") == -1).astype(np.int64)
                    continue
                vals = col(key)
                if key == "pfn":
                    vals = np.where(vals == -1, 0, vals)
            if fi == K.F_GFP:
                uniq, inv = np.unique(vals.astype(str) if vals.dtype == object else vals,
                                      return_inverse=True)  # fmt: skip
                us, ue = text.add_many([_gfp_label(v) for v in uniq.tolist()])
                sc.gfp_s[r] = us[inv.reshape(-1)]
                sc.gfp_e[r] = ue[inv.reshape(-1)]
                continue
            if vals.dtype == object:
                if fi == K.F_PAGE:
                    sc.fields[r, K.F_PAGE] = np.array(
                        [v in ("(null)", "(nil)") for v in vals], np.int64
                    )
                continue
            if fi == K.F_PAGE:
                sc.fields[r, K.F_PAGE] = (vals == 0).astype(np.int64)
                continue
            sc.fields[r, fi] = vals
            if fi == K.F_PFN:
                sc.pfn_hex[r] = 1 if conv is not None and conv.conv in ("x", "X") else 0
        order = sc.fields[r, K.F_ORDER]
        if ev.code != K.EV_FREE_BATCHED and ev.code != K.EV_EXTFRAG:
            bad = (order != K.MISSING) & ((order < 0) | (order > K.MAX_ORDER))
            if bad.any():
                sc.err_field[r[bad]] = K.F_ORDER
                sc.err_kind[r[bad]] = K.E_RANGE


def _gfp_label(v: object) -> str:
    """A gfp value as printed: the flag names, or the raw value's hex."""
    return v if isinstance(v, str) else f"0x{int(v) & (2**64 - 1):x}"  # type: ignore[call-overload]


class BinaryParser(FtraceParser):
    """A binary recording as (events, aux) batches, through the text ingester's pairing."""

    def __init__(
        self,
        source: BinarySource,
        *,
        on_raw: Callable[[int], None] | None = None,
        display_name: str | None = None,
        trace_pipe_print: bool = False,
        **opts: Any,
    ) -> None:
        super().__init__(source.path, display_name=display_name, **opts)
        self.source = source
        self.on_raw = on_raw
        self.stats = BinaryStats(container=source.describe())
        self.decoder = BinaryDecoder(source, self.stats, self.name, trace_pipe_print)
        #: the recorded kernel's release, when the container says (uname, osrelease)
        self.kernel: str | None = None

    def _scans(self) -> Iterator[Scanned]:
        for blk in self.source.blocks():
            yield self.decoder.decode(blk)

    def batches(self) -> Iterator[tuple[pa.RecordBatch | None, pa.RecordBatch | None]]:
        """Yield (events, aux) batches, as FtraceParser.batches does for text."""
        # Decoding runs a block ahead in its own thread (numba and zstd release the GIL).
        yield from self.scanned_batches(ahead(self._scans()))
        if self.stats.event_lines == 0:
            raise BadInputError("no trace events found in the recording", file=self.name)
        self.stats.recording = self.source.meta()
        self.finish()
