"""A trace whose pfns lie far apart runs on the memory it touches; what still cannot fit
is refused before anything is allocated, with the zone, its size and what to do
(issue 18 item 1)."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest
from conftest import run_cli

from replay.errors import UsageError
from replay.limits import check_zone_fits, default_max_state_bytes
from replay.store import Store


def _sparse_trace(path: Path, n: int = 9000, gap: int = 1 << 16) -> None:
    """``n`` order-0 allocations ``gap`` pages apart (a valid ftrace text trace)."""
    lines = []
    for i in range(n):
        pfn = 0x100000 + i * gap
        page = f"{0xFFFFEA0000000000 + pfn * 64:#x}"  # the struct page (never NULL)
        lines.append(f"           a-10    [000] .....  {100 + i * 1e-5:.6f}: mm_page_alloc: "
                     f"page={page} pfn={pfn:#x} order=0 migratetype=1 "
                     "gfp_flags=GFP_HIGHUSER_MOVABLE\n")  # fmt: skip
        lines.append(f"           a-10    [000] .....  {100 + i * 1e-5 + 5e-6:.6f}: "
                     f"mm_page_free: page={page} pfn={pfn:#x} order=0\n")  # fmt: skip
    path.write_text("".join(lines))


def test_sparse_trace_runs_on_the_memory_it_touches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's trace spans 589,759,488 pages (14 GB of model state over the span):
    it used to be refused (or take 8 GB); the models and the rebuild now keep the 9,000
    blocks it touches, under a limit of 512 MiB, and refuse below what those need."""
    trace = tmp_path / "sparse.txt"
    _sparse_trace(trace)
    db = tmp_path / "s.duckdb"
    assert run_cli("ingest", trace, "--name", "sparse", "--db", db, "-q").code == 0, "ingest"
    monkeypatch.setenv("REPLAY_MAX_STATE_BYTES", str(64 << 20))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for args, what in ((["-m", "mobility"], "the run's zone"),
                       (["--observed"], "the trace's zone")):  # fmt: skip
        r = run_cli("run", "sparse", *args, "--db", db, "-q")
        assert r.code == 2, r.err
        assert what in r.err and "9,000 stretches" in r.err and "9,216,000 pages" in r.err, r.err
    # nothing allocated per page and nothing stored
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 1 << 20  # KiB
    with Store(db) as s:
        assert s.one("SELECT count(*) FROM runs")[0] == 0
    monkeypatch.setenv("REPLAY_MAX_STATE_BYTES", str(512 << 20))
    for args in (["-m", "mobility"], ["--observed"]):
        r = run_cli("run", "sparse", *args, "--db", db, "-q", "--pageblock-every", "0")
        assert r.code == 0, r.err
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 3 << 20  # KiB
    with Store(db) as s:
        runs = s.query("SELECT model, failures, zone_pages FROM runs ORDER BY run_id").to_pylist()
        # every placement (the model's, the kernel's) is a pfn of a block the trace touches
        off = s.query("SELECT DISTINCT (pfn - 1048576) % 65536 AS o FROM steps "
                      "WHERE pfn IS NOT NULL").column("o").to_pylist()  # fmt: skip
        pbs = s.one("SELECT count(DISTINCT pageblock) FROM pageblocks")[0]
    assert [(r["model"], r["failures"]) for r in runs] == [("mobility", 0), ("observed", 0)]
    assert all(r["zone_pages"] == 589_759_488 for r in runs)
    assert off and all(0 <= o < 1024 for o in off), off
    assert pbs == 9000 * 2  # the touched blocks' pageblocks, by the trace's numbers
    # a zone of the size asked for runs as before
    r = run_cli("run", "sparse", "-m", "mobility", "--zone-pages", "65536", "--db", db, "-q")
    assert r.code == 0, r.err


def test_limit_and_its_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REPLAY_MAX_STATE_BYTES", raising=False)
    assert default_max_state_bytes() >= 64 << 20
    check_zone_fits(1 << 20, 24, "a zone", "hint", limit=24 << 20)
    with pytest.raises(UsageError, match=r"a zone is 1,048,577 pages.*hint"):
        check_zone_fits((1 << 20) + 1, 24, "a zone", "hint", limit=24 << 20)
    monkeypatch.setenv("REPLAY_MAX_STATE_BYTES", "lots")
    with pytest.raises(UsageError, match="REPLAY_MAX_STATE_BYTES"):
        default_max_state_bytes()
