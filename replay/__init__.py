"""replay: trace-replay analysis of Linux physical-memory fragmentation."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
from pathlib import Path

__version__ = "0.1.0"


def _numba_cache_dir() -> None:
    """Key numba's compile cache by a hash of the package's numba sources.

    numba invalidates a cached kernel only when its own file changes, not
    when a function it inlines from another module does (the replay kernel
    inlines the allocator and compaction). A cache directory per source hash
    makes a stale cache impossible; an unwritable one makes numba compile in
    memory. Only the modules that use numba (or replay.jit's njit) are hashed (a kernel can inline
    nothing else), so editing the CLI or the report keeps the cache. Cache
    directories of other source versions unused for 14 days are removed.
    ``NUMBA_CACHE_DIR`` set by the user wins.
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    h = hashlib.sha256()
    for p in sorted(Path(__file__).resolve().parent.rglob("*.py")):
        src = p.read_bytes()
        if b"numba" in src or b"njit" in src:
            h.update(p.name.encode())
            h.update(src)
    fast = os.environ.get("REPLAY_JIT_FAST_COMPILE", "0") not in ("", "0")  # replay.jit
    h.update(b"fast-compile" if fast else b"")
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "replay" / "numba"
    here = base / h.hexdigest()[:16]
    os.environ["NUMBA_CACHE_DIR"] = str(here)
    _prune(base, here)
    config = sys.modules.get("numba.core.config")
    if config is not None:  # numba already imported: it read the environment then
        config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]  # type: ignore[attr-defined]


def _prune(base: Path, keep: Path, max_age_s: float = 14 * 86400) -> None:
    """Remove cache directories other than ``keep`` not modified for ``max_age_s`` (s)."""
    try:
        now = time.time()
        old = [d for d in base.iterdir() if d != keep and now - d.stat().st_mtime > max_age_s]
    except OSError:
        return
    for d in old:
        shutil.rmtree(d, ignore_errors=True)


_numba_cache_dir()
