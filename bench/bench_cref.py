"""``replay run --model buddy`` side by side with a C buddy allocator (bench/buddy_ref.c).

The bench stream of bench_replay.py (3M events over a 1,048,576-page zone by
default), ingested; its events exported from the store into the reference's
binary file (op, order, offset and dense object ids, in seq order); the C
reference compiled with the system cc -O2. Then whole child processes, each
warmed once: the C reference with and without writing every step's row
(pfn + nr_free[11], as the replay kernel fills them) and ``replay run --model
buddy`` storing every step. Prints each side's kernel-only events/s, whole
wall times and the ratios, and checks that both end with the same nr_free.
Kernel-only is also measured on CPU time (the engine's kernel path in this
process against the C loop's process CPU time), which a machine shared with
other work does not inflate as it does wall time.
Usage: python bench/bench_cref.py [--events N] [--zone-pages P] [--models buddy,mobility]
       [--kernel-step EVENTS]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cref
import duckdb
import numpy as np
from bench_replay import DATA, fresh_db, synthetic_source, timed


def trace_columns(db: Path, trace: str) -> dict[str, np.ndarray]:
    """The trace's events in seq order: is_alloc, order, offset, migratetype, dense obj."""
    con = duckdb.connect(str(db), read_only=True)
    cols = con.execute(
        """SELECT e.op = 'alloc' AS is_alloc, e."order", e."offset", e.migratetype,
                  dense_rank() OVER (ORDER BY e.obj) - 1 AS obj
           FROM events e JOIN traces t USING (trace_id) WHERE t.name = $n ORDER BY e.seq""",
        {"n": trace},
    ).fetchnumpy()
    con.close()
    return {k: np.asarray(v) for k, v in cols.items()}


def kernel_cpu(cols: dict[str, np.ndarray], start_pfn: int, pages: int, model: str,
               rounds: int = 3, step: int = 0) -> float:  # fmt: skip
    """Events/s of the engine's kernel for ``model`` in this process, on CPU time (the
    kernel thread's, so other work on a shared machine does not inflate it): the path
    the engine takes (the plain buddy for buddy), called as the engine calls it (1M-event
    chunks, each in kernel calls of STEP_EVENTS events into reused output rows, the plain
    path's resync after each), every step's counters kept; the best of ``rounds`` fresh
    zones. ``step``: events per kernel call instead (0: STEP_EVENTS, as the engine)."""
    from replay.engine.results import outputs
    from replay.engine.whatif import CHUNK_EVENTS, STEP_EVENTS, event_arrays
    from replay.models.events import replay_chunk
    from replay.models.internal import NR_STATS, P_UNITS
    from replay.models.plain_buddy import plain_eligible, replay_chunk_plain, resync
    from replay.models.zone import ZoneState

    step = min(step or STEP_EVENTS, CHUNK_EVENTS)
    n = cols["obj"].shape[0]
    chunks = []
    for i0 in range(0, n, CHUNK_EVENTS):
        i1 = min(n, i0 + CHUNK_EVENTS)
        ev = event_arrays(i1 - i0)
        ev[0][:] = np.arange(i0, i1)
        for j, name in ((1, "is_alloc"), (2, "obj"), (3, "offset"), (4, "order"),
                        (5, "migratetype")):  # fmt: skip
            ev[j][:] = cols[name][i0:i1]
        chunks.append(ev)
    best = 0.0
    for _ in range(rounds):
        z = ZoneState(start_pfn, pages, grouping=model == "mobility",
                      max_objects=int(cols["obj"].max()) + 1)  # fmt: skip
        z.prm[P_UNITS] = 0  # as the engine sets up a model that keeps no units
        plain = plain_eligible(z.prm)
        stats = np.zeros(NR_STATS, np.int64)
        out = outputs(step)
        for a in out:  # page-faulted before timing, as the engine's reused rows are
            a.fill(0)
        cpu = 0.0
        for ev in chunks:
            m = ev[0].shape[0]
            keep = np.ones(m, np.bool_)
            for s0 in range(0, m, step):
                s1 = min(m, s0 + step)
                o = tuple(a[: s1 - s0] for a in out)
                t0 = time.thread_time()
                if plain:
                    replay_chunk_plain(s0, s1, ev, keep, keep, z.objects, z.arrays, z.prm, stats,
                                       0, o)  # fmt: skip
                    resync(z.arrays, z.prm)
                else:
                    replay_chunk(s0, s1, ev, keep, keep, z.objects, z.arrays, z.prm, z.counters,
                                 z.ef, z.me, z.cz, z.mode, z.vc, stats, 0, o, z.pools)  # fmt: skip
                cpu += time.thread_time() - t0
        best = max(best, n / cpu)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=3_000_000)
    ap.add_argument("--zone-pages", type=int, default=1 << 20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--models", default="buddy,mobility")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--kernel-step", type=int, default=0,
                    help="events per kernel call in the CPU-time figure (default: the "
                    "engine's STEP_EVENTS)")  # fmt: skip
    args = ap.parse_args()
    src = synthetic_source(args.events, args.zone_pages, args.seed)
    db = fresh_db("cref-bench.duckdb")
    replay = str(Path(sys.executable).parent / "replay")
    timed([replay, "ingest", str(src), "--name", "synthetic", "--db", str(db), "-q",
           "-f", "json"])  # fmt: skip
    exe = cref.build(DATA / "buddy_ref")
    events_bin = DATA / f"cref-{args.events}-{args.zone_pages}-{args.seed}.bin"
    steps_bin = DATA / "cref-steps.bin"
    print(f"cref: {args.events:,} events, {args.zone_pages:,}-page zone, seed {args.seed}")
    cols: dict[str, np.ndarray] | None = None
    for model in args.models.split(","):
        base = [replay, "run", "synthetic", "--model", model, "--zone-pages",
                str(args.zone_pages), "--db", str(db), "-q", "-f", "json"]  # fmt: skip
        _, out, _ = timed([*base, "--every", str(args.events)])  # warm the numba cache
        first = json.loads(out)
        if cols is None:
            t0 = time.perf_counter()
            cols = trace_columns(db, "synthetic")
            cref.write_events(events_bin, cols["is_alloc"], cols["order"], cols["offset"],
                              cols["obj"], first["zone_start_pfn"], args.zone_pages)  # fmt: skip
            print(f"cref: events exported to {events_bin.name} in {time.perf_counter() - t0:.2f} s")
        cref.run(exe, events_bin)  # warm the page cache
        c_cpu = min(cref.run(exe, events_bin)["kernel_cpu_s"] for _ in range(3))
        k_cpu = kernel_cpu(cols, first["zone_start_pfn"], args.zone_pages, model,
                           step=args.kernel_step)  # fmt: skip
        calls = f", {args.kernel_step}-event calls" if args.kernel_step else ""
        print(f"cref: {model} kernel on CPU time (best of 3, in one process each{calls}): replay "
              f"{k_cpu / 1e6:.2f} M events/s, C {args.events / c_cpu / 1e6:.2f} M events/s: "
              f"{k_cpu * c_cpu / args.events:.2f}x the C speed")  # fmt: skip
        for rep in range(args.repeat):
            c_wall, c_out, _ = timed([str(exe), str(events_bin)])
            c = json.loads(c_out)
            cs_wall, cs_out, _ = timed([str(exe), str(events_bin), "--steps", str(steps_bin)])
            cs = json.loads(cs_out)
            r_wall, r_out, r_rss = timed(base)
            r = json.loads(r_out)
            same = r["nr_free"] == c["nr_free"] and r["failures"] == c["failures"]
            why = "" if model == "buddy" else " (grouping by mobility places otherwise)"
            c_eps = c["events_per_s"]
            print(f"cref: [{rep + 1}] C reference kernel {c_eps / 1e6:.2f} M events/s "
                  f"({cs['events_per_s'] / 1e6:.2f} with steps written); whole process "
                  f"{c_wall:.3f} s ({cs_wall:.3f} s writing every step, "
                  f"{steps_bin.stat().st_size / 2**20:.0f} MiB)")  # fmt: skip
            print(f"cref: [{rep + 1}] replay {model} kernel {r['events_per_s'] / 1e6:.2f} M "
                  f"events/s; whole 'replay run' (every step stored) {r_wall:.2f} s, peak RSS "
                  f"{r_rss:.0f} MiB; final state "
                  f"{'matches' if same else 'differs from'} the C reference's"
                  f"{why}")  # fmt: skip
            print(f"cref: [{rep + 1}] {model}/C ratios: kernel-only "
                  f"{r['events_per_s'] / c_eps:.2f}x the C speed; whole process "
                  f"{r_wall / c_wall:.1f}x the C time ({r_wall / cs_wall:.1f}x with C writing "
                  f"every step)")  # fmt: skip
    steps_bin.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
