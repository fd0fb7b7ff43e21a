"""Model configurations: what a user sets for a run (stored as JSON in ``runs.config``).

A run's model is a preset name (``PRESETS``) or a TOML file with ``model =
"buddy"|"mobility"`` and parameters from ``PARAMS``; :func:`load_model`
checks types and bounds (the kernel's sysctl limits where there is one) and
raises :class:`replay.errors.BadInputError` naming the file and field.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from replay.errors import BadInputError, UsageError
from replay.models.internal import NR_PAGE_ORDERS

NF = NR_PAGE_ORDERS
MODELS = ("buddy", "mobility")


# Model parameters: name -> (type, help). Defaults are resolved per run (see zone_environment).
# Upper bounds: the kernel's sysctl limits where there is one, else what the int32
# runs columns and per-CPU arrays can hold.
PARAMS: dict[str, tuple[type, str]] = {
    "pcp": (bool, "per-CPU page lists for orders 0-3 and 9 (default false)"),
    "nofragment": (bool, "try with ALLOC_NOFRAGMENT first, as for ZONE_NORMAL (default true)"),
    "pcp_batch": (int, "pcp batch in pages (default: zone_batchsize of the zone)"),
    "pcp_high": (
        int,
        "pcp high (high_min with pcp_tuning) in pages (default: the snapshot's "
        "high_min, else zone_highsize from the low watermark)",
    ),
    "pcp_tuning": (
        bool,
        "Linux 6.7+ pcp->high auto-tuning between high and pcp_high_max (default false)",
    ),
    "pcp_high_max": (
        int,
        "pcp high_max in pages (default: the snapshot's, else managed/8 split over the cpus)",
    ),
    "pcp_free_high_batch": (bool, "PCPF_FREE_HIGH_BATCH on every cpu (default false)"),
    "pcp_free_high_min": (
        bool,
        "free_high needs batch + high_min/2 consecutive freed pages, as Linux 6.15+ "
        "(default: true unless the capture's kernel is older than 6.15)",
    ),
    "pcp_decay_ms": (int, "decay_pcp_high's period, ms of trace time (default 1000)"),
    "ncpus": (int, "CPUs with pcp lists (default: the trace's highest cpu + 1)"),
    "min_free_kbytes": (int, "default: the snapshot's watermarks, else the kernel's formula"),
    "watermark_scale_factor": (int, "default 10 (per 10000 of the zone)"),
    "compaction": (str, "off | direct | proactive | both (docs/compaction.md; default off)"),
    "extfrag_threshold": (int, "vm.extfrag_threshold for direct compaction (default 500)"),
    "proactiveness": (int, "vm.compaction_proactiveness (default 20)"),
    "recorded_compaction": (
        bool,
        "run the model's compaction where the recorded kernel "
        "compacted (order and mode from its trace; default false)",
    ),
    "recorded_kswapd": (
        bool,
        "the recorded kswapd's reclaim sets ZONE_RECLAIM_ACTIVE while it ran (from each "
        "mm_vmscan_kswapd_wake; the pcp lists hold at most 4 batches; default false)",
    ),
    "recorded_drains": (
        bool,
        "drain every cpu's pcp lists where the recorded kernel did (drain_all_pages after "
        "direct reclaim left a request unserved; default false)",
    ),
    "recorded_pcp_frees": (
        bool,
        "the pcp lists give pages back to the buddy where, on the cpu and as many as the "
        "recorded kernel's free_pcppages_bulk did (its mm_page_pcpu_drain runs), not at "
        "the model's own pcp->high (default false)",
    ),
    "recorded_pcp_refills": (
        bool,
        "the pcp lists take blocks from the buddy where, on the cpu, of the order and type "
        "and as many as the recorded kernel's rmqueue_bulk did (its mm_page_alloc_zone_locked "
        "percpu_refill runs); a list the model finds empty takes one block (default false)",
    ),
    "recorded_deferrals": (
        bool,
        "the zone's compaction deferral (compact_considered, compact_defer_shift, "
        "compact_order_failed) is set to the recorded kernel's at each of its "
        "mm_compaction_deferred, defer_compaction and defer_reset events (default false)",
    ),
    "compact_at": (list, "seqs before which to compact the whole zone once (-1: at the end)"),
    "kswapd": (str, "off | lru | targeted: kswapd high-order reclaim (default off)"),
    "kswapd_movable": (bool, "kswapd may evict movable pages too (default true)"),
    "vcompound_order": (int, "virtual compound fallback from this order up (default 0: off)"),
    "vcompound_classes": (list, "comm/gfp substrings of requests that may fall back (all)"),
    "movable_classes": (list, "comm/gfp substrings of requests compaction may migrate"),
    "pressure": (bool, "record free memory crossing the low/min watermarks (default false)"),
    "pressure_reclaim_pages": (int, "the 'about to reclaim' threshold (default: low wmark)"),
    "pressure_oom_pages": (int, "the 'about to OOM' threshold (default: min wmark)"),
    "defrag_thresholds": (list, "active defragmentation: [[order, free blocks wanted], ...]"),
    "defrag_idle_ms": (int, "active defragmentation runs in event gaps this long (default 100)"),
    "exchange_at": (list, "seqs before which exchange pages runs over every region (-1: end)"),
    "contig_at": (list, "contiguous range allocations: [[seq, pages] or [seq, pages, pfn]]"),
    "contig_policy": (str, "first (alloc_contig_pages' first fit, default) | best"),
    "pool_order": (int, "per-owner pools: order of an owner's chunk (default 0: off)"),
    "pool_owner": (str, "what owns a pool: region (default) | pid | comm"),
    "zsmalloc": (
        str,
        "page | object | hybrid: zram's pages under zsmalloc (replay.models.zsmalloc): "
        "migrated whole by compaction, compacted by zs_compact, or both (default: off)",
    ),
    "zram_classes": (
        list,
        "comm/gfp substrings of the zram pages (default on embedded-gpu-zram: its zram gfp)",
    ),
    "zsmalloc_interval_ms": (
        int,
        "period of zsmalloc's shrinker calls, ms of trace time (default 100)",
    ),
    "zsmalloc_fill_pct": (
        int,
        "zs_compact runs when the pool's objects fill less than this % of its slots "
        "(default 100: at every shrinker call)",
    ),
    "zsmalloc_seed": (int, "seed of the synthetic zspage structure (default 0)"),
    "zone_choice": (
        str,
        "model (the run's zone serves every request, default) | trace (a "
        "request goes to the zone the kernel chose; the model places it there) | zonelist "
        "(the model chooses: Normal, then DMA32, by watermarks, lowmem_reserve and "
        "ALLOC_NOFRAGMENT, replay.models.zonelist)",
    ),
}


PARAM_MAX = {
    "pcp_batch": 2**31 - 1,
    "pcp_high": 2**31 - 1,
    "pcp_high_max": 2**31 - 1,
    "pcp_decay_ms": 2**31 - 1,
    "ncpus": 8192,  # NR_CPUS of distribution kernels
    "min_free_kbytes": 2**31 - 1,  # an int sysctl
    "watermark_scale_factor": 3000,  # the sysctl's maximum
    "extfrag_threshold": 1000,  # the sysctl's maximum
    "proactiveness": 100,
    "vcompound_order": 10,
    "pressure_reclaim_pages": 2**40,
    "pressure_oom_pages": 2**40,
    "defrag_idle_ms": 2**40,
    "pool_order": 10,
    "zsmalloc_interval_ms": 2**40,
    "zsmalloc_fill_pct": 100,
    "zsmalloc_seed": 2**63 - 1,
}


PARAM_MIN = {"min_free_kbytes": 0, "extfrag_threshold": 0, "proactiveness": 0,
             "vcompound_order": 0, "pool_order": 0, "zsmalloc_seed": 0}  # fmt: skip


PARAM_CHOICES = {
    "compaction": ("off", "direct", "proactive", "both"),
    "kswapd": ("off", "lru", "targeted"),
    "contig_policy": ("first", "best"),
    "pool_owner": ("region", "pid", "comm"),
    "zone_choice": ("model", "trace", "zonelist"),
    "zsmalloc": ("page", "object", "hybrid"),
}


PRESETS: dict[str, dict[str, Any]] = {
    "buddy": {"model": "buddy"},
    "mobility": {"model": "mobility"},
    "mobility+pcp": {"model": "mobility", "pcp": True},
    "buddy+compaction": {"model": "buddy", "compaction": "direct"},
    "mobility+compaction": {"model": "mobility", "compaction": "direct"},
    "mobility+proactive": {"model": "mobility", "compaction": "proactive"},
    "mobility+kswapd": {"model": "mobility", "kswapd": "lru"},
    "mobility+kswapd-targeted": {"model": "mobility", "kswapd": "targeted"},
    "mobility+vcompound": {"model": "mobility", "vcompound_order": 1},
    "mobility+exchange": {"model": "mobility", "exchange_at": [-1]},
    "mobility+defrag": {"model": "mobility", "defrag_thresholds": [[9, 8]]},
    "mobility+pools": {"model": "mobility", "pool_order": 4},
    # seed 002's three choices for zram's pages (replay.models.zsmalloc), each on mobility
    # with direct compaction
    "zsmalloc-page": {"model": "mobility", "compaction": "direct", "zsmalloc": "page"},
    "zsmalloc-object": {
        "model": "mobility",
        "compaction": "direct",
        "zsmalloc": "object",
    },
    "zsmalloc-hybrid": {
        "model": "mobility",
        "compaction": "direct",
        "zsmalloc": "hybrid",
    },
    # The closest model of the recorded kernel (docs/fidelity.md): grouping by mobility,
    # pcp lists with 6.7+ high tuning sized from the capture's pagesets, each request in
    # the zone the kernel chose, direct compaction as the GFP flags allow, and the model's
    # compaction wherever the kernel compacted (batch by batch as the kernel's pass
    # migrated; the migrated objects followed to their new pfns), the pcp limits of
    # reclaim while the kernel's kswapd reclaimed, the kernel's drains, bulk frees and
    # refills of pcp lists, and its compaction deferral state.
    "kernel": {
        "model": "mobility",
        "pcp": True,
        "pcp_tuning": True,
        "zone_choice": "trace",
        "compaction": "direct",
        "recorded_compaction": True,
        "recorded_kswapd": True,
        "recorded_drains": True,
        "recorded_pcp_frees": True,
        "recorded_pcp_refills": True,
        "recorded_deferrals": True,
    },
    # the same with the zone chosen by the model: the node's zonelist (Normal, then DMA32)
    # as get_page_from_freelist walks it (replay.models.zonelist), where `kernel` takes
    # the zone the recorded kernel chose
    "kernel+zonelist": {
        "model": "mobility",
        "pcp": True,
        "pcp_tuning": True,
        "zone_choice": "zonelist",
        "compaction": "direct",
        "recorded_compaction": True,
        "recorded_kswapd": True,
        "recorded_drains": True,
        "recorded_pcp_frees": True,
        "recorded_pcp_refills": True,
        "recorded_deferrals": True,
    },
}


@dataclass(frozen=True)
class RunConfig:
    """A run's model configuration, stored as JSON in ``runs.config``."""

    model: str = "buddy"
    preset: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        """The configuration :meth:`to_json` wrote (``runs.config``)."""
        return cls(**json.loads(text))

    def get(self, name: str, default: Any = None) -> Any:
        return self.params.get(name, default)


def check_params(params: dict[str, Any], file: str | None) -> dict[str, Any]:
    for name, value in params.items():
        if name not in PARAMS:
            raise BadInputError(
                f"unknown model parameter {name!r} (known: {', '.join(PARAMS)})",
                file=file,
                field=name,
            )
        want = PARAMS[name][0]
        if type(value) is not want:  # bool is an int subclass: compare exactly
            raise BadInputError(
                f"{name} must be a {want.__name__}, not {type(value).__name__} ({value!r})",
                file=file,
                field=name,
            )
        if want is int and value < PARAM_MIN.get(name, 1):
            raise BadInputError(
                f"{name} must be at least {PARAM_MIN.get(name, 1)}, not {value}",
                file=file,
                field=name,
            )
        if want is int and value > PARAM_MAX[name]:
            raise BadInputError(
                f"{name} must be at most {PARAM_MAX[name]}, not {value}", file=file, field=name
            )
        if want is str and value not in PARAM_CHOICES[name]:
            raise BadInputError(
                f"{name} must be one of {', '.join(PARAM_CHOICES[name])}, not {value!r}",
                file=file,
                field=name,
            )
        if name == "compact_at" and not all(type(v) is int and v >= -1 for v in value):
            raise BadInputError(
                f"compact_at must be a list of seqs (integers >= -1), not {value!r}",
                file=file,
                field=name,
            )
        if name == "exchange_at" and not all(type(v) is int and v >= -1 for v in value):
            raise BadInputError(
                f"exchange_at must be a list of seqs (integers >= -1), not {value!r}",
                file=file,
                field=name,
            )
        if name == "defrag_thresholds" and not all(
            isinstance(v, list) and len(v) == 2 and all(type(a) is int for a in v)
            and 0 <= v[0] <= NF - 1 and v[1] >= 1
            for v in value
        ):  # fmt: skip
            raise BadInputError(
                f"defrag_thresholds must be a list of [order 0-{NF - 1}, blocks >= 1] pairs, "
                f"not {value!r}",
                file=file,
                field=name,
            )
        if name == "contig_at" and not all(
            isinstance(v, list) and len(v) in (2, 3) and all(type(a) is int for a in v)
            and v[0] >= -1 and v[1] >= 1 and (len(v) == 2 or v[2] >= 0)
            for v in value
        ):  # fmt: skip
            raise BadInputError(
                f"contig_at must be a list of [seq >= -1, pages >= 1] or [seq, pages, pfn], "
                f"not {value!r}",
                file=file,
                field=name,
            )
        if name.endswith("_classes") and not all(type(v) is str and v for v in value):
            raise BadInputError(
                f"{name} must be a list of non-empty strings, not {value!r}",
                file=file,
                field=name,
            )
    if params.get("zone_choice") == "zonelist":
        # replay.models.zonelist: these models act on one zone's objects and pages only
        one_zone = {"pool_order": 0, "vcompound_order": 0, "kswapd": "off", "zsmalloc": None,
                    "pressure": False}  # fmt: skip
        for name, off in one_zone.items():
            if name in params and params[name] != off:
                raise BadInputError(
                    f"{name} does not combine with zone_choice = zonelist (it acts on one "
                    "zone's pages; replay.models.zonelist)",
                    file=file,
                    field=name,
                )
    return params


def load_model(spec: str) -> RunConfig:
    """A preset name or a TOML file (``model = "mobility"`` plus the model's parameters)."""
    if spec in PRESETS:
        params = {k: v for k, v in PRESETS[spec].items() if k != "model"}
        return RunConfig(model=PRESETS[spec]["model"], preset=spec, params=params)
    path = Path(spec)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise UsageError(f"{spec}: no such model file")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise BadInputError(
                f"not UTF-8 text (byte {exc.start}): a TOML file must be UTF-8", file=str(path)
            ) from exc
        except tomllib.TOMLDecodeError as exc:
            raise BadInputError(f"not valid TOML: {exc}", file=str(path)) from exc
        model = data.pop("model", None)
        if model not in MODELS:
            raise BadInputError(
                f"model {model!r} is not one of: {', '.join(MODELS)}",
                file=str(path),
                field="model",
            )
        return RunConfig(model=model, preset=None, params=check_params(data, str(path)))
    raise UsageError(f"unknown model {spec!r}: use one of {', '.join(PRESETS)} or a .toml file")
