"""Binary recordings (trace.dat v6/v7, perf.data) against their own text renderings.

The shipped fixtures under tests/fixtures/binary were recorded on this project's
6.18 VM: a tracefs instance with kmem and compaction events, ``trace-cmd
extract`` (v7, zstd), ``trace-cmd convert --file-version 6``, kallsyms blanked
to keep them small; ``perf record -e kmem:...`` of a small workload. Their text
renderings are ``trace-cmd report -t`` (the instance name prefix removed) and
``perf script --ns --show-lost-events``. When tracefs, trace-cmd and perf are
here, the live tests record fresh files the same way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest
import zstandard

from replay.errors import UsageError
from replay.store import Store
from replay.trace.ingest import detect, ingest
from replay.trace.record import ensure_tracefs

FIX = Path(__file__).parent / "fixtures" / "binary"
TRACEFS = Path("/sys/kernel/tracing")
EVENT_COLS = (
    'seq, ts_ns, op, obj, "offset", "order", migratetype, gfp, pfn, cpu, pid, comm, batched, failed'
)
AUX_COLS = 'seq, ts_ns, cpu, pid, comm, event, pfn, "order", migratetype, args, text'
ROW_COUNTS = (
    "events",
    "aux_events",
    "allocs",
    "frees",
    "partial_frees",
    "preexisting",
    "live_at_end",
    "failed_allocs",
    "batched",
    "lost_events",
    "lost_markers",
    "ts_first",
    "ts_last",
    "pfn_min",
    "pfn_max",
)


def unzstd(src: Path, dst: Path) -> Path:
    dst.write_bytes(
        zstandard.ZstdDecompressor().decompress(src.read_bytes(), max_output_size=1 << 30)
    )
    return dst


def ingest_pair(
    tmp_path: Path, binary: Path, text: Path
) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    db = tmp_path / "pair.duckdb"
    store = Store(db)
    try:
        a = ingest(store, binary, name="bin")
        b = ingest(store, text, name="txt")
    finally:
        store.close()
    return db, a, b


def assert_same_tables(db: Path, a: dict[str, Any], b: dict[str, Any]) -> None:
    """Every canonical and aux row, the per-process counts and the trace counts agree."""
    for key in ROW_COUNTS:
        assert a[key] == b[key], key
    con = duckdb.connect(str(db), read_only=True)
    try:
        ta, tb = a["trace_id"], b["trace_id"]
        for table, cols in (("events", EVENT_COLS), ("aux_events", AUX_COLS)):
            q = f"SELECT {cols} FROM {table} WHERE trace_id = {{}} EXCEPT ALL SELECT {cols} FROM {table} WHERE trace_id = {{}}"  # noqa: E501
            assert con.execute(q.format(ta, tb)).fetchall() == [], table
            assert con.execute(q.format(tb, ta)).fetchall() == [], table
        per_proc = (
            'SELECT comm, pid, op, count(*), sum(1::BIGINT << "order") FROM events '
            "WHERE trace_id = {} GROUP BY ALL ORDER BY ALL"
        )
        assert (
            con.execute(per_proc.format(ta)).fetchall()
            == con.execute(per_proc.format(tb)).fetchall()
        )
        n = con.execute(f"SELECT count(*) FROM events WHERE trace_id = {ta}").fetchone()
        assert n is not None and n[0] > 100
    finally:
        con.close()


def test_detects_recordings_by_magic(tmp_path: Path) -> None:
    assert detect(FIX / "kmem-v7-zstd.dat") == "tracedat"
    renamed = tmp_path / "capture.txt"  # the name says text: the magic decides
    shutil.copy(FIX / "kmem-v7-zstd.dat", renamed)
    assert detect(renamed) == "tracedat"
    assert detect(unzstd(FIX / "kmem-perf.data.zst", tmp_path / "p.data")) == "perfdata"
    assert detect(FIX / "kmem-perf-script.txt.zst") == "perfscript"
    assert detect(FIX / "kmem-report.txt.zst") == "ftrace"


@pytest.mark.parametrize("name", ["kmem-v7-zstd.dat", "kmem-v6.dat.zst"])
def test_tracedat_fixture_equals_trace_cmd_report(tmp_path: Path, name: str) -> None:
    path = FIX / name
    if name.endswith(".zst"):
        path = unzstd(path, tmp_path / name[:-4])
    db, a, b = ingest_pair(tmp_path, path, FIX / "kmem-report.txt.zst")
    assert a["lost_markers"] >= 1 and a["lost_events"] > 0  # the fixture overflowed its buffer
    assert a["format"].startswith(f"trace.dat v{7 if 'v7' in name else 6}")
    assert "hex pfn" in a["format"]
    assert_same_tables(db, a, b)


def test_perfdata_fixture_equals_perf_script(tmp_path: Path) -> None:
    path = unzstd(FIX / "kmem-perf.data.zst", tmp_path / "kmem.data")
    db, a, b = ingest_pair(tmp_path, path, FIX / "kmem-perf-script.txt.zst")
    assert a["kernel"] and a["format"].startswith("perf.data")
    assert b["format"].startswith("perf script")
    assert_same_tables(db, a, b)


# -- bad input ------------------------------------------------------------------


def _refused(cli: Any, db: Path, path: Path, *expect: str) -> str:
    res = cli("ingest", path, "--name", "bad", "--db", db, "--quiet")
    assert res.code == 65, res.err
    assert str(path) in res.err
    for e in expect:
        assert e in res.err, res.err
    if db.exists():
        store = Store(db)
        try:
            assert store.one("SELECT count(*) FROM traces WHERE name = 'bad'") == (0,)
        finally:
            store.close()
    return res.err


@pytest.fixture
def good_db(tmp_path: Path, cli: Any) -> Path:
    """A store that already holds a trace: bad ingests must leave it as it is."""
    db = tmp_path / "good.duckdb"
    assert cli("ingest", FIX / "kmem-report.txt.zst", "--name", "good", "--db", db, "-q").code == 0
    return db


def test_truncated_trace_dat(tmp_path: Path, cli: Any, good_db: Path) -> None:
    from replay.trace.tracedat import TraceDat

    td = TraceDat(FIX / "kmem-v7-zstd.dat")
    cpu_data = max(c.offset + c.size for b in td.buffers for c in b.cpus)
    td.close()
    data = (FIX / "kmem-v7-zstd.dat").read_bytes()
    for cut in (12, 40, len(data) // 2, cpu_data - 100):
        p = tmp_path / f"cut{cut}.dat"
        p.write_bytes(data[:cut])
        err = _refused(cli, good_db, p, "byte offset")
        assert "truncated" in err or "past the end" in err
    assert Store(good_db).one("SELECT count(*) FROM traces") == (1,)


def test_wrong_magic_and_unknown_version(tmp_path: Path, cli: Any, good_db: Path) -> None:
    data = (FIX / "kmem-v7-zstd.dat").read_bytes()
    bad = tmp_path / "magic.dat"
    bad.write_bytes(data[:3] + b"tracinX" + data[10:])
    _refused(cli, good_db, bad, "byte offset 0", "magic")
    ver = tmp_path / "v9.dat"
    ver.write_bytes(data[:10] + b"9" + data[11:])
    _refused(cli, good_db, ver, "byte offset 10", "unknown trace.dat file version 9")
    perf = unzstd(FIX / "kmem-perf.data.zst", tmp_path / "p.data").read_bytes()
    cut = tmp_path / "cut.data"
    cut.write_bytes(perf[: len(perf) // 2])
    _refused(cli, good_db, cut, "byte offset", "truncated")


def test_format_lacking_a_needed_field(tmp_path: Path, cli: Any, good_db: Path) -> None:
    raw = unzstd(FIX / "kmem-v6.dat.zst", tmp_path / "v6.dat").read_bytes()
    # v6 keeps the format files as plain text: rename mm_page_alloc's pfn field
    # (same length, so every offset stays)
    start = raw.index(b"name: mm_page_alloc\n")
    at = raw.index(b"field:unsigned long pfn;", start)
    fmt_end = raw.index(b"print fmt:", at)
    pf = raw.index(b"REC->pfn", fmt_end)
    bad = bytearray(raw)
    bad[at : at + 24] = b"field:unsigned long pfX;"
    end = raw.index(b"\n", pf)
    bad[fmt_end:end] = bad[fmt_end:end].replace(b"REC->pfn", b"REC->pfX").replace(b"pfn=", b"pfX=")
    p = tmp_path / "nopfn.dat"
    p.write_bytes(bytes(bad))
    _refused(cli, good_db, p, "mm_page_alloc", "'pfn'")


def test_corrupt_compressed_cpu_data(tmp_path: Path, cli: Any, good_db: Path) -> None:
    from replay.trace.tracedat import TraceDat

    src = FIX / "kmem-v7-zstd.dat"
    td = TraceDat(src)
    cpu = next(c for b in td.buffers for c in b.cpus)
    td.close()
    data = bytearray(src.read_bytes())
    chunk = cpu.offset + 4
    for k in range(chunk + 8 + 20, chunk + 8 + 60):
        data[k] ^= 0x5A
    p = tmp_path / "corrupt.dat"
    p.write_bytes(bytes(data))
    _refused(cli, good_db, p, f"CPU {cpu.cpu}", f"byte offset {chunk}", "corrupt zstd")


# -- live recordings ------------------------------------------------------------


def _live() -> bool:
    """Root with trace-cmd, and tracefs mounted (as `replay record` mounts it on a fresh
    machine, where nothing has yet)."""
    if os.geteuid() != 0 or shutil.which("trace-cmd") is None:
        return False
    try:
        ensure_tracefs(TRACEFS)
    except UsageError:
        return False
    return (TRACEFS / "instances").is_dir()


_LIVE = _live()


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(args, cwd=cwd, check=True, capture_output=True, timeout=120)


@pytest.mark.skipif(not _LIVE, reason="needs root, tracefs instances and trace-cmd")
def test_live_trace_dat_equals_report(tmp_path: Path) -> None:
    name = f"replay-test16-{os.getpid()}"
    inst = TRACEFS / "instances" / name
    inst.mkdir()
    try:
        (inst / "buffer_size_kb").write_text("1024")
        for ev in (
            "mm_page_alloc",
            "mm_page_free",
            "mm_page_free_batched",
            "mm_page_pcpu_drain",
            "mm_page_alloc_zone_locked",
        ):
            (inst / "events" / "kmem" / ev / "enable").write_text("1")
        (inst / "events" / "compaction" / "enable").write_text("1")
        (inst / "tracing_on").write_text("1")
        (inst / "trace_marker").write_text("snapshot before begin\n")
        _run(
            "sh",
            "-c",
            "cat /usr/lib/x86_64-linux-gnu/libc.so.6 > /dev/null; ls -R /usr/share/doc > /dev/null",
            cwd=tmp_path,
        )
        (inst / "tracing_on").write_text("0")
        _run("trace-cmd", "extract", "-B", name, "-o", "t.dat", cwd=tmp_path)
    finally:
        if inst.exists():
            for sub in ("events/kmem/enable", "events/compaction/enable"):
                try:
                    (inst / sub).write_text("0")
                except OSError:
                    pass
            inst.rmdir()
    out = subprocess.run(
        ["trace-cmd", "report", "-t", "t.dat"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=120,
    ).stdout
    prefix = f"{name}: ".encode()
    text = b"\n".join(ln[len(prefix) :] if ln.startswith(prefix) else ln for ln in out.split(b"\n"))
    (tmp_path / "t.txt").write_bytes(text)
    db, a, b = ingest_pair(tmp_path, tmp_path / "t.dat", tmp_path / "t.txt")
    assert_same_tables(db, a, b)
    con = duckdb.connect(str(db), read_only=True)
    marks = con.execute(
        "SELECT trace_id, text FROM aux_events WHERE event = 'print' ORDER BY ALL"
    ).fetchall()
    con.close()
    if a["lost_events"] == 0:  # the marker survives when nothing was overwritten
        assert {t for _, t in marks} == {"tracing_mark_write: snapshot before begin"}


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("perf") is None, reason="needs root and perf")
def test_live_perf_data_equals_perf_script(tmp_path: Path) -> None:
    _run(
        "perf",
        "record",
        "-q",
        "-a",
        "-e",
        "kmem:mm_page_alloc",
        "-e",
        "kmem:mm_page_free",
        "-e",
        "kmem:mm_page_free_batched",
        "-o",
        "p.data",
        "--",
        "sh",
        "-c",
        "cat /usr/lib/x86_64-linux-gnu/libc.so.6 > /dev/null; sleep 0.1",
        cwd=tmp_path,
    )
    out = subprocess.run(
        ["perf", "script", "-i", "p.data", "--ns", "--show-lost-events"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=120,
    ).stdout
    (tmp_path / "p.txt").write_bytes(out)
    db, a, b = ingest_pair(tmp_path, tmp_path / "p.data", tmp_path / "p.txt")
    assert_same_tables(db, a, b)


def test_coded_print_values_equal_per_record_ones() -> None:
    """gfp_flags names evaluated once per distinct mask equal the per-record evaluation."""
    from replay.trace.tpformat import FormatTable
    from replay.trace.tracedat import TraceDat

    td = TraceDat(FIX / "kmem-v7-zstd.dat")
    try:
        system, text = td.formats.text(653)  # mm_page_alloc
    finally:
        td.close()
    table = FormatTable()
    table.add(text, system, "fixture")
    pr = table[653].printer
    conv = pr.conversion("gfp_flags")
    assert conv is not None
    rng = np.random.default_rng(7)
    masks = rng.choice(np.array([0, 0x100CCA, 0x140CCA, 0x2800, 0x820, 1 << 40], np.int64), 500)
    cols = {"gfp_flags": masks, "pfn": np.arange(500, dtype=np.int64)}
    inv, labels = pr.coded(conv, cols.__getitem__, 500)
    want = pr.values(conv, cols.__getitem__, 500)
    assert [labels[i] for i in inv] == list(want)
    assert labels[int(inv[int(np.flatnonzero(masks == 0)[0])])] == "none"


def test_format_files_are_parsed_when_looked_up() -> None:
    from replay.errors import BadInputError
    from replay.trace.tpformat import FormatTable

    table = FormatTable()
    table.add("name: broken\nID: 77\nformat:\n\tfield:int x;\toffset:zz;\n", "kmem", "f77")
    assert 77 in table and len(table) == 1  # registered, not parsed
    with pytest.raises(BadInputError, match="bad field line"):
        table[77]
    with pytest.raises(BadInputError, match="no name or ID"):
        table.add("name: no_id\nformat:\n", "kmem", "f78")
