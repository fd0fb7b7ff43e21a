"""numba kernels of the binary decoder: ring-buffer pages, field reads, the CPU merge.

A ring-buffer page (kernel/trace/ring_buffer.c, as ``events/header_page``
describes it) is a u64 timestamp, a ``commit`` word (the bytes of data in
its low 27 bits, bit 31 set when events were lost before this page, bit 30
when their count is stored as a long right after the data) and the data:
events with a u32 header, ``type_len`` in its low 5 bits and ``time_delta``
in the high 27. type_len 1..28 is a data record of type_len*4 bytes; 0 a data
record whose length (plus 4) is in the next u32; 29 padding (a discarded
event, its length in the next u32); 30 a time extend (the next u32 holds
bits 27.. of the delta); 31 an absolute timestamp (same encoding, the top 5
bits kept from the current time). Every header's time_delta is added to the
running time, as libtraceevent's kbuffer does.
"""

from __future__ import annotations

import numpy as np

from replay.jit import njit

TYPE_PADDING = 29
TYPE_TIME_EXTEND = 30
TYPE_TIME_STAMP = 31
COMMIT_MASK = (1 << 27) - 1
MISSED_EVENTS = 1 << 31
MISSED_STORED = 1 << 30
TS_MSB = np.int64(-576460752303423488)  # 0xf8 << 56: bits an absolute stamp does not hold

#: error codes of walk_pages
E_OK = 0
E_BAD_COMMIT = 1  # commit larger than the page
E_BAD_EVENT = 2  # an event runs past the page's data


@njit(cache=True, inline="always")
def read_u(buf, p, size, big):  # type: ignore[no-untyped-def]
    """Unsigned integer of ``size`` bytes at buf[p], as int64 (u64 wraps)."""
    v = np.int64(0)
    if big:
        for k in range(size):
            v = (v << 8) | np.int64(buf[p + k])
    else:
        for k in range(size - 1, -1, -1):
            v = (v << 8) | np.int64(buf[p + k])
    return v


@njit(cache=True, nogil=True)
def walk_pages(  # type: ignore[no-untyped-def]
    buf, start, end, page_size, ts_off, commit_off, commit_size, data_off, big,
    out_off, out_len, out_ts, out_lost, err,
):  # fmt: skip
    """Decode the pages in buf[start:end] into records; returns the record count.

    Per record: ``out_off`` (byte offset of its payload in ``buf``),
    ``out_len`` (payload bytes), ``out_ts`` (ns, or the clock's units) and
    ``out_lost`` (events lost just before it: 0, a count, or -1 when the
    kernel did not store the count; only the first record of a page after a
    loss carries it). On a malformed page, ``err[0]`` gets the code and
    ``err[1]`` the byte offset, and the records before it are returned.
    """
    n = 0
    cap = out_off.shape[0]
    p = start
    while p + data_off <= end:
        ts = read_u(buf, p + ts_off, 8, big)
        commit = read_u(buf, p + commit_off, commit_size, big)
        size = commit & COMMIT_MASK
        base = p + data_off
        if base + size > p + page_size or base + size > end:
            err[0] = E_BAD_COMMIT
            err[1] = p + commit_off
            return n
        lost = np.int64(0)
        if commit & MISSED_EVENTS:
            if commit & MISSED_STORED:
                lost = read_u(buf, base + size, commit_size, big)
            else:
                lost = np.int64(-1)
        q = 0
        while q < size:
            if base + q + 4 > base + size:
                err[0] = E_BAD_EVENT
                err[1] = base + q
                return n
            hdr = read_u(buf, base + q, 4, big)
            if big:
                type_len = (hdr >> 27) & 31
                delta = hdr & 0x7FFFFFF
            else:
                type_len = hdr & 31
                delta = (hdr >> 5) & 0x7FFFFFF
            if type_len == TYPE_PADDING:
                length = read_u(buf, base + q + 4, 4, big) if q + 8 <= size else np.int64(0)
                ts += delta
                q += 4 + length
                continue
            if type_len == TYPE_TIME_EXTEND or type_len == TYPE_TIME_STAMP:
                ext = read_u(buf, base + q + 4, 4, big)
                d = (ext << 27) + delta
                if type_len == TYPE_TIME_STAMP:
                    ts = d | (ts & TS_MSB)
                else:
                    ts += d
                q += 8
                continue
            if type_len == 0:
                length = read_u(buf, base + q + 4, 4, big) - 4
                length = (length + 3) & ~np.int64(3)
                payload = base + q + 8
            else:
                length = type_len * 4
                payload = base + q + 4
            if length < 0 or payload + length > base + size:
                err[0] = E_BAD_EVENT
                err[1] = base + q
                return n
            ts += delta
            if n >= cap:
                err[0] = -1  # caller's arrays are too small (cannot happen: sized by bytes/4)
                return n
            out_off[n] = payload
            out_len[n] = length
            out_ts[n] = ts
            out_lost[n] = lost
            lost = 0
            n += 1
            q = payload + length - base
        p += page_size
    return n


@njit(cache=True, nogil=True)
def read_field(buf, offs, field_off, size, signed, big, out):  # type: ignore[no-untyped-def]
    """out[i] = the integer of ``size`` bytes at buf[offs[i] + field_off] (sign-extended)."""
    shift = 64 - 8 * size
    for i in range(offs.shape[0]):
        v = read_u(buf, offs[i] + field_off, size, big)
        if signed and size < 8:
            v = (v << shift) >> shift
        out[i] = v


@njit(cache=True, nogil=True)
def merge_streams(ts, starts, ends, more, out):  # type: ignore[no-untyped-def]
    """Merge per-CPU record streams as trace-cmd's tracecmd_iterate_events_multi does.

    Stream k holds ts[starts[k]:ends[k]]. Each step takes the head with the
    smallest timestamp, the lowest stream on ties (streams are in buffer and
    then CPU order). Stops when every stream is done, or when a stream whose
    ``more`` flag is set runs out (its next records are not loaded yet).
    Writes the taken indices to ``out`` and returns their count; ``starts``
    is advanced in place.
    """
    k = starts.shape[0]
    n = 0
    while True:
        best = -1
        best_ts = np.int64(0)
        for s in range(k):
            if starts[s] >= ends[s]:
                if more[s]:
                    return n
                continue
            t = ts[starts[s]]
            if best < 0 or t < best_ts:
                best = s
                best_ts = t
        if best < 0:
            return n
        out[n] = starts[best]
        starts[best] += 1
        n += 1


@njit(cache=True, nogil=True)
def scan_perf_records(buf, start, end, big, rec_off, rec_type, rec_size):  # type: ignore[no-untyped-def]
    """Split perf.data's data section buf[start:end] into records (perf_event_header).

    Returns (count, error offset or -1): a header with a size under 8 bytes or
    running past ``end`` stops the scan there.
    """
    n = 0
    p = start
    while p + 8 <= end:
        typ = read_u(buf, p, 4, big)
        size = read_u(buf, p + 6, 2, big)
        if size < 8 or p + size > end:
            return n, p
        rec_off[n] = p
        rec_type[n] = typ
        rec_size[n] = size
        n += 1
        p += size
    if p != end:
        return n, p
    return n, -1
