#!/bin/bash
# The calibration captures of docs/validation.md (issue 14), recorded with `replay record`
# on this machine (root, tracefs, no swap): dd through the page cache, THP faults, a
# fragmenter (3 of every 4 pages freed), the fragmenter then /proc/sys/vm/compact_memory,
# 75 s of a kernel build (KSRC: an unpacked kernel source tree, e.g. Debian's
# `apt-get install linux-source-6.1 flex bison libelf-dev libssl-dev` and
# `tar xf /usr/src/linux-source-6.1.tar.xz`; skipped without one), and captures under
# memory pressure: a filler pins anonymous memory until 5 GiB stay available (never
# less than 4 GiB: without swap the OOM killer would pick this session), the page cache
# is filled with 3 GiB, then dd, THP faults with dd, (with KSRC) 60 s more of the
# kernel build, and the churning heap with the tree walk. heap.py needs numpy.
# Usage: examples/calibration/record-all.sh OUT_DIR [DB]   (REPLAY: the replay command,
# PYTHON: a python with numpy for heap.py)
set -u
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: record-all.sh OUT_DIR [DB]}
db=${2:-$out/calibration.duckdb}
R=${REPLAY:-replay}
mkdir -p "$out"
rec() { # name duration command...
  local name=$1 dur=$2; shift 2
  echo "== $name $(date +%T)"
  $R record -q --name "$name" --out "$out/$name" --duration "$dur" --db "$db" --replace \
     -- "$@" > "$out/$name.out" 2> "$out/$name.err"
  echo "rc=$? $(date +%T)"
}
calm() { sync; echo 3 > /proc/sys/vm/drop_caches; sleep 2; rec "$@"; }
calm dd-pagecache 60 sh -c 'dd if=/dev/zero of=/tmp/cap-dd bs=1M count=3072 status=none; cat /tmp/cap-dd >/dev/null; rm /tmp/cap-dd'
calm thp-mmap 60 python3 "$here/thp.py" 2048 3
calm fragmenter 60 python3 "$here/frag.py" 3072 2
calm compact-memory 90 python3 "$here/frag.py" 3072 3 compact
if [ -n "${KSRC:-}" ]; then
  calm kernel-build 75 sh -c "cd '$KSRC' && make -s defconfig >/dev/null && make -s -j$(nproc) >/dev/null 2>&1"
fi
# a numpy heap that churns (heap.py: arrays of 64 KiB-48 MiB kept or dropped at random, a
# file read through the page cache every 50 rounds; numpy madvises the large ones for
# THPs), and a walk of the file system (dentries and inodes: reclaimable slab, then page
# cache); with KSRC, Debian's tarball of it (/usr/src) and its tree, else /usr
READ=/usr/src/$(basename "${KSRC:-none}").tar.xz
[ -f "$READ" ] || READ=/usr/bin/python3
TREE=${KSRC:-/usr}
PY=${PYTHON:-python3}  # heap.py needs numpy: e.g. PYTHON=.venv/bin/python
calm heap-churn 60 "$PY" "$here/heap.py" 3072 50 "$READ"
calm slab-walk 60 sh -c "find / -xdev -name '*.h' >/dev/null 2>&1; tar cf - '$TREE' 2>/dev/null | cat >/dev/null"
python3 "$here/filler.py" 5000 "$out/filler.mib" &
filler=$!
trap 'kill $filler 2>/dev/null; rm -f /tmp/cap-pre "$out/filler.mib"' EXIT
while [ ! -s "$out/filler.mib" ]; do sleep 1; done
echo "filler pinned $(cat "$out/filler.mib") MiB"
dd if=/dev/zero of=/tmp/cap-pre bs=1M count=3072 status=none; cat /tmp/cap-pre > /dev/null
rec pressure-dd 60 sh -c 'dd if=/dev/zero of=/tmp/cap-p bs=1M count=2048 status=none; head -c 1G /tmp/cap-p >/dev/null; rm /tmp/cap-p'
rec pressure-thp 90 sh -c "python3 '$here/thp.py' 1024 3 & dd if=/dev/zero of=/tmp/cap-q bs=1M count=1536 status=none; wait; rm /tmp/cap-q"
if [ -n "${KSRC:-}" ]; then
  rec pressure-build 60 sh -c "cd '$KSRC' && make -s -j$(nproc) >/dev/null 2>&1"
fi
rec pressure-heap 60 sh -c "'$PY' '$here/heap.py' 2048 50 '$READ' & tar cf - '$TREE' 2>/dev/null | cat >/dev/null; wait"
