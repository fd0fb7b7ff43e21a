"""Parsers for the /proc snapshots stored next to a trace.

A capture folder holds ``before.*`` and ``after.*`` copies of
``/proc/buddyinfo``, ``/proc/pagetypeinfo``, ``/proc/zoneinfo``,
``/proc/vmstat``, ``/proc/meminfo`` and ``/proc/kpageflags`` (the last one raw
little-endian uint64 per pfn, usually zstd-compressed).  Every parser here
returns Arrow tables and raises :class:`~replay.errors.BadInputError` naming the
file, the 1-based line and the field for malformed input.  Nothing prints.

Units, throughout:

* ``pfn``: page frame number (a physical address divided by the page size);
* ``pages``: a count of base pages (4 KiB on x86-64);
* ``order``: a buddy order, a block of order ``k`` is ``2**k`` pages;
* ``kB``: kibibytes, as printed by ``/proc/meminfo``.
"""

from __future__ import annotations

import gzip
import json
import lzma
import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import zstandard

from replay.errors import BadInputError, UsageError

PathLike = str | os.PathLike[str]

__all__ = [
    "KPF_ACTIVE",
    "KPF_ANON",
    "KPF_ARCH",
    "KPF_ARCH_2",
    "KPF_BUDDY",
    "KPF_COMPOUND_HEAD",
    "KPF_COMPOUND_TAIL",
    "KPF_DIRTY",
    "KPF_ERROR",
    "KPF_HUGE",
    "KPF_HWPOISON",
    "KPF_IDLE",
    "KPF_KSM",
    "KPF_LOCKED",
    "KPF_LRU",
    "KPF_MAPPEDTODISK",
    "KPF_MLOCKED",
    "KPF_MMAP",
    "KPF_NAMES",
    "KPF_NOPAGE",
    "KPF_OFFLINE",
    "KPF_OWNER_PRIVATE",
    "KPF_PGTABLE",
    "KPF_PRIVATE",
    "KPF_PRIVATE_2",
    "KPF_RECLAIM",
    "KPF_REFERENCED",
    "KPF_RESERVED",
    "KPF_SLAB",
    "KPF_SOFTDIRTY",
    "KPF_SWAPBACKED",
    "KPF_SWAPCACHE",
    "KPF_THP",
    "KPF_UNCACHED",
    "KPF_UNEVICTABLE",
    "KPF_UPTODATE",
    "KPF_WRITEBACK",
    "KPF_ZERO_PAGE",
    "MIGRATETYPE_IDS",
    "SNAPSHOT_KINDS",
    "free_blocks_by_zone",
    "free_blocks_from_kpageflags",
    "kpageflags_runs",
    "load_capture_snapshots",
    "parse_buddyinfo",
    "parse_keyvalue",
    "parse_pagetypeinfo",
    "parse_sysctl",
    "parse_zoneinfo",
    "parse_zoneinfo_counters",
    "read_kpageflags",
]

# --------------------------------------------------------------------------
# /proc/kpageflags bits (include/uapi/linux/kernel-page-flags.h, bit numbers)
# --------------------------------------------------------------------------
KPF_LOCKED = 0
KPF_ERROR = 1
KPF_REFERENCED = 2
KPF_UPTODATE = 3
KPF_DIRTY = 4
KPF_LRU = 5
KPF_ACTIVE = 6
KPF_SLAB = 7
KPF_WRITEBACK = 8
KPF_RECLAIM = 9
KPF_BUDDY = 10
KPF_MMAP = 11
KPF_ANON = 12
KPF_SWAPCACHE = 13
KPF_SWAPBACKED = 14
KPF_COMPOUND_HEAD = 15
KPF_COMPOUND_TAIL = 16
KPF_HUGE = 17
KPF_UNEVICTABLE = 18
KPF_HWPOISON = 19
KPF_NOPAGE = 20
KPF_KSM = 21
KPF_THP = 22
KPF_OFFLINE = 23
KPF_ZERO_PAGE = 24
KPF_IDLE = 25
KPF_PGTABLE = 26
# "Kernel hacking assistances" (include/linux/kernel-page-flags.h): not ABI,
# but /proc/kpageflags does report them.
KPF_RESERVED = 32
KPF_MLOCKED = 33
KPF_MAPPEDTODISK = 34
KPF_PRIVATE = 35
KPF_PRIVATE_2 = 36
KPF_OWNER_PRIVATE = 37
KPF_ARCH = 38
KPF_UNCACHED = 39
KPF_SOFTDIRTY = 40
KPF_ARCH_2 = 41

#: bit number -> name without the ``KPF_`` prefix.
KPF_NAMES: dict[int, str] = {
    value: name[4:]
    for name, value in sorted(globals().items())
    if name.startswith("KPF_") and isinstance(value, int)
}

#: migratetype name as printed by /proc/pagetypeinfo -> canonical id
#: (the ``migratetype`` column of the event table); anything else is -1.
MIGRATETYPE_IDS: dict[str, int] = {
    "Unmovable": 0,
    "Movable": 1,
    "Reclaimable": 2,
    "HighAtomic": 3,
    "CMA": 4,
    "Isolate": 5,
}

#: snapshot kinds found in a capture folder, in the order they are loaded.
SNAPSHOT_KINDS: tuple[str, ...] = (
    "buddyinfo",
    "pagetypeinfo",
    "zoneinfo",
    "vmstat",
    "meminfo",
    "kpageflags",
)

_INT_RE = re.compile(r"[-+]?\d+")
_INT16_MAX = 32767


# --------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------
def _name(path: PathLike) -> str:
    return os.fspath(path)


def _read_lines(path: PathLike, what: str) -> list[str]:
    """Read a text snapshot; an unreadable, non-UTF-8 or empty file is bad input."""
    file = _name(path)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise BadInputError(f"cannot read {what}: {e.strerror or e}", file=file) from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise BadInputError("not UTF-8 text", file=file, line=line, field=what) from e
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise BadInputError(f"empty {what} file", file=file, line=1, field=what)
    return lines


def _int(token: str, file: str, line: int, field: str) -> int:
    """Parse one integer token or raise a BadInputError pointing at it."""
    if not _INT_RE.fullmatch(token):
        raise BadInputError(
            f"expected an integer, got {token!r}", file=file, line=line, field=field
        )
    return int(token)


def _node(token: str, file: str, line: int) -> int:
    node = _int(token, file, line, "node")
    if not 0 <= node <= _INT16_MAX:
        raise BadInputError(f"node id {node} out of range", file=file, line=line, field="node")
    return node


def _shape_error(file: str, line: int, what: str, text: str) -> BadInputError:
    shown = text if len(text) <= 80 else text[:77] + "..."
    return BadInputError(
        f"line does not look like {what}: {shown!r}", file=file, line=line, field=what
    )


# --------------------------------------------------------------------------
# /proc/buddyinfo
# --------------------------------------------------------------------------
_BUDDY_RE = re.compile(r"^Node\s+(?P<node>\S+?),\s*zone\s+(?P<zone>\S+)(?P<rest>.*)$")

BUDDYINFO_SCHEMA = pa.schema(
    [
        pa.field("node", pa.int16(), nullable=False),
        pa.field("zone", pa.string(), nullable=False),
        pa.field("order", pa.int8(), nullable=False),
        pa.field("nr_free", pa.int64(), nullable=False),
    ]
)


def parse_buddyinfo(path: PathLike) -> pa.Table:
    """Parse ``/proc/buddyinfo``.

    Returns one row per (node, zone, order): ``node`` int16, ``zone`` string,
    ``order`` int8 (buddy order), ``nr_free`` int64 (number of free *blocks*
    of that order, each ``2**order`` pages).  Any number of order columns is
    accepted (normally 11, orders 0..10), but every line of one file must have
    the same number.
    """
    file = _name(path)
    rows: list[tuple[int, int, str, list[int]]] = []
    for lineno, text in enumerate(_read_lines(path, "buddyinfo"), start=1):
        if not text.strip():
            continue
        m = _BUDDY_RE.match(text.strip())
        if m is None:
            raise _shape_error(file, lineno, "buddyinfo", text)
        node = _node(m["node"], file, lineno)
        tokens = m["rest"].split()
        if not tokens:
            raise BadInputError(
                "no free counts after the zone name", file=file, line=lineno, field="nr_free"
            )
        counts = [_int(tok, file, lineno, f"nr_free[order {i}]") for i, tok in enumerate(tokens)]
        rows.append((lineno, node, m["zone"], counts))

    # The most common width is the truth; a line that differs is truncated or padded.
    width = Counter(len(r[3]) for r in rows).most_common(1)[0][0]
    for lineno, _node_id, zone, counts in rows:
        if len(counts) != width:
            raise BadInputError(
                f"zone {zone} has {len(counts)} order columns, the other lines have {width}",
                file=file,
                line=lineno,
                field="nr_free",
            )

    nodes: list[int] = []
    zones: list[str] = []
    orders: list[int] = []
    free: list[int] = []
    for _lineno, node, zone, counts in rows:
        for order, count in enumerate(counts):
            nodes.append(node)
            zones.append(zone)
            orders.append(order)
            free.append(count)
    return pa.table([nodes, zones, orders, free], schema=BUDDYINFO_SCHEMA)


# --------------------------------------------------------------------------
# /proc/pagetypeinfo
# --------------------------------------------------------------------------
_PT_FREE_RE = re.compile(
    r"^Node\s+(?P<node>\S+?),\s*zone\s+(?P<zone>\S+?),\s*type\s+(?P<mt>\S+)(?P<rest>.*)$"
)
_PT_BLOCK_RE = re.compile(r"^Node\s+(?P<node>\S+?),\s*zone\s+(?P<zone>\S+)(?P<rest>.*)$")
_PT_FREE_HDR = "Free pages count per migrate type at order"
_PT_BLOCK_HDR = "Number of blocks type"
_PT_MIXED_HDR = "Number of mixed blocks"

PAGETYPE_FREE_SCHEMA = pa.schema(
    [
        pa.field("node", pa.int16(), nullable=False),
        pa.field("zone", pa.string(), nullable=False),
        pa.field("migratetype", pa.string(), nullable=False),
        pa.field("mt", pa.int8(), nullable=False),
        pa.field("order", pa.int8(), nullable=False),
        pa.field("nr_free", pa.int64(), nullable=False),
        pa.field("capped", pa.bool_(), nullable=False),
    ]
)
PAGETYPE_BLOCK_SCHEMA = pa.schema(
    [
        pa.field("node", pa.int16(), nullable=False),
        pa.field("zone", pa.string(), nullable=False),
        pa.field("migratetype", pa.string(), nullable=False),
        pa.field("mt", pa.int8(), nullable=False),
        pa.field("nr_pageblocks", pa.int64(), nullable=False),
    ]
)


def _header_value(text: str, label: str, file: str, lineno: int) -> int:
    value = text.split(":", 1)[1].strip()
    return _int(value, file, lineno, label)


def parse_pagetypeinfo(path: PathLike) -> tuple[pa.Table, pa.Table, dict[str, int]]:
    """Parse ``/proc/pagetypeinfo``.

    Returns ``(free, blocks, info)``:

    * ``free``: ``node`` int16, ``zone``, ``migratetype`` (name as printed,
      e.g. ``"Movable"``), ``mt`` int8 (:data:`MIGRATETYPE_IDS`, -1 when
      unknown), ``order`` int8, ``nr_free`` int64 (free blocks of that order
      on that migratetype's free list), ``capped`` (the kernel stopped counting
      at ``nr_free`` and printed ``>100000``: a lower bound);
    * ``blocks``: ``node``, ``zone``, ``migratetype``, ``mt``,
      ``nr_pageblocks`` int64 (pageblocks whose migratetype is that one);
    * ``info``: ``{"pageblock_order": order, "pages_per_block": pages}``.

    The orders come from the "Free pages count per migrate type at order"
    header and the block-section columns from the "Number of blocks type"
    header, so kernels with CMA or without HighAtomic are read correctly.
    The optional "Number of mixed blocks" section (CONFIG_PAGE_OWNER) is
    checked for shape and otherwise ignored.
    """
    file = _name(path)
    info: dict[str, int] = {}
    orders: list[int] | None = None
    block_names: list[str] | None = None
    section = ""
    free_rows: list[tuple[int, str, str, int, int]] = []
    block_rows: list[tuple[int, str, str, int]] = []

    for lineno, raw in enumerate(_read_lines(path, "pagetypeinfo"), start=1):
        text = raw.strip()
        if not text:
            continue
        if text.startswith("Page block order:"):
            info["pageblock_order"] = _header_value(text, "pageblock_order", file, lineno)
        elif text.startswith("Pages per block:"):
            info["pages_per_block"] = _header_value(text, "pages_per_block", file, lineno)
        elif text.startswith(_PT_FREE_HDR):
            toks = text[len(_PT_FREE_HDR) :].split()
            if not toks:
                raise BadInputError(
                    "no orders in the free-pages header", file=file, line=lineno, field="order"
                )
            orders = [_int(t, file, lineno, "order") for t in toks]
            section = "free"
        elif text.startswith(_PT_BLOCK_HDR):
            block_names = text[len(_PT_BLOCK_HDR) :].split()
            if not block_names:
                raise BadInputError(
                    "no migratetype names in the block-count header",
                    file=file,
                    line=lineno,
                    field="migratetype",
                )
            section = "blocks"
        elif text.startswith(_PT_MIXED_HDR):
            section = "mixed"
        elif section == "free" and orders is not None and (m := _PT_FREE_RE.match(text)):
            node = _node(m["node"], file, lineno)
            toks = m["rest"].split()
            if len(toks) != len(orders):
                raise BadInputError(
                    f"{len(toks)} counts for {len(orders)} orders in the header",
                    file=file,
                    line=lineno,
                    field="nr_free",
                )
            for order, tok in zip(orders, toks, strict=True):
                # pagetypeinfo_showfree_print stops counting a list at 100000 entries
                # and prints ">100000": a lower bound (buddyinfo has the exact total)
                capped = tok.startswith(">")
                count = _int(tok[1:] if capped else tok, file, lineno, f"nr_free[order {order}]")
                free_rows.append((node, m["zone"], m["mt"], order, count, capped))
        elif section in ("blocks", "mixed") and (m := _PT_BLOCK_RE.match(text)) is not None:
            node = _node(m["node"], file, lineno)
            toks = m["rest"].split()
            names = block_names if section == "blocks" else None
            if names is not None and len(toks) != len(names):
                raise BadInputError(
                    f"{len(toks)} counts for {len(names)} migratetypes in the header",
                    file=file,
                    line=lineno,
                    field="nr_pageblocks",
                )
            counts = [_int(tok, file, lineno, "nr_pageblocks") for tok in toks]
            if names is not None:
                for name, count in zip(names, counts, strict=True):
                    block_rows.append((node, m["zone"], name, count))
        else:
            raise _shape_error(file, lineno, "pagetypeinfo", raw)

    for key, label in (
        ("pageblock_order", "Page block order"),
        ("pages_per_block", "Pages per block"),
    ):
        if key not in info:
            raise BadInputError(f"no '{label}:' line", file=file, line=1, field=key)

    free = pa.table(
        [
            [r[0] for r in free_rows],
            [r[1] for r in free_rows],
            [r[2] for r in free_rows],
            [MIGRATETYPE_IDS.get(r[2], -1) for r in free_rows],
            [r[3] for r in free_rows],
            [r[4] for r in free_rows],
            [r[5] for r in free_rows],
        ],
        schema=PAGETYPE_FREE_SCHEMA,
    )
    blocks = pa.table(
        [
            [r[0] for r in block_rows],
            [r[1] for r in block_rows],
            [r[2] for r in block_rows],
            [MIGRATETYPE_IDS.get(r[2], -1) for r in block_rows],
            [r[3] for r in block_rows],
        ],
        schema=PAGETYPE_BLOCK_SCHEMA,
    )
    return free, blocks, info


# --------------------------------------------------------------------------
# /proc/zoneinfo
# --------------------------------------------------------------------------
_ZONE_HDR_RE = re.compile(r"^Node\s+(?P<node>\S+?),\s*zone\s+(?P<zone>\S+)$")
_ZONE_KV_RE = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_ ]*?)\s*:?\s+(?P<val>\S+)$")
_ZONE_PROT_RE = re.compile(r"^protection:\s*(?P<val>\(.*\))$")

#: per-zone scalar lines ("        spanned  5242880") copied into columns.
_ZONE_FIELDS = ("boost", "min", "low", "high", "promo", "spanned", "present", "managed", "cma")

ZONEINFO_SCHEMA = pa.schema(
    [
        pa.field("node", pa.int16(), nullable=False),
        pa.field("zone", pa.string(), nullable=False),
        pa.field("start_pfn", pa.int64()),
        pa.field("spanned", pa.int64()),
        pa.field("present", pa.int64()),
        pa.field("managed", pa.int64()),
        pa.field("cma", pa.int64()),
        pa.field("boost", pa.int64()),
        pa.field("min", pa.int64()),
        pa.field("low", pa.int64()),
        pa.field("high", pa.int64()),
        pa.field("promo", pa.int64()),
        pa.field("nr_free_pages", pa.int64()),
        pa.field("protection", pa.string()),
        pa.field("pcp_high", pa.int64()),
        pa.field("pcp_batch", pa.int64()),
        pa.field("pcp_high_min", pa.int64()),
        pa.field("pcp_high_max", pa.int64()),
        pa.field("pcp_count", pa.int64()),
        pa.field("pcp_cpus", pa.string()),
    ]
)
ZONEINFO_COUNTER_SCHEMA = pa.schema(
    [
        pa.field("node", pa.int16(), nullable=False),
        pa.field("zone", pa.string()),
        pa.field("key", pa.string(), nullable=False),
        pa.field("value", pa.int64(), nullable=False),
    ]
)


def _parse_zoneinfo(path: PathLike) -> tuple[pa.Table, pa.Table]:
    file = _name(path)
    zones: list[dict[str, Any]] = []
    counters: list[tuple[int, str | None, str, int]] = []
    seen: dict[tuple[int, str], int] = {}
    cur: dict[str, Any] | None = None
    mode = "zone"  # "node" (per-node stats), "zone", or "pcp" (pagesets)
    ncpu = 0

    for lineno, raw in enumerate(_read_lines(path, "zoneinfo"), start=1):
        text = raw.strip()
        if not text:
            continue
        m = _ZONE_HDR_RE.match(text)
        if m is not None:
            node = _node(m["node"], file, lineno)
            key = (node, m["zone"])
            if key in seen:
                raise BadInputError(
                    f"zone {m['zone']} of node {node} already appeared on line {seen[key]}",
                    file=file,
                    line=lineno,
                    field="zone",
                )
            seen[key] = lineno
            cur = {"node": node, "zone": m["zone"], "_line": lineno}
            zones.append(cur)
            mode, ncpu = "zone", 0
            continue
        if cur is None:
            raise _shape_error(file, lineno, "a zoneinfo 'Node N, zone NAME' header", raw)
        if text == "per-node stats":
            mode = "node"
            continue
        if text == "pagesets":
            mode = "pcp"
            continue
        if text.startswith("protection:"):
            pm = _ZONE_PROT_RE.match(text)
            if pm is None:
                raise _shape_error(file, lineno, "protection", raw)
            cur["protection"] = pm["val"]
            continue
        kv = _ZONE_KV_RE.match(text)
        if kv is None:
            raise _shape_error(file, lineno, "zoneinfo", raw)
        key, value = kv["key"], _int(kv["val"], file, lineno, kv["key"])
        if key == "pages free":
            cur["pages_free"] = value
            mode = "zone"
        elif key in ("start_pfn", "node_unreclaimable", "vm stats threshold"):
            if key == "start_pfn":
                cur["start_pfn"] = value
        elif mode == "node":
            counters.append((cur["node"], None, key, value))
        elif mode == "pcp":
            if key == "cpu":
                ncpu += 1
            elif ncpu == 1 and key in ("high", "batch", "high_min", "high_max"):
                cur[f"pcp_{key}"] = value
            if key == "count":  # pages on the pcp lists, summed over the cpus
                cur["pcp_count"] = cur.get("pcp_count", 0) + value
            if key in ("count", "high"):  # each cpu's, in cpu order
                cur.setdefault("_cpus", {}).setdefault(ncpu - 1, {})[key] = value
        elif key in _ZONE_FIELDS:
            cur[key] = value
        else:
            counters.append((cur["node"], cur["zone"], key, value))
            if key == "nr_free_pages":
                cur["nr_free_pages"] = value

    for zone in zones:
        for required in ("spanned", "present"):
            if required not in zone:
                raise BadInputError(
                    f"zone {zone['zone']} has no '{required}' line",
                    file=file,
                    line=zone["_line"],
                    field=required,
                )
        # "pages free" and the nr_free_pages counter are the same number
        # (NR_FREE_PAGES); unpopulated zones only print the former.
        zone.setdefault("nr_free_pages", zone.get("pages_free"))
        if "_cpus" in zone:
            zone["pcp_cpus"] = json.dumps([[c.get("count", 0), c.get("high", 0)]
                                           for _, c in sorted(zone["_cpus"].items())])  # fmt: skip

    table = pa.table(
        {f.name: [z.get(f.name) for z in zones] for f in ZONEINFO_SCHEMA},
        schema=ZONEINFO_SCHEMA,
    )
    counter_table = pa.table(
        [
            [c[0] for c in counters],
            [c[1] for c in counters],
            [c[2] for c in counters],
            [c[3] for c in counters],
        ],
        schema=ZONEINFO_COUNTER_SCHEMA,
    )
    return table, counter_table


def parse_zoneinfo(path: PathLike) -> pa.Table:
    """Parse ``/proc/zoneinfo`` into one row per (node, zone).

    Columns: ``node`` int16, ``zone`` string, ``start_pfn`` (pfn),
    ``spanned``/``present``/``managed``/``cma`` (pages), ``boost``, ``min``,
    ``low``, ``high``, ``promo`` (watermarks, pages), ``nr_free_pages``
    (pages), ``protection`` (the lowmem_reserve tuple as printed, pages),
    ``pcp_high``, ``pcp_batch``, ``pcp_high_min`` and ``pcp_high_max`` (pages,
    from the first CPU's pageset; high_min/max are 6.7+), ``pcp_count``
    (pages on the pcp lists of every CPU) and ``pcp_cpus`` (JSON: each CPU's
    ``[count, high]``, pages, in CPU order).
    Everything but node and zone is nullable: unpopulated zones (``present
    0``, e.g. Movable or Device) print no start_pfn, counters nor pagesets,
    ``cma`` needs CONFIG_CMA and ``promo`` is 6.x only.  The per-node stats
    and the per-zone counters (``nr_*``, ``numa_*``) are in
    :func:`parse_zoneinfo_counters`.
    """
    return _parse_zoneinfo(path)[0]


def parse_zoneinfo_counters(path: PathLike) -> pa.Table:
    """The counters of ``/proc/zoneinfo`` as a long table.

    Columns ``node`` int16, ``zone`` (null for the "per-node stats" block
    printed before the first zone of each node), ``key`` and ``value`` int64
    (pages or event counts, as the kernel prints them).
    """
    return _parse_zoneinfo(path)[1]


# --------------------------------------------------------------------------
# /proc/vmstat, /proc/meminfo
# --------------------------------------------------------------------------
_MEMINFO_RE = re.compile(r"^(?P<key>[^:\s]+):\s*(?P<val>\S+)(?:\s+(?P<unit>\S+))?$")

KEYVALUE_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("value", pa.int64(), nullable=False),
        pa.field("unit", pa.string()),
    ]
)


def parse_keyvalue(path: PathLike, kind: str) -> pa.Table:
    """Parse ``/proc/vmstat`` (``kind="vmstat"``) or ``/proc/meminfo`` (``"meminfo"``).

    Columns: ``key`` string, ``value`` int64, ``unit`` string (``"kB"`` for
    meminfo lines that carry it, otherwise null).  vmstat values are pages or
    event counts; meminfo values are kB unless the unit is null (the
    ``HugePages_*`` counts are numbers of huge pages).
    """
    if kind not in ("vmstat", "meminfo"):
        raise UsageError(f"parse_keyvalue: kind must be 'vmstat' or 'meminfo', not {kind!r}")
    file = _name(path)
    keys: list[str] = []
    values: list[int] = []
    units: list[str | None] = []
    for lineno, raw in enumerate(_read_lines(path, kind), start=1):
        text = raw.strip()
        if not text:
            continue
        if kind == "vmstat":
            toks = text.split()
            if len(toks) != 2:
                raise _shape_error(file, lineno, "vmstat 'name value'", raw)
            keys.append(toks[0])
            values.append(_int(toks[1], file, lineno, toks[0]))
            units.append(None)
        else:
            m = _MEMINFO_RE.match(text)
            if m is None:
                raise _shape_error(file, lineno, "meminfo 'Name: value [kB]'", raw)
            unit = m["unit"]
            if unit is not None and unit != "kB":
                raise BadInputError(
                    f"unit {unit!r} is not 'kB'", file=file, line=lineno, field=f"{m['key']}.unit"
                )
            keys.append(m["key"])
            values.append(_int(m["val"], file, lineno, m["key"]))
            units.append(unit)
    return pa.table([keys, values, units], schema=KEYVALUE_SCHEMA)


SYSCTL_SCHEMA = pa.schema(
    [pa.field("key", pa.string(), nullable=False), pa.field("value", pa.string(), nullable=False)]
)


def parse_sysctl(path: PathLike) -> pa.Table:
    """Parse a capture's ``<when>.sysctl``: ``name = value`` lines, as ``sysctl`` prints.

    Columns ``key`` (``vm.min_free_kbytes``, ``page_reporting.page_reporting_order``)
    and ``value`` (text: some are lists, ``vm.lowmem_reserve_ratio = 256 256 32 0 0``).
    """
    file = _name(path)
    keys: list[str] = []
    values: list[str] = []
    for lineno, raw in enumerate(_read_lines(path, "sysctl"), start=1):
        text = raw.strip()
        if not text:
            continue
        key, eq, value = text.partition("=")
        if not eq or not key.strip() or " " in key.strip():
            raise _shape_error(file, lineno, "sysctl 'name = value'", raw)
        keys.append(key.strip())
        values.append(" ".join(value.split()))
    return pa.table([keys, values], schema=SYSCTL_SCHEMA)


# --------------------------------------------------------------------------
# /proc/kpageflags
# --------------------------------------------------------------------------
_CHUNK = 1 << 20


def _read_chunks(stream: BinaryIO) -> Iterator[bytes]:
    while chunk := stream.read(_CHUNK):
        yield chunk


def _zstd_bytes(path: PathLike, file: str) -> bytearray:
    """Decompress every zstd frame of a file, streaming; truncation is an error."""
    out = bytearray()
    dctx = zstandard.ZstdDecompressor()
    obj = dctx.decompressobj()
    fed = False  # bytes fed into the current, unfinished frame
    with open(path, "rb") as f:
        for chunk in _read_chunks(f):
            data = chunk
            while data:
                out += obj.decompress(data)
                fed = True
                if obj.eof:
                    data = obj.unused_data
                    obj = dctx.decompressobj()
                    fed = False
                else:
                    data = b""
    if fed and not obj.eof:
        raise BadInputError(
            f"truncated zstd stream ({len(out)} bytes decompressed before the end)",
            file=file,
            field="kpageflags",
        )
    return out


def read_kpageflags(path: PathLike) -> npt.NDArray[np.uint64]:
    """Read a copy of ``/proc/kpageflags``: one uint64 of KPF_* bits per pfn.

    Element ``i`` is the flags of pfn ``i`` (the file starts at pfn 0).
    Accepts the raw file or a ``.zst``/``.zstd``, ``.gz`` or ``.xz``/``.lzma``
    compressed copy (decompressed streaming).  A truncated compressed file or
    a size that is not a multiple of 8 bytes is a BadInputError.
    """
    file = _name(path)
    suffix = Path(path).suffix.lower()
    try:
        if suffix in (".zst", ".zstd"):
            buf: bytes | bytearray = _zstd_bytes(path, file)
        elif suffix in (".gz", ".xz", ".lzma"):
            opener = gzip.open if suffix == ".gz" else lzma.open
            buf = bytearray()
            with opener(path, "rb") as f:
                for chunk in _read_chunks(f):  # type: ignore[arg-type]
                    buf += chunk
        else:
            with open(path, "rb") as f:  # works for /proc/kpageflags itself too
                buf = bytearray()
                for chunk in _read_chunks(f):
                    buf += chunk
    except BadInputError:
        raise
    except (EOFError, zstandard.ZstdError, lzma.LZMAError, gzip.BadGzipFile) as e:
        raise BadInputError(f"corrupt or truncated: {e}", file=file, field="kpageflags") from e
    except OSError as e:
        raise BadInputError(f"cannot read kpageflags: {e}", file=file, field="kpageflags") from e
    if not buf:
        raise BadInputError("empty kpageflags file", file=file, field="kpageflags")
    if len(buf) % 8:
        raise BadInputError(
            f"size {len(buf)} bytes is not a multiple of 8", file=file, field="kpageflags"
        )
    return np.frombuffer(buf, dtype="<u8").astype(np.uint64, copy=False)


RUNS_SCHEMA = pa.schema(
    [
        pa.field("pfn", pa.int64(), nullable=False),
        pa.field("nr_pages", pa.int64(), nullable=False),
        pa.field("flags", pa.uint64(), nullable=False),
    ]
)


def kpageflags_runs(flags: npt.ArrayLike, base_pfn: int = 0) -> pa.Table:
    """Run-length encode a kpageflags array.

    ``flags[i]`` belongs to pfn ``base_pfn + i``.  Returns ``pfn`` int64 (first
    pfn of the run), ``nr_pages`` int64 (run length, pages) and ``flags``
    uint64; consecutive pfns with identical flags form one run.
    """
    arr = np.asarray(flags, dtype=np.uint64)
    if arr.ndim != 1:
        raise ValueError("kpageflags_runs: flags must be one-dimensional")
    n = arr.size
    if n == 0:
        return RUNS_SCHEMA.empty_table()
    starts = np.flatnonzero(arr[1:] != arr[:-1]) + 1
    starts = np.concatenate((np.zeros(1, dtype=np.int64), starts.astype(np.int64)))
    lengths = np.diff(np.append(starts, np.int64(n)))
    return pa.table(
        [
            pa.array(starts + np.int64(base_pfn), type=pa.int64()),
            pa.array(lengths, type=pa.int64()),
            pa.array(arr[starts], type=pa.uint64()),
        ],
        schema=RUNS_SCHEMA,
    )


def _aligned_decomposition(
    free: npt.NDArray[np.bool_], base_pfn: int, max_order: int
) -> npt.NDArray[np.int64]:
    """Count the blocks of the maximal naturally-aligned decomposition of a pfn set.

    ``free[i]`` says whether pfn ``base_pfn + i`` is free.  The greedy walk
    (at each pfn of a free run take the largest order ``k <= max_order`` with
    the pfn aligned to ``2**k`` and the block inside the run) yields exactly
    the aligned blocks that are entirely free and whose aligned parent is not
    (or whose order is ``max_order``).  With ``F[k]`` the number of entirely
    free aligned order-``k`` blocks, the count of order ``k`` is therefore
    ``F[k] - 2 * F[k + 1]`` below ``max_order`` and ``F[max_order]`` at it.
    """
    counts = np.zeros(max_order + 1, dtype=np.int64)
    n = int(free.size)
    if n == 0:
        return counts
    block = 1 << max_order
    front = base_pfn % block
    total = front + n
    padded = np.zeros(total + (-total) % block, dtype=bool)
    padded[front:total] = free
    full = np.zeros(max_order + 1, dtype=np.int64)
    level = padded
    full[0] = np.count_nonzero(level)
    for k in range(1, max_order + 1):
        level = level[0::2] & level[1::2]
        full[k] = np.count_nonzero(level)
    counts[:max_order] = full[:max_order] - 2 * full[1:]
    counts[max_order] = full[max_order]
    return counts


def _check_decomposition_args(base_pfn: int, max_order: int) -> None:
    if base_pfn < 0:
        raise ValueError(f"base_pfn must be >= 0, not {base_pfn}")
    if not 0 <= max_order <= 40:
        raise ValueError(f"max_order must be in 0..40, not {max_order}")


def _buddy_mask(flags: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    arr = np.asarray(flags, dtype=np.uint64)
    if arr.ndim != 1:
        raise ValueError("flags must be one-dimensional")
    return (arr & np.uint64(1 << KPF_BUDDY)) != 0


def free_blocks_from_kpageflags(
    flags: npt.ArrayLike, base_pfn: int = 0, max_order: int = 10
) -> npt.NDArray[np.int64]:
    """Free blocks per order implied by the KPF_BUDDY bits of a kpageflags array.

    ``flags[i]`` is the flags of pfn ``base_pfn + i``.  The set of pfns with
    KPF_BUDDY set is decomposed into maximal naturally aligned blocks (a block
    of order ``k`` starts at a pfn divisible by ``2**k``), no larger than
    ``max_order``.  Returns an int64 array of length ``max_order + 1``: the
    number of free blocks of each order, comparable with a buddyinfo line.
    (Kernel 6.18 sets KPF_BUDDY on every page of a free block.)
    """
    _check_decomposition_args(base_pfn, max_order)
    return _aligned_decomposition(_buddy_mask(flags), base_pfn, max_order)


def free_blocks_by_zone(
    flags: npt.ArrayLike,
    zones: pa.Table,
    base_pfn: int = 0,
    max_order: int = 10,
) -> dict[tuple[int, str], list[int]]:
    """Per-zone free blocks per order from a kpageflags array.

    ``zones`` is a :func:`parse_zoneinfo` table (``node``, ``zone``,
    ``start_pfn``, ``spanned``).  Each zone's pfn range ``[start_pfn,
    start_pfn + spanned)`` is decomposed separately (blocks never cross a zone
    boundary); pfns outside the array count as not free.  Returns
    ``{(node, zone): [nr_free of order 0, ..., nr_free of order max_order]}``;
    zones that span no pages get all zeros.
    """
    _check_decomposition_args(base_pfn, max_order)
    mask = _buddy_mask(flags)
    end = base_pfn + mask.size
    result: dict[tuple[int, str], list[int]] = {}
    for row in zones.select(["node", "zone", "start_pfn", "spanned"]).to_pylist():
        key = (int(row["node"]), str(row["zone"]))
        spanned = row["spanned"] or 0
        if spanned <= 0:
            result[key] = [0] * (max_order + 1)
            continue
        start = row["start_pfn"]
        if start is None:
            raise BadInputError(
                f"zone {key[1]} spans {spanned} pages but has no start_pfn", field="start_pfn"
            )
        lo = max(start, base_pfn)
        hi = min(start + spanned, end)
        if hi <= lo:
            result[key] = [0] * (max_order + 1)
            continue
        counts = _aligned_decomposition(mask[lo - base_pfn : hi - base_pfn], lo, max_order)
        result[key] = [int(c) for c in counts]
    return result


# --------------------------------------------------------------------------
# capture folders
# --------------------------------------------------------------------------
_KPAGEFLAGS_SUFFIXES = ("", ".zst", ".zstd", ".gz", ".xz", ".lzma")


def load_capture_snapshots(folder: PathLike) -> dict[str, dict[str, Any]]:
    """Load the ``before.*`` and ``after.*`` snapshots of a capture folder.

    Returns ``{"before": {...}, "after": {...}}`` (both keys always present);
    each inner dict has only the snapshots that exist, under the keys
    ``"buddyinfo"`` (table), ``"pagetypeinfo"`` (the
    :func:`parse_pagetypeinfo` tuple), ``"zoneinfo"`` (table), ``"vmstat"``,
    ``"meminfo"``, ``"sysctl"`` (tables) and ``"kpageflags"``: the *path* of the kpageflags
    copy (raw or compressed), not loaded since it is large; read it with
    :func:`read_kpageflags`.
    """
    root = Path(folder)
    if not root.is_dir():
        raise BadInputError("capture folder does not exist or is not a directory", file=_name(root))
    out: dict[str, dict[str, Any]] = {}
    for when in ("before", "after"):
        snaps: dict[str, Any] = {}
        for kind in SNAPSHOT_KINDS:
            if kind == "kpageflags":
                for suffix in _KPAGEFLAGS_SUFFIXES:
                    candidate = root / f"{when}.kpageflags{suffix}"
                    if candidate.is_file():
                        snaps[kind] = candidate
                        break
                continue
            path = root / f"{when}.{kind}"
            if not path.is_file():
                continue
            if kind == "buddyinfo":
                snaps[kind] = parse_buddyinfo(path)
            elif kind == "pagetypeinfo":
                snaps[kind] = parse_pagetypeinfo(path)
            elif kind == "zoneinfo":
                snaps[kind] = parse_zoneinfo(path)
            else:
                snaps[kind] = parse_keyvalue(path, kind)
        sysctl = root / f"{when}.sysctl"
        if sysctl.is_file():
            snaps["sysctl"] = parse_sysctl(sysctl)
        out[when] = snaps
    return out
