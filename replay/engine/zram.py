"""A run's zram pages under zsmalloc (``zsmalloc = "page" | "object" | "hybrid"``).

The engine side of replay.models.zsmalloc: which of the trace's pages are
zram's (``zram_classes``, by default the ``embedded-gpu-zram`` scenario's
zram gfp), their zspage structure and zsmalloc's run over them, computed
before the replay (zsmalloc's choices depend on its own objects only, never
on the buddy allocator's state), and what the replay does with them:

- the trace's frees of zspage pages are left out of the event stream; each
  zspage zsmalloc frees becomes a ``zs_free`` action (its pages freed to the
  model zone before that seq), whether it emptied by its objects' frees or by
  ``zs_compact``;
- ``hybrid``: a whole-zone page compaction (the ``compact`` action,
  ``compact_memory``) after each ``zs_compact`` call of the shrinker;
- ``page`` and ``hybrid``: the zram pages are migratable (``flags_sql``
  adds the zram classes to ``movable_classes``).

Units: seq (an action at seq s runs before event s), pages, bytes, objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from replay.errors import UsageError
from replay.models.config import RunConfig
from replay.models.zsmalloc import (
    CK_BYTES,
    CK_FREED,
    CK_MOVED,
    CK_OBJS,
    CK_PAGES,
    CK_RAN,
    CK_SEQ,
    CK_SLOTS,
    PAGE_SIZE,
    ZsResult,
    build_zspages,
    check_seqs,
    simulate,
    size_classes,
)
from replay.scenarios.workloads import GFP_ZRAM
from replay.store import Store

EMBEDDED = "embedded-gpu-zram"
DEFAULT_INTERVAL_MS = 100
DEFAULT_FILL_PCT = 100

ZRAM_POOL_SCHEMA = pa.schema(
    [pa.field("seq", pa.int64()), pa.field("compacted", pa.bool_())]
    + [pa.field(c, pa.int64()) for c in ("objects_moved", "bytes_copied", "pages_freed",
                                         "pages", "objects", "slots")]
)  # fmt: skip


def zram_classes(store: Store, trace_id: int, config: RunConfig) -> list[str]:
    """The comm/gfp substrings of the run's zram pages: ``zram_classes``, else on an
    ``embedded-gpu-zram`` trace its zram gfp; UsageError when neither names them."""
    named = config.get("zram_classes")
    if named:
        return list(named)
    meta = store.trace_row(trace_id)["meta"]
    if meta.get("scenario") == EMBEDDED:
        return [GFP_ZRAM]
    raise UsageError(
        f"zsmalloc = {config.get('zsmalloc')!r} needs the trace's zram pages: name them with "
        "zram_classes = [comm or gfp substrings] in the model's TOML (only an "
        f"{EMBEDDED} trace has them by default)"
    )


def movable_zram(config: RunConfig) -> bool:
    """Whether the run's page compactor may migrate zram pages (``page``, ``hybrid``)."""
    return config.get("zsmalloc") in ("page", "hybrid")


@dataclass
class ZramPlan:
    """zsmalloc's run over a trace: the actions the replay takes (seq, kind, argument:
    the dense object ids of the pages of a ``zs_free``), the trace's pages it owns
    (``pages``: the trace's object ids, whose trace frees are left out), the shrinker's
    checks as ``zram_pool`` rows and zsmalloc's totals (``result``)."""

    actions: list[tuple[int, str, Any]]
    pages: pa.Table
    pool: pa.Table
    result: ZsResult

    def costs(self, driver_migrated: int) -> dict[str, int]:
        """The run's ``zs_*`` columns, given the zram pages page compaction migrated."""
        return {
            "zs_objects_moved": self.result.objects_moved,
            "zs_bytes_copied": self.result.bytes_copied + driver_migrated * PAGE_SIZE,
            "zs_pages_freed": self.result.pages_freed,
            "zs_pages_migrated": driver_migrated,
            "zs_pages": self.result.pages_end,
        }


def plan(
    store: Store, trace_id: int, config: RunConfig, lo_seq: int, hi_seq: int,
    class_sql: Callable[[list[str], str], tuple[str, dict[str, str]]],
    dense: Callable[[np.ndarray], np.ndarray],
) -> ZramPlan:  # fmt: skip
    """zsmalloc over the trace's zram pages allocated in seqs ``[lo_seq, hi_seq)``
    (``class_sql``: SQL matching the classes; ``dense``: the run's object numbering)."""
    mode = config.get("zsmalloc")
    if lo_seq != 0:
        raise UsageError(
            "zsmalloc models the zram pages from the trace's first event: it cannot "
            "start from an observed state (--start observed, --at)"
        )
    where, params = class_sql(zram_classes(store, trace_id, config), "zr")
    pages = store.query(
        f"""WITH a AS (SELECT obj, seq FROM events WHERE trace_id = $t AND op = 'alloc'
                         AND "order" = 0 AND seq >= $lo AND seq < $hi AND {where})
            SELECT a.obj, a.seq AS alloc_seq, coalesce(min(f.seq), -1) AS free_seq
            FROM a LEFT JOIN events f ON f.trace_id = $t AND f.obj = a.obj
                 AND f.op = 'free' AND f.seq > a.seq AND f.seq < $hi
            GROUP BY a.obj, a.seq ORDER BY a.seq""",
        {"t": trace_id, "lo": lo_seq, "hi": hi_seq, **params},
    )
    ts = store.query(
        "SELECT seq, ts_ns FROM events WHERE trace_id = $t AND seq >= $lo AND seq < $hi "
        "ORDER BY seq",
        {"t": trace_id, "lo": lo_seq, "hi": hi_seq},
    )
    classes = size_classes()
    obj = pages.column("obj").to_numpy()
    zs = build_zspages(pages.column("alloc_seq").to_numpy(), pages.column("free_seq").to_numpy(),
                       np.arange(obj.shape[0], dtype=np.int64), hi_seq - 1,
                       int(config.get("zsmalloc_seed", 0)), classes)  # fmt: skip
    interval_ns = int(config.get("zsmalloc_interval_ms", DEFAULT_INTERVAL_MS)) * 1_000_000
    checks = check_seqs(ts.column("ts_ns").to_numpy(), ts.column("seq").to_numpy(), interval_ns)
    res = simulate(zs, classes, checks, mode in ("object", "hybrid"),
                   int(config.get("zsmalloc_fill_pct", DEFAULT_FILL_PCT)))  # fmt: skip
    dense_obj = dense(obj)
    actions: list[tuple[int, str, Any]] = []
    order = np.argsort(res.freed_seq, kind="stable")
    seqs = res.freed_seq[order]
    cuts = np.flatnonzero(np.diff(seqs)) + 1
    for grp in np.split(order, cuts) if order.shape[0] else []:
        idx = np.concatenate([np.arange(zs.page0[z], zs.page0[z] + zs.npages[z])
                              for z in res.freed_z[grp]])  # fmt: skip
        actions.append((int(res.freed_seq[grp[0]]), "zs_free", dense_obj[zs.pages[idx]]))
    if mode == "hybrid":
        ran = res.ck[res.ck[:, CK_RAN] == 1, CK_SEQ]
        actions += [(int(s), "compact", None) for s in ran]
        # at one seq: zsmalloc's frees, then the page compaction (a stable sort)
        actions.sort(key=lambda a: (a[0], a[1] == "compact"))
    ck = res.ck
    pool = pa.table(
        [pa.array(ck[:, CK_SEQ]), pa.array(ck[:, CK_RAN] == 1)]
        + [pa.array(ck[:, j]) for j in (CK_MOVED, CK_BYTES, CK_FREED, CK_PAGES, CK_OBJS,
                                         CK_SLOTS)],
        schema=ZRAM_POOL_SCHEMA,
    )  # fmt: skip
    return ZramPlan(actions=actions, pages=pa.table({"obj": pa.array(obj[zs.pages], pa.int64())}),
                    pool=pool, result=res)  # fmt: skip
