"""Results of read queries, kept until the next write.

The server process holds the only read-write DuckDB instance of its file
(DuckDB lets no other process open it meanwhile), so the data changes only
when one of its own jobs commits. Every finished job bumps the cache's
generation, which is part of every key: a result computed before a commit is
never served after it. Identical queries running at the same time are
computed once (the others wait for that result).

Why it matters: DuckDB binds and plans a statement holding Python's GIL, and
the metric macros make planning the named queries cost 5-35 ms each, so
concurrent uncached reads do not scale past about one core (BENCHMARKS.md).

The cache is bounded in bytes as well as in entries: the least recently used
results go first once their sizes (:func:`size_of`) pass ``max_bytes``, and a
result larger than a quarter of ``max_bytes`` is never kept (it would push out
many small ones).
"""

from __future__ import annotations

import json
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")

CACHE_BYTES = 128 << 20  # default bound of the results kept, bytes


def size_of(value: object) -> int:
    """Memory a cached value holds, bytes (about).

    An object's own ``nbytes`` (replay.service.sqlguard.QueryResult), a string's
    or bytes' size, else the length of its JSON text.
    """
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    if isinstance(value, str | bytes):
        return sys.getsizeof(value)
    return len(json.dumps(value, default=str))


class ResultCache:
    """An LRU of at most ``entries`` results (0: no caching) and ``max_bytes`` bytes,
    per data generation."""

    def __init__(self, entries: int = 256, max_bytes: int = CACHE_BYTES) -> None:
        self.entries = entries
        self.max_bytes = max_bytes
        self.generation = 0
        self.hits = 0
        self.misses = 0
        self.bytes = 0  # sizes of the results kept, bytes
        self._data: OrderedDict[tuple[int, Hashable], tuple[object, int]] = OrderedDict()
        self._inflight: dict[tuple[int, Hashable], Future[object]] = {}
        self._lock = threading.Lock()

    def stats(self) -> dict[str, int]:
        """Entries kept and their bytes, the bound (bytes), hits, misses (computed or
        waited for) and the data generation."""
        with self._lock:
            return {
                "entries": len(self._data),
                "bytes": self.bytes,
                "max_bytes": self.max_bytes,
                "hits": self.hits,
                "misses": self.misses,
                "generation": self.generation,
            }

    def invalidate(self) -> None:
        """The data changed (a job finished): forget every result."""
        with self._lock:
            self.generation += 1
            self._data.clear()
            self.bytes = 0

    def get(self, key: Hashable, compute: Callable[[], T]) -> tuple[T, bool]:
        """The cached value for ``key``, or ``compute()``'s (stored if small enough);
        and whether it was a hit."""
        if self.entries <= 0 or self.max_bytes <= 0:
            return compute(), False
        with self._lock:
            full = (self.generation, key)
            if full in self._data:
                self._data.move_to_end(full)
                self.hits += 1
                return self._data[full][0], True  # type: ignore[return-value]
            fut = self._inflight.get(full)
            owner = fut is None
            if fut is None:
                fut = self._inflight[full] = Future()
            self.misses += 1
        if not owner:
            return fut.result(), True  # type: ignore[return-value]
        try:
            value = compute()
        except BaseException as exc:
            with self._lock:
                self._inflight.pop(full, None)
            fut.set_exception(exc)
            raise
        size = size_of(value)
        with self._lock:
            self._inflight.pop(full, None)
            if full[0] == self.generation and size <= self.max_bytes // 4:
                self._data[full] = (value, size)
                self.bytes += size
                while len(self._data) > self.entries or self.bytes > self.max_bytes:
                    _, (_, dropped) = self._data.popitem(last=False)
                    self.bytes -= dropped
        fut.set_result(value)
        return value, False
