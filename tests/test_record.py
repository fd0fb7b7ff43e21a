"""``replay record`` on the real kernel: no mocks of ftrace or /proc.

Every recording runs ``replay record`` in a child process (so that signals can
be sent to it and so that its signal handlers stay out of pytest). Skipped,
with the reason, when not root or when tracefs cannot be mounted.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import zstandard
from conftest import run_cli, tracefs_lock

from replay.store import Store
from replay.trace.record import (
    DEFAULT_EVENTS,
    DEFAULT_TRACEFS,
    ENV_TRACEFS,
    MARKERS,
    parse_events,
    resolve_events,
)
from replay.trace.recordings import open_parser
from replay.trace.snapshots import SNAPSHOT_KINDS

TRACEFS = DEFAULT_TRACEFS
# `replay record` whether or not replay/cli/main.py registers it yet.
RUNNER = """
import sys
from replay.cli import record as record_cmd
from replay.cli.main import app, main
if "record" not in {c.name or c.callback.__name__ for c in app.registered_commands}:
    app.command()(record_cmd.record)
sys.exit(main(sys.argv[1:]))
"""
# About 1 s of page allocator traffic: 3 x allocate, touch and free 100 MB.
WORKLOAD = [
    sys.executable,
    "-c",
    "import time\nfor _ in range(3):\n    b = b'x' * (100 << 20)\n    del b\n    time.sleep(0.2)",
]
#: the acceptance bound of the validate check, percent of the kernel's free pages
VALIDATE_TOLERANCE_PCT = 2.0


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "replay record needs root (ftrace and /proc/kpageflags)"
    if not (TRACEFS / "instances").is_dir():
        done = subprocess.run(
            ["mount", "-t", "tracefs", "nodev", str(TRACEFS)], capture_output=True, check=False
        )
        if done.returncode != 0 or not (TRACEFS / "instances").is_dir():
            return f"tracefs cannot be mounted at {TRACEFS}: {done.stderr.decode().strip()}"
    try:
        with open("/proc/kpageflags", "rb") as f:
            f.read(8)
    except OSError as exc:
        return f"/proc/kpageflags is not readable: {exc}"
    return None


_REASON = _unavailable()
needs_tracefs = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


def record_cmd(*args: str | Path) -> list[str]:
    return [sys.executable, "-c", RUNNER, "record", *(str(a) for a in args)]


def run_record(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        record_cmd(*args), capture_output=True, text=True, timeout=120, env=env, check=False
    )


def global_state() -> dict[str, Any]:
    """The global tracer's state that a recording must leave unchanged."""
    return {
        name: (TRACEFS / name).read_text()
        for name in ("tracing_on", "current_tracer", "set_event", "buffer_size_kb", "trace_clock")
    }


def replay_instances() -> set[str]:
    return {p.name for p in (TRACEFS / "instances").glob("replay-*")}


def assert_no_instance_left(pid: int) -> None:
    """None of ours; and none owned by a process that has gone (others may be recording)."""
    left = replay_instances()
    assert f"replay-{pid}" not in left
    for name in left:
        owner = int(name.removeprefix("replay-"))
        assert Path(f"/proc/{owner}").exists(), f"instance {name} outlived its process"


def children_of(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (from /proc/*/stat)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def folder_markers(folder: Path) -> list[str]:
    """The snapshot markers of a capture: from its trace.dat (raw, the default) or its text."""
    if not (folder / "trace.dat").exists():
        return marker_lines(trace_text(folder))
    parser = open_parser("capture", folder / "trace.dat")
    out: list[str] = []
    for _, aux in parser.batches():
        if aux is not None:
            for ev, text in zip(aux["event"].to_pylist(), aux["text"].to_pylist(), strict=True):
                if ev == "tracing_mark_write":
                    out.append(text)
    return out


def trace_text(folder: Path) -> str:
    plain = folder / "trace.txt"
    if plain.exists():
        return plain.read_text(errors="replace")
    data = (folder / "trace.txt.zst").read_bytes()
    return zstandard.ZstdDecompressor().decompressobj().decompress(data).decode(errors="replace")


def marker_lines(text: str) -> list[str]:
    return [
        ln.split("tracing_mark_write:", 1)[1].strip()
        for ln in text.splitlines()
        if "tracing_mark_write:" in ln
    ]


# --------------------------------------------------------------------------
# no kernel needed
# --------------------------------------------------------------------------
def test_parse_events() -> None:
    assert parse_events(None) == list(DEFAULT_EVENTS)
    assert parse_events("kmem:mm_page_alloc, compaction,,") == ["kmem:mm_page_alloc", "compaction"]
    assert parse_events("default,vmscan")[-1] == "vmscan"
    for bad in ("kmem:../x", "a:b:c", " , "):
        with pytest.raises(Exception, match="--events"):
            parse_events(bad)


def test_missing_tracefs_is_a_usage_error(tmp_path: Path) -> None:
    """$REPLAY_TRACEFS at a path that does not exist (so cannot be mounted): exit 2."""
    if os.geteuid() != 0:
        pytest.skip("as non-root the root check answers first")
    missing = tmp_path / "no" / "tracefs"
    env = {**os.environ, ENV_TRACEFS: str(missing)}
    res = run_record("--out", tmp_path / "cap", "--db", tmp_path / "t.duckdb", "-q", env=env)
    assert res.returncode == 2, res.stderr
    assert "tracefs is not available" in res.stderr and str(missing) in res.stderr
    assert not missing.exists() and not (tmp_path / "cap").exists()


# --------------------------------------------------------------------------
# the real kernel
# --------------------------------------------------------------------------
@needs_tracefs
def test_resolve_events_against_the_kernel() -> None:
    present, skipped = resolve_events(
        TRACEFS / "events", ["kmem:mm_page_alloc", "compaction", "kmem:no_such", "nosuchsys"]
    )
    assert present[0] == "kmem:mm_page_alloc"
    assert "compaction:mm_compaction_begin" in present
    assert set(skipped) == {"kmem:no_such", "nosuchsys"}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One real recording of WORKLOAD, ingested as 'rec' (shared by the tests below)."""
    if _REASON is not None:
        pytest.skip(_REASON)
    tmp = tmp_path_factory.mktemp("record")
    with tracefs_lock():  # a module fixture: set up before the tests' own lock is taken
        before = global_state()
        proc = subprocess.Popen(
            record_cmd("--name", "rec", "--out", tmp / "cap", "--db", tmp / "r.duckdb", "-q",
                       "--stacks", "--format", "json", "--", *WORKLOAD),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        out, err = proc.communicate(timeout=120)
        after = global_state()
    return {
        "code": proc.returncode,
        "out": out,
        "err": err,
        "pid": proc.pid,
        "folder": tmp / "cap",
        "db": tmp / "r.duckdb",
        "before": before,
        "after": after,
    }


@needs_tracefs
def test_record_exit_and_summary(recorded: dict[str, Any]) -> None:
    assert recorded["code"] == 0, recorded["err"]
    summary = json.loads(recorded["out"])["recorded"]
    assert summary["name"] == "rec" and summary["workload_exit"] == 0
    assert summary["events"] > 0 and summary["lines"] > summary["events"] // 2
    assert summary["drained"] is True
    assert summary["lost_events"] == 0 and summary["lost_events_kernel"] == 0, summary
    assert summary["out_dir"] == str(recorded["folder"].resolve())
    # stdout is the JSON only: the workload's own output went to stderr
    assert recorded["out"].lstrip().startswith("{")


@needs_tracefs
def test_stacks_give_the_allocations_their_call_sites(recorded: dict[str, Any]) -> None:
    """--stacks: each allocation's kernel stack (trace_pipe_raw's kernel_stack records)."""
    assert json.loads(recorded["out"])["recorded"]["stacks_armed"] == ["kmem:mm_page_alloc"]
    with Store(recorded["db"], read_only=True) as store:
        allocs, with_site, anon = store.one(
            """SELECT count(*), count(c.seq), count(*) FILTER (c.callsite = 'do_anonymous_page')
               FROM events e LEFT JOIN callsites c USING (trace_id, seq)
               WHERE e.trace_id = $t AND e.op = 'alloc'""",
            {"t": store.trace_id("rec")},
        )
    # measured on 6.18: 314,408 of 314,411; the workload's pages fault in anonymously
    assert with_site >= 0.99 * allocs and anon > 0.5 * allocs, (allocs, with_site, anon)


@needs_tracefs
def test_capture_folder_has_every_file(recorded: dict[str, Any]) -> None:
    folder: Path = recorded["folder"]
    for when in ("before", "after"):
        for kind in SNAPSHOT_KINDS:
            name = f"{when}.{kind}" + (".zst" if kind == "kpageflags" else "")
            assert (folder / name).stat().st_size > 0, name
    assert (folder / "kernel").read_text().strip() == os.uname().release
    assert "python" in (folder / "command").read_text()
    # The kpageflags copy is whole: 8 bytes per pfn, as many as /proc/kpageflags has.
    raw = (
        zstandard.ZstdDecompressor()
        .decompressobj()
        .decompress((folder / "before.kpageflags.zst").read_bytes())
    )
    assert len(raw) % 8 == 0 and len(raw) // 8 > 1000
    meta = json.loads((folder / "record.json").read_text())
    assert "kmem:mm_page_alloc" in meta["events_enabled"]


@needs_tracefs
def test_trace_has_the_four_markers_in_order(recorded: dict[str, Any]) -> None:
    assert (recorded["folder"] / "trace.dat").stat().st_size > 0
    assert not (recorded["folder"] / "trace.txt").exists()
    assert folder_markers(recorded["folder"]) == list(MARKERS)


@needs_tracefs
def test_stored_trace_has_events_and_snapshots(recorded: dict[str, Any]) -> None:
    with Store(recorded["db"], read_only=True) as store:
        row = store.trace_row("rec")
        assert row["events"] > 0 and row["kernel"] == os.uname().release
        for table in ("snap_buddyinfo", "snap_kpageflags", "snap_zoneinfo", "snap_pagetypeinfo"):
            counts = dict(
                store.con.execute(
                    f"SELECT snapshot, count(*) FROM {table} WHERE trace_id = ? GROUP BY 1",
                    [row["trace_id"]],
                ).fetchall()
            )
            assert counts.get("before", 0) > 0 and counts.get("after", 0) > 0, (table, counts)


@needs_tracefs
def test_validate_matches_the_kernel(recorded: dict[str, Any]) -> None:
    """The rebuilt free pages of the busiest zone against the after-snapshot's buddyinfo."""
    res = run_cli("validate", "rec", "--db", recorded["db"], "--format", "json")
    assert res.code == 0, res.err
    result = res.json()
    with Store(recorded["db"], read_only=True) as store:
        busiest = store.one(
            """SELECT z.node, z.zone, count(*) AS n FROM events e JOIN snap_zoneinfo z
                 ON z.trace_id = e.trace_id AND z.snapshot = 'before'
                AND e.pfn >= z.start_pfn AND e.pfn < z.start_pfn + z.spanned
               WHERE e.trace_id = $t GROUP BY 1, 2 ORDER BY n DESC LIMIT 1""",
            {"t": store.trace_id("rec")},
        )
    assert busiest is not None
    zone = next(z for z in result["zones"] if (z["node"], z["zone"]) == busiest[:2])
    kernel, rebuilt = zone["free_pages_kernel"], zone["free_pages_rebuilt"]
    diff_pct = 100.0 * abs(rebuilt - kernel) / max(kernel, 1)
    print(f"validate {busiest[1]}: kernel {kernel} rebuilt {rebuilt} pages ({diff_pct:.3f}%), "
          f"{result['events_applied']} events, {result['inconsistencies']}")  # fmt: skip
    # ACCEPTANCE (from the brief): within 2% of the kernel's free pages. Measured
    # on the 6.18.44 test machine: 0.000% (exact) on every zone. Do not loosen.
    assert diff_pct <= VALIDATE_TOLERANCE_PCT, (busiest, kernel, rebuilt, diff_pct)


@needs_tracefs
def test_recording_leaves_tracing_as_it_was(recorded: dict[str, Any]) -> None:
    assert recorded["after"] == recorded["before"]
    assert_no_instance_left(recorded["pid"])


@needs_tracefs
def test_taken_name_is_refused_before_recording(recorded: dict[str, Any], tmp_path: Path) -> None:
    res = run_record("--name", "rec", "--out", tmp_path / "cap", "--db", recorded["db"], "-q")
    assert res.returncode == 2 and "--replace" in res.stderr
    assert not (tmp_path / "cap").exists()


@needs_tracefs
def test_no_existing_event_is_an_error_and_cleans_up(tmp_path: Path) -> None:
    """The error comes after the instance was created: it must still be removed.

    An instance left by a process that has gone (as after a SIGKILL) is removed too.
    """
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = TRACEFS / "instances" / f"replay-{gone.pid}"
    stale.mkdir()
    before = global_state()
    proc = subprocess.Popen(
        record_cmd("--events", "nosuchsys,kmem:nosuch", "--out", tmp_path / "cap",
                   "--db", tmp_path / "t.duckdb", "-q"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert "none of the requested events exist" in err and "kmem:nosuch" in err
    if stale.exists():  # only if the test failed: do not leave it behind ourselves
        stale.rmdir()
        pytest.fail("the stale instance was not removed")
    assert global_state() == before
    assert_no_instance_left(proc.pid)


@needs_tracefs
def test_failing_workload_still_gives_a_capture(tmp_path: Path) -> None:
    before = global_state()
    proc = subprocess.Popen(
        record_cmd("--name", "fail", "--out", tmp_path / "cap", "--db", tmp_path / "t.duckdb",
                   "-q", "--format", "json", "--", sys.executable, "-c", "raise SystemExit(3)"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "exited with status 3" in err
    assert json.loads(out)["recorded"]["workload_exit"] == 3
    assert (tmp_path / "cap" / "after.kpageflags.zst").exists()
    assert folder_markers(tmp_path / "cap") == list(MARKERS)
    assert global_state() == before
    assert_no_instance_left(proc.pid)


@needs_tracefs
def test_duration_stops_a_long_command(tmp_path: Path) -> None:
    """With a command, --duration is a time limit on the whole workload (a shell's
    children stop with it); --text --compress gives trace.txt.zst."""
    t0 = time.monotonic()
    # a marker no other process has: the shell's background child must not outlive it
    marker = f"{300 + os.getpid() % 1000}.{os.getpid()}"
    res = run_record("--name", "limit", "--duration", "0.5", "--text", "--compress", "--out",
                     tmp_path / "cap", "--db", tmp_path / "t.duckdb", "-q", "--format", "json",
                     "--", "sh", "-c", f"sleep {marker} & sleep {marker}; wait")  # fmt: skip
    assert res.returncode == 0, res.stderr
    left = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True)
    assert left.stdout.strip() == "", "the workload's children were left running"
    # far below the workload's 300 s, with room for a loaded machine's ingest
    assert time.monotonic() - t0 < 120
    summary = json.loads(res.stdout)["recorded"]
    assert summary["timed_out"] is True and summary["workload_exit"] == -signal.SIGTERM
    assert not (tmp_path / "cap" / "trace.txt").exists()
    assert marker_lines(trace_text(tmp_path / "cap")) == list(MARKERS)


@needs_tracefs
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_recording_cleans_up(tmp_path: Path, sig: signal.Signals) -> None:
    """A signal while the workload runs: instance removed, workload stopped, nothing ingested."""
    before = global_state()
    db = tmp_path / "t.duckdb"
    folder = tmp_path / "cap"
    proc = subprocess.Popen(
        record_cmd("--out", folder, "--db", db, "-q", "--", "sleep", "30"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    instance = TRACEFS / "instances" / f"replay-{proc.pid}"
    deadline = time.monotonic() + 60
    child: int | None = None
    while child is None and time.monotonic() < deadline and proc.poll() is None:
        pids = children_of(proc.pid)
        child = pids[0] if pids else None
        time.sleep(0.05)
    assert child is not None, "the workload never started"
    assert instance.is_dir()  # recording is under way
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert not instance.exists()
    assert global_state() == before
    assert_no_instance_left(proc.pid)
    assert not Path(f"/proc/{child}").exists(), "the workload was left running"
    assert (folder / "before.buddyinfo").exists() and not (folder / "after.buddyinfo").exists()
    if db.exists():
        with Store(db, read_only=True) as store:
            assert store.one("SELECT count(*) FROM traces") == (0,)


@needs_tracefs
def test_page_cache_capture_has_regions_exchange_works_on(tmp_path: Path) -> None:
    """replay record enables the page-cache events; a capture of dd writing a file gives
    the file's folios a region (the file) and vpn (their index), and exchange pages on
    it has something to exchange (issue 19 item 16)."""
    db = tmp_path / "pc.duckdb"
    # a dd of its own name: other processes (another dd too) write files meanwhile
    writer = tmp_path / "ddpc"
    shutil.copy(shutil.which("dd") or "/bin/dd", writer)
    done = run_record("--name", "pc", "--out", tmp_path / "cap", "--db", db, "-q",
                      "--format", "json", "--", writer, "if=/dev/zero",
                      f"of={tmp_path / 'file'}", "bs=1M", "count=24")  # fmt: skip
    assert done.returncode == 0, done.stderr
    meta = json.loads((tmp_path / "cap" / "record.json").read_text())
    assert "filemap:mm_filemap_add_to_page_cache" in meta["events_enabled"]
    with Store(db) as s:
        n, regions, pages = s.one(
            """SELECT count(*), count(DISTINCT region), sum(1::BIGINT << "order")
               FROM events WHERE op = 'alloc' AND region IS NOT NULL"""
        )
        # dd's 24 MiB file: about 6,144 pages in one region (and other files' pages)
        assert regions >= 1 and pages >= 5000, (n, regions, pages)
        top = s.one(
            """SELECT sum(1::BIGINT << "order"), max(vpn + (1::BIGINT << "order")) - min(vpn)
               FROM events WHERE op = 'alloc' AND region = (
                 SELECT region FROM events WHERE region IS NOT NULL AND comm = 'ddpc'
                 GROUP BY region ORDER BY sum(1::BIGINT << "order") DESC LIMIT 1)"""
        )
        # its file: its pages, their indices within the file's 6,144 pages
        assert top[0] >= 5000 and top[1] <= 6144, top
    r = run_cli("run", "pc", "-m", "mobility+exchange", "--zone-pages", "262144", "--db", db,
                "-q", "-f", "json")  # fmt: skip
    assert r.code == 0, r.err
    # exchange pages moved the regions' pages towards their targets: into free pages
    # (migrated) or by swapping with the unit already there (exchanged), as the zone
    # around the targets happens to be at the end; the dd file's pages at their targets
    # are never fewer after the pass (a unit is only ever moved onto its own target)
    res = r.json()
    assert "warning" not in r.err and res["exchanged"] + res["migrated"] > 0, res
    with Store(db) as s:
        rows = s.query(
            """SELECT c.phase, c.pages, c.in_place FROM contiguity c
               WHERE c.run_id = $r AND c.region = (
                 SELECT region FROM events WHERE region IS NOT NULL AND comm = 'ddpc'
                 GROUP BY region ORDER BY sum(1::BIGINT << "order") DESC LIMIT 1)""",
            {"r": res["run_id"]},
        ).to_pylist()
    got = {q["phase"]: q for q in rows}
    before, after = got["before_exchange"], got["after_exchange"]
    assert before["pages"] == after["pages"] >= 5000, rows
    assert after["in_place"] >= before["in_place"], rows
