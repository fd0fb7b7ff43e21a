"""The what-if replay engine: a trace's events through a model, results into DuckDB.

The engine owns chunking, timing and writing results; the model kernel
(replay.models.events.replay_chunk) only transforms its state arrays and
fills result arrays. Events are read from the store in ``seq`` order in
chunks and the ``steps`` rows stream back in one INSERT; extfrag events and
pageblock snapshots are spooled to temporary Parquet files and inserted after
it. Memory does not grow with the trace length beyond the per-object
placement arrays. A run is one transaction: a failure leaves no ``runs``,
``steps``, ``extfrag`` or ``pageblocks`` row behind.

Models: ``buddy`` is the mobility kernel with grouping off (every free list
is MOVABLE: exactly the plain buddy allocator, checked against
tests/ref_buddy.py); ``mobility`` groups by migratetype; ``pcp = true`` adds
per-CPU lists to either.

Objects: every allocation is placed by the model (its pfn remembered per
object); a free frees ``placed[obj] + offset`` at its order. A failed
allocation's later frees are ignored (outcome ``ignored``). Objects whose
first event is a free (pages allocated before the trace began) are allocated
first, in order of first appearance, then ``--fill-from-snapshot`` background
pages, then the trace's events.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import duckdb
import numpy as np
import pyarrow as pa

from replay.engine.checkpoint import load_checkpoint, pack, store_checkpoint, unpack
from replay.engine.environment import (
    Environment,
    LowerZone,
    aligned_blocks,
    background_pages,
    background_stream,
    boot_blocks,
    lower_zone,
    object_index,
    snapshot_pagesets,
    zone_environment,
    zone_pageblocks,
)
from replay.engine.observed import ForkState, fork_state
from replay.engine.recorded import (
    PASS_BEGIN,
    PASS_END,
    PASS_ONCE,
    Migrations,
    fork_first_takes,
    fork_pageblock_types,
    fork_takes_and_types,
    free_list_order,
    kswapd_reclaim,
    migration_map,
    pcp_list_order,
    recorded_compactions,
    recorded_deferrals,
    recorded_drains,
    recorded_pcp_frees,
    recorded_pcp_refills,
)
from replay.engine.results import (
    CONTIGUITY_SCHEMA,
    EXTFRAG_SCHEMA,
    MODEL_EVENTS_SCHEMA,
    NF,
    PAGEBLOCKS_SCHEMA,
    RUNS_COLUMNS,
    STEPS_NARROW_SCHEMA,
    STEPS_SCHEMA,
    RunResult,
    Spool,
    insert_run,
    outputs,
    steps_batch,
)
from replay.errors import CheckpointError, NoEventInZoneError, UsageError
from replay.models.compaction import (
    compact_memory,
    compact_recorded,
    compact_recorded_begin,
    compact_recorded_step,
    reset_isolation_suitable,
)
from replay.models.config import RunConfig
from replay.models.defrag import (
    EX_BLOCKED,
    EX_EXCHANGED,
    EX_MIGRATED,
    alloc_contig,
    defrag_pass,
    exchange_pages,
)
from replay.models.events import replay_chunk
from replay.models.internal import (
    C_BULK,
    C_CLAIMS,
    C_DEGRADED,
    C_DRAINS,
    C_DRIVER_MIGRATED,
    C_EF,
    C_EVICTED,
    C_EXCHANGED,
    C_ME,
    C_MIGRATED,
    C_PCP_PAGES,
    C_POOL_CHUNKS,
    C_POOL_PAGES,
    C_REFILLS,
    C_SCANNED,
    C_SPLIT,
    C_SPLIT_FULL,
    C_STEALS,
    CAPC_ORDER,
    CAPC_PAGE,
    CAPC_PAGE_ORDER,
    CC_CAPC,
    CC_CAPC_PAGE,
    CC_FREE_GIVEN,
    CC_ORDER,
    CONTINUE,
    CZ_CONSIDERED,
    CZ_DF_DUE,
    CZ_ORDER_FAILED,
    CZ_SHIFT,
    CZ_VC_USED,
    DEFERRED,
    EF_COLS,
    F_CAPTURE,
    F_KERNEL_FAILED,
    F_LOWER_ZONE,
    F_MOVABLE,
    F_NORECLAIM,
    F_NORETRY,
    F_PINNED,
    F_RECLAIM,
    F_VCOMPOUND,
    GIVEN_COLS,
    K_COMPACT_ONESHOT,
    K_COMPACT_RECORDED,
    K_KSWAPD,
    KINDS,
    ME_COLS,
    MIGRATE_MOVABLE,
    MIGRATE_RECLAIMABLE,
    MIGRATE_UNMOVABLE,
    MODES,
    NR_CZ,
    NR_PAGE_ORDERS,
    NR_STATS,
    P_COMPACT,
    P_DEFRAG_IDLE,
    P_KSWAPD,
    P_KSWAPD_RECORDED,
    P_NCPU,
    P_PCP,
    P_PCP_RECORDED,
    P_POOL_ORDER,
    P_PRESSURE_OOM,
    P_PRESSURE_RECLAIM,
    P_REFILL_RECORDED,
    P_UNITS,
    P_VCOMPOUND,
    PAGEBLOCK_ORDER,
    PLACED_SPLIT_BASE,
    RESULTS,
    S_ALLOCS,
    S_BELOW_LOW,
    S_BELOW_MIN,
    S_EVICTED_FREES,
    S_FAILURES,
    S_FREES,
    S_IGNORED,
    S_POOL_FALLBACKS,
    S_SERVED_KERNEL_FAILED,
    ZONE_RECLAIM_ACTIVE,
    Objects,
    Zone,
    objects_from,
    pindex_to_order,
)
from replay.models.pcp import drain_all, pageblock_snapshot
from replay.models.plain_buddy import plain_eligible, replay_chunk_plain, resync
from replay.models.zone import ZoneImage, ZoneState
from replay.models.zonelist import replay_chunk_node
from replay.progress import Progress
from replay.spool import spool_or_temp
from replay.store import Store, gfp_direct_reclaim_sql
from replay.trace.reader import ahead

if TYPE_CHECKING:  # zsmalloc's runs import it (with the workloads): 10 ms the others skip
    from replay.engine.zram import ZramPlan

T = TypeVar("T")

CHUNK_EVENTS = 1 << 20
# Events per kernel call: its per-step output buffers (about 10 MB of rows) are
# page-faulted once and stay in cache while the batch is built from them (1M-event
# calls faulted 160 MB of fresh rows per run and missed cache on every row written).
STEP_EVENTS = 1 << 16
# Events read per query (each sorted by seq on its own): DuckDB's memory for the
# sort stays about 0.2 GB whatever the trace's length.
EVENT_WINDOW = 4 * CHUNK_EVENTS
# checkpoints over a run of more than 2 * CHUNK_EVENTS events, by default (at chunk ends)
CHECKPOINTS = 8


PAGEBLOCK_SNAPSHOTS = 100  # default number of pageblock snapshots over a run


def event_arrays(n: int) -> tuple[np.ndarray, ...]:
    """An empty event tuple as the kernel takes it: seq, is_alloc, obj, offset, order,
    migratetype, cpu, ts_ns, flags, owner (-1: none)."""
    return (np.zeros(n, np.int64), np.zeros(n, np.bool_), np.zeros(n, np.int64),
            np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int8),
            np.zeros(n, np.int16), np.zeros(n, np.int64), np.zeros(n, np.int16),
            np.full(n, -1, np.int64))  # fmt: skip


def warm_up(*, models: bool = True, plain: bool = True, oneshot: bool = True,
            node: bool = False) -> None:  # fmt: skip
    """Compile (or load from the cache) the kernels, so no timing includes a JIT: the
    models' replay kernel and pageblock snapshots (``models``), the plain buddy's path
    (``plain``), the one-shot compaction of ``compact_at`` (``oneshot``), the zonelist's
    node kernel (``node``). A run loads only those its model uses: each load from the
    cache costs about 0.1 s."""
    one = np.ones(1, np.bool_)
    ev = event_arrays(1)
    ev[1][0] = True
    z = ZoneState(0, 2, pcp=True, max_objects=1)
    if models:
        replay_chunk(0, 1, ev, one, one, z.objects, z.arrays, z.prm, z.counters, z.ef, z.me,
                     z.cz, z.mode, z.vc, np.zeros(NR_STATS, np.int64), 0, outputs(1),
                     z.pools)  # fmt: skip
        pageblock_snapshot(z.arrays, z.prm, np.zeros((z.npb, 6), np.int64))
    if node:
        lz = ZoneState(2, 2, pcp=True, max_objects=1)
        replay_chunk_node(0, 1, ev, one, one, z.objects, z.arrays, z.prm, z.counters, z.ef, z.me,
                          z.cz, z.mode, z.vc, np.zeros(NR_STATS, np.int64), 0, outputs(1),
                          z.pools, lz.arrays, lz.prm, lz.cz, lz.counters, lz.ef, lz.me,
                          lz.mode)  # fmt: skip
    if oneshot:
        compact_memory(-1, z.arrays, z.prm, z.objects, z.cz, z.counters, z.me)
    if plain:
        z = ZoneState(0, 2, grouping=False, max_objects=1)
        replay_chunk_plain(0, 1, ev, one, one, z.objects, z.arrays, z.prm,
                           np.zeros(NR_STATS, np.int64), 0, outputs(1))  # fmt: skip
        resync(z.arrays, z.prm)


# _Replay and ZoneState attributes that are output or scratch buffers, not state: each
# chunk leaves them flushed (ef, me: rows already spooled), or set up once and never
# written by a replay
_NOT_STATE = frozenset({"out", "_pb", "_pass_ef", "ef", "me", "_pb_index", "replay_s"})


def _allocator_settings(env: Environment, config: RunConfig) -> dict[str, Any]:
    """The ZoneState settings of a run's zone's allocator (pcp lists and their tuning,
    grouping, ALLOC_NOFRAGMENT, watermarks, extfrag_threshold) from its Environment and
    the run's config: the run's zone's and the zonelist's lower zone's alike."""
    return {
        "pcp": bool(config.get("pcp", False)), "ncpus": env.ncpus, "batch": env.batch,
        "high": env.high, "grouping": config.model == "mobility",
        "nofragment": bool(config.get("nofragment", True)),
        "extfrag_threshold": config.get("extfrag_threshold", 500), "wmark": env.wmark,
        "high_max": env.high_max, "pcp_tuning": bool(config.get("pcp_tuning", False)),
        "free_high_batch": bool(config.get("pcp_free_high_batch", False)),
        "pcp_decay_ns": config.get("pcp_decay_ms", 1000) * 1_000_000,
        "free_high_min": bool(config.get("pcp_free_high_min", env.kernel_at_least(6, 15))),
    }  # fmt: skip


def split_room(config: RunConfig, n_obj: int) -> int:
    """Object ids kept for the order-0 pieces of the folios the run's compaction splits
    (``try_split_folio``): a quarter of the run's objects, at least 131,072; none when no
    compaction runs. A folio compaction cannot place whole once the room is used up
    stays where it is."""
    compacts = (config.get("compaction", "off") != "off" or bool(config.get("compact_at"))
                or bool(config.get("recorded_compaction")))  # fmt: skip
    return max(1 << 17, n_obj // 4) if compacts else 0


def flags_table(kswapd_movable: bool = True) -> np.ndarray:
    """F_* flags (int8) of objects known by their migratetype only (no event flags), by
    the type's byte (-1, none: 255): F_MOVABLE when MOVABLE; F_RECLAIM when RECLAIMABLE,
    and when MOVABLE if kswapd may evict movable pages."""
    table = np.zeros(256, np.int8)
    table[MIGRATE_MOVABLE] = F_MOVABLE
    table[MIGRATE_RECLAIMABLE] = F_RECLAIM
    if kswapd_movable:
        table[MIGRATE_MOVABLE] |= F_RECLAIM
    return table


def type_flags(mts: np.ndarray, kswapd_movable: bool = True) -> np.ndarray:
    """:func:`flags_table`'s flags of objects of types ``mts`` (int8): one table look-up
    per object (a fork adopts millions)."""
    return flags_table(kswapd_movable)[np.asarray(mts, np.int8).view(np.uint8)]


class _Replay:
    """A model zone plus what the kernel writes into, across passes and chunks."""

    def __init__(self, env: Environment, config: RunConfig, n_obj: int, tmp: Path,
                 n_owners: int = 1, image: ZoneImage | None = None) -> None:  # fmt: skip
        thresholds = {int(k): int(n) for k, n in config.get("defrag_thresholds", [])}
        # the model's zone: the span, or the memory the trace shows (env.memory's dense pfns)
        self.zone = ZoneState(
            env.start_pfn, env.model_pages, **_allocator_settings(env, config),
            compaction=config.get("compaction", "off"),
            proactiveness=config.get("proactiveness", 20),
            kswapd=config.get("kswapd", "off"), vcompound_order=config.get("vcompound_order", 0),
            pressure=_pressure(config, env),
            defrag_idle_ns=config.get("defrag_idle_ms", 100) * 1_000_000 if thresholds else 0,
            defrag_thresholds=thresholds, pool_order=config.get("pool_order", 0),
            pool_owners=n_owners, max_objects=n_obj, split_room=split_room(config, n_obj),
            image=image,
        )  # fmt: skip
        # pg_obj (which object's unit starts at each page) is kept only when a model
        # moves, evicts or reads units; set_regions turns it on for contiguity too.
        self.zone.prm[P_UNITS] = int(
            config.get("compaction", "off") != "off" or bool(config.get("compact_at"))
            or config.get("kswapd", "off") != "off" or config.get("vcompound_order", 0) > 0
            or bool(thresholds) or bool(config.get("exchange_at"))
            or bool(config.get("contig_at")) or config.get("pool_order", 0) > 0
            or bool(config.get("recorded_compaction")) or config.get("zsmalloc") == "hybrid"
        )  # fmt: skip
        self.config = config
        self.env = env
        self.ncpus = env.ncpus
        self.objects = self.zone.objects
        # the zonelist's lower zone (DMA32), when the model chooses zones
        # (zone_choice = zonelist, replay.models.zonelist)
        self.lower: ZoneState | None = None
        self.stats = np.zeros(NR_STATS, np.int64)
        self.ef = np.zeros((1 << 16, len(EF_COLS)), np.int64)
        self.me = np.zeros((1 << 14, len(ME_COLS)), np.int64)
        self.vc = np.zeros(1 << 16 if config.get("vcompound_order", 0) else 1 << 11, np.int64)
        self.replay_s = 0.0
        self.extfrag = Spool(tmp / "extfrag.parquet", EXTFRAG_SCHEMA)
        self.pageblocks = Spool(tmp / "pageblocks.parquet", PAGEBLOCKS_SCHEMA)
        self.model_events = Spool(tmp / "model_events.parquet", MODEL_EVENTS_SCHEMA)
        self.contiguity = Spool(tmp / "contiguity.parquet", CONTIGUITY_SCHEMA)
        self.compactions = 0
        self.zram: ZramPlan | None = None  # zsmalloc's run (replay.engine.zram)
        # the trace's object numbering (object_index): ids (None: dense) and how many
        self.obj_ids: np.ndarray | None = None
        self.n_trace_obj = 0
        # a recorded pass in progress: its compact_control between steps, its result so
        # far, its free-scanner isolations not replayed yet (GIVEN_COLS values each)
        self.passes: dict[int, list[Any]] = {}
        self.contig_pages = 0
        self._pass_ef: np.ndarray | None = None
        # regions (exchange pages, contiguity): per object its dense region (-1: none) and
        # vpn; per region its id in the trace and its exchange anchor (vpn, pfn)
        # (set_regions makes them n_obj long: a trace without regions needs neither)
        self.n_obj = n_obj
        self.obj_region = np.zeros(0, np.int64)
        self.obj_vpn = np.zeros(0, np.int64)
        self.region_ids = np.zeros(0, np.int64)
        self.anchor_vpn = np.zeros(0, np.int64)
        self.anchor_pfn = np.zeros(0, np.int64)
        self._pb = np.zeros((self.zone.npb, 6), np.int64)
        self.out = outputs(min(CHUNK_EVENTS, STEP_EVENTS))
        self._pb_index = (
            env.to_real(
                (np.arange(self.zone.npb, dtype=np.int64) + (env.start_pfn >> PAGEBLOCK_ORDER))
                << PAGEBLOCK_ORDER
            )
            >> PAGEBLOCK_ORDER
        )

    def set_lower(self, lz: LowerZone) -> None:
        """Give the node its lower zone (``lz``): the allocator with the run's pcp,
        grouping and tuning settings, the zone's own watermarks, pcp sizes and reserve,
        and direct compaction when the run has it (replay.models.zonelist). Its objects
        are the run's."""
        config, lenv = self.config, lz.env
        direct = config.get("compaction", "off") in ("direct", "both")
        self.lower = ZoneState(
            lenv.start_pfn, lenv.pages, **_allocator_settings(lenv, config),
            compaction="direct" if direct else "off", max_objects=1,
            lowmem_reserve=lz.reserve,
        )  # fmt: skip
        self.lower.prm[P_UNITS] = self.zone.prm[P_UNITS]
        self.lower.objects = self.zone.objects

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Every array (and int) the replay reads or writes between events, by name: the
        zone's arrays and parameters, the objects, counters, statistics, the virtual
        compound pool, the recorded compaction passes in progress (a checkpoint,
        replay.engine.checkpoint). Not the output and scratch buffers: each chunk
        leaves them flushed."""
        out: dict[str, np.ndarray] = {}
        owners: list[tuple[str, Any]] = [("rp", self), ("zone", self.zone)]
        if self.lower is not None:
            owners.append(("lower", self.lower))
        for owner, obj in owners:
            for name, v in vars(obj).items():
                if name in _NOT_STATE or name == "lower" or (name == "objects" and owner != "zone"):
                    continue
                key = f"{owner}.{name}"
                if isinstance(v, np.ndarray):
                    out[key] = v
                elif isinstance(v, tuple) and v and all(isinstance(a, np.ndarray) for a in v):
                    for i, a in enumerate(v):
                        out[f"{key}.{i}"] = a
                elif isinstance(v, int) and not isinstance(v, bool):
                    out[key] = np.array(v, np.int64)
        ids = np.array(sorted(self.passes), np.int64)
        out["passes.ids"] = ids
        out["passes.cc"] = np.array([self.passes[int(i)][0] for i in ids], np.int64).reshape(
            ids.shape[0], NR_CZ - CC_ORDER)  # fmt: skip
        out["passes.r"] = np.array([int(self.passes[int(i)][1]) for i in ids], np.int64)
        # each pass's free-scanner isolations not replayed yet, one after another
        out["passes.ngiven"] = np.array([self.passes[int(i)][2].shape[0] for i in ids], np.int64)
        out["passes.given"] = np.concatenate(
            [np.zeros(0, np.int64)] + [self.passes[int(i)][2] for i in ids]
        )
        return out

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state_arrays` saved, into a replay set up for the same run."""
        parts: dict[tuple[str, str], dict[int, np.ndarray]] = {}
        for key, a in arrays.items():
            owner, _, rest = key.partition(".")
            if owner not in ("rp", "zone", "lower"):
                continue
            if owner == "lower" and self.lower is None:
                raise CheckpointError(f"the checkpoint holds {key}: a zonelist run's")
            obj = {"rp": self, "zone": self.zone, "lower": self.lower}[owner]
            name, _, idx = rest.partition(".")
            if not hasattr(obj, name):
                raise CheckpointError(f"the checkpoint holds {key}, which this replay has not")
            if idx:
                parts.setdefault((owner, name), {})[int(idx)] = a
            elif isinstance(getattr(obj, name), np.ndarray):
                setattr(obj, name, a)
            else:
                setattr(obj, name, int(a))
        for (owner, name), got in parts.items():
            obj = {"rp": self, "zone": self.zone, "lower": self.lower}[owner]
            cur = getattr(obj, name)
            if len(got) != len(cur):
                raise CheckpointError(f"the checkpoint holds {len(got)} arrays of {owner}."
                                      f"{name}, this replay {len(cur)}")  # fmt: skip
            vals = [got[i] for i in range(len(cur))]
            if isinstance(cur, Objects):
                setattr(obj, name, objects_from(vals))
            else:
                setattr(obj, name, type(cur)(*vals) if hasattr(cur, "_fields") else tuple(vals))
        self.objects = self.zone.objects
        if self.lower is not None:
            self.lower.objects = self.zone.objects
        ends = np.cumsum(arrays["passes.ngiven"])
        given = np.split(arrays["passes.given"], ends[:-1]) if ends.shape[0] else []
        self.passes = {
            int(i): [cc.copy(), int(r), g.copy()]
            for i, cc, r, g in zip(arrays["passes.ids"], arrays["passes.cc"], arrays["passes.r"],
                                   given, strict=True)
        }  # fmt: skip

    def apply(
        self,
        ev: tuple[np.ndarray, ...],
        keep_row: np.ndarray,
        keep_counters: np.ndarray,
        out: tuple[np.ndarray, ...],
        snap_at: np.ndarray | None = None,
        actions: list[tuple[int, str, Any]] | None = None,
    ) -> int:
        """Run the kernel over all of ``ev``; pageblock snapshots after the indices in
        snap_at; ``actions`` (index, kind, argument) before the event at that index (the
        length of ``ev``: after the last): ``compact`` (one-shot compaction),
        ``exchange`` (exchange pages), ``contig`` (a contiguous range allocation,
        argument [pages] or [pages, pfn]), ``compact_recorded`` (a step of a pass the
        recorded kernel ran), ``reclaim_active`` (argument (1,) or (0,): the recorded
        kswapd's reclaim began or ended), ``drain_all`` (the recorded kernel drained
        every cpu's pcp lists), ``pcp_bulk`` (argument (zone, cpu, pages, pindex): one
        of its bulk frees of a cpu's pcp lists; zone 0 the run's, 1 the lower one).
        Active defragmentation passes run where the kernel stops for them."""
        n = ev[0].shape[0]
        bounds: list[tuple[int, int, str, Any]] = []
        for j, kind, arg in actions or []:
            bounds.append((int(j), 1, kind, arg))
        if snap_at is not None:
            bounds += [(int(j) + 1, 0, "snap", None) for j in snap_at]
        bounds.sort(key=lambda b: (b[0], b[1]))  # a snapshot, then the actions
        if not bounds or bounds[-1][0] != n:
            bounds.append((n, 2, "", None))
        i = r = 0
        z = self.zone
        # the plain buddy alone: its own path, the skipped counters rebuilt at each stop
        plain = plain_eligible(z.prm) and self.lower is None
        lz = self.lower
        for stop, _, what, arg in bounds:
            while i < stop:
                t0 = time.perf_counter()
                if plain:
                    i, r = replay_chunk_plain(i, stop, ev, keep_row, keep_counters,
                                              self.objects, z.arrays, z.prm, self.stats, r,
                                              out)  # fmt: skip
                    resync(z.arrays, z.prm)
                elif lz is not None:
                    i, r = replay_chunk_node(
                        i, stop, ev, keep_row, keep_counters, self.objects, z.arrays, z.prm,
                        z.counters, self.ef, self.me, z.cz, z.mode, self.vc, self.stats, r, out,
                        z.pools, lz.arrays, lz.prm, lz.cz, lz.counters, lz.ef, lz.me, lz.mode,
                    )  # fmt: skip
                else:
                    i, r = replay_chunk(i, stop, ev, keep_row, keep_counters, self.objects,
                                        z.arrays, z.prm, z.counters, self.ef, self.me, z.cz,
                                        z.mode, self.vc, self.stats, r, out, z.pools)  # fmt: skip
                self.replay_s += time.perf_counter() - t0
                self.flush()
                if i < stop and z.cz[CZ_DF_DUE]:
                    self.defrag(int(ev[0][i]))
            seq = int(ev[0][stop]) if stop < n else -1
            if what == "snap":
                self.snapshot(int(ev[0][stop - 1]))
            elif what == "compact":
                self.compact_memory(seq)
            elif what == "compact_recorded":
                self.compact_recorded(seq, arg)
            elif what == "compact_recorded_lower" and lz is not None:
                self.compact_recorded(seq, arg, lz)
            elif what == "reclaim_active":
                z.arrays.zone_flags[ZONE_RECLAIM_ACTIVE] = arg[0]
                if lz is not None:  # kswapd balances every zone of its node
                    lz.arrays.zone_flags[ZONE_RECLAIM_ACTIVE] = arg[0]
                if arg[0] == 0:
                    # kswapd_try_to_sleep: reset_isolation_suitable(pgdat), every zone
                    reset_isolation_suitable(z.arrays, z.prm, z.cz, self.objects)
                    if lz is not None:
                        reset_isolation_suitable(lz.arrays, lz.prm, lz.cz, self.objects)
            elif what == "pcp_refill":
                zs = z if arg[0] == 0 else lz
                if zs is not None and arg[1] < int(zs.prm[P_NCPU]):
                    zs.pcp_refill(arg[4], arg[2], arg[3], arg[1], seq)
            elif what == "pcp_bulk":
                zs = z if arg[0] == 0 else lz
                if zs is not None and arg[1] < int(zs.prm[P_NCPU]):
                    zs.pcp_bulk(arg[2], arg[1], arg[3])
            elif what == "defer_state":
                zs = z if arg[0] == 0 else lz
                if zs is not None:
                    zs.cz[CZ_CONSIDERED] = arg[1]
                    zs.cz[CZ_SHIFT] = arg[2]
                    zs.cz[CZ_ORDER_FAILED] = arg[3]
            elif what == "drain_all":
                drain_all(z.arrays, z.prm, z.counters)
                if lz is not None:  # drain_all_pages(NULL): every zone
                    drain_all(lz.arrays, lz.prm, lz.counters)
            elif what == "exchange":
                self.exchange(seq)
            elif what == "contig":
                self.alloc_contig(seq, arg)
            elif what == "zs_free":
                self.free_objects(arg, seq, int(ev[7][min(stop, n - 1)]))
        return r

    def _pass_buffer(self) -> np.ndarray:
        """An extfrag buffer for a pass between events (one row per target allocation)."""
        if self._pass_ef is None:
            self._pass_ef = np.zeros((min(self.zone.pages, 1 << 20) + 1024, len(EF_COLS)),
                                     np.int64)  # fmt: skip
        return self._pass_ef

    def defrag(self, seq: int) -> None:
        """An active defragmentation pass before event ``seq``."""
        z = self.zone
        ef = self._pass_buffer()
        t0 = time.perf_counter()
        defrag_pass(seq, z.arrays, z.prm, self.objects, z.cz, z.counters, ef, z.mode, self.me)
        self.replay_s += time.perf_counter() - t0
        self.flush_extfrag(ef)
        self.flush()

    def alloc_contig(self, seq: int, arg: list[int]) -> None:
        """A contiguous range allocation of ``arg[0]`` pages (at pfn ``arg[1]`` if given)
        before event ``seq``; the pages stay allocated to the end of the run."""
        z = self.zone
        n = int(arg[0])
        pfn = int(arg[1]) if len(arg) > 1 else -1
        if pfn >= 0 and self.env.memory is not None:
            pfn = int(self.env.to_model(np.array([pfn]))[0])
            if pfn < 0:
                raise UsageError(f"contig_at pfn {arg[1]} is in memory the trace never touches "
                                 f"(the run's zone is {self.env.memory.describe()})")  # fmt: skip
        ef = self._pass_buffer()
        best = self.config.get("contig_policy", "first") == "best"
        t0 = time.perf_counter()
        got, moved, tried = alloc_contig(n, pfn, best, seq, z.arrays, z.prm, self.objects,
                                           z.counters, ef, z.mode)  # fmt: skip
        self.replay_s += time.perf_counter() - t0
        self.flush_extfrag(ef)
        ok = got >= 0
        self.contig_pages += n if ok else 0
        self._model_event_rows(
            seq=[seq], kind="contig", start_pfn=[got if ok else None],
            end_pfn=[got + n if ok else None], moved=[int(moved)],
            failed=[int(tried) - int(ok)], result=["SUCCESS" if ok else "FAILED"],
            scanned_migrate=[n],
        )  # fmt: skip

    def set_regions(self, obj: np.ndarray, region: np.ndarray, vpn: np.ndarray,
                    order: np.ndarray) -> None:  # fmt: skip
        """The trace's regions: objects' (region, vpn) and each region's exchange anchor.

        As in the exchange pages patchset: anchors laid out in region id order from
        the zone's start, each region after the previous one's span of vpns."""
        self.zone.prm[P_UNITS] = 1  # contiguity reads which objects are still in place
        self.region_ids, dense = np.unique(region, return_inverse=True)
        self.obj_region = np.full(self.n_obj, -1, np.int64)
        self.obj_vpn = np.zeros(self.n_obj, np.int64)
        self.obj_region[obj] = dense
        self.obj_vpn[obj] = vpn
        nr = self.region_ids.shape[0]
        lo = np.full(nr, np.iinfo(np.int64).max, np.int64)
        hi = np.zeros(nr, np.int64)
        np.minimum.at(lo, dense, vpn)
        np.maximum.at(hi, dense, vpn + (np.int64(1) << order.astype(np.int64)))
        size = hi - lo
        self.anchor_vpn = lo
        self.anchor_pfn = self.zone.start_pfn + np.concatenate([[0], np.cumsum(size)[:-1]])

    def _region_units(self) -> tuple[np.ndarray, np.ndarray]:
        """The placed objects of every region, by (region, vpn); and their targets (pfn)."""
        placed = self.objects.placed[: self.n_obj]  # not the split room's pieces
        live = np.flatnonzero((self.obj_region >= 0) & (placed >= 0))
        # still allocated: its unit starts where it was placed (a free clears pg_obj)
        pg_obj = self.zone.arrays.pg_obj
        live = live[pg_obj[placed[live] - self.zone.start_pfn] == live]
        live = live[np.lexsort((self.obj_vpn[live], self.obj_region[live]))]
        reg = self.obj_region[live]
        return live, self.anchor_pfn[reg] + (self.obj_vpn[live] - self.anchor_vpn[reg])

    def record_contiguity(
        self, seq: int, phase: str, units: tuple[np.ndarray, np.ndarray] | None = None
    ) -> None:
        """One ``contiguity`` row per region: its runs (pfn - vpn constant) before event
        ``seq`` (-1: after the last); ``phase`` before_exchange | after_exchange | end.
        ``units``: ``_region_units()`` when the caller has it (an exchange pass moves
        units but does not change which are allocated)."""
        if self.region_ids.shape[0] == 0:
            return
        xs, targets = self._region_units() if units is None else units
        placed = self.objects.placed
        t = contiguity(self.obj_region[xs], self.obj_vpn[xs], placed[xs],
                       self.objects.obj_order[xs].astype(np.int64), targets,
                       self.region_ids.shape[0])  # fmt: skip
        keep = t["pages"] > 0
        m = int(keep.sum())
        cols = [pa.array(np.full(m, seq, np.int64)), pa.array([phase] * m, pa.string()),
                pa.array(self.region_ids[keep])]  # fmt: skip
        cols += [pa.array(t[c][keep]) for c in ("pages", "runs", "largest_run", "in_place",
                                                 "top1_pct", "top4_pct")]  # fmt: skip
        self.contiguity.write(pa.RecordBatch.from_arrays(cols, schema=CONTIGUITY_SCHEMA))

    def exchange(self, seq: int) -> None:
        """Exchange pages over every region before event ``seq``: a model event per region,
        contiguity rows after the pass."""
        if self.region_ids.shape[0] == 0:
            return
        z = self.zone
        if z.prm[P_PCP]:
            drain_all(z.arrays, z.prm, z.counters)
        xs, targets = self._region_units()
        self.record_contiguity(seq, "before_exchange", (xs, targets))
        res = np.zeros(xs.shape[0], np.int8)
        t0 = time.perf_counter()
        exchange_pages(xs, targets, z.arrays, z.prm, self.objects, z.counters, res)
        self.replay_s += time.perf_counter() - t0
        reg = self.obj_region[xs]
        pages = np.int64(1) << self.objects.obj_order[xs].astype(np.int64)
        nr = self.region_ids.shape[0]

        def per_region(mask: np.ndarray) -> np.ndarray:
            return np.bincount(reg[mask], weights=pages[mask], minlength=nr).astype(np.int64)

        total = per_region(np.ones(xs.shape[0], np.bool_))
        moved = per_region(res == EX_MIGRATED)
        exchanged = 2 * per_region(res == EX_EXCHANGED)
        blocked = per_region(res >= EX_BLOCKED)
        span = np.zeros(nr, np.int64)
        np.maximum.at(span, reg, targets + pages - self.anchor_pfn[reg])
        has = np.flatnonzero(total > 0)
        self._model_event_rows(
            seq=[seq] * has.shape[0], kind="exchange", start_pfn=self.anchor_pfn[has],
            end_pfn=self.anchor_pfn[has] + span[has], scanned_migrate=total[has],
            moved=moved[has], failed=blocked[has], exchanged=exchanged[has],
            result=np.where(blocked[has] > 0, "PARTIAL_SKIPPED", "COMPLETE"),
        )  # fmt: skip
        self.record_contiguity(seq, "after_exchange", (xs, targets))

    def _model_event_rows(self, seq: Any, kind: str, **cols: Any) -> None:
        """model_events rows written from Python (the passes between events)."""
        self.flush_model_events()
        n = len(seq)
        data: dict[str, Any] = {"seq": pa.array(seq, pa.int64()),
                                "kind": pa.array([kind] * n, pa.string()),
                                "order": pa.array([-1] * n, pa.int8())}  # fmt: skip
        for f in MODEL_EVENTS_SCHEMA:
            if f.name in data:
                continue
            if f.name == "free_pages":
                data[f.name] = pa.array([self.zone.free_pages()] * n, pa.int64())
            elif f.name in cols:
                v = list(cols[f.name])
                if f.name in ("start_pfn", "end_pfn") and self.env.memory is not None:
                    back = self.env.to_real if f.name == "start_pfn" else self.env.to_real_end
                    v = [None if x is None else int(back(np.array([x]))[0]) for x in v]
                data[f.name] = pa.array(v, f.type)
            else:
                data[f.name] = pa.nulls(n, f.type)
        self.model_events.write(
            pa.RecordBatch.from_arrays(
                [data[f.name] for f in MODEL_EVENTS_SCHEMA], schema=MODEL_EVENTS_SCHEMA
            )
        )

    def compact_memory(self, seq: int) -> None:
        """One-shot whole-zone compaction (``compact_at``), before event ``seq``."""
        z = self.zone
        t0 = time.perf_counter()
        compact_memory(seq, z.arrays, z.prm, self.objects, z.cz, z.counters, self.me)
        self.replay_s += time.perf_counter() - t0
        self.flush()

    def compact_recorded(self, seq: int, arg: tuple[int, ...], zone: ZoneState | None = None
                         ) -> None:  # fmt: skip
        """The model's compaction where the recorded kernel compacted: ``arg`` is (pass,
        phase, order, mode, budget, the scanners' pfns at the begin and the end, cpu; see
        replay.engine.recorded.recorded_compactions). Each pass in progress keeps its
        own compact_control between its steps (passes of several tasks overlap).
        ``zone``: the zonelist's lower zone for its passes (default: the run's zone)."""
        z = self.zone if zone is None else zone
        me = self.me if zone is None else zone.me
        pass_, phase, order, mode, budget = arg[:5]
        # the scanners at the begin and the end, this batch's migration range, then the
        # free-scanner isolations it may replay (replay.models.internal's SCAN_NFREE on;
        # none recorded: -1): the pass's earlier ones the model has not needed yet (it
        # took them in the kernel's order), then the batch's own
        given = np.array(arg[14:], np.int64)
        if pass_ in self.passes:
            given = np.concatenate([self.passes[pass_][2], given])
        nfree = given.shape[0] // GIVEN_COLS if len(arg) > 13 else -1
        scan = np.array([*arg[5:9], *arg[11:13], nfree, *given], np.int64)
        cpu = arg[9] % self.ncpus
        capture = arg[10]  # the allocation served after the pass (-1: none captures)
        t0 = time.perf_counter()
        if phase == PASS_ONCE:
            compact_recorded(order, mode, budget, scan, cpu, seq, z.arrays, z.prm, self.objects,
                             z.cz, z.counters, me)  # fmt: skip
        elif phase == PASS_BEGIN:
            compact_recorded_begin(order, mode, scan, cpu, capture != -1, z.arrays, z.prm,
                                   self.objects, z.cz)  # fmt: skip
            self.passes[pass_] = [z.cz[CC_ORDER:NR_CZ].copy(), CONTINUE, given[:0]]
        elif pass_ in self.passes:
            cc, r, _ = self.passes[pass_]
            last = phase == PASS_END
            if r == CONTINUE or last:
                z.cz[CC_ORDER:NR_CZ] = cc
                r = int(compact_recorded_step(budget, last, capture >= 0, r, scan, cpu, seq,
                                              z.arrays, z.prm, self.objects, z.cz, z.counters,
                                              me))  # fmt: skip
                used = int(z.cz[CC_FREE_GIVEN]) * GIVEN_COLS
                self.passes[pass_] = [z.cz[CC_ORDER:NR_CZ].copy(), r, given[used:].copy()]
            if last:
                del self.passes[pass_]
        if zone is not None:  # the lower zone's rows join the run's model events
            n = int(zone.counters[C_ME])
            if int(self.zone.counters[C_ME]) + n > self.me.shape[0]:
                self.flush_model_events()
            at = int(self.zone.counters[C_ME])
            self.me[at : at + n] = zone.me[:n]
            self.zone.counters[C_ME] = at + n
            zone.counters[C_ME] = 0
        self.replay_s += time.perf_counter() - t0
        self.flush()

    def flush(self) -> None:
        """Spool the extfrag and model-event buffers; grow the virtual compound pool."""
        self.flush_extfrag()
        self.flush_model_events()
        used = int(self.zone.cz[CZ_VC_USED])
        if used + (2 << NF) > self.vc.shape[0]:
            self.vc = np.concatenate([self.vc, np.zeros_like(self.vc)])

    def flush_extfrag(self, ef: np.ndarray | None = None) -> None:
        """Spool the extfrag rows of ``ef`` (default: the kernel's buffer)."""
        n = int(self.zone.counters[C_EF])
        if n == 0:
            return
        e = (self.ef if ef is None else ef)[:n]
        cols = [pa.array(e[:, 0]), pa.array(self.env.to_real(e[:, 1]))]
        cols += [pa.array(e[:, j].astype(np.int8)) for j in range(2, 6)]
        cols += [pa.array(e[:, 6] != 0), pa.array(e[:, 7] != 0)]
        self.extfrag.write(pa.RecordBatch.from_arrays(cols, schema=EXTFRAG_SCHEMA))
        self.zone.counters[C_EF] = 0

    def flush_model_events(self) -> None:
        n = int(self.zone.counters[C_ME])
        if n == 0:
            return
        e = self.me[:n]
        kinds = np.array(KINDS, dtype=object)[e[:, 1]]
        compacting = (e[:, 1] <= K_COMPACT_ONESHOT) | (e[:, 1] == K_COMPACT_RECORDED)
        modes = np.where(
            compacting,
            np.array(MODES, dtype=object)[np.clip(e[:, 3], 0, 1)],
            np.where(e[:, 1] == K_KSWAPD,
                     np.array(["lru", "targeted"], dtype=object)[np.clip(e[:, 3], 0, 1)], None),
        )  # fmt: skip
        self.compactions += int(np.count_nonzero(compacting & (e[:, 13] != DEFERRED)))
        cols = [
            pa.array(e[:, 0]),
            pa.array(kinds, pa.string()),
            pa.array(e[:, 2].astype(np.int8)),
            pa.array(modes, pa.string()),
        ]
        # start_pfn, end_pfn (exclusive), migrate_pfn, free_pfn: the trace's pfns
        cols += [
            pa.array(self.env.to_real(e[:, 4])),
            pa.array(self.env.to_real_end(e[:, 5])),
            pa.array(self.env.to_real(e[:, 6])),
            pa.array(self.env.to_real(e[:, 7])),
        ]
        cols += [pa.array(e[:, j]) for j in range(8, 13)]
        cols += [pa.array(np.array(RESULTS, dtype=object)[e[:, 13]], pa.string()),
                 pa.array(e[:, 14]), pa.array(e[:, 15])]  # fmt: skip
        self.model_events.write(pa.RecordBatch.from_arrays(cols, schema=MODEL_EVENTS_SCHEMA))
        self.zone.counters[C_ME] = 0

    def snapshot(self, seq: int) -> None:
        """One ``pageblocks`` row per pageblock: the state after step ``seq``."""
        pageblock_snapshot(self.zone.arrays, self.zone.prm, self._pb)
        p = self._pb
        cols: list[pa.Array] = [
            pa.array(np.full(p.shape[0], seq, np.int64)),
            pa.array(self._pb_index),
            pa.array(p[:, 0].astype(np.int8)),
        ]
        cols += [pa.array(p[:, j].astype(np.int32)) for j in range(1, 6)]
        self.pageblocks.write(pa.RecordBatch.from_arrays(cols, schema=PAGEBLOCKS_SCHEMA))

    def allocate_all(self, obj: np.ndarray, order: np.ndarray, mt: np.ndarray) -> None:
        """Allocations only, no step rows and no defragmentation (the pre-existing and
        background passes). Objects are movable/reclaimable by their type."""
        n = obj.shape[0]
        if n == 0:
            return
        no = np.zeros(n, np.bool_)
        ev = event_arrays(n)
        ev[0][:] = -1
        ev[1][:] = True
        ev[2][:] = obj
        ev[4][:] = order
        ev[5][:] = mt
        ev[8][:] = self.type_flags(ev[5])
        prm = self.zone.prm
        saved = prm.copy()
        prm[P_COMPACT] = prm[P_VCOMPOUND] = 0
        prm[P_PRESSURE_RECLAIM] = prm[P_PRESSURE_OOM] = 0
        prm[P_KSWAPD] = prm[P_DEFRAG_IDLE] = 0
        try:
            self.apply(ev, no, no, outputs(0))
        finally:
            prm[:] = saved
        # pre-existing reclaimable pages are kswapd victims too, oldest first
        self.zone.lru_add(ev[2])

    def free_objects(self, obj: np.ndarray, seq: int, ts_ns: int) -> None:
        """Free whole objects (dense ids) before event ``seq`` (trace time ``ts_ns``), as
        frees of the trace are (zsmalloc's ``free_zspage``); no step rows."""
        n = obj.shape[0]
        no = np.zeros(n, np.bool_)
        ev = event_arrays(n)
        ev[0][:] = seq
        ev[2][:] = obj
        ev[4][:] = self.objects.obj_order[obj]
        ev[5][:] = self.objects.obj_mt[obj]
        ev[7][:] = ts_ns
        self.apply(ev, no, no, outputs(0))

    def type_flags(self, mts: np.ndarray) -> np.ndarray:
        """:func:`type_flags` with the run's kswapd victims."""
        return type_flags(mts, bool(self.config.get("kswapd_movable", True)))


def contiguity(region: np.ndarray, vpn: np.ndarray, pfn: np.ndarray, order: np.ndarray,
               target: np.ndarray, nr: int) -> dict[str, np.ndarray]:  # fmt: skip
    """Per region (0..nr-1): its pages, its runs (maximal stretches of consecutive vpns
    whose pfn - vpn is constant), the largest run (pages), the pages at their target pfn,
    and the share of its pages in its largest and four largest runs (%).

    Units sorted by (region, vpn); a unit of order k covers vpns [vpn, vpn + 2^k)."""
    n = np.int64(1) << order
    out = {c: np.zeros(nr, np.int64) for c in ("pages", "runs", "largest_run", "in_place")}
    out["top1_pct"] = np.zeros(nr)
    out["top4_pct"] = np.zeros(nr)
    if region.shape[0] == 0:
        return out
    d = pfn - vpn
    brk = np.ones(region.shape[0], np.bool_)
    brk[1:] = (region[1:] != region[:-1]) | (vpn[1:] != vpn[:-1] + n[:-1]) | (d[1:] != d[:-1])
    run = np.cumsum(brk) - 1
    run_pages = np.bincount(run, weights=n).astype(np.int64)
    run_region = region[brk]
    out["pages"] = np.bincount(region, weights=n, minlength=nr).astype(np.int64)
    out["runs"] = np.bincount(run_region, minlength=nr).astype(np.int64)
    np.maximum.at(out["largest_run"], run_region, run_pages)
    out["in_place"] = np.bincount(region, weights=n * (pfn == target),
                                  minlength=nr).astype(np.int64)  # fmt: skip
    # the four largest runs of each region: rank runs by size within their region
    by = np.lexsort((-run_pages, run_region))
    first = np.searchsorted(run_region[by], run_region[by], side="left")
    rank = np.arange(by.shape[0]) - first
    top4 = np.bincount(run_region[by][rank < 4], weights=run_pages[by][rank < 4], minlength=nr)
    pages = np.maximum(out["pages"], 1)
    out["top1_pct"] = 100.0 * out["largest_run"] / pages
    out["top4_pct"] = 100.0 * top4 / pages
    return out


def _pressure(config: RunConfig, env: Environment) -> tuple[int, int]:
    """The (about to reclaim, about to OOM) free-page thresholds; (0, 0) when off."""
    if not config.get("pressure", False):
        return (0, 0)
    return (config.get("pressure_reclaim_pages") or env.wmark[1],
            config.get("pressure_oom_pages") or env.wmark[0])  # fmt: skip


def _owners(store: Store, trace_id: int, config: RunConfig) -> tuple[str, str, int]:
    """The per-owner pools' owner of each allocation event as an SQL expression (-1:
    none), the join it needs on ``events e``, and the number of owners. Owners are the
    distinct values of ``pool_owner``'s column, numbered in their sort order."""
    if not config.get("pool_order", 0):
        return "-1::BIGINT", "", 1
    col = config.get("pool_owner", "region")
    n = store.one(
        f"SELECT count(DISTINCT {col}) FROM events WHERE trace_id = $t AND op = 'alloc'",
        {"t": trace_id},
    )
    join = (f"LEFT JOIN (SELECT k, row_number() OVER (ORDER BY k) - 1 AS own FROM "
            f"(SELECT DISTINCT {col} AS k FROM events WHERE trace_id = $t AND op = 'alloc' "
            f"AND {col} IS NOT NULL)) ow ON ow.k = e.{col}")  # fmt: skip
    expr = "CASE WHEN e.op = 'alloc' THEN coalesce(ow.own, -1) ELSE -1 END"
    return expr, join, max(int(n[0]) if n else 0, 1)


def _class_sql(classes: list[str], prefix: str) -> tuple[str, dict[str, str]]:
    """SQL true for events whose comm or gfp contains one of ``classes``."""
    if not classes:
        return "false", {}
    params = {f"{prefix}{i}": c for i, c in enumerate(classes)}
    terms = [f"contains(coalesce(comm, ''), ${k}) OR contains(coalesce(gfp, ''), ${k})"
             for k in params]  # fmt: skip
    return "(" + " OR ".join(terms) + ")", params


def flags_sql(config: RunConfig, also_movable: list[str] | None = None
              ) -> tuple[str, dict[str, str]]:  # fmt: skip
    """The F_* flags of each allocation event (int16: F_KERNEL_FAILED is an event flag),
    as an SQL expression over events; ``also_movable``: classes movable besides
    ``movable_classes`` (the zram pages of zsmalloc's page and hybrid choices)."""
    movable, p1 = _class_sql(config.get("movable_classes", []) + (also_movable or []), "mc")
    vclasses = config.get("vcompound_classes")
    vc, p2 = ("true", {}) if not vclasses else _class_sql(vclasses, "vc")
    # zone_choice = zonelist: a GFP_DMA32 request's zonelist starts below the run's zone;
    # a costly __GFP_NORETRY one compacts ASYNC only and gives up after compaction
    # (replay.models.compaction.direct_compact, replay.models.zonelist)
    gfp_flags = (f" + (CASE WHEN contains(coalesce(gfp, ''), '__GFP_NORETRY') THEN {F_NORETRY} "
                 "ELSE 0 END)")  # fmt: skip
    if config.get("zone_choice", "model") == "zonelist":
        gfp_flags += (f" + (CASE WHEN contains(coalesce(gfp, ''), 'DMA32') THEN {F_LOWER_ZONE} "
                      "ELSE 0 END)")  # fmt: skip
    reclaim = "migratetype = 2" + (" OR migratetype = 1" if config.get("kswapd_movable", True)
                                   else "")  # fmt: skip
    sql = (f"((CASE WHEN coalesce(movable, migratetype = 1) OR {movable} THEN {F_MOVABLE} "
           f"ELSE 0 END) + (CASE WHEN {reclaim} THEN {F_RECLAIM} ELSE 0 END) "
           f"+ (CASE WHEN {vc} THEN {F_VCOMPOUND} ELSE 0 END) "
           f"+ (CASE WHEN {gfp_direct_reclaim_sql('gfp')} THEN 0 ELSE {F_NORECLAIM} END)"
           f"+ (CASE WHEN coalesce(failed, false) THEN {F_KERNEL_FAILED} ELSE 0 END)"
           f"{gfp_flags}"
           f")::SMALLINT")  # fmt: skip
    return sql, {**p1, **p2}


def run(
    store: Store,
    trace: str,
    config: RunConfig,
    *,
    zone_pages: int | None = None,
    every: int = 1,
    pageblock_every: int | None = None,
    fill_from_snapshot: bool = False,
    start: str = "empty",
    at: int | None = None,
    until: int | None = None,
    progress: Progress | None = None,
    from_state: ModelState | None = None,
    checkpoint_every: int | None = None,
    kernel_state: ForkState | None = None,
) -> RunResult:
    """Replay ``trace`` through the configured model; returns what the run measured.
    (Arguments: :func:`_run`.)"""
    result, _rp, _env = _run(store, trace, config, zone_pages=zone_pages, every=every,
                             pageblock_every=pageblock_every,
                             fill_from_snapshot=fill_from_snapshot, start=start, at=at,
                             until=until, progress=progress, from_state=from_state,
                             checkpoint_every=checkpoint_every,
                             kernel_state=kernel_state)  # fmt: skip
    assert result is not None
    return result


@dataclass
class ModelState:
    """A model's zone just before event ``seq``: the run's model replayed from its start
    up to it, nothing stored (pfn, pages; ``objects``: the placements, object ids
    dense as the run numbers them, the trace's first, then background pages)."""

    seq: int
    env: Environment
    zone: ZoneState
    ncpus: int
    ids: np.ndarray | None  # the run's object numbering (environment.object_index)
    n_obj: int
    fork: ForkState | None = None  # fork_of_model's, computed once
    # the zonelist's lower zone (zone_choice = zonelist), else None
    lower: ZoneState | None = None
    # every array the replay holds, by name (what a checkpoint stores): references
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    run_id: int | None = None  # the stored run whose state this is (forks record it)


def model_state(
    store: Store, trace: str, config: RunConfig, seq: int, *, start: str = "empty",
    at: int | None = None, zone_pages: int | None = None, fill_from_snapshot: bool = False,
    until: int | None = None, run_id: int | None = None, from_state: ModelState | None = None,
) -> ModelState:  # fmt: skip
    """The state the run (``trace``, ``config``, ``start``, ``at``, ``until``,
    ``zone_pages``, ``fill_from_snapshot``, as the run was made) had just before event
    ``seq``: the same replay, stopped there, writing nothing. With the stored run's
    ``run_id``, from its nearest checkpoint before ``seq`` (if it has one). A fork of
    another run's model state (``from_state``) is replayed from that state."""
    blob = None
    if run_id is not None:
        blob = load_checkpoint(store, run_id, seq)
    _result, rp, env = _run(store, trace, config, zone_pages=zone_pages, every=1 << 40,
                            pageblock_every=0, fill_from_snapshot=fill_from_snapshot,
                            start=start, at=at, until=until, stop=seq, progress=None,
                            state_only=True, resume=blob, from_state=from_state)  # fmt: skip
    return ModelState(seq=seq, env=env, zone=rp.zone, ncpus=rp.ncpus, ids=rp.obj_ids,
                      n_obj=rp.n_trace_obj, arrays=rp.state_arrays(), run_id=run_id,
                      lower=rp.lower)  # fmt: skip


def block_pages(offs: np.ndarray, orders: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pages of blocks (offsets, orders): each page's offset and its block's index."""
    sizes = np.int64(1) << orders.astype(np.int64)
    owner = np.repeat(np.arange(offs.shape[0], dtype=np.int64), sizes)
    starts = np.cumsum(sizes) - sizes
    pages = offs.astype(np.int64)[owner] + (np.arange(owner.shape[0], dtype=np.int64)
                                            - starts[owner])  # fmt: skip
    return pages, owner


def pcp_blocks(zone: ZoneState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The blocks on a model zone's pcp lists: offsets, orders, cpus."""
    offs, orders, cpus = [], [], []
    for (cpu, pi), heads in zone.pcp_lists().items():
        k = int(pindex_to_order.py_func(pi))  # the kernel's, in Python: no JIT load
        offs += [pfn - zone.start_pfn for pfn in heads]
        orders += [k] * len(heads)
        cpus += [cpu] * len(heads)
    return (np.array(offs, np.int64), np.array(orders, np.int64), np.array(cpus, np.int64))


def live_units(ms: ModelState) -> np.ndarray:
    """The dense ids of the objects a model state has placed in its zone, the newest at
    each pfn only (ascending). A freed object keeps its ``placed`` pfn: of the objects
    placed at one pfn only the newest can still hold it (ids are in allocation order);
    one whose pages are free now is left to the caller's free and pcp pages."""
    placed = ms.zone.objects.placed
    start, pages = int(ms.env.start_pfn), int(ms.zone.pages)
    cand = np.flatnonzero((placed >= start) & (placed < start + pages))
    offs = placed[cand] - start
    newest = np.full(pages, -1, np.int64)
    np.maximum.at(newest, offs, cand)
    keep = newest[offs] == cand
    if ms.zone.prm[P_UNITS] != 0:
        # models that move objects keep each whole unit's holder (pg_obj): an object
        # migrated onto a pfn a newer, freed one had is its holder; a unit split by a
        # partial free has none, and the newest rule stands
        pg = ms.zone.arrays.pg_obj[offs]
        keep = (pg == cand) | ((pg < 0) & keep)
    return cand[keep]


def fork_of_model(ms: ModelState) -> ForkState:
    """A model's state as a fork's starting state (what :func:`fork_state` gives for
    the kernel's): its free blocks, its pcp blocks and their cpus, and per page the
    type an allocated page counts as (the object's; pages no object holds: UNMOVABLE).
    Computed once per state; each call gets its own copies."""
    if ms.fork is None:
        ms.fork = _fork_of_model(ms)
    return ms.fork.copy()


def captured_blocks(ms: ModelState) -> list[tuple[int, int]]:
    """The blocks a model state holds captured for a requester (pfn, order): the one
    waiting for the allocation after a recorded pass (Zone.capture) and those of passes
    still running (their compact_control's CC_CAPC_PAGE). Neither free nor allocated."""
    out: list[tuple[int, int]] = []
    cap = ms.zone.arrays.capture
    if cap[CAPC_PAGE] >= 0 and cap[CAPC_ORDER] < 0:
        out.append((int(cap[CAPC_PAGE]), int(cap[CAPC_PAGE_ORDER])))
    cc = ms.arrays.get("passes.cc")
    if cc is not None:
        for row in np.asarray(cc).reshape(-1, NR_CZ - CC_ORDER):
            if row[CC_CAPC_PAGE - CC_ORDER] >= 0:
                out.append((int(row[CC_CAPC_PAGE - CC_ORDER]), int(row[CC_CAPC - CC_ORDER])))
    return out


def isolated_blocks(z: Zone) -> list[tuple[int, int]]:
    """The free blocks on compaction's isolated lists (offset, order): a recorded pass
    stopped inside a batch keeps its targets there until its next step."""
    out: list[tuple[int, int]] = []
    for k in range(NR_PAGE_ORDERS):
        o = int(z.isolated_head[k])
        while o >= 0:
            out.append((o, k))
            o = int(z.list_next[o])
    return out


def _fork_of_model(ms: ModelState) -> ForkState:
    z = ms.zone
    pages = int(z.pages)
    start = int(ms.env.start_pfn)
    blk = np.asarray(z.arrays.buddy_order[:pages]).astype(np.int8)
    # a fork carries no capture control: a block captured for a requester is free there
    for pfn, k in captured_blocks(ms):
        blk[pfn - start] = k
    # nor a recorded pass's batch in flight: the free pages it holds isolated are free
    for o, k in isolated_blocks(z.arrays):
        blk[o] = k
    page_mt = np.full(pages, MIGRATE_UNMOVABLE, np.int8)
    ob = z.objects
    live = live_units(ms)
    idx, owner = block_pages(ob.placed[live] - start, ob.obj_order[live])
    page_mt[idx] = ob.obj_mt[live][owner]
    heads = np.flatnonzero(blk >= 0)
    page_mt[block_pages(heads, blk[heads])[0]] = -1
    pcp = np.zeros(pages, np.int8)
    pcp_cpu = np.full(pages, -1, np.int16)
    offs, orders, cpus = pcp_blocks(z)
    pcp[offs] = orders + 1
    pcp_cpu[offs] = cpus
    page_mt[block_pages(offs, orders)[0]] = -1
    return ForkState(seq=ms.seq, first_seq=ms.seq, blk=blk, page_mt=page_mt, pcp=pcp,
                     pcp_cpu=pcp_cpu)  # fmt: skip


def split_objects(
    ms: ModelState, xs: np.ndarray, claimed: np.ndarray, room: int
) -> list[tuple[int, int, int, int, np.ndarray]]:
    """The folios among ``xs`` (dense ids) that model state ``ms``'s compaction had split,
    for a fork of it: (object, order, type, flags, each page's offset in the zone, -1
    where that piece is gone), their live pieces' pages marked ``claimed``; as many as
    the fork's split room (``room`` object ids) holds, the rest left to be background."""
    ob, start = ms.zone.objects, int(ms.env.start_pfn)
    out: list[tuple[int, int, int, int, np.ndarray]] = []
    used = 0
    for x in xs.tolist():
        got = ms.zone.pieces(x)
        if got is None:  # not split
            continue
        pfns = np.array(got, np.int64)
        offs = np.where(pfns >= 0, pfns - start, -1)
        live = offs[offs >= 0]
        if used + pfns.shape[0] > room or (live >= claimed.shape[0]).any():
            continue
        if claimed[live].any():
            continue
        claimed[live] = True
        used += pfns.shape[0]
        out.append((x, int(ob.obj_order[x]), int(ob.obj_mt[x]), int(ob.obj_flags[x]), offs))
    return out


def claim_pages(
    base: np.ndarray, npages: np.ndarray, pre_mt: np.ndarray, page_mt: np.ndarray,
    start_pfn: int, claimed: np.ndarray, low: int = 0,
) -> list[tuple[int, int, int, int]]:  # fmt: skip
    """The objects live at a run's start that hold pages of its starting state where they
    were: for each row j (``base`` pfn, NaN none; ``npages`` pages; ``pre_mt`` its type,
    -1 unknown), ``(j, offset, pages, type)`` when its pages lie in ``[low, len(page_mt))``
    of the zone from ``start_pfn`` (pfn) and none of them is ``claimed`` (free pages start
    claimed); the first to claim pages keeps them (``claimed`` is updated), so the model
    never frees a page twice. An unknown type is the page's (``page_mt``)."""
    claims: list[tuple[int, int, int, int]] = []
    for j in range(base.shape[0]):
        if base[j] != base[j]:  # NaN: no pfn recorded
            continue
        off = int(base[j]) - start_pfn
        end = off + int(npages[j])
        if off < low or end > page_mt.shape[0] or claimed[off:end].any():
            continue
        claimed[off:end] = True
        mt_j = int(pre_mt[j]) if pre_mt[j] >= 0 else int(page_mt[off])
        claims.append((j, off, int(npages[j]), mt_j))
    return claims


def once(
    derived: dict[tuple[Any, ...], Any] | None, key: tuple[Any, ...], read: Callable[[], T]
) -> T:
    """``read()``; with ``derived`` (a shared kernel state's), once for every fork of it
    that asks for ``key`` (what it reads must not change while the state lives, and its
    value must not be changed by who gets it)."""
    if derived is None:
        return read()
    if key not in derived:
        derived[key] = read()
    return derived[key]  # type: ignore[no-any-return]


def shared_environment(derived: dict[tuple[Any, ...], Any] | None, store: Store,
                       trace_id: int, config: RunConfig, zone_pages: int | None
                       ) -> Environment:  # fmt: skip
    """:func:`zone_environment`, read once for every fork of a shared kernel state
    (``derived``) that asks with the same settings (:func:`once`)."""
    return once(derived, ("environment", trace_id, config.to_json(), zone_pages),
                lambda: zone_environment(store, trace_id, config, zone_pages))  # fmt: skip


def query(store: Store, sql: str, params: dict[str, Any],
          derived: dict[tuple[Any, ...], Any] | None = None) -> pa.Table:  # fmt: skip
    """``store.query(sql, params)``; with ``derived`` (a shared kernel state's: its forks
    read the same rows of the trace), once for all of them (Arrow tables are immutable)."""
    return once(derived, ("query", sql, tuple(sorted(params.items()))),
                lambda: store.query(sql, params))  # fmt: skip


def read_only(state: ForkState) -> ForkState:
    """One more fork's view of a shared kernel state: the same arrays, read-only (every
    fork reads them and none writes them, so none needs a copy: a write raises), and
    the same ``derived``."""

    def frozen(a: np.ndarray) -> np.ndarray:
        view = a.view()
        view.flags.writeable = False
        return view

    return dataclasses.replace(state, blk=frozen(state.blk), page_mt=frozen(state.page_mt),
                               pcp=frozen(state.pcp), pcp_cpu=frozen(state.pcp_cpu))  # fmt: skip


def background_units(
    claimed: np.ndarray, holes_from: int, start_pfn: int
) -> tuple[np.ndarray, np.ndarray]:
    """A starting state's allocated pages no object claimed (``claimed``: per page of the
    zone from ``start_pfn``, free pages too), as background units: offsets and orders,
    the pages before ``holes_from`` one by one, the holes from it as whole aligned
    blocks (they never move). A zone without holes adopts its pages in one pass
    (:meth:`Adopted.background`) instead."""
    in_hole = np.zeros(claimed.shape[0], np.bool_)
    in_hole[holes_from:] = True
    single = np.flatnonzero(~claimed & ~in_hole)
    h_offs, h_orders = aligned_blocks(~claimed & in_hole, start_pfn)
    return (np.concatenate([single, h_offs]),
            np.concatenate([np.zeros(single.shape[0], np.int64), h_orders]))  # fmt: skip


@dataclass
class Adopted:
    """The objects a run's zone adopts where its starting state has them: those live at
    the start that claimed pages (dense ``objs``, ``offs``, ``orders``, ``mts``, F_*
    ``flags``; ``pages`` each: an object of a size that is no power of two is no unit
    and never moves), then every other allocated page as a background unit, objects
    ``first_bg`` on (``bg_offs``, ``bg_orders``, ``bg_mts``, ``bg_flags``: movable when
    the kernel had it on an LRU list (page_mt MOVABLE), reclaimable by its type; holes
    never move). ``kswapd_movable``: kswapd may evict movable objects (their flags)."""

    objs: np.ndarray
    offs: np.ndarray
    pages: np.ndarray
    orders: np.ndarray
    mts: np.ndarray
    flags: np.ndarray
    kswapd_movable: bool
    first_bg: int = 0
    bg_offs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    bg_orders: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    bg_mts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    bg_flags: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    # a zone without holes: its background is every unclaimed page (claimed, page_mt),
    # adopted in one pass (ZoneState.adopt_unclaimed), not through the arrays above
    unclaimed: tuple[np.ndarray, np.ndarray] | None = None

    @staticmethod
    def of_claims(claims: list[tuple[int, int, int, int]], pre: pa.Table, dense: Any,
                  kswapd_movable: bool) -> Adopted:  # fmt: skip
        """The claimed objects of :func:`claim_pages`' rows of ``pre`` (``dense``: the
        trace's object ids to the run's)."""
        rows = np.array([c[0] for c in claims], np.int64)
        objs = (dense(pre.column("obj").to_numpy()[rows]).astype(np.int64) if claims
                else np.zeros(0, np.int64))  # fmt: skip
        pages = np.array([c[2] for c in claims], np.int64)
        mts = np.array([c[3] for c in claims], np.int8)
        flags = np.where(pages & (pages - 1) != 0, F_PINNED, type_flags(mts, kswapd_movable))
        return Adopted(objs=objs, offs=np.array([c[1] for c in claims], np.int64), pages=pages,
                       orders=np.array([max(int(p) - 1, 0).bit_length() for p in pages],
                                       np.int64),
                       mts=mts, flags=flags.astype(np.int8),
                       kswapd_movable=kswapd_movable)  # fmt: skip

    def background(self, first: int, claimed: np.ndarray, holes_from: int | None,
                   start_pfn: int, page_mt: np.ndarray) -> int:  # fmt: skip
        """The background units, objects ``first`` on: the allocated pages no object
        ``claimed`` (:func:`background_units`: per page of the zone from ``start_pfn``,
        free pages too), of the types ``page_mt`` gives their pages; how many. Without
        holes each is a page of its own, adopted in one pass when the zone starts."""
        self.first_bg = first
        if holes_from is None:
            self.unclaimed = (claimed, page_mt)
            return int(claimed.shape[0] - np.count_nonzero(claimed))
        offs, orders = background_units(claimed, holes_from, start_pfn)
        self.bg_offs, self.bg_orders = offs, orders
        self.bg_mts = page_mt[offs]
        self.bg_flags = type_flags(self.bg_mts, self.kswapd_movable)
        self.bg_flags[orders > 0] = 0  # holes
        return int(offs.shape[0])

    def identity(self) -> np.ndarray:
        """What decides the zone the claims start with (with the state and the settings):
        ids, offsets, pages and types, int64 rows."""
        return np.stack([self.objs, self.offs, self.pages, self.mts.astype(np.int64)])

    def start(self, zone: ZoneState, blk: np.ndarray, page_mt: np.ndarray,
              pb_mt: np.ndarray | None, heads: np.ndarray | None,
              split: list[tuple[int, int, int, int, np.ndarray]] | None = None
              ) -> None:  # fmt: skip
        """Start ``zone`` from the state (blocks, page types, pageblock types, the free
        lists' order: :meth:`ZoneState.load`) with these objects adopted, and the
        ``split`` folios (:func:`split_objects`) between the claimed and the background."""
        zone.load(blk, page_mt, pb_mt, heads)
        if self.objs.shape[0]:
            zone.adopt(self.objs, self.offs, self.orders, self.mts, self.flags)
        for x, order, mt, fl, piece_offs in split or []:
            zone.adopt_split(x, order, mt, fl, piece_offs)
        if self.unclaimed is not None:
            zone.adopt_unclaimed(self.first_bg, *self.unclaimed, flags_table(self.kswapd_movable))
        else:
            zone.adopt(self.first_bg, self.bg_offs, self.bg_orders, self.bg_mts, self.bg_flags)


def shared_image(
    derived: dict[tuple[Any, ...], Any], key: tuple[Any, ...], claims: np.ndarray
) -> tuple[ZoneImage, int] | None:
    """The zone image (and its background objects' count) a fork of a shared kernel state
    (``derived``: the state's, shared by its copies) starts from, when an earlier fork of
    it with the same ``key`` (the zone, the objects' numbering, the flags' settings) and
    the same ``claims`` (the objects live at the start that claimed pages: ids, offsets,
    pages, types, int64 rows) built it; else None."""
    for got, value in derived.get(key, []):
        if got.shape == claims.shape and np.array_equal(got, claims):
            return value  # type: ignore[no-any-return]
    return None


def keep_image(derived: dict[tuple[Any, ...], Any], key: tuple[Any, ...], claims: np.ndarray,
               value: tuple[ZoneImage, int]) -> None:  # fmt: skip
    """Keep a zone image for the later forks :func:`shared_image` finds it for."""
    derived.setdefault(key, []).append((claims, value))


@dataclass
class LowerStart:
    """The lower zone's starting state (zone_choice = zonelist), worked out before the
    run's objects exist: ``state`` (blk, page_mt, pageblock types, free-list heads; None:
    booted free, or ``copy``: the forked model's lower zone), the pcp blocks (offsets,
    orders, cpus) and pagesets, the objects live at the start that it holds (``claims``:
    dense ids, offsets, orders, types) and its other allocated pages (``bg_offs``,
    ``bg_orders``: background units, objects after the run's others)."""

    state: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
    copy: ZoneState | None = None
    pcp: tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[int, int]]] | None = None
    claims: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
    bg_offs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    bg_orders: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def lower_start(
    store: Store, trace_id: int, lower: LowerZone, lf: ForkState | None,
    from_state: ModelState | None, lo_seq: int, pre: pa.Table, dense: Any,
) -> LowerStart:  # fmt: skip
    """The lower zone's starting state: the kernel's (``lf``: its state rebuilt at the
    fork, as the run's zone's), with free and pcp lists in the order of the kernel's first
    takes and pageblock types from them, the objects live at the start held where the
    kernel had them; the forked model's; or booted free (an empty start: the model
    places the live objects)."""
    lenv = lower.env
    if from_state is not None:
        return LowerStart(copy=from_state.lower)
    if lf is None:
        if lenv.holes_from is None:
            return LowerStart()
        page_mt = np.full(lenv.pages, -1, np.int8)  # the booted managed pages, then holes
        page_mt[lenv.holes_from :] = MIGRATE_UNMOVABLE
        blk = boot_blocks(lenv.pages, lenv.holes_from, lenv.start_pfn)
        pb = np.full(zone_pageblocks(lenv.start_pfn, lenv.pages), MIGRATE_MOVABLE, np.int8)
        hole_offs, hole_orders = aligned_blocks(page_mt >= 0, lenv.start_pfn)
        return LowerStart(state=(blk, page_mt, pb, np.flatnonzero(blk >= 0)),
                          bg_offs=hole_offs, bg_orders=hole_orders)  # fmt: skip
    takes = fork_first_takes(store, trace_id, lenv, lo_seq, lf)
    pb_mt = fork_pageblock_types(store, trace_id, lenv, lf, takes)
    pcp_at, pcp_cpu = pcp_list_order(lf, takes)
    # the objects live at the start that the kernel had here, as the run's zone's claims
    claimed = lf.page_mt < 0  # free and pcp pages are no object's
    claims = claim_pages(pre.column("base_pfn").to_numpy(zero_copy_only=False),
                         pre.column("pages").to_numpy(),
                         pre.column("mt").to_numpy(zero_copy_only=False), lf.page_mt,
                         lenv.start_pfn, claimed)  # fmt: skip
    rows = np.array([c[0] for c in claims], np.int64)
    objs = dense(pre.column("obj").to_numpy()[rows]).astype(np.int64)
    orders = np.array([max(c[2] - 1, 0).bit_length() for c in claims], np.int64)
    # every other allocated page is a background unit of one page
    bg = np.flatnonzero(~claimed)
    return LowerStart(
        state=(lf.blk, lf.page_mt, pb_mt, free_list_order(takes, lf.blk)),
        pcp=(pcp_at, lf.pcp[pcp_at].astype(np.int64) - 1, pcp_cpu,
             snapshot_pagesets(store, trace_id, lenv)),
        claims=(objs, np.array([c[1] for c in claims], np.int64), orders,
                np.array([c[3] for c in claims], np.int8)),
        bg_offs=bg, bg_orders=np.zeros(bg.shape[0], np.int64),
    )  # fmt: skip


def load_lower(rp: _Replay, ls: LowerStart, first_bg: int) -> None:
    """Load :func:`lower_start`'s state into the run's lower zone; its background units
    are objects ``first_bg`` on."""
    lz = rp.lower
    assert lz is not None
    if ls.copy is not None:
        for a, b in zip(lz.arrays, ls.copy.arrays, strict=True):
            a[...] = b
        for a, b in ((lz.prm, ls.copy.prm), (lz.cz, ls.copy.cz),
                     (lz.counters, ls.copy.counters)):  # fmt: skip
            a[:] = b
        return
    if ls.state is not None:
        lz.load(*ls.state)
    if ls.claims is not None and ls.claims[0].shape[0]:
        objs, offs, orders, mts = ls.claims
        lz.adopt(objs, offs, orders, mts, rp.type_flags(mts))
    if ls.bg_offs.shape[0] and ls.state is not None:
        mts = ls.state[1][ls.bg_offs]
        flags = np.where(ls.bg_orders > 0, 0, rp.type_flags(mts)).astype(np.int8)
        lz.adopt(first_bg, ls.bg_offs, ls.bg_orders, mts, flags)
    if ls.pcp is not None:
        at, orders, cpus, pagesets = ls.pcp
        lz.load_pcp(at, orders, pagesets, cpus)


def movable_zram_classes(store: Store, trace_id: int, config: RunConfig) -> list[str] | None:
    """The zram pages' classes a run's page compactor may migrate (zsmalloc's ``page``
    and ``hybrid`` choices: replay.engine.zram), None without zsmalloc."""
    if not config.get("zsmalloc"):
        return None
    from replay.engine.zram import movable_zram, zram_classes

    return zram_classes(store, trace_id, config) if movable_zram(config) else None


def recorded_inputs(config: RunConfig) -> bool:
    """Whether a run of ``config`` replays what the recorded kernel did (its migrations,
    compactions, kswapd, drains, pcp frees and refills, deferral: the kernel presets)."""
    return any(config.get(f"recorded_{k}", False) for k in (
        "compaction", "kswapd", "drains", "pcp_frees", "pcp_refills", "deferrals"))  # fmt: skip


def prefetch_key(trace_id: int, config: RunConfig, lo_seq: int, hi_seq: int) -> tuple[Any, ...]:
    """Where :func:`prefetch_recorded` leaves a fork's inputs in its kernel state's
    ``derived``: the trace, the model, the fork's events ``[lo_seq, hi_seq)``."""
    return ("recorded", trace_id, config.to_json(), lo_seq, hi_seq)


def prefetch_recorded(store: Store, trace: str, config: RunConfig, until: int,
                      kernel_state: ForkState, pool: Executor) -> None:  # fmt: skip
    """Read, on ``pool`` and a connection of its own (:meth:`Store.cursor`), what a fork
    of ``kernel_state`` with ``config`` up to ``until`` (a seq) replays of the recorded
    kernel (:func:`migration_map` and :func:`recorded_actions`: a few SQL queries over
    the whole trace, a third of a second on the shipped pressure capture) while other
    forks run; :func:`run` of that fork (``kernel_state=``) takes them, else reads them
    itself. Nothing for a model without such inputs, or whose zone is not the state's or
    has the zonelist's lower zone. Leave ``pool`` (shut it down, waiting) before the
    store is closed."""
    if not recorded_inputs(config) or config.get("zone_choice", "model") == "zonelist":
        return
    trace_id = store.trace_id(trace)
    env = shared_environment(kernel_state.derived, store, trace_id, config, None)
    if (kernel_state.start_pfn, kernel_state.blk.shape[0]) != (env.start_pfn, env.pages):
        return
    total = int(store.one("SELECT events FROM traces WHERE trace_id = $t", {"t": trace_id})[0])
    lo, hi = kernel_state.seq, int(until)
    page_mt = kernel_state.page_mt

    def read() -> tuple[Migrations | None, tuple[list[tuple[int, str, Any]], list[int]]]:
        with store.cursor() as cur:
            mig = (migration_map(cur, trace_id, lo, hi, env.start_pfn, page_mt)
                   if config.get("recorded_compaction", False) else None)  # fmt: skip
            return mig, recorded_actions(cur, trace_id, config, env, None, lo, hi, total)

    kernel_state.derived[prefetch_key(trace_id, config, lo, hi)] = pool.submit(read)


def take_prefetched(derived: dict[tuple[Any, ...], Any], key: tuple[Any, ...]) -> Any:
    """What :func:`prefetch_recorded` read for ``key`` (waiting for it), or None: none
    was started, or reading failed (the fork reads again, and fails as a run would)."""
    got = derived.get(key)
    if got is None:
        return None
    try:
        return got.result()
    except Exception:  # the fork's own reading raises it again
        return None


def recorded_actions(
    store: Store, trace_id: int, config: RunConfig, env: Environment, lower: LowerZone | None,
    lo_seq: int, hi_seq: int, total: int,
) -> tuple[list[tuple[int, str, Any]], list[int]]:  # fmt: skip
    """What the recorded kernel did that a run over events ``[lo_seq, hi_seq)`` of a
    trace of ``total`` events replays as its inputs (its configuration's ``recorded_*``;
    the kernel presets'): actions ``(seq, kind, argument)`` before the event at that seq,
    in the order the replay takes them (see :meth:`_Replay.apply`), and the ``P_*``
    flags its zones get (the pcp lists give pages back and take blocks only as the
    kernel's did). ``env``: the run's zone; ``lower``: the zonelist's lower zone."""
    actions: list[tuple[int, str, Any]] = []
    flags: list[int] = []
    if config.get("recorded_compaction", False):
        recorded = recorded_compactions(store, trace_id, env, lo_seq, hi_seq, total)
        if env.memory is not None:  # the scanners' pfns (-1 unknown) in the model's zone

            def bound(p: int) -> int:
                return int(env.memory.to_model_bound(np.array([p]))[0]) if p >= 0 else -1

            def given(tail: tuple[int, ...]) -> tuple[int, ...]:
                # the free-scanner isolations' [start, stop) (GIVEN_COLS values each)
                return tuple(bound(v) if (i - 1) % GIVEN_COLS in (1, 2) else v
                             for i, v in enumerate(tail))  # fmt: skip

            recorded = [(s_, kind, (*arg[:5], *(bound(p) for p in arg[5:9]), *arg[9:11],
                                    *(bound(p) for p in arg[11:13]), *given(arg[13:])))
                        for s_, kind, arg in recorded]  # fmt: skip
        actions += recorded
        if lower is not None:  # the kernel's compactions of the lower zone, in it
            low = recorded_compactions(store, trace_id, lower.env, lo_seq, hi_seq, total)
            actions += [(s_, "compact_recorded_lower", arg) for s_, _kind, arg in low]
    if config.get("recorded_kswapd", False) and config.get("pcp", False):
        got_kswapd = kswapd_reclaim(store, trace_id, lo_seq, hi_seq)
        if got_kswapd:
            actions += got_kswapd
            flags.append(P_KSWAPD_RECORDED)  # its try_to_sleep flushes the skip hints
    if config.get("recorded_drains", False) and config.get("pcp", False):
        actions += recorded_drains(store, trace_id, lo_seq, hi_seq)
    # The kernel's bulk frees of pcp pages and its refills of pcp lists are inputs: the
    # model's lists give pages back, and take blocks, where and as many as the kernel's
    # did, never at their own pcp->high nor a batch of their own. A trace without such
    # events (mm_page_pcpu_drain, percpu_refill) leaves the model its own.
    zones = ((env.start_pfn, env.start_pfn + env.pages),)
    if lower is not None:
        zones += ((lower.env.start_pfn, lower.env.start_pfn + lower.env.pages),)
    for key, recorded_pcp, flag in (("recorded_pcp_frees", recorded_pcp_frees, P_PCP_RECORDED),
                                    ("recorded_pcp_refills", recorded_pcp_refills,
                                     P_REFILL_RECORDED)):  # fmt: skip
        if config.get(key, False) and config.get("pcp", False):
            got = recorded_pcp(store, trace_id, lo_seq, hi_seq, zones)
            if got:
                actions += got
                flags.append(flag)
    if config.get("recorded_deferrals", False):
        actions += recorded_deferrals(
            store,
            trace_id,
            lo_seq,
            hi_seq,
            (env.zone, lower.env.zone if lower is not None else None),
        )
    return actions, flags


def _run(
    store: Store,
    trace: str,
    config: RunConfig,
    *,
    zone_pages: int | None,
    every: int,
    pageblock_every: int | None,
    fill_from_snapshot: bool,
    start: str,
    at: int | None,
    until: int | None,
    progress: Progress | None,
    state_only: bool = False,
    from_state: ModelState | None = None,
    stop: int | None = None,
    checkpoint_every: int | None = 0,
    resume: bytes | None = None,
    kernel_state: ForkState | None = None,
) -> tuple[RunResult | None, _Replay, Environment]:
    """Replay ``trace`` through the configured model: the run's result (None with
    ``state_only``: nothing is written, the replay stops before ``until``), the
    replay's state at its end, the zone's environment.

    ``from_state`` (with ``start = observed`` and ``at`` its seq): fork from another
    run's model state instead of the kernel's (:func:`model_state`): its free blocks,
    pcp pages, pageblock types, and the live objects where that model placed them.
    ``kernel_state``: the kernel's state at ``at`` already rebuilt
    (replay.engine.observed.fork_state), for forks of one moment to share; used
    (a copy) when it is for this run's zone, else rebuilt.

    ``every``: keep the counters of every K-th step (placements always).
    ``pageblock_every``: a pageblocks snapshot every K steps (default: about
    100 over the run; 0: only before the first and after the last step).
    ``start``: ``empty`` (a booted zone) or ``observed`` (the kernel's state
    just before event ``at``, rebuilt from the capture: replay.engine.observed;
    default: the first event after the before-snapshot). ``until``: stop
    before the event of that seq. Steps cover seqs ``[at, until)``.

    ``state_only``: store nothing; the replay stops before ``stop`` (default
    ``until``), with the run's own inputs (objects live at its start, migrations,
    recorded compactions) as the whole run ``[at, until)`` has them. ``resume``: a
    checkpoint of this same run (replay.engine.checkpoint) to go on from instead of
    setting the run up. ``checkpoint_every``: store the model's whole state after
    about every K events (None: about eight over a run of more than
    ``2 * CHUNK_EVENTS`` events; 0: none).
    """
    if start not in ("empty", "observed"):
        raise UsageError(f"--start must be empty or observed, not {start!r}")
    if at is not None and start != "observed":
        raise UsageError("--at forks from the kernel's state: it needs --start observed")
    if (
        start == "observed"
        and from_state is None
        and (fill_from_snapshot or zone_pages is not None)
    ):
        raise UsageError(
            "--start observed takes the zone and its contents from the capture: "
            "it cannot be combined with --fill-from-snapshot or --zone-pages"
        )
    if every < 1:
        raise UsageError("--every must be at least 1")
    if pageblock_every is not None and pageblock_every < 0:
        raise UsageError("--pageblock-every must be 0 or more")
    trace_id = store.trace_id(trace)
    # what the forks of one kernel state each read of the trace alike, read once (its
    # derived: the state lives as long as the explanation that forks it)
    known = kernel_state.derived if kernel_state is not None else None
    env = shared_environment(known, store, trace_id, config, zone_pages)
    # zone_choice = zonelist: the node's next zone (DMA32) below the run's (Normal)
    lower = (lower_zone(store, trace_id, config, env)
             if config.get("zone_choice", "model") == "zonelist" else None)  # fmt: skip
    if lower is not None and from_state is not None and from_state.lower is None:
        raise UsageError("zone_choice = zonelist forks from a model state that has the lower "
                         "zone too (a zonelist run's), or from the kernel's state")  # fmt: skip
    ids, n_obj = ((from_state.ids, from_state.n_obj) if from_state is not None
                  else once(known, ("object_index", trace_id),
                            lambda: object_index(store, trace_id)))  # fmt: skip
    saved = unpack(resume) if resume is not None else None
    fork = None
    shared = False  # the fork reads kernel_state (read-only): its forks share what they derive
    if start == "observed":
        if env.zone is None and from_state is None:
            raise UsageError(
                f"--start observed (and the kernel model) rebuilds the kernel's state from "
                f"the capture's snapshots, and {trace!r} has no zoneinfo snapshot of its zone "
                "(before.zoneinfo/after.zoneinfo: replay record saves them)"
            )
        if from_state is not None:
            if at != from_state.seq or (
                from_state.env.start_pfn,
                from_state.env.pages,
                from_state.env.model_pages,
            ) != (
                env.start_pfn,
                env.pages,
                env.model_pages,
            ):
                raise UsageError("a fork from a model's state starts at its seq, in its zone")
            fork = fork_of_model(from_state)
        elif saved is None:
            if (
                kernel_state is not None
                and kernel_state.start_pfn == env.start_pfn
                and kernel_state.blk.shape[0] == env.pages
                and kernel_state.seq == (kernel_state.first_seq if at is None else at)
            ):
                fork = read_only(kernel_state)
                shared = True
            else:
                fork = fork_state(store, trace_id, env.start_pfn, env.pages, at)
    lo_seq = fork.seq if fork is not None else 0
    # the lower zone's state rebuilt at the fork, as the run's zone's (zone_choice = zonelist)
    lfork = None
    if lower is not None and fork is not None and from_state is None and saved is None:
        lfork = fork_state(store, trace_id, lower.env.start_pfn, lower.env.pages, fork.seq)
    if saved is not None:
        lo_seq = int(saved["run.lo_seq"])
    total = int(store.one("SELECT events FROM traces WHERE trace_id = $t", {"t": trace_id})[0])
    hi_seq = total if until is None else int(until)
    if state_only and hi_seq == lo_seq:
        pass  # the starting state itself
    elif hi_seq <= lo_seq or hi_seq > total:
        raise UsageError(
            f"--until {hi_seq} must be after the first replayed seq {lo_seq} and at most "
            f"{total} (the trace's events)"
        )
    # the events replayed: from the run's first (or after the checkpoint's) to stop
    ev_lo = lo_seq if saved is None else int(saved["run.seq"]) + 1
    ev_hi = hi_seq if stop is None else int(stop)
    if not lo_seq <= ev_hi <= hi_seq or (saved is not None and ev_lo > ev_hi):
        raise UsageError(f"the state before seq {ev_hi} is not in the run's seqs "
                         f"[{lo_seq}, {hi_seq}) after its checkpoint")  # fmt: skip
    n_events = hi_seq - lo_seq
    last_seq = hi_seq - 1
    pbe = pageblock_every if pageblock_every is not None else math.ceil(
        n_events / PAGEBLOCK_SNAPSHOTS
    )  # fmt: skip
    progress = progress or Progress()
    t_start = time.perf_counter()
    started = datetime.now(UTC).replace(tzinfo=None)

    def dense(objs: np.ndarray) -> np.ndarray:
        return objs if ids is None else np.searchsorted(ids, objs)

    # zone_choice = trace: the objects the kernel placed in another zone (its zonelist
    # fallback) are not this zone's: their events are left out, as the kernel's zone
    # choice is an input here, not the model's decision
    # zone_choice = zonelist: the objects the kernel placed outside the node's two zones
    # (in DMA) are left out the same way
    elsewhere, zone_params = "", {}
    if config.get("zone_choice", "model") in ("trace", "zonelist"):
        elsewhere = (
            "AND obj NOT IN (SELECT obj FROM events WHERE trace_id = $t AND pfn IS NOT NULL "
            "AND (pfn < $zs OR pfn >= $ze))"
        )
        zs = env.start_pfn if lower is None else lower.env.start_pfn
        zone_params = {"zs": zs, "ze": env.start_pfn + env.pages}
    # recorded_compaction: the kernel's compaction is replayed as the model's own. Its
    # migrations are not the model's: the old folio's free (pages the migrating task
    # freed after remove_migration_pte) is left out, and the object lives on, freed
    # where the trace frees its new pfn (migration_links).
    src = src_all = "events"
    linked: dict[str, pa.Table] = {}
    # the recorded kernel's doings, read ahead for this fork of a shared kernel state
    # (prefetch_recorded), else read here
    prefetched = None
    if shared and lower is None and saved is None:
        prefetched = take_prefetched(fork.derived, prefetch_key(trace_id, config, lo_seq, hi_seq))
    mig = None
    if config.get("recorded_compaction", False) and saved is not None:
        mig = Migrations(y_obj=saved["run.mig_y"], x_obj=saved["run.mig_x"],
                         seqs=saved["run.mig_seqs"], named=0, unnamed=0)  # fmt: skip
    elif prefetched is not None:
        mig = prefetched[0]
    elif config.get("recorded_compaction", False):
        more = ((lower.env.start_pfn, lfork.page_mt),) if lfork is not None else ()
        mig = migration_map(store, trace_id, lo_seq, hi_seq, env.start_pfn,
                            fork.page_mt if fork is not None else None, more)  # fmt: skip
    if mig is not None:
        linked = {"migration_links": pa.table({"y_obj": mig.y_obj, "x_obj": mig.x_obj}),
                  "migration_frees": pa.table({"seq": mig.seqs})}  # fmt: skip
        for name_, tab in linked.items():
            store.con.register(name_, tab)
        src_all = (
            "(SELECT e.* REPLACE (coalesce(ml.x_obj, e.obj) AS obj) FROM events e "
            "LEFT JOIN migration_links ml ON ml.y_obj = e.obj WHERE e.trace_id = $t)"
        )
        src = f"(SELECT * FROM {src_all} WHERE seq NOT IN (SELECT seq FROM migration_frees))"
    zram = None
    if config.get("zsmalloc"):
        # zsmalloc frees its zspages' pages (zs_free actions): the trace's frees of them
        # are left out
        from replay.engine.zram import plan as zram_plan

        zram = zram_plan(store, trace_id, config, lo_seq, hi_seq, _class_sql, dense)
        linked["zs_pages"] = zram.pages
        store.con.register("zs_pages", zram.pages)
        src = f"(SELECT * FROM {src} WHERE NOT (op = 'free' AND obj IN (SELECT obj FROM zs_pages)))"
    if elsewhere or linked:
        row = store.one(
            f"""SELECT count(*), max(seq) FROM {src} WHERE trace_id = $t AND seq >= $lo
                AND seq < $hi {elsewhere}""",
            {"t": trace_id, "lo": lo_seq, "hi": hi_seq, **zone_params},
        )
        if row is None or not row[0]:
            if not state_only:
                raise NoEventInZoneError("no event of the trace falls in the run's zone")
        else:
            n_events, last_seq = int(row[0]), int(row[1])
    lstart: LowerStart | None = None  # the lower zone's start (zone_choice = zonelist)
    image: ZoneImage | None = None  # the zone image the run's zone starts from
    if saved is None:
        # Objects live when the run starts (freed in it, allocated before it or before the
        # trace): allocated first, by first appearance; where the kernel had them from an
        # observed start (their allocation's pfn, else their first free's: a migrated
        # object's old home, where the kernel had it).
        pre_hi = lo_seq if _none_preexisting(store, trace_id, lo_seq) else hi_seq
        pre = query(
            store,
            """WITH f AS (
                   SELECT obj, max("offset" + (1::BIGINT << "order")) AS pages, min(seq) AS first,
                          arg_min(migratetype, seq) AS mt, arg_min(pfn - "offset", seq) AS base_pfn
                   FROM {src_all} WHERE trace_id = $t AND op = 'free' AND seq >= $lo AND seq < $hi
                     {elsewhere}
                   GROUP BY obj),
               a AS (SELECT obj, seq, pfn, migratetype, "order" FROM events
                     WHERE trace_id = $t AND op = 'alloc' AND NOT coalesce(failed, false)
                       AND obj IN (SELECT obj FROM f))
               SELECT f.obj, greatest(f.pages, coalesce(1::BIGINT << a."order", 0)) AS pages,
                      f.first, coalesce(a.migratetype, f.mt) AS mt,
                      coalesce(a.pfn, f.base_pfn) AS base_pfn
               FROM f LEFT JOIN a USING (obj)
               WHERE a.seq IS NULL OR a.seq < $lo
               ORDER BY f.first""".replace("{elsewhere}", elsewhere).replace("{src_all}", src_all),
            # from the trace's first event, only objects freed with no allocation are live
            # at the start: none when ingest counted no pre-existing object (the whole
            # range's frees need not be grouped to find that out)
            {"t": trace_id, "lo": lo_seq, "hi": pre_hi, **zone_params},
            fork.derived if shared and not linked else None,
        )
        n_pre = pre.num_rows
        pre_pages = 0
        blk = page_mt = pb_mt = None
        takes = None  # the kernel's first takes after the fork, for a fork of its state
        holes_from = env.holes_from
        if fork is not None:
            blk, page_mt = fork.blk, fork.page_mt
            if from_state is None:
                # the kernel's first takes after the fork: the pageblocks it took free or
                # pcp pages from are of the type those takes show
                takes, pb_mt = fork_takes_and_types(store, trace_id, env, lo_seq, fork)
            else:
                pb_mt = np.asarray(from_state.zone.pageblock_types(), np.int8)
        elif holes_from is not None:
            # the booted managed pages; the rest are holes until the trace frees them in
            blk = boot_blocks(env.pages, holes_from, env.start_pfn)
            page_mt = np.full(env.pages, -1, np.int8)
            page_mt[holes_from:] = MIGRATE_UNMOVABLE
            pb_mt = np.full(zone_pageblocks(env.start_pfn, env.pages), MIGRATE_MOVABLE, np.int8)
        if n_pre and fork is None:
            pre_pages = int(pre.column("pages").to_numpy().sum())
        kinds = np.zeros(0, np.int8)
        if fill_from_snapshot:
            kinds = background_stream(background_pages(store, trace_id, env, pre_pages))
        # Objects live at the start that hold pages of the starting state where the kernel
        # had them: all of them from an observed start, those in the holes (memory the
        # trace brings online) from an empty one. Two can claim the same pages (untraced
        # allocations, e.g. compaction targets): the first keeps them, the later one is
        # ignored, so the model never frees a page twice.
        claims: list[tuple[int, int, int, int]] = []  # (pre row, offset, pages, migratetype)
        claimed = None
        # folios the forked model's compaction had split: (object, order, type, flags,
        # each page's offset in the zone, -1 where that piece is gone)
        split_claims: list[tuple[int, int, int, int, np.ndarray]] = []
        if page_mt is not None:
            claimed = page_mt < 0  # free pages cannot be held by anyone
            base = pre.column("base_pfn").to_numpy(zero_copy_only=False)
            if from_state is not None and n_pre:
                # where the other model had the objects, not where the kernel had them
                fx = dense(pre.column("obj").to_numpy())
                placed = from_state.zone.objects.placed[fx]
                base = np.where(placed >= 0, placed, np.nan)
                split_claims = split_objects(from_state, fx[placed <= PLACED_SPLIT_BASE],
                                             claimed, split_room(config, n_obj))  # fmt: skip
            claims = claim_pages(base, pre.column("pages").to_numpy(),
                                 pre.column("mt").to_numpy(zero_copy_only=False), page_mt,
                                 env.start_pfn, claimed,
                                 0 if fork is not None else holes_from)  # fmt: skip
        kswapd_movable = bool(config.get("kswapd_movable", True))
        adopted = Adopted.of_claims(claims, pre, dense, kswapd_movable)
        # Background pages are objects too (ids after the trace's), so compaction can move
        # them and kswapd evict them: the fill's pages, or the starting state's allocated
        # pages no object claimed (holes as whole aligned blocks, other pages one by one).
        n_bg = kinds.shape[0]
        heads = None
        if blk is not None and takes is not None:
            # the kernel's free lists in the order its first allocations reveal (a fork of
            # the kernel's state; another model's state knows no more than its blocks)
            heads = free_list_order(takes, blk)
        # a fork of a shared kernel state starts from the zone image of its forks that
        # adopt the same objects (each maps it copy-on-write), built by the first of them
        image_key = None
        if (shared and blk is not None and page_mt is not None and not split_claims
                and lower is None):  # fmt: skip
            image_key = (("zone-image", trace_id, lo_seq, env.zone, env.start_pfn,
                          env.model_pages, env.ncpus, n_obj, holes_from, kswapd_movable),
                         adopted.identity())  # fmt: skip
            got = shared_image(fork.derived, *image_key)
            if got is not None:
                image, n_bg = got
        if claimed is not None and page_mt is not None and image is None:
            n_bg = adopted.background(n_obj, claimed, holes_from, env.start_pfn, page_mt)
            if image_key is not None:
                assert blk is not None

                def start_zone(zone: ZoneState) -> None:
                    adopted.start(zone, blk, page_mt, pb_mt, heads)

                image = ZoneImage(env.start_pfn, env.model_pages, env.ncpus, n_obj + n_bg,
                                  start_zone)  # fmt: skip
                keep_image(fork.derived, *image_key, (image, n_bg))
        if lower is not None:
            lstart = lower_start(store, trace_id, lower, lfork, from_state, lo_seq, pre, dense)
    else:
        n_pre = n_bg = 0
    # the run's spools beside the database (a killed run's are removed by the next
    # command: replay.spool)
    tmp_path, tmp_remove = spool_or_temp(store.path.parent, ".replay-run-")
    owner_sql, owner_join, n_owners = _owners(store, trace_id, config)
    # (resumed from a checkpoint, the objects' arrays are the checkpoint's)
    n_lower_bg = lstart.bg_offs.shape[0] if lstart is not None else 0
    rp = _Replay(env, config, n_obj + n_bg + n_lower_bg if saved is None else 1,
                 tmp_path, n_owners, image=image)  # fmt: skip
    rp.obj_ids, rp.n_trace_obj = ids, n_obj
    rp.zram = zram
    if lower is not None:
        rp.set_lower(lower)
    plain = plain_eligible(rp.zone.prm) and lower is None
    warm_up(models=not plain and lower is None, plain=plain,
            oneshot=bool(config.get("compact_at", [])), node=lower is not None)  # fmt: skip
    regions = (
        pa.table({"obj": pa.array([], pa.int64())})
        if saved is not None
        else query(
            store,
            """SELECT obj, region, vpn, "order" FROM events WHERE trace_id = $t AND op = 'alloc'
             AND region IS NOT NULL AND vpn IS NOT NULL""",
            {"t": trace_id},
            fork.derived if shared else None,
        )
    )
    # exchange pages works on regions (a file's or a mapping's pages by their offset):
    # ftrace's kmem events carry none, so on such a trace it has nothing to exchange
    warnings: list[str] = []
    if env.memory is not None:
        warnings.append(
            "the trace has no zone snapshot and its pfns lie far apart: the model's zone is "
            f"the {env.memory.describe()} pages (untouched stretches of a memory section or "
            "more are left out: replay.engine.present); stored pfns are the trace's"
        )
    if config.get("exchange_at") and saved is None and not regions.num_rows:
        warnings.append(
            "exchange_at: the trace has no regions (its allocations carry no region and "
            "virtual page number; ftrace kmem events never do), so exchange pages had "
            "nothing to exchange and the contiguity table is empty"
        )
    if regions.num_rows:
        rp.set_regions(dense(regions.column("obj").to_numpy()),
                       regions.column("region").to_numpy(), regions.column("vpn").to_numpy(),
                       regions.column("order").to_numpy())  # fmt: skip
    if saved is None:
        placed = rp.objects.placed
        background = 0
        if lstart is not None:
            load_lower(rp, lstart, n_obj + n_bg)
        if page_mt is not None and blk is not None:
            if image is not None:
                # loaded and adopted already: the objects join this zone's LRU (kswapd's)
                # in the order adopting them would have added them
                rp.zone.lru_add(adopted.objs)
                rp.zone.lru_add_range(n_obj, n_bg)
            else:
                adopted.start(rp.zone, blk, page_mt, pb_mt, heads, split_claims)
            if fork is not None:
                # the pages the kernel had on pcp lists: the model's pcp lists (or its buddy)
                # (each cpu's share and pcp->high: the before-snapshot's pagesets)
                pcp_at, pcp_cpu = pcp_list_order(fork, takes)
                rp.zone.load_pcp(pcp_at, fork.pcp[pcp_at].astype(np.int64) - 1,
                                 once(known, ("pagesets", trace_id, env.zone),
                                      lambda: snapshot_pagesets(store, trace_id, env)),
                                 pcp_cpu)  # fmt: skip
        if n_pre and fork is None:
            # the others: allocated by the model before the trace's first event
            rest = np.setdiff1d(np.arange(n_pre), np.array([c[0] for c in claims], np.int64))
            pages_col = pre.column("pages").to_numpy()[rest]
            pre_order = np.ceil(np.log2(pages_col.astype(np.float64))).astype(np.int64)
            rp.allocate_all(dense(pre.column("obj").to_numpy()[rest]), pre_order,
                            pre.column("mt").to_numpy()[rest])  # fmt: skip
        if fill_from_snapshot:
            nb_ = kinds.shape[0]
            before = int(rp.stats[S_FAILURES])
            rp.allocate_all(n_obj + np.arange(nb_), np.zeros(nb_, np.int64), kinds)
            background = int(np.count_nonzero(placed[n_obj:] >= 0))
            rp.stats[S_FAILURES] = before  # background that does not fit is not a failure
        # Pre-existing pages that do not fit count as failures; the passes' other counts do not.
        pre_failed = int(rp.stats[S_FAILURES])
        rp.stats[:] = 0
        rp.stats[S_FAILURES] = pre_failed
        # Counters are of the trace's events; the passes' fallbacks stay as extfrag rows at seq -1.
        pcp_pages = rp.zone.counters[C_PCP_PAGES]
        rp.zone.counters[:] = 0
        rp.zone.counters[C_PCP_PAGES] = pcp_pages
    else:
        # a checkpoint of this run: its whole state, as the run had it there
        rp.load_state_arrays(saved)
        n_pre = background = 0
    rp.replay_s = 0.0  # events/s is of the trace's events only
    actions = [(s_, "compact", None) for s_ in sorted(set(config.get("compact_at", [])))]
    actions += [(s_, "exchange", None) for s_ in sorted(set(config.get("exchange_at", [])))]
    actions += [(a[0], "contig", a[1:]) for a in config.get("contig_at", [])]
    if prefetched is not None:
        recorded, flags = prefetched[1]
    else:
        recorded, flags = recorded_actions(store, trace_id, config, env, lower, lo_seq, hi_seq,
                                           total)  # fmt: skip
    actions += recorded
    for flag in flags:
        for zs in (rp.zone, rp.lower):
            if zs is not None:
                zs.prm[flag] = 1
    if zram is not None:
        actions += zram.actions
    # the allocations served right after a recorded direct compaction: F_CAPTURE
    capture_seqs = np.array(sorted({int(arg[10]) for _s, kind, arg in actions
                                    if kind.startswith("compact_recorded")
                                    and arg[1] == PASS_END
                                    and arg[10] >= 0}), np.int64)  # fmt: skip
    flags_expr, flags_params = flags_sql(config, movable_zram_classes(store, trace_id, config))
    rp.snapshot(-1)
    progress.start(f"replay {trace} ({config.preset or config.model})", n_events)

    failure: list[BaseException] = []
    prev_last = [ev_lo - 1]  # the last seq of the previous chunk
    # checkpoints: the model's whole state after about every `spacing` events, spooled
    # to files until the run's rows are stored (seq after, events replayed, file)
    spacing = int(checkpoint_every) if checkpoint_every is not None else (
        -(-n_events // CHECKPOINTS) if n_events > 2 * CHUNK_EVENTS else 0)  # fmt: skip
    if spacing < 0:
        raise UsageError("--checkpoint-every must be 0 (none) or more events")
    ckpts: list[tuple[int, int, Path]] = []
    # a model with no pcp lists and no units (buddy, mobility) has no pcp pages or costs
    # at any step: its steps go to steps_narrow (replay.store), the others' to steps_wide
    narrow = lower is None and rp.zone.prm[P_PCP] == 0 and rp.zone.prm[P_UNITS] == 0

    def steps() -> Iterator[pa.RecordBatch]:
        try:
            yield from _steps()
        except BaseException as exc:  # DuckDB wraps it; the caller re-raises the original
            failure.append(exc)
            raise

    def _steps() -> Iterator[pa.RecordBatch]:
        # A cursor of its own: the main connection is busy with the INSERT. It
        # is closed in all cases, so a failed run never leaves a streaming
        # result open while the transaction rolls back.
        cur = store.con.cursor()
        for name_, tab in linked.items():
            cur.register(name_, tab)
        reader: list[pa.RecordBatchReader] = []  # the window's, while one is open

        def batches() -> Iterator[pa.RecordBatch]:
            # Windows of seqs, each sorted on its own: one ORDER BY over a whole
            # 100M-event trace held 3.4 GB in DuckDB before its first batch.
            for w_lo in range(ev_lo, ev_hi, EVENT_WINDOW):
                reader[:] = [cur.sql(
                    'SELECT seq, op = \'alloc\' AS is_alloc, obj, "offset", "order", '
                    f"migratetype, coalesce(cpu, 0) AS cpu, ts_ns, {flags_expr} AS flags, "
                    f"{owner_sql} AS owner FROM {src} e {owner_join} WHERE trace_id = $t "
                    f"AND seq >= $lo AND seq < $hi {elsewhere} ORDER BY seq",
                    params={"t": trace_id, "lo": w_lo, "hi": min(ev_hi, w_lo + EVENT_WINDOW),
                            **zone_params, **flags_params},
                ).to_arrow_reader(CHUNK_EVENTS)]  # fmt: skip
                yield from reader[0]
                reader.pop().close()

        try:
            # chunks of at most `spacing` rows when checkpointing: one after each; each
            # replayed in kernel calls of STEP_EVENTS
            step = min(CHUNK_EVENTS, spacing) if spacing else CHUNK_EVENTS
            chunks = (b.slice(o, step) for b in batches() for o in range(0, b.num_rows, step))
            sub = min(step, STEP_EVENTS)
            for batch in (c.slice(o, sub) for c in chunks for o in range(0, c.num_rows, sub)):
                seq = batch.column("seq").to_numpy()
                is_alloc = batch.column("is_alloc").to_numpy(zero_copy_only=False)
                # Writable copies: the JIT compiles read-only (zero-copy) arrays separately.
                ev = (
                    seq.astype(np.int64, copy=True),
                    is_alloc.astype(np.bool_, copy=True),
                    dense(batch.column("obj").to_numpy()).astype(np.int64, copy=True),
                    batch.column("offset").to_numpy().astype(np.int64),
                    batch.column("order").to_numpy().astype(np.int64),
                    batch.column("migratetype").to_numpy().astype(np.int8),
                    (batch.column("cpu").to_numpy().astype(np.int64) % rp.ncpus).astype(np.int16),
                    batch.column("ts_ns").to_numpy().astype(np.int64, copy=True),
                    batch.column("flags").to_numpy().astype(np.int16, copy=True),
                    batch.column("owner").to_numpy().astype(np.int64, copy=True),
                )
                if capture_seqs.shape[0]:
                    hit = capture_seqs[(capture_seqs >= seq[0]) & (capture_seqs <= seq[-1])]
                    idx = np.searchsorted(seq, hit)
                    ev[8][idx[seq[idx] == hit]] |= F_CAPTURE
                # actions before the first event of this chunk at or after their seq (a
                # seq the run leaves out, e.g. another zone's, runs before the next one),
                # or after the run's last event
                at: list[tuple[int, str, Any]] = []
                for s_, kind, arg in actions:
                    if s_ == -1 or s_ > last_seq:
                        if seq[-1] == last_seq:
                            at.append((seq.shape[0], kind, arg))
                    elif prev_last[0] < s_ <= seq[-1]:
                        at.append((int(np.searchsorted(seq, s_)), kind, arg))
                prev_last[0] = int(seq[-1])
                keep_counters = (seq % every == 0) | (seq == last_seq)
                keep_row = keep_counters | is_alloc
                if state_only:  # nothing is stored: no rows to fill
                    keep_counters[:] = False
                    keep_row[:] = False
                snap = (seq == last_seq) if pbe == 0 else (seq % pbe == 0) | (seq == last_seq)
                if state_only:
                    snap[:] = False
                m = int(np.count_nonzero(keep_row))
                # Reused buffers: fresh ones would page-fault inside the kernel.
                out = tuple(a[:m] for a in rp.out)
                r = rp.apply(ev, keep_row, keep_counters, out, snap_at=np.flatnonzero(snap),
                             actions=at)  # fmt: skip
                assert r == m
                if env.memory is not None:  # placements as the trace's pfns
                    out[0][:] = env.to_real(out[0])
                done = int(seq[-1]) + 1 - lo_seq
                if (
                    not state_only
                    and spacing
                    and int(seq[-1]) < last_seq
                    and done >= (len(ckpts) + 1) * spacing
                ):
                    ckpts.append(_checkpoint(rp, tmp_path, lo_seq, int(seq[-1]),
                                             done, mig))  # fmt: skip
                progress.advance_to(done)
                yield steps_batch(seq[keep_row], is_alloc[keep_row], out, narrow=narrow)
        finally:
            for r_ in reader:
                r_.close()
            cur.close()

    try:
        if state_only:
            for _ in steps():
                pass
            return None, rp, env
        # bulk_write bounds DuckDB's buffers over a run of millions of steps and writes
        # them to the file after it; a run of a chunk or less (explain's forks: 1,000
        # events) holds a few MB, which DuckDB's defaults and its checkpoint at the
        # close keep as well, without three settings changed and a checkpoint per run
        bulk = n_events > CHUNK_EVENTS
        with store.bulk_write() if bulk else contextlib.nullcontext(), store.transaction():
            row = store.one("SELECT coalesce(max(run_id), 0) + 1 FROM runs")
            run_id = int(row[0]) if row else 1
            try:
                # The kernel (GIL released) and the batches a chunk ahead in a thread of
                # their own, while DuckDB stores the previous chunk's steps
                with store.unordered() if bulk else contextlib.nullcontext():
                    store.append_stream(
                        "steps_narrow" if narrow else "steps_wide",
                        pa.RecordBatchReader.from_batches(
                            STEPS_NARROW_SCHEMA if narrow else STEPS_SCHEMA,
                            ahead(steps(), depth=1),
                        ),
                        run_id,
                        key="run_id",
                    )
            except duckdb.Error:
                if failure:
                    raise failure[0] from None
                raise
            rp.record_contiguity(-1, "end")
            for seq_, done_, path_ in ckpts:
                store_checkpoint(store, run_id, seq_, done_, path_.read_bytes())
                path_.unlink()
            for spool, table in (
                (rp.extfrag, "extfrag"),
                (rp.pageblocks, "pageblocks"),
                (rp.model_events, "model_events"),
                (rp.contiguity, "contiguity"),
            ):
                spool.close()
                if spool.rows:
                    store.append_parquet(table, spool.path, run_id, key="run_id")
            if zram is not None and zram.pool.num_rows:
                store.append_stream("zram_pool", pa.RecordBatchReader.from_batches(
                    zram.pool.schema, zram.pool.to_batches()), run_id, key="run_id")  # fmt: skip
            result = _record_run(store, run_id, trace_id, config, env, rp, started, t_start,
                                 warnings, n_events, n_pre, background, every, pbe, start,
                                 (lo_seq, last_seq),
                                 from_state.run_id if from_state is not None else None)  # fmt: skip
    finally:
        for spool in (rp.extfrag, rp.pageblocks, rp.model_events, rp.contiguity):
            spool.close()
        tmp_remove()
        for name_ in linked:
            store.con.unregister(name_)
    return result, rp, env


def _none_preexisting(store: Store, trace_id: int, lo_seq: int) -> bool:
    """A run from the trace's first event whose trace has no pre-existing object (freed
    with no allocation in it, as ingest counted them): no object is live at its start."""
    if lo_seq != 0:
        return False
    row = store.one("SELECT preexisting FROM traces WHERE trace_id = $t", {"t": trace_id})
    return row is not None and row[0] == 0


def _checkpoint(rp: _Replay, tmp: Path, lo_seq: int, seq: int, done: int,
                mig: Migrations | None) -> tuple[int, int, Path]:  # fmt: skip
    """The replay's state after event ``seq`` (``done`` events into a run that began at
    ``lo_seq``) as a checkpoint file in ``tmp``, with the run's migration map (an input
    a resumed replay cannot rebuild without the fork): (seq, done, path)."""
    arrays = rp.state_arrays()
    arrays["run.lo_seq"] = np.array(lo_seq, np.int64)
    arrays["run.seq"] = np.array(seq, np.int64)
    if mig is not None:
        arrays["run.mig_y"], arrays["run.mig_x"] = mig.y_obj, mig.x_obj
        arrays["run.mig_seqs"] = mig.seqs
    path = tmp / f"checkpoint-{seq}.bin"
    path.write_bytes(pack(arrays))
    return seq, done, path


def _record_run(
    store: Store, run_id: int, trace_id: int, config: RunConfig, env: Environment, rp: _Replay,
    started: datetime, t_start: float, warnings: list[str], n_events: int, n_pre: int,
    background: int, every: int, pbe: int, start: str, seqs: tuple[int, int],
    forked_from: int | None = None,
) -> RunResult:  # fmt: skip
    z = rp.zone
    c, s = z.counters, rp.stats
    # compaction's counts over the node's zones, as the steps carry them (zonelist)
    lc = rp.lower.counters if rp.lower is not None else np.zeros_like(c)
    full = int(c[C_SPLIT_FULL] + lc[C_SPLIT_FULL])
    if full:
        room = int(rp.objects.split[1] - rp.objects.split[2])
        warnings.append(
            f"compaction's split room ({room:,} object ids for the pieces of split folios) "
            f"ran out: {full:,} folios it had no target for stayed whole instead of split"
        )
    wall = time.perf_counter() - t_start
    eps = n_events / rp.replay_s if rp.replay_s > 0 else 0.0
    nr_free = [int(v) for v in z.nr_free]
    result = RunResult(
        run_id=run_id, trace=store.trace_row(trace_id)["name"], model=config.model,
        events=n_events, events_per_s=eps, wall_s=wall, allocs=int(s[S_ALLOCS]),
        frees=int(s[S_FREES]), failures=int(s[S_FAILURES]),
        ignored_frees=int(s[S_IGNORED]), preexisting=n_pre, background=background,
        zone_start_pfn=env.start_pfn, zone_pages=env.pages, free_pages=z.free_pages(),
        pcp_pages=z.pcp_pages(), nr_free=nr_free,
        fallbacks=int(c[C_CLAIMS] + c[C_STEALS]), claims=int(c[C_CLAIMS]),
        steals=int(c[C_STEALS]), below_low=int(s[S_BELOW_LOW]),
        below_min=int(s[S_BELOW_MIN]), wmark_min=env.wmark[0], wmark_low=env.wmark[1],
        wmark_high=env.wmark[2], migrated=int(c[C_MIGRATED] + lc[C_MIGRATED]),
        folios_split=int(c[C_SPLIT] + lc[C_SPLIT]),
        scanned=int(c[C_SCANNED] + lc[C_SCANNED]),
        evicted=int(c[C_EVICTED]), evicted_frees=int(s[S_EVICTED_FREES]),
        degraded=int(c[C_DEGRADED]), compactions=rp.compactions,
        model_events=rp.model_events.rows, exchanged=int(c[C_EXCHANGED]),
        contig_pages=rp.contig_pages, pool_chunks=int(c[C_POOL_CHUNKS]),
        pool_waste=(int(c[C_POOL_CHUNKS]) << int(z.prm[P_POOL_ORDER]))
        - int(c[C_POOL_PAGES]),
        pool_fallbacks=int(s[S_POOL_FALLBACKS]),
        **(rp.zram.costs(int(c[C_DRIVER_MIGRATED])) if rp.zram is not None else {}),
        served_kernel_failures=int(s[S_SERVED_KERNEL_FAILED]),
        start_seq=seqs[0], end_seq=seqs[1], preset=config.preset, warnings=warnings,
    )  # fmt: skip
    values = {
        **{k: v for k, v in result.summary().items() if k in RUNS_COLUMNS},
        "trace_id": trace_id, "config": config.to_json(), "started": started,
        "replay_s": rp.replay_s, "every": every, "ncpus": env.ncpus,
        "pcp_batch": env.batch, "pcp_high": env.high,
        "pcp_refills": int(c[C_REFILLS]), "pcp_bulk_frees": int(c[C_BULK]),
        "drain_retries": int(c[C_DRAINS]), "pageblock_every": pbe, "start": start,
        "forked_from": forked_from,
    }  # fmt: skip
    insert_run(store, values)
    return result
