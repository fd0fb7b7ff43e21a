"""A heap that churns: arrays of 64 KiB-48 MiB kept or dropped at random for SECONDS s.

Each round allocates one array (glibc: mmap for the large ones, the brk heap for the
small), touches every page, and frees a random earlier one, keeping at most MIB MiB
live; every 50th round reads FILE (page cache) if given. Deterministic (seed 14).
Usage: heap.py MIB SECONDS [FILE]
"""

import random
import sys
import time

import numpy as np

mib, seconds = int(sys.argv[1]), float(sys.argv[2])
path = sys.argv[3] if len(sys.argv) > 3 else None
rng = random.Random(14)
live: list[np.ndarray] = []
held = 0
end = time.monotonic() + seconds
rounds = 0
while time.monotonic() < end:
    size = rng.choice((64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 48 << 20))
    a = np.empty(size, np.uint8)
    a[::4096] = 1  # every page faulted
    live.append(a)
    held += size
    while held > mib << 20 or (live and rng.random() < 0.45):
        held -= live.pop(rng.randrange(len(live))).nbytes
    rounds += 1
    if path and rounds % 50 == 0:
        with open(path, "rb") as f:
            while f.read(1 << 20):
                pass
print(f"{rounds} rounds", file=sys.stderr)
