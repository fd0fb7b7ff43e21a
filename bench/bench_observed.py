"""Observed-replay benchmark: the shipped real capture rebuilt and stored as an observed run.

Ingests traces/compact-6.18 (a 6.18 capture: 318k trace lines, 25 MB
kpageflags per snapshot), then times whole child processes: ``replay run
--observed`` (every step's row stored) and ``replay validate``. Prints the
observed kernel's events/s (``runs.events_per_s``: recorded events over the
time inside the numba kernel), each child's wall time and peak RSS. Then the
``kernel`` preset from the kernel's state, one zone against the zonelist's node
(``kernel+zonelist``: Normal over DMA32), and their ratio.
Usage: python bench/bench_observed.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench_replay import fresh_db, timed

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    db = fresh_db("observed-bench.duckdb")
    replay = str(Path(sys.executable).parent / "replay")
    timed([replay, "ingest", str(ROOT / "traces" / "compact-6.18"), "--name", "compact",
           "--db", str(db), "-q", "-f", "json"])  # fmt: skip
    run = [replay, "run", "compact", "--observed", "--db", str(db), "-q", "-f", "json"]
    timed(run)  # warm the numba cache: not a compile
    wall, out, rss = timed(run)
    res = json.loads(out)
    vwall, _, vrss = timed([replay, "validate", "compact", "--db", str(db), "-f", "json"])
    print(f"observed: {res['events']:,} recorded events of the 6.18 capture (zone {res['zone']})")
    print(f"observed: kernel {res['events_per_s'] / 1e6:.2f} M events/s; whole 'replay run "
          f"--observed' {wall:.2f} s, peak RSS {rss:.0f} MiB")  # fmt: skip
    print(f"observed: whole 'replay validate' {vwall:.2f} s, peak RSS {vrss:.0f} MiB")
    rates = {}
    for model in ("kernel", "kernel+zonelist"):
        cmd = [replay, "run", "compact", "-m", model, "--start", "observed", "--db", str(db),
               "-q", "-f", "json"]  # fmt: skip
        timed(cmd)  # warm the numba cache
        wall, out, rss = timed(cmd)
        rates[model] = json.loads(out)["events_per_s"]
        print(f"{model}: kernel {rates[model] / 1e6:.2f} M events/s; whole run from the "
              f"kernel's state {wall:.2f} s, peak RSS {rss:.0f} MiB")  # fmt: skip
    print(
        f"zonelist: node kernel at {rates['kernel+zonelist'] / rates['kernel']:.2f}x the "
        "one-zone kernel's events/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
