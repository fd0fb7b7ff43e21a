"""Whole ``replay ingest`` of a 1M-line real capture against the kernel's own
Documentation/trace/postprocess/trace-pagealloc-postprocess.pl on the same lines.

The input is the shipped 6.18 capture (traces/compact-6.18) repeated to
1,000,000 lines of plain ftrace text (bench/data/capture-1M.txt). Both are
whole child processes, each run after one warm run: ``perl SCRIPT < FILE``
(which only counts per process) and ``replay ingest FILE`` into a fresh
database (parsing, pairing, the per-process aux events and DuckDB). The
script is found under $KSRC, /work/ksrc/linux-source-6.12, or extracted from
the Debian linux-source tarball in /work/ksrc/usr/src into bench/data.
Usage: python bench/bench_perl.py [--lines N] [--script PATH] [--repeat R]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import zstandard

ROOT = Path(__file__).resolve().parent.parent
TRACE = ROOT / "traces" / "compact-6.18" / "trace.txt.zst"
DATA = ROOT / "bench" / "data"
REL = "Documentation/trace/postprocess/trace-pagealloc-postprocess.pl"
TARBALL = Path("/work/ksrc/usr/src/linux-source-6.12.tar.xz")
# The script's event regex predates the flags column of ftrace output (".....", since
# Linux 2.6.3x) and task names with dots: as shipped it matches no line of a 6.x
# capture, counts nothing and spends 15 us a line backtracking. The copy timed here
# reads the task, cpu, flags and timestamp of every line (its counts then agree with
# replay's per_process query).
REGEX_SHIPPED = (r"my $regex_traceevent = '\s*([a-zA-Z0-9-]*)\s*(\[[0-9]*\])\s*([0-9.]*):"
                 r"\s*([a-zA-Z_]*):\s*(.*)';")  # fmt: skip
REGEX_FLAGS = (r"my $regex_traceevent = '\s*(\S.*?-[0-9]+)\s+(\[[0-9]*\])\s+"
               r"(?:[.a-zA-Z0-9]{4,5}\s+)?([0-9.]*):\s*([a-zA-Z_]*):\s*(.*)';")  # fmt: skip


def find_script(given: str | None) -> Path | None:
    """The perl script: given, in a kernel tree, or extracted once from the tarball."""
    if given:
        return Path(given)
    trees = [os.environ.get("KSRC", ""), "/work/ksrc/linux-source-6.12"]
    for tree in filter(None, trees):
        if (Path(tree) / REL).exists():
            return Path(tree) / REL
    out = DATA / "trace-pagealloc-postprocess.pl"
    if out.exists():
        return out
    if not TARBALL.exists():
        return None
    with tarfile.open(TARBALL) as tar:  # a stream read of the whole tarball (about 20 s)
        for member in tar:
            if member.name.endswith(REL):
                f = tar.extractfile(member)
                assert f is not None
                DATA.mkdir(parents=True, exist_ok=True)
                out.write_bytes(f.read())
                return out
    return None


def with_flags_column(script: Path) -> Path:
    """bench/data's copy of the script whose event regex reads today's ftrace lines."""
    src = script.read_text()
    if REGEX_SHIPPED not in src:
        return script
    out = DATA / "trace-pagealloc-postprocess-flags.pl"
    out.write_text(src.replace(REGEX_SHIPPED, REGEX_FLAGS))
    return out


def capture_lines(n: int) -> Path:
    """bench/data/capture-N.txt: the shipped capture's text repeated to ``n`` lines."""
    out = DATA / f"capture-{n}.txt"
    if out.exists():
        return out
    text = zstandard.ZstdDecompressor().stream_reader(TRACE.open("rb")).read()
    lines = text.splitlines(keepends=True)
    DATA.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        left = n
        while left > 0:
            f.writelines(lines[:left])
            left -= min(left, len(lines))
    tmp.replace(out)
    return out


def wall(cmd: list[str], stdin: Path | None = None) -> float:
    """A child's wall time (s); its output discarded."""
    t0 = time.perf_counter()
    with open(stdin, "rb") if stdin else open(os.devnull, "rb") as f:
        subprocess.run(cmd, stdin=f, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--script", default=None, help="trace-pagealloc-postprocess.pl")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    script = find_script(args.script)
    perl = shutil.which("perl")
    if script is None or perl is None:
        print("perl: skipped (no perl, or no trace-pagealloc-postprocess.pl: pass --script)")
        return 0
    src = capture_lines(args.lines)
    script = with_flags_column(script)
    replay = str(Path(sys.executable).parent / "replay")
    db = DATA / "perl-bench.duckdb"

    def ingest() -> float:
        for p in (db, Path(str(db) + ".wal")):
            p.unlink(missing_ok=True)
        return wall([replay, "ingest", str(src), "--db", str(db), "-q", "-f", "json"])

    wall([perl, str(script)], stdin=src)  # warm the page cache
    ingest()  # and the compile cache
    print(f"perl: {args.lines:,} lines ({src.stat().st_size / 2**20:.0f} MiB of ftrace text)")
    for rep in range(args.repeat):
        p_s = wall([perl, str(script)], stdin=src)
        r_s = ingest()
        n = args.lines / 1e6
        print(f"perl: [{rep + 1}] trace-pagealloc-postprocess.pl {p_s:.2f} s "
              f"({n / p_s:.2f} M lines/s); whole 'replay ingest' {r_s:.2f} s "
              f"({n / r_s:.2f} M lines/s): {r_s / p_s:.2f}x the perl time")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
