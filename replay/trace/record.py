"""Record a capture folder on this machine: ftrace page events plus /proc snapshots.

The folder has the layout :func:`replay.trace.ingest.ingest` reads (and that
``traces/compact-6.18`` was recorded in): ``trace.dat`` (each CPU's ring-buffer
pages as ``per_cpu/cpuN/trace_pipe_raw`` gave them, in trace-cmd's v6 file;
with ``raw=False`` ``trace.txt``, the text of ``trace_pipe``), ``before.*`` and
``after.*`` copies of
``/proc/buddyinfo``, ``pagetypeinfo``, ``zoneinfo``, ``vmstat``, ``meminfo``
and ``kpageflags`` (zstd-compressed, ``*.kpageflags.zst``), and the ``kernel``
(``uname -r``) and ``command`` (the workload) files; ``record.json`` adds what
the recording itself saw (events enabled and skipped, the kernel's lost-event
counts, timings).

The order of operations is what :mod:`replay.engine.observed` relies on:

1. tracing on in a dedicated ftrace instance (``instances/replay-<pid>``,
   so the global tracer and any other instance are untouched), a reader
   thread per CPU copying its ``trace_pipe_raw`` pages (or one streaming
   ``trace_pipe`` into ``trace.txt``);
2. marker ``snapshot before begin``; the before snapshots, in the order
   buddyinfo, pagetypeinfo, zoneinfo, vmstat, meminfo, kpageflags; marker
   ``snapshot before end``;
3. the workload (a command, or a sleep);
4. marker ``snapshot after begin``; the after snapshots in the same order
   (buddyinfo first: the observed replay compares its state at this marker
   with the after buddyinfo); marker ``snapshot after end``;
5. tracing off; the readers drain until the instance's per-CPU buffers
   hold no entries; the per-CPU ``overrun`` and ``dropped events`` counts are
   summed as the lost events; the pages, the events' format files,
   ``saved_cmdlines`` and the kernel's text symbols become ``trace.dat``.

tracefs is mounted (``mount -t tracefs nodev``) when it is not, and left
mounted. Whatever happens (an error, Ctrl-C, SIGTERM or SIGHUP), the instance's events
are disabled and the instance directory is removed before returning; signals
are held off while that runs. Instances ``replay-<pid>`` left behind by a
process that no longer exists (killed with SIGKILL) are removed on the next
recording.

Units: durations in seconds (``_s``), buffer sizes in KiB per CPU
(``_kb``), sizes of files in bytes, kpageflags as 8 bytes per pfn.
Core code: nothing prints, progress goes through the ``status`` callback.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import select
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import zstandard

from replay.errors import ReplayError, UsageError
from replay.trace.snapshots import SNAPSHOT_KINDS

#: environment variable naming the tracefs mount point (default below).
ENV_TRACEFS = "REPLAY_TRACEFS"
DEFAULT_TRACEFS = Path("/sys/kernel/tracing")
PROC = Path("/proc")
INSTANCE_PREFIX = "replay-"

#: per-CPU ring buffer size asked for, KiB: room for a burst of reclaim and
#: compaction events (about 8 per migrated page) while the reader catches up.
DEFAULT_BUFFER_KB = 131072
#: the ring buffers may take at most this fraction of MemAvailable.
MAX_BUFFER_FRACTION = 8
#: workload length when no command is given, seconds.
DEFAULT_DURATION_S = 5.0
#: how long a timed-out workload gets between SIGTERM and SIGKILL, seconds.
KILL_GRACE_S = 3.0
#: the reader calls the buffers drained after this long without data, seconds.
DRAIN_IDLE_S = 0.2
#: give up draining (and say so) after this long, seconds.
DRAIN_TIMEOUT_S = 60.0
#: bytes per read of /proc/kpageflags (a multiple of 8: one uint64 per pfn).
KPAGEFLAGS_CHUNK = 8 << 20

MARKERS = (
    "snapshot before begin",
    "snapshot before end",
    "snapshot after begin",
    "snapshot after end",
)

#: The default event set: every event that moves pages between the free
#: lists, the pcp lists and their users at pfn level (kmem), compaction's
#: free-page isolation and scanners (compaction), migration with each mapped
#: page's new pfn (migrate: remove_migration_pte), reclaim's wake-ups and
#: direct reclaim (vmscan), and watermark changes (kmem:mm_setup_per_zone_*).
#: A bare subsystem means every event it has.
DEFAULT_EVENTS: tuple[str, ...] = (
    "kmem:mm_page_alloc",
    "kmem:mm_page_free",
    "kmem:mm_page_free_batched",
    "kmem:mm_page_alloc_zone_locked",
    "kmem:mm_page_pcpu_drain",
    "kmem:mm_page_alloc_extfrag",
    "kmem:mm_setup_per_zone_wmarks",
    "kmem:mm_setup_per_zone_lowmem_reserve",
    "kmem:mm_calculate_totalreserve_pages",
    "compaction",
    "migrate",
    "vmscan:mm_vmscan_kswapd_wake",
    "vmscan:mm_vmscan_kswapd_sleep",
    "vmscan:mm_vmscan_wakeup_kswapd",
    "vmscan:mm_vmscan_direct_reclaim_begin",
    "vmscan:mm_vmscan_direct_reclaim_end",
    "filemap:mm_filemap_add_to_page_cache",
    "filemap:mm_filemap_delete_from_page_cache",
)

#: The vm sysctls a model of this kernel needs, saved as ``<when>.sysctl``
#: (``name = value`` lines, as ``sysctl`` prints them; absent ones left out).
SYSCTLS: tuple[str, ...] = (
    "vm.min_free_kbytes",
    "vm.watermark_scale_factor",
    "vm.watermark_boost_factor",
    "vm.compaction_proactiveness",
    "vm.extfrag_threshold",
    "vm.percpu_pagelist_high_fraction",
    "vm.lowmem_reserve_ratio",
    "vm.compact_unevictable_allowed",
    "vm.zone_reclaim_mode",
)

_EVENT_TOKEN_RE = re.compile(r"^[A-Za-z0-9_]+(?::[A-Za-z0-9_]+)?$")
_HELD_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


@dataclass
class RecordResult:
    """What one recording produced (sizes in bytes, times in seconds)."""

    out_dir: str
    trace_file: str
    trace_bytes: int
    kernel: str
    workload: str
    workload_exit: int | None  # the command's exit status (negative: killed by that signal)
    timed_out: bool  # the command was stopped at --duration
    workload_s: float
    before_snapshot_s: float
    after_snapshot_s: float
    buffer_kb_per_cpu: int
    events_enabled: list[str]
    events_skipped: dict[str, str]  # requested event -> why it was not enabled
    lost_events_kernel: int  # sum of the per-CPU overrun + dropped events counts
    lost_by_cpu: dict[str, dict[str, int]]
    drained: bool  # trace_pipe was read until the buffers were empty
    snapshot_files: list[str]
    kpageflags_pages: int  # pfns in each kpageflags copy (the before one)
    tracefs: str
    mounted_tracefs: bool
    stale_instances_removed: list[str] = field(default_factory=list)
    stacks_armed: list[str] = field(default_factory=list)  # events with a stacktrace trigger

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------
def tracefs_root() -> Path:
    """The tracefs mount point: ``$REPLAY_TRACEFS`` or ``/sys/kernel/tracing``."""
    return Path(os.environ.get(ENV_TRACEFS) or DEFAULT_TRACEFS)


def _is_tracefs(root: Path) -> bool:
    return (root / "instances").is_dir() and (root / "trace_marker").exists()


def check_root() -> None:
    """Recording needs root: ftrace control files and /proc/kpageflags are root-only."""
    if os.geteuid() != 0:
        raise UsageError(
            "replay record needs root (effective uid 0): the ftrace control files and "
            "/proc/kpageflags are root-only; run it with sudo"
        )


def ensure_tracefs(root: Path) -> bool:
    """Make sure tracefs is mounted at ``root``; returns True if this call mounted it.

    Runs ``mount -t tracefs nodev ROOT`` when it is not mounted; raises a
    :class:`UsageError` naming what is missing when that fails.
    """
    if _is_tracefs(root):
        return False
    why: str
    try:
        proc = subprocess.run(
            ["mount", "-t", "tracefs", "nodev", str(root)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        why = (proc.stderr or proc.stdout).strip() or f"mount exited with status {proc.returncode}"
    except FileNotFoundError:
        why = "the mount command is not installed"
    except subprocess.TimeoutExpired:
        why = "mount did not finish within 30 s"
    if _is_tracefs(root):
        return True
    raise UsageError(
        f"tracefs is not available at {root}: it is not mounted and "
        f"'mount -t tracefs nodev {root}' failed ({why}). Recording needs a kernel with "
        f"ftrace (CONFIG_FTRACE, tracefs) and tracefs mounted; mount it, or set "
        f"{ENV_TRACEFS} to its mount point"
    )


def check_kpageflags(proc: Path = PROC) -> None:
    """``/proc/kpageflags`` must be readable (root, CONFIG_PROC_PAGE_MONITOR)."""
    path = proc / "kpageflags"
    try:
        with open(path, "rb", buffering=0) as f:
            if len(f.read(8)) != 8:
                raise OSError("it is empty")
    except OSError as exc:
        raise UsageError(
            f"{path} is not readable ({exc.strerror or exc}): the snapshots need it "
            "(root and a kernel with CONFIG_PROC_PAGE_MONITOR)"
        ) from exc


def check_command(command: Sequence[str]) -> None:
    """The workload command's program must exist (checked before tracing starts)."""
    prog = command[0]
    if os.sep in prog:
        if not (os.path.isfile(prog) and os.access(prog, os.X_OK)):
            raise UsageError(f"workload command {prog!r}: no such executable file")
    elif shutil.which(prog) is None:
        raise UsageError(f"workload command {prog!r}: not found in PATH")


# --------------------------------------------------------------------------
# events
# --------------------------------------------------------------------------
def parse_events(text: str | None) -> list[str]:
    """The ``--events`` value: comma-separated ``subsystem:event`` or ``subsystem``.

    ``None`` (or the token ``default``) is :data:`DEFAULT_EVENTS`; ``default``
    can be combined with more tokens (``default,vmscan``).
    """
    if text is None:
        return list(DEFAULT_EVENTS)
    out: list[str] = []
    for raw in text.split(","):
        token = raw.strip()
        if not token:
            continue
        if token == "default":
            out.extend(DEFAULT_EVENTS)
        elif _EVENT_TOKEN_RE.match(token):
            out.append(token)
        else:
            raise UsageError(
                f"--events: {token!r} is not 'subsystem:event' or 'subsystem' "
                "(letters, digits and '_')"
            )
    if not out:
        raise UsageError("--events: no events given")
    return list(dict.fromkeys(out))


def resolve_events(events_dir: Path, wanted: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """The ``subsystem:event`` names of ``wanted`` that exist under ``events_dir``.

    Returns ``(present, skipped)``: present names in request order, without
    duplicates; ``skipped`` maps each request that matched nothing to why.
    """
    present: list[str] = []
    skipped: dict[str, str] = {}
    for token in wanted:
        sub, _, ev = token.partition(":")
        sub_dir = events_dir / sub
        if not sub_dir.is_dir():
            skipped[token] = f"no event subsystem {sub!r} in this kernel"
            continue
        if ev:
            if (sub_dir / ev / "enable").is_file():
                present.append(f"{sub}:{ev}")
            else:
                skipped[token] = f"no event {ev!r} in subsystem {sub!r}"
            continue
        names = sorted(p.name for p in sub_dir.iterdir() if (p / "enable").is_file())
        if not names:
            skipped[token] = f"subsystem {sub!r} has no events"
        present.extend(f"{sub}:{n}" for n in names)
    return list(dict.fromkeys(present)), skipped


# --------------------------------------------------------------------------
# the ftrace instance
# --------------------------------------------------------------------------
def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _first_int(text: str) -> int | None:
    m = re.search(r"\d+", text)
    return int(m.group()) if m else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FtraceInstance:
    """A dedicated ftrace instance, ``<tracefs>/instances/<name>``.

    ``remove()`` disables its events, turns it off and removes the directory;
    it is safe to call more than once and raises :class:`ReplayError` only if
    the directory cannot be removed.
    """

    def __init__(self, tracefs: Path, name: str) -> None:
        self.tracefs = tracefs
        self.path = tracefs / "instances" / name
        self.enabled: list[str] = []
        #: events with a stacktrace trigger (arm_stacks)
        self.stacks: list[str] = []
        self.created = False

    def create(self) -> None:
        try:
            os.mkdir(self.path)
        except FileExistsError:
            # Ours (the name carries our pid) and left over: start afresh.
            remove_instance(self.path)
            os.mkdir(self.path)
        except OSError as exc:
            raise ReplayError(
                f"cannot create the ftrace instance {self.path}: {exc.strerror or exc}"
            ) from exc
        self.created = True
        _write(self.path / "tracing_on", "0")

    def set_buffer_kb(self, kb: int) -> int:
        """Ask for ``kb`` KiB of ring buffer per CPU; returns what the kernel reports."""
        try:
            _write(self.path / "buffer_size_kb", str(kb))
        except OSError as exc:
            raise ReplayError(
                f"cannot allocate {kb} KiB of trace buffer per CPU ({exc.strerror or exc}); "
                "try a smaller --buffer-kb"
            ) from exc
        got = _first_int((self.path / "buffer_size_kb").read_text())
        return got if got is not None else kb

    def enable(self, events: Sequence[str]) -> dict[str, str]:
        """Enable each ``subsystem:event``; returns those the kernel refused, with why."""
        refused: dict[str, str] = {}
        for name in events:
            sub, _, ev = name.partition(":")
            try:
                _write(self.path / "events" / sub / ev / "enable", "1")
            except OSError as exc:
                refused[name] = f"enabling failed: {exc.strerror or exc}"
                continue
            self.enabled.append(name)
        return refused

    def arm_stacks(self, events: Sequence[str]) -> list[str]:
        """A ``stacktrace`` trigger on each enabled event of ``events``; returns those armed.

        The kernel then records the task's kernel stack before each of their
        records (an ftrace ``kernel_stack`` record; ``<stack trace>`` and
        `` => func`` lines in the text), the input of the callsites table.
        """
        armed: list[str] = []
        for name in events:
            if name not in self.enabled:
                continue
            sub, _, ev = name.partition(":")
            try:
                _write(self.path / "events" / sub / ev / "trigger", "stacktrace")
            except OSError:
                continue
            armed.append(name)
        self.stacks = armed
        return armed

    def tracing(self, on: bool) -> None:
        _write(self.path / "tracing_on", "1" if on else "0")

    def cpu_stats(self) -> dict[str, dict[str, int]]:
        """``per_cpu/cpuN/stats`` as ``{"cpuN": {"entries": n, "overrun": n, ...}}``."""
        out: dict[str, dict[str, int]] = {}
        per_cpu = self.path / "per_cpu"
        for cpu in sorted(per_cpu.glob("cpu*"), key=lambda p: int(p.name[3:] or 0)):
            stats: dict[str, int] = {}
            try:
                text = (cpu / "stats").read_text()
            except OSError:
                continue
            for line in text.splitlines():
                key, sep, value = line.partition(":")
                if sep and re.fullmatch(r"\s*\d+\s*", value):
                    stats[key.strip()] = int(value)
            out[cpu.name] = stats
        return out

    def cpu_entries(self, cpu: int) -> int:
        """Events still in one CPU's ring buffer (``per_cpu/cpuN/stats`` entries)."""
        try:
            text = (self.path / "per_cpu" / f"cpu{cpu}" / "stats").read_text()
        except OSError:
            return 0
        m = re.search(r"^entries:\s*(\d+)", text, re.M)
        return int(m.group(1)) if m else 0

    def buffered_entries(self) -> int:
        """Events still in the ring buffers (not yet read from trace_pipe)."""
        return sum(s.get("entries", 0) for s in self.cpu_stats().values())

    def remove(self) -> None:
        if self.created:
            remove_instance(self.path, self.enabled)
            self.created = False


def remove_instance(path: Path, enabled: Sequence[str] = ()) -> None:
    """Turn an instance off, disable its events and remove it (retrying while busy)."""
    if not path.is_dir():
        return
    for rel in ("tracing_on", "events/enable"):
        with contextlib.suppress(OSError):
            _write(path / rel, "0")
    for name in enabled:
        sub, _, ev = name.partition(":")
        with contextlib.suppress(OSError):
            _write(path / "events" / sub / ev / "enable", "0")
        with contextlib.suppress(OSError):
            _write(path / "events" / sub / ev / "trigger", "!stacktrace")
    # busy while a reader's descriptor is still open: on a loaded machine (a test suite's
    # two workers) 5 s was once too short, and the instance outlived its process
    deadline = time.monotonic() + 20.0
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise ReplayError(
                    f"cannot remove the ftrace instance {path} ({exc.strerror or exc}); "
                    f"remove it with: rmdir {path}"
                ) from exc
            time.sleep(0.05)


def remove_stale_instances(tracefs: Path) -> list[str]:
    """Remove ``replay-<pid>`` instances whose process no longer exists; returns their names."""
    removed: list[str] = []
    for path in sorted((tracefs / "instances").glob(INSTANCE_PREFIX + "*")):
        pid = path.name[len(INSTANCE_PREFIX) :]
        if not pid.isdigit() or int(pid) == os.getpid() or _pid_alive(int(pid)):
            continue
        with contextlib.suppress(ReplayError):
            remove_instance(path)
            removed.append(path.name)
    return removed


# --------------------------------------------------------------------------
# trace_pipe reader
# --------------------------------------------------------------------------
class PipeReader(threading.Thread):
    """Streams a ``trace_pipe`` into a file as the text comes (flushed when idle).

    ``finish()`` (after tracing is turned off) makes it read on until the
    buffers are empty: no data for :data:`DRAIN_IDLE_S` and ``is_empty()``
    true, or :data:`DRAIN_TIMEOUT_S` passed (then ``drained`` stays False).
    ``abort()`` stops it at once. The descriptor is closed when it ends.
    """

    def __init__(
        self, pipe: Path, out: Path, is_empty: Callable[[], bool], read_bytes: int = 1 << 16
    ) -> None:
        super().__init__(name=f"replay-{pipe.parent.name}-{pipe.name}", daemon=True)
        #: bytes per read: a ``trace_pipe_raw`` read returns at most one ring-buffer page
        #: (kernel/trace/trace.c, tracing_buffers_read), whole when this is a page or more
        self.read_bytes = read_bytes
        self.fd = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)
        self.out = out
        self.is_empty = is_empty
        self.bytes = 0
        self.drained = False
        self.error: BaseException | None = None
        self._finish = threading.Event()
        self._abort = threading.Event()
        self._finish_deadline = 0.0
        try:
            self._file = open(out, "wb", buffering=1 << 20)  # closed at the end of run()
        except BaseException:
            os.close(self.fd)
            raise

    def run(self) -> None:
        # Signals go to the main thread, which turns them into KeyboardInterrupt.
        signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_SIGNALS)
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        idle_since: float | None = None
        try:
            while not self._abort.is_set():
                try:
                    data = os.read(self.fd, self.read_bytes)
                except BlockingIOError:
                    data = b""
                if data:
                    self._file.write(data)
                    self.bytes += len(data)
                    idle_since = None
                    continue
                self._file.flush()
                now = time.monotonic()
                if not self._finish.is_set():
                    poller.poll(50)
                    continue
                # Draining: EAGAIN, or EOF once tracing is off and the buffer is empty.
                idle_since = idle_since if idle_since is not None else now
                if now - idle_since >= DRAIN_IDLE_S and self.is_empty():
                    self.drained = True
                    break
                if now > self._finish_deadline:
                    break
                time.sleep(0.02)
        except BaseException as exc:
            self.error = exc
        finally:
            with contextlib.suppress(OSError):
                self._file.close()
            with contextlib.suppress(OSError):
                os.close(self.fd)

    def finish(self, timeout_s: float = DRAIN_TIMEOUT_S) -> None:
        """Drain the pipe, then stop; blocks until the thread has ended."""
        self._finish_deadline = time.monotonic() + timeout_s
        self._finish.set()
        self.join()
        if self.error is not None:
            raise ReplayError(f"reading {self.name} into {self.out} failed: {self.error}")

    def abort(self) -> None:
        self._abort.set()
        if self.is_alive():
            self.join(timeout=10)
        elif self.ident is None:  # never started: run() did not close them
            with contextlib.suppress(OSError):
                self._file.close()
            with contextlib.suppress(OSError):
                os.close(self.fd)


class RawReaders:
    """One :class:`PipeReader` per CPU on ``per_cpu/cpuN/trace_pipe_raw``: pages as they are.

    Each CPU's ring-buffer pages (``header_page``'s layout: a u64 timestamp,
    the commit word, then the events) are copied unchanged into
    ``<dir>/cpuN.pages``; :func:`write_raw_tracedat` then puts them into a
    trace.dat that the binary decoder, ``trace-cmd report`` and KernelShark
    read. A reader of its own per CPU keeps up with each buffer separately
    (one text ``trace_pipe`` reader formats every CPU's events on one core).
    """

    def __init__(self, inst: FtraceInstance, tmp: Path) -> None:
        self.inst = inst
        self.tmp = tmp
        self.page_size = raw_page_size(inst.path)
        cpus = sorted(int(p.name[3:]) for p in (inst.path / "per_cpu").glob("cpu[0-9]*"))
        self.readers: dict[int, PipeReader] = {}
        #: CPUs whose trace_pipe_raw cannot be opened (possible but never online: no
        #: ring buffer), with why
        self.skipped: dict[int, str] = {}
        try:
            for cpu in cpus:
                try:
                    self.readers[cpu] = PipeReader(
                        inst.path / "per_cpu" / f"cpu{cpu}" / "trace_pipe_raw",
                        tmp / f"cpu{cpu}.pages",
                        lambda cpu=cpu: inst.cpu_entries(cpu) == 0,  # type: ignore[misc]
                        read_bytes=self.page_size,
                    )
                except OSError as exc:
                    self.skipped[cpu] = exc.strerror or str(exc)
            if not self.readers:
                raise ReplayError(
                    f"no per_cpu/cpuN/trace_pipe_raw of {inst.path} can be read: "
                    + "; ".join(f"cpu{c}: {why}" for c, why in self.skipped.items())
                )
        except BaseException:
            self.abort()
            raise

    def start(self) -> None:
        for r in self.readers.values():
            r.start()

    def finish(self, timeout_s: float = DRAIN_TIMEOUT_S) -> None:
        """Drain every CPU's buffer (tracing off), then stop the readers."""
        for r in self.readers.values():
            r.finish(timeout_s)

    def abort(self) -> None:
        for r in self.readers.values():
            r.abort()

    def is_alive(self) -> bool:
        return any(r.is_alive() for r in self.readers.values())

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.readers.values())

    @property
    def drained(self) -> bool:
        return all(r.drained for r in self.readers.values())


def raw_page_size(inst: Path) -> int:
    """Bytes of a ring-buffer page (sub-buffer): ``events/header_page``'s data offset + size."""
    text = (inst / "events" / "header_page").read_text()
    m = re.search(r"field:\s*char data;\s*offset:(\d+);\s*size:(\d+);", text)
    if m is None:
        raise ReplayError(f"{inst}/events/header_page has no 'data' field: cannot read raw pages")
    return int(m.group(1)) + int(m.group(2))


def _kallsyms_text(proc: Path = PROC) -> str:
    """Text symbols of /proc/kallsyms (what %ps needs), empty when unreadable."""
    try:
        with open(proc / "kallsyms", encoding="utf-8", errors="replace") as f:
            return "".join(ln for ln in f if ln[17:18] in ("t", "T", "w", "W"))
    except OSError:
        return ""


def write_raw_tracedat(inst: FtraceInstance, readers: RawReaders, dst: Path) -> int:
    """The instance's raw pages, formats and names as a trace.dat (v6); returns its bytes.

    Formats: every enabled event's ``format`` file and ftrace's ``print`` (the
    snapshot markers); task names: ``saved_cmdlines``; symbols: the text
    symbols of /proc/kallsyms; the clock and ``uname`` as options.
    """
    from replay.trace.tracedat import OPT_TRACECLOCK, OPT_UNAME, write_v6

    events = inst.path / "events"
    formats: list[tuple[str, str]] = []
    for name in [*inst.enabled, "ftrace:print", "ftrace:kernel_stack"]:
        sub, _, ev = name.partition(":")
        with contextlib.suppress(OSError):
            formats.append((sub, (events / sub / ev / "format").read_text()))
    try:
        cmdlines = (inst.tracefs / "saved_cmdlines").read_bytes()
    except OSError:
        cmdlines = b""
    clock = re.search(r"\[(\w+)\]", (inst.path / "trace_clock").read_text())
    u = os.uname()
    ncpu = max(readers.readers, default=-1) + 1

    def pages(cpu: int) -> Iterator[bytes]:
        reader = readers.readers.get(cpu)
        if reader is None:
            return
        with open(reader.out, "rb") as f:
            while chunk := f.read(1 << 20):
                yield chunk

    return write_v6(
        dst,
        header_page=(events / "header_page").read_text(),
        header_event=(events / "header_event").read_text(),
        formats=formats,
        cpu_pages=[pages(cpu) for cpu in range(ncpu)],
        page_size=readers.page_size,
        kallsyms=_kallsyms_text(),
        cmdlines=cmdlines,
        options={
            OPT_UNAME: f"{u.sysname} {u.nodename} {u.release} {u.version} {u.machine}\0".encode(),
            OPT_TRACECLOCK: f"{clock.group(1) if clock else 'local'}\0".encode(),
        },
    )


# --------------------------------------------------------------------------
# snapshots
# --------------------------------------------------------------------------
def copy_kpageflags(src: Path, dst: Path, chunk: int = KPAGEFLAGS_CHUNK) -> int:
    """Copy ``/proc/kpageflags`` into a zstd file in ``chunk``-byte reads; returns pfns."""
    total = 0
    cctx = zstandard.ZstdCompressor(level=3)
    with open(src, "rb", buffering=0) as fin, open(dst, "wb") as fout:
        with cctx.stream_writer(fout, closefd=False) as writer:
            while True:
                data = fin.read(chunk)
                if not data:
                    break
                writer.write(data)
                total += len(data)
    return total // 8


#: Module parameters saved beside them (``module.param``, from /sys/module):
#: free page reporting takes up to 32 free blocks of at least this order off
#: the free lists, without a tracepoint, while the host is told.
MODULE_PARAMS: tuple[str, ...] = ("page_reporting.page_reporting_order",)
SYS_MODULE = Path("/sys/module")


def sysctl_text(proc: Path = PROC, sys_module: Path = SYS_MODULE) -> str:
    """The :data:`SYSCTLS` under ``proc/sys`` and the :data:`MODULE_PARAMS` under
    ``sys_module`` that exist, as ``name = value`` lines."""
    paths = [(n, proc / "sys" / n.replace(".", "/")) for n in SYSCTLS]
    paths += [(n, sys_module / n.partition(".")[0] / "parameters" / n.partition(".")[2])
              for n in MODULE_PARAMS]  # fmt: skip
    lines = []
    for name, path in paths:
        with contextlib.suppress(OSError):
            value = " ".join(path.read_text().split())
            lines.append(f"{name} = {value}\n")
    return "".join(lines)


def take_snapshots(out: Path, when: str, proc: Path = PROC) -> tuple[list[str], int]:
    """Copy the /proc files into ``OUT/<when>.<kind>`` in :data:`SNAPSHOT_KINDS` order,
    then the vm sysctls into ``OUT/<when>.sysctl``.

    Returns the file names written and the pfns in the kpageflags copy.
    """
    names: list[str] = []
    pages = 0
    for kind in SNAPSHOT_KINDS:
        if kind == "kpageflags":
            name = f"{when}.kpageflags.zst"
            pages = copy_kpageflags(proc / "kpageflags", out / name)
        else:
            name = f"{when}.{kind}"
            (out / name).write_bytes((proc / kind).read_bytes())
        names.append(name)
    # last: buddyinfo stays the first file read after the marker
    (out / f"{when}.sysctl").write_text(sysctl_text(proc))
    names.append(f"{when}.sysctl")
    return names, pages


def compress_trace(out: Path) -> Path:
    """Compress ``OUT/trace.txt`` into ``trace.txt.zst`` (streaming) and remove the text."""
    src = out / "trace.txt"
    dst = out / "trace.txt.zst"
    cctx = zstandard.ZstdCompressor(level=3, threads=-1)
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        cctx.copy_stream(fin, fout, read_size=1 << 20, write_size=1 << 20)
    src.unlink()
    return dst


# --------------------------------------------------------------------------
# workload
# --------------------------------------------------------------------------
def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Send ``sig`` to the workload's process group (its leader's pid: run_workload starts
    it in a session of its own), so a shell's or make's children stop with it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _stop_child(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the workload's process group, then SIGKILL after :data:`KILL_GRACE_S`;
    always reaps the leader. A leader that already exited still has its group stopped:
    ``sh -c 'make -j2'`` stopped at --duration must not leave make compiling."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
    # the leader is gone; members that ignored SIGTERM or outlived it go too
    _signal_group(proc, signal.SIGKILL)


def run_workload(command: Sequence[str], duration_s: float | None) -> tuple[int | None, bool]:
    """Run the workload; returns ``(exit status or None for a sleep, timed out)``.

    Without a command: sleep ``duration_s``. With one: run it to the end, or
    at most ``duration_s`` when given (then its whole process group is stopped,
    SIGTERM then SIGKILL, and counted as timed out, not failed). It runs in a
    session of its own, so the stop reaches every process it started (a shell's
    pipeline, make's compilers), not only the command's own process. Its stdout
    goes to our stderr, so stdout keeps only the summary. Interrupted, the
    workload is stopped before the exception goes on.
    """
    if not command:
        time.sleep(DEFAULT_DURATION_S if duration_s is None else duration_s)
        return None, False
    proc = subprocess.Popen(list(command), stdout=2, start_new_session=True)
    try:
        try:
            return proc.wait(timeout=duration_s), False
        except subprocess.TimeoutExpired:
            _stop_child(proc)
            return proc.returncode, True
    except BaseException:
        _stop_child(proc)
        raise


# --------------------------------------------------------------------------
# signals
# --------------------------------------------------------------------------
def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt (like SIGINT) inside the block."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _raise_interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP back (delivered after the block): for the cleanup."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


# --------------------------------------------------------------------------
# the recording
# --------------------------------------------------------------------------
def default_out_dir(cwd: Path | None = None) -> Path:
    """``capture-YYYYmmdd-HHMMSS`` in ``cwd`` (suffixed ``-2``, ``-3``... if taken)."""
    base = (cwd or Path.cwd()) / time.strftime("capture-%Y%m%d-%H%M%S")
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def prepare_out_dir(out: Path) -> Path:
    """Create ``out`` (returned absolute); a non-empty directory or a file is refused."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out}: exists and is not an empty directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot create it ({exc.strerror or exc})") from exc
    return out.resolve()


def _buffer_kb(requested_kb: int, proc: Path = PROC) -> int:
    """``requested_kb`` per CPU, capped so all CPUs' buffers fit in MemAvailable / 8."""
    cpus = os.cpu_count() or 1
    try:
        text = (proc / "meminfo").read_text()
        m = re.search(r"^MemAvailable:\s+(\d+)\s+kB", text, re.M)
        avail_kb = int(m.group(1)) if m else None
    except OSError:
        avail_kb = None
    if avail_kb is None:
        return requested_kb
    return min(requested_kb, max(1024, avail_kb // MAX_BUFFER_FRACTION // cpus))


def _cleanup(
    inst: FtraceInstance, reader: PipeReader | RawReaders | None, marker_fd: int | None
) -> ReplayError | None:
    """Stop the reader, close the marker, remove the instance (signals held meanwhile).

    Returns the error of an instance that could not be removed, instead of raising it.
    """
    with _signals_held():
        if reader is not None and reader.is_alive():
            reader.abort()
        if marker_fd is not None:
            with contextlib.suppress(OSError):
                os.close(marker_fd)
        try:
            inst.remove()
        except ReplayError as exc:
            return exc
    return None


def record_capture(
    out: Path,
    *,
    command: Sequence[str] = (),
    duration_s: float | None = None,
    events: Sequence[str] = DEFAULT_EVENTS,
    buffer_kb: int = DEFAULT_BUFFER_KB,
    tracefs: Path | None = None,
    status: Callable[[str], None] = lambda msg: None,
    raw: bool = True,
    stacks: Sequence[str] = (),
) -> RecordResult:
    """Record a capture folder into ``out`` (created; must be new or empty).

    ``command``: the workload (empty: sleep ``duration_s``, default
    :data:`DEFAULT_DURATION_S` seconds); ``duration_s`` with a command is a
    time limit. ``events``: ``subsystem[:event]`` names (see
    :func:`parse_events`). ``buffer_kb``: ring buffer per CPU, KiB.
    ``tracefs``: mount point (default :func:`tracefs_root`). ``raw``: read
    each CPU's ``trace_pipe_raw`` into ``trace.dat`` (:class:`RawReaders`);
    False: the text ``trace_pipe`` into ``trace.txt``. ``stacks``: events
    that get a ``stacktrace`` trigger (their kernel stacks: call sites).

    Raises :class:`UsageError` when not root, tracefs or /proc/kpageflags is
    unavailable, or no requested event exists; KeyboardInterrupt on Ctrl-C,
    SIGTERM or SIGHUP. The instance is removed in every case.
    """
    if duration_s is not None and duration_s < 0:
        raise UsageError("--duration must be >= 0 seconds")
    check_root()
    root = tracefs if tracefs is not None else tracefs_root()
    mounted = ensure_tracefs(root)
    if mounted:
        status(f"mounted tracefs at {root}")
    check_kpageflags()
    if command:
        check_command(command)
    out = prepare_out_dir(Path(out))
    stale = remove_stale_instances(root)
    if stale:
        status(f"removed stale instances: {', '.join(stale)}")

    inst = FtraceInstance(root, f"{INSTANCE_PREFIX}{os.getpid()}")
    reader: PipeReader | RawReaders | None = None
    raw_dir = out / ".raw"
    marker_fd: int | None = None
    sleep_s = DEFAULT_DURATION_S if duration_s is None else duration_s
    workload = shlex.join(command) if command else f"sleep {sleep_s:g}"
    with _signals_interrupt():
        try:
            # Held signals: an interrupt here could leave a descriptor open or the
            # instance unrecorded; it is delivered at the end of the block.
            with _signals_held():
                inst.create()
                present, skipped = resolve_events(inst.path / "events", events)
                if not present:
                    raise UsageError(
                        "none of the requested events exist in this kernel: "
                        + "; ".join(f"{k}: {v}" for k, v in skipped.items())
                    )
                got_kb = inst.set_buffer_kb(_buffer_kb(buffer_kb))
                skipped.update(inst.enable(present))
                if not inst.enabled:
                    raise ReplayError("the kernel refused to enable every requested event")
                if stacks:
                    armed = inst.arm_stacks(stacks)
                    for name in sorted(set(stacks) - set(armed)):
                        skipped.setdefault(name + " (stacktrace)", "no stacktrace trigger armed")
                if raw:
                    raw_dir.mkdir()
                    reader = RawReaders(inst, raw_dir)
                    for cpu, why in reader.skipped.items():
                        skipped[f"cpu{cpu} trace_pipe_raw"] = why
                else:
                    reader = PipeReader(
                        inst.path / "trace_pipe",
                        out / "trace.txt",
                        lambda: inst.buffered_entries() == 0,
                    )
                reader.start()
                marker_fd = os.open(inst.path / "trace_marker", os.O_WRONLY)
                inst.tracing(True)
            for name, why in skipped.items():
                status(f"skipped event {name}: {why}")
            status(f"{len(inst.enabled)} events enabled in {inst.path} ({got_kb} KiB per CPU)")

            def mark(text: str) -> None:
                assert marker_fd is not None
                os.write(marker_fd, text.encode())

            mark(MARKERS[0])
            t0 = time.monotonic()
            status("before snapshots")
            snap_files, pages = take_snapshots(out, "before")
            before_s = time.monotonic() - t0
            mark(MARKERS[1])

            status(f"workload: {workload}")
            t0 = time.monotonic()
            exit_code, timed_out = run_workload(command, duration_s)
            workload_s = time.monotonic() - t0
            note = "" if exit_code is None else f", exit status {exit_code}"
            status(f"workload done in {workload_s:.1f} s{note}{', timed out' if timed_out else ''}")

            mark(MARKERS[2])
            t0 = time.monotonic()
            status("after snapshots")
            after_files, _ = take_snapshots(out, "after")
            after_s = time.monotonic() - t0
            mark(MARKERS[3])

            inst.tracing(False)
            fd, marker_fd = marker_fd, None
            os.close(fd)
            status("draining trace_pipe_raw" if raw else "draining trace_pipe")
            reader.finish()
            stats = inst.cpu_stats()
            lost_by_cpu = {
                cpu: {"overrun": s.get("overrun", 0), "dropped": s.get("dropped events", 0)}
                for cpu, s in stats.items()
            }
            lost = sum(v["overrun"] + v["dropped"] for v in lost_by_cpu.values())
            enabled = list(inst.enabled)
            armed_stacks = list(inst.stacks)
            trace_file = out / ("trace.dat" if raw else "trace.txt")
            if isinstance(reader, RawReaders):
                status("writing trace.dat")
                trace_bytes = write_raw_tracedat(inst, reader, trace_file)
            else:
                trace_bytes = reader.bytes
        except BaseException as exc:
            cleanup_error = _cleanup(inst, reader, marker_fd)
            shutil.rmtree(raw_dir, ignore_errors=True)
            if cleanup_error is not None:
                exc.add_note(str(cleanup_error))
            raise
        shutil.rmtree(raw_dir, ignore_errors=True)
        cleanup_error = _cleanup(inst, reader, marker_fd)
        if cleanup_error is not None:
            raise cleanup_error
        kernel = platform.release()
        (out / "kernel").write_text(kernel + "\n")
        (out / "command").write_text(workload + "\n")
        result = RecordResult(
            out_dir=str(out),
            trace_file=str(trace_file),
            trace_bytes=trace_bytes,
            kernel=kernel,
            workload=workload,
            workload_exit=exit_code,
            timed_out=timed_out,
            workload_s=round(workload_s, 3),
            before_snapshot_s=round(before_s, 3),
            after_snapshot_s=round(after_s, 3),
            buffer_kb_per_cpu=got_kb,
            events_enabled=enabled,
            events_skipped=skipped,
            lost_events_kernel=lost,
            lost_by_cpu=lost_by_cpu,
            drained=reader.drained,
            snapshot_files=snap_files + after_files,
            kpageflags_pages=pages,
            tracefs=str(root),
            mounted_tracefs=mounted,
            stale_instances_removed=stale,
            stacks_armed=armed_stacks,
        )
        (out / "record.json").write_text(json.dumps(result.as_dict(), indent=2) + "\n")
    return result
