"""Canonical-file ingest benchmark: a 10M-row canonical Parquet file to DuckDB.

Builds the file bench_replay.py builds (its seeded generator: objects of order
0..9, mostly order 0, memory kept 60-80% full; each object Unmovable 20%,
Movable 70% or Reclaimable 10%; events on cpu 0 or 1), or the same rows as an
Arrow IPC file or a CSV file, then runs ``replay ingest FILE --db X --quiet``
as a child process (the whole process: start-up, reading, validation and
filling in, DuckDB) and prints rows/s and the child's peak RSS (from wait4).
Usage: python bench/bench_canonical.py [--events N] [--seed S] [--kind parquet|arrow|csv]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
from bench_replay import ORDER_CDF, generate

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
ZONE_PAGES = 1 << 20


def build(events: int, seed: int, kind: str) -> Path:
    """The benchmark input (cached in bench/data): ``events`` rows, as ``kind``."""
    DATA.mkdir(parents=True, exist_ok=True)
    suffix = {"parquet": "parquet", "arrow": "arrow", "csv": "csv"}[kind]
    path = DATA / f"canonical-{events}-{seed}.{suffix}"
    if path.exists():
        return path
    op, obj, order = generate(events, ZONE_PAGES, seed, ORDER_CDF)
    rng = np.random.default_rng(seed)
    obj_mt = rng.choice(np.array([0, 1, 2], np.int8), size=int(obj.max()) + 1, p=[0.2, 0.7, 0.1])
    cpu = rng.integers(0, 2, size=events, dtype=np.int16)
    if kind == "csv":
        ops: pa.Array = pa.array(np.where(op == 1, "alloc", "free"))
    else:
        ops = pa.DictionaryArray.from_arrays(
            pa.array(np.where(op == 1, 0, 1).astype(np.int8)), pa.array(["alloc", "free"])
        )
    table = pa.table(
        {"op": ops, "obj": obj, "order": order, "migratetype": obj_mt[obj], "cpu": cpu}
    )
    tmp = path.with_name(path.name + ".tmp")
    if kind == "parquet":
        pq.write_table(table, tmp)
    elif kind == "arrow":
        feather.write_feather(table, tmp, compression="uncompressed")
    else:
        pacsv.write_csv(table, tmp)
    tmp.replace(path)
    return path


def timed(cmd: list[str]) -> tuple[float, float]:
    """Run a child; its wall time (s) and own peak RSS (MiB, from wait4)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{' '.join(cmd[1:3])} failed with exit code {status}")
    return wall, usage.ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kind", choices=("parquet", "arrow", "csv"), default="parquet")
    args = ap.parse_args()
    src = build(args.events, args.seed, args.kind)
    replay = str(Path(sys.executable).parent / "replay")
    db = DATA / "canonical-bench.duckdb"
    # Warm the numba cache so the figure is the steady state, not a compile.
    warm_src = build(10_000, args.seed, args.kind)
    for d in (db, Path(str(db) + ".wal")):
        d.unlink(missing_ok=True)
    timed([replay, "ingest", str(warm_src), "--db", str(db), "--quiet"])
    for d in (db, Path(str(db) + ".wal")):
        d.unlink(missing_ok=True)
    wall, rss = timed([replay, "ingest", str(src), "--db", str(db), "--quiet"])
    size_mb = src.stat().st_size / 1e6
    print(f"canonical: {args.events:,} rows of {args.kind} ({size_mb:.0f} MB) in {wall:.2f} s")
    print(f"canonical: {args.events / wall / 1e6:.2f} M rows/s, peak RSS {rss:.0f} MiB")
    print(f"canonical: cores {os.cpu_count()}, database {db.stat().st_size / 1e6:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
