"""Arrays held once in shared memory, each user mapping a copy-on-write view of its own.

An explanation forks six models from one starting state: each fork needs the zone's
per-page arrays and its objects' placements (about 200 MB on a 5.5M-page zone with 5M
background objects) as that state has them, and changes a few thousand pages of them
in its 1,000 events. A :class:`SharedArray` keeps an array once, in a memfd (anonymous
shared memory, Linux's ``memfd_create``); :meth:`SharedArray.private` maps it privately
(``MAP_PRIVATE``): reads see the shared pages, and the first write to a page gives the
writer its own copy of that 4 KiB page (the kernel's copy-on-write), so a view costs
neither a copy nor freshly zeroed memory up front, and no view sees another's writes.
Where there is no memfd, a private view is a plain copy (the same contents).

Units: elements (``count``), bytes where named.
"""

from __future__ import annotations

import mmap
import os
import weakref

import numpy as np
from numpy.typing import DTypeLike

#: memfd_create and private file mappings (Linux): else private views are copies
SHARED = hasattr(os, "memfd_create") and hasattr(mmap, "MAP_PRIVATE")


def _write_all(fd: int, data: memoryview, offset: int) -> None:
    """Write all of ``data`` at byte ``offset`` of file ``fd`` (pwrite may write less)."""
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], offset + done)


class SharedArray:
    """One flat array of ``count`` elements kept once, every element ``fill`` at first:
    :meth:`shared_view` writes it, :meth:`private` hands out copy-on-write views of its
    first elements (a view may ask for more elements than it holds: they are added,
    ``fill``). ``shared=False`` keeps a plain array and hands out copies."""

    def __init__(self, count: int, dtype: DTypeLike, fill: int = 0, *,
                 shared: bool = SHARED) -> None:  # fmt: skip
        self.dtype = np.dtype(dtype)
        self.fill = fill
        self.size = 0  # elements held
        self._copy: np.ndarray | None = None if shared else np.zeros(0, self.dtype)
        self._fd = -1
        if shared:
            self._fd = os.memfd_create("replay-shared-array", os.MFD_CLOEXEC)
            weakref.finalize(self, os.close, self._fd)
        self._grow(int(count))

    @classmethod
    def of(cls, a: np.ndarray, fill: int = 0, *, shared: bool = SHARED) -> SharedArray:
        """A shared copy of array ``a`` (flattened); elements past its own are ``fill``."""
        flat = np.ascontiguousarray(a).reshape(-1)
        out = cls(0, flat.dtype, fill, shared=shared)
        if out._copy is not None:
            out._copy, out.size = flat.copy(), int(flat.shape[0])
        else:
            os.ftruncate(out._fd, flat.nbytes)
            _write_all(out._fd, memoryview(flat).cast("B"), 0)
            out.size = int(flat.shape[0])
        return out

    def _grow(self, count: int) -> None:
        """Hold ``count`` elements: the new ones ``fill``. Views already handed out are
        not changed (their mappings end before the new elements)."""
        extra = count - self.size
        if extra <= 0:
            return
        if self._copy is not None:
            self._copy = np.concatenate([self._copy, np.full(extra, self.fill, self.dtype)])
            self.size = count
            return
        os.ftruncate(self._fd, count * self.dtype.itemsize)  # the new bytes read 0
        old, self.size = self.size, count
        if self.fill != 0:  # written in place (no array of the new elements to copy)
            view = self._map(count, mmap.MAP_SHARED)
            view[old:] = self.fill
            del view

    def _map(self, n: int, flags: int) -> np.ndarray:
        m = mmap.mmap(self._fd, n * self.dtype.itemsize, flags=flags,
                      prot=mmap.PROT_READ | mmap.PROT_WRITE)  # fmt: skip
        return np.frombuffer(m, self.dtype, n)

    def shared_view(self) -> np.ndarray:
        """A writable view of every element that writes the shared array itself: what
        builds it. The private views handed out after see its writes (those handed out
        before may, in the pages they have not written: build first)."""
        if self._copy is not None:
            return self._copy
        return self._map(self.size, mmap.MAP_SHARED) if self.size else np.zeros(0, self.dtype)

    def private(self, count: int | None = None) -> np.ndarray:
        """A writable view of the first ``count`` elements (default all), the caller's
        own: writes to it change no other view and not the shared array."""
        n = self.size if count is None else int(count)
        self._grow(n)
        if self._copy is not None:
            return self._copy[:n].copy()
        return self._map(n, mmap.MAP_PRIVATE) if n else np.zeros(0, self.dtype)
