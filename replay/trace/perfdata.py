"""perf's perf.data (``perf record -e kmem:...``) as a source of raw tracepoint records.

Layout (the kernel's tools/perf/Documentation/perf.data-file-format.txt and
include/uapi/linux/perf_event.h): a header (magic ``PERFILE2``, its size, the
size of one attribute entry, the attrs, data and event_types sections as
(offset, size) pairs, a 256-bit feature bitmap); the attrs (a
``perf_event_attr`` and the (offset, size) of its u64 sample ids each); the
data section, records of a ``perf_event_header`` (u32 type, u16 misc, u16
size); after it the feature sections' (offset, size) table, one per set bit.
Feature 1 (HEADER_TRACING_DATA) holds the tracepoints' header_page and format
files, kallsyms and saved cmdlines, as trace.dat v6 lays them out.

A PERF_RECORD_SAMPLE of a tracepoint carries, in ``sample_type`` order, the
ids, ip, pid/tid, time, addr, id, stream id, cpu, period, read values,
callchain and the RAW data: the tracepoint record itself, which the shared
decoder (:mod:`replay.trace.binary`) reads by its format. Task names come
from PERF_RECORD_COMM (an exec or a rename) and PERF_RECORD_FORK (a child
takes its parent's name), applied in time order as ``perf script`` does;
PERF_RECORD_LOST and PERF_RECORD_LOST_SAMPLES count lost events. Samples are
ordered by time, file order on ties (perf's ordered events). Units: offsets
and sizes in bytes, times in ns.
"""

from __future__ import annotations

import mmap
import platform
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from replay.errors import BadInputError
from replay.jit import njit
from replay.trace import _binary_kernels as BK
from replay.trace.binary import RecordBlock, Symbols
from replay.trace.tpformat import FormatTable, parse_header_page

PERF_MAGIC = b"PERFILE2"
HEADER_TRACING_DATA = 1
HEADER_OSRELEASE = 4

PERF_TYPE_TRACEPOINT = 2
PERF_RECORD_LOST = 2
PERF_RECORD_COMM = 3
PERF_RECORD_EXIT = 4
PERF_RECORD_FORK = 7
PERF_RECORD_SAMPLE = 9
PERF_RECORD_LOST_SAMPLES = 13
PERF_RECORD_COMPRESSED = 81

# sample_type bits (perf_event.h)
S_IP = 1 << 0
S_TID = 1 << 1
S_TIME = 1 << 2
S_ADDR = 1 << 3
S_READ = 1 << 4
S_CALLCHAIN = 1 << 5
#: callchain context markers (include/uapi/linux/perf_event.h, enum perf_callchain_context)
PERF_CONTEXT_KERNEL = 2**64 - 128
PERF_CONTEXT_MAX = 2**64 - 4095
S_ID = 1 << 6
S_CPU = 1 << 7
S_PERIOD = 1 << 8
S_STREAM_ID = 1 << 9
S_RAW = 1 << 10
S_IDENTIFIER = 1 << 16
ATTR_SAMPLE_ID_ALL = 1 << 18  # bit of perf_event_attr's flags word

# read_format bits
R_TOTAL_TIME_ENABLED = 1 << 0
R_TOTAL_TIME_RUNNING = 1 << 1
R_ID = 1 << 2
R_GROUP = 1 << 3
R_LOST = 1 << 4

#: samples decoded per block
BLOCK_RECORDS = 1 << 20


@njit(cache=True, nogil=True)
def _samples(  # type: ignore[no-untyped-def]
    buf, rec_off, sample_type, read_words, big, t_out, cpu_out, tid_out, raw_off, raw_size,
    chain_off,
):  # fmt: skip
    """Time (ns), cpu, tid, RAW payload (offset, bytes) and callchain of each sample.

    ``chain_off``: byte offset of the callchain's u64 ``nr`` (then ``nr`` u64
    ips), or -1 without PERF_SAMPLE_CALLCHAIN.

    Returns the index of the first record whose fields run past its size, or -1.
    """
    for i in range(rec_off.shape[0]):
        p = rec_off[i]
        end = p + BK.read_u(buf, p + 6, 2, big)
        p += 8
        if sample_type & S_IDENTIFIER:
            p += 8
        if sample_type & S_IP:
            p += 8
        tid_out[i] = -1
        if sample_type & S_TID:
            tid_out[i] = BK.read_u(buf, p + 4, 4, big)
            p += 8
        t_out[i] = 0
        if sample_type & S_TIME:
            t_out[i] = BK.read_u(buf, p, 8, big)
            p += 8
        if sample_type & S_ADDR:
            p += 8
        if sample_type & S_ID:
            p += 8
        if sample_type & S_STREAM_ID:
            p += 8
        cpu_out[i] = 0
        if sample_type & S_CPU:
            cpu_out[i] = BK.read_u(buf, p, 4, big)
            p += 8
        if sample_type & S_PERIOD:
            p += 8
        if sample_type & S_READ:
            if read_words < 0:  # PERF_FORMAT_GROUP: nr, then nr entries of -read_words words
                nr = BK.read_u(buf, p, 8, big)
                p += 8 + nr * 8 * (-read_words)
            else:
                p += 8 * read_words
        chain_off[i] = -1
        if sample_type & S_CALLCHAIN:
            chain_off[i] = p
            nr = BK.read_u(buf, p, 8, big)
            p += 8 + 8 * nr
        raw_off[i] = -1
        raw_size[i] = 0
        if sample_type & S_RAW:
            if p + 4 > end:
                return i
            raw_size[i] = BK.read_u(buf, p, 4, big)
            raw_off[i] = p + 4
            if p + 4 + raw_size[i] > end:
                return i
    return -1


class PerfData:
    """A perf.data file opened for reading; ``blocks()`` streams its tracepoint samples."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.name = str(path)
        self._file = open(self.path, "rb")
        try:
            size = self.path.stat().st_size
            if size < 104:
                raise BadInputError(
                    f"byte offset 0: truncated: {size} bytes, a perf.data header is 104",
                    file=self.name,
                )
            self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        except BaseException:
            self._file.close()
            raise
        self.raw = np.frombuffer(self._map, np.uint8)
        self.formats = FormatTable()
        self.comm_names: list[str] = ["swapper"]
        self._comm_ids: dict[str, int] = {"swapper": 0}
        self.kallsyms = ""
        self.osrelease: str | None = None
        #: events PERF_RECORD_LOST_SAMPLES reports lost (perf record's totals)
        self.lost_samples = 0
        self._parse()
        self.symbol = Symbols(self.kallsyms or self._running_kallsyms)

    def _u(self, off: int, n: int, what: str) -> int:
        if off < 0 or off + n > self.raw.shape[0]:
            raise BadInputError(
                f"{what}, byte offset {off}: truncated: the file ends at byte {self.raw.shape[0]}",
                file=self.name,
            )
        return int.from_bytes(bytes(self.raw[off : off + n]), "big" if self.big else "little")

    def _parse(self) -> None:
        magic = bytes(self.raw[:8])
        if magic == PERF_MAGIC:
            self.big = False
        elif magic == PERF_MAGIC[::-1]:
            self.big = True
        else:
            raise BadInputError(f"byte offset 0: not a perf.data (magic {magic!r})", file=self.name)
        hsize = self._u(8, 8, "header")
        if hsize == 16:
            raise BadInputError(
                "byte offset 8: a piped perf.data (perf record -o -) is not read: record to a file",
                file=self.name,
            )
        self.attr_size = self._u(16, 8, "header")
        attrs_off, attrs_size = self._u(24, 8, "header"), self._u(32, 8, "header")
        self.data_off, self.data_size = self._u(40, 8, "header"), self._u(48, 8, "header")
        feats = [self._u(72 + 8 * k, 8, "header") for k in range(4)]
        if self.data_off + self.data_size > self.raw.shape[0]:
            raise BadInputError(
                f"data section, byte offset {self.data_off}: truncated: {self.data_size} bytes of "
                f"records, the file ends at byte {self.raw.shape[0]}",
                file=self.name,
            )
        # attributes and their sample ids
        self.attrs: list[dict[str, int]] = []
        self.id_attr: dict[int, int] = {}
        if self.attr_size < 16 + 64:
            raise BadInputError(
                f"header, byte offset 16: attr size {self.attr_size}", file=self.name
            )
        for k in range(attrs_size // self.attr_size):
            a = attrs_off + k * self.attr_size
            what = f"attrs section, attr {k}"
            attr = {
                "type": self._u(a, 4, what),
                "config": self._u(a + 8, 8, what),
                "sample_type": self._u(a + 24, 8, what),
                "read_format": self._u(a + 32, 8, what),
                "flags": self._u(a + 40, 8, what),
            }
            ids_off = self._u(a + self.attr_size - 16, 8, what)
            ids_size = self._u(a + self.attr_size - 8, 8, what)
            for j in range(ids_size // 8):
                self.id_attr[self._u(ids_off + 8 * j, 8, what)] = k
            self.attrs.append(attr)
        # feature sections
        bits = [b for b in range(256) if feats[b // 64] >> (b % 64) & 1]
        table = self.data_off + self.data_size
        sections = {
            b: (
                self._u(table + 16 * j, 8, "feature table"),
                self._u(table + 16 * j + 8, 8, "feature table"),
            )
            for j, b in enumerate(bits)
        }
        if HEADER_TRACING_DATA not in sections:
            raise BadInputError(
                "the perf.data has no tracing-data feature section (HEADER_TRACING_DATA): "
                "it was not recorded with tracepoint events (perf record -e kmem:...)",
                file=self.name,
            )
        if HEADER_OSRELEASE in sections:
            o, s = sections[HEADER_OSRELEASE]
            if o + s <= self.raw.shape[0] and s > 4:
                self.osrelease = (
                    bytes(self.raw[o + 4 : o + s]).split(b"\0")[0].decode("utf-8", "replace")
                )
        self._tracing_data(*sections[HEADER_TRACING_DATA])
        tp = [a for a in self.attrs if a["type"] == PERF_TYPE_TRACEPOINT]
        if not tp:
            raise BadInputError(
                "the perf.data has no tracepoint event (attr type 2)", file=self.name
            )
        self.sample_types = {a["sample_type"] for a in self.attrs}
        for a in tp:
            if not a["sample_type"] & S_RAW:
                raise BadInputError(
                    f"tracepoint attr (config {a['config']}) samples without PERF_SAMPLE_RAW: "
                    "its records' fields were not recorded",
                    file=self.name,
                    field="sample_type",
                )

    def _tracing_data(self, off: int, size: int) -> None:
        what = "tracing-data feature section"
        if off + size > self.raw.shape[0]:
            raise BadInputError(f"{what}, byte offset {off}: truncated", file=self.name)
        from replay.trace.tracedat import MAGIC, Reader

        r = Reader(memoryview(self._map)[off : off + size], self.name, False, base=off, what=what)
        if r.bytes(10) != MAGIC:
            raise r.fail("no tracing-data magic", 0)
        r.cstr()  # version, "0.6"
        r.big = r.uint(1) == 1
        r.uint(1)  # long size
        r.uint(4)  # page size
        if r.bytes(12) != b"header_page\0":
            raise r.fail("expected 'header_page'")
        self.header = parse_header_page(r.bytes(r.uint(8)).decode("utf-8", "replace"), self.name)
        if r.bytes(13) != b"header_event\0":
            raise r.fail("expected 'header_event'")
        r.bytes(r.uint(8))
        for _ in range(r.uint(4)):
            self.formats.add(r.bytes(r.uint(8)).decode("utf-8", "replace"), "ftrace", self.name)
        for _ in range(r.uint(4)):
            system = r.cstr()
            for _ in range(r.uint(4)):
                text = r.bytes(r.uint(8)).decode("utf-8", "replace")
                self.formats.add(text, system, f"{self.name}: events/{system} format")
        if r.pos < len(r.data):
            self.kallsyms = r.bytes(r.uint(4)).decode("utf-8", "replace")

    # -- records ---------------------------------------------------------------
    @property
    def big_endian(self) -> bool:
        return self.big

    def _intern(self, name: str) -> int:
        k = self._comm_ids.get(name)
        if k is None:
            k = self._comm_ids[name] = len(self.comm_names)
            self.comm_names.append(name)
        return k

    def comm_index(self, pid: np.ndarray) -> np.ndarray:
        """Names by pid alone (``:pid``, ``swapper``): blocks normally carry their comm column."""
        return np.array([self._intern(f":{p}" if p else "swapper") for p in pid.tolist()], np.int32)

    def describe(self) -> str:
        ncpu = len({int(c) for c in getattr(self, "_cpus", [])}) or None
        return "perf.data" + (f", {ncpu} CPUs" if ncpu else "")

    def kernel(self) -> str | None:
        return self.osrelease

    def meta(self) -> dict[str, object]:
        return {
            "container": "perf.data",
            "attrs": [{k: int(v) for k, v in a.items()} for a in self.attrs],
            "osrelease": self.osrelease,
            "lost_samples": self.lost_samples,
        }

    def _sample_layout(self) -> tuple[int, int]:
        """The tracepoint samples' sample_type and read-format words (one for all attrs)."""
        tp = {a["sample_type"] for a in self.attrs if a["type"] == PERF_TYPE_TRACEPOINT}
        if len(tp) != 1:
            raise BadInputError(
                f"tracepoint attrs with different sample_type values {sorted(tp)}", file=self.name,
                field="sample_type",
            )  # fmt: skip
        st = tp.pop()
        rf = {a["read_format"] for a in self.attrs if a["type"] == PERF_TYPE_TRACEPOINT}.pop()
        per = 1 + bool(rf & R_ID) + bool(rf & R_LOST)
        if rf & R_GROUP:
            words = -per
        else:
            words = per + bool(rf & R_TOTAL_TIME_ENABLED) + bool(rf & R_TOTAL_TIME_RUNNING)
        return st, words

    def _sample_id(self, attr: dict[str, int]) -> list[str]:
        """The sample_id trailer fields of non-sample records, in order."""
        st = attr["sample_type"]
        out = []
        for bit, name in ((S_TID, "tid"), (S_TIME, "time"), (S_ID, "id"), (S_STREAM_ID, "stream"),
                          (S_CPU, "cpu"), (S_IDENTIFIER, "identifier")):  # fmt: skip
            if st & bit:
                out.append(name)
        return out

    def blocks(self) -> Iterator[RecordBlock]:
        """The tracepoint samples in time order (file order on ties), in blocks."""
        buf = self.raw
        start, end = self.data_off, self.data_off + self.data_size
        cap = self.data_size // 8 + 1
        rec_off = np.empty(cap, np.int64)
        rec_type = np.empty(cap, np.int64)
        rec_size = np.empty(cap, np.int64)
        n, bad = BK.scan_perf_records(buf, start, end, self.big, rec_off, rec_type, rec_size)
        if bad >= 0:
            raise BadInputError(
                f"data section, byte offset {bad}: a record header with size "
                f"{self._u(bad + 6, 2, 'data section') if bad + 8 <= end else 0} runs past the "
                f"data's end at byte {end} (truncated or corrupt)",
                file=self.name,
            )
        rec_off, rec_type = rec_off[:n].copy(), rec_type[:n]
        del rec_size
        if np.any(rec_type == PERF_RECORD_COMPRESSED):
            raise BadInputError(
                "data section: compressed records (perf record -z) are not read: record without -z",
                file=self.name,
            )
        samp = np.flatnonzero(rec_type == PERF_RECORD_SAMPLE)
        st, words = self._sample_layout()
        s_off = rec_off[samp]
        m = s_off.size
        t = np.empty(m, np.int64)
        cpu = np.empty(m, np.int64)
        tid = np.empty(m, np.int64)
        raw_off = np.empty(m, np.int64)
        raw_size = np.empty(m, np.int64)
        chain = np.empty(m, np.int64)
        badi = _samples(buf, s_off, st, words, self.big, t, cpu, tid, raw_off, raw_size, chain)
        if badi >= 0:
            raise BadInputError(
                f"data section, byte offset {int(s_off[badi])}: a sample's fields run past its "
                "record (corrupt record)",
                file=self.name,
            )
        tp_ok = raw_off >= 0  # samples of non-tracepoint events have no RAW data
        # side-band records: names, forks, losses (few: Python)
        side = np.flatnonzero(
            (rec_type == PERF_RECORD_COMM) | (rec_type == PERF_RECORD_FORK)
            | (rec_type == PERF_RECORD_LOST) | (rec_type == PERF_RECORD_LOST_SAMPLES)
        )  # fmt: skip
        trailer = self._sample_id(self.attrs[0])
        changes: list[tuple[int, int, int, int]] = []  # (time, file order, tid, comm index)
        forks: list[tuple[int, int, int, int]] = []  # (time, order, child tid, parent tid)
        losses: list[tuple[int, int, int, int]] = []  # (time, order, cpu, count)
        comm_ids: dict[str, int] = {"swapper": 0}
        for j in side.tolist():
            p = int(rec_off[j])
            typ = int(rec_type[j])
            size = self._u(p + 6, 2, "data section")
            body = p + 8
            tail = self._trailer(p + size, trailer, typ)
            when = tail.get("time", 0)
            if typ == PERF_RECORD_COMM:
                ttid = self._u(body + 4, 4, "COMM record")
                raw = bytes(buf[body + 8 : p + size])
                name = raw.split(b"\0")[0].decode("utf-8", "replace")
                k = comm_ids.setdefault(name, len(comm_ids))
                changes.append((when, j, ttid, k))
            elif typ == PERF_RECORD_FORK:
                ctid = self._u(body + 8, 4, "FORK record")
                ptid = self._u(body + 12, 4, "FORK record")
                when = self._u(body + 16, 8, "FORK record")
                forks.append((when, j, ctid, ptid))
            elif typ == PERF_RECORD_LOST:
                count = self._u(body + 8, 8, "LOST record")
                losses.append((when, j, int(tail.get("cpu", -1)), count))
            else:
                # perf record's end-of-run totals per event and CPU (PERF_FORMAT_LOST):
                # the same losses as the LOST records, which perf script prints
                self.lost_samples += self._u(body, 8, "LOST_SAMPLES record")
        self.comm_names = list(comm_ids)
        self._comm_ids = comm_ids
        # apply forks in time order: the child takes its parent's name at that time
        comm_table = _CommTable(changes)
        for when, j, ctid, ptid in sorted(forks):
            k = comm_table.at(ptid, when, j)
            if k is not None:
                comm_table.add(when, j, ctid, k)
        keep = np.flatnonzero(tp_ok)
        order_key = samp[keep]  # file order of the samples kept
        ts = t[keep]
        srt = np.lexsort((order_key, ts))
        sel = keep[srt]
        self._cpus = np.unique(cpu[sel])
        # a loss is printed in time order among the samples (file order on ties)
        loss_arr = sorted(losses)
        li = 0
        for b in range(0, sel.size, BLOCK_RECORDS):
            part = sel[b : b + BLOCK_RECORDS]
            pts = t[part]
            last = b + BLOCK_RECORDS >= sel.size
            marks: list[tuple[int, int, int]] = []
            while li < len(loss_arr):
                when, j, lcpu, count = loss_arr[li]
                at = int(np.searchsorted(pts, when, side="left"))
                while at < part.size and pts[at] == when and samp[part[at]] < j:
                    at += 1
                if at >= part.size and not last:
                    break
                marks.append((at, lcpu, count))
                li += 1
            comm = comm_table.lookup(tid[part], pts, samp[part], self._intern)
            yield RecordBlock(
                buf=buf, off=raw_off[part], size=raw_size[part], ts_ns=pts,
                cpu=cpu[part].astype(np.int32), lost=np.zeros(part.size, np.int64), comm=comm,
                marks=marks, stacks=self._callchains(chain[part]) if st & S_CALLCHAIN else None,
            )  # fmt: skip

    def _running_kallsyms(self) -> str:
        """/proc/kallsyms when the file has none and was recorded on the running kernel.

        perf record keeps no symbols with tracepoint data; ``perf script``
        resolves a callchain's kernel ips from the running kernel's kallsyms
        too (the same boot's: KASLR moves them at each boot).
        """
        if self.osrelease is None or self.osrelease != platform.release():
            return ""
        try:
            return Path("/proc/kallsyms").read_text(errors="replace")
        except OSError:
            return ""

    def _callchains(self, chain_off: np.ndarray) -> list[tuple[int, tuple[str, ...]]]:
        """Each sample's kernel callchain (``perf record -g``), symbolized, innermost first.

        The chain is context markers (PERF_CONTEXT_KERNEL, _USER, ...: the top
        4095 values of a u64) followed by that context's ips; the kernel
        context's ips are kept. Returns (record index in the block, frames).
        """
        out: list[tuple[int, tuple[str, ...]]] = []
        names: dict[int, str] = {}
        seen: dict[tuple[int, ...], tuple[str, ...]] = {}
        order = "big" if self.big else "little"
        raw = self._map
        for i, p in enumerate(chain_off.tolist()):
            if p < 0:
                continue
            nr = int.from_bytes(raw[p : p + 8], order)
            ips = np.frombuffer(raw, dtype=">u8" if self.big else "<u8", count=nr, offset=p + 8)
            kernel: list[int] = []
            ctx = PERF_CONTEXT_KERNEL
            for ip in ips.tolist():
                if ip >= PERF_CONTEXT_MAX:
                    ctx = ip
                elif ctx == PERF_CONTEXT_KERNEL:
                    kernel.append(ip)
            key = tuple(kernel)
            frames = seen.get(key)
            if frames is None:
                for a in key:
                    if a not in names:
                        names[a] = self.symbol(a)
                frames = seen[key] = tuple(names[a] for a in key)
            if frames:
                out.append((i, frames))
        return out

    def _trailer(self, end: int, names: list[str], typ: int) -> dict[str, int]:
        """The sample_id fields at the end of a non-sample record (sample_id_all)."""
        if not (self.attrs[0]["flags"] & ATTR_SAMPLE_ID_ALL) or not names:
            return {}
        size = 8 * len(names)
        p = end - size
        out = {}
        for name in names:
            if name == "tid":
                out["tid"] = self._u(p + 4, 4, "record")
            elif name == "cpu":
                out["cpu"] = self._u(p, 4, "record")
            else:
                out[name] = self._u(p, 8, "record")
            p += 8
        return out

    def close(self) -> None:
        self.raw = np.zeros(0, np.uint8)
        self._map.close()
        self._file.close()


class _CommTable:
    """Each tid's task-name changes in time order; a sample takes the last one before it."""

    def __init__(self, changes: list[tuple[int, int, int, int]]) -> None:
        self.by_tid: dict[int, list[tuple[int, int, int]]] = {}
        for when, j, tid, k in changes:
            self.add(when, j, tid, k)

    def add(self, when: int, j: int, tid: int, k: int) -> None:
        self.by_tid.setdefault(tid, []).append((when, j, k))

    def at(self, tid: int, when: int, j: int) -> int | None:
        best = None
        for w, jj, k in sorted(self.by_tid.get(tid, [])):
            if (w, jj) <= (when, j):
                best = k
        return best

    def lookup(
        self, tid: np.ndarray, ts: np.ndarray, order: np.ndarray, intern: Callable[[str], int]
    ) -> np.ndarray:
        """comm index per sample (``intern`` names a new string); a tid never named gets
        ``:tid`` as perf prints it, tid 0 ``swapper``."""
        out = np.zeros(tid.size, np.int32)
        uniq, inv = np.unique(tid, return_inverse=True)
        inv = inv.reshape(-1)
        by = np.argsort(inv, kind="stable")
        groups = np.split(by, np.flatnonzero(np.diff(inv[by])) + 1) if by.size else []
        for t_id, rows in zip(uniq.tolist(), groups, strict=True):
            hist = sorted(self.by_tid.get(t_id, []))
            default = intern(f":{t_id}" if t_id else "swapper")
            if not hist:
                out[rows] = default
                continue
            keys_t = np.array([h[0] for h in hist], np.int64)
            keys_j = np.array([h[1] for h in hist], np.int64)
            ks = np.array([h[2] for h in hist], np.int32)
            st, so = ts[rows], order[rows]
            pos = np.searchsorted(keys_t, st, side="right") - 1
            # same time: a change later in the file than the sample comes after it
            while True:
                at = np.maximum(pos, 0)
                fix = (pos >= 0) & (keys_t[at] == st) & (keys_j[at] > so)
                if not fix.any():
                    break
                pos[fix] -= 1
            out[rows] = np.where(pos >= 0, ks[np.maximum(pos, 0)], default)
        return out
