"""Hypothesis strategy: random page-allocation histories rendered as ftrace text.

``trace_histories(era=...)`` draws a history over a small pfn window (64
pages), renders it in the text format of one kernel era, and returns
``(text, expected)``. ``expected`` has the layout of the fixtures'
``*.expected.json`` (counts, ``aux``, ``malformed`` and ``events``) and comes
from the generator's own bookkeeping of what it emitted, never from a parser.

The histories stay inside what a real kernel can print: allocations of
orders 0..4 at aligned pfns, whole frees, partial frees of non-compound
allocations, frees of pages allocated before tracing, batched frees in the
order of the era, failed allocations, aux events, and occasionally an
allocation over live pages (as after lost events), a lost-events line and
an orphan ``mm_page_free_batched``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

ERAS = ("2.6.35", "3.10", "4.19", "5.15", "6.18", "trace-cmd")

COUNT_KEYS = (
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
WINDOW = 64  # pages in the pfn window
MAX_GEN_ORDER = 4

COMMS: tuple[tuple[str, int], ...] = (
    ("bash", 2265),
    ("<...>", 6570),
    ("Web Content", 4321),
    ("kworker/u8:2", 123),
    ("gdbus-worker", 77),
    ("foo-12", 34),
    ("systemd-journal", 412),
    ("a-1 b", 2),
    ("capture.sh", 6566),
)
FLAGS4 = ("....", "d..2", "d...", "...1", "dNs2", "d.h1")
FLAGS5 = (".....", "d..3.", ".N...", "...1.", "...2.", "d.h2.", "dNs3.")
MARKS = (
    "snapshot before begin",
    "snapshot after end",
    "LOST 3 EVENTS",
    "a=b c=d",
    "",
    "x-1 [000] .....   1.000000: fake_event: pfn=0x1 order=0",
)
GFPS = ("GFP_KERNEL", "GFP_HIGHUSER_MOVABLE|__GFP_COMP", "GFP_NOWAIT", "0x140dca")
HEADER_3X = (
    "# tracer: nop",
    "#",
    "#                              _-----=> irqs-off",
    "#                             / _----=> need-resched",
    "#                            | / _---=> hardirq/softirq",
    "#                            || / _--=> preempt-depth",
    "#                            ||| /     delay",
    "#           TASK-PID   CPU#  ||||    TIMESTAMP  FUNCTION",
    "#              | |       |   ||||       |         |",
)


@dataclass
class _Obj:
    start: int
    order: int
    migratetype: int
    live: set[int]
    partial_ok: bool  # non-compound, or lost pages to an overlapping alloc


@dataclass
class _History:
    draw: Any
    era: str
    base: int
    ns_digits: bool
    lines: list[str] = field(default_factory=list)
    events: list[list[Any]] = field(default_factory=list)
    objs: list[_Obj] = field(default_factory=list)
    owner: dict[int, int] = field(default_factory=dict)  # live page -> obj id
    touched: set[int] = field(default_factory=set)  # pages any canonical event covered
    ts: int = 0  # ns
    counts: dict[str, int] = field(default_factory=dict)
    aux: dict[str, int] = field(default_factory=dict)

    # ---------------------------------------------------------------- text
    def hexpfn(self) -> bool:
        return self.era in ("5.15", "6.18", "trace-cmd")

    def pfn_text(self, pfn: int) -> str:
        return f"0x{pfn:x}" if self.hexpfn() else str(pfn)

    def page_text(self, pfn: int) -> str:
        if self.era in ("2.6.35", "3.10"):
            return f"{0xFFFFEA0000000000 + pfn * 64:016x}"
        if self.era == "trace-cmd":
            return f"0x{0xFFFFEA0000000000 + pfn * 64:x}"
        return f"{(pfn * 2654435761) & 0xFFFFFFFF:016x}"

    def tick(self) -> None:
        step = self.draw(st.integers(0, 40))
        self.ts += step if self.ns_digits else step * 1000

    def emit(self, name: str, pairs: list[tuple[str, str]] | str) -> tuple[int, int, str]:
        """Render one event line; returns (cpu, pid, comm) as written."""
        self.tick()
        draw = self.draw
        comm, pid = draw(st.sampled_from(COMMS))
        cpu = draw(st.integers(0, 3))
        if isinstance(pairs, str):
            payload = pairs
        else:
            if name != "tracing_mark_write" and draw(st.integers(0, 9)) == 0:
                vendor = [("nr_free", str(draw(st.integers(0, 99)))), ("lat", "3")]
                for kv in vendor:
                    pairs.insert(draw(st.integers(0, len(pairs))), kv)
            payload = " ".join(f"{k}={v}" for k, v in pairs)
        secs, sub = divmod(self.ts, 1_000_000_000)
        ts = f"{secs:5d}.{sub:09d}" if self.ns_digits else f"{secs:5d}.{sub // 1000:06d}"
        era = self.era
        if era == "2.6.35":
            head = f"{comm:>16}-{pid:<5} [{cpu:03d}] {ts}: {name}:"
        elif era == "3.10":
            head = f"{comm:>16}-{pid:<5} [{cpu:03d}] {draw(st.sampled_from(FLAGS4))} {ts}: {name}:"
        elif era == "4.19":
            tgid = draw(st.sampled_from(("-------", f"{pid:>7}")))
            flags = draw(st.sampled_from(FLAGS4))
            head = f"{comm:>16}-{pid:<5} ({tgid}) [{cpu:03d}] {flags} {ts}: {name}:"
        elif era == "5.15":
            head = f"{comm:>16}-{pid:<7} [{cpu:03d}] {draw(st.sampled_from(FLAGS4))} {ts}: {name}:"
        elif era == "6.18":
            head = f"{comm:>16}-{pid:<7} [{cpu:03d}] {draw(st.sampled_from(FLAGS5))} {ts}: {name}:"
        else:  # trace-cmd report: no flags, event name padded after the colon
            head = f"{comm:>16}-{pid:<5} [{cpu:03d}] {ts}: {name + ':':<21}"
        self.lines.append(f"{head} {payload}" if payload else head)
        return cpu, pid, comm

    def bump(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def bump_aux(self, name: str) -> None:
        self.aux[name] = self.aux.get(name, 0) + 1

    # ------------------------------------------------------------ history
    def blocks(self, order: int) -> list[int]:
        size = 1 << order
        return [self.base + i for i in range(0, WINDOW, size)]

    def alloc(self, overlap: bool, exclude: set[int]) -> None:
        draw = self.draw
        k = draw(st.integers(0, MAX_GEN_ORDER))
        cands = []
        for start in self.blocks(k):
            pages = range(start, start + (1 << k))
            if any(p in exclude for p in pages):
                continue
            n_live = sum(1 for p in pages if p in self.owner)
            if (n_live > 0) == overlap:
                cands.append(start)
        if not cands:
            return
        start = draw(st.sampled_from(cands))
        mt = draw(st.integers(0, 4))
        x = len(self.objs)
        pages = set(range(start, start + (1 << k)))
        damaged = False
        for p in sorted(pages):
            y = self.owner.get(p)
            if y is not None:
                damaged = True
                self.objs[y].live.discard(p)
                self.objs[y].partial_ok = True
            self.owner[p] = x
        if damaged:
            self.bump("alloc_overlaps")
        self.objs.append(_Obj(start, k, mt, pages, draw(st.booleans())))
        self.touched |= pages
        pairs = [
            ("page", self.page_text(start)),
            ("pfn", self.pfn_text(start)),
            ("order", str(k)),
            ("migratetype", str(mt)),
            ("gfp_flags", draw(st.sampled_from(GFPS))),
        ]
        cpu, pid, comm = self.emit("mm_page_alloc", pairs)
        self.events.append(["alloc", x, 0, k, mt, start, self.ts, cpu, pid, comm, False])
        self.bump("allocs")

    def free_line(self, pfn: int, order: int, pagevec: bool) -> tuple[int, int, str]:
        pairs = [("page", self.page_text(pfn)), ("pfn", self.pfn_text(pfn)), ("order", str(order))]
        if self.era == "2.6.35":
            if pagevec:
                pairs.append(("cold", str(self.draw(st.integers(0, 1)))))
                return self.emit("mm_pagevec_free", pairs)
            return self.emit("mm_page_free_direct", pairs)
        return self.emit("mm_page_free", pairs)

    def free(self, pfn: int, order: int, batched: bool, obj_id: int | None) -> None:
        """Emit a free of [pfn, pfn + 2^order) of ``obj_id`` (None: allocated before tracing).

        In 2.6.35 a batched free is written as mm_pagevec_free.
        """
        cpu, pid, comm = self.free_line(pfn, order, batched)
        if obj_id is None:
            obj_id = len(self.objs)
            self.objs.append(_Obj(pfn, order, -1, set(), False))
            offset, mt = 0, -1
            self.bump("preexisting")
        else:
            obj = self.objs[obj_id]
            offset, mt = pfn - obj.start, obj.migratetype
            freed = set(range(pfn, pfn + (1 << order)))
            assert freed <= obj.live, "generator bug: freeing pages the object does not hold"
            obj.live -= freed
            for p in freed:
                del self.owner[p]
            if (offset, order) != (0, obj.order):
                self.bump("partial_frees")
        self.touched |= set(range(pfn, pfn + (1 << order)))
        self.events.append(
            ["free", obj_id, offset, order, mt, pfn, self.ts, cpu, pid, comm, batched]
        )
        self.bump("frees")
        if batched:
            self.bump("batched")

    def intact(self) -> list[int]:
        return [
            i
            for i, o in enumerate(self.objs)
            if o.live and len(o.live) == 1 << o.order and o.start in o.live
        ]

    def whole_free(self) -> None:
        cands = self.intact()
        if not cands:
            return
        x = self.draw(st.sampled_from(cands))
        obj = self.objs[x]
        pagevec = self.era == "2.6.35" and obj.order == 0 and self.draw(st.booleans())
        self.free(obj.start, obj.order, pagevec, x)

    def partial_free(self) -> None:
        cands = [i for i, o in enumerate(self.objs) if o.live and o.order >= 1 and o.partial_ok]
        if not cands:
            return
        x = self.draw(st.sampled_from(cands))
        obj = self.objs[x]
        subs = []
        for j in range(obj.order):
            for s in range(obj.start, obj.start + (1 << obj.order), 1 << j):
                if all(p in obj.live for p in range(s, s + (1 << j))):
                    subs.append((s, j))
        s, j = self.draw(st.sampled_from(subs))
        pagevec = self.era == "2.6.35" and j == 0 and self.draw(st.booleans())
        self.free(s, j, pagevec, x)

    def untouched_blocks(self, order: int) -> list[int]:
        return [
            s
            for s in self.blocks(order)
            if not any(p in self.touched for p in range(s, s + (1 << order)))
        ]

    def preexisting_free(self) -> None:
        j = self.draw(st.integers(0, MAX_GEN_ORDER))
        cands = self.untouched_blocks(j)
        if cands:
            self.free(self.draw(st.sampled_from(cands)), j, False, None)

    def batched_line(self, pfn: int) -> None:
        pairs = [("page", self.page_text(pfn)), ("pfn", self.pfn_text(pfn)), ("order", "0")]
        if self.era == "3.10":
            pairs.append(("cold", str(self.draw(st.integers(0, 1)))))
        self.emit("mm_page_free_batched", pairs)

    def batch(self) -> None:
        """A freed list of order-0 pages, with the batched events in the era's order.

        The pages are whole order-0 objects, single pages of non-compound
        objects (split pages: partial frees), or pages allocated before tracing.
        """
        draw = self.draw
        live: dict[int, int] = {}  # page -> object id
        for i, o in enumerate(self.objs):
            if o.order == 0 and o.start in o.live:
                live[o.start] = i
            elif o.order >= 1 and o.partial_ok:
                live.update((p, i) for p in o.live)
        pool = sorted(set(live) | set(self.untouched_blocks(0)))
        if live and draw(st.booleans()):
            pool = sorted(live)  # mostly pages allocated during the trace
        if not pool:
            return
        items = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=4, unique=True))
        if self.era == "2.6.35":
            for p in items:
                self.free(p, 0, True, live.get(p))
        elif self.era == "3.10":  # 3.3-4.14: batched just before its own free
            for p in items:
                self.batched_line(p)
                if p in live and draw(st.integers(0, 7)) == 0:
                    self.batched_line(p)  # a second one while pending: an orphan
                    self.bump("batched_orphans")
                if draw(st.integers(0, 3)) == 0:
                    self.aux_event()
                self.free(p, 0, True, live.get(p))
        else:  # 4.15+: all the frees, then all the batched lines
            for p in items:
                self.free(p, 0, True, live.get(p))
            for _ in range(draw(st.integers(0, 2))):
                if draw(st.booleans()):
                    self.aux_event()
                else:
                    self.alloc(False, exclude=set(items))
            for p in items:
                self.batched_line(p)
            if draw(st.integers(0, 7)) == 0:
                self.batched_line(draw(st.sampled_from(items)))  # free already flagged
                self.bump("batched_orphans")

    def orphan_batched(self) -> None:
        fresh = self.untouched_blocks(0)
        # Not for 3.10: a batched line with cold= stays pending until its pfn's
        # next free, which may come much later (batch() makes 3.10's orphans).
        if fresh and self.era not in ("2.6.35", "3.10"):
            self.batched_line(self.draw(st.sampled_from(fresh)))
            self.bump("batched_orphans")

    def failed_alloc(self) -> None:
        draw = self.draw
        if self.era == "trace-cmd":
            page, pfn = "(nil)", "0x0"
        elif self.hexpfn():
            page, pfn = draw(st.sampled_from(("          (null)", "0000000000000000"))), "0x0"
        else:
            page, pfn = "          (null)", "0"
        k = draw(st.integers(0, 10))
        mt = draw(st.integers(0, 4))
        pairs = [
            ("page", page),
            ("pfn", pfn),
            ("order", str(k)),
            ("migratetype", str(mt)),
            ("gfp_flags", draw(st.sampled_from(GFPS))),
        ]
        cpu, pid, comm = self.emit("mm_page_alloc", pairs)
        # A request the kernel failed: a canonical row of its own object, no pfn.
        x = len(self.objs)
        self.objs.append(_Obj(-1, k, mt, set(), False))
        self.events.append(["alloc", x, 0, k, mt, None, self.ts, cpu, pid, comm, False])
        self.bump("failed_allocs")

    def aux_event(self) -> None:
        draw = self.draw
        pfn = self.base + draw(st.integers(0, WINDOW - 1))
        page = [("page", self.page_text(pfn)), ("pfn", self.pfn_text(pfn))]
        choices: list[tuple[str, list[tuple[str, str]] | str]] = [
            (
                "mm_page_alloc_zone_locked",
                [*page, ("order", "0"), ("migratetype", "1"), ("percpu_refill", "1")],
            ),
            ("mm_page_pcpu_drain", [*page, ("order", "0"), ("migratetype", "0")]),
            (
                "mm_page_alloc_extfrag",
                [
                    *page,
                    ("alloc_order", "3"),
                    ("fallback_order", "9"),
                    ("pageblock_order", "9"),
                    ("alloc_migratetype", "0"),
                    ("fallback_migratetype", "1"),
                    ("fragmenting", "0"),
                    ("change_ownership", "1"),
                ],
            ),
            ("tracing_mark_write", draw(st.sampled_from(MARKS))),
        ]
        if self.era in ("5.15", "6.18", "trace-cmd"):
            choices += [
                (
                    "mm_compaction_isolate_migratepages",
                    "range=(0x1000 ~ 0x1200) nr_scanned=512 nr_taken=3",
                ),
                ("mm_compaction_finished", "node=0 zone=Normal   order=-1 ret=continue"),
                (
                    "mm_compaction_begin",
                    "zone_start=0x1000 migrate_pfn=0x1000 free_pfn=0xffe00 "
                    "zone_end=0x100000, mode=sync",
                ),
            ]
        name, payload = draw(st.sampled_from(choices))
        self.emit(name, payload)
        self.bump_aux(name)

    def lost(self) -> None:
        draw = self.draw
        cpu = draw(st.integers(0, 3))
        n = draw(st.integers(1, 500))
        if self.era == "trace-cmd":
            if draw(st.booleans()):
                self.lines.append(f"CPU:{cpu} [EVENTS DROPPED]")
                n = 0
            else:
                self.lines.append(f"CPU:{cpu} [{n} EVENTS DROPPED]")
        else:
            self.lines.append(f"CPU:{cpu} [LOST {n} EVENTS]")
        self.bump("lost_markers")
        self.bump("lost_events", n)

    def expected(self) -> dict[str, Any]:
        out: dict[str, Any] = {"lines": len(self.lines)}
        for key in COUNT_KEYS[1:]:
            out[key] = self.counts.get(key, 0)
        out["live_at_end"] = sum(1 for o in self.objs if o.live)
        out["aux"] = dict(sorted(self.aux.items()))
        out["malformed"] = []
        out["events"] = self.events
        return out


# action -> weight
_ACTIONS = (
    ("alloc", 8),
    ("whole_free", 5),
    ("partial_free", 3),
    ("preexisting_free", 2),
    ("batch", 2),
    ("failed_alloc", 1),
    ("aux", 3),
    ("overlap", 1),
    ("orphan", 1),
    ("lost", 1),
)
_ACTION_LIST = tuple(name for name, w in _ACTIONS for _ in range(w))


@st.composite
def _histories(draw: st.DrawFn, era: str | None, max_actions: int) -> tuple[str, dict[str, Any]]:
    era = era if era is not None else draw(st.sampled_from(ERAS))
    if era not in ERAS:
        raise ValueError(f"unknown era {era!r}; expected one of {ERAS}")
    h = _History(
        draw=draw,
        era=era,
        base=16 * draw(st.integers(1, 1 << 16)),
        ns_digits=era == "trace-cmd" and draw(st.booleans()),
    )
    h.ts = draw(st.integers(0, 99_999)) * 1_000_000_000 + draw(st.integers(0, 999_999)) * 1000
    if era in ("2.6.35", "3.10", "4.19") and draw(st.booleans()):
        h.lines.extend(HEADER_3X)
    elif era == "trace-cmd":
        h.lines.extend(("version = 6", "cpus=4"))
    for _ in range(draw(st.integers(0, max_actions))):
        action = draw(st.sampled_from(_ACTION_LIST))
        if action == "alloc":
            h.alloc(False, exclude=set())
        elif action == "overlap":
            h.alloc(True, exclude=set())
        elif action == "whole_free":
            h.whole_free()
        elif action == "partial_free":
            h.partial_free()
        elif action == "preexisting_free":
            h.preexisting_free()
        elif action == "batch":
            h.batch()
        elif action == "failed_alloc":
            h.failed_alloc()
        elif action == "aux":
            h.aux_event()
        elif action == "orphan":
            h.orphan_batched()
        else:
            h.lost()
    if draw(st.integers(0, 4)) == 0:
        h.lines.append("")  # a trailing blank line
    text = "".join(line + "\n" for line in h.lines)
    return text, h.expected()


def trace_histories(
    era: str | None = None, max_actions: int = 40
) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """Random allocation histories as ftrace text of ``era`` (None: any era).

    Returns ``(text, expected)``; ``expected`` has the keys of the fixtures'
    ``*.expected.json`` files: the counts, ``aux``, ``malformed`` (always
    empty) and ``events`` (lists in the EventTuple field order of refparse).
    """
    return _histories(era, max_actions)
