"""Synthetic scenarios: deterministic allocator event streams for ``replay generate``.

Each scenario turns ``(seed, events, zone_pages)`` into a canonical event
table (SPEC-trace.md): the same arguments always give byte-identical events
(numpy ``Generator(PCG64(seed))``; the one sequential loop is a numba kernel
that only consumes numbers drawn beforehand). Units: sizes in pages (4 KiB),
orders as in the kernel (a block of order k is 2**k pages), times in ns.

Invariants of every generated stream (tests/test_scenarios.py checks them):
``seq`` is 0..n-1; ``ts_ns`` never decreases; every free names a live object
(allocated earlier, not yet freed) and frees all of it (offset 0, its order);
the pages held by live objects never exceed the zone (most scenarios hold
them at 85-97% of it). ``pfn`` and ``movable`` are null (the models place
pages; no class overrides its migratetype), ``region``/``vpn`` are null except
in ``vma``. Frees carry no gfp string (as ``mm_page_free`` prints none) and
the comm/pid of the task that allocated the object.

Most scenarios are a *churn* of allocation classes (``EventClass``): each class
has a migratetype, an order mix, a gfp string, the tasks that allocate it, a
target share of the zone and a relative *hazard* (free rate per live object:
a high hazard means short lifetimes). Step by step the churn kernel decides
between an allocation and a free from the pages held against the target
(which ramps up over the first part of the trace), gives allocations to the
classes furthest below their target, and picks the class of a free in
proportion to hazard x live objects; the victim is a random live object of
that class, or its oldest (``fifo``: an LRU). Time comes from per-segment
exponential gaps plus idle gaps between segments. ``fragmenter``,
``stress-highalloc`` (phases 2-3) and ``vma`` are built directly from their
definitions. docs/scenarios.md describes every scenario.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa

from replay.errors import UsageError
from replay.jit import njit
from replay.trace.schema import (
    COMM_TYPE,
    MIGRATE_MOVABLE,
    MIGRATE_RECLAIMABLE,
    MIGRATE_UNMOVABLE,
    OP_DICTIONARY,
    OP_TYPE,
)

GENERATOR_VERSION = 1
PAGEBLOCK_PAGES = 512  # pageblock_order 9
ZONE_ALIGN = 1024  # zone sizes are whole MAX_PAGE_ORDER blocks
MIN_ZONE_PAGES = 4096  # 16 MiB: 8 pageblocks
MAX_ZONE_PAGES = 1 << 26  # 256 GiB
MIN_EVENTS = 1000
MAX_EVENTS = 20_000_000  # about 200 bytes of memory per event while generating
NCPUS = 2
NS_PER_S = 1_000_000_000

OP_ALLOC = 0
OP_FREE = 1


# -- allocation classes ----------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """A task that allocates pages: its comm and pid (and cpu, for per-cpu threads).

    ``job_steps`` > 0 makes it a short-lived process: the pid moves on by
    ``pid_stride`` every ``job_steps`` churn steps (a build spawning compilers).
    """

    comm: str
    pid: int
    weight: float = 1.0
    cpu: int = -1  # -1: any cpu (drawn per event)
    job_steps: int = 0
    pid_stride: int = 0


@dataclass(frozen=True)
class EventClass:
    """One kind of allocation in a churn scenario.

    ``orders`` maps order -> probability; ``gfp`` is printed for order-0
    allocations and ``gfp_compound`` (default ``gfp``) for higher orders.
    ``target`` is the share of the zone's pages the class holds once the ramp
    is over, at most; with ``vary = (lo, hi)`` each phase of the trace draws
    the class's share uniformly from that range (hi = target); ``hazard`` is the relative
    free rate of one live object (lifetimes scale as 1/hazard); ``fifo`` frees
    the oldest object of the class first (LRU) instead of a random one.
    """

    name: str
    migratetype: int
    orders: dict[int, float]
    gfp: str
    tasks: tuple[Task, ...]
    target: float
    hazard: float
    fifo: bool = False
    gfp_compound: str | None = None
    vary: tuple[float, float] | None = None

    @property
    def mean_pages(self) -> float:
        """Mean pages of one allocation."""
        total = sum(self.orders.values())
        return sum((1 << k) * p for k, p in self.orders.items()) / total

    @property
    def min_order(self) -> int:
        return min(k for k, p in self.orders.items() if p > 0)

    def order_cdf(self) -> np.ndarray:
        """Cumulative probabilities over orders 0..10."""
        p = np.zeros(11)
        for k, v in self.orders.items():
            p[k] = v
        cdf = np.cumsum(p / p.sum())
        cdf[-1] = 1.0
        return cdf


# -- the churn kernel ---------------------------------------------------------------


@njit(cache=True)
def _churn_kernel(
    u: np.ndarray,
    cap_pages: int,
    band: float,
    ramp_steps: int,
    seg_end: np.ndarray,
    seg_target: np.ndarray,
    hazard: np.ndarray,
    fifo: np.ndarray,
    order_cdf: np.ndarray,
    mean_pages: np.ndarray,
    pool_cap: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One event per row of ``u`` (uniforms, shape (n, 4)): op, obj, order, class.

    ``seg_target[s, c]``: pages class c should hold in segment s (segment s
    covers steps before ``seg_end[s]``), scaled by the ramp
    ``min(1, (step + 1) / ramp_steps)``. An allocation happens with
    probability ``0.5 + (target - held) / (2 band)`` clipped to [0.02, 0.98],
    never when it would take the held pages over ``cap_pages`` (then a free
    happens instead), and always when nothing is live. An allocation goes to a
    class in proportion to its deficit (target - held pages); with no deficit,
    in proportion to its expected free rate (hazard x target / mean pages). A
    free picks its class in proportion to hazard x live objects. Objects are
    numbered 0, 1, 2, ... in allocation order.
    """
    n = u.shape[0]
    C = hazard.shape[0]
    op = np.empty(n, np.int8)
    obj = np.empty(n, np.int64)
    order = np.empty(n, np.int8)
    cls = np.empty(n, np.int8)
    off = np.zeros(C + 1, np.int64)
    for c in range(C):
        off[c + 1] = off[c] + pool_cap[c]
    pool = np.empty(off[C], np.int64)
    head = np.zeros(C, np.int64)
    count = np.zeros(C, np.int64)
    held_c = np.zeros(C, np.int64)
    obj_order = np.empty(n, np.int8)
    tgt = np.empty(C)
    w = np.empty(C)
    held = 0
    n_live = 0
    next_obj = 0
    s = 0
    for i in range(n):
        while i >= seg_end[s]:
            s += 1
        r = (i + 1) / ramp_steps
        if r > 1.0:
            r = 1.0
        total = 0.0
        for c in range(C):
            tgt[c] = seg_target[s, c] * r
            total += tgt[c]
        p = 0.5 + (total - held) / (2.0 * band)
        if p < 0.02:
            p = 0.02
        elif p > 0.98:
            p = 0.98
        do_alloc = n_live == 0 or u[i, 0] < p
        c_sel = 0
        k = 0
        if do_alloc:
            wsum = 0.0
            for c in range(C):
                d = tgt[c] - held_c[c]
                w[c] = d if d > 0.0 else 0.0
                wsum += w[c]
            if wsum <= 0.0:  # every class at its target: follow the expected frees
                for c in range(C):
                    w[c] = hazard[c] * tgt[c] / mean_pages[c]
                    wsum += w[c]
            if wsum <= 0.0:  # no class wants pages in this segment
                for c in range(C):
                    w[c] = 1.0 if seg_target[s, c] > 0 else 0.0
                    wsum += w[c]
                if wsum <= 0.0:
                    w[0] = 1.0
                    wsum = 1.0
            x = u[i, 1] * wsum
            c_sel = C - 1
            acc = 0.0
            for c in range(C):
                acc += w[c]
                if x < acc and w[c] > 0.0:
                    c_sel = c
                    break
            while w[c_sel] <= 0.0:  # rounding at the top end
                c_sel -= 1
            k = 0
            while k < 10 and u[i, 2] >= order_cdf[c_sel, k]:
                k += 1
            pages = np.int64(1) << k
            if n_live > 0 and (held + pages > cap_pages or count[c_sel] >= pool_cap[c_sel]):
                do_alloc = False
        if do_alloc:
            o = next_obj
            next_obj += 1
            if fifo[c_sel]:
                slot = off[c_sel] + (head[c_sel] + count[c_sel]) % pool_cap[c_sel]
            else:
                slot = off[c_sel] + count[c_sel]
            pool[slot] = o
            count[c_sel] += 1
            obj_order[o] = k
            held += np.int64(1) << k
            held_c[c_sel] += np.int64(1) << k
            n_live += 1
            op[i] = 0
            obj[i] = o
            order[i] = k
            cls[i] = c_sel
        else:
            wsum = 0.0
            for c in range(C):
                w[c] = hazard[c] * count[c]
                wsum += w[c]
            if wsum <= 0.0:  # only zero-hazard classes are live: free any of them
                for c in range(C):
                    w[c] = float(count[c])
                    wsum += w[c]
            x = u[i, 1] * wsum
            c_sel = C - 1
            acc = 0.0
            for c in range(C):
                acc += w[c]
                if x < acc and w[c] > 0.0:
                    c_sel = c
                    break
            while w[c_sel] <= 0.0:
                c_sel -= 1
            if fifo[c_sel]:
                slot = off[c_sel] + head[c_sel]
                o = pool[slot]
                head[c_sel] = (head[c_sel] + 1) % pool_cap[c_sel]
            else:
                j = np.int64(u[i, 3] * count[c_sel])
                if j >= count[c_sel]:
                    j = count[c_sel] - 1
                slot = off[c_sel] + j
                o = pool[slot]
                pool[slot] = pool[off[c_sel] + count[c_sel] - 1]
            count[c_sel] -= 1
            k = obj_order[o]
            held -= np.int64(1) << k
            held_c[c_sel] -= np.int64(1) << k
            n_live -= 1
            op[i] = 1
            obj[i] = o
            order[i] = k
            cls[i] = c_sel
    return op, obj, order, cls


@dataclass
class Churn:
    """The output of the churn kernel: one row per step (event)."""

    op: np.ndarray  # int8, OP_ALLOC / OP_FREE
    obj: np.ndarray  # int64, 0.. in allocation order
    order: np.ndarray  # int8
    cls: np.ndarray  # int8, index into the classes


def fill_objects(classes: Sequence[EventClass], zone_pages: int, scale: float = 1.0) -> float:
    """Objects needed to bring every class to its target share (an estimate)."""
    return sum(c.target * scale * zone_pages / c.mean_pages for c in classes)


def churn(
    rng: np.random.Generator,
    classes: Sequence[EventClass],
    n_steps: int,
    zone_pages: int,
    *,
    cap: float,
    ramp_steps: int,
    seg_len: Sequence[int] | np.ndarray | None = None,
    seg_target: np.ndarray | None = None,
    band: float = 0.01,
) -> Churn:
    """Run the churn kernel for ``n_steps`` events.

    ``cap`` and ``band`` are shares of the zone (the held pages never exceed
    ``cap * zone_pages``); ``seg_target`` (segments x classes, shares of the
    zone) overrides the classes' targets per segment of ``seg_len`` steps.
    """
    C = len(classes)
    if seg_len is None:
        seg_len = [n_steps]
    seg_len = np.asarray(seg_len, dtype=np.int64)
    if seg_target is None:
        seg_target = np.array([[c.target for c in classes]] * len(seg_len))
    seg_end = np.cumsum(seg_len)
    seg_end[-1] = max(seg_end[-1], n_steps)
    cap_pages = int(cap * zone_pages)
    pool_cap = np.array(
        [max(1, min(n_steps, cap_pages >> c.min_order)) for c in classes], dtype=np.int64
    )
    u = rng.random((n_steps, 4))
    op, obj, order, cls = _churn_kernel(
        u,
        cap_pages,
        float(band * zone_pages),
        max(1, int(ramp_steps)),
        seg_end,
        np.ascontiguousarray(seg_target * zone_pages, dtype=np.float64),
        np.array([c.hazard for c in classes], dtype=np.float64),
        np.array([c.fifo for c in classes], dtype=np.bool_),
        np.array([c.order_cdf() for c in classes], dtype=np.float64).reshape(C, 11),
        np.array([c.mean_pages for c in classes], dtype=np.float64),
        pool_cap,
    )
    return Churn(op, obj, order, cls)


# -- event parts, strings and time ----------------------------------------------------


class Vocab:
    """Strings (comm, gfp) as small integers while generating."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self._index: dict[str, int] = {}

    def __call__(self, word: str) -> int:
        if word not in self._index:
            self._index[word] = len(self.words)
            self.words.append(word)
        return self._index[word]


@dataclass
class Part:
    """A run of events with strings as Vocab indices (-1 = null)."""

    op: np.ndarray
    obj: np.ndarray
    order: np.ndarray
    migratetype: np.ndarray
    gfp: np.ndarray
    cpu: np.ndarray
    pid: np.ndarray
    comm: np.ndarray
    gap_ns: np.ndarray  # time since the previous event
    region: np.ndarray | None = None  # -1 = null
    vpn: np.ndarray | None = None


@dataclass
class Built:
    """A scenario's events before they become an Arrow table."""

    parts: list[Part]
    vocab: Vocab
    info: dict[str, Any] = field(default_factory=dict)


def render_churn(
    rng: np.random.Generator,
    classes: Sequence[EventClass],
    ch: Churn,
    vocab: Vocab,
    gap_ns: np.ndarray,
) -> Part:
    """Give churn events their migratetype, gfp, task (comm, pid, cpu) and gaps.

    Each object draws one task of its class; its free reports the same task.
    """
    n = len(ch.op)
    is_alloc = ch.op == OP_ALLOC
    alloc_step = np.flatnonzero(is_alloc)
    n_obj = len(alloc_step)
    obj_cls = ch.cls[alloc_step].astype(np.int64)
    tasks = [t for c in classes for t in c.tasks]
    t_comm = np.array([vocab(t.comm) for t in tasks], dtype=np.int32)
    t_pid = np.array([t.pid for t in tasks], dtype=np.int64)
    t_cpu = np.array([t.cpu for t in tasks], dtype=np.int16)
    t_job = np.array([t.job_steps for t in tasks], dtype=np.int64)
    t_stride = np.array([t.pid_stride for t in tasks], dtype=np.int64)
    u_task = rng.random(n_obj)
    obj_task = np.zeros(n_obj, dtype=np.int64)
    first = 0
    for ci, c in enumerate(classes):
        w = np.array([t.weight for t in c.tasks], dtype=np.float64)
        cdf = np.cumsum(w / w.sum())
        sel = obj_cls == ci
        pick = np.minimum(np.searchsorted(cdf, u_task[sel], side="right"), len(c.tasks) - 1)
        obj_task[sel] = first + pick
        first += len(c.tasks)
    job = np.where(t_job[obj_task] > 0, alloc_step // np.maximum(t_job[obj_task], 1), 0)
    obj_pid = t_pid[obj_task] + job * t_stride[obj_task]
    ev_task = obj_task[ch.obj]
    cpu = t_cpu[ev_task]
    anycpu = cpu < 0
    drawn = rng.integers(0, NCPUS, n, dtype=np.int16)
    cpu = np.where(anycpu, drawn, cpu).astype(np.int16)
    gfp0 = np.array([vocab(c.gfp) for c in classes], dtype=np.int32)
    gfpc = np.array([vocab(c.gfp_compound or c.gfp) for c in classes], dtype=np.int32)
    cls = ch.cls.astype(np.int64)
    gfp = np.where(ch.order > 0, gfpc[cls], gfp0[cls])
    gfp = np.where(is_alloc, gfp, -1).astype(np.int32)
    mt = np.array([c.migratetype for c in classes], dtype=np.int8)[cls]
    return Part(
        op=ch.op.astype(np.int8),
        obj=ch.obj.astype(np.int64),
        order=ch.order.astype(np.int8),
        migratetype=mt,
        gfp=gfp,
        cpu=cpu,
        pid=obj_pid[ch.obj].astype(np.int32),
        comm=t_comm[ev_task],
        gap_ns=gap_ns,
    )


def simple_part(
    rng: np.random.Generator,
    vocab: Vocab,
    op: np.ndarray,
    obj: np.ndarray,
    order: np.ndarray | int,
    migratetype: int,
    gfp: str,
    comm: str,
    pid: int,
    gap_ns: np.ndarray,
) -> Part:
    """Events of one task and one class (gfp on allocations only, any cpu)."""
    n = len(op)
    order_a = np.broadcast_to(np.asarray(order, dtype=np.int8), (n,)).copy()
    return Part(
        op=op.astype(np.int8),
        obj=obj.astype(np.int64),
        order=order_a,
        migratetype=np.full(n, migratetype, dtype=np.int8),
        gfp=np.where(op == OP_ALLOC, vocab(gfp), -1).astype(np.int32),
        cpu=rng.integers(0, NCPUS, n, dtype=np.int16),
        pid=np.full(n, pid, dtype=np.int32),
        comm=np.full(n, vocab(comm), dtype=np.int32),
        gap_ns=gap_ns,
    )


def segment_gaps(
    rng: np.random.Generator,
    seg_len: np.ndarray,
    mean_ns: np.ndarray | float,
    lead_ns: np.ndarray | None = None,
) -> np.ndarray:
    """Gaps (ns) before each event: exponential with the segment's mean, plus the
    segment's lead gap before its first event."""
    seg_len = np.asarray(seg_len, dtype=np.int64)
    n = int(seg_len.sum())
    mean = np.broadcast_to(np.asarray(mean_ns, dtype=np.float64), seg_len.shape)
    gaps = rng.exponential(1.0, n) * np.repeat(mean, seg_len)
    if lead_ns is not None:
        starts = np.cumsum(seg_len) - seg_len
        ok = seg_len > 0
        np.add.at(gaps, starts[ok], np.asarray(lead_ns, dtype=np.float64)[ok])
    return np.rint(gaps).astype(np.int64)


def split_steps(rng: np.random.Generator, n: int, k: int, shape: float = 2.0) -> np.ndarray:
    """``n`` steps cut into ``k`` random segment lengths (gamma-distributed, sum n)."""
    w = rng.gamma(shape, size=k)
    edges = np.rint(np.cumsum(w) / w.sum() * n).astype(np.int64)
    edges[-1] = n
    return np.diff(np.concatenate([[0], edges]))


def phase_targets(rng: np.random.Generator, classes: Sequence[EventClass], k: int) -> np.ndarray:
    """Target shares (k phases x classes): ``target``, or drawn from ``vary``."""
    seg_target = np.array([[c.target for c in classes]] * k, dtype=np.float64)
    for i, c in enumerate(classes):
        if c.vary is not None:
            seg_target[:, i] = rng.uniform(c.vary[0], c.vary[1], k)
    return seg_target


def phased_churn(
    rng: np.random.Generator,
    classes: Sequence[EventClass],
    n: int,
    zone_pages: int,
    *,
    cap: float,
    phase_steps: int,
) -> Churn:
    """Churn in phases of about ``phase_steps`` steps with their own targets (``vary``)."""
    k = max(2, round(n / phase_steps))
    seg_len = split_steps(rng, n, k)
    seg_target = phase_targets(rng, classes, k)
    return churn(
        rng, classes, n, zone_pages, cap=cap, seg_len=seg_len, seg_target=seg_target,
        ramp_steps=_ramp(n, fill_objects(classes, zone_pages)),
    )  # fmt: skip


def to_table(built: Built, t0_ns: int = 0) -> pa.Table:
    """The canonical event table (SPEC-trace.md columns) of a built scenario."""
    parts = built.parts
    cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
    op = cat("op")
    n = len(op)
    ts = t0_ns + np.cumsum(cat("gap_ns"))
    words = pa.array(built.vocab.words or [""], type=pa.string())

    def strings(idx: np.ndarray) -> pa.Array:
        mask = idx < 0
        return pa.DictionaryArray.from_arrays(
            pa.array(np.where(mask, 0, idx).astype(np.int32), mask=mask), words
        )

    def opt(name: str) -> pa.Array:
        if all(getattr(p, name) is None for p in parts):
            return pa.nulls(n, pa.int64())
        vals = np.concatenate(
            [
                getattr(p, name) if getattr(p, name) is not None else np.full(len(p.op), -1)
                for p in parts
            ]
        ).astype(np.int64)
        return pa.array(vals, mask=vals < 0)

    comm = strings(cat("comm"))
    return pa.table(
        {
            "seq": pa.array(np.arange(n, dtype=np.int64)),
            "ts_ns": pa.array(ts.astype(np.int64)),
            "op": pa.DictionaryArray.from_arrays(pa.array(op.astype(np.int8)), OP_DICTIONARY),
            "obj": pa.array(cat("obj").astype(np.int64)),
            "offset": pa.array(np.zeros(n, dtype=np.int32)),
            "order": pa.array(cat("order").astype(np.int8)),
            "migratetype": pa.array(cat("migratetype").astype(np.int8)),
            "gfp": strings(cat("gfp")).cast(pa.string()),
            "pfn": pa.nulls(n, pa.int64()),
            "cpu": pa.array(cat("cpu").astype(np.int16)),
            "pid": pa.array(cat("pid").astype(np.int32)),
            "comm": comm.cast(COMM_TYPE) if comm.type != COMM_TYPE else comm,
            "region": opt("region"),
            "vpn": opt("vpn"),
            "movable": pa.nulls(n, pa.bool_()),
            "failed": pa.array(np.zeros(n, np.bool_)),  # a synthetic kernel fails nothing
        },
        schema=pa.schema(
            [
                ("seq", pa.int64()),
                ("ts_ns", pa.int64()),
                ("op", OP_TYPE),
                ("obj", pa.int64()),
                ("offset", pa.int32()),
                ("order", pa.int8()),
                ("migratetype", pa.int8()),
                ("gfp", pa.string()),
                ("pfn", pa.int64()),
                ("cpu", pa.int16()),
                ("pid", pa.int32()),
                ("comm", COMM_TYPE),
                ("region", pa.int64()),
                ("vpn", pa.int64()),
                ("movable", pa.bool_()),
                ("failed", pa.bool_()),
            ]
        ),
    )


# -- tasks and gfp strings shared by scenarios ---------------------------------------

GFP_ANON = "GFP_HIGHUSER_MOVABLE"
GFP_PAGECACHE = "GFP_HIGHUSER_MOVABLE|__GFP_NOWARN|__GFP_NORETRY"
GFP_PAGECACHE_FOLIO = "GFP_HIGHUSER_MOVABLE|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP"
GFP_KERNEL = "GFP_KERNEL"
GFP_SLAB_HIGH = "GFP_KERNEL|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP"
GFP_PGTABLE = "GFP_KERNEL_ACCOUNT|__GFP_ZERO"
GFP_RECLAIMABLE = "GFP_KERNEL|__GFP_RECLAIMABLE"
GFP_RECLAIMABLE_HIGH = "GFP_KERNEL|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_RECLAIMABLE"
GFP_NOFS_RECLAIMABLE = "GFP_NOFS|__GFP_RECLAIMABLE"
GFP_NOFS_RECLAIMABLE_HIGH = "GFP_NOFS|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_RECLAIMABLE"
GFP_ATOMIC_FRAG = "GFP_ATOMIC|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_NOMEMALLOC"
GFP_THP = "GFP_TRANSHUGE"
GFP_HIGHALLOC = "GFP_TRANSHUGE|__GFP_THISNODE"
GFP_GPU = "GFP_HIGHUSER|__GFP_ZERO"
GFP_GPU_HIGH = "GFP_HIGHUSER|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_ZERO"
GFP_ZRAM = "GFP_NOIO|__GFP_HIGHMEM|__GFP_NOWARN"

KWORKERS = (
    Task("kworker/0:1", 48, 1.0, cpu=0),
    Task("kworker/1:1", 53, 1.0, cpu=1),
    Task("kworker/u4:2", 71, 1.0),
)
KSWAPD = Task("kswapd0", 74)
JOB = 4000  # churn steps per compiler process


def _compilers(job: int = JOB) -> tuple[Task, ...]:
    """make -j2: sh -> cc1 -> as per translation unit, ld now and then."""
    return (
        Task("cc1", 20001, 0.70, job_steps=job, pid_stride=4),
        Task("as", 20002, 0.15, job_steps=job, pid_stride=4),
        Task("sh", 20000, 0.05, job_steps=job, pid_stride=4),
        Task("ld", 20003, 0.05, job_steps=job * 8, pid_stride=32),
        Task("make", 19873, 0.05),
    )


def kernel_build_classes() -> tuple[EventClass, ...]:
    """The kernel-build mix (also phase 1 of stress-highalloc): 0.82-0.96 of the zone."""
    cc = _compilers()
    return (
        EventClass(
            "anon", MIGRATE_MOVABLE, {0: 1.0}, GFP_ANON, cc, target=0.46, hazard=30.0,
            vary=(0.32, 0.46),
        ),
        EventClass(
            "pagecache", MIGRATE_MOVABLE, {0: 1.0}, GFP_PAGECACHE, cc, target=0.41, hazard=1.0,
            fifo=True,
        ),
        EventClass(
            "slab", MIGRATE_UNMOVABLE, {0: 0.6, 1: 0.2, 2: 0.1, 3: 0.1}, GFP_KERNEL,
            (cc[0], *KWORKERS, cc[4]), target=0.05, hazard=0.05, gfp_compound=GFP_SLAB_HIGH,
        ),
        EventClass(
            "pgtable", MIGRATE_UNMOVABLE, {0: 1.0}, GFP_PGTABLE, cc, target=0.01, hazard=30.0
        ),
        EventClass(
            "dcache", MIGRATE_RECLAIMABLE, {0: 0.7, 1: 0.3}, GFP_RECLAIMABLE,
            (cc[0], cc[2], cc[4]), target=0.03, hazard=0.3, gfp_compound=GFP_RECLAIMABLE_HIGH,
        ),
    )  # fmt: skip


# -- scenarios -------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """A named scenario: defaults, the event minimum for a zone, and its builder."""

    name: str
    summary: str
    zone_pages: int  # default zone (pages)
    events: int  # default events at the default zone (scaled with the zone)
    min_events: Callable[[int], int]
    build: Callable[[np.random.Generator, int, int], Built]
    auto_events: Callable[[int], int] | None = None  # events follow from the zone

    def default_events(self, zone_pages: int) -> int:
        """Default --events for a zone: the default scaled with the zone, at least the
        scenario's minimum and at most MAX_EVENTS (unless the minimum is more)."""
        if self.auto_events is not None:
            return self.auto_events(zone_pages)
        scaled = min(round(self.events * zone_pages / self.zone_pages), MAX_EVENTS)
        return max(self.min_events(zone_pages), scaled)


def _ramp(n: int, n_fill: float, frac: float = 0.3) -> int:
    """Ramp length (steps): ``frac`` of the trace, at least 1.25x the fill."""
    return int(max(frac * n, 1.25 * n_fill))


def _churn_min(classes: Sequence[EventClass], scale: float = 1.0) -> Callable[[int], int]:
    """At least 2.5x the objects that fill the zone: the ramp ends by mid-trace."""
    return lambda p: max(MIN_EVENTS, math.ceil(2.5 * fill_objects(classes, p, scale)))


def build_kernel_build(rng: np.random.Generator, n: int, zone_pages: int) -> Built:
    """kernel-build: phases of about 25k events; 4 us mean between events."""
    classes = kernel_build_classes()
    ch = phased_churn(rng, classes, n, zone_pages, cap=0.97, phase_steps=25_000)
    vocab = Vocab()
    gaps = segment_gaps(rng, np.array([n]), 4_000.0)
    return Built([render_churn(rng, classes, ch, vocab, gaps)], vocab)


def file_server_classes() -> tuple[EventClass, ...]:
    """The file-server mix: page cache and fs slab freed oldest first (LRU)."""
    nfsd = (*(Task("nfsd", 1301 + i, 1.0) for i in range(4)), Task("smbd", 1550, 1.0))
    soft = (Task("ksoftirqd/0", 14, 1.0, cpu=0), Task("ksoftirqd/1", 22, 1.0, cpu=1))
    return (
        EventClass(
            "pagecache", MIGRATE_MOVABLE, {0: 0.9, 2: 0.1}, GFP_PAGECACHE, nfsd, target=0.62,
            hazard=1.0, fifo=True, gfp_compound=GFP_PAGECACHE_FOLIO, vary=(0.50, 0.62),
        ),
        EventClass(
            "fs-slab", MIGRATE_RECLAIMABLE, {0: 0.5, 1: 0.3, 2: 0.15, 3: 0.05},
            GFP_NOFS_RECLAIMABLE, (*nfsd, KSWAPD), target=0.28, hazard=0.8, fifo=True,
            gfp_compound=GFP_NOFS_RECLAIMABLE_HIGH,
        ),
        EventClass(
            "net-tx", MIGRATE_UNMOVABLE, {1: 0.3, 2: 0.3, 3: 0.4}, GFP_SLAB_HIGH, nfsd,
            target=0.01, hazard=100.0,
        ),
        EventClass(
            "net-rx", MIGRATE_UNMOVABLE, {1: 0.3, 2: 0.3, 3: 0.4}, GFP_ATOMIC_FRAG, soft,
            target=0.01, hazard=100.0,
        ),
        EventClass(
            "kernel", MIGRATE_UNMOVABLE, {0: 1.0}, GFP_KERNEL, KWORKERS, target=0.05, hazard=0.1
        ),
    )  # fmt: skip


def build_file_server(rng: np.random.Generator, n: int, zone_pages: int) -> Built:
    """file-server: phases of about 25k events; 8 us mean between events."""
    classes = file_server_classes()
    ch = phased_churn(rng, classes, n, zone_pages, cap=0.97, phase_steps=25_000)
    vocab = Vocab()
    gaps = segment_gaps(rng, np.array([n]), 8_000.0)
    return Built([render_churn(rng, classes, ch, vocab, gaps)], vocab)


def thp_classes() -> tuple[EventClass, ...]:
    """The thp mix: order-9 GFP_TRANSHUGE faults over order-0/1 background churn."""
    big = (Task("java", 4242, 0.6), Task("qemu-system-x86", 5150, 0.4))
    small = (Task("java", 4242, 0.4), Task("bash", 3101, 0.2), Task("python3", 3377, 0.4))
    return (
        EventClass(
            "thp", MIGRATE_MOVABLE, {9: 1.0}, GFP_THP, big, target=0.54, hazard=20.0,
            vary=(0.38, 0.54),
        ),
        EventClass("anon", MIGRATE_MOVABLE, {0: 1.0}, GFP_ANON, small, target=0.33, hazard=5.0),
        EventClass(
            "kernel", MIGRATE_UNMOVABLE, {0: 0.85, 1: 0.15}, GFP_KERNEL,
            (*KWORKERS, Task("java", 4242, 1.0)), target=0.07, hazard=1.0,
            gfp_compound=GFP_SLAB_HIGH,
        ),
    )  # fmt: skip


def build_thp(rng: np.random.Generator, n: int, zone_pages: int) -> Built:
    """thp: phases of about 25k events; 10 us mean between events."""
    classes = thp_classes()
    ch = phased_churn(rng, classes, n, zone_pages, cap=0.96, phase_steps=25_000)
    vocab = Vocab()
    gaps = segment_gaps(rng, np.array([n]), 10_000.0)
    return Built([render_churn(rng, classes, ch, vocab, gaps)], vocab)


NET_RX_BURST, NET_RX_CALM = 0.04, 0.002  # net-rx buffer share of the zone


def net_rx_classes() -> tuple[EventClass, ...]:
    """The net-rx mix: order-3 atomic receive buffers (hazard 1000: freed within a few
    hundred events) over movable nginx anon and page cache and unmovable slab."""
    rx = (
        Task("ksoftirqd/0", 14, 0.3, cpu=0),
        Task("ksoftirqd/1", 22, 0.3, cpu=1),
        Task("swapper/0", 0, 0.2, cpu=0),
        Task("swapper/1", 0, 0.2, cpu=1),
    )
    nginx = (Task("nginx", 1201, 0.5), Task("nginx", 1202, 0.5))
    return (
        EventClass(
            "rx-buffer", MIGRATE_UNMOVABLE, {3: 1.0}, GFP_ATOMIC_FRAG, rx, target=NET_RX_BURST,
            hazard=1000.0,
        ),
        EventClass(
            "anon", MIGRATE_MOVABLE, {0: 1.0}, GFP_ANON, nginx, target=0.50, hazard=2.0,
            vary=(0.38, 0.50),
        ),
        EventClass(
            "pagecache", MIGRATE_MOVABLE, {0: 1.0}, GFP_PAGECACHE, nginx, target=0.35,
            hazard=0.5, fifo=True,
        ),
        EventClass(
            "slab", MIGRATE_UNMOVABLE, {0: 0.7, 1: 0.2, 2: 0.1}, GFP_KERNEL,
            (*KWORKERS, *nginx), target=0.05, hazard=0.2, gfp_compound=GFP_SLAB_HIGH,
        ),
    )  # fmt: skip


def build_net_rx(rng: np.random.Generator, n: int, zone_pages: int) -> Built:
    """net-rx: calm (65% of the events, 20 us apart) and burst segments (1 us apart)
    alternate, one pair per 20k events."""
    classes = net_rx_classes()
    k = max(2, n // 20_000)  # calm/burst pairs
    calm = split_steps(rng, round(n * 0.65), k)
    burst = split_steps(rng, n - int(calm.sum()), k)
    seg_len = np.column_stack([calm, burst]).ravel()
    seg_target = np.repeat(phase_targets(rng, classes, k), 2, axis=0)
    seg_target[0::2, 0] = NET_RX_CALM
    ch = churn(
        rng, classes, n, zone_pages, cap=0.97, seg_len=seg_len, seg_target=seg_target,
        ramp_steps=_ramp(n, fill_objects(classes, zone_pages)),
    )  # fmt: skip
    vocab = Vocab()
    mean = np.tile([20_000.0, 1_000.0], k)  # calm 20 us, burst 1 us between events
    gaps = segment_gaps(rng, seg_len, mean)
    return Built([render_churn(rng, classes, ch, vocab, gaps)], vocab, {"bursts": k})


EMBEDDED_SPAN_NS = 3 * 86_400 * NS_PER_S  # about three days of trace time


def embedded_classes() -> tuple[EventClass, ...]:
    """The embedded-gpu-zram mix (seed 002): graphics and zram pages are unmovable."""
    gpu = (Task("gpu-driver", 188, 0.4), Task("surfaceflinger", 412, 0.6))
    zram = (Task("kswapd0", 74, 0.7), Task("zram", 203, 0.3))
    apps = (
        Task("ndroid.systemui", 1021, 0.3),
        Task("droid.launcher3", 1377, 0.2),
        Task("RenderThread", 1390, 0.2),
        Task("chromium", 2210, 0.3),
    )
    return (
        EventClass(
            "graphics", MIGRATE_UNMOVABLE, {0: 0.55, 1: 0.1, 2: 0.1, 3: 0.05, 4: 0.2}, GFP_GPU,
            gpu, target=0.37, hazard=0.5, gfp_compound=GFP_GPU_HIGH, vary=(0.33, 0.37),
        ),
        EventClass("zram", MIGRATE_UNMOVABLE, {0: 1.0}, GFP_ZRAM, zram, target=0.25, hazard=1.0),
        EventClass(
            "apps", MIGRATE_MOVABLE, {0: 1.0}, GFP_ANON, apps, target=0.29, hazard=5.0,
            vary=(0.10, 0.29),
        ),
        EventClass(
            "kernel", MIGRATE_UNMOVABLE, {0: 0.9, 1: 0.1}, GFP_KERNEL, KWORKERS, target=0.05,
            hazard=0.2, gfp_compound=GFP_SLAB_HIGH,
        ),
        EventClass(
            "order3", MIGRATE_UNMOVABLE, {3: 1.0}, GFP_SLAB_HIGH,
            (Task("kworker/u4:2", 71, 0.5), Task("wpa_supplicant", 655, 0.5)), target=0.003,
            hazard=20.0,
        ),
    )  # fmt: skip


def build_embedded(rng: np.random.Generator, n: int, zone_pages: int) -> Built:
    """embedded-gpu-zram: 8-72 bursts (50 us between events) separated by idle gaps
    (lognormal) that bring the trace to about three days."""
    classes = embedded_classes()
    k = int(np.clip(n // 5_000, 8, 72))  # bursts of activity (about hourly)
    seg_len = split_steps(rng, n, k)
    seg_target = phase_targets(rng, classes, k)
    ch = churn(
        rng, classes, n, zone_pages, cap=0.97, seg_len=seg_len, seg_target=seg_target,
        ramp_steps=_ramp(n, fill_objects(classes, zone_pages)),
    )  # fmt: skip
    vocab = Vocab()
    mean_ns = 50_000.0  # 50 us between events inside a burst
    idle = rng.lognormal(0.0, 1.0, k)
    idle[0] = 0.0
    idle_total = max(0.0, EMBEDDED_SPAN_NS - mean_ns * n)
    lead = idle / idle.sum() * idle_total
    gaps = segment_gaps(rng, seg_len, mean_ns, lead)
    return Built([render_churn(rng, classes, ch, vocab, gaps)], vocab, {"bursts": k})


# stress-highalloc: the kernel-build mix, then the build exits, then order-9 requests.
HIGHALLOC_SHARE = 0.90
HIGHALLOC_FREED = ("anon", "pagecache", "pgtable")  # freed when the build stops


def _highalloc_requests(zone_pages: int) -> int:
    """Order-9 requests of phase 3: 90% of the zone, leaving room for the
    long-lived unmovable/reclaimable pages (kernel-build targets 0.08, cap 0.10)."""
    return min(
        round(HIGHALLOC_SHARE * zone_pages / PAGEBLOCK_PAGES),
        (zone_pages - int(0.10 * zone_pages) - 1) // PAGEBLOCK_PAGES,
    )


def _highalloc_min(zone_pages: int) -> int:
    classes = kernel_build_classes()
    return max(MIN_EVENTS, math.ceil(3.0 * fill_objects(classes, zone_pages)))


def build_stress_highalloc(rng: np.random.Generator, n: int, zone_pages: int) -> Built:
    """stress-highalloc: phase 1 churn, phase 2 frees after 2 s, phase 3 requests after
    5 s, 10 ms apart. Exactly ``n`` events: phase 1 stops where its events plus the
    frees of phase 2 plus the requests of phase 3 make ``n``."""
    # Phase 1: the kernel-build mix with every varying share at its middle (90% full).
    classes = tuple(
        c if c.vary is None else replace(c, target=sum(c.vary) / 2, vary=None)
        for c in kernel_build_classes()
    )
    n3 = _highalloc_requests(zone_pages)
    k1 = n - n3  # phase 1 runs at most this long (phase 2 takes the rest)
    ch = churn(
        rng, classes, k1, zone_pages, cap=0.95,
        ramp_steps=_ramp(k1, fill_objects(classes, zone_pages), frac=0.4),
    )  # fmt: skip
    freed_cls = np.array([c.name in HIGHALLOC_FREED for c in classes])
    fc = freed_cls[ch.cls]
    delta = np.where(fc, np.where(ch.op == OP_ALLOC, 1, -1), 0)
    f = np.arange(1, k1 + 1) + np.cumsum(delta)  # events if phase 1 stopped after step t
    b1 = int(np.searchsorted(f, n - n3, side="right"))  # longest prefix that fits
    short = (n - n3) - (int(f[b1 - 1]) if b1 > 0 else 0)
    ch1 = Churn(ch.op[:b1], ch.obj[:b1], ch.order[:b1], ch.cls[:b1])
    vocab = Vocab()
    gaps1 = segment_gaps(rng, np.array([b1]), 4_000.0)
    part1 = render_churn(rng, classes, ch1, vocab, gaps1)
    # Phase 2: every live object of the freed classes, in random order (processes
    # exiting); one more long-lived object when the budget is one event longer.
    alive = _live_objects(ch1)
    alloc_at = np.flatnonzero(ch1.op == OP_ALLOC)
    alive_cls = ch1.cls[alloc_at[alive]]
    victims = alive[freed_cls[alive_cls]]
    if short:
        others = alive[~freed_cls[alive_cls]]
        victims = np.concatenate([victims, rng.choice(others, size=short, replace=False)])
    victims = rng.permutation(victims)
    obj_rows = alloc_at[victims]
    # The classes kept (targets 0.08 of the zone) leave room for phase 3.
    held2 = int((np.int64(1) << ch1.order[alloc_at[alive]].astype(np.int64)).sum()) - int(
        (np.int64(1) << ch1.order[obj_rows].astype(np.int64)).sum()
    )
    assert held2 + n3 * PAGEBLOCK_PAGES < zone_pages, (held2, n3, zone_pages)
    sub = Churn(
        np.full(len(victims), OP_FREE, dtype=np.int8),
        victims.astype(np.int64),
        ch1.order[obj_rows],
        ch1.cls[obj_rows],
    )
    # Render phase 2 with the phase-1 tasks: the objects keep their comm/pid.
    part2 = _frees_like(part1, ch1, sub)
    part2.gap_ns = segment_gaps(rng, np.array([len(victims)]), 300.0, np.array([2 * NS_PER_S]))
    # Phase 3: the order-9 requests (an insmod'ed test module), none freed.
    first = int(ch1.obj[ch1.op == OP_ALLOC].max()) + 1 if b1 else 0
    gaps3 = segment_gaps(rng, np.array([n3]), 10_000_000.0, np.array([5 * NS_PER_S]))
    part3 = simple_part(
        rng, vocab, np.zeros(n3, dtype=np.int8), np.arange(first, first + n3), 9,
        MIGRATE_MOVABLE, GFP_HIGHALLOC, "insmod", 31337, gaps3,
    )  # fmt: skip
    info = {"phase1_events": b1, "phase2_frees": len(victims), "phase3_requests": n3}
    return Built([part1, part2, part3], vocab, info)


def _live_objects(ch: Churn) -> np.ndarray:
    """Objects (ids) allocated and not freed by the end of ``ch``."""
    n_obj = int((ch.op == OP_ALLOC).sum())
    live = np.ones(n_obj, dtype=bool)
    live[ch.obj[ch.op == OP_FREE]] = False
    return np.flatnonzero(live)


def _frees_like(part: Part, ch: Churn, frees: Churn) -> Part:
    """Free events for objects of ``ch`` (rendered as ``part``), with their tasks."""
    alloc_rows = np.flatnonzero(ch.op == OP_ALLOC)
    rows = alloc_rows[frees.obj]
    return Part(
        op=frees.op,
        obj=frees.obj,
        order=part.order[rows],
        migratetype=part.migratetype[rows],
        gfp=np.full(len(rows), -1, dtype=np.int32),
        cpu=part.cpu[rows],
        pid=part.pid[rows],
        comm=part.comm[rows],
        gap_ns=np.zeros(len(rows), dtype=np.int64),
    )


# fragmenter: fill, free 3/4 of every pageblock-sized group, then idle.
FRAG_KEEP = 128  # pages kept per 512
FRAG_IDLE_NS = 10 * NS_PER_S
FRAG_TAIL_PAIRS = 5


def _frag_fill(zone_pages: int) -> int:
    """Pages the fragmenter allocates: the zone minus a reserve of about 1%."""
    return zone_pages - max(16, zone_pages // 100)


def _frag_frees(fill: int) -> int:
    full, rest = divmod(fill, PAGEBLOCK_PAGES)
    return full * (PAGEBLOCK_PAGES - FRAG_KEEP) + rest * 3 // 4


def _frag_events(zone_pages: int) -> int:
    fill = _frag_fill(zone_pages)
    return fill + _frag_frees(fill) + 2 * FRAG_TAIL_PAIRS


def build_fragmenter(rng: np.random.Generator, n: int, zone_pages: int) -> Built:
    """fragmenter: fill (0.5 us apart), free (0.2 us apart), 10 s idle, tail pairs."""
    fill = _frag_fill(zone_pages)
    vocab = Vocab()
    comm, pid = "fragmenter", 4242
    # Phase 1: every page, order 0, in ascending order (obj i is the i-th page).
    gaps1 = segment_gaps(rng, np.array([fill]), 500.0)
    p1 = simple_part(
        rng, vocab, np.zeros(fill, np.int8), np.arange(fill), 0, MIGRATE_MOVABLE, GFP_ANON,
        comm, pid, gaps1,
    )  # fmt: skip
    # Phase 2: in each group of 512 consecutive objects keep 128 chosen at random.
    full, rest = divmod(fill, PAGEBLOCK_PAGES)
    keys = rng.random((full, PAGEBLOCK_PAGES))
    rank = np.argsort(np.argsort(keys, axis=1, kind="stable"), axis=1, kind="stable")
    freed = (np.arange(full * PAGEBLOCK_PAGES).reshape(full, PAGEBLOCK_PAGES))[rank >= FRAG_KEEP]
    if rest:
        tail = full * PAGEBLOCK_PAGES + rng.permutation(rest)[: rest * 3 // 4]
        freed = np.concatenate([freed, np.sort(tail)])
    freed = rng.permutation(freed)
    gaps2 = segment_gaps(rng, np.array([len(freed)]), 200.0, np.array([1_000_000.0]))
    p2 = simple_part(
        rng, vocab, np.ones(len(freed), np.int8), freed, 0, MIGRATE_MOVABLE, GFP_ANON, comm,
        pid, gaps2,
    )  # fmt: skip
    # Phase 3: idle, then alloc/free pairs 1 s apart (the events budget beyond the
    # minimum goes here; an odd extra event is an allocation left live).
    extra = n - (fill + len(freed))
    pairs = max(FRAG_TAIL_PAIRS, extra // 2)
    odd = extra - 2 * pairs if extra > 2 * pairs else 0
    ids = fill + np.arange(pairs + odd)
    op3 = np.concatenate([np.tile([OP_ALLOC, OP_FREE], pairs), np.zeros(odd, np.int64)])
    obj3 = np.concatenate([np.repeat(ids[:pairs], 2), ids[pairs:]])
    gap3 = np.tile([NS_PER_S, 10_000], pairs + odd)[: len(op3)].astype(np.int64)
    gap3[0] = FRAG_IDLE_NS
    p3 = simple_part(
        rng, vocab, op3.astype(np.int8), obj3, 0, MIGRATE_MOVABLE, GFP_ANON, comm, pid, gap3
    )
    info = {"fill_pages": fill, "freed_pages": len(freed), "idle_ns": FRAG_IDLE_NS}
    return Built([p1, p2, p3], vocab, info)


# vma: regions (VMAs) faulted in vpn order, interleaved; unmapped and refaulted.
VMA_SHARE = 0.75
VMA_PROCS = ("postgres", "java", "redis-server", "python3", "node", "mysqld", "memcached", "ruby")


def _vma_sizes(rng: np.random.Generator, zone_pages: int) -> np.ndarray:
    r = int(np.clip(round(math.sqrt(zone_pages) / 4), 8, 256))
    w = rng.lognormal(0.0, 1.0, r)
    total = int(VMA_SHARE * zone_pages)
    sizes = np.maximum(16, np.floor(w / w.sum() * (total - 16 * r)).astype(np.int64) + 16)
    return sizes


def _vma_min(zone_pages: int) -> int:
    return max(MIN_EVENTS, math.ceil(1.2 * VMA_SHARE * zone_pages))


def _interleave(
    rng: np.random.Generator, regions: np.ndarray, sizes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Faults of whole regions, interleaved at random, each in vpn order:
    (region, vpn) per fault."""
    lab = rng.permutation(np.repeat(regions, sizes))
    order = np.argsort(lab, kind="stable")
    vpn = np.empty(len(lab), dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(np.bincount(lab[order])[np.unique(lab)])])
    within = np.arange(len(lab)) - np.repeat(starts[:-1], np.diff(starts))
    vpn[order] = within
    return lab, vpn


def build_vma(rng: np.random.Generator, n: int, zone_pages: int) -> Built:
    """vma: about sqrt(zone pages)/4 regions (8-256) of lognormal sizes (at least 16
    pages) holding 75% of the zone, faulted 1 us apart; then cycles that unmap 1-3
    regions (0.1 us apart, ascending vpn) and refault them interleaved, until ``n``
    events (the last cycle is cut short)."""
    sizes = _vma_sizes(rng, zone_pages)
    R = len(sizes)
    n_procs = int(np.clip(R // 8, 2, len(VMA_PROCS)))
    proc_of = rng.integers(0, n_procs, R)
    ops: list[np.ndarray] = []
    objs: list[np.ndarray] = []
    regs: list[np.ndarray] = []
    vpns: list[np.ndarray] = []
    gaps: list[np.ndarray] = []
    # live[r]: the objects of region r by vpn (-1: not mapped)
    live = [np.full(s, -1, dtype=np.int64) for s in sizes]
    next_obj = 0
    total = 0

    def faults(regions: np.ndarray, lead_ns: float) -> None:
        nonlocal next_obj, total
        lab, vpn = _interleave(rng, regions, sizes[regions])
        ids = next_obj + np.arange(len(lab))
        next_obj += len(lab)
        for r in regions:
            m = lab == r
            live[r][vpn[m]] = ids[m]
        ops.append(np.zeros(len(lab), np.int8))
        objs.append(ids)
        regs.append(lab)
        vpns.append(vpn)
        g = segment_gaps(rng, np.array([len(lab)]), 1_000.0, np.array([lead_ns]))
        gaps.append(g)
        total += len(lab)

    def unmap(regions: np.ndarray, lead_ns: float) -> None:
        nonlocal total
        for i, r in enumerate(regions):
            mapped = np.flatnonzero(live[r] >= 0)
            ops.append(np.ones(len(mapped), np.int8))
            objs.append(live[r][mapped])
            regs.append(np.full(len(mapped), r, dtype=np.int64))
            vpns.append(mapped)
            g = segment_gaps(rng, np.array([len(mapped)]), 100.0, np.array([lead_ns if i else 0]))
            gaps.append(g)
            live[r][:] = -1
            total += len(mapped)

    faults(np.arange(R), 0.0)
    while total < n:
        k = int(rng.integers(1, 4))
        chosen = rng.choice(R, size=min(k, R), replace=False)
        unmap(chosen, float(rng.exponential(5_000_000.0)))
        faults(chosen, float(rng.exponential(1_000_000.0)))
    op = np.concatenate(ops)[:n]
    vocab = Vocab()
    region = np.concatenate(regs)[:n]
    procs = [Task(VMA_PROCS[j], 2000 + 37 * j) for j in range(n_procs)]
    comm_ids = np.array([vocab(t.comm) for t in procs], dtype=np.int32)
    pids = np.array([t.pid for t in procs], dtype=np.int32)
    part = Part(
        op=op,
        obj=np.concatenate(objs)[:n],
        order=np.zeros(n, np.int8),
        migratetype=np.full(n, MIGRATE_MOVABLE, np.int8),
        gfp=np.where(op == OP_ALLOC, vocab(GFP_ANON), -1).astype(np.int32),
        cpu=rng.integers(0, NCPUS, n, dtype=np.int16),
        pid=pids[proc_of[region]],
        comm=comm_ids[proc_of[region]],
        gap_ns=np.concatenate(gaps)[:n],
        region=region,
        vpn=np.concatenate(vpns)[:n],
    )
    return Built([part], vocab, {"regions": R, "region_pages": int(sizes.sum())})


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "kernel-build",
            "make -j2: short-lived movable order-0 anon (cc1/as/ld, 32-46% of the zone by "
            "phase), long-lived movable page cache (41%, oldest freed first), long-lived "
            "unmovable slab (order 0-3, 5%), short-lived page tables (1%), reclaimable dentries "
            "(order 0-1, 3%); ramps up to 82-96% full and churns",
            65536, 500_000, _churn_min(kernel_build_classes()), build_kernel_build,
        ),
        Scenario(
            "file-server",
            "nfsd/smbd page cache (movable, order 0/2, 50-62% of the zone, oldest freed first) "
            "and reclaimable fs slab (order 0-3, 28%, oldest first), short-lived order 1-3 "
            "unmovable network buffers (2%), unmovable kernel pages (5%); 85-97% full",
            65536, 400_000, _churn_min(file_server_classes()), build_file_server,
        ),
        Scenario(
            "thp",
            "order-9 movable THP faults (GFP_TRANSHUGE, 38-54% of the zone by phase) under "
            "order-0 movable anon (33%) and order 0-1 unmovable kernel (7%) churn; 78-94% full",
            131072, 300_000, _churn_min(thp_classes()), build_thp,
        ),
        Scenario(
            "net-rx",
            "bursts of short-lived order-3 GFP_ATOMIC unmovable receive buffers (ksoftirqd/N, "
            "swapper/N; 4% of the zone in a burst, 0.2% between, lifetimes of a few hundred "
            "events) under order-0 movable (73-85%) and unmovable (5%) background churn; "
            "78-94% full",
            65536, 300_000, _churn_min(net_rx_classes()), build_net_rx,
        ),
        Scenario(
            "embedded-gpu-zram",
            "a 512 MiB phone over about 3 days: graphics buffers (unmovable order 0-4, "
            "gpu-driver/surfaceflinger) 33-37% of the zone, zram (unmovable-typed order 0, "
            "kswapd0/zram, __GFP_NOWARN) 25%, movable apps 10-29%, unmovable kernel 5%, "
            "occasional order-3 requests; bursts of activity between idle hours",
            131072, 400_000, _churn_min(embedded_classes()), build_embedded,
        ),
        Scenario(
            "stress-highalloc",
            "mmtests stress-highalloc: the kernel-build mix fills 90% of the zone; the build "
            "exits (its movable pages and page tables are freed); then order-9 movable "
            "requests (GFP_TRANSHUGE|__GFP_THISNODE, comm insmod) for 90% of the zone, "
            "10 ms apart, none freed",
            65536, 300_000, _highalloc_min, build_stress_highalloc,
        ),
        Scenario(
            "fragmenter",
            "allocate 99% of the zone as movable order-0 pages in ascending order, free 384 "
            "random pages of every 512 consecutive ones, then 10 s idle and order-0 "
            "alloc/free pairs 1 s apart (events follow from the zone)",
            262144, 0, _frag_events, build_fragmenter, auto_events=_frag_events,
        ),
        Scenario(
            "vma",
            "VMAs (region, vpn set on every event) of up to 8 processes faulted in vpn order, "
            "interleaved, 75% of the zone; whole regions unmapped and refaulted (order-0 "
            "movable anon)",
            65536, 200_000, _vma_min, build_vma,
        ),
    )
}  # fmt: skip


def check_args(
    scenario: str, seed: int, events: int | None, zone_pages: int | None
) -> tuple[Scenario, int, int]:
    """Validate the arguments (UsageError) and fill in defaults: (scenario, events, pages)."""
    sc = SCENARIOS.get(scenario)
    if sc is None:
        raise UsageError(f"unknown scenario {scenario!r}; known scenarios: {', '.join(SCENARIOS)}")
    if seed < 0:
        raise UsageError(f"--seed must be 0 or more, got {seed}")
    pages = sc.zone_pages if zone_pages is None else int(zone_pages)
    if pages % ZONE_ALIGN or not MIN_ZONE_PAGES <= pages <= MAX_ZONE_PAGES:
        raise UsageError(
            f"--zone-pages must be a multiple of {ZONE_ALIGN} from {MIN_ZONE_PAGES} to "
            f"{MAX_ZONE_PAGES} (2**26), got {pages}"
        )
    least = sc.min_events(pages)
    n = sc.default_events(pages) if events is None else int(events)
    if n < least:
        raise UsageError(
            f"{scenario} needs at least {least} events for a zone of {pages} pages, got {n} "
            "(pass more --events or a smaller --zone-pages)"
        )
    if n > MAX_EVENTS:
        raise UsageError(
            f"{scenario}: {n} events is more than the maximum of {MAX_EVENTS}"
            + (" (pass a smaller --zone-pages)" if events is None or least > MAX_EVENTS else "")
        )
    return sc, n, pages


def generate(
    scenario: str, *, seed: int = 0, events: int | None = None, zone_pages: int | None = None
) -> tuple[pa.Table, dict[str, Any]]:
    """The events of ``scenario`` (canonical columns) and the trace metadata.

    ``events`` defaults to the scenario's default scaled with the zone;
    ``zone_pages`` (a multiple of 1024 pages) to the scenario's zone. The
    metadata holds kind 'synthetic', the zone (start pfn 0, pages), the
    arguments and the peak of pages held.
    """
    sc, n, pages = check_args(scenario, seed, events, zone_pages)
    rng = np.random.Generator(np.random.PCG64(seed))
    built = sc.build(rng, n, pages)
    table = to_table(built)
    assert table.num_rows == n, (scenario, table.num_rows, n)
    meta: dict[str, Any] = {
        "kind": "synthetic",
        "format": f"synthetic scenario {scenario} (replay generate, v{GENERATOR_VERSION})",
        "scenario": scenario,
        "seed": seed,
        "events": n,
        "zone_start_pfn": 0,
        "zone_pages": pages,
        "page_size": 4096,
        "generator_version": GENERATOR_VERSION,
        "peak_pages": peak_pages(table),
        "command": f"replay generate {scenario} --seed {seed} --events {n} --zone-pages {pages}",
        **built.info,
    }
    return table, meta


def peak_pages(table: pa.Table) -> int:
    """The most pages held by live objects at any point of a stream of whole frees."""
    op = table.column("op").combine_chunks().indices.to_numpy(zero_copy_only=False)
    order = table.column("order").to_numpy().astype(np.int64)
    delta = np.where(op == OP_ALLOC, 1, -1) << order
    return int(np.cumsum(delta).max()) if len(delta) else 0
