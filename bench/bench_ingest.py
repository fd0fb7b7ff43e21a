"""Ingest benchmark: the shipped real trace concatenated to ~10M lines, text to DuckDB.

Runs ``replay ingest`` as a child process (the whole process: start-up,
decompression, parsing, pairing, DuckDB) and prints lines/s and the child's
peak RSS. Usage: python bench/bench_ingest.py [--copies N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRACE = ROOT / "traces" / "compact-6.18" / "trace.txt.zst"
DATA = ROOT / "bench" / "data"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--copies", type=int, default=32, help="copies of the 318,080-line trace")
    args = ap.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    big = DATA / f"trace-x{args.copies}.txt.zst"
    if not big.exists():
        # zstd frames concatenate into a valid zstd file: no recompression needed.
        with open(big.with_suffix(".tmp"), "wb") as out:
            for _ in range(args.copies):
                with open(TRACE, "rb") as f:
                    shutil.copyfileobj(f, out)
        big.with_suffix(".tmp").replace(big)
    lines = 318080 * args.copies
    db = DATA / "bench.duckdb"
    for p in (db, Path(str(db) + ".wal")):
        p.unlink(missing_ok=True)
    replay = Path(sys.executable).parent / "replay"
    # Warm the numba cache so the figure is the steady state, not a compile.
    warm = DATA / "warm.duckdb"
    warm.unlink(missing_ok=True)
    subprocess.run(
        [str(replay), "ingest", str(TRACE), "--db", str(warm), "--quiet", "--format", "json"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    warm.unlink(missing_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [
            str(replay),
            "ingest",
            str(big),
            "--db",
            str(db),
            "--quiet",
            "--format",
            "json",
            "--name",
            "bench",
        ],
        stdout=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status):
        raise SystemExit("ingest failed")
    peak_kib = usage.ru_maxrss
    print(f"ingest: {lines:,} lines ({big.stat().st_size / 1e6:.0f} MB zstd) in {wall:.2f} s")
    print(f"ingest: {lines / wall / 1e6:.2f} M lines/s, peak RSS {peak_kib / 1024:.0f} MiB")
    print(f"ingest: cores {os.cpu_count()}, database {db.stat().st_size / 1e6:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
