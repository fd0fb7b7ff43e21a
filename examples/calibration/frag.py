"""Fragmenter: fault MIB MiB of 4 KiB pages, free 3 of every 4, hold HOLD s (optionally compact)."""

import ctypes
import mmap
import sys
import time

mib, hold, compact = int(sys.argv[1]), float(sys.argv[2]), len(sys.argv) > 3
libc = ctypes.CDLL("libc.so.6", use_errno=True)
n = mib << 20
m = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
buf = ctypes.c_char.from_buffer(m)
base = ctypes.addressof(buf)
libc.madvise(ctypes.c_void_p(base), ctypes.c_size_t(n), 15)  # MADV_NOHUGEPAGE
page = b"\x5a" * 4096
for off in range(0, n, 4096):
    m[off : off + 4096] = page
for off in range(0, n, 4 * 4096):
    libc.madvise(ctypes.c_void_p(base + off), ctypes.c_size_t(3 * 4096), 4)  # MADV_DONTNEED
time.sleep(hold)
if compact:
    open("/proc/sys/vm/compact_memory", "w").write("1\n")
    time.sleep(hold)
del buf
