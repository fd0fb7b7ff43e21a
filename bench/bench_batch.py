"""Batch benchmark: a 20-run batch (5 scenario traces of 1M events x 4 models), one run
at a time (``replay batch --jobs 1``) against two at a time (``--jobs 2``), and against
the same 20 runs as ``replay run`` processes one after another.

The traces (kernel-build, file-server, net-rx, stress-highalloc, embedded-gpu-zram;
seed 1, 1,000,000 events each, a 262,144-page zone) are generated once into
bench/data/batch-base.duckdb under the names the spec gives them, so the batch
reuses them; each timed batch starts from a fresh copy of that store. A whole
``replay batch`` child process is timed (start-up, trace exports, the workers'
loads, replays and exports, and the coordinator's loads). CPU utilisation is the
CPU time of the batch and all its worker processes over (wall time x CPUs);
peak RSS per worker is each worker process's own ``ru_maxrss`` as it reported it.
With ``--jobs 1`` the coordinator's loads of finished runs (and DuckDB's own threads)
already overlap the one worker, so ``--jobs 1`` is not single-core; ``replay run`` one
after another is.
Usage: python bench/bench_batch.py [--events N] [--zone-pages P] [--every K] [--repeat R]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
SCENARIOS = ("kernel-build", "file-server", "net-rx", "stress-highalloc", "embedded-gpu-zram")
MODELS = ("buddy", "mobility", "mobility+pcp", "mobility+compaction")


def spec_text(events: int, pages: int, every: int) -> str:
    lines = ['name = "bench"', "[run]", f"every = {every}"]
    for sc in SCENARIOS:
        lines += ["[[traces]]", f'scenario = "{sc}"', "seed = 1", f"events = {events}",
                  f"zone_pages = {pages}"]  # fmt: skip
    for m in MODELS:
        lines += ["[[models]]", f'preset = "{m}"']
    return "\n".join(lines) + "\n"


def base_store(events: int, pages: int) -> Path:
    """The store holding the five traces (generated once, then reused)."""
    from replay.scenarios.workloads import generate
    from replay.store import Store
    from replay.trace.ingest import ingest_table

    db = DATA / f"batch-base-{events}-{pages}.duckdb"
    names = [f"{sc}-s1-e{events}-z{pages}" for sc in SCENARIOS]
    with Store(db) as store:
        for sc, name in zip(SCENARIOS, names, strict=True):
            if store.exists(name):
                continue
            t0 = time.perf_counter()
            table, meta = generate(sc, seed=1, events=events, zone_pages=pages)
            ingest_table(store, table, meta, name=name, source=f"<scenario {sc} seed 1>")
            print(f"batch: generated {name} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return db


def drop(db: Path) -> None:
    """Remove a scratch copy of the store (and what a batch may have left next to it)."""
    for p in (db, Path(f"{db}.wal")):
        p.unlink(missing_ok=True)
    shutil.rmtree(f"{db}.batch", ignore_errors=True)


def timed_batch(base: Path, spec: Path, jobs: int) -> dict:
    db = DATA / f"batch-jobs{jobs}.duckdb"
    drop(db)
    shutil.copy(base, db)
    cmd = [sys.executable, "-m", "replay.cli.main", "batch", str(spec), "--db", str(db),
           "--jobs", str(jobs), "-q", "-f", "json"]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate()
    # wait4 in communicate() reaped it; its rusage includes its reaped workers.
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"replay batch --jobs {jobs} failed ({proc.returncode}): {out[-2000:]}")
    r = json.loads(out)
    drop(db)
    return {"wall": wall, "result": r}


def timed_replay_runs(base: Path, events: int, pages: int, every: int) -> float:
    """The same 20 runs as `replay run` processes one after another (wall, s)."""
    db = DATA / "batch-runs.duckdb"
    drop(db)
    shutil.copy(base, db)
    t0 = time.perf_counter()
    for sc in SCENARIOS:
        for m in MODELS:
            name = f"{sc}-s1-e{events}-z{pages}"
            cmd = [sys.executable, "-m", "replay.cli.main", "run", name, "--model", m,
                   "--every", str(every), "--db", str(db), "-q", "-f", "json"]  # fmt: skip
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    drop(db)
    return wall


def cpu_of_children() -> float:
    ru = os.times()
    return ru.children_user + ru.children_system


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--zone-pages", type=int, default=1 << 18)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    base = base_store(args.events, args.zone_pages)
    spec = DATA / "batch-bench.toml"
    spec.write_text(spec_text(args.events, args.zone_pages, args.every), encoding="utf-8")
    ncpu = os.cpu_count() or 1
    walls: dict[int, list[float]] = {0: [], 1: [], 2: []}
    for _ in range(args.repeat):
        c0 = cpu_of_children()
        walls[0].append(timed_replay_runs(base, args.events, args.zone_pages, args.every))
        cpu = cpu_of_children() - c0
        print(f"batch: the same {len(SCENARIOS) * len(MODELS)} runs as `replay run` processes "
              f"one after another: {walls[0][-1]:.1f} s wall; CPU {cpu:.1f} s = "
              f"{100 * cpu / (walls[0][-1] * ncpu):.0f}% of {ncpu} CPUs")  # fmt: skip
        for jobs in (1, 2):
            c0 = cpu_of_children()
            got = timed_batch(base, spec, jobs)
            cpu = cpu_of_children() - c0
            walls[jobs].append(got["wall"])
            runs = got["result"]["runs"]
            assert got["result"]["counts"] == {"done": len(SCENARIOS) * len(MODELS)}, runs
            per_worker: dict[int, float] = {}
            for run in runs:
                per_worker[run["pid"]] = max(per_worker.get(run["pid"], 0.0), run["peak_rss_mib"])
            task_s = sum(run["wall_s"] for run in runs)
            eps = sorted(run["events_per_s"] for run in runs)
            print(f"batch: --jobs {jobs}: {len(runs)} runs of {args.events:,} events "
                  f"({args.zone_pages:,}-page zone, every {args.every}) in {got['wall']:.1f} s "
                  f"wall; tasks {task_s:.1f} s summed; CPU {cpu:.1f} s = "
                  f"{100 * cpu / (got['wall'] * ncpu):.0f}% of {ncpu} CPUs; kernel "
                  f"{eps[len(eps) // 2] / 1e6:.1f} M events/s (median); peak RSS per worker "
                  + ", ".join(f"{v:.0f}" for v in sorted(per_worker.values()))
                  + f" MiB; coordinator {got['result']['peak_rss_mib']:.0f} MiB")  # fmt: skip
    one, seq, par = min(walls[0]), min(walls[1]), min(walls[2])
    print(f"batch: best of {args.repeat}: `replay run` one after another {one:.1f} s, "
          f"sequential (--jobs 1) {seq:.1f} s, parallel (--jobs 2) {par:.1f} s; speedup "
          f"{seq / par:.2f}x over --jobs 1, {one / par:.2f}x over `replay run` one after "
          "another")  # fmt: skip


if __name__ == "__main__":
    main()
