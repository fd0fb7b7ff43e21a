"""Pure-Python reference for ftrace text -> canonical allocator events.

Deliberately simple: one regex for the line header, a generic ``key=value``
payload splitter, and dictionaries for the pairing state. It is the oracle
the fast ingester is tested against, so clarity beats speed.

Semantics (the contract, with the decisions this reference made):

* A line is, in this order: blank -> ignored; starts with ``#`` (after
  leading blanks) -> ignored; an event line (header regex below); a lost
  marker (``LOST (\\d+) EVENTS``, else ``(\\d+) EVENTS DROPPED``, else
  ``EVENTS DROPPED`` with 0 known events); trace-cmd preamble
  (``cpus=N``, ``version = N``, ``CPU N is empty``); anything else is
  malformed with field ``None``.
* Canonical rows: ``mm_page_alloc`` with a valid page; ``mm_page_free``,
  ``mm_page_free_direct`` and ``mm_pagevec_free`` (the last one batched).
  ``mm_page_alloc`` with ``page=(null)`` or pfn 0 is a failed allocation:
  a canonical alloc row of a new object with pfn None (never live, nothing
  frees it), counted in ``failed_allocs``.
* Field checks (only for the four canonical event names and
  ``mm_page_free_batched``): alloc needs page, pfn, order, migratetype
  (checked in that order); frees and ``mm_page_free_batched`` need pfn and
  order. pfn: ``0x`` hex or decimal; order: decimal 0..10; migratetype:
  decimal integer (a minus sign is allowed, no range check). An empty value
  counts as missing. Failed allocations are validated like good ones.
* Payload: a key is ``\\w+=`` at the start or after a blank or ','; its value
  runs to the next key, blanks and a trailing ',' trimmed (so
  ``page=          (null)`` and ``range=(0x1 ~ 0x2)`` work); the first
  occurrence of a key wins. Event-line payloads are never searched for lost
  markers (a ``tracing_mark_write: LOST 3 EVENTS`` is an aux event).
* Header: comm is the shortest prefix followed by ``-digits``, blanks, the
  optional tgid column and ``[cpu]``, so the pid is the last ``-digits``
  before the ``[cpu]`` (``foo-12-34`` is comm ``foo-12``, pid 34).
  Timestamps: fraction digits scaled to ns (truncated beyond 9 digits).
* ``lines`` counts physical lines (a final unterminated line counts).
* A malformed line is recorded in ``malformed`` and otherwise skipped.
* Objects: an alloc creates an object; a free of pfn P finds the live
  object holding P (else a new pre-existing object, migratetype -1); it is
  partial unless offset 0 and the object's order; it un-lives only the
  pages of its range that object holds. An alloc over live pages of other
  objects takes them (one ``alloc_overlaps`` per alloc).
* ``mm_page_free_batched`` of pfn P: (a) if the last canonical event whose
  page range covers P is a free from ``mm_page_free`` that is not yet
  flagged, flag it; (b) elif P is live: P becomes pending and the next
  ``mm_page_free`` whose recorded pfn is P is flagged (a second batched line
  for an already-pending P is an orphan); (c) else orphan. Pendings never
  consumed are counted as orphans at the end, so every batched line either
  flags exactly one free or is an orphan. A batched line with ``cold=``
  (3.3-4.14, where it is printed just before its own free) always makes P
  pending (an orphan if P is pending already), whether P is live or not: a
  page allocated before tracing began is flagged too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EventTuple = tuple[str, int, int, int, int, int, int, int, int, str, bool]
"""(op, obj, offset, order, migratetype, pfn, ts_ns, cpu, pid, comm, batched)"""

MAX_ORDER = 10

ALLOC = "mm_page_alloc"
FREE_EVENTS = ("mm_page_free", "mm_page_free_direct", "mm_pagevec_free")
BATCHED = "mm_page_free_batched"

HEADER_RE = re.compile(
    r"^[ \t]*"
    r"(?P<comm>.*?)-(?P<pid>\d+)[ \t]+"  # comm-pid: pid = last -digits before the blanks
    r"(?:\([ \t]*(?:\d+|-+)\)[ \t]+)?"  # optional tgid column: (   1234) or (-------)
    r"\[(?P<cpu>\d+)\][ \t]+"  # [cpu]
    r"(?:(?P<flags>[^ \t:]{4,5})[ \t]+)?"  # optional latency flags: d..2 / d..3.
    r"(?P<secs>\d+)\.(?P<frac>\d+):[ \t]+"  # secs.usecs:
    r"(?P<event>\w+):"  # event name and its colon
    r"(?P<payload>(?:[ \t].*)?)$"  # payload (trace-cmd pads after the colon)
)

KEY_RE = re.compile(r"(?:^|(?<=[ \t,]))(\w+)=")
LOST_RE = re.compile(r"LOST (\d+) EVENTS")
DROPPED_NUM_RE = re.compile(r"(\d+) EVENTS DROPPED")
PREAMBLE_RES = (
    re.compile(r"^[ \t]*cpus=\d+[ \t]*$"),
    re.compile(r"^[ \t]*version[ \t]*=[ \t]*\S+[ \t]*$"),
    re.compile(r"^[ \t]*CPU[ \t]*\d+ is empty[ \t]*$"),
)
DEC_RE = re.compile(r"^\d+$")
HEX_RE = re.compile(r"^0[xX][0-9a-fA-F]+$")
INT_RE = re.compile(r"^-?\d+$")


@dataclass
class RefResult:
    events: list[EventTuple] = field(default_factory=list)
    lines: int = 0
    allocs: int = 0
    frees: int = 0
    partial_frees: int = 0
    preexisting: int = 0
    live_at_end: int = 0
    failed_allocs: int = 0
    batched: int = 0
    batched_orphans: int = 0
    alloc_overlaps: int = 0
    lost_events: int = 0
    lost_markers: int = 0
    aux: dict[str, int] = field(default_factory=dict)
    malformed: list[tuple[int, str | None]] = field(default_factory=list)
    # Extra (not part of the contract): every well-formed event line by name.
    event_lines: dict[str, int] = field(default_factory=dict)

    COUNT_FIELDS = (
        "lines",
        "allocs",
        "frees",
        "partial_frees",
        "preexisting",
        "live_at_end",
        "failed_allocs",
        "batched",
        "batched_orphans",
        "alloc_overlaps",
        "lost_events",
        "lost_markers",
    )

    def counts(self) -> dict[str, Any]:
        """The counts in the expected.json layout (no events, no malformed)."""
        out: dict[str, Any] = {name: getattr(self, name) for name in self.COUNT_FIELDS}
        out["aux"] = dict(sorted(self.aux.items()))
        return out

    def to_json(self) -> dict[str, Any]:
        """Counts, malformed and events as JSON-ready values."""
        out = self.counts()
        out["malformed"] = [[line, fld] for line, fld in self.malformed]
        out["events"] = [list(ev) for ev in self.events]
        return out


class _BadFieldError(Exception):
    def __init__(self, field_name: str) -> None:
        super().__init__(field_name)
        self.field_name = field_name


def split_lines(text: str) -> list[str]:
    """Physical lines: split on '\\n', a final unterminated line counts, '\\r' stripped."""
    parts = text.split("\n")
    if parts and parts[-1] == "":
        parts.pop()
    return [p[:-1] if p.endswith("\r") else p for p in parts]


def parse_kv(payload: str) -> dict[str, str]:
    """Generic key=value pairs; a value runs to the next key (blanks and ',' trimmed)."""
    matches = list(KEY_RE.finditer(payload))
    out: dict[str, str] = {}
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(payload)
        value = payload[m.end() : end].strip(" \t").rstrip(",").strip(" \t")
        out.setdefault(m.group(1), value)  # first occurrence wins
    return out


def ts_to_ns(secs: str, frac: str) -> int:
    if len(frac) <= 9:
        sub = int(frac) * 10 ** (9 - len(frac))
    else:
        sub = int(frac) // 10 ** (len(frac) - 9)
    return int(secs) * 1_000_000_000 + sub


def _required(kv: dict[str, str], name: str) -> str:
    value = kv.get(name)
    if value is None or value == "":
        raise _BadFieldError(name)
    return value


def _pfn(kv: dict[str, str]) -> int:
    text = _required(kv, "pfn")
    if HEX_RE.match(text):
        return int(text, 16)
    if DEC_RE.match(text):
        return int(text)
    raise _BadFieldError("pfn")


def _order(kv: dict[str, str]) -> int:
    text = _required(kv, "order")
    if not INT_RE.match(text):
        raise _BadFieldError("order")
    value = int(text)
    if not 0 <= value <= MAX_ORDER:
        raise _BadFieldError("order")
    return value


def _migratetype(kv: dict[str, str]) -> int:
    text = _required(kv, "migratetype")
    if not INT_RE.match(text):
        raise _BadFieldError("migratetype")
    return int(text)


@dataclass
class _Obj:
    start: int
    order: int
    migratetype: int
    live: int  # number of pages this object still holds


def parse_text(text: str) -> RefResult:
    res = RefResult()
    lines = split_lines(text)
    res.lines = len(lines)

    objs: list[_Obj] = []
    owner: dict[int, int] = {}  # live page -> obj id
    last_ev: dict[int, int] = {}  # page -> index of the last canonical event covering it
    ev_src: list[str] = []  # per event: the ftrace event name it came from
    rows: list[list[Any]] = []
    pending: set[int] = set()

    def add_row(row: list[Any], src: str, first: int, npages: int) -> None:
        idx = len(rows)
        rows.append(row)
        ev_src.append(src)
        for p in range(first, first + npages):
            last_ev[p] = idx

    for line_no, line in enumerate(lines, start=1):
        stripped = line.strip(" \t")
        if stripped == "" or stripped.startswith("#"):
            continue
        m = HEADER_RE.match(line)
        if m is None:
            lost = LOST_RE.search(line) or DROPPED_NUM_RE.search(line)
            if lost is not None:
                res.lost_markers += 1
                res.lost_events += int(lost.group(1))
            elif "EVENTS DROPPED" in line:
                res.lost_markers += 1
            elif any(r.match(line) for r in PREAMBLE_RES):
                pass
            else:
                res.malformed.append((line_no, None))
            continue

        name = m.group("event")
        comm = m.group("comm")
        pid = int(m.group("pid"))
        cpu = int(m.group("cpu"))
        ts = ts_to_ns(m.group("secs"), m.group("frac"))

        if name != ALLOC and name not in FREE_EVENTS and name != BATCHED:
            res.event_lines[name] = res.event_lines.get(name, 0) + 1
            res.aux[name] = res.aux.get(name, 0) + 1
            continue

        kv = parse_kv(m.group("payload"))
        try:
            if name == ALLOC:
                page = _required(kv, "page")
                pfn = _pfn(kv)
                order = _order(kv)
                mt = _migratetype(kv)
            else:
                page = ""
                pfn = _pfn(kv)
                order = _order(kv)
                mt = -1
        except _BadFieldError as bad:
            res.malformed.append((line_no, bad.field_name))
            continue
        res.event_lines[name] = res.event_lines.get(name, 0) + 1
        npages = 1 << order

        if name == ALLOC:
            if page == "(null)" or pfn == 0:
                res.failed_allocs += 1
                x = len(objs)
                objs.append(_Obj(-1, order, mt, 0))
                rows.append(["alloc", x, 0, order, mt, None, ts, cpu, pid, comm, False])
                ev_src.append(name)
                continue
            x = len(objs)
            overlapped = False
            for p in range(pfn, pfn + npages):
                y = owner.get(p)
                if y is not None:
                    overlapped = True
                    objs[y].live -= 1
                owner[p] = x
            if overlapped:
                res.alloc_overlaps += 1
            objs.append(_Obj(pfn, order, mt, npages))
            res.allocs += 1
            add_row(["alloc", x, 0, order, mt, pfn, ts, cpu, pid, comm, False], name, pfn, npages)

        elif name in FREE_EVENTS:
            y = owner.get(pfn)
            if y is not None:
                obj = objs[y]
                offset = pfn - obj.start
                for p in range(pfn, pfn + npages):
                    if owner.get(p) == y:
                        del owner[p]
                        obj.live -= 1
                if not (offset == 0 and order == obj.order):
                    res.partial_frees += 1
                mt = obj.migratetype
            else:
                y = len(objs)
                objs.append(_Obj(pfn, order, -1, 0))
                offset = 0
                mt = -1
                res.preexisting += 1
            batched = name == "mm_pagevec_free"
            if name == "mm_page_free" and pfn in pending:
                pending.discard(pfn)
                batched = True
            res.frees += 1
            add_row(
                ["free", y, offset, order, mt, pfn, ts, cpu, pid, comm, batched], name, pfn, npages
            )

        elif "cold" in kv:  # mm_page_free_batched, 3.3-4.14
            # free_hot_cold_page_list() traces the batched free just before
            # free_hot_cold_page() traces its mm_page_free, also for a page
            # allocated before tracing began: the next free of P is flagged.
            if pfn in pending:
                res.batched_orphans += 1
            else:
                pending.add(pfn)

        else:  # mm_page_free_batched, 4.15+ (no cold=)
            idx = last_ev.get(pfn)
            if (
                idx is not None
                and rows[idx][0] == "free"
                and ev_src[idx] == "mm_page_free"
                and not rows[idx][10]
            ):
                rows[idx][10] = True
            elif pfn in owner and pfn not in pending:
                pending.add(pfn)
            else:
                res.batched_orphans += 1

    res.batched_orphans += len(pending)
    res.events = [tuple(r) for r in rows]  # type: ignore[misc]
    res.batched = sum(1 for r in rows if r[10])
    res.live_at_end = sum(1 for o in objs if o.live > 0)
    return res


def parse_file(path: str | Path) -> RefResult:
    """Parse a text file, or a ``.zst`` file via the ``zstandard`` module."""
    p = Path(path)
    if p.suffix == ".zst":
        import zstandard

        with p.open("rb") as fh:
            data = zstandard.ZstdDecompressor().stream_reader(fh).read()
        return parse_text(data.decode("utf-8", errors="replace"))
    return parse_text(p.read_text(encoding="utf-8"))
