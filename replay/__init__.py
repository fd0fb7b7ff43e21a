"""replay: trace-replay analysis of Linux physical-memory fragmentation."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

__version__ = "0.1.0"


def _numba_cache_dir() -> None:
    """Key numba's compile cache by a hash of the package's sources.

    numba invalidates a cached kernel only when its own file changes, not
    when a function it inlines from another module does (the replay kernel
    inlines the allocator and compaction). A cache directory per source hash
    makes a stale cache impossible; an unwritable one makes numba compile in
    memory. ``NUMBA_CACHE_DIR`` set by the user wins.
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    h = hashlib.sha256()
    for p in sorted(Path(__file__).resolve().parent.rglob("*.py")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "replay" / "numba"
    os.environ["NUMBA_CACHE_DIR"] = str(base / h.hexdigest()[:16])
    config = sys.modules.get("numba.core.config")
    if config is not None:  # numba already imported: it read the environment then
        config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]  # type: ignore[attr-defined]


_numba_cache_dir()
