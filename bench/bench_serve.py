"""Serve benchmark: 50 concurrent clients on named queries while an ingest job runs.

Builds a store (a synthetic 'kernel-build' trace of 200k events in a zone of
65,536 pages, replayed as buddy and mobility), starts ``replay serve`` as a
child process on a free loopback port, uploads the shipped real trace
concatenated N times (the ingest job: ~0.32M lines per copy) and, at the same
time, runs C client threads (one keep-alive connection each) that call named
queries in a loop for S seconds. Prints requests/s and p50/p99 latency, split
into the time the ingest job was running and after it; any error (a non-200
answer or a failed ingest) fails the benchmark.
The server's result cache (on by default) is emptied when the ingest job
ends; --no-cache runs every query (DuckDB plans under the GIL: see
replay/service/cache.py).
Usage: python bench/bench_serve.py [--clients 50] [--seconds 30] [--copies 32] [--no-cache]
       [--baseline S]
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
TRACE = ROOT / "traces" / "compact-6.18" / "trace.txt.zst"
DATA = ROOT / "bench" / "data"
LINES_PER_COPY = 318080
QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("compare_runs", {}),
    ("failures_by_order", {"run": 1}),
    ("fragmentation_over_time", {"run": 2, "buckets": 50}),
    ("run_extfrag", {"run": 2}),
    ("order_histogram", {"trace": "kernel-build", "bucket_ms": 1000}),
]


def replay_cmd(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "replay"), *args]


def build_store(db: Path) -> None:
    for p in (db, Path(str(db) + ".wal")):
        p.unlink(missing_ok=True)
    for cmd in (
        ("generate", "kernel-build", "--events", "200000", "--zone-pages", "65536"),
        ("run", "kernel-build", "--model", "buddy"),
        ("run", "kernel-build", "--model", "mobility", "--every", "10"),
    ):
        subprocess.run(
            replay_cmd(*cmd, "--db", str(db), "--quiet", "--format", "json"),
            check=True,
            stdout=subprocess.DEVNULL,
        )


def big_trace(copies: int) -> Path:
    """The shipped trace concatenated (zstd frames concatenate into a valid file)."""
    DATA.mkdir(parents=True, exist_ok=True)
    big = DATA / f"trace-x{copies}.txt.zst"
    if not big.exists():
        with open(big.with_suffix(".tmp"), "wb") as out:
            for _ in range(copies):
                with open(TRACE, "rb") as f:
                    shutil.copyfileobj(f, out)
        big.with_suffix(".tmp").replace(big)
    return big


def start_server(db: Path, cache: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        replay_cmd(
            "serve",
            "--db",
            str(db),
            "--port",
            "0",
            "--quiet",
            "--max-upload-mb",
            "512",
            "--cache",
            str(cache),
        ),
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if " at " not in line:
        proc.kill()
        raise SystemExit(f"replay serve did not start: {line}{proc.stderr.read()}")
    url = line.split(" at ")[1].split()[0].rstrip("/")
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url + "/api/health", timeout=5).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("replay serve did not answer")
        time.sleep(0.1)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def load(url: str, clients: int, seconds: float, ingest_done: list[float]) -> dict[str, Any]:
    """C client threads (one keep-alive connection each) calling named queries round-robin
    for ``seconds``; latencies (s) split by whether the ingest job had finished."""
    lat: dict[str, list[float]] = {"during": [], "after": []}
    per_query: dict[str, list[float]] = {q: [] for q, _ in QUERIES}
    errors: list[str] = []
    host, port = url.split("//")[1].rsplit(":", 1)
    paths = [(q, f"/api/queries/{q}?" + urllib.parse.urlencode(p)) for q, p in QUERIES]
    t_end = time.monotonic() + seconds

    def client(k: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        i = k
        while time.monotonic() < t_end:
            name, path = paths[i % len(paths)]
            i += 1
            t0 = time.monotonic()
            try:
                conn.request("GET", path)
                r = conn.getresponse()
                body = r.read()
                if r.status != 200 or b'"rows"' not in body:
                    errors.append(f"{name}: HTTP {r.status} {body[:200]!r}")
            except (OSError, http.client.HTTPException) as exc:
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=60)
                continue
            t1 = time.monotonic()
            phase = "during" if not ingest_done or t1 < ingest_done[0] else "after"
            lat[phase].append(t1 - t0)  # list.append is atomic under the GIL
            per_query[name].append(t1 - t0)
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    t_start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t_start
    return {"lat": lat, "per_query": per_query, "errors": errors, "wall": wall}


def bench(url: str, upload: Path, clients: int, seconds: float) -> tuple[Any, Any, float]:
    """Upload the trace (an ingest job), then load the server until the time is up."""
    ingest_done: list[float] = []
    t0 = time.monotonic()
    with open(upload, "rb") as f:
        r = httpx.post(
            url + "/api/jobs/ingest",
            files={"file": (upload.name, f)},
            data={"name": "ingested", "replace": "true"},
            timeout=600,
        )
    if r.status_code != 202:
        raise SystemExit(f"upload failed: {r.status_code} {r.text}")
    upload_s = time.monotonic() - t0
    job = r.json()
    final: list[dict[str, Any]] = []

    def watch() -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            while True:
                view = c.get(f"/api/jobs/{job['id']}").json()
                if view["status"] in ("done", "failed"):
                    ingest_done.append(time.monotonic())
                    final.append(view)
                    return
                time.sleep(0.2)

    watcher = threading.Thread(target=watch)
    watcher.start()
    t_load = time.monotonic()
    result = load(url, clients, seconds, ingest_done)
    watcher.join()
    during = ingest_done[0] - t_load
    result["ingest_overlap_s"] = min(during, result["wall"])
    return result, final[0], upload_s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--copies", type=int, default=32, help="copies of the 318,080-line trace")
    ap.add_argument(
        "--no-cache", action="store_true", help="serve with --cache 0: every request runs its query"
    )
    ap.add_argument(
        "--baseline",
        type=float,
        default=0.0,
        help="first load for this many seconds without the ingest job (0: skip)",
    )
    args = ap.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    db = DATA / "serve-bench.duckdb"
    print(f"serve: building {db.name} (200k-event trace, 2 runs) ...", flush=True)
    build_store(db)
    upload = big_trace(args.copies)
    proc, url = start_server(db, 0 if args.no_cache else 256)
    try:
        if args.baseline > 0:
            base = load(url, args.clients, args.baseline, [])
            v = base["lat"]["during"]
            print(
                f"serve: baseline, no ingest: {len(v):,} requests in {base['wall']:.1f} s = "
                f"{len(v) / base['wall']:.0f}/s, p50 {pct(v, 50) * 1e3:.1f} ms, "
                f"p99 {pct(v, 99) * 1e3:.1f} ms, {len(base['errors'])} errors"
            )
        result, job, upload_s = bench(url, upload, args.clients, args.seconds)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
    lat = result["lat"]
    n = sum(len(v) for v in lat.values())
    print(
        f"serve: {args.clients} clients x {result['wall']:.1f} s on {len(QUERIES)} named "
        f"queries, result cache {'off' if args.no_cache else 'on'}, {os.cpu_count()} cores "
        "(server, clients and ingest share them)"
    )
    print(
        f"serve: {n:,} requests, {len(result['errors'])} errors, "
        f"{n / result['wall']:.0f} requests/s overall"
    )
    for phase, label in (("during", "while ingesting"), ("after", "after the ingest")):
        v = lat[phase]
        if not v:
            continue
        span = (
            result["ingest_overlap_s"]
            if phase == "during"
            else (result["wall"] - result["ingest_overlap_s"])
        )
        rate = len(v) / span if span > 0 else float("nan")
        print(
            f"serve: {label:17s} {len(v):7,} requests in {span:5.1f} s = {rate:6.0f}/s, "
            f"p50 {pct(v, 50) * 1e3:6.1f} ms, p99 {pct(v, 99) * 1e3:6.1f} ms"
        )
    for name, v in result["per_query"].items():
        print(
            f"serve:   {name:24s} p50 {pct(v, 50) * 1e3:6.1f} ms, "
            f"p99 {pct(v, 99) * 1e3:6.1f} ms ({len(v):,})"
        )
    lines = LINES_PER_COPY * args.copies
    res = job.get("result") or {}
    print(
        f"serve: ingest job {job['status']}: {lines:,} lines ({upload.stat().st_size / 1e6:.0f} "
        f"MB zstd, uploaded in {upload_s:.1f} s) in {job['seconds']:.1f} s = "
        f"{lines / job['seconds'] / 1e6:.2f} M lines/s under load; "
        f"{res.get('events', 0):,} events"
    )
    for e in result["errors"][:5]:
        print(f"serve: error: {e}")
    if result["errors"] or job["status"] != "done":
        print("serve: FAILED" + (f": {job['error']}" if job.get("error") else ""))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
