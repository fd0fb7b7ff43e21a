"""A trace whose pfns span more memory than a model or the rebuild can hold is refused
before anything is allocated, with the zone, its size and what to do (issue 18 item 1)."""

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
        lines.append(f"           a-10    [000] .....  {100 + i * 1e-5:.6f}: mm_page_alloc: "
                     f"page=0 pfn={pfn:#x} order=0 migratetype=1 "
                     "gfp_flags=GFP_HIGHUSER_MOVABLE\n")  # fmt: skip
        lines.append(f"           a-10    [000] .....  {100 + i * 1e-5 + 5e-6:.6f}: "
                     f"mm_page_free: page=0 pfn={pfn:#x} order=0\n")  # fmt: skip
    path.write_text("".join(lines))


def test_sparse_trace_is_refused_before_allocating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = tmp_path / "sparse.txt"
    _sparse_trace(trace)
    db = tmp_path / "s.duckdb"
    assert run_cli("ingest", trace, "--name", "sparse", "--db", db, "-q").code == 0
    monkeypatch.setenv("REPLAY_MAX_STATE_BYTES", str(2 << 30))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for args, what in ((["-m", "mobility"], "the run's zone"),
                       (["--observed"], "the zones' span")):  # fmt: skip
        r = run_cli("run", "sparse", *args, "--db", db, "-q")
        assert r.code == 2, r.err
        assert what in r.err and "589,759,488 pages" in r.err and "GiB" in r.err, r.err
    # nothing allocated per page (the zone would be 14 GB) and nothing stored
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 1 << 20  # KiB
    with Store(db) as s:
        assert s.one("SELECT count(*) FROM runs")[0] == 0
    # a zone of the size asked for runs
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
