"""The numba ftrace ingester against hand-written era fixtures, the pure-Python
reference (tests/refparse.py), random histories (hypothesis) and the real capture."""

from __future__ import annotations

import gzip
import itertools
import json
import lzma
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import zstandard
from conftest import CAPTURE, ERAS, parse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from refparse import parse_text
from strategies import trace_histories

from replay.errors import BadInputError

COUNT_KEYS = ("allocs", "frees", "partial_frees", "preexisting", "live_at_end", "failed_allocs",
              "batched", "batched_orphans", "alloc_overlaps")  # fmt: skip

GOOD = sorted(p for p in ERAS.glob("*.txt") if not p.name.startswith("bad_"))
BAD = sorted(ERAS.glob("bad_*.txt"))


def _check(path: Path, expected: dict, chunk_bytes: int | None = None) -> None:
    rows, p, aux = parse(path, chunk_bytes)
    assert rows == expected["events"]
    for k in COUNT_KEYS:
        assert p.stats.counters[k] == expected[k], k
    assert p.stats.lost_events == expected["lost_events"]
    assert p.stats.lost_markers == expected["lost_markers"]
    aux = dict(p.stats.aux_by_event)
    # Batched lines are kept in aux_events as raw lines beside their flag.
    assert aux.pop("mm_page_free_batched", 0) == sum(
        1 for ln in path.read_text().splitlines() if " mm_page_free_batched: " in ln
    )
    assert aux == expected["aux"]
    assert p.stats.lines == expected["lines"]


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.stem)
def test_era_fixture(path: Path) -> None:
    _check(path, json.loads(path.with_suffix(".expected.json").read_text()))


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.stem)
def test_era_fixture_tiny_chunks(path: Path) -> None:
    """Chunk boundaries (even every ~2 lines) change nothing, batched flags included."""
    _check(path, json.loads(path.with_suffix(".expected.json").read_text()), chunk_bytes=256)


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_fixture_names_line_and_field(path: Path) -> None:
    want = json.loads(path.with_suffix(".expected.json").read_text())["error"]
    with pytest.raises(BadInputError) as ei:
        parse(path)
    err = ei.value
    assert err.file == str(path)
    assert err.line == want["line"]
    assert err.field == want["field"]
    assert f"{path}:{want['line']}:" in str(err)


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_fixture_skip_bad_counts(path: Path) -> None:
    _, p, _ = parse(path, skip_bad=True)
    assert p.stats.skipped_bad == 1
    assert (
        p.stats.bad_examples
        and str(json.loads(path.with_suffix(".expected.json").read_text())["error"]["line"])
        in p.stats.bad_examples[0]
    )


def test_format_variants_detected() -> None:
    def fmt(name: str) -> str:
        _, p, _ = parse(ERAS / f"{name}.txt")
        return p.stats.format_description()

    assert "before 3.3" in fmt("v2.6.35") and "decimal pfn" in fmt("v2.6.35")
    assert "no latency flags" in fmt("v2.6.35")
    assert "3.3-4.14" in fmt("v3.10") and "4-char" in fmt("v3.10")
    assert "TGID column" in fmt("v4.19")
    assert "hex pfn" in fmt("v5.15") and "4.15+" in fmt("v5.15")
    assert "5-char" in fmt("v6.18") and "(5.17+)" in fmt("v6.18")
    assert "trace-cmd report" in fmt("trace_cmd")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_histories_match_generator_and_reference(
    data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    era = data.draw(st.sampled_from(["2.6.35", "3.10", "4.19", "5.15", "6.18", "trace-cmd"]))
    text, expected = data.draw(trace_histories(era=era))
    path = tmp_path_factory.mktemp("h") / "t.txt"
    path.write_text(text)
    chunk = data.draw(st.sampled_from([None, 97, 1000]))
    ref = parse_text(text)
    if not ref.event_lines:
        with pytest.raises(BadInputError, match="no trace events"):
            parse(path, chunk)
        return
    rows, p, _ = parse(path, chunk)
    assert rows == [list(e) for e in ref.events]
    assert rows == [list(e) for e in expected["events"]]
    for k in COUNT_KEYS:
        assert p.stats.counters[k] == getattr(ref, k), k
    assert p.stats.lost_events == ref.lost_events


def test_real_capture_counts_match_independent_count() -> None:
    """Every event type of the real 6.18 capture, counted by a plain regex."""
    text = (
        zstandard.ZstdDecompressor()
        .decompressobj()
        .decompress((CAPTURE / "trace.txt.zst").read_bytes())
        .decode()
    )
    names = Counter(m.group(1) for m in re.finditer(r"^.*?\d+\.\d+: (\w+):", text, re.M))
    rows, p, aux = parse(CAPTURE / "trace.txt.zst")
    ops = Counter(r[0] for r in rows)
    assert ops["alloc"] == names["mm_page_alloc"]  # no failed allocations in this capture
    assert ops["free"] == names["mm_page_free"]
    assert p.stats.counters["batched"] == names["mm_page_free_batched"]
    assert p.stats.counters["batched_orphans"] == 0
    aux_names = Counter(aux.column("event").to_pylist())
    for name, n in names.items():
        if name not in ("mm_page_alloc", "mm_page_free"):
            assert aux_names[name] == n, name
    assert p.stats.lines == text.count("\n")
    ref = parse_text(text)
    assert rows == [list(e) for e in ref.events]


def test_real_capture_aux_fields() -> None:
    _, _, aux = parse(CAPTURE / "trace.txt.zst")
    rows = aux.to_pylist()
    begin = next(r for r in rows if r["event"] == "mm_compaction_begin")
    assert json.loads(begin["args"]) == {
        "zone_start": "0x1", "migrate_pfn": "0x1", "free_pfn": "0xe00", "zone_end": "0x1000",
        "mode": "sync",
    }  # fmt: skip
    iso = next(r for r in rows if r["event"] == "mm_compaction_isolate_freepages")
    assert json.loads(iso["args"])["range"] == "(0x1ffe00 ~ 0x200000)"
    mark = next(r for r in rows if r["event"] == "tracing_mark_write")
    assert mark["text"] == "snapshot before begin"
    drain = next(r for r in rows if r["event"] == "mm_page_pcpu_drain")
    assert drain["pfn"] > 0 and drain["order"] == 0 and drain["args"] is None
    locked = next(r for r in rows if r["event"] == "mm_page_alloc_zone_locked")
    assert json.loads(locked["args"]) == {"percpu_refill": "1"}
    # seq: the number of canonical events before the line
    assert all(a["seq"] <= b["seq"] for a, b in itertools.pairwise(rows))


def test_aux_args_are_json_with_escapes(tmp_path: Path) -> None:
    """Values with quotes, backslashes, control and non-UTF-8 bytes stay readable JSON."""
    head = b"  kcompactd0-77    [001] .....  10.000001: "
    lines = [
        head + b"mm_page_alloc: page=0x1 pfn=0x1000 order=0 migratetype=1 gfp_flags=GFP_KERNEL",
        head + b'mm_compaction_begin: zone_start=0x1 note=a"b\\c\x01d mode=sync',
        head + b"mm_page_alloc_zone_locked: page=0x1 pfn=0x1000 order=0 migratetype=1 "
        b"percpu_refill=1 vendor=caf\xe9",
        head + b"mm_page_pcpu_drain: page=0x1 pfn=0x1000 order=0 migratetype=1",
    ]
    path = tmp_path / "esc.txt"
    path.write_bytes(b"\n".join(lines) + b"\n")
    _, _, aux = parse(path)
    assert aux is not None
    args = aux.column("args").to_pylist()
    assert json.loads(args[0]) == {"zone_start": "0x1", "note": 'a"b\\c\x01d', "mode": "sync"}
    assert json.loads(args[1]) == {"percpu_refill": "1", "vendor": "caf\ufffd"}
    assert args[2] is None  # every field of a pcp drain has a typed column
    # And DuckDB reads them as JSON.
    import duckdb

    con = duckdb.connect()
    con.register("aux", aux)
    got = con.execute("SELECT args::JSON->>'note', args::JSON->>'vendor' FROM aux").fetchall()
    assert got[0][0] == 'a"b\\c\x01d' and got[1][1] == "caf\ufffd"


@pytest.mark.parametrize("kind", ["gz", "xz", "zst-cli", "zst-multiframe", "plain"])
def test_compressed_inputs(tmp_path: Path, kind: str) -> None:
    src = ERAS / "v6.18.txt"
    raw = src.read_bytes()
    dst = tmp_path / f"t.{kind}"
    if kind == "gz":
        dst.write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))  # multi-member
    elif kind == "xz":
        dst.write_bytes(lzma.compress(raw))
    elif kind == "zst-cli":
        if shutil.which("zstd") is None:
            pytest.skip("zstd command not installed (make test installs it)")
        plain = tmp_path / "p.txt"
        plain.write_bytes(raw)
        subprocess.run(["zstd", "-q", "-19", str(plain), "-o", str(dst)], check=True)
    elif kind == "zst-multiframe":
        c = zstandard.ZstdCompressor()
        dst.write_bytes(c.compress(raw[:777]) + c.compress(raw[777:]))
    else:
        dst.write_bytes(raw)
    assert parse(dst)[0] == parse(src)[0]


@pytest.mark.parametrize("kind", ["gz", "xz", "zst"])
def test_truncated_compressed_file_is_an_error(tmp_path: Path, kind: str) -> None:
    raw = (ERAS / "v6.18.txt").read_bytes() * 50
    data = {"gz": gzip.compress, "xz": lzma.compress, "zst": zstandard.ZstdCompressor().compress}[
        kind
    ](raw)
    dst = tmp_path / f"cut.{kind}"
    dst.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(BadInputError, match=r"truncated|corrupt") as ei:
        parse(dst)
    assert ei.value.file == str(dst)


def test_empty_and_comment_only_files(tmp_path: Path) -> None:
    for content in (b"", b"# tracer: nop\n#\n"):
        p = tmp_path / "e.txt"
        p.write_bytes(content)
        with pytest.raises(BadInputError, match="no trace events"):
            parse(p)


def test_crlf_and_missing_final_newline(tmp_path: Path) -> None:
    raw = (ERAS / "v6.18.txt").read_bytes()
    p = tmp_path / "crlf.txt"
    p.write_bytes(raw.replace(b"\n", b"\r\n").rstrip(b"\r\n"))
    assert parse(p)[0] == parse(ERAS / "v6.18.txt")[0]
