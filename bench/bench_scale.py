"""How a whole ``replay run --model buddy`` grows from 1M to 10M to 100M events.

The stream of bench_replay.py (seed 1) over a 1,048,576-page zone at each size:
its canonical Parquet ingested (a whole ``replay ingest``), then a whole
``replay run --model buddy`` storing every step (warmed once on a small run),
then a whole ``replay query fragmentation_over_time`` over that run. Prints per
size and phase the wall time and the child's peak RSS, and for the run the
time inside the kernel (events / runs.events_per_s) and the rest (events in,
steps out, start-up). The 100M size is heavy (about 6 GB of Parquet and
database): run it with ``--sizes 1000000,10000000,100000000`` under ``nice``.
Usage: python bench/bench_scale.py [--sizes 1000000,10000000] [--zone-pages P]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench_replay import fresh_db, synthetic_source, timed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--zone-pages", type=int, default=1 << 20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep each size's database")
    args = ap.parse_args()
    replay = str(Path(sys.executable).parent / "replay")
    warm_src = synthetic_source(100_000, args.zone_pages, args.seed)
    warm_db = fresh_db("scale-warm.duckdb")
    timed([replay, "ingest", str(warm_src), "--name", "w", "--db", str(warm_db), "-q"])
    timed([replay, "run", "w", "--model", "buddy", "--db", str(warm_db), "-q", "--zone-pages",
           str(args.zone_pages)])  # fmt: skip
    warm_db.unlink(missing_ok=True)
    print("scale: size | ingest s (RSS MiB) | run s (RSS MiB) = kernel s + rest s | "
          "fragmentation_over_time s")  # fmt: skip
    base: dict[str, float] = {}
    for n in (int(s) for s in args.sizes.split(",")):
        src = synthetic_source(n, args.zone_pages, args.seed)
        db = fresh_db(f"scale-{n}.duckdb")
        ing_s, _, ing_rss = timed([replay, "ingest", str(src), "--name", "s", "--db", str(db),
                                   "-q", "-f", "json"])  # fmt: skip
        run_s, out, run_rss = timed([replay, "run", "s", "--model", "buddy", "--zone-pages",
                                     str(args.zone_pages), "--db", str(db), "-q", "-f",
                                     "json"])  # fmt: skip
        res = json.loads(out)
        kernel_s = res["events"] / res["events_per_s"]
        q_s, _, q_rss = timed([replay, "query", "fragmentation_over_time", "--param", "run=1",
                               "--db", str(db), "-f", "json"])  # fmt: skip
        growth = ""
        if base:
            growth = (f"; x{n / base['n']:.0f} events: ingest x{ing_s / base['ingest']:.1f}, "
                      f"run x{run_s / base['run']:.1f}")  # fmt: skip
        else:
            base = {"n": n, "ingest": ing_s, "run": run_s}
        print(f"scale: {n:,} | {ing_s:.2f} ({ing_rss:.0f}) | {run_s:.2f} ({run_rss:.0f}) = "
              f"{kernel_s:.2f} + {run_s - kernel_s:.2f} | {q_s:.2f} ({q_rss:.0f} MiB), "
              f"database {db.stat().st_size / 2**30:.2f} GiB{growth}")  # fmt: skip
        if not args.keep:
            for p in (db, Path(str(db) + ".wal")):
                p.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
