"""The reference parser against hand-written fixtures, generated histories and the real capture.

``tests/`` is not a package: pytest (prepend import mode) puts this folder on
``sys.path``, so the helpers import as ``refparse`` and ``strategies``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import refparse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import ERAS, trace_histories

HERE = Path(__file__).resolve().parent
ERA_DIR = HERE / "fixtures" / "eras"
REAL = HERE.parent / "traces" / "compact-6.18" / "trace.txt.zst"

FIXTURES = sorted(ERA_DIR.glob("*.txt"))
GOOD = [p for p in FIXTURES if not p.name.startswith("bad_")]
BAD = [p for p in FIXTURES if p.name.startswith("bad_")]
ERA_FIXTURES = ("v2.6.35", "v3.10", "v4.19", "v5.15", "v6.18", "trace_cmd")


def _expected(path: Path) -> dict[str, Any]:
    return json.loads(path.with_name(path.stem + ".expected.json").read_text())


def _compare(got: dict[str, Any], exp: dict[str, Any]) -> None:
    """Every key of ``exp`` must match; events are compared one by one for a clear message."""
    for key, value in exp.items():
        if key != "events":
            assert got[key] == value, key
    for i, (g, e) in enumerate(zip(got["events"], exp["events"], strict=False)):
        assert g == e, f"event {i}"
    assert len(got["events"]) == len(exp["events"])


def test_fixture_set_is_complete() -> None:
    names = {p.stem for p in FIXTURES}
    for need in (*ERA_FIXTURES, "bad_order", "bad_int", "bad_missing", "bad_garbage"):
        assert need in names
    for p in FIXTURES:
        assert p.with_name(p.stem + ".expected.json").exists(), p.name
    for stem in ERA_FIXTURES:
        n = len(refparse.split_lines((ERA_DIR / f"{stem}.txt").read_text()))
        assert 20 <= n <= 80, stem


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.stem)
def test_good_fixture(path: Path) -> None:
    got = refparse.parse_file(path).to_json()
    assert got["malformed"] == []
    _compare(got, _expected(path))


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_fixture(path: Path) -> None:
    err = _expected(path)["error"]
    assert refparse.parse_file(path).malformed == [(err["line"], err["field"])]


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.stem)
def test_invariants(path: Path) -> None:
    res = refparse.parse_file(path)
    n_batched_lines = res.event_lines.get("mm_page_free_batched", 0)
    n_pagevec = res.event_lines.get("mm_pagevec_free", 0)
    assert res.batched - n_pagevec + res.batched_orphans == n_batched_lines
    assert res.allocs + res.failed_allocs + res.frees == len(res.events)
    assert res.allocs + res.failed_allocs == res.event_lines.get("mm_page_alloc", 0)
    _check_event_consistency(res)


def _check_event_consistency(res: refparse.RefResult) -> None:
    """Object ids appear in creation order; a free names an earlier object or a new one."""
    next_id = 0
    for op, obj, offset, order, mt, _pfn, _ts, _cpu, _pid, _comm, batched in res.events:
        assert 0 <= order <= refparse.MAX_ORDER
        if op == "alloc":
            assert obj == next_id and offset == 0 and not batched
            next_id += 1
        elif obj == next_id:  # a pre-existing object
            assert offset == 0 and mt == -1
            next_id += 1
        else:
            assert obj < next_id and offset >= 0


@pytest.mark.parametrize("era", ERAS)
@settings(
    max_examples=35,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_against_strategy(era: str, data: st.DataObject) -> None:
    text, exp = data.draw(trace_histories(era), label="history")
    _compare(refparse.parse_text(text).to_json(), exp)


@pytest.fixture(scope="module")
def real_text() -> str:
    if not REAL.exists():
        pytest.skip(f"{REAL} is missing")
    import zstandard

    with REAL.open("rb") as fh:
        return zstandard.ZstdDecompressor().stream_reader(fh).read().decode()


def test_real_capture(real_text: str) -> None:
    res = refparse.parse_text(real_text)
    lines = [line for line in real_text.split("\n") if line]
    assert res.lines == len(lines)
    assert res.malformed == []

    # Independent event-name counts: the token between the first two ": " of each line,
    # confirmed by grep-style substring counts of " NAME: ".
    names = Counter(line.split(": ", 2)[1] for line in lines)
    for name, n in names.items():
        assert sum(1 for line in lines if f" {name}: " in line) == n, name
    assert res.event_lines == dict(names)

    failed = sum(
        1
        for line in lines
        if " mm_page_alloc: " in line and ("page=(null)" in line or " pfn=0x0 " in line)
    )
    assert res.failed_allocs == failed
    assert res.allocs + res.failed_allocs == names["mm_page_alloc"]
    assert res.frees == names["mm_page_free"]
    assert res.batched + res.batched_orphans == names["mm_page_free_batched"]
    skip = {"mm_page_alloc", "mm_page_free", "mm_page_free_batched"}
    aux = {k: v for k, v in names.items() if k not in skip}
    if failed:
        aux["mm_page_alloc"] = failed
    assert res.aux == aux
    assert res.lost_markers == sum(1 for line in lines if "LOST" in line and "EVENTS" in line)
    assert res.partial_frees <= res.frees and res.preexisting <= res.frees
    _check_event_consistency(res)
