"""Explain benchmark: ``replay explain`` on a 10M-event run and on the shipped capture.

A model's run is explained from that model's state just before the seq,
replayed from the run's start (nothing stored), then forked: the cost grows
with the seq. Times whole ``replay explain`` child processes on
bench_replay's seeded 10M-event stream (a ``mobility+pcp`` run) at 10%, 50%
and 90% of the trace (one forked model, 1000 events on), the ranking of the
run's allocations, and an observed run's explanation on traces/compact-6.18
(the kernel's state rebuilt from the capture), and the observed run of
traces/small-pressure-6.18 explained at its first failure (seq 58107) with the
default models (six forks from the kernel's state, rebuilt once). Prints each wall
time against issue 15's 2 s target, and each child's peak RSS.
Usage: python bench/bench_explain.py [--events N] [--zone-pages P]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench_replay import fresh_db, synthetic_source, timed

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 2.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--zone-pages", type=int, default=1 << 20)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    src = synthetic_source(args.events, args.zone_pages, args.seed)
    db = fresh_db("explain-bench.duckdb")
    replay = str(Path(sys.executable).parent / "replay")
    timed([replay, "ingest", str(src), "--name", "synthetic", "--db", str(db), "-q",
           "-f", "json"])  # fmt: skip
    run = [replay, "run", "synthetic", "-m", "mobility+pcp", "--zone-pages",
           str(args.zone_pages), "--every", "10000", "--db", str(db), "-q",
           "-f", "json"]  # fmt: skip
    timed(run)  # warm the numba cache: not a compile
    run_s, out, _ = timed(run)
    run_id = int(json.loads(out)["run_id"])
    print(f"explain: {args.events:,}-event run {run_id} (mobility+pcp, {args.zone_pages:,} "
          f"pages): the whole run {run_s:.2f} s")  # fmt: skip
    wall, out, rss = timed([replay, "explain", str(run_id), "--top", "20", "--db", str(db),
                            "-f", "json"])  # fmt: skip
    print(
        f"explain: ranking the run's allocations {wall:.2f} s "
        f"({wall / TARGET_S:.2f} x the {TARGET_S:.0f} s target), peak RSS {rss:.0f} MiB"
    )
    for share in (0.1, 0.5, 0.9):
        seq = int(args.events * share)
        # the first allocation at or after that point
        _, found, _ = timed([replay, "sql", "--db", str(db), "-f", "json",
                             f"SELECT min(seq) AS s FROM events WHERE op = 'alloc' "
                             f"AND seq >= {seq}"])  # fmt: skip
        seq = int(json.loads(found)[0]["s"])
        cmd = [replay, "explain", str(run_id), "--seq", str(seq), "--models", "mobility",
               "--horizon", "1000", "--db", str(db), "-q", "-f", "json"]  # fmt: skip
        if share == 0.1:
            timed(cmd)  # the forks' numba cache
        wall, out, rss = timed(cmd)
        print(f"explain: seq {seq:,} ({share:.0%} in) {wall:.2f} s "
              f"({wall / TARGET_S:.2f} x target, {wall / run_s:.2f} x the whole run), "
              f"peak RSS {rss:.0f} MiB")  # fmt: skip
    cap = fresh_db("explain-capture.duckdb")
    timed([replay, "ingest", str(ROOT / "traces" / "compact-6.18"), "--name", "compact",
           "--db", str(cap), "-q", "-f", "json"])  # fmt: skip
    _, out, _ = timed([replay, "run", "compact", "--observed", "--every", "1000", "--db",
                       str(cap), "-q", "-f", "json"])  # fmt: skip
    obs = int(json.loads(out)["run_id"])
    _, found, _ = timed([replay, "sql", "--db", str(cap), "-f", "json",
                         "SELECT min(seq) AS s FROM events WHERE op = 'alloc' "
                         "AND seq >= 100000"])  # fmt: skip
    seq = int(json.loads(found)[0]["s"])
    cmd = [replay, "explain", str(obs), "--seq", str(seq), "--models", "kernel",
           "--horizon", "1000", "--db", str(cap), "-q", "-f", "json"]  # fmt: skip
    timed(cmd)  # the kernel preset's numba cache
    wall, out, rss = timed(cmd)
    print(
        f"explain: observed run of the 6.18 capture, seq {seq:,}: {wall:.2f} s "
        f"({wall / TARGET_S:.2f} x target), peak RSS {rss:.0f} MiB"
    )
    # the README's worked example: every default model forked from the kernel's state
    sp = fresh_db("explain-pressure.duckdb")
    timed([replay, "ingest", str(ROOT / "traces" / "small-pressure-6.18"), "--name", "sp",
           "--db", str(sp), "-q", "-f", "json"])  # fmt: skip
    _, out, _ = timed([replay, "run", "sp", "--observed", "--db", str(sp), "-q", "-f",
                       "json"])  # fmt: skip
    obs = int(json.loads(out)["run_id"])
    cmd = [replay, "explain", str(obs), "--seq", "58107", "--db", str(sp), "-q", "-f", "json"]
    timed(cmd)  # the presets' numba cache
    wall, out, rss = timed(cmd)
    forks = len(json.loads(out)["counterfactuals"]) - 1
    print(
        f"explain: observed run of small-pressure, seq 58,107, the {forks} default models "
        f"(1000 events each): {wall:.2f} s ({wall / TARGET_S:.2f} x target), "
        f"peak RSS {rss:.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
