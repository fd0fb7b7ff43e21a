"""Kernel stacks recorded with page events, and the call site each names.

Three recordings carry stacks: ftrace's ``stacktrace`` trigger (``echo
stacktrace > events/kmem/mm_page_alloc/trigger``) prints a ``<stack trace>``
line and one `` => func`` line per frame in the text, and stores an
``ftrace:kernel_stack`` record (``size`` frames in ``caller[]``) in the raw
ring buffer (trace.dat); ``perf record -g`` stores a callchain with each
sample. The trigger runs inside the event's own tracepoint handler (the
stack's first frame is ``trace_event_raw_event_<event>``) once the event is
written, on the same CPU by the same task: a stack belongs to the previous
line of its CPU and pid (as recorded on 6.18: every stack right after its
``mm_page_alloc``).

The call site of a stack is what ``perf kmem --page`` reports: its first
frame outside the page allocator (and outside the tracing code that took
the stack): :data:`ALLOCATOR_RE`. Units: ``line`` is the source line (or row)
number the events table keeps; ``seq`` the events row.
"""

from __future__ import annotations

import re
from array import array
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:  # the store imports analysis code; the parsers only need this module
    from replay.store import Store

#: frames that are the allocator or the tracing code, not the caller: perf kmem's
#: ``^_?_?(alloc|get_free|get_zeroed)_pages?`` (tools/perf/builtin-kmem.c) and the
#: 6.x names around it (``_noprof`` variants, folio wrappers, the slow path)
ALLOCATOR_RE = re.compile(
    r"^(?:trace_event_raw_event_|__traceiter_|perf_trace_|trace_buffered_event|"
    r"stack_trace_save|__ftrace_trace_stack|ftrace_trace_stack|event_triggers_call|"
    r"stacktrace_trigger|trace_event_buffer|perf_tp_event|perf_callchain|"
    r"_*(?:alloc|get_free|get_zeroed)_(?:frozen_)?pages?|_*alloc_pages|"
    r"_*folio_alloc|_*alloc_frozen_pages|vma_alloc_folio|alloc_pages_mpol|"
    r"get_page_from_freelist|rmqueue|__rmqueue|prep_new_page|post_alloc_hook|"
    r"_*alloc_pages_slowpath|_*alloc_pages_direct)"
)
_OFFSET_RE = re.compile(r"[+ (].*$")


def frame_name(frame: str) -> str:
    """``func`` of ``func+0x1a/0x30``, ``func (ffffffff81234)`` or ``func``."""
    return _OFFSET_RE.sub("", frame.strip())


def callsite_of(frames: tuple[str, ...]) -> str:
    """The first frame outside the allocator and tracing (the innermost one if all are)."""
    names = [frame_name(f) for f in frames if f.strip()]
    for name in names:
        if not ALLOCATOR_RE.match(name):
            return name
    return names[-1] if names else ""


class StackCollector:
    """Stacks as they are read: (line, cpu, pid, stack id), each distinct stack kept once."""

    def __init__(self) -> None:
        self.line = array("q")
        self.cpu = array("i")
        self.pid = array("i")
        self.stack_id = array("i")
        self._ids: dict[tuple[str, ...], int] = {}
        self._stacks: list[tuple[str, ...]] = []
        #: the stack being read from text (its header seen, frames following)
        self._open: tuple[int, int, int] | None = None
        self._frames: list[str] = []

    def __len__(self) -> int:
        return len(self.line)

    def add(self, line: int, cpu: int, pid: int, frames: tuple[str, ...]) -> None:
        """A whole stack (innermost frame first) recorded at ``line`` by ``pid`` on ``cpu``."""
        k = self._ids.get(frames)
        if k is None:
            k = self._ids[frames] = len(self._stacks)
            self._stacks.append(frames)
        self.line.append(line)
        self.cpu.append(cpu)
        self.pid.append(pid)
        self.stack_id.append(k)

    def is_open(self) -> bool:
        """Whether a text stack's frames are being read."""
        return self._open is not None

    def open(self, line: int, cpu: int, pid: int) -> None:
        """A text ``<stack trace>`` line: its frames follow (``frame``)."""
        self.close()
        self._open = (line, cpu, pid)

    def frame(self, text: str) -> bool:
        """A text `` => func`` line; False when no stack is open (a stray frame)."""
        if self._open is None:
            return False
        self._frames.append(text.strip().removeprefix("=>").strip())
        return True

    def close(self) -> None:
        """End the open text stack (at any line that is not a frame)."""
        if self._open is not None:
            line, cpu, pid = self._open
            self.add(line, cpu, pid, tuple(self._frames))
        self._open = None
        self._frames = []

    def tables(self) -> tuple[pa.Table, pa.Table]:
        """(stacks read: line, cpu, pid, stack_id; distinct stacks: stack_id, callsite, stack)."""
        self.close()
        rows = pa.table(
            {
                "line": pa.array(self.line, pa.int64()),
                "cpu": pa.array(self.cpu, pa.int32()),
                "pid": pa.array(self.pid, pa.int32()),
                "stack_id": pa.array(self.stack_id, pa.int32()),
            }
        )
        stacks = pa.table(
            {
                "stack_id": pa.array(range(len(self._stacks)), pa.int32()),
                "callsite": pa.array([callsite_of(s) for s in self._stacks], pa.string()),
                "stack": pa.array(["\n".join(s) for s in self._stacks], pa.string()),
            }
        )
        return rows, stacks


def store_callsites(store: Store, trace_id: int, stacks: StackCollector) -> int:
    """Give each stack's event its call site (table ``callsites``); returns the rows stored.

    A stack belongs to the previous line of its CPU and pid (an events or an
    aux_events row; trace-cmd report's own ``kernel_stack`` line aside), or to
    its own line when that is an event's (a perf sample's callchain). Stacks
    of aux events (a trigger on a compaction event) are not stored, as the
    table is keyed by the events row. A line that is
    several events rows (none today) gives its stack to the first.
    """
    stacks.close()
    if not len(stacks):
        return 0
    rows, distinct = stacks.tables()
    con = store.con
    con.register("_callsite_rows", rows)
    con.register("_callsite_stacks", distinct)
    try:
        store.run(
            """INSERT INTO callsites (trace_id, seq, callsite, stack)
               WITH prev AS (
                 SELECT line, cpu, pid, seq FROM events WHERE trace_id = $t AND line IS NOT NULL
                 UNION ALL
                 SELECT line, cpu, pid, NULL FROM aux_events WHERE trace_id = $t
                   AND line IS NOT NULL AND event <> 'kernel_stack')
               SELECT $t, n.seq, d.callsite, d.stack
               FROM _callsite_rows s
               ASOF JOIN prev n ON s.cpu = n.cpu AND s.pid = n.pid AND s.line >= n.line
               JOIN _callsite_stacks d USING (stack_id)
               WHERE n.seq IS NOT NULL
               QUALIFY row_number() OVER (PARTITION BY n.seq ORDER BY s.line) = 1""",
            {"t": trace_id},
        )
    finally:
        con.unregister("_callsite_rows")
        con.unregister("_callsite_stacks")
    row = store.one("SELECT count(*) FROM callsites WHERE trace_id = $t", {"t": trace_id})
    return int(row[0]) if row else 0


def callsites_by_seq(store: Store, trace_id: int, seqs: list[int]) -> dict[int, str]:
    """The call site of each of ``seqs`` (events rows) that has one; {} for a database
    written before the callsites table existed (opened read-only, it lacks it)."""
    if not seqs:
        return {}
    have = store.one("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'callsites'")
    if not have or not have[0]:
        return {}
    rows = store.con.execute(
        "SELECT seq, callsite FROM callsites WHERE trace_id = $t AND list_contains($s, seq)",
        {"t": trace_id, "s": [int(s) for s in seqs]},
    ).fetchall()
    return {int(seq): str(site) for seq, site in rows if site is not None}
