"""Compaction benchmark: one whole-zone compaction of a fragmented 1M-page zone, and the
what-if throughput of mobility+compaction (direct) on the kernel-build scenario.

The fragmented zone is the fragmenter scenario's state, built with the object API
in memory: every page allocated as a movable order-0 object, then 3 of every 4
pages of each pageblock freed (seeded). Prints the compaction's wall time, pages
migrated and scanned; then generates kernel-build (1M-page zone) into a scratch
store and prints the replay kernel's events/s and the run's peak RSS.
Usage: python bench/bench_compaction.py [--pages P] [--events N]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from replay.models.compaction import compact_memory
from replay.models.events import apply_event
from replay.models.internal import C_MIGRATED, F_MOVABLE, NR_STATS
from replay.models.zone import ZoneState

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"


def fragmented_zone(pages: int, seed: int) -> ZoneState:
    z = ZoneState(0, pages, max_objects=pages)
    stats = np.zeros(NR_STATS, np.int64)
    for x in range(pages):  # boot order: ascending pfns
        apply_event(True, x, 0, 0, 1, F_MOVABLE, -1, 0, 0, -1, z.arrays, z.prm, z.objects,
                    z.cz, z.counters, z.ef, z.me, z.mode, z.vc, stats, z.pools)  # fmt: skip
    rng = np.random.default_rng(seed)
    for pb in range(pages // 512):
        for i in rng.choice(512, 384, replace=False):
            x = pb * 512 + int(i)
            apply_event(False, x, 0, 0, 1, 0, -1, 0, 0, -1, z.arrays, z.prm, z.objects, z.cz,
                        z.counters, z.ef, z.me, z.mode, z.vc, stats, z.pools)  # fmt: skip
    return z


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=1 << 20)
    ap.add_argument("--run-pages", type=int, default=1 << 18, help="kernel-build zone (pages)")
    ap.add_argument("--events", type=int, default=None, help="kernel-build events (default: "
                    "the scenario's for the zone)")  # fmt: skip
    args = ap.parse_args()
    z = fragmented_zone(1 << 12, 1)  # compile
    compact_memory(-1, z.arrays, z.prm, z.objects, z.cz, z.counters, z.me)
    z = fragmented_zone(args.pages, 1)
    t0 = time.perf_counter()
    compact_memory(-1, z.arrays, z.prm, z.objects, z.cz, z.counters, z.me)
    dt = time.perf_counter() - t0
    me = z.me[0]
    print(f"compaction: whole-zone compact_memory of a {args.pages:,}-page fragmenter zone "
          f"{dt:.3f} s: migrated {z.counters[C_MIGRATED]:,} pages, scanned "
          f"{me[8]:,} (migrate) + {me[9]:,} (free) pages, free in order >= 9: "
          f"{sum(int(n) << k for k, n in enumerate(z.nr_free) if k >= 9):,} of "
          f"{z.free_pages():,}")  # fmt: skip
    DATA.mkdir(parents=True, exist_ok=True)
    db = DATA / "compaction-bench.duckdb"
    db.unlink(missing_ok=True)
    replay = [sys.executable, "-m", "replay.cli.main"]
    events = [] if args.events is None else ["--events", str(args.events)]
    gen = [*replay, "generate", "kernel-build", "--db", db, "-q", "--zone-pages",
           str(args.run_pages), *events]  # fmt: skip
    subprocess.run(gen, check=True, stdout=subprocess.DEVNULL)
    for model in ("mobility", "mobility+compaction"):
        t0 = time.perf_counter()
        out = subprocess.run(
            [*replay, "run", "kernel-build", "--db", db, "-q", "-f", "json", "--model", model],
            check=True,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - t0
        r = json.loads(out.stdout)
        r = r[0] if isinstance(r, list) else r
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"compaction: {model} on kernel-build ({r['events']:,} events, "
              f"{args.run_pages:,} pages): kernel {r['events_per_s'] / 1e6:.2f} M events/s, "
              f"whole run {wall:.1f} s, failures {r['failures']}, migrated {r['migrated']:,}, "
              f"compactions {r['compactions']}, peak RSS (children) {rss:.0f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
