"""Compile numba's kernels before a test run: ``python tests/warm_kernels.py ROLE DIR``.

A cold run (a clean clone on CI) spends most of its time compiling. Under xdist each
worker that meets a kernel missing from the cache compiles it (and a batch's process
pool compiles it again in each of its processes), so two workers and their pools
compiled the same models at once. conftest runs this once per role before the workers
start, the two roles in parallel (one core each); the workers then load every kernel
the suite uses from the cache.

Roles:
- ``models``: the replay kernel (whatif.warm_up), then a scenario replayed by every
  mechanism the presets switch on (compaction, proactive compaction, kswapd, virtual
  compound pages, active defragmentation, exchange pages, pools, zsmalloc) and the
  kernel preset from the shipped capture's real state (recorded compaction, pcp loads),
  with its zone chosen by the zonelist too.
- ``traces``: the parsers (ftrace text, trace.dat, perf.data, perf script), the
  observed replay, the workload generator, the canonical-Parquet reader.

Each command's failure is ignored here: it fails again, with its test, in the run.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
MODEL_PRESETS = ("mobility+compaction", "mobility+proactive", "mobility+kswapd",
                 "mobility+kswapd-targeted", "mobility+vcompound", "mobility+defrag",
                 "mobility+exchange", "mobility+pools", "buddy+compaction",
                 "zsmalloc-hybrid", "zsmalloc-object", "mobility+pcp", "buddy")  # fmt: skip


def _cli(*args: str) -> None:
    from replay.cli.main import main

    try:
        main([*args, "-q"])
    except (Exception, SystemExit):  # see the module
        pass


def models(d: Path) -> None:
    from replay.engine.whatif import warm_up

    warm_up()
    db = str(d / "m.duckdb")
    _cli("generate", "fragmenter", "--zone-pages", "4096", "--db", db)
    for preset in MODEL_PRESETS:
        _cli("run", "fragmenter", "-m", preset, "--db", db)
    _cli("ingest", str(ROOT / "traces" / "compact-6.18"), "--name", "c", "--db", db)
    _cli("run", "c", "-m", "kernel", "--start", "observed", "--db", db)
    _cli("run", "c", "-m", "kernel+zonelist", "--start", "observed", "--db", db)
    from replay.models.node import NodeState  # the zonelist's node, as tests drive it
    from replay.models.zone import ZoneState

    NodeState(ZoneState(1024, 1024), ZoneState(0, 1024)).alloc_obj(0, 0, 1)
    _cli("run", "c", "-m", "mobility", "--fill-from-snapshot", "--db", db)


def traces(d: Path) -> None:
    db = str(d / "t.duckdb")
    _cli("ingest", str(FIXTURES / "eras" / "v6.18.txt"), "--name", "w", "--db", db)
    _cli("run", "w", "--observed", "--db", db)
    _cli("generate", "fragmenter", "--zone-pages", "4096", "--db", db)
    import zstandard

    binary = FIXTURES / "binary"
    for name in ("kmem-v6.dat.zst", "kmem-perf.data.zst"):
        (d / name[:-4]).write_bytes(
            zstandard.ZstdDecompressor().decompress((binary / name).read_bytes(),
                                                    max_output_size=1 << 30))  # fmt: skip
    inputs = (binary / "kmem-v7-zstd.dat", d / "kmem-v6.dat", d / "kmem-perf.data",
              binary / "kmem-perf-script.txt.zst")  # fmt: skip
    for i, path in enumerate(inputs):
        _cli("ingest", str(path), "--name", f"b{i}", "--db", db)
    _cli("export", "w", "-o", str(d / "w.parquet"), "--db", db)
    _cli("ingest", str(d / "w.parquet"), "--name", "p", "--db", db)


if __name__ == "__main__":
    {"models": models, "traces": traces}[sys.argv[1]](Path(sys.argv[2]))
