"""Replay benchmark: buddy, mobility and mobility+pcp on a 10M-event synthetic stream.

Generates a seeded random stream (a canonical Parquet file: objects of order
0..9, mostly order 0, memory kept 60-80% full; each object Unmovable 20%,
Movable 70% or Reclaimable 10%; events on cpu 0 or 1), ingests it, then
times whole ``replay run`` child processes (steps stored in DuckDB) and
prints each model's own events/s (the model kernel), the run's wall time and
the child's peak RSS.
Usage: python bench/bench_replay.py [--events N] [--zone-pages P] [--models a,b]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numba as nb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
# Order mix (per mille): mostly order 0, some small high orders, a few THP-sized.
ORDER_CDF = np.cumsum(np.array([850, 50, 40, 30, 10, 6, 5, 4, 3, 2], dtype=np.int64))


@nb.njit(cache=True)
def generate(n, zone_pages, seed, order_cdf):  # type: ignore[no-untyped-def]
    """op (1 alloc / 0 free), obj, order arrays of a random alloc/free stream."""
    np.random.seed(seed)
    op = np.empty(n, np.int8)
    obj = np.empty(n, np.int64)
    order = np.empty(n, np.int8)
    live_obj = np.empty(n, np.int64)
    live_order = np.empty(n, np.int8)
    nlive = 0
    live_pages = 0
    lo = zone_pages * 6 // 10
    hi = zone_pages * 8 // 10
    nxt = 0
    for i in range(n):
        if nlive == 0 or live_pages < lo:
            do_alloc = True
        elif live_pages > hi:
            do_alloc = False
        else:
            do_alloc = np.random.random() < 0.5
        if do_alloc:
            r = np.random.randint(0, order_cdf[-1])
            k = 0
            while order_cdf[k] <= r:
                k += 1
            op[i] = 1
            obj[i] = nxt
            order[i] = k
            live_obj[nlive] = nxt
            live_order[nlive] = k
            nlive += 1
            live_pages += 1 << k
            nxt += 1
        else:
            j = np.random.randint(0, nlive)
            op[i] = 0
            obj[i] = live_obj[j]
            order[i] = live_order[j]
            live_pages -= 1 << np.int64(live_order[j])
            nlive -= 1
            live_obj[j] = live_obj[nlive]
            live_order[j] = live_order[nlive]
    return op, obj, order


def synthetic_table(events: int, zone_pages: int, seed: int, csv: bool = False) -> pa.Table:
    """The benchmark stream as a canonical table: op (dictionary, or plain strings for
    ``csv``), obj, order, migratetype (per object: Unmovable 20%, Movable 70%,
    Reclaimable 10%) and cpu (0 or 1)."""
    op, obj, order = generate(events, zone_pages, seed, ORDER_CDF)
    if csv:
        ops: pa.Array = pa.array(np.where(op == 1, "alloc", "free"))
    else:
        ops = pa.DictionaryArray.from_arrays(pa.array(np.where(op == 1, 0, 1).astype(np.int8)),
                                             pa.array(["alloc", "free"]))  # fmt: skip
    rng = np.random.default_rng(seed)
    obj_mt = rng.choice(np.array([0, 1, 2], np.int8), size=int(obj.max()) + 1,
                        p=[0.2, 0.7, 0.1])  # fmt: skip
    cpu = rng.integers(0, 2, size=events, dtype=np.int16)
    return pa.table({"op": ops, "obj": obj, "order": order, "migratetype": obj_mt[obj],
                     "cpu": cpu})  # fmt: skip


def synthetic_source(events: int, zone_pages: int, seed: int) -> Path:
    """The benchmark stream's canonical Parquet file under bench/data (written once)."""
    DATA.mkdir(parents=True, exist_ok=True)
    src = DATA / f"synthetic-mt-{events}-{zone_pages}-{seed}.parquet"
    if not src.exists():
        pq.write_table(synthetic_table(events, zone_pages, seed), src)
    return src


def fresh_db(name: str) -> Path:
    """bench/data/NAME, with any store (and WAL) a previous run left there removed."""
    DATA.mkdir(parents=True, exist_ok=True)
    db = DATA / name
    for p in (db, Path(str(db) + ".wal")):
        p.unlink(missing_ok=True)
    return db


def timed(cmd: list[str]) -> tuple[float, str, float]:
    """Run a child; its wall time (s), stdout and own peak RSS (MiB, from wait4)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{cmd[1]} failed with exit code {proc.returncode}")
    return time.perf_counter() - t0, out, usage.ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--zone-pages", type=int, default=1 << 20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--models", default="buddy,mobility,mobility+pcp")
    args = ap.parse_args()
    src = synthetic_source(args.events, args.zone_pages, args.seed)
    db = fresh_db("replay-bench.duckdb")
    replay = str(Path(sys.executable).parent / "replay")
    ingest_s, _, ingest_rss = timed([replay, "ingest", str(src), "--name", "synthetic", "--db",
                                     str(db), "-q", "-f", "json"])  # fmt: skip
    print(f"replay: {args.events:,} events, {args.zone_pages:,}-page zone, seed {args.seed}")
    print(
        f"replay: ingest of the canonical Parquet {ingest_s:.2f} s, peak RSS {ingest_rss:.0f} MiB"
    )
    for model in args.models.split(","):
        base = [replay, "run", "synthetic", "--model", model, "--zone-pages",
                str(args.zone_pages), "--db", str(db), "-q", "-f", "json"]  # fmt: skip
        timed([*base, "--every", str(args.events)])  # warm the numba cache: not a compile
        wall, out, rss = timed(base)
        res = json.loads(out)
        _, out_sparse, _ = timed([*base, "--every", str(args.events)])
        sparse = json.loads(out_sparse)
        print(f"replay: {model} kernel {res['events_per_s'] / 1e6:.2f} M events/s with every "
              f"step's counters, {sparse['events_per_s'] / 1e6:.2f} M events/s with placements "
              f"only; failures {res['failures']:,}, fallbacks {res['fallbacks']:,}")  # fmt: skip
        print(f"replay: {model} whole 'replay run' (every step stored) {wall:.2f} s, "
              f"peak RSS {rss:.0f} MiB")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
