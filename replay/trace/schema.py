"""Arrow schemas of the canonical event table and the aux (side) event table.

The canonical columns are those of SPEC-trace.md plus ``failed``: true on an
allocation request the recorded kernel failed (``mm_page_alloc`` with
``page=(null)``/``pfn=0``; its ``pfn`` is null and nothing frees it), so a
model is asked the same requests the kernel was. Two extra columns are
carried beside them: ``line`` (1-based line of the source text, or row of a
canonical file) and ``batched`` (a batched/pagevec free tracepoint reported
this free too).
"""

from __future__ import annotations

import pyarrow as pa

MIGRATETYPE_NAMES = {
    -1: "unknown",
    0: "Unmovable",
    1: "Movable",
    2: "Reclaimable",
    3: "HighAtomic",
    4: "CMA",
    5: "Isolate",
}
MIGRATE_UNMOVABLE = 0
MIGRATE_MOVABLE = 1
MIGRATE_RECLAIMABLE = 2
MIGRATE_HIGHATOMIC = 3
MIGRATE_CMA = 4
MIGRATE_UNKNOWN = -1  # frees of objects allocated before tracing began

MAX_ORDER = 10
# The largest pfn any kernel has with 4 KiB pages: MAX_PHYSMEM_BITS is at most 52
# (x86-64 with 5-level paging, arm64 with 52-bit physical addresses).
MAX_PFN = (1 << 40) - 1

OP_TYPE = pa.dictionary(pa.int8(), pa.string())
COMM_TYPE = pa.dictionary(pa.int32(), pa.string())
STRING_DICT = COMM_TYPE  # per-line strings that repeat (task names, event names, GFP flags)
OP_DICTIONARY = pa.array(["alloc", "free"], type=pa.string())

EVENT_SCHEMA = pa.schema(
    [
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("ts_ns", pa.int64(), nullable=False),
        pa.field("op", OP_TYPE, nullable=False),
        pa.field("obj", pa.int64(), nullable=False),
        pa.field("offset", pa.int32(), nullable=False),
        pa.field("order", pa.int8(), nullable=False),
        pa.field("migratetype", pa.int8(), nullable=False),
        pa.field("gfp", STRING_DICT),
        pa.field("pfn", pa.int64()),
        pa.field("cpu", pa.int16()),
        pa.field("pid", pa.int32()),
        pa.field("comm", COMM_TYPE),
        pa.field("region", pa.int64()),
        pa.field("vpn", pa.int64()),
        pa.field("movable", pa.bool_()),
        pa.field("line", pa.int64()),
        pa.field("batched", pa.bool_()),
        pa.field("failed", pa.bool_()),
    ]
)
CANONICAL_COLUMNS = (*EVENT_SCHEMA.names[:15], "failed")

AUX_SCHEMA = pa.schema(
    [
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("line", pa.int64()),
        pa.field("ts_ns", pa.int64()),
        pa.field("cpu", pa.int16()),
        pa.field("pid", pa.int32()),
        pa.field("comm", STRING_DICT),
        pa.field("event", STRING_DICT, nullable=False),
        pa.field("pfn", pa.int64()),
        pa.field("order", pa.int8()),
        pa.field("migratetype", pa.int8()),
        pa.field("args", pa.string()),  # JSON object of the untyped key=value fields
        pa.field("text", pa.string()),
    ]
)
