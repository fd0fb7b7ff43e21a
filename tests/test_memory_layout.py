"""The zone a run uses is memory as the kernel has it.

Holes (pages past the zone's managed ones, which this machine's
``deferred_init=lazy`` adds by sections during a trace) are neither free
nor allocated by anyone the model can move until the trace frees them in;
the pageblock types of an observed start follow the snapshot's counts.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from replay.engine import whatif as engine
from replay.engine.environment import aligned_blocks, boot_blocks
from replay.models.config import load_model
from replay.store import Store
from replay.trace.ingest import ingest

CAPTURE = Path(__file__).resolve().parent.parent / "traces" / "compact-6.18"
NORMAL = 0x100000


def test_aligned_blocks_and_boot_layout() -> None:
    mask = np.zeros(64, np.bool_)
    mask[3:40] = True
    offs, orders = aligned_blocks(mask, 1024)
    assert list(zip(offs.tolist(), orders.tolist(), strict=True)) == [
        (3, 0), (4, 2), (8, 3), (16, 4), (32, 3),
    ]  # fmt: skip
    blk = boot_blocks(4096, 3072, 0)
    assert {int(o): int(blk[o]) for o in np.flatnonzero(blk >= 0)} == {0: 10, 1024: 10, 2048: 10}


@pytest.fixture(scope="module")
def half_managed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped capture, told its Normal zone managed half the pages it did: the
    trace's events past that look like memory brought online during the trace."""
    folder = tmp_path_factory.mktemp("half") / "half"
    shutil.copytree(CAPTURE, folder)
    for when in ("before", "after"):
        p = folder / f"{when}.zoneinfo"
        p.write_text(p.read_text().replace("managed  1048576", "managed  524288"))
    db = folder.parent / "h.duckdb"
    with Store(db) as s:
        ingest(s, folder, name="half")
    return db


def test_holes_are_neither_free_nor_movable_until_freed_in(half_managed: Path) -> None:
    with Store(half_managed) as s:
        zs, zp = s.one("SELECT zone_start_pfn, zone_pages FROM traces")
        r = engine.run(s, "half", load_model("mobility+compaction"), every=1000)
        first = s.query(
            """SELECT pageblock, free_pages, unmovable + movable + reclaimable AS used
               FROM pageblocks WHERE run_id = $r AND seq = -1 ORDER BY pageblock""",
            {"r": r.run_id},
        ).to_pylist()
        onlined = s.one(
            """SELECT count(*) FROM events WHERE op = 'free' AND pfn >= $h
                 AND obj NOT IN (SELECT obj FROM events WHERE op = 'alloc')""",
            {"h": NORMAL + 524288},
        )[0]
    assert (zs, zp) == (NORMAL, 5505024)  # the trace passes the managed pages: the span
    hole_pb = (NORMAL + 524288) >> 9
    holes = [b for b in first if b["pageblock"] >= hole_pb]
    assert holes and all(b["free_pages"] == 0 and b["used"] == 512 for b in holes)
    assert sum(b["free_pages"] for b in first) <= 524288
    # the model cannot move or reclaim holes, and the trace's frees there bring pages in
    assert onlined > 0 and r.free_pages > 0


def test_observed_start_pageblock_types_follow_the_snapshot(
    capture_db: Path, tmp_path: Path
) -> None:
    db = tmp_path / "c.duckdb"
    shutil.copyfile(capture_db, db)  # the session's capture stays as other tests expect
    with Store(db) as s:
        r = engine.run(s, "compact", load_model("mobility"), start="observed",
                       pageblock_every=0)  # fmt: skip
        got = {
            int(row["migratetype"]): int(row["n"])
            for row in s.query(
                """SELECT migratetype, count(*) AS n FROM pageblocks
                   WHERE run_id = $r AND seq = -1 GROUP BY ALL""",
                {"r": r.run_id},
            ).to_pylist()
        }
        want = {
            int(row["mt"]): int(row["n"])
            for row in s.query(
                """SELECT mt, sum(nr_pageblocks) AS n FROM snap_pageblocks
                   WHERE snapshot = 'before' AND zone = 'Normal' AND nr_pageblocks > 0
                   GROUP BY ALL"""
            ).to_pylist()
        }
    assert got == want
