"""trace-cmd's trace.dat, file versions 6 and 7, as a source of raw tracepoint records.

Layout (trace-cmd's Documentation/trace-cmd/trace-cmd.dat.v6.5.txt and
trace-cmd.dat.v7.5.txt): the magic ``\\x17\\x08\\x44tracing``, the version
as a string, endianness, the user-space long size and the page size. A v6
file then holds, in order, header_page/header_event, the ftrace and event
format files, kallsyms, printk formats, saved cmdlines, the CPU count,
options (a BUFFER option per instance: the offset of its own per-CPU table)
and ``flyrecord`` with an (offset, size) pair per CPU. A v7 file names a
compression algorithm (``none``, ``zstd``, ``zlib``) and the offset of the
first OPTIONS section; every part is a section (id, flags, string id, size;
compressed ones add compressed and uncompressed sizes) that an option
points to, and each BUFFER option lists its instance's clock, page size and
(cpu, offset, size) triples. Compressed per-CPU data is a count of chunks,
each with its compressed and uncompressed sizes.

Per-CPU data is ring-buffer pages (:mod:`replay.trace._binary_kernels`),
decoded a window of pages at a time per CPU and merged across every buffer
and CPU as ``trace-cmd report`` merges them, so the records come out in its
print order. Units: offsets and sizes in bytes, timestamps in ns (the trace
clock's units: ``local`` and the other ftrace clocks count ns).
"""

from __future__ import annotations

import mmap
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zstandard

from replay.errors import BadInputError
from replay.trace import _binary_kernels as BK
from replay.trace.binary import RecordBlock, Symbols
from replay.trace.tpformat import FormatTable, PageHeader, factorize, parse_header_page

MAGIC = b"\x17\x08\x44tracing"
SUPPORTED_VERSIONS = (6, 7)

# v7 option ids (trace-cmd.dat.v7.5.txt)
OPT_DONE = 0
OPT_DATE = 1
OPT_CPUSTAT = 2
OPT_BUFFER = 3
OPT_TRACECLOCK = 4
OPT_UNAME = 5
OPT_OFFSET = 7
OPT_CPUCOUNT = 8
OPT_VERSION = 9
OPT_STRINGS = 15
OPT_HEADER_INFO = 16
OPT_FTRACE_EVENTS = 17
OPT_EVENT_FORMATS = 18
OPT_KALLSYMS = 19
OPT_PRINTK = 20
OPT_CMDLINES = 21
OPT_BUFFER_TEXT = 22

SECTION_COMPRESSED = 1
#: ring-buffer pages decoded at a time over all CPUs (4 MiB of 4 KiB pages: about
#: 125k records, as many as the lines of a text chunk), at least MIN_WINDOW_PAGES per CPU
WINDOW_PAGES = 1024
MIN_WINDOW_PAGES = 16


@dataclass
class CpuData:
    """One CPU's data in one buffer: where it is in the file (bytes)."""

    cpu: int
    offset: int
    size: int


@dataclass
class Buffer:
    """A trace instance's flyrecord data (the top instance is named "")."""

    name: str
    clock: str = "local"
    page_size: int = 4096
    cpus: list[CpuData] = field(default_factory=list)
    compressed: bool = False


class Reader:
    """Bounds-checked reads of a byte view, errors naming the file, section and offset."""

    def __init__(
        self, data: memoryview | bytes, path: str, big: bool, base: int = 0, what: str = ""
    ) -> None:
        self.data = data
        self.path = path
        self.big = big
        self.pos = 0
        self.base = base  # file offset of data[0] (0 for decompressed sections: see what)
        self.what = what

    def fail(self, message: str, at: int | None = None) -> BadInputError:
        where = self.what + (", " if self.what else "")
        off = self.base + (self.pos if at is None else at)
        return BadInputError(f"{where}byte offset {off}: {message}", file=self.path)

    def need(self, n: int) -> None:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(f"truncated: {n} more bytes needed, {len(self.data) - self.pos} left")

    def bytes(self, n: int) -> bytes:
        self.need(n)
        out = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return out

    def uint(self, n: int) -> int:
        return int.from_bytes(self.bytes(n), "big" if self.big else "little")

    def cstr(self) -> str:
        data = self.data
        end = bytes(data[self.pos : self.pos + 4096]).find(b"\0")
        if end < 0:
            raise self.fail("a string without its terminating NUL")
        out = bytes(data[self.pos : self.pos + end]).decode("utf-8", "replace")
        self.pos += end + 1
        return out


class TraceDat:
    """A trace.dat opened for reading: formats, cmdlines, buffers; ``blocks()`` streams records."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.name = str(path)
        self._file = open(self.path, "rb")
        try:
            size = self.path.stat().st_size
            if size < 16:
                raise BadInputError(
                    f"byte offset {size}: truncated: {size} bytes, not even a header",
                    file=self.name,
                )
            self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        except BaseException:
            self._file.close()
            raise
        self.raw = np.frombuffer(self._map, np.uint8)
        self.view = memoryview(self._map)
        self.formats = FormatTable()
        self.comm_names: list[str] = ["<idle>", "<...>"]
        self._pid_comm: dict[int, int] = {}
        self.buffers: list[Buffer] = []
        self.options: dict[str, object] = {}
        self.header = PageHeader()
        self.compression = "none"
        self._zdec: zstandard.ZstdDecompressor | None = None
        self.kallsyms = ""
        #: the saved_cmdlines text (``pid comm`` lines), as the file holds it
        self.cmdlines_raw = b""
        #: header_page and header_event text, as the file holds them
        self.header_text = ("", "")
        self._parse()
        self.symbol = Symbols(self.kallsyms)

    # -- header ------------------------------------------------------------
    def _parse(self) -> None:
        r = Reader(self.view, self.name, False, what="file header")
        head = r.bytes(10)
        if head != MAGIC:
            raise BadInputError(
                f"byte offset 0: not a trace.dat (magic {head[:10]!r}, expected {MAGIC!r})",
                file=self.name,
            )
        ver = r.cstr()
        try:
            self.version = int(ver)
        except ValueError:
            raise r.fail(f"file version {ver!r} is not a number", 10) from None
        if self.version not in SUPPORTED_VERSIONS:
            raise r.fail(
                f"unknown trace.dat file version {self.version} (versions 6 and 7 are read)", 10
            )
        endian = r.uint(1)
        self.big = endian == 1
        r.big = self.big
        self.long_size = r.uint(1)
        self.page_size = r.uint(4)
        if self.version >= 7:
            self.compression = r.cstr()
            self.compression_version = r.cstr()
            if self.compression not in ("none", "zstd", "zlib"):
                raise r.fail(f"unsupported compression algorithm {self.compression!r}")
            if self.compression == "zstd":
                self._zdec = zstandard.ZstdDecompressor()
            first = r.uint(8)
            self._parse_v7(first)
        else:
            self._parse_v6(r)
        if not self.formats:
            raise BadInputError("the file holds no event formats", file=self.name)

    def _decompress(self, data: bytes, usize: int, what: str, at: int) -> bytes:
        try:
            if self.compression == "zstd":
                assert self._zdec is not None
                out = self._zdec.decompress(data, max_output_size=usize)
            elif self.compression == "zlib":
                out = zlib.decompress(data)
            else:
                out = data
        except (zstandard.ZstdError, zlib.error) as exc:
            raise BadInputError(
                f"{what}, byte offset {at}: corrupt {self.compression} data ({exc})", file=self.name
            ) from exc
        if len(out) != usize:
            raise BadInputError(
                f"{what}, byte offset {at}: {self.compression} data decompressed to {len(out)} "
                f"bytes, the header says {usize}",
                file=self.name,
            )
        return out

    def _section(self, offset: int, expect: int | None, what: str) -> Reader:
        """A v7 section at ``offset``: its (decompressed) content."""
        r = Reader(self.view, self.name, self.big, what=f"{what} section")
        if offset >= len(self.view):
            raise r.fail(
                f"section offset {offset} is past the end of the file ({len(self.view)} bytes)",
                offset,
            )
        r.pos = offset
        sid = r.uint(2)
        flags = r.uint(2)
        r.uint(4)  # string id of the description
        size = r.uint(8)
        if expect is not None and sid != expect:
            raise r.fail(f"section id {sid}, expected {expect}", offset)
        start = r.pos
        if flags & SECTION_COMPRESSED:
            csize = r.uint(4)
            usize = r.uint(4)
            r.need(csize)
            data = self._decompress(
                bytes(self.view[r.pos : r.pos + csize]), usize, f"{what} section", start
            )
            return Reader(
                data,
                self.name,
                self.big,
                what=f"{what} section at byte offset {offset} (decompressed)",
            )
        r.need(size)
        return Reader(
            self.view[start : start + size], self.name, self.big, base=start, what=f"{what} section"
        )

    def _parse_v7(self, first: int) -> None:
        offset = first
        seen: set[int] = set()
        sections: dict[int, int] = {}
        while offset and offset not in seen:
            seen.add(offset)
            r = self._section(offset, 0, "options")
            offset = 0
            while True:
                oid = r.uint(2)
                osize = r.uint(4)
                body = Reader(r.bytes(osize), self.name, self.big, what=r.what)
                if oid == OPT_DONE:
                    offset = body.uint(8) if osize >= 8 else 0
                    break
                if oid in (OPT_HEADER_INFO, OPT_FTRACE_EVENTS, OPT_EVENT_FORMATS, OPT_KALLSYMS,
                           OPT_PRINTK, OPT_CMDLINES):  # fmt: skip
                    sections[oid] = body.uint(8)
                elif oid == OPT_BUFFER:
                    self.buffers.append(self._buffer_v7(body))
                else:
                    self._option(oid, body)
        if OPT_HEADER_INFO not in sections:
            raise BadInputError("no HEADER_INFO section (header_page)", file=self.name)
        self._header_info(self._section(sections[OPT_HEADER_INFO], 16, "header info"))
        if OPT_FTRACE_EVENTS in sections:
            self._ftrace_formats(self._section(sections[OPT_FTRACE_EVENTS], 17, "ftrace formats"))
        if OPT_EVENT_FORMATS in sections:
            self._event_formats(self._section(sections[OPT_EVENT_FORMATS], 18, "event formats"))
        if OPT_KALLSYMS in sections:
            r = self._section(sections[OPT_KALLSYMS], 19, "kallsyms")
            self.kallsyms = r.bytes(r.uint(4)).decode("utf-8", "replace")
        if OPT_CMDLINES in sections:
            r = self._section(sections[OPT_CMDLINES], 21, "cmdlines")
            self._cmdlines(r.bytes(r.uint(8)))
        for buf in self.buffers:
            if buf.cpus:
                hdr = self._section_header(buf, self.name)
                buf.compressed = bool(hdr & SECTION_COMPRESSED)

    def _section_header(self, buf: Buffer, path: str) -> int:
        off = getattr(buf, "section_offset", 0)
        r = Reader(self.view, path, self.big, what=f"buffer {buf.name!r} flyrecord section")
        r.pos = off
        sid = r.uint(2)
        flags = r.uint(2)
        if sid != 3:
            raise r.fail(f"section id {sid}, expected 3 (BUFFER FLYRECORD)", off)
        return flags

    def _buffer_v7(self, r: Reader) -> Buffer:
        section = r.uint(8)
        buf = Buffer(r.cstr())
        buf.clock = r.cstr()
        buf.page_size = r.uint(4)
        n = r.uint(4)
        for _ in range(n):
            buf.cpus.append(CpuData(r.uint(4), r.uint(8), r.uint(8)))
        buf.section_offset = section  # type: ignore[attr-defined]
        return buf

    def _option(self, oid: int, r: Reader) -> None:
        text = bytes(r.data).split(b"\0")[0].decode("utf-8", "replace")
        if oid == OPT_UNAME:
            self.options["uname"] = text
        elif oid == OPT_TRACECLOCK:
            self.options["trace_clock"] = text
        elif oid == OPT_VERSION:
            self.options["trace_cmd_version"] = text
        elif oid == OPT_OFFSET:
            self.options["ts_offset"] = text
        elif oid == OPT_CPUCOUNT and len(r.data) >= 4:
            self.options["cpu_count"] = r.uint(4)
        elif oid == OPT_CPUSTAT:
            self.options.setdefault("cpustat", []).append(text)  # type: ignore[union-attr]

    def _header_info(self, r: Reader) -> None:
        if r.bytes(12) != b"header_page\0":
            raise r.fail("expected 'header_page'", r.pos - 12)
        text = r.bytes(r.uint(8)).decode("utf-8", "replace")
        self.header = parse_header_page(text, f"{self.name}: header_page")
        if r.bytes(13) != b"header_event\0":
            raise r.fail("expected 'header_event'", r.pos - 13)
        self.header_text = (text, r.bytes(r.uint(8)).decode("utf-8", "replace"))

    def _ftrace_formats(self, r: Reader) -> None:
        for _ in range(r.uint(4)):
            text = r.bytes(r.uint(8)).decode("utf-8", "replace")
            self.formats.add(text, "ftrace", f"{self.name}: ftrace format")

    def _event_formats(self, r: Reader) -> None:
        for _ in range(r.uint(4)):
            system = r.cstr()
            for _ in range(r.uint(4)):
                text = r.bytes(r.uint(8)).decode("utf-8", "replace")
                self.formats.add(text, system, f"{self.name}: events/{system} format")

    def _cmdlines(self, raw: bytes) -> None:
        self.cmdlines_raw = raw
        for line in raw.decode("utf-8", "replace").splitlines():
            pid_s, _, comm = line.strip().partition(" ")
            try:
                pid = int(pid_s)
            except ValueError:
                continue
            if pid in self._pid_comm:
                continue  # libtraceevent keeps the first name registered for a pid
            self._pid_comm[pid] = len(self.comm_names)
            self.comm_names.append(comm)

    def _parse_v6(self, r: Reader) -> None:
        r.what = "header info"
        self._header_info(r)
        r.what = "ftrace formats"
        self._ftrace_formats(r)
        r.what = "event formats"
        self._event_formats(r)
        r.what = "kallsyms"
        self.kallsyms = r.bytes(r.uint(4)).decode("utf-8", "replace")
        r.what = "printk formats"
        r.bytes(r.uint(4))
        r.what = "cmdlines"
        self._cmdlines(r.bytes(r.uint(8)))
        r.what = "cpu count"
        self.cpu_count = r.uint(4)
        r.what = "options"
        instances: list[tuple[str, int]] = []
        kind = r.bytes(10)
        if kind == b"options  \0":
            while True:
                oid = r.uint(2)
                if oid == 0:
                    break
                osize = r.uint(4)
                body = Reader(r.bytes(osize), self.name, self.big, what="options")
                if oid == OPT_BUFFER:
                    off = body.uint(8)
                    instances.append((body.cstr(), off))
                else:
                    self._option(oid, body)
            kind = r.bytes(10)
        if kind == b"latency  \0":
            raise r.fail("a latency trace (text) holds no binary records", r.pos - 10)
        if kind != b"flyrecord\0":
            raise r.fail(f"expected 'flyrecord', got {kind!r}", r.pos - 10)
        self.buffers.append(self._cpus_v6("", r))
        for name, off in instances:
            rr = Reader(self.view, self.name, self.big, what=f"buffer {name!r}")
            rr.pos = off
            k = rr.bytes(10)
            if k == b"options  \0":
                while rr.uint(2) != 0:
                    rr.bytes(rr.uint(4))
                k = rr.bytes(10)
            if k != b"flyrecord\0":
                raise rr.fail(f"expected 'flyrecord', got {k!r}", off)
            self.buffers.append(self._cpus_v6(name, rr))

    def _cpus_v6(self, name: str, r: Reader) -> Buffer:
        buf = Buffer(name, self.options.get("trace_clock", "local"), self.page_size)  # type: ignore[arg-type]
        for cpu in range(self.cpu_count):
            off, size = r.uint(8), r.uint(8)
            if size:
                buf.cpus.append(CpuData(cpu, off, size))
        return buf

    # -- records -------------------------------------------------------------
    @property
    def big_endian(self) -> bool:
        return self.big

    def comm_index(self, pid: np.ndarray) -> np.ndarray:
        """Index of each pid's task name in comm_names: saved cmdlines, <idle>, <...>."""
        inv, uniq = factorize(pid)
        idx = np.array(
            [0 if p == 0 else self._pid_comm.get(int(p), 1) for p in uniq.tolist()], np.int32
        )
        return idx[inv] if uniq.size else np.zeros(0, np.int32)

    def describe(self) -> str:
        named = [b.name for b in self.buffers if b.name and b.cpus]
        comp = f", {self.compression}" if self.version >= 7 and self.compression != "none" else ""
        inst = f", instance {', '.join(named)}" if named else ""
        ncpu = max((len(b.cpus) for b in self.buffers), default=0)
        return f"trace.dat v{self.version}{comp}{inst}, {ncpu} CPUs"

    def meta(self) -> dict[str, object]:
        return {
            "container": "trace.dat",
            "file_version": self.version,
            "compression": self.compression,
            "buffers": [
                {
                    "name": b.name,
                    "clock": b.clock,
                    "page_size": b.page_size,
                    "cpus": [c.cpu for c in b.cpus],
                }
                for b in self.buffers
            ],
            **{k: v for k, v in self.options.items() if k != "cpustat"},
        }

    def kernel(self) -> str | None:
        uname = str(self.options.get("uname") or "")
        parts = uname.split()
        return parts[2] if len(parts) >= 3 else None

    def _pages(
        self, buf: Buffer, cpu: CpuData, window: int = WINDOW_PAGES
    ) -> Iterator[tuple[np.ndarray, int]]:
        """The CPU's pages, a window at a time: (bytes, file offset of the window or -1)."""
        what = f"buffer {buf.name!r} CPU {cpu.cpu}"
        if cpu.offset + cpu.size > len(self.raw):
            raise BadInputError(
                f"{what}, byte offset {cpu.offset}: truncated: its data ends at byte "
                f"{cpu.offset + cpu.size}, the file at {len(self.raw)}",
                file=self.name,
            )
        if not buf.compressed:
            # read, not the map's pages: a mapped page read once stays in this
            # process's RSS until the file is closed (a 10M-record file: 330 MB)
            step = window * buf.page_size
            fd = self._file.fileno()
            for s in range(cpu.offset, cpu.offset + cpu.size, step):
                e = min(s + step, cpu.offset + cpu.size)
                yield np.frombuffer(os.pread(fd, e - s, s), np.uint8), s
            return
        r = Reader(self.view, self.name, self.big, what=what)
        r.pos = cpu.offset
        count = r.uint(4)
        parts: list[bytes] = []
        have = 0
        for _ in range(count):
            at = r.pos
            csize = r.uint(4)
            usize = r.uint(4)
            r.need(csize)
            data = self._decompress(
                bytes(self.view[r.pos : r.pos + csize]), usize, f"{what} chunk", at
            )
            r.pos += csize
            parts.append(data)
            have += len(data)
            if have >= window * buf.page_size:
                yield np.frombuffer(b"".join(parts), np.uint8), -1
                parts, have = [], 0
        if parts:
            yield np.frombuffer(b"".join(parts), np.uint8), -1

    def pages(self, buf: Buffer, cpu: CpuData) -> Iterator[np.ndarray]:
        """One CPU's ring-buffer pages as the file holds them (decompressed), a window at a time."""
        for data, _ in self._pages(buf, cpu):
            yield data

    def _windows(self, buf: Buffer, cpu: CpuData, window: int) -> Iterator[_Window]:
        h = self.header
        for data, file_off in self._pages(buf, cpu, window):
            cap = data.shape[0] // 4 + 1
            off = np.empty(cap, np.int64)
            ln = np.empty(cap, np.int64)
            ts = np.empty(cap, np.int64)
            lost = np.empty(cap, np.int64)
            err = np.zeros(2, np.int64)
            n = BK.walk_pages(
                data, 0, data.shape[0], buf.page_size, h.ts_offset, h.commit_offset,
                h.commit_size, h.data_offset, self.big, off, ln, ts, lost, err,
            )  # fmt: skip
            if err[0]:
                where = (
                    f"byte offset {file_off + int(err[1])}" if file_off >= 0
                    else f"byte {int(err[1])} of its decompressed data"
                )  # fmt: skip
                what = "commit size larger than the page" if err[0] == BK.E_BAD_COMMIT else (
                    "an event runs past the page's data")  # fmt: skip
                raise BadInputError(
                    f"buffer {buf.name!r} CPU {cpu.cpu}, {where}: corrupt ring-buffer page "
                    f"({what})",
                    file=self.name,
                )
            yield _Window(
                data, off[:n].copy(), ln[:n].copy(), ts[:n].copy(), lost[:n].copy(), cpu.cpu
            )

    def blocks(self) -> Iterator[RecordBlock]:
        """Every buffer's records merged in ``trace-cmd report``'s order, in blocks."""
        ncpu = sum(len(b.cpus) for b in self.buffers)
        window = max(MIN_WINDOW_PAGES, WINDOW_PAGES // max(ncpu, 1))
        streams = [
            self._windows(b, c, window)
            for b in self.buffers
            for c in sorted(b.cpus, key=lambda c: c.cpu)
        ]
        wins: list[_Window | None] = [next(s, None) for s in streams]
        while True:
            live = [k for k, w in enumerate(wins) if w is not None]
            if not live:
                return
            sizes = [wins[k].off.size for k in live]  # type: ignore[union-attr]
            base = np.zeros(len(live) + 1, np.int64)
            np.cumsum(sizes, out=base[1:])
            ts = np.concatenate([wins[k].ts for k in live])  # type: ignore[union-attr]
            starts = base[:-1] + np.array([wins[k].pos for k in live], np.int64)  # type: ignore[union-attr]
            ends = base[1:].copy()
            more = np.ones(len(live), np.bool_)
            taken = np.empty(int((ends - starts).sum()) + 1, np.int64)
            n = BK.merge_streams(ts, starts, ends, more, taken)
            taken = taken[:n]
            if n:
                yield self._block(live, wins, base, taken)
            for j, k in enumerate(live):
                w = wins[k]
                assert w is not None
                w.pos = int(starts[j] - base[j])
                if w.pos >= w.off.size:
                    wins[k] = next(streams[k], None)

    def _block(
        self, live: list[int], wins: list[_Window | None], base: np.ndarray, taken: np.ndarray
    ) -> RecordBlock:
        datas = [wins[k].data for k in live]  # type: ignore[union-attr]
        dbase = np.zeros(len(live) + 1, np.int64)
        np.cumsum([d.shape[0] for d in datas], out=dbase[1:])
        off = np.concatenate([wins[k].off + dbase[j] for j, k in enumerate(live)])  # type: ignore[union-attr]
        ln = np.concatenate([wins[k].ln for k in live])  # type: ignore[union-attr]
        ts = np.concatenate([wins[k].ts for k in live])  # type: ignore[union-attr]
        lost = np.concatenate([wins[k].lost for k in live])  # type: ignore[union-attr]
        cpu = np.concatenate([np.full(wins[k].off.size, wins[k].cpu, np.int32) for k in live])  # type: ignore[union-attr]
        return RecordBlock(
            buf=np.concatenate(datas) if len(datas) > 1 else datas[0],
            off=off[taken], size=ln[taken], ts_ns=ts[taken], cpu=cpu[taken], lost=lost[taken],
        )  # fmt: skip

    def close(self) -> None:
        self.raw = np.zeros(0, np.uint8)
        self.view.release()
        self._map.close()
        self._file.close()


@dataclass
class _Window:
    """Decoded records of one CPU's window of pages; ``pos`` is the next unmerged one."""

    data: np.ndarray
    off: np.ndarray
    ln: np.ndarray
    ts: np.ndarray
    lost: np.ndarray
    cpu: int
    pos: int = 0


def write_v6(
    dst: Path,
    *,
    header_page: str,
    header_event: str,
    formats: list[tuple[str, str]],
    cpu_pages: list[Iterator[bytes]],
    page_size: int,
    kallsyms: str = "",
    cmdlines: bytes = b"",
    options: dict[int, bytes] | None = None,
) -> int:
    """Write a trace.dat v6 (trace-cmd.dat.v6.5.txt) of ring-buffer pages; returns its bytes.

    ``formats``: (system, format file text), ``ftrace`` ones in the ftrace
    section; ``cpu_pages[k]``: CPU k's pages as the kernel gave them (each a
    multiple of ``page_size`` bytes), written page-aligned after the headers,
    as trace-cmd writes them (``trace-cmd report`` and KernelShark read the
    file). ``options``: extra v6 options by id (UNAME, TRACECLOCK: bytes
    with their NUL). Little-endian, 8-byte longs: this machine's layout.
    """
    order = "little"
    out = bytearray(MAGIC + b"6\0" + bytes([0, 8]) + page_size.to_bytes(4, order))

    def blob(b: bytes, width: int) -> None:
        out.extend(len(b).to_bytes(width, order) + b)

    out += b"header_page\0"
    blob(header_page.encode(), 8)
    out += b"header_event\0"
    blob(header_event.encode(), 8)
    systems: dict[str, list[str]] = {}
    for system, text in formats:
        systems.setdefault(system, []).append(text)
    ftrace = systems.pop("ftrace", [])
    out += len(ftrace).to_bytes(4, order)
    for text in ftrace:
        blob(text.encode(), 8)
    out += len(systems).to_bytes(4, order)
    for system, texts in systems.items():
        out += system.encode() + b"\0" + len(texts).to_bytes(4, order)
        for text in texts:
            blob(text.encode(), 8)
    blob(kallsyms.encode(), 4)
    blob(b"", 4)  # printk formats
    blob(cmdlines, 8)
    out += len(cpu_pages).to_bytes(4, order) + b"options  \0"
    for oid, body in (options or {}).items():
        out += oid.to_bytes(2, order)
        blob(body, 4)
    out += (0).to_bytes(2, order) + b"flyrecord\0"
    table = len(out)
    out += bytes(16 * len(cpu_pages))
    at = -(-len(out) // page_size) * page_size
    with open(dst, "wb") as f:
        f.write(out)
        for cpu, pages in enumerate(cpu_pages):
            f.seek(at)
            size = 0
            for chunk in pages:
                f.write(chunk)
                size += len(chunk)
            f.seek(table + 16 * cpu)
            f.write(at.to_bytes(8, order) + size.to_bytes(8, order))
            at += -(-size // page_size) * page_size
        f.seek(0, 2)
        return f.tell()


def is_tracedat(head: bytes) -> bool:
    """True when the first bytes are trace.dat's magic."""
    return head.startswith(MAGIC)


def read_header(path: Path) -> tuple[int, str]:
    """(file version, compression) of a trace.dat, without reading the rest."""
    td = TraceDat(path)
    try:
        return td.version, td.compression
    finally:
        td.close()
