"""Why an allocation failed (or nearly did), and what another model would have done.

``explain(store, run_id, seq)`` answers for one allocation of a run, from the
state just before it:

- ``request``: the event (order, migratetype, GFP flags and what they allow:
  direct reclaim, kswapd, compaction; the highest zone; pid, comm, cpu, time)
  and the run's outcome for it;
- ``state``: ``nr_free`` per order and per free-list type, free and pcp
  pages, the watermarks with the zone's lowmem reserve for the request and
  whether ``__zone_watermark_ok`` passes at each for this order, the unusable
  and fragmentation indexes, ``compaction_suitable``'s verdict against
  ``extfrag_threshold``, and the fragmentation score;
- ``candidates``: the aligned blocks of the request's order nearest to free,
  with their pageblocks' types, free, pcp and allocated pages by type and
  movability, and what freeing one would take (pages to migrate, pages only
  reclaim frees, or impossible: the first page nothing can move);
- ``counterfactuals``: models forked from the kernel's real state just
  before the event (``replay run --start observed --at SEQ --until
  SEQ+horizon+1``, stored as runs): the outcome of the event, pages
  migrated, scanned and evicted, and failures in the next ``horizon`` events.
  The run's own row is the run itself.

The state is the run's own: for an observed run the kernel's state rebuilt
from the capture (replay.engine.observed.fork_state), for a model's run that
model's state, replayed from the run's start to the event and not stored
(replay.engine.whatif.model_state). ``rank(store, run_id)`` lists the failed
and most at-risk allocations of a run.

Units: pfn, pages (4 KiB), order, thousandths for the indexes, percent for
the score, seq (canonical event index), ns.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from replay.analysis.metrics import (
    fragmentation_index,
    fragmentation_score_zone,
    unusable_index,
)
from replay.engine.environment import Environment, zone_environment
from replay.engine.observed import ForkState, first_fork_seq, fork_state
from replay.engine.recorded import fork_takes_and_types
from replay.engine.whatif import (
    ModelState,
    block_pages,
    captured_blocks,
    fork_of_model,
    isolated_blocks,
    live_units,
    model_state,
    prefetch_recorded,
    run,
)
from replay.errors import BadInputError, NoEventInZoneError, UsageError
from replay.models.config import RunConfig, load_model
from replay.models.internal import (
    F_MOVABLE,
    F_RECLAIM,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    MIGRATE_RECLAIMABLE,
    NR_PAGE_ORDERS,
    PAGE_ALLOC_COSTLY_ORDER,
    PAGEBLOCK_ORDER,
)
from replay.models.watermarks import zone_watermark_ok
from replay.store import Store
from replay.trace.callsites import callsites_by_seq

# the kernel's __zone_watermark_ok run as Python: an 11 x 3 loop, not worth a JIT load
watermark_ok = zone_watermark_ok.py_func

DEFAULT_MODELS = ("mobility", "mobility+pcp", "mobility+compaction",
                  "mobility+kswapd-targeted", "mobility+vcompound", "kernel")  # fmt: skip
TYPE_NAMES = ("unmovable", "movable", "reclaimable")
ZONE_NAMES = ("DMA", "DMA32", "Normal", "Movable")

# Page states of a PageView
FREE, PCP, ALLOCATED, OTHER = range(4)

# include/linux/gfp_types.h: the composite names show_gfp_flags prints, by the bits
# that matter here, and the low ___GFP_* bits of a raw mask (stable since 4.x)
_GFP_BITS = {"__GFP_DMA": 0x01, "__GFP_HIGHMEM": 0x02, "__GFP_DMA32": 0x04,
             "__GFP_MOVABLE": 0x08, "__GFP_RECLAIMABLE": 0x10, "__GFP_HIGH": 0x20,
             "__GFP_IO": 0x40, "__GFP_FS": 0x80, "__GFP_DIRECT_RECLAIM": 0x400,
             "__GFP_KSWAPD_RECLAIM": 0x800}  # fmt: skip
_RECLAIM = 0x400 | 0x800
_GFP_COMPOSITES = {
    "__GFP_RECLAIM": _RECLAIM,
    "__GFP_WAIT": 0x400,  # before 4.4
    "GFP_ATOMIC": 0x20 | 0x800,
    "GFP_NOWAIT": 0x800,
    "GFP_NOIO": _RECLAIM,
    "GFP_NOFS": _RECLAIM | 0x40,
    "GFP_KERNEL": _RECLAIM | 0x40 | 0x80,
    "GFP_KERNEL_ACCOUNT": _RECLAIM | 0x40 | 0x80,
    "GFP_USER": _RECLAIM | 0x40 | 0x80,
    "GFP_HIGHUSER": _RECLAIM | 0x40 | 0x80 | 0x02,
    "GFP_HIGHUSER_MOVABLE": _RECLAIM | 0x40 | 0x80 | 0x02 | 0x08,
    "GFP_TRANSHUGE_LIGHT": 0x40 | 0x80 | 0x02 | 0x08,
    "GFP_TRANSHUGE": 0x400 | 0x40 | 0x80 | 0x02 | 0x08,
    "GFP_DMA": 0x01,
    "GFP_DMA32": 0x04,
}


def gfp_bits(gfp: str | None) -> int | None:
    """The ___GFP_* bits (of _GFP_BITS) a printed GFP mask holds; None when unknown."""
    if gfp is None or not gfp.strip():
        return None
    text = gfp.strip().replace(" ", "")
    try:
        return int(text, 16) & 0xFFF
    except ValueError:
        pass
    bits = 0
    for name in text.split("|"):
        bits |= _GFP_COMPOSITES.get(name, _GFP_BITS.get(name, 0))
    return bits


def gfp_allows(gfp: str | None, order: int) -> dict[str, Any]:
    """What a request's GFP flags allow: direct reclaim (``__GFP_DIRECT_RECLAIM``),
    waking kswapd, direct compaction (``gfp_compaction_allowed``: __GFP_IO, and the
    slow path compacts only for order > 0 with direct reclaim), and the highest zone
    it may use (``gfp_zone``). Unknown flags allow everything, in Normal."""
    bits = gfp_bits(gfp)
    if bits is None:
        return {"direct_reclaim": True, "kswapd_reclaim": True, "compaction": order > 0,
                "highest_zone": "Normal", "known": False}  # fmt: skip
    direct = bool(bits & 0x400)
    if bits & 0x01:
        zone = "DMA"
    elif bits & 0x04:
        zone = "DMA32"
    elif bits & 0x02 and bits & 0x08:
        zone = "Movable"
    else:
        zone = "Normal"
    return {"direct_reclaim": direct, "kswapd_reclaim": bool(bits & 0x800),
            "compaction": direct and bool(bits & 0x40) and order > 0,
            "highest_zone": zone, "known": True}  # fmt: skip


@dataclass
class PageView:
    """A zone's pages at one moment (pfn from ``start_pfn``; arrays per page):
    ``state`` FREE/PCP/ALLOCATED/OTHER (OTHER: held by nothing the run names: holes,
    pcp pages the trace never names), ``free_order`` the order of the free block
    starting there (-1 elsewhere), ``mt`` the allocated page's migratetype (-1 not
    allocated), ``movable`` and ``reclaimable`` what compaction may migrate and what
    only reclaim frees; per pageblock its type. ``kernel``: the kernel's rebuilt
    state it was made from (an observed run's), which the forks start from."""

    start_pfn: int
    state: np.ndarray
    free_order: np.ndarray
    mt: np.ndarray
    movable: np.ndarray
    reclaimable: np.ndarray
    pageblock_mt: np.ndarray
    pcp_pages: int
    kernel: ForkState | None = None

    @property
    def pages(self) -> int:
        return int(self.state.shape[0])

    def nr_free_mt(self) -> np.ndarray:
        """Free blocks per order and free-list type (the pageblock's), int64[11, 3]."""
        out = np.zeros((NR_PAGE_ORDERS, MIGRATE_PCPTYPES), np.int64)
        heads = np.flatnonzero(self.free_order >= 0)
        pb = ((heads + self.start_pfn) >> PAGEBLOCK_ORDER) - (self.start_pfn >> PAGEBLOCK_ORDER)
        types = np.clip(self.pageblock_mt[pb], 0, MIGRATE_PCPTYPES - 1)
        np.add.at(out, (self.free_order[heads].astype(np.int64), types), 1)
        return out


def _page_states(fork: ForkState) -> tuple[np.ndarray, int]:
    """Each page's FREE/PCP/ALLOCATED/OTHER from a fork's starting state (free pages in
    no whole free block or pcp block: OTHER), and the pages on pcp lists."""
    state = np.where(fork.page_mt >= 0, np.int8(ALLOCATED), np.int8(OTHER))  # int8 throughout
    heads = np.flatnonzero(fork.blk >= 0)
    state[block_pages(heads, fork.blk[heads])[0]] = FREE
    heads = np.flatnonzero(fork.pcp > 0)
    pcp_idx = block_pages(heads, fork.pcp[heads].astype(np.int64) - 1)[0]
    state[pcp_idx] = PCP
    return state, int(pcp_idx.shape[0])


def _model_view(ms: ModelState) -> PageView:
    """The model's zone as a PageView, from the fork state its forks start from (computed
    once): allocated pages by their objects' type and flags; pages no object holds OTHER,
    and so are the blocks its compaction holds (captured for a requester, or isolated
    as a recorded pass's targets), which a fork starts with free but the model's free
    lists do not count."""
    fork = fork_of_model(ms)
    state, pcp_pages = _page_states(fork)
    blk = fork.blk.copy()
    start = int(ms.env.start_pfn)
    held_blocks = [(pfn - start, k) for pfn, k in captured_blocks(ms)]
    for o, k in held_blocks + isolated_blocks(ms.zone.arrays):
        blk[o] = -1
        state[o : o + (1 << k)] = OTHER
    z = ms.zone
    pages = int(z.pages)
    mt = np.full(pages, -1, np.int8)
    movable = np.zeros(pages, np.bool_)
    reclaimable = np.zeros(pages, np.bool_)
    held = np.zeros(pages, np.bool_)
    ob = z.objects
    live = live_units(ms)
    idx, owner = block_pages(ob.placed[live] - int(ms.env.start_pfn), ob.obj_order[live])
    flags = ob.obj_flags[live].astype(np.int64)[owner]
    held[idx] = True
    mt[idx] = ob.obj_mt[live][owner]
    movable[idx] = (flags & F_MOVABLE) != 0
    reclaimable[idx] = (flags & F_RECLAIM) != 0
    state[(state == ALLOCATED) & ~held] = OTHER
    not_alloc = state != ALLOCATED
    mt[not_alloc] = -1
    movable[not_alloc] = False
    reclaimable[not_alloc] = False
    return PageView(start, state, blk, mt, movable, reclaimable,
                    np.asarray(z.pageblock_types(), np.int8), pcp_pages)  # fmt: skip


def _observed_view(store: Store, trace_id: int, env: Environment, seq: int) -> PageView:
    """The kernel's rebuilt zone just before ``seq`` as a PageView: allocated pages
    movable where the before-kpageflags has them on an LRU list (what compaction
    isolates), the pageblock types as a fork starts with them."""
    fork = fork_state(store, trace_id, env.start_pfn, env.pages, seq)
    state, pcp_pages = _page_states(fork)
    mt = np.where(state == ALLOCATED, fork.page_mt, -1).astype(np.int8)
    movable = mt == MIGRATE_MOVABLE
    reclaimable = mt == MIGRATE_RECLAIMABLE
    _takes, pb = fork_takes_and_types(store, trace_id, env, seq, fork)
    return PageView(int(env.start_pfn), state, fork.blk.astype(np.int8), mt, movable,
                    reclaimable, np.asarray(pb, np.int8), pcp_pages, kernel=fork)  # fmt: skip


@dataclass
class RunInfo:
    run_id: int
    trace_id: int
    trace: str
    model: str
    config: RunConfig | None  # None for an observed run
    start: str
    start_seq: int | None
    end_seq: int | None
    zone_start_pfn: int
    zone_pages: int
    background: int
    forked_from: int | None = None  # the run whose model state this run forked from

    @property
    def label(self) -> str:
        """How the run's model is named: its preset, else its model (``observed``)."""
        return self.model if self.config is None else (self.config.preset or self.config.model)


def run_info(store: Store, run_id: int) -> RunInfo:
    """The run's row, its configuration parsed (BadInputError: no such run)."""
    row = store.query(
        """SELECT r.run_id, r.trace_id, t.name, r.model, r.config, r.start, r.start_seq,
                  r.end_seq, r.zone_start_pfn, r.zone_pages, coalesce(r.background, 0) AS bg,
                  r.forked_from
           FROM runs r JOIN traces t USING (trace_id) WHERE r.run_id = $r""",
        {"r": run_id},
    ).to_pylist()
    if not row:
        raise BadInputError(f"no run {run_id}", field="run_id")
    r = row[0]
    cfg = None if r["model"] == "observed" else RunConfig.from_json(r["config"])
    return RunInfo(run_id=int(r["run_id"]), trace_id=int(r["trace_id"]), trace=r["name"],
                   model=r["model"], config=cfg, start=r["start"] or "empty",
                   start_seq=r["start_seq"], end_seq=r["end_seq"],
                   zone_start_pfn=int(r["zone_start_pfn"] or 0),
                   zone_pages=int(r["zone_pages"] or 0), background=int(r["bg"]),
                   forked_from=r["forked_from"])  # fmt: skip


def _request(store: Store, info: RunInfo, seq: int) -> dict[str, Any]:
    rows = store.query(
        """SELECT e.seq, e.op, e."order", e.migratetype, e.gfp, e.pid, e.comm, e.cpu, e.ts_ns,
                  e.line, s.outcome, s.pfn
           FROM events e LEFT JOIN steps s ON s.run_id = $r AND s.seq = e.seq
           WHERE e.trace_id = $t AND e.seq = $s""",
        {"t": info.trace_id, "s": seq, "r": info.run_id},
    ).to_pylist()
    if not rows:
        raise BadInputError(f"the trace {info.trace!r} has no event with seq {seq}",
                            field="seq")  # fmt: skip
    e = rows[0]
    if e["op"] != "alloc":
        raise BadInputError(
            f"seq {seq} (trace line {e['line']}) is a {e['op']}, not an allocation: only "
            "allocations are explained", field="seq",
        )  # fmt: skip
    _check_covered(store, info, seq, int(e["line"]))
    if e["outcome"] is None:
        raise BadInputError(f"run {info.run_id} stored no step at seq {seq} (trace line "
                            f"{e['line']}): nothing to explain there", field="seq")  # fmt: skip
    k = int(e["order"])
    mt = int(e["migratetype"])
    return {
        "seq": seq, "line": e["line"], "order": k,
        "migratetype": TYPE_NAMES[mt] if 0 <= mt < 3 else str(mt), "gfp": e["gfp"],
        **gfp_allows(e["gfp"], k), "pid": e["pid"], "comm": e["comm"], "cpu": e["cpu"],
        "ts_ns": e["ts_ns"], "outcome": e["outcome"], "pfn": e["pfn"],
    }  # fmt: skip


def _check_covered(store: Store, info: RunInfo, seq: int, line: int) -> None:
    """BadInputError unless the run has a state at ``seq`` (trace line ``line``): it
    stored placements, ``seq`` is within its seqs, and for an observed run after the
    before-snapshot (where the kernel's state is first known)."""
    if store.one("SELECT 1 FROM steps WHERE run_id = $r LIMIT 1", {"r": info.run_id}) is None:
        raise BadInputError(f"run {info.run_id} stored no placements (no steps): nothing to "
                            "explain", field="run_id")  # fmt: skip
    if info.config is None:
        first = first_fork_seq(store, info.trace_id)
        if seq < first:
            raise BadInputError(
                f"seq {seq} (trace line {line}) is before the trace's before-snapshot: the "
                f"kernel's state is known from seq {first} on", field="seq",
            )  # fmt: skip
    if info.start_seq is not None and seq < info.start_seq:
        raise BadInputError(f"seq {seq} is before run {info.run_id}'s first seq "
                            f"{info.start_seq}", field="seq")  # fmt: skip
    if info.end_seq is not None and seq > info.end_seq:
        raise BadInputError(f"seq {seq} is after run {info.run_id}'s last seq {info.end_seq}",
                            field="seq")  # fmt: skip


def _lowmem_reserve(store: Store, info: RunInfo, zone: str) -> int:
    """The run's zone's ``lowmem_reserve`` against a request whose highest zone is
    ``zone`` (zoneinfo's ``protection``, by zone index), 0 when not known."""
    row = store.one(
        """SELECT protection FROM snap_zoneinfo WHERE trace_id = $t AND snapshot = 'before'
             AND start_pfn = $s LIMIT 1""",
        {"t": info.trace_id, "s": info.zone_start_pfn},
    )
    if row is None or not row[0]:
        return 0
    try:
        values = [int(v) for v in str(row[0]).strip("() ").split(",") if v.strip()]
    except ValueError:
        return 0
    i = ZONE_NAMES.index(zone)
    return values[i] if i < len(values) else 0


# vm.extfrag_threshold's default (mm/compaction.c: sysctl_extfrag_threshold)
EXTFRAG_THRESHOLD = 500


def _extfrag_threshold(store: Store, info: RunInfo) -> int:
    """The ``extfrag_threshold`` compaction_suitable compares with: a model's
    configuration's, the recorded kernel's ``vm.extfrag_threshold`` (the capture's
    sysctl snapshot, the before one first) for an observed run, else the default."""
    if info.config is not None:
        return int(info.config.get("extfrag_threshold", EXTFRAG_THRESHOLD))
    row = store.one(
        """SELECT TRY_CAST(value AS INTEGER) FROM snap_sysctl
           WHERE trace_id = $t AND key = 'vm.extfrag_threshold' AND value IS NOT NULL
           ORDER BY snapshot = 'before' DESC LIMIT 1""",
        {"t": info.trace_id},
    )
    return EXTFRAG_THRESHOLD if row is None or row[0] is None else int(row[0])


def _state(view: PageView, k: int, wmark: tuple[int, int, int], reserve: int,
           extfrag_threshold: int) -> dict[str, Any]:  # fmt: skip
    nr_free_mt = view.nr_free_mt()
    nr_free = nr_free_mt.sum(axis=1)
    free = int((nr_free << np.arange(NR_PAGE_ORDERS)).sum())
    ok = {name: bool(watermark_ok(k, mark + reserve, free, nr_free_mt))
          for name, mark in zip(("min", "low", "high"), wmark, strict=True)}  # fmt: skip
    counts = [int(v) for v in nr_free]
    # compaction_suitable: order-0 watermark plus compact_gap, then the fragindex
    mark = (wmark[1] if k > PAGE_ALLOC_COSTLY_ORDER else wmark[0]) + (2 << k) + reserve
    fi = fragmentation_index(counts, k)
    if not watermark_ok(0, mark, free, nr_free_mt):
        verdict, why = "skipped", f"free pages {free} <= watermark + compact_gap {mark}"
    elif k > PAGE_ALLOC_COSTLY_ORDER and 0 <= fi <= extfrag_threshold:
        verdict, why = (
            "not_suitable",
            (
                f"fragmentation index {fi} <= extfrag_threshold {extfrag_threshold}: "
                "a failure from lack of memory, for reclaim"
            ),
        )
    else:
        verdict, why = "continue", "compaction may run"
    return {
        "nr_free": counts,
        "nr_free_by_type": {TYPE_NAMES[t]: [int(v) for v in nr_free_mt[:, t]] for t in range(3)},
        "free_pages": free, "pcp_pages": view.pcp_pages,
        "watermarks": {"min": wmark[0], "low": wmark[1], "high": wmark[2]},
        "lowmem_reserve": reserve, "watermark_ok": ok,
        "unusable_index": unusable_index(counts, k),
        "fragmentation_index": fi,
        "compaction_suitable": {"verdict": verdict, "reason": why,
                                "extfrag_threshold": extfrag_threshold},
        "fragmentation_score": fragmentation_score_zone(counts),
    }  # fmt: skip


def candidates(view: PageView, k: int, top: int = 5) -> list[dict[str, Any]]:
    """The aligned order-``k`` blocks nearest to free: those nothing pins first, by the
    pages it would take to free them (migrate, then reclaim), then the others by their
    pinned pages. Each with its pageblocks' types, free, pcp and allocated pages by
    type, and what freeing it takes."""
    n = 1 << k
    first = (-view.start_pfn) % n
    count = (view.pages - first) // n
    if count <= 0:
        return []
    sl = slice(first, first + count * n)
    st = view.state[sl].reshape(count, n)
    mt = view.mt[sl].reshape(count, n)
    mov = view.movable[sl].reshape(count, n)
    rec = view.reclaimable[sl].reshape(count, n)
    alloc = st == ALLOCATED
    free = (st == FREE).sum(axis=1)
    pcp = (st == PCP).sum(axis=1)
    migrate = (alloc & mov).sum(axis=1)
    reclaim = (alloc & ~mov & rec).sum(axis=1)
    pinned = (alloc & ~mov & ~rec).sum(axis=1) + (st == OTHER).sum(axis=1)
    cost = np.where(pinned > 0, (1 << 40) + pinned, migrate + reclaim)
    order = np.lexsort((np.arange(count), cost))
    out = []
    pb_first = view.start_pfn >> PAGEBLOCK_ORDER
    for b in order[:top]:
        lo = first + int(b) * n
        pfn = view.start_pfn + lo
        blocks = range(pfn >> PAGEBLOCK_ORDER, ((pfn + n - 1) >> PAGEBLOCK_ORDER) + 1)
        pbt = [int(view.pageblock_mt[p - pb_first]) for p in blocks]
        types = [TYPE_NAMES[t] if 0 <= t < 3 else "other" for t in pbt]
        blocker = np.flatnonzero((alloc[b] & ~mov[b] & ~rec[b]) | (st[b] == OTHER))
        by_type = {TYPE_NAMES[t]: int((alloc[b] & (mt[b] == t)).sum()) for t in range(3)}
        out.append({
            "pfn": pfn, "pageblock_types": types, "free_pages": int(free[b]),
            "pcp_pages": int(pcp[b]), "allocated": by_type,
            "movable_pages": int(migrate[b]), "to_migrate": int(migrate[b]),
            "to_reclaim": int(reclaim[b]), "pinned_pages": int(pinned[b]),
            "possible": bool(pinned[b] == 0),
            "blocked_by_pfn": pfn + int(blocker[0]) if blocker.size else None,
            **pageblock_map(view, pfn, n),
        })  # fmt: skip
    return out


def trace_pfns(cands: list[dict[str, Any]], env: Environment) -> list[dict[str, Any]]:
    """``candidates`` with the trace's pfns: a model on the memory a trace touches works on
    dense pfns (replay.engine.present); a block and its pageblock map lie in one 1024-page
    block, which the map moves whole, so offsets within them stay."""
    if env.memory is None:
        return cands
    for c in cands:
        for key in ("pfn", "blocked_by_pfn", "map_pfn"):
            if c.get(key) is not None:
                c[key] = int(env.to_real(np.array([c[key]], np.int64))[0])
    return cands


# pageblock_map's letters, one per page
MAP_LETTERS = {"free": "F", "pcp": "P", "movable": "M", "reclaimable": "R",
               "unmovable": "U", "other": "H"}  # fmt: skip


def pageblock_map(view: PageView, pfn: int, pages: int) -> dict[str, Any]:
    """The pageblocks around the block [pfn, pfn + pages), a letter per page (pfn order):
    ``F`` free, ``P`` on a pcp list, ``M`` allocated and movable (compaction may
    migrate it), ``R`` allocated and only reclaimable, ``U`` allocated and pinned
    (unmovable), ``H`` held by nothing the run names (a hole, an untraced page):
    ``map_pfn`` (the first page's pfn), ``map`` and the block's ``map_offset`` in it."""
    lo = max((pfn >> PAGEBLOCK_ORDER) << PAGEBLOCK_ORDER, view.start_pfn) - view.start_pfn
    end = ((pfn + pages - 1) >> PAGEBLOCK_ORDER) + 1 << PAGEBLOCK_ORDER
    hi = min(end - view.start_pfn, view.pages)
    st = view.state[lo:hi]
    alloc = st == ALLOCATED
    code = np.full(hi - lo, ord(MAP_LETTERS["other"]), np.uint8)
    code[st == FREE] = ord(MAP_LETTERS["free"])
    code[st == PCP] = ord(MAP_LETTERS["pcp"])
    mov, rec = view.movable[lo:hi], view.reclaimable[lo:hi]
    code[alloc & mov] = ord(MAP_LETTERS["movable"])
    code[alloc & ~mov & rec] = ord(MAP_LETTERS["reclaimable"])
    code[alloc & ~mov & ~rec] = ord(MAP_LETTERS["unmovable"])
    return {"map_pfn": view.start_pfn + lo, "map": code.tobytes().decode("ascii"),
            "map_offset": pfn - (view.start_pfn + lo)}  # fmt: skip


def _counterfactuals(store: Store, info: RunInfo, seq: int, models: list[str], horizon: int,
                     ms: ModelState | None,
                     kernel: ForkState | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """The run's own row, then each model forked just before ``seq``: from the run's
    model state ``ms`` (a model's run; the run's own model forked there first, which
    reproduces the run's outcome), or from the kernel's real state (an observed run:
    ``kernel``, rebuilt once for all of them)."""
    total = int(store.one("SELECT events FROM traces WHERE trace_id = $t",
                          {"t": info.trace_id})[0])  # fmt: skip
    until = min(seq + horizon + 1, total)
    out = [_own_row(store, info, seq, until)]
    configs: list[tuple[str, RunConfig]] = []
    if info.config is not None:
        configs.append((info.label, info.config))
    configs += [(m, load_model(m)) for m in models]
    # a model's forks in the run's own zone (the trace's, or the run's --zone-pages); an
    # observed run's from the kernel's state, in the trace's zone
    zone_pages = _zone_pages(store, info) if ms is not None else None
    # the kernel presets' recorded inputs (SQL over the whole trace) are read on a second
    # connection while the forks before them run (left, waiting, before returning)
    with ThreadPoolExecutor(1, thread_name_prefix="replay-prefetch") as pool:
        if kernel is not None:
            for _name, cfg in configs:
                prefetch_recorded(store, info.trace, cfg, until, kernel, pool)
        for name, cfg in configs:
            try:
                r = run(store, info.trace, cfg, start="observed", at=seq, until=until, every=1,
                        pageblock_every=0, from_state=ms, zone_pages=zone_pages,
                        kernel_state=kernel)  # fmt: skip
            except NoEventInZoneError:
                # a model that takes the kernel's zone choice, where the kernel served the
                # request and the whole horizon from another zone (a zonelist run's DMA32)
                out.append({"model": name, "run_id": None, "outcome": None, "pfn": None,
                            "migrated": None, "scanned": None, "evicted": None,
                            "later_failures": None})  # fmt: skip
                continue
            out.append(_fork_row(store, name, r.run_id, seq, until, r.migrated, r.scanned,
                                 r.evicted))  # fmt: skip
    return out


def _fork_row(store: Store, model: str, run_id: int, seq: int, until: int, migrated: int,
              scanned: int, evicted: int) -> dict[str, Any]:  # fmt: skip
    rows = store.query(
        """SELECT seq, outcome, pfn FROM steps WHERE run_id = $r AND seq >= $s AND seq < $u
             AND (seq = $s OR outcome = 'failed')""",
        {"r": run_id, "s": seq, "u": until},
    ).to_pylist()
    at = next((q for q in rows if q["seq"] == seq), None)
    return {"model": model, "run_id": run_id,
            "outcome": at["outcome"] if at else None, "pfn": at["pfn"] if at else None,
            "migrated": migrated, "scanned": scanned, "evicted": evicted,
            "later_failures": sum(1 for q in rows if q["seq"] > seq)}  # fmt: skip


# The isolate events' range start (pfn): the zone they scanned
_RANGE_LO = r"hexint(regexp_extract(args->>'range', '\((0x[0-9a-fA-F]+) ~', 1))"


def kernel_costs(store: Store, trace_id: int, zone: tuple[int, int], after_line: int,
                 last_line: int) -> dict[str, int | None]:  # fmt: skip
    """What the recorded kernel's compaction and reclaim did in ``zone`` ([start pfn, end
    pfn)) between trace lines ``after_line`` (excluded) and ``last_line`` (included),
    pages: ``migrated`` (``mm_compaction_migratepages`` nr_migrated, each in the zone of
    its pass's last ``mm_compaction_isolate_migratepages``, by pid), ``scanned`` (the
    migrate and free scanners' ``nr_scanned``, isolate events whose range starts in the
    zone) and ``evicted`` (``mm_vmscan_lru_shrink_inactive`` nr_reclaimed, per node:
    kswapd's and direct reclaim's). None where the trace recorded no event of the kind
    at all (the tracepoint was not on: not knowable, not 0)."""
    have = {str(r["event"]) for r in store.query(
        """SELECT DISTINCT event FROM aux_events WHERE trace_id = $t AND event IN (
             'mm_compaction_migratepages', 'mm_compaction_isolate_migratepages',
             'mm_compaction_isolate_freepages', 'mm_vmscan_lru_shrink_inactive')""",
        {"t": trace_id}).to_pylist()}  # fmt: skip
    row = store.query(
        rf"""WITH iso AS (
               SELECT line, pid, event, {_RANGE_LO} AS lo,
                      TRY_CAST(args->>'nr_scanned' AS BIGINT) AS nr_scanned
               FROM aux_events WHERE trace_id = $t AND event IN (
                 'mm_compaction_isolate_migratepages', 'mm_compaction_isolate_freepages',
                 'mm_compaction_fast_isolate_freepages')),
             mig AS (
               SELECT m.line, TRY_CAST(m.args->>'nr_migrated' AS BIGINT) AS nr_migrated, i.lo
               FROM (SELECT * FROM aux_events WHERE trace_id = $t
                       AND event = 'mm_compaction_migratepages') m
               ASOF JOIN (SELECT * FROM iso WHERE event = 'mm_compaction_isolate_migratepages') i
                 ON m.pid = i.pid AND m.line > i.line)
           SELECT
             (SELECT coalesce(sum(nr_migrated), 0) FROM mig WHERE line > $a AND line <= $b
                AND lo >= $zs AND lo < $ze) AS migrated,
             (SELECT coalesce(sum(nr_scanned), 0) FROM iso WHERE line > $a AND line <= $b
                AND lo >= $zs AND lo < $ze) AS scanned,
             (SELECT coalesce(sum(TRY_CAST(args->>'nr_reclaimed' AS BIGINT)), 0)
              FROM aux_events WHERE trace_id = $t AND event = 'mm_vmscan_lru_shrink_inactive'
                AND line > $a AND line <= $b) AS evicted""",
        {"t": trace_id, "a": after_line, "b": last_line, "zs": zone[0], "ze": zone[1]},
    ).to_pylist()[0]
    scanners = {"mm_compaction_isolate_migratepages", "mm_compaction_isolate_freepages"}
    return {
        "migrated": int(row["migrated"]) if "mm_compaction_migratepages" in have else None,
        "scanned": int(row["scanned"]) if scanners <= have else None,
        "evicted": int(row["evicted"]) if "mm_vmscan_lru_shrink_inactive" in have else None,
    }


def _own_row(store: Store, info: RunInfo, seq: int, until: int) -> dict[str, Any]:
    """The run itself over the same events: its outcome and its later failures, and its
    pages migrated, scanned and evicted: a model's from its steps, the recorded kernel's
    (an observed run's) from the trace's compaction and reclaim events
    (:func:`kernel_costs`; None where the trace cannot say)."""
    row = _fork_row(store, info.label, info.run_id, seq, until, 0, 0, 0)
    if info.config is None:
        # the events of N (from just after N-1: a direct compaction for N comes before
        # N's own line) to the horizon's last
        lines = {int(r["seq"]): int(r["line"]) for r in store.query(
            "SELECT seq, line FROM events WHERE trace_id = $t AND seq IN ($a, $b)",
            {"t": info.trace_id, "a": seq - 1, "b": until - 1}).to_pylist()}  # fmt: skip
        row.update(kernel_costs(store, info.trace_id,
                                (info.zone_start_pfn, info.zone_start_pfn + info.zone_pages),
                                lines.get(seq - 1, -1), lines[until - 1]), own=True)  # fmt: skip
        return row
    totals = store.query(
        """SELECT max(migrated) - min(migrated) AS m, max(scanned) - min(scanned) AS s,
                  max(evicted) - min(evicted) AS e
           FROM steps WHERE run_id = $r AND seq >= $a AND seq < $u
             AND migrated IS NOT NULL""",
        {"r": info.run_id, "a": seq - 1, "u": until},
    ).to_pylist()[0]
    row.update(migrated=int(totals["m"] or 0), scanned=int(totals["s"] or 0),
               evicted=int(totals["e"] or 0), own=True)  # fmt: skip
    return row


def _zone_pages(store: Store, info: RunInfo) -> int | None:
    """The run's ``--zone-pages`` (None: the trace's own zone)."""
    trace_zone = store.one("SELECT zone_start_pfn, zone_pages FROM traces WHERE trace_id = $t",
                           {"t": info.trace_id})  # fmt: skip
    if (
        trace_zone is not None
        and trace_zone[1] is not None
        and (int(trace_zone[0] or 0), int(trace_zone[1])) == (info.zone_start_pfn, info.zone_pages)
    ):
        return None
    return info.zone_pages


def run_environment(store: Store, info: RunInfo) -> Environment:
    """The run's zone environment (an observed run's: the trace's zone's)."""
    if info.config is None:
        return zone_environment(store, info.trace_id, load_model("mobility"), None)
    return zone_environment(store, info.trace_id, info.config, _zone_pages(store, info))


def state_view(
    store: Store, info: RunInfo, seq: int
) -> tuple[PageView, Environment, ModelState | None]:
    """The run's own zone just before ``seq``, the zone's environment, and for a
    model's run that model's state (forks start from it)."""
    if info.config is None:
        env = run_environment(store, info)
        return _observed_view(store, info.trace_id, env, seq), env, None
    zone_pages = _zone_pages(store, info)
    parent = None
    if info.forked_from is not None and info.start_seq is not None:
        # a fork of another run's model state (a counterfactual): that state, then this run
        parent_info = run_info(store, info.forked_from)
        _view, _env, parent = state_view(store, parent_info, info.start_seq)
        zone_pages = _zone_pages(store, parent_info) if parent is not None else None
    ms = model_state(store, info.trace, info.config, seq, start=info.start,
                     at=info.start_seq if info.start == "observed" else None,
                     zone_pages=zone_pages, fill_from_snapshot=info.background > 0,
                     until=info.end_seq + 1 if info.end_seq is not None else None,
                     run_id=info.run_id, from_state=parent)  # fmt: skip
    return _model_view(ms), ms.env, ms


def explain(store: Store, run_id: int, seq: int, *, models: list[str] | None = None,
            horizon: int = 1000, top: int = 5) -> dict[str, Any]:  # fmt: skip
    """The explanation of allocation ``seq`` of run ``run_id`` (see the module)."""
    if horizon < 0:
        raise UsageError("--horizon must be 0 or more")
    info = run_info(store, run_id)
    req = _request(store, info, seq)
    req["callsite"] = callsites_by_seq(store, info.trace_id, [seq]).get(seq)  # with stacks
    view, env, ms = state_view(store, info, seq)
    wmark = (int(env.wmark[0]), int(env.wmark[1]), int(env.wmark[2]))
    reserve = _lowmem_reserve(store, info, req["highest_zone"])
    threshold = _extfrag_threshold(store, info)
    state = _state(view, req["order"], wmark, reserve, threshold)
    out: dict[str, Any] = {
        "run": {"run_id": info.run_id, "trace": info.trace, "model": info.model,
                "preset": info.config.preset if info.config else None,
                "start": info.start, "start_seq": info.start_seq},
        "seq": seq, "request": req, "state": state,
        "candidates": trace_pfns(candidates(view, req["order"], top), env),
    }  # fmt: skip
    out["counterfactuals"] = _counterfactuals(
        store,
        info,
        seq,
        list(DEFAULT_MODELS if models is None else models),
        horizon,
        ms,
        view.kernel,
    )
    return out


def _next_alloc_after(event: str, key: str) -> str:
    """SQL: the seqs of the recorded kernel's allocations that each ``event`` (an
    aux_events name) precedes, the next allocation with the same ``key`` (cpu or pid)."""
    return f"""
    SELECT DISTINCT e.seq
    FROM (SELECT line, {key} FROM aux_events WHERE trace_id = $t AND event = '{event}') x
    ASOF JOIN (SELECT seq, line, {key} FROM events WHERE trace_id = $t AND op = 'alloc') e
      ON x.{key} = e.{key} AND x.line < e.line"""


# The recorded kernel's allocations served after a fallback: an mm_page_alloc_extfrag
# (__rmqueue_fallback, in rmqueue on the allocating cpu) is the next allocation's on its
# cpu; and those after a direct compaction: an mm_compaction_try_to_compact_pages
# (__alloc_pages_direct_compact) is the next allocation's of its pid
_KERNEL_FALLBACKS = _next_alloc_after("mm_page_alloc_extfrag", "cpu")
_KERNEL_COMPACTIONS = _next_alloc_after("mm_compaction_try_to_compact_pages", "pid")


def rank(store: Store, run_id: int, top: int = 20) -> list[dict[str, Any]]:
    """A run's failed and most at-risk allocations: failed ones first (by seq), then
    those served with the least margin: free blocks of at least their order (the
    nearest stored step before them), served only after a fallback or after
    compacting, then the watermark headroom (free pages above the min watermark).
    A model's fallbacks and compactions are its own (its extfrag and model_events
    rows); an observed run's the recorded kernel's (its mm_page_alloc_extfrag and
    mm_compaction_try_to_compact_pages events)."""
    info = run_info(store, run_id)
    env = run_environment(store, info)
    if info.config is None:
        fb, me = _KERNEL_FALLBACKS, _KERNEL_COMPACTIONS
    else:
        fb = "SELECT DISTINCT seq FROM extfrag WHERE run_id = $r"
        me = "SELECT DISTINCT seq FROM model_events WHERE run_id = $r AND kind LIKE 'compact%'"
    rows = store.query(
        f"""WITH a AS (SELECT s.seq, s.outcome, s.pfn, e."order", e.migratetype, e.comm
                      FROM steps s JOIN events e ON e.trace_id = $t AND e.seq = s.seq
                      WHERE s.run_id = $r AND e.op = 'alloc'),
                c AS (SELECT seq, free_pages, [nr_free_0, nr_free_1, nr_free_2, nr_free_3,
                             nr_free_4, nr_free_5, nr_free_6, nr_free_7, nr_free_8, nr_free_9,
                             nr_free_10] AS nr
                      FROM steps WHERE run_id = $r AND free_pages IS NOT NULL),
                fb AS ({fb}),
                me AS ({me}),
                r AS (SELECT a.*, c.free_pages - $wmin AS headroom,
                             CAST(list_sum(list_slice(c.nr, a."order" + 1, 11)) AS BIGINT)
                               AS blocks,
                             a.seq IN (SELECT seq FROM fb) AS fallback,
                             a.seq IN (SELECT seq FROM me) AS compacted
                      FROM a ASOF LEFT JOIN c ON c.seq < a.seq)
           SELECT * FROM r
           ORDER BY outcome <> 'failed', CASE WHEN outcome = 'failed' THEN seq ELSE 0 END,
                    coalesce(blocks, 1::BIGINT << 40), NOT (fallback OR compacted),
                    coalesce(headroom, 1::BIGINT << 40), seq
           LIMIT $top""",
        {"t": info.trace_id, "r": run_id, "wmin": int(env.wmark[0]), "top": top},
    ).to_pylist()
    if not rows:
        raise BadInputError(f"run {run_id} has no allocation steps", field="run_id")
    sites = callsites_by_seq(store, info.trace_id, [int(q["seq"]) for q in rows])
    out = []
    for q in rows:
        mt = int(q["migratetype"])
        out.append({"seq": int(q["seq"]), "order": int(q["order"]),
                    "migratetype": TYPE_NAMES[mt] if 0 <= mt < 3 else str(mt),
                    "comm": q["comm"], "callsite": sites.get(int(q["seq"])),
                    "outcome": q["outcome"], "pfn": q["pfn"],
                    "free_blocks_at_order": q["blocks"], "watermark_headroom": q["headroom"],
                    "after_fallback": bool(q["fallback"]),
                    "after_compaction": bool(q["compacted"])})  # fmt: skip
    return out
