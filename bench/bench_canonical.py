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
import sys
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
from bench_replay import synthetic_table, timed

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
    table = synthetic_table(events, ZONE_PAGES, seed, csv=kind == "csv")
    tmp = path.with_name(path.name + ".tmp")
    if kind == "parquet":
        pq.write_table(table, tmp)
    elif kind == "arrow":
        feather.write_feather(table, tmp, compression="uncompressed")
    else:
        pacsv.write_csv(table, tmp)
    tmp.replace(path)
    return path


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
    timed([replay, "ingest", str(warm_src), "--db", str(db), "--quiet"])  # (wall, out, rss)
    for d in (db, Path(str(db) + ".wal")):
        d.unlink(missing_ok=True)
    wall, _, rss = timed([replay, "ingest", str(src), "--db", str(db), "--quiet"])
    size_mb = src.stat().st_size / 1e6
    print(f"canonical: {args.events:,} rows of {args.kind} ({size_mb:.0f} MB) in {wall:.2f} s")
    print(f"canonical: {args.events / wall / 1e6:.2f} M rows/s, peak RSS {rss:.0f} MiB")
    print(f"canonical: cores {os.cpu_count()}, database {db.stat().st_size / 1e6:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
