"""Binary ingest against the text renderers: trace.dat vs ``trace-cmd report``, perf.data
vs ``perf script``.

Records a real trace.dat (a tracefs instance with the kmem page events, a
``--buffer-kb`` ring buffer per CPU, a file-reading workload, ``trace-cmd
extract``) and a perf.data (``perf record -a -e kmem:...`` of the same
workload) into bench/data, unless they exist. Then times, as whole child
processes: the renderer printing the file to /dev/null, and ``replay ingest
--quiet`` of it into a fresh store (numba cache warmed by a first ingest).
Prints events, wall seconds, events/s and each child's peak RSS (MiB, from
wait4). A third, long file (``--records``, 10M) is the trace.dat's pages
repeated, each copy's page timestamps moved past the last, written as v6.
Needs root, tracefs, trace-cmd and perf.

    .venv/bin/python bench/bench_binary.py [--buffer-kb 65536] [--seconds 4] [--records N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data"
TRACEFS = Path("/sys/kernel/tracing")
EVENTS = ("mm_page_alloc", "mm_page_free", "mm_page_free_batched", "mm_page_pcpu_drain",
          "mm_page_alloc_zone_locked")  # fmt: skip
WORKLOAD = "for i in 1 2 3; do cat /usr/lib/x86_64-linux-gnu/*.so* > /dev/null; done; " \
           "find /usr -type f > /dev/null"  # fmt: skip


def timed(cmd: list[str], out: int | None = subprocess.DEVNULL) -> tuple[float, float, int, float]:
    """(wall s, peak RSS MiB, exit code, CPU s: user + system) of a child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    cpu = usage.ru_utime + usage.ru_stime
    return wall, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status), cpu


def record_tracedat(path: Path, buffer_kb: int, seconds: float) -> None:
    name = f"replay-bench-{os.getpid()}"
    inst = TRACEFS / "instances" / name
    inst.mkdir()
    try:
        (inst / "buffer_size_kb").write_text(str(buffer_kb))
        for ev in EVENTS:
            (inst / "events" / "kmem" / ev / "enable").write_text("1")
        (inst / "tracing_on").write_text("1")
        subprocess.run(["timeout", str(seconds), "sh", "-c", WORKLOAD], check=False)
        (inst / "tracing_on").write_text("0")
        subprocess.run(["trace-cmd", "extract", "-B", name, "-o", str(path)], check=True,
                       capture_output=True)  # fmt: skip
    finally:
        if inst.exists():
            (inst / "events" / "kmem" / "enable").write_text("0")
            inst.rmdir()


def record_perf(path: Path, seconds: float) -> None:
    cmd = ["perf", "record", "-q", "-a", "-m", "4096", "-o", str(path)]
    for ev in EVENTS[:3]:
        cmd += ["-e", f"kmem:{ev}"]
    cmd += ["--", "timeout", str(seconds), "sh", "-c", WORKLOAD]
    subprocess.run(cmd, check=False, capture_output=True)  # the workload's timeout: exit 124
    if not path.exists():
        raise SystemExit(f"perf record wrote no {path}")


def write_repeated_v6(src: Path, dst: Path, records: int) -> int:
    """A trace.dat v6 of ``src``'s first buffer's pages repeated until ``records`` records.

    Each copy's page timestamps (header_page's u64 ``timestamp``) move past the
    previous copy's, so the file reads as one long recording; the formats,
    cmdlines and page layout are ``src``'s. Returns the copies written.
    """
    from replay.trace.tracedat import TraceDat, write_v6

    td = TraceDat(src)
    try:
        buf = next(b for b in td.buffers if b.cpus)
        pages = {c.cpu: np.concatenate(list(td.pages(buf, c))) for c in buf.cpus}
        n_src = sum(blk.off.size for blk in td.blocks())
        copies = max(1, -(-records // n_src))
        ps = buf.page_size
        stamps = np.concatenate([d.reshape(-1, ps)[:, :8].copy().view(np.uint64).ravel()
                                 for d in pages.values()])  # fmt: skip
        span = int(stamps.max() - stamps.min()) + 1_000_000_000  # ns, and a second between

        def repeated(data: np.ndarray) -> Iterator[bytes]:
            for k in range(copies):
                page = data.reshape(-1, ps).copy()
                page[:, :8].view(np.uint64)[:] += np.uint64(k * span)
                yield page.tobytes()

        empty = np.zeros(0, np.uint8)
        write_v6(
            dst,
            header_page=td.header_text[0],
            header_event=td.header_text[1],
            formats=[td.formats.text(ident) for ident in td.formats],
            cpu_pages=[repeated(pages.get(c, empty)) for c in range(max(pages) + 1)],
            page_size=ps,
            cmdlines=td.cmdlines_raw,
        )
        return copies
    finally:
        td.close()


def bench(path: Path, render: list[str], replay: Path) -> dict[str, float]:
    db = DATA / "binary-bench.duckdb"
    for p in (db, Path(str(db) + ".wal")):
        p.unlink(missing_ok=True)
    subprocess.run([str(replay), "ingest", str(path), "--db", str(db), "--quiet"], check=True)
    db.unlink()
    r_wall, r_rss, code, r_cpu = timed(render)
    assert code == 0, render
    i_wall, i_rss, code, i_cpu = timed(
        [str(replay), "ingest", str(path), "--db", str(db), "--quiet", "-f", "json"],
        out=subprocess.PIPE,
    )
    assert code == 0
    out = subprocess.run([str(replay), "sql", "SELECT events + aux_events, lost_events FROM traces",
                          "--db", str(db), "-f", "json"], check=True, capture_output=True,
                         text=True).stdout  # fmt: skip
    rows = json.loads(out)
    first = rows[0] if isinstance(rows, list) else rows["rows"][0]
    records = int(next(iter(first.values())) if isinstance(first, dict) else first[0])
    return {"records": records, "render_s": r_wall, "render_mib": r_rss, "render_cpu": r_cpu,
            "ingest_s": i_wall, "ingest_mib": i_rss, "ingest_cpu": i_cpu}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--buffer-kb", type=int, default=65536)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument(
        "--records",
        type=int,
        default=10_000_000,
        help="records of the long trace.dat (the recording's pages repeated)",
    )
    args = ap.parse_args()
    if os.geteuid() != 0 or not shutil.which("trace-cmd") or not shutil.which("perf"):
        # skipped, not failed: the rest of make bench runs without tracing
        print("bench_binary: skipped: needs root, trace-cmd and perf (make sysdeps)",
              file=sys.stderr)  # fmt: skip
        return 0
    DATA.mkdir(exist_ok=True)
    replay = Path(sys.executable).parent / "replay"
    dat = DATA / f"kmem-{args.buffer_kb}.dat"
    if not dat.exists():
        record_tracedat(dat, args.buffer_kb, args.seconds)
    pdata = DATA / "kmem-perf.data"
    if not pdata.exists():
        record_perf(pdata, args.seconds)
    long = DATA / f"kmem-{args.records // 1_000_000}m.dat"
    if not long.exists():
        write_repeated_v6(dat, long, args.records)
    for label, path, render in (
        ("trace.dat", dat, ["trace-cmd", "report", "-t", "-i", str(dat)]),
        ("perf.data", pdata, ["perf", "script", "-i", str(pdata), "--ns"]),
        ("trace.dat v6, repeated", long, ["trace-cmd", "report", "-t", "-i", str(long)]),
    ):
        r = bench(path, render, replay)
        n = r["records"]
        print(f"{label} {path.stat().st_size / 1e6:.1f} MB, {n:,} records: "
              f"renderer {r['render_s']:.2f} s, {r['render_cpu']:.2f} s CPU "
              f"({n / r['render_s'] / 1e6:.2f} M/s, {r['render_mib']:.0f} MiB); replay ingest "
              f"{r['ingest_s']:.2f} s, {r['ingest_cpu']:.2f} s CPU "
              f"({n / r['ingest_s'] / 1e6:.2f} M/s, {r['ingest_mib']:.0f} MiB); "
              f"ingest/render = {r['ingest_s'] / r['render_s']:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
