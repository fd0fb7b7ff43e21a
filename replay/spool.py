"""Temporary folders beside a database, and what killed processes left there.

A process that spools data beside a database (an ingest's ``.replay-ingest-*``
folder, a run's ``.replay-run-*`` (its model events, pageblocks and checkpoints until
they are stored), an upload of ``replay serve`` waiting as ``.replay-upload-*``) holds
an exclusive ``flock(2)`` on the folder for as long as the folder is in use
(:class:`Spool`). A process creating a new database file holds one on a marker
beside it, ``<db>.replay-new``, until its first commit (:class:`NewDatabase`):
a database whose marker nobody holds is what a first write killed before it
committed left (the schema and nothing else).

Ownership is the lock, not a PID in the name: the kernel drops a process's
locks when it dies, however it dies (``kill -9`` included), a reused PID
cannot make a dead owner look alive, and the lock works across PID namespaces
(containers sharing a folder). :func:`remove_leftovers`, which every
:class:`replay.store.Store` calls before opening its file, removes the spool
folders beside the database that no process holds and a database whose
creation was cut short. A spool folder younger than ``MIN_AGE_S`` is left
alone: its creator may not have locked it yet (the next command removes it).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

SPOOL_PREFIXES = (".replay-ingest-", ".replay-upload-", ".replay-run-")
NEW_SUFFIX = ".replay-new"  # <db>.replay-new: the database is being created
MIN_AGE_S = 2.0  # s: a younger spool folder is never removed


def _try_lock(fd: int) -> bool:
    """Take an exclusive flock on ``fd`` without waiting; False if another holds one."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _drop(path: Path, fd: int) -> None:
    """Delete the spool folder ``path`` and what is in it, then drop its lock (``fd``)."""
    shutil.rmtree(path, ignore_errors=True)
    os.close(fd)


class Spool:
    """A new temporary folder ``<parent>/<prefix>XXXX`` that this process holds a lock on
    until :meth:`remove` (or the end of a ``with`` block, which yields its path; or the
    spool's garbage collection, or the interpreter's exit: a long-lived process whose
    caller failed before removing it leaves nothing behind either)."""

    def __init__(self, parent: Path | str, prefix: str) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            shutil.rmtree(self.path, ignore_errors=True)
            raise
        fcntl.flock(fd, fcntl.LOCK_EX)  # a new folder: nobody else holds it
        self._drop = weakref.finalize(self, _drop, self.path, fd)

    def remove(self) -> None:
        """Delete the folder and what is in it, then drop the lock (again: nothing)."""
        self._drop()

    def __enter__(self) -> Path:
        return self.path

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.remove()


def spool_or_temp(parent: Path | str, prefix: str) -> tuple[Path, Callable[[], None]]:
    """A :class:`Spool` ``<parent>/<prefix>XXXX`` (a killed process's is removed by the
    next command), or, where ``parent`` takes no new folder (a read-only database's
    folder), a temporary folder of the system's: (its path, what removes it)."""
    try:
        spool = Spool(parent, prefix)
    except OSError:
        tmp = tempfile.TemporaryDirectory(prefix=prefix.lstrip("."))
        return Path(tmp.name), tmp.cleanup
    return spool.path, spool.remove


class NewDatabase:
    """The marker ``<db>.replay-new`` of a database file this process is creating, locked
    until :meth:`release` (its first commit, its removal, or its close)."""

    def __init__(self, db: Path) -> None:
        self.path = Path(f"{db}{NEW_SUFFIX}")
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(self._fd):  # another process is creating it (and will fail to open)
            os.close(self._fd)
            self._fd = None
            return
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())  # for a reader: who creates it

    def release(self) -> None:
        """The database holds committed data, or is gone: remove the marker."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None


def remove_leftovers(db: Path) -> list[Path]:
    """Remove what dead processes left beside ``db``; returns the paths removed.

    Spool folders (SPOOL_PREFIXES) in its folder that no process holds a lock on
    and that are at least MIN_AGE_S old, and ``db`` itself (with its WAL) when
    its creation marker is there and nobody holds it.
    """
    folder = db.parent if str(db.parent) else Path(".")
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        if not entry.name.startswith(SPOOL_PREFIXES):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or now - entry.stat().st_mtime < MIN_AGE_S:
                continue
            fd = os.open(entry.path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue
        try:
            if _try_lock(fd):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(Path(entry.path))
        finally:
            os.close(fd)
    marker = Path(f"{db}{NEW_SUFFIX}")
    try:
        fd = os.open(marker, os.O_RDWR)
    except OSError:
        return removed
    try:
        if _try_lock(fd):
            # Its creator died before the first commit: the file holds the schema at most.
            for p in (db, Path(f"{db}.wal")):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    removed.append(p)
            with contextlib.suppress(FileNotFoundError):
                marker.unlink()
                removed.append(marker)
    finally:
        os.close(fd)
    return removed
