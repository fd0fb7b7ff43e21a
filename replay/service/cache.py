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
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")

MAX_CELLS = 500_000  # larger results (rows x columns) are not kept


class ResultCache:
    """An LRU of at most ``entries`` results (0: no caching), per data generation."""

    def __init__(self, entries: int = 256) -> None:
        self.entries = entries
        self.generation = 0
        self.hits = 0
        self.misses = 0
        self._data: OrderedDict[tuple[int, Hashable], object] = OrderedDict()
        self._inflight: dict[tuple[int, Hashable], Future[object]] = {}
        self._lock = threading.Lock()

    def stats(self) -> dict[str, int]:
        """Entries kept, hits, misses (computed or waited for) and the data generation."""
        with self._lock:
            return {
                "entries": len(self._data),
                "hits": self.hits,
                "misses": self.misses,
                "generation": self.generation,
            }

    def invalidate(self) -> None:
        """The data changed (a job finished): forget every result."""
        with self._lock:
            self.generation += 1
            self._data.clear()

    def get(
        self, key: Hashable, compute: Callable[[], T], cells: Callable[[T], int] = lambda v: 0
    ) -> tuple[T, bool]:
        """The cached value for ``key``, or ``compute()``'s (stored); and whether it was a hit."""
        if self.entries <= 0:
            return compute(), False
        with self._lock:
            full = (self.generation, key)
            if full in self._data:
                self._data.move_to_end(full)
                self.hits += 1
                return self._data[full], True  # type: ignore[return-value]
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
        with self._lock:
            self._inflight.pop(full, None)
            if full[0] == self.generation and cells(value) <= MAX_CELLS:
                self._data[full] = value
                while len(self._data) > self.entries:
                    self._data.popitem(last=False)
        fut.set_result(value)
        return value, False
