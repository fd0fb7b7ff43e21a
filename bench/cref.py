"""The C reference buddy allocator (bench/buddy_ref.c): its events file, build and run.

Shared by ``bench/bench_cref.py`` (the side-by-side benchmark) and the test that
keeps the reference placing the same pfns as the ``buddy`` model
(tests/test_cref.py). The events file, little endian: ``RPLYEV01``, int64 n,
nobj, start_pfn (pfn), pages, then the columns uint8 is_alloc[n], int8
order[n], int32 offset[n] (pages into the object), int64 obj[n] (dense ids).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

SOURCE = Path(__file__).resolve().parent / "buddy_ref.c"
MAGIC = b"RPLYEV01"
STEP_COLS = 12  # int64 pfn + nr_free[0..10] per step


def write_events(path: Path, is_alloc: np.ndarray, order: np.ndarray, offset: np.ndarray,
                 obj: np.ndarray, start_pfn: int, pages: int) -> None:  # fmt: skip
    """Write the events file; ``obj`` must be dense ids 0 .. nobj-1."""
    n = len(is_alloc)
    nobj = int(obj.max()) + 1 if n else 0
    with open(path, "wb") as f:
        f.write(MAGIC)
        f.write(np.array([n, nobj, start_pfn, pages], "<i8").tobytes())
        f.write(np.ascontiguousarray(is_alloc, np.uint8).tobytes())
        f.write(np.ascontiguousarray(order, np.int8).tobytes())
        f.write(np.ascontiguousarray(offset, "<i4").tobytes())
        f.write(np.ascontiguousarray(obj, "<i8").tobytes())


def build(out: Path) -> Path:
    """Compile buddy_ref.c with the system cc (-O2) into ``out`` unless it is newer."""
    if out.exists() and out.stat().st_mtime >= SOURCE.stat().st_mtime:
        return out
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise RuntimeError("no C compiler (cc, gcc or clang) on PATH")
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([cc, "-O2", "-o", str(out), str(SOURCE)], check=True)
    return out


def run(exe: Path, events: Path, steps: Path | None = None) -> dict[str, Any]:
    """Run the reference on an events file; its JSON summary (kernel_s in seconds)."""
    cmd = [str(exe), str(events)] + (["--steps", str(steps)] if steps else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out))


def read_steps(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A ``--steps`` file: per step the pfn (-1: a free or a failure) and nr_free (blocks)."""
    rows = np.fromfile(path, "<i8").reshape(-1, STEP_COLS)
    return rows[:, 0], rows[:, 1:]
