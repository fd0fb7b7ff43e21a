"""``zsmalloc``: zram's allocator of compressed objects and its compaction (seed 002).

Mel Gorman (seed 002, on Gioh Kim's "enable migration of driver pages") names
three ways to move zram memory against fragmentation; a run chooses one with
``zsmalloc = "page" | "object" | "hybrid"``:

- ``page``: zram pages are migratable whole by the page compactor (the zram
  class joins ``movable_classes``); zsmalloc itself never compacts.
- ``object``: zsmalloc's own compaction (``zs_compact``, mm/zsmalloc.c) moves
  objects from the least used zspages of each size class into the most used
  ones and frees the emptied zspages to the buddy allocator; zram pages stay
  unmovable.
- ``hybrid``: ``object``, and after every ``zs_compact`` a whole-zone page
  compaction (``compact_memory``) with zram pages migratable.

**The zspage structure** (synthetic: a page trace carries no objects). The
trace's zram pages (its allocations of the run's zram class: by default the
gfp string of the ``embedded-gpu-zram`` scenario, else ``zram_classes``) are
the pages zsmalloc asked the buddy allocator for (``alloc_zspage``). They are
taken in allocation order: the first of a new zspage draws its size class,
from a compressed size (lognormal, median :data:`COMP_MEDIAN` bytes, zram's
usual 3:1; sizes from ``huge_class_size`` up stored as a whole page as zram
does) plus ``ZS_HANDLE_SIZE``; the zspage takes the next
``pages_per_zspage`` zram pages of the trace (``calculate_zspage_chain_size``,
CONFIG_ZSMALLOC_CHAIN_SIZE 8) and is created, full (``objs_per_zspage``
objects), at the last one's allocation. Its objects are freed at seqs drawn
uniformly over the zspage's life: from its creation to its creation plus the
mean trace lifetime of its pages (a page the trace never frees lives on past
the end the mean lifetime of the pages it frees: the residual life of an
exponential lifetime), one object exactly at the end, so without
``zs_compact`` the zspage empties then (``zs_free`` -> ``free_zspage``) and
all its pages go back to the buddy allocator together. The trace's frees of
these pages are replaced by zsmalloc's. Deliberate simplifications: a slot
freed is refilled only by ``zs_compact`` (the trace's page allocations already
say when zsmalloc needed a new zspage), and a zspage page the model zone could
not allocate still counts as holding its objects.

**The kernel followed** (Linux 6.12 mm/zsmalloc.c): size classes from
``zs_create_pool`` (``ZS_MIN_ALLOC_SIZE`` 32, ``ZS_SIZE_CLASS_DELTA`` 16,
classes of equal ``pages_per_zspage`` and ``objs_per_zspage`` merged by
``can_merge``); fullness groups (``get_fullness_group``: 0, 1-10 by tenths of
use, 11 full) with ``insert_zspage`` at the head of the group's list;
``obj_free`` pushing the freed slot at the head of the zspage's free list and
``obj_malloc`` taking it from there; ``zs_compact`` over the classes from the
largest index down, ``__zs_compact`` while ``zs_can_compact``:
``isolate_dst_zspage`` (the first zspage of the fullest group 10..1),
``isolate_src_zspage`` (the first of the emptiest group 1..10),
``migrate_zspage`` (the source's objects in slot order until the destination
is full or the source empty), ``putback_zspage`` and ``free_zspage`` of an
emptied source, a full destination put back and another isolated.

**When zs_compact runs**: the model has no reclaim to call the shrinker
(``zs_shrinker_count``/``zs_shrinker_scan``), so a check stands in for each
of its calls at a fixed period of trace time (``zsmalloc_interval_ms``,
default 100): before the first event at or after each period's end, if
``zs_shrinker_count`` is not zero and the pool's fill (objects stored per
object slot of its zspages, %) is below ``zsmalloc_fill_pct`` (default 100:
every call of the shrinker's cadence; lower: only when the pool is that
sparse).

Units: seq (trace event index; an action at seq s runs before event s),
pages (4 KiB), bytes, objects; ``zspage`` ids are dense (creation order).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from replay.jit import njit

# insert_zspage / remove_zspage: list_add at a fullness list's head, list_del
from replay.models.internal import list_add, list_del

PAGE_SIZE = 4096
ZS_MAX_PAGES_PER_ZSPAGE = 8  # CONFIG_ZSMALLOC_CHAIN_SIZE's default
ZS_MIN_ALLOC_SIZE = 32  # MAX(32, ZS_MAX_PAGES_PER_ZSPAGE << PAGE_SHIFT >> OBJ_INDEX_BITS)
ZS_MAX_ALLOC_SIZE = PAGE_SIZE
ZS_SIZE_CLASS_DELTA = PAGE_SIZE >> 8  # PAGE_SIZE >> CLASS_BITS
ZS_SIZE_CLASSES = -(-(ZS_MAX_ALLOC_SIZE - ZS_MIN_ALLOC_SIZE) // ZS_SIZE_CLASS_DELTA) + 1
ZS_HANDLE_SIZE = 8  # sizeof(unsigned long)
ZS_INUSE_RATIO_0 = 0
ZS_INUSE_RATIO_10 = 1
ZS_INUSE_RATIO_99 = 10
ZS_INUSE_RATIO_100 = 11
NR_FULLNESS_GROUPS = 12
COMP_MEDIAN = 1300.0  # bytes: the median compressed page (zram's usual ratio, about 3:1)
COMP_SIGMA = 0.7  # lognormal shape of compressed sizes
MODES = ("page", "object", "hybrid")
# zs_simulate's per-check columns
CK_SEQ, CK_RAN, CK_MOVED, CK_BYTES, CK_FREED, CK_PAGES, CK_OBJS, CK_SLOTS = range(8)
NR_CK = 8


def calculate_zspage_chain_size(size: int) -> int:
    """``calculate_zspage_chain_size``: pages per zspage of a class (bytes) that waste least."""
    if size & (size - 1) == 0:
        return 1
    best, chain = PAGE_SIZE + 1, 1
    for i in range(1, ZS_MAX_PAGES_PER_ZSPAGE + 1):
        waste = (i * PAGE_SIZE) % size
        if waste < best:
            best, chain = waste, i
    return chain


@dataclass(frozen=True)
class SizeClasses:
    """The pool's size classes as ``zs_create_pool`` sets them up.

    ``index[i]``: the class that serves kernel index i (merged classes point to the
    larger one they merged into, as ``pool->size_class[i]``); per class index (only
    where ``index[i] == i``): ``size`` (bytes), ``pages`` (pages_per_zspage),
    ``objs`` (objs_per_zspage). ``huge_class_size``: objects from this size up are
    stored by zram as a whole page."""

    index: np.ndarray
    size: np.ndarray
    pages: np.ndarray
    objs: np.ndarray
    huge_class_size: int


def size_classes() -> SizeClasses:
    """The 6.12 kernel's size classes for 4 KiB pages (``zs_create_pool``)."""
    n = ZS_SIZE_CLASSES
    index = np.zeros(n, np.int64)
    size = np.zeros(n, np.int64)
    pages = np.zeros(n, np.int64)
    objs = np.zeros(n, np.int64)
    huge = 0
    prev = -1
    for i in range(n - 1, -1, -1):
        s = min(ZS_MIN_ALLOC_SIZE + i * ZS_SIZE_CLASS_DELTA, ZS_MAX_ALLOC_SIZE)
        p = calculate_zspage_chain_size(s)
        k = p * PAGE_SIZE // s
        if p != 1 and k != 1 and not huge:
            huge = s - (ZS_HANDLE_SIZE - 1)
        if prev >= 0 and pages[prev] == p and objs[prev] == k:  # can_merge
            index[i] = prev
            continue
        index[i], size[i], pages[i], objs[i] = i, s, p, k
        prev = i
    return SizeClasses(index, size, pages, objs, huge)


def get_size_class_index(size: np.ndarray) -> np.ndarray:
    """``get_size_class_index`` of object sizes (bytes, the handle included)."""
    idx = np.where(size > ZS_MIN_ALLOC_SIZE,
                   -(-(size - ZS_MIN_ALLOC_SIZE) // ZS_SIZE_CLASS_DELTA), 0)  # fmt: skip
    return np.minimum(ZS_SIZE_CLASSES - 1, idx).astype(np.int64)


@dataclass
class Zspages:
    """The synthetic zspage structure of a trace's zram pages.

    Per zspage z (creation order): ``cls`` (class index), ``created`` (seq of its last
    page's allocation), ``page0``/``npages`` (its pages in ``pages``: dense object ids
    of the trace's zram pages), ``slot0`` (its first object slot; its objects are the
    ids ``slot0 .. slot0 + objs - 1``). Per object: ``free_seq`` (-1: never freed in
    the run). ``loose``: zram pages of the trace in no zspage (a chain the trace's
    last zram allocations left incomplete): their trace frees stand."""

    cls: np.ndarray
    created: np.ndarray
    page0: np.ndarray
    npages: np.ndarray
    slot0: np.ndarray
    pages: np.ndarray
    free_seq: np.ndarray
    loose: np.ndarray


def build_zspages(
    alloc_seq: np.ndarray, free_seq: np.ndarray, obj: np.ndarray, last_seq: int, seed: int,
    classes: SizeClasses,
) -> Zspages:  # fmt: skip
    """The zspages of zram pages allocated at ``alloc_seq`` (ascending) and freed by the
    trace at ``free_seq`` (-1: never), the pages' dense object ids ``obj``; the run's
    last seq ``last_seq``; ``seed`` the generator's (numpy PCG64). See the module's
    docstring."""
    rng = np.random.Generator(np.random.PCG64(seed))
    n = alloc_seq.shape[0]
    # page lifetimes in seqs; a page the trace never frees lives past the end the mean
    # life of the pages it frees (an exponential lifetime's residual)
    freed = free_seq >= 0
    mean_freed = int((free_seq - alloc_seq)[freed].mean()) if freed.any() else last_seq + 1
    life = np.where(freed, free_seq - alloc_seq, last_seq + 1 - alloc_seq + mean_freed)
    # a class per zspage in turn, from compressed sizes; a zspage takes the next
    # pages_per_zspage pages (at most n zspages: each takes a page at least)
    comp = np.clip(rng.lognormal(np.log(COMP_MEDIAN), COMP_SIGMA, n), 1.0, PAGE_SIZE)
    comp_len = comp.astype(np.int64)
    comp_len[comp_len >= classes.huge_class_size] = PAGE_SIZE  # zram stores it uncompressed
    cls = classes.index[get_size_class_index(comp_len + ZS_HANDLE_SIZE)]
    ends = np.cumsum(classes.pages[cls])
    nz = int(np.searchsorted(ends, n, side="right"))
    cls = cls[:nz].astype(np.int64)
    npages = classes.pages[cls].astype(np.int64)
    page0 = (ends[:nz] - npages).astype(np.int64)
    used = int(ends[nz - 1]) if nz else 0
    created = alloc_seq[page0 + npages - 1].astype(np.int64)
    objs = classes.objs[cls].astype(np.int64)
    slot0 = (np.cumsum(objs) - objs).astype(np.int64)
    # each zspage lives its pages' mean trace lifetime after its creation
    mean_life = np.zeros(nz, np.int64)
    if nz:
        mean_life = np.maximum(1, np.add.reduceat(life[:used], page0) // npages)
    total = int(objs.sum())
    owner = np.repeat(np.arange(nz, dtype=np.int64), objs)
    fs = created[owner] + 1 + np.floor(rng.random(total) * mean_life[owner]).astype(np.int64)
    # one object of each zspage (a random slot) is freed at its end exactly
    last = slot0 + np.minimum(objs - 1, np.floor(rng.random(nz) * objs).astype(np.int64))
    fs[last] = created + mean_life
    fs = np.where(fs > last_seq, -1, fs)
    return Zspages(cls=cls, created=created, page0=page0, npages=npages, slot0=slot0,
                   pages=obj[:used].astype(np.int64), free_seq=fs,
                   loose=obj[used:].astype(np.int64))  # fmt: skip


def check_seqs(ts_ns: np.ndarray, seqs: np.ndarray, interval_ns: int) -> np.ndarray:
    """The seqs before which the shrinker's checks run: the first event at or after each
    ``interval_ns`` of trace time from the first event (``ts_ns``/``seqs`` ascending),
    each seq once."""
    if ts_ns.shape[0] == 0:
        return np.zeros(0, np.int64)
    # the events where the period's count (trace time from the first event) goes up
    period = (ts_ns - ts_ns[0]) // interval_ns
    up = np.flatnonzero(period[1:] > period[:-1]) + 1
    return seqs[up].astype(np.int64)


# -- the simulation (numba) --------------------------------------------------------------


@njit(cache=True, inline="always", _nrt=False)
def get_fullness_group(inuse, objs):  # type: ignore[no-untyped-def]
    """``get_fullness_group``: 0 empty, 11 full, else 1 + tenths of use."""
    if inuse == 0:
        return 0
    if inuse == objs:
        return ZS_INUSE_RATIO_100
    return (100 * inuse // objs) // 10 + 1


@njit(cache=True)
def zs_simulate(cls, created, slot0, npages, c_size, c_pages, c_objs, free_order, free_seq,
                checks, compact, fill_pct, freed_z, freed_seq, freed_by, ck):  # type: ignore[no-untyped-def]  # fmt: skip
    """zsmalloc over the run: zspages created full at ``created`` (ascending), objects
    freed at ``free_seq`` (visited in ``free_order``: ascending seq, -1s left out),
    shrinker checks before ``checks`` (ascending), ``zs_compact`` at a check when
    ``compact`` and the pool's fill is below ``fill_pct`` % with something to
    compact. Per class index: ``c_size`` (bytes), ``c_pages``, ``c_objs`` (0: merged
    away). Fills ``freed_z``/``freed_seq``/``freed_by`` (zspage, seq, 1 when
    ``zs_compact`` freed it) per zspage freed, in order, and ``ck`` (one row of CK_*
    per check); returns how many zspages were freed."""
    nz = cls.shape[0]
    ncls = c_size.shape[0]
    nxt = np.full(nz, -1, np.int64)
    prv = np.full(nz, -1, np.int64)
    head = np.full(ncls * NR_FULLNESS_GROUPS, -1, np.int64)
    tail = np.full(ncls * NR_FULLNESS_GROUPS, -1, np.int64)
    fg = np.zeros(nz, np.int64)
    inuse = np.zeros(nz, np.int64)
    fhead = np.full(nz, -1, np.int64)  # zspage->freeobj: its first free slot (local)
    nslots = slot0[nz - 1] + c_objs[cls[nz - 1]] if nz else 0
    slot_obj = np.full(nslots, -1, np.int64)
    slot_next = np.full(nslots, -1, np.int64)
    slot_z = np.zeros(nslots, np.int64)
    obj_slot = np.arange(nslots)
    c_alloc = np.zeros(ncls, np.int64)  # ZS_OBJS_ALLOCATED
    c_inuse = np.zeros(ncls, np.int64)  # ZS_OBJS_INUSE
    for z in range(nz):
        for s in range(c_objs[cls[z]]):
            slot_z[slot0[z] + s] = z
    pool_pages = np.int64(0)
    nfreed = 0
    iz = 0
    jf = 0
    nf = free_order.shape[0]
    for k in range(checks.shape[0] + 1):
        stop = checks[k] if k < checks.shape[0] else (np.int64(1) << 62) - 1
        # events before the check: creations (at seq a, after event a) and frees (before
        # event t), in seq order; a free at seq t goes before a creation at seq t
        while True:
            t_free = free_seq[free_order[jf]] if jf < nf else np.int64(1) << 62
            t_new = created[iz] + 1 if iz < nz else np.int64(1) << 62
            if t_free > stop and t_new > stop:
                break
            if t_new <= t_free:
                z = iz
                iz += 1
                c = cls[z]
                n = c_objs[c]
                for s in range(n):
                    slot_obj[slot0[z] + s] = slot0[z] + s
                inuse[z] = n
                fg[z] = ZS_INUSE_RATIO_100
                list_add(
                    z, c * NR_FULLNESS_GROUPS + ZS_INUSE_RATIO_100, False, nxt, prv, head, tail
                )
                c_alloc[c] += n
                c_inuse[c] += n
                pool_pages += npages[z]
                continue
            o = free_order[jf]
            jf += 1
            sl = obj_slot[o]
            z = slot_z[sl]
            c = cls[z]
            # obj_free: the slot heads the zspage's free list
            slot_obj[sl] = -1
            slot_next[sl] = fhead[z]
            fhead[z] = sl - slot0[z]
            inuse[z] -= 1
            c_inuse[c] -= 1
            g = get_fullness_group(inuse[z], c_objs[c])
            if g != fg[z]:  # fix_fullness_group
                list_del(z, c * NR_FULLNESS_GROUPS + fg[z], nxt, prv, head, tail)
                list_add(z, c * NR_FULLNESS_GROUPS + g, False, nxt, prv, head, tail)
                fg[z] = g
            if g == ZS_INUSE_RATIO_0:  # zs_free -> free_zspage
                list_del(z, c * NR_FULLNESS_GROUPS, nxt, prv, head, tail)
                c_alloc[c] -= c_objs[c]
                pool_pages -= npages[z]
                freed_z[nfreed] = z
                freed_seq[nfreed] = free_seq[o]
                freed_by[nfreed] = 0
                nfreed += 1
        if k == checks.shape[0]:
            break
        # the shrinker's call: zs_shrinker_count, then zs_shrinker_scan -> zs_compact
        moved = np.int64(0)
        copied = np.int64(0)
        freed = np.int64(0)
        count = np.int64(0)
        objs_all = np.int64(0)
        slots_all = np.int64(0)
        for c in range(ncls):
            if c_objs[c] == 0:
                continue
            if c_alloc[c] > c_inuse[c]:
                count += (c_alloc[c] - c_inuse[c]) // c_objs[c] * c_pages[c]
            objs_all += c_inuse[c]
            slots_all += c_alloc[c]
        ran = compact and count > 0 and 100 * objs_all < fill_pct * slots_all
        if ran:
            for c in range(ncls - 1, -1, -1):
                if c_objs[c] == 0:
                    continue
                n = c_objs[c]
                base = c * NR_FULLNESS_GROUPS
                dst = np.int64(-1)
                while (c_alloc[c] - c_inuse[c]) // n * c_pages[c] > 0:  # zs_can_compact
                    if dst < 0:  # isolate_dst_zspage: the fullest group first
                        for g in range(ZS_INUSE_RATIO_99, ZS_INUSE_RATIO_10 - 1, -1):
                            if head[base + g] >= 0:
                                dst = head[base + g]
                                list_del(dst, base + g, nxt, prv, head, tail)
                                break
                        if dst < 0:
                            break
                    src = np.int64(-1)  # isolate_src_zspage: the emptiest group first
                    for g in range(ZS_INUSE_RATIO_10, ZS_INUSE_RATIO_99 + 1):
                        if head[base + g] >= 0:
                            src = head[base + g]
                            list_del(src, base + g, nxt, prv, head, tail)
                            break
                    if src < 0:
                        break
                    # migrate_zspage: the source's objects in slot order
                    for s in range(n):
                        o = slot_obj[slot0[src] + s]
                        if o < 0:
                            continue
                        d = fhead[dst]  # obj_malloc: the destination's first free slot
                        fhead[dst] = slot_next[slot0[dst] + d]
                        slot_obj[slot0[dst] + d] = o
                        obj_slot[o] = slot0[dst] + d
                        inuse[dst] += 1
                        sl = slot0[src] + s  # obj_free in the source
                        slot_obj[sl] = -1
                        slot_next[sl] = fhead[src]
                        fhead[src] = s
                        inuse[src] -= 1
                        moved += 1
                        copied += c_size[c]
                        if inuse[dst] == n or inuse[src] == 0:
                            break
                    g = get_fullness_group(inuse[src], n)  # putback_zspage(src)
                    fg[src] = g
                    list_add(src, base + g, False, nxt, prv, head, tail)
                    if g == ZS_INUSE_RATIO_0:
                        list_del(src, base, nxt, prv, head, tail)
                        c_alloc[c] -= n
                        pool_pages -= npages[src]
                        freed += npages[src]
                        freed_z[nfreed] = src
                        freed_seq[nfreed] = checks[k]
                        freed_by[nfreed] = 1
                        nfreed += 1
                    if inuse[dst] == n:  # a full destination is put back
                        fg[dst] = ZS_INUSE_RATIO_100
                        list_add(dst, base + ZS_INUSE_RATIO_100, False, nxt, prv, head, tail)
                        dst = -1
                if dst >= 0:
                    g = get_fullness_group(inuse[dst], n)
                    fg[dst] = g
                    list_add(dst, base + g, False, nxt, prv, head, tail)
            objs_all = np.int64(0)
            slots_all = np.int64(0)
            for c in range(ncls):
                objs_all += c_inuse[c]
                slots_all += c_alloc[c]
        ck[k, CK_SEQ] = checks[k]
        ck[k, CK_RAN] = 1 if ran else 0
        ck[k, CK_MOVED] = moved
        ck[k, CK_BYTES] = copied
        ck[k, CK_FREED] = freed
        ck[k, CK_PAGES] = pool_pages
        ck[k, CK_OBJS] = objs_all
        ck[k, CK_SLOTS] = slots_all
    return nfreed


@dataclass
class ZsResult:
    """What zsmalloc did over a run: the zspages freed (``freed_z``, at ``freed_seq``,
    ``freed_by`` 1 when zs_compact freed them), the checks (``ck``, rows of CK_*), the
    pool's pages at the end (``pages_end``) and the totals of zs_compact: objects moved,
    bytes copied, pages freed."""

    freed_z: np.ndarray
    freed_seq: np.ndarray
    freed_by: np.ndarray
    ck: np.ndarray
    pages_end: int
    objects_moved: int
    bytes_copied: int
    pages_freed: int


def simulate(zs: Zspages, classes: SizeClasses, checks: np.ndarray, compact: bool,
             fill_pct: int) -> ZsResult:  # fmt: skip
    """Run :func:`zs_simulate` over a structure from :func:`build_zspages`."""
    nz = zs.cls.shape[0]
    live = zs.free_seq >= 0
    order = np.flatnonzero(live)
    order = order[np.argsort(zs.free_seq[order], kind="stable")].astype(np.int64)
    freed_z = np.zeros(nz, np.int64)
    freed_seq = np.zeros(nz, np.int64)
    freed_by = np.zeros(nz, np.int8)
    ck = np.zeros((checks.shape[0], NR_CK), np.int64)
    nf = zs_simulate(zs.cls, zs.created, zs.slot0, zs.npages, classes.size, classes.pages,
                     classes.objs, order, zs.free_seq, checks.astype(np.int64), compact,
                     np.int64(fill_pct), freed_z, freed_seq, freed_by, ck)  # fmt: skip
    held = int(zs.npages.sum()) - int(zs.npages[freed_z[:nf]].sum())
    return ZsResult(freed_z=freed_z[:nf], freed_seq=freed_seq[:nf], freed_by=freed_by[:nf],
                    ck=ck, pages_end=held, objects_moved=int(ck[:, CK_MOVED].sum()),
                    bytes_copied=int(ck[:, CK_BYTES].sum()),
                    pages_freed=int(ck[:, CK_FREED].sum()))  # fmt: skip
