"""The server's one DuckDB instance: a writer Store for jobs, pooled reader cursors.

DuckDB allows one instance per database file per process, and a read-write
instance excludes every other process, so the server holds the only one
(read-write: jobs write). Readers use cursors of it (``con.cursor()``): each
is a separate connection with its own transactions, so reads go on, and see
the last committed state, while the writer thread's transaction is open.
Cursors are pooled: creating one and installing the metric macros on it
(temporary macros are per connection) costs about 15 ms.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import duckdb

from replay.analysis.metrics import install_macros
from replay.errors import QueryTimeoutError, ReplayError
from replay.service.sqlguard import LOCKDOWN_SQL
from replay.store import MACROS_SQL, Store

POOL_SIZE = 48  # idle reader cursors kept (the request thread pool is 40 threads)


class Lease:
    """A pooled reader cursor lent to one request."""

    __slots__ = ("cur", "discarded")

    def __init__(self, cur: duckdb.DuckDBPyConnection) -> None:
        self.cur = cur
        self.discarded = False

    def discard(self) -> None:
        """Close the cursor at the end of the request instead of pooling it."""
        self.discarded = True


class Database:
    """Opens ``path`` (creating an empty store if missing) and locks it down for clients."""

    def __init__(self, path: Path, *, pool_size: int = POOL_SIZE, warm: int = 2) -> None:
        self.path = Path(path)
        self.writer = Store(self.path)
        # Commit once: the file now holds committed data, so a failed first
        # ingest never deletes it (Store.discard_if_new) under the readers.
        with self.writer.transaction():
            pass
        for stmt in LOCKDOWN_SQL:
            self.writer.run(stmt)
        # Cursors are spawned from a connection of their own, not from the
        # writer's (which the job thread uses concurrently).
        self._root = self.writer.con.cursor()
        self._root_lock = threading.Lock()
        self._pool: queue.LifoQueue[duckdb.DuckDBPyConnection] = queue.LifoQueue()
        self._pool_size = pool_size
        self._closed = False
        for _ in range(warm):
            self._pool.put(self._new_cursor())

    def _new_cursor(self) -> duckdb.DuckDBPyConnection:
        with self._root_lock:
            cur = self._root.cursor()
        cur.execute(MACROS_SQL).fetchall()
        install_macros(cur)
        return cur

    @contextlib.contextmanager
    def cursor(self) -> Iterator[Lease]:
        """A reader cursor for one request, returned to the pool afterwards.

        It is closed instead after a time-out (an interrupted cursor), an
        unexpected exception, or :meth:`Lease.discard`.
        """
        try:
            cur = self._pool.get_nowait()
        except queue.Empty:
            cur = self._new_cursor()
        lease = Lease(cur)
        try:
            yield lease
        except QueryTimeoutError:
            lease.discarded = True
            raise
        except ReplayError:
            raise  # a failed query: the cursor's transaction was rolled back, reuse it
        except BaseException:
            lease.discarded = True
            raise
        finally:
            if lease.discarded or self._closed or self._pool.qsize() >= self._pool_size:
                with contextlib.suppress(duckdb.Error):
                    cur.close()
            else:
                self._pool.put(cur)

    def reader_store(self, cur: duckdb.DuckDBPyConnection) -> Store:
        """A Store over a reader cursor (for core functions that take a Store)."""
        s = Store.__new__(Store)
        s.path = self.path
        s.read_only = True
        s._created = False
        s._new = None
        s.con = cur
        return s

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                cur = self._pool.get_nowait()
            except queue.Empty:
                break
            with contextlib.suppress(duckdb.Error):
                cur.close()
        with contextlib.suppress(duckdb.Error):
            self._root.close()
        self.writer.close()
