"""Pin anonymous memory until killed: leaves about KEEP_MIB MiB available."""

import mmap
import sys
import time

keep = int(sys.argv[1]) * 1024 * 1024
avail = 0
for line in open("/proc/meminfo"):
    if line.startswith("MemAvailable:"):
        avail = int(line.split()[1]) * 1024
n = max(avail - keep, 0)
m = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
chunk = b"\xa5" * (64 << 20)
for off in range(0, n - len(chunk) + 1, len(chunk)):
    m[off : off + len(chunk)] = chunk
open(sys.argv[2], "w").write(str(n >> 20))
while True:
    time.sleep(3600)
