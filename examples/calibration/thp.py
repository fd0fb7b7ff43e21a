"""THP faults: map MIB MiB with MADV_HUGEPAGE, touch, unmap; ROUNDS times."""

import ctypes
import mmap
import sys
import time

mib, rounds = int(sys.argv[1]), int(sys.argv[2])
libc = ctypes.CDLL("libc.so.6", use_errno=True)
for _ in range(rounds):
    n = mib << 20
    m = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    buf = ctypes.c_char.from_buffer(m)
    libc.madvise(ctypes.c_void_p(ctypes.addressof(buf)), ctypes.c_size_t(n), 14)  # MADV_HUGEPAGE
    for off in range(0, n, 4096):
        m[off] = 1
    time.sleep(0.5)
    del buf
    m.close()
