"""Call sites: kernel stacks of page allocations in ftrace text and in trace.dat.

The text is what a ``stacktrace`` trigger on kmem:mm_page_alloc prints on 6.18
(the stack right after its event, its first frame the event's own handler);
the trace.dat is written here with :func:`replay.trace.tracedat.write_v6`
from the shipped fixture's format files, with hand-made ring-buffer pages
holding the same records (mm_page_alloc, kernel_stack, a trace_marker print).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from conftest import run_cli

from replay.store import Store
from replay.trace.callsites import callsite_of, callsites_by_seq
from replay.trace.ftrace import FtraceParser, scan_chunks
from replay.trace.ingest import ingest
from replay.trace.tracedat import TraceDat, write_v6

FIX = Path(__file__).parent / "fixtures" / "binary" / "kmem-v7-zstd.dat"

ANON = (
    "trace_event_raw_event_mm_page_alloc", "__alloc_frozen_pages_noprof", "alloc_pages_mpol",
    "vma_alloc_folio_noprof", "do_anonymous_page", "__handle_mm_fault", "handle_mm_fault",
)  # fmt: skip
SLAB = (
    "trace_event_raw_event_mm_page_alloc", "__alloc_frozen_pages_noprof", "alloc_pages_mpol",
    "allocate_slab", "___slab_alloc", "kmem_cache_alloc_noprof",
)  # fmt: skip


def _line(comm: str, pid: int, cpu: int, ts: str, rest: str) -> str:
    return f"{comm:>16}-{pid:<7} [{cpu:03d}] ..... {ts}: {rest}\n"


def _alloc(pfn: int, order: int = 0) -> str:
    return (f"mm_page_alloc: page=0x{pfn:x} pfn=0x{pfn:x} order={order} migratetype=1 "
            "gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_ZERO")  # fmt: skip


def _stack(comm: str, pid: int, cpu: int, ts: str, frames: tuple[str, ...]) -> str:
    out = _line(comm, pid, cpu, ts, "<stack trace>")
    return out + "".join(f" => {f}+0x1a/0x40\n" for f in frames)


TEXT = (
    _line("python", 100, 0, "10.000001", _alloc(0x1000))
    # another CPU's event between an allocation and its stack
    + _line("kworker", 7, 1, "10.000002", _alloc(0x2000, 1))
    + _stack("python", 100, 0, "10.000003", ANON)
    + _stack("kworker", 7, 1, "10.000004", SLAB)
    + _line("python", 100, 0, "10.000005", "mm_page_free: page=0x1000 pfn=0x1000 order=0")
    + _line("python", 100, 0, "10.000006", _alloc(0x3000))
    + _stack("python", 100, 0, "10.000007", ANON)
)


def test_callsite_is_the_first_frame_outside_the_allocator() -> None:
    assert callsite_of(ANON) == "do_anonymous_page"
    assert callsite_of(tuple(f + "+0x1a/0x40" for f in SLAB)) == "allocate_slab"
    assert callsite_of(("__alloc_pages_noprof (ffffffff8163e0b7)", "pte_alloc_one")) == (
        "pte_alloc_one"
    )
    assert callsite_of(("alloc_pages_mpol",)) == "alloc_pages_mpol"  # nothing else: itself


def test_text_stacks_give_each_allocation_its_call_site(tmp_path: Path) -> None:
    path = tmp_path / "st.txt"
    path.write_text(TEXT)
    db = tmp_path / "t.duckdb"
    with Store(db) as store:
        row = ingest(store, path, name="st")
        got = store.con.execute(
            """SELECT e.pfn, c.callsite, c.stack FROM callsites c
               JOIN events e USING (trace_id, seq) ORDER BY e.pfn"""
        ).fetchall()
        seqs = [s for (s,) in store.con.execute("SELECT seq FROM events ORDER BY seq").fetchall()]
        assert callsites_by_seq(store, row["trace_id"], seqs) == {
            seqs[0]: "do_anonymous_page",
            seqs[1]: "allocate_slab",
            seqs[3]: "do_anonymous_page",
        }
    assert row["events"] == 4 and row["meta"]["stacks"] == 3
    assert [(pfn, site) for pfn, site, _ in got] == [
        (0x1000, "do_anonymous_page"), (0x2000, "allocate_slab"), (0x3000, "do_anonymous_page")
    ]  # fmt: skip
    assert got[0][2].splitlines()[0] == "trace_event_raw_event_mm_page_alloc+0x1a/0x40"

    res = run_cli("show", "st", "--by", "callsite", "--sort", "callsite", "--db", db, "-f", "json")
    assert res.code == 0, res.err
    table = json.loads(res.out)
    assert [r["callsite"] for r in table] == ["allocate_slab", "do_anonymous_page"]
    by_site = {r["callsite"]: r for r in table}
    assert by_site["do_anonymous_page"]["hit"] == 2
    assert by_site["allocate_slab"]["bytes"] == 2 * 4096 and by_site["allocate_slab"]["order"] == 1
    res = run_cli("query", "callsites", "--param", "trace=st", "--param", "sort=hit,callsite",
                  "--db", db, "-f", "json")  # fmt: skip
    assert [r["callsite"] for r in json.loads(res.out)] == ["do_anonymous_page", "allocate_slab"]
    bad = run_cli("query", "callsites", "--param", "trace=st", "--param", "sort=size", "--db", db)
    assert bad.code != 0 and "unknown key" in bad.err


def test_show_by_callsite_without_stacks_says_how_to_get_them(tmp_path: Path) -> None:
    path = tmp_path / "plain.txt"
    path.write_text(_line("python", 100, 0, "10.000001", _alloc(0x1000)))
    db = tmp_path / "t.duckdb"
    assert run_cli("ingest", path, "--db", db, "-q").code == 0
    res = run_cli("show", "plain", "--by", "callsite", "--db", db)
    assert res.code == 2 and "--stacks" in res.err


# -- trace.dat ---------------------------------------------------------------------
SYMS = {"trace_event_raw_event_mm_page_alloc": 0xFFFFFFFF81000000,
        "alloc_pages_mpol": 0xFFFFFFFF81001000, "do_anonymous_page": 0xFFFFFFFF81002000,
        "tracing_mark_write": 0xFFFFFFFF81003000}  # fmt: skip


def _record(payload: bytes, delta: int) -> bytes:
    payload += bytes(-len(payload) % 4)
    if len(payload) <= 28 * 4:
        return struct.pack("<I", (delta << 5) | (len(payload) // 4)) + payload
    return struct.pack("<II", delta << 5, len(payload) + 4) + payload


def _page(ts: int, records: list[bytes], page_size: int) -> bytes:
    data = b"".join(records)
    page = struct.pack("<QQ", ts, len(data)) + data
    return page + bytes(page_size - len(page))


def _tracedat(dst: Path) -> Path:
    """One CPU: an allocation, its kernel stack (after it), a marker."""
    src = TraceDat(FIX)
    try:
        formats = [src.formats.text(i) for i in (653, 4, 5)]
        header = src.header_text
    finally:
        src.close()
    pid = struct.pack("<HBBi", 653, 0, 0, 100)
    alloc = pid + struct.pack("<QI4xQi", 0x1000, 0, (1 << 3) | (1 << 8), 1)
    frames = [SYMS[n] + 0x10 for n in ("trace_event_raw_event_mm_page_alloc",
                                       "alloc_pages_mpol", "do_anonymous_page")]  # fmt: skip
    stack = struct.pack("<HBBii4x", 4, 0, 0, 100, len(frames)) + struct.pack("<3Q", *frames)
    mark = struct.pack("<HBBiQ", 5, 0, 0, 100, SYMS["tracing_mark_write"]) + b"snapshot x\n\0"
    kallsyms = "".join(f"{a:016x} T {n}\n" for n, a in SYMS.items())
    page = _page(10_000_000, [_record(alloc, 0), _record(stack, 5), _record(mark, 7)], 4096)
    write_v6(dst, header_page=header[0], header_event=header[1], formats=formats,
             cpu_pages=[iter([page])], page_size=4096, kallsyms=kallsyms)  # fmt: skip
    return dst


def test_tracedat_kernel_stacks_and_markers(tmp_path: Path) -> None:
    dat = _tracedat(tmp_path / "k.dat")
    cap = tmp_path / "cap"
    cap.mkdir()
    (cap / "trace.dat").write_bytes(dat.read_bytes())
    db = tmp_path / "t.duckdb"
    with Store(db) as store:
        a = ingest(store, dat, name="file")
        b = ingest(store, cap, name="capture")
    assert a["events"] == b["events"] == 1
    con = duckdb.connect(str(db), read_only=True)
    try:
        sites = con.execute(
            "SELECT t.name, c.callsite, c.stack FROM callsites c JOIN traces t USING (trace_id) "
            "ORDER BY 1"
        ).fetchall()
        marks = con.execute(
            "SELECT t.name, a.event, a.text FROM aux_events a JOIN traces t USING (trace_id) "
            "ORDER BY 1"
        ).fetchall()
    finally:
        con.close()
    stack = "trace_event_raw_event_mm_page_alloc\nalloc_pages_mpol\ndo_anonymous_page"
    assert sites == [("capture", "do_anonymous_page", stack), ("file", "do_anonymous_page", stack)]
    # a capture folder's markers read as trace_pipe prints them; a file's as trace-cmd report
    assert marks == [
        ("capture", "tracing_mark_write", "snapshot x"),
        ("file", "print", "tracing_mark_write: snapshot x"),
    ]


@pytest.mark.parametrize("n", [0, 1])
def test_write_v6_is_read_back(tmp_path: Path, n: int) -> None:
    """The writer's CPU table and page alignment: an empty CPU and one with a page."""
    src = TraceDat(FIX)
    try:
        fmt = [src.formats.text(653)]
        header = src.header_text
    finally:
        src.close()
    pages = [iter([_page(5, [], 4096)] * n), iter([])]
    write_v6(tmp_path / "w.dat", header_page=header[0], header_event=header[1], formats=fmt,
             cpu_pages=pages, page_size=4096)  # fmt: skip
    td = TraceDat(tmp_path / "w.dat")
    try:
        assert td.version == 6 and 653 in td.formats and 4 not in td.formats
        assert [(c.cpu, c.size) for c in td.buffers[0].cpus] == ([(0, 4096)] if n else [])
        assert sum(b.off.size for b in td.blocks()) == 0
    finally:
        td.close()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("perf") is None, reason="needs root and perf")
def test_live_perf_callchains(tmp_path: Path) -> None:
    """perf record -g: each sample's kernel callchain, from perf.data and from perf script."""
    subprocess.run(
        ["perf", "record", "-q", "-g", "-a", "-e", "kmem:mm_page_alloc", "-o", "g.data", "--",
         sys.executable, "-c", "b = b'x' * (20 << 20)"],
        cwd=tmp_path, check=False, capture_output=True, timeout=120,
    )  # fmt: skip
    text = subprocess.run(["perf", "script", "-i", "g.data", "--ns"], cwd=tmp_path, check=True,
                          capture_output=True, timeout=120).stdout  # fmt: skip
    (tmp_path / "g.txt").write_bytes(text)
    db = tmp_path / "t.duckdb"
    with Store(db) as store:
        a = ingest(store, tmp_path / "g.data", name="bin")
        b = ingest(store, tmp_path / "g.txt", name="txt")
        assert b["kind"] == "perfscript" and a["events"] == b["events"] > 0
        rows = store.con.execute(
            """SELECT t.name, count(c.seq), count(*),
                      count(*) FILTER (c.callsite = 'do_anonymous_page')
               FROM events e JOIN traces t USING (trace_id)
               LEFT JOIN callsites c USING (trace_id, seq) WHERE e.op = 'alloc' GROUP BY 1"""
        ).fetchall()
        differ = store.one(
            """SELECT count(*) FROM callsites x JOIN callsites y USING (seq)
               WHERE x.trace_id = $a AND y.trace_id = $b AND x.callsite <> y.callsite""",
            {"a": a["trace_id"], "b": b["trace_id"]},
        )
    got = {name: (with_site, allocs, anon) for name, with_site, allocs, anon in rows}
    with_site, allocs, anon = got["bin"]
    assert with_site == allocs and anon > allocs // 2, got  # 20 MB faulted in
    # perf script leaves out some samples' chains (a thread it has no maps for)
    assert got["txt"][0] >= 0.95 * allocs, got
    assert differ == (0,)


def test_explain_names_the_call_site(tmp_path: Path) -> None:
    """The ranked allocations of a run, each with its call site."""
    path = tmp_path / "st.txt"
    path.write_text(TEXT)
    db = tmp_path / "t.duckdb"
    assert run_cli("ingest", path, "--name", "st", "--db", db, "-q").code == 0
    res = run_cli("run", "st", "--model", "buddy", "--db", db, "-q")
    assert res.code == 0, res.err
    ranked = run_cli("explain", "1", "--db", db, "-f", "json")
    assert ranked.code == 0, ranked.err
    sites = {r["seq"]: r["callsite"] for r in json.loads(ranked.out)}
    assert sites == {0: "do_anonymous_page", 1: "allocate_slab", 3: "do_anonymous_page"}


def _report_stack(comm: str, pid: int, cpu: int, ts: str, frames: tuple[str, ...]) -> str:
    """As trace-cmd report prints a kernel_stack record."""
    out = _line(comm, pid, cpu, ts, "kernel_stack:         <stack trace >")
    return out + "".join(f"=> {f} (ffffffff8160{k:04x})\n" for k, f in enumerate(frames))


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_stacks_across_chunk_boundaries(tmp_path: Path, cut: int) -> None:
    """Chunks of ``cut`` lines: cut between an event line and its frames, inside frames."""
    text = "".join(
        _line("python", 100 + k % 2, k % 2, f"10.{k:06d}", _alloc(0x1000 + k))
        + (_report_stack if k % 3 else _stack)(
            "python", 100 + k % 2, k % 2, f"10.{k:06d}", ANON if k % 2 else SLAB
        )
        for k in range(12)
    )
    path = tmp_path / "r.txt"
    path.write_text(text)
    lines = text.encode().splitlines(keepends=True)
    got = {}
    for step in (len(lines), cut):
        parser = FtraceParser(path)
        chunks = [b"".join(lines[i : i + step]) for i in range(0, len(lines), step)]
        for _ in parser.scanned_batches(scan_chunks(iter(chunks))):
            pass
        rows, stacks = parser.stacks.tables()
        sites = stacks.column("callsite").to_pylist()
        got[step] = [
            (line, sites[k])
            for line, k in zip(
                rows.column("line").to_pylist(), rows.column("stack_id").to_pylist(), strict=True
            )
        ]
    assert len(got[len(lines)]) == 12
    assert [site for _, site in got[len(lines)]] == [
        "do_anonymous_page" if k % 2 else "allocate_slab" for k in range(12)
    ]
    assert got[cut] == got[len(lines)]
