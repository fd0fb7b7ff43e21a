"""Model-state checkpoints: a run's complete replay state, stored every so many events.

``replay explain`` and the forks it runs need a model's state just before any
event N of a stored run. Replaying the run from its start costs time in
proportion to N (seconds on a 10M-event run); a checkpoint holds every array
the replay's kernels read and write (the zone's free lists and per-page
arrays, the pcp lists and their tuning state, the objects' placements, the
compaction passes in progress, counters and statistics) after an event, so the
state before N is the nearest earlier checkpoint plus at most one spacing of
events replayed from there. The continuation is exact: the same arrays, the
same list orders, the same counters as the run had.

A checkpoint is one BLOB: ``MAGIC``, a little-endian u32 header length, a JSON
header (format version, each array's name, dtype, shape and byte offset, the
payload's length in bytes) and the arrays' bytes compressed with zstd.
"""

from __future__ import annotations

import json
import struct
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from replay.errors import CheckpointError

if TYPE_CHECKING:
    from replay.store import Store

MAGIC = b"RPCKPT\x00"
# 2: the zone's capture_control (Zone.capture, CC_CAPC/CC_CAPC_PAGE in cz)
# 3: a recorded pass's compact_control keeps its isolated units (passes.cc is NR_CZ wide)
# 4: the pageblocks' skip hints (Zone.pageblock_skip) and fast_find_migrateblock's state
# 5: the zone's skip flush and initial scanner positions (CZ_BLOCKSKIP_FLUSH,
#    CZ_INIT_*), cc->direct_compaction/finish_pageblock/search_order, a pageblock of units
VERSION = 6
_LEN = struct.Struct("<I")
ALIGN = 64  # bytes: each array's offset in the payload is a multiple


def pack(arrays: dict[str, np.ndarray]) -> bytes:
    """The arrays (name -> array of any shape, a numeric dtype) as one checkpoint BLOB.

    The payload is laid out first and each array copied into it once (a run's state is
    tens of MB: a bytes copy per array and a join of them cost about 0.05 s of a 0.11 s
    checkpoint of the 1M-page zone, BENCHMARKS.md's seventeenth session)."""
    entries: list[dict[str, Any]] = []
    flat: list[np.ndarray] = []
    offset = 0
    for name, a in arrays.items():
        a = np.asarray(a)
        entries.append({"name": name, "dtype": a.dtype.str, "shape": list(a.shape),
                        "offset": offset, "nbytes": a.nbytes})  # fmt: skip
        flat.append(a)
        offset += a.nbytes + (-a.nbytes % ALIGN)  # each array starts aligned: unpacked, a view
    payload = np.empty(offset, np.uint8)
    for e, a in zip(entries, flat, strict=True):
        start, end = e["offset"], e["offset"] + e["nbytes"]
        # its bytes in C order, as tobytes gave them (a copy only of a non-contiguous one)
        payload[start:end] = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
        payload[end : end + (-e["nbytes"] % ALIGN)] = 0
    header = json.dumps({"version": VERSION, "bytes": offset, "arrays": entries}).encode()
    body = pa.compress(payload, codec="zstd", asbytes=True) if offset else b""
    return MAGIC + _LEN.pack(len(header)) + header + body


def header(blob: bytes) -> dict[str, Any]:
    """The JSON header of a checkpoint BLOB (raises CheckpointError if it is none)."""
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + _LEN.size:
        raise CheckpointError("not a replay checkpoint (bad magic)")
    (n,) = _LEN.unpack_from(blob, len(MAGIC))
    start = len(MAGIC) + _LEN.size
    try:
        head = json.loads(blob[start : start + n])
    except ValueError as exc:
        raise CheckpointError(f"checkpoint header at byte {start} is not JSON: {exc}") from None
    if not isinstance(head, dict) or head.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint format version {head.get('version') if isinstance(head, dict) else '?'}"
            f" is not {VERSION}: replay the run again (replay run) to rebuild its checkpoints"
        )
    head["_body"] = start + n
    return head


def unpack(blob: bytes) -> dict[str, np.ndarray]:
    """The arrays of a checkpoint BLOB: writable, aligned, C-contiguous views of one
    decompressed buffer (the kernels take them as the arrays they were)."""
    head = header(blob)
    size = int(head["bytes"])
    body = blob[int(head["_body"]) :]
    try:
        payload = (pa.decompress(body, decompressed_size=size, codec="zstd")
                   if size else pa.allocate_buffer(0))  # fmt: skip
    except (OSError, pa.ArrowException) as exc:
        raise CheckpointError(f"checkpoint payload does not decompress: {exc}") from None
    if payload.size != size:
        raise CheckpointError(f"checkpoint payload is {payload.size} bytes, not {size}")
    if payload.is_mutable and payload.address % ALIGN == 0:
        # Arrow's pool hands out fresh, writable, 64-byte aligned memory: the arrays are
        # views of it (no copy of the hundreds of MB a large zone's state takes)
        buf = np.frombuffer(memoryview(payload), np.uint8)
    else:  # one writable copy, on an ALIGN-byte boundary
        raw = np.empty(size + ALIGN, np.uint8)
        skip = -raw.ctypes.data % ALIGN
        buf = raw[skip : skip + size]
        buf[:] = np.frombuffer(payload, np.uint8)
    out: dict[str, np.ndarray] = {}
    for e in head["arrays"]:
        start, nbytes = int(e["offset"]), int(e["nbytes"])
        if start % ALIGN or start + nbytes > size:
            raise CheckpointError(
                f"checkpoint array {e['name']} at byte {start} is not "
                f"inside the {size}-byte payload on a {ALIGN}-byte boundary"
            )
        a = buf[start : start + nbytes].view(np.dtype(e["dtype"]))
        out[str(e["name"])] = a.reshape(tuple(e["shape"]))
    return out


# -- the checkpoints table ------------------------------------------------------------------
# A checkpoint is stored as rows of at most PART_BYTES of its BLOB (``part`` 0, 1, ...):
# DuckDB reads a BLOB column's data for every row of the vector it scans, so fetching one
# checkpoint stored whole read every checkpoint of the table (0.25 s for 14 of 10 MB);
# in 64 KiB parts it reads little more than its own (0.07 s).
PART_BYTES = 64 << 10


def store_checkpoint(store: Store, run_id: int, seq: int, events: int, blob: bytes) -> None:
    """Insert one checkpoint (the state after event ``seq``, ``events`` events replayed)."""
    view = memoryview(blob)
    parts = [view[i : i + PART_BYTES] for i in range(0, len(blob), PART_BYTES)] or [view]
    tab = pa.table({
        "run_id": pa.array([run_id] * len(parts), pa.int32()),
        "seq": pa.array([seq] * len(parts), pa.int64()),
        "events": pa.array([events] * len(parts), pa.int64()),
        "state": pa.array([bytes(p) for p in parts], pa.binary()),
        "part": pa.array(range(len(parts)), pa.int32()),
    })  # fmt: skip
    store.con.register("_replay_checkpoint", tab)
    try:
        store.run("INSERT INTO checkpoints (run_id, seq, events, state, part) "
                  "SELECT run_id, seq, events, state, part FROM _replay_checkpoint")  # fmt: skip
    finally:
        store.con.unregister("_replay_checkpoint")


def load_checkpoint(store: Store, run_id: int, before: int) -> bytes | None:
    """The BLOB of run ``run_id``'s newest checkpoint after an event before seq ``before``
    (None if it has none)."""
    row = store.one("SELECT max(seq) FROM checkpoints WHERE run_id = $r AND seq < $s",
                    {"r": run_id, "s": before})  # fmt: skip
    if row is None or row[0] is None:
        return None
    parts = store.query(
        "SELECT part, state FROM checkpoints WHERE run_id = $r AND seq = $s ORDER BY part",
        {"r": run_id, "s": int(row[0])},
    )
    numbers = parts.column("part").to_pylist()
    if numbers != list(range(len(numbers))):
        raise CheckpointError(f"checkpoint of run {run_id} after seq {row[0]} has parts "
                              f"{numbers[:8]}, not 0, 1, ...: replay the run again")  # fmt: skip
    return b"".join(v.as_py() for v in parts.column("state"))
