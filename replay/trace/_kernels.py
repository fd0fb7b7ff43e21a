"""numba kernels of the ftrace ingester: line parsing and pairing into objects.

Everything here works on byte offsets into one chunk of text (a uint8 array)
and fills preallocated numpy arrays; no Python objects per line. The Python
driver (replay.trace.ftrace) owns chunking, error messages and Arrow output.

Line header, as printed by kernel/trace/trace_output.c (print_trace_fmt ->
trace_print_context / lat_print_generic):
``comm-pid [(tgid)] [cpu] [flags] secs.usecs: event: payload``.
"""

from __future__ import annotations

import numpy as np

from replay.jit import njit
from replay.trace.schema import MAX_PFN

MISSING = np.int64(-(2**63))

# Event codes (index into EVENT_NAMES).
EV_OTHER = 0
EV_ALLOC = 1  # mm_page_alloc
EV_FREE = 2  # mm_page_free (3.3+)
EV_FREE_BATCHED = 3  # mm_page_free_batched (3.3+), a duplicate of a free
EV_FREE_DIRECT = 4  # mm_page_free_direct (before 3.3)
EV_PAGEVEC_FREE = 5  # mm_pagevec_free (before 3.3), a free of its own
EV_ZONE_LOCKED = 6  # mm_page_alloc_zone_locked
EV_PCPU_DRAIN = 7  # mm_page_pcpu_drain
EV_EXTFRAG = 8  # mm_page_alloc_extfrag
EV_MARK = 9  # tracing_mark_write
EVENT_NAMES = (
    "",
    "mm_page_alloc",
    "mm_page_free",
    "mm_page_free_batched",
    "mm_page_free_direct",
    "mm_pagevec_free",
    "mm_page_alloc_zone_locked",
    "mm_page_pcpu_drain",
    "mm_page_alloc_extfrag",
    "tracing_mark_write",
)

# Payload fields parsed into typed columns for the kmem page events.
FIELD_NAMES = (
    "page",
    "pfn",
    "order",
    "migratetype",
    "percpu_refill",
    "alloc_order",
    "fallback_order",
    "pageblock_order",
    "alloc_migratetype",
    "fallback_migratetype",
    "fragmenting",
    "change_ownership",
    "cold",
    "gfp_flags",
)
F_PAGE = 0
F_PFN = 1
F_ORDER = 2
F_MIGRATETYPE = 3
F_COLD = 12
F_GFP = 13
N_INT_FIELDS = 13  # all but gfp_flags, which is kept as a byte span

# Line kinds.
K_EVENT = 0
K_BLANK = 1  # blank or '#' comment line
K_OTHER = 2  # not an event line: lost-events notice, preamble or garbage

# Field error kinds.
E_NONE = 0
E_NOT_INT = 1
E_MISSING = 2
E_RANGE = 3

MAX_ORDER = 10  # MAX_PAGE_ORDER
MAX_MIGRATETYPE = 5  # MIGRATE_ISOLATE, the last of enum migratetype (-1: unknown)
MAX_TS_SECS = 9223372035  # the most whole seconds whose ns fit in int64 (with any fraction)
INT16_MAX = 32767
INT32_MAX = 2147483647
INT64_MAX = 9223372036854775807

# Header fields an error can name (err_field codes past FIELD_NAMES; see header_field_name).
H_TIMESTAMP = 100
H_CPU = 101
H_PID = 102
H_TGID = 103
HEADER_FIELD_NAMES = {H_TIMESTAMP: "timestamp", H_CPU: "cpu", H_PID: "pid", H_TGID: "tgid"}

# _parse_int statuses.
INT_OK = 0
INT_BAD = 1
INT_OVERFLOW = 2


def name_table(names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Pack names into a zero-padded 2-D uint8 table plus lengths, for the kernels."""
    width = max(len(n) for n in names) or 1
    table = np.zeros((len(names), width), dtype=np.uint8)
    lens = np.zeros(len(names), dtype=np.int64)
    for i, n in enumerate(names):
        raw = n.encode()
        table[i, : len(raw)] = np.frombuffer(raw, dtype=np.uint8)
        lens[i] = len(raw)
    return table, lens


@njit(cache=True, inline="always")
def _is_digit(c: int) -> bool:
    return 48 <= c <= 57


@njit(cache=True, inline="always")
def _is_space(c: int) -> bool:
    return c == 32 or c == 9 or c == 13


@njit(cache=True, inline="always")
def _is_keychar(c: int) -> bool:
    return (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122) or c == 95


@njit(cache=True)
def _match(buf, s, e, table, lens) -> int:  # type: ignore[no-untyped-def]
    """Index of the name equal to buf[s:e] in the table, or -1."""
    n = e - s
    for i in range(table.shape[0]):
        if lens[i] != n or n == 0:
            continue
        ok = True
        for j in range(n):
            if buf[s + j] != table[i, j]:
                ok = False
                break
        if ok:
            return i
    return -1


@njit(cache=True)
def _parse_int(buf, s, e):  # type: ignore[no-untyped-def]
    """Parse a decimal or 0x-hex integer in buf[s:e]; returns (status, value, is_hex).

    status is INT_OK, INT_BAD (not an integer) or INT_OVERFLOW (an integer whose
    magnitude does not fit in int64: the value is 0, never a wrapped one).
    """
    neg = False
    p = s
    if p < e and buf[p] == 45:  # '-'
        neg = True
        p += 1
    if p >= e:
        return INT_BAD, np.int64(0), False
    base = 10
    ishex = False
    if p + 1 < e and buf[p] == 48 and (buf[p + 1] == 120 or buf[p + 1] == 88):  # 0x
        p += 2
        base = 16
        ishex = True
        if p >= e:
            return INT_BAD, np.int64(0), True
    v = np.int64(0)
    over = False
    while p < e:
        c = buf[p]
        if 48 <= c <= 57:
            d = c - 48
        elif base == 16 and 97 <= c <= 102:
            d = c - 87
        elif base == 16 and 65 <= c <= 70:
            d = c - 55
        else:
            return INT_BAD, np.int64(0), ishex
        if not over:
            if v > (np.int64(INT64_MAX) - d) // base:
                over = True  # go on: a later non-digit still makes it not an integer
            else:
                v = v * base + d
        p += 1
    if over:
        return INT_OVERFLOW, np.int64(0), ishex
    return INT_OK, -v if neg else v, ishex


@njit(cache=True)
def _page_is_null(buf, s, e) -> bool:  # type: ignore[no-untyped-def]
    """True for '(null)' or an all-zero pointer (a failed allocation's page)."""
    if e - s >= 6 and buf[s] == 40:  # '('
        return True
    p = s
    if p + 1 < e and buf[p] == 48 and (buf[p + 1] == 120 or buf[p + 1] == 88):
        p += 2
    if p >= e:
        return False
    while p < e:
        if buf[p] != 48:
            return False
        p += 1
    return True


@njit(cache=True, nogil=True)
def parse_lines(  # type: ignore[no-untyped-def]
    buf,
    starts,
    ends,
    ev_table,
    ev_lens,
    key_table,
    key_lens,
    kind,
    comm_s,
    comm_e,
    pid,
    tgid,
    cpu,
    flags_len,
    ts_ns,
    code,
    ev_s,
    ev_e,
    pay_s,
    pay_e,
    fields,
    gfp_s,
    gfp_e,
    err_field,
    err_kind,
    pfn_hex,
    n_untyped,
):
    """Parse every line [starts[i], ends[i]) of ``buf`` into the output arrays.

    Header: comm (byte span), pid, tgid (-1 if no TGID column or ``(-------)``),
    cpu, flags_len (0, or the width of the latency-flags column), ts_ns (ns).
    Event: code (EV_*), name and payload spans. For kmem page events
    (codes 1..8) the payload's key=value pairs fill ``fields`` (MISSING when
    absent; ``page`` holds 1 for a null page, else 0) and the gfp_flags span;
    err_field/err_kind report the first bad or missing field (-1/E_NONE if
    none). pfn_hex is 1 when pfn was printed as 0x-hex, 0 for decimal, -1 if absent.
    n_untyped counts a kmem event's key=value pairs that have no typed column
    (-1 for other events), so aux rows without any skip the args pass.
    """
    n = starts.shape[0]
    nf = fields.shape[1]
    for i in range(n):
        s = starts[i]
        e = ends[i]
        while e > s and _is_space(buf[e - 1]):
            e -= 1
        for f in range(nf):
            fields[i, f] = MISSING
        err_field[i] = -1
        err_kind[i] = E_NONE
        code[i] = EV_OTHER
        gfp_s[i] = 0
        gfp_e[i] = 0
        pfn_hex[i] = -1
        n_untyped[i] = -1
        tgid[i] = -1
        flags_len[i] = 0
        p = s
        while p < e and _is_space(buf[p]):
            p += 1
        if p >= e or buf[p] == 35:  # '#'
            kind[i] = K_BLANK
            continue
        kind[i] = K_OTHER
        # Find the [cpu] column: the first "[digits]" preceded by a space whose
        # left side ends in "-pid" (optionally followed by a "(tgid)" column).
        q = p + 1
        found = False
        after = 0
        while q < e:
            if buf[q] == 91 and _is_space(buf[q - 1]):  # '['
                r = q + 1
                v = 0
                nd = 0
                while r < e and _is_digit(buf[r]):
                    if v <= INT32_MAX:  # past it the value is only "too large": no wrap
                        v = v * 10 + (buf[r] - 48)
                    r += 1
                    nd += 1
                if nd > 0 and r < e and buf[r] == 93:  # ']'
                    b = q - 1
                    while b > p and _is_space(buf[b]):
                        b -= 1
                    ok = True
                    tg = -1
                    if buf[b] == 41:  # ')': the TGID column
                        a = b - 1
                        while a > p and buf[a] != 40:
                            a -= 1
                        if buf[a] != 40:
                            ok = False
                        else:
                            tv = 0
                            tnd = 0
                            for c in range(a + 1, b):
                                if _is_digit(buf[c]):
                                    if tv <= INT32_MAX:
                                        tv = tv * 10 + (buf[c] - 48)
                                    tnd += 1
                            if tnd > 0:
                                tg = tv
                            b = a - 1
                            while b > p and _is_space(buf[b]):
                                b -= 1
                    if ok:
                        d = b
                        while d > p and _is_digit(buf[d]):
                            d -= 1
                        if d < b and d > p and buf[d] == 45:  # '-' before the pid
                            pv = 0
                            for c in range(d + 1, b + 1):
                                if pv <= INT32_MAX:
                                    pv = pv * 10 + (buf[c] - 48)
                            comm_s[i] = p
                            comm_e[i] = d
                            # Values past their column are errors, stored clamped.
                            if v > INT16_MAX:
                                err_field[i] = H_CPU
                                err_kind[i] = E_RANGE
                                v = INT16_MAX
                            if pv > INT32_MAX and err_field[i] < 0:
                                err_field[i] = H_PID
                                err_kind[i] = E_RANGE
                            if tg > INT32_MAX and err_field[i] < 0:
                                err_field[i] = H_TGID
                                err_kind[i] = E_RANGE
                            pid[i] = min(pv, INT32_MAX)
                            tgid[i] = min(tg, INT32_MAX)
                            cpu[i] = v
                            after = r + 1
                            found = True
                            break
            q += 1
        if not found:
            continue
        # Optional latency flags, then the timestamp "secs.frac:".
        x = after
        while x < e and _is_space(buf[x]):
            x += 1
        t0 = x
        while x < e and not _is_space(buf[x]):
            x += 1
        tok_e = x
        if tok_e > t0 and buf[tok_e - 1] != 58:  # not ending in ':' -> flags column
            flags_len[i] = tok_e - t0
            while x < e and _is_space(buf[x]):
                x += 1
            t0 = x
            while x < e and not _is_space(buf[x]):
                x += 1
            tok_e = x
        if tok_e - t0 < 2 or buf[tok_e - 1] != 58:
            continue
        secs = np.int64(0)
        frac = np.int64(0)
        nfrac = 0
        seen_dot = False
        good = True
        nsec = 0
        for c in range(t0, tok_e - 1):
            ch = buf[c]
            if ch == 46 and not seen_dot:
                seen_dot = True
            elif _is_digit(ch):
                if seen_dot:
                    if nfrac < 9:
                        frac = frac * 10 + (ch - 48)
                        nfrac += 1
                else:
                    if secs <= INT64_MAX // 10 - 1:  # past it: "too large", never wrapped
                        secs = secs * 10 + (ch - 48)
                    else:
                        secs = INT64_MAX
                    nsec += 1
            else:
                good = False
                break
        if not good or nsec == 0:
            continue
        if seen_dot:
            for _ in range(9 - nfrac):
                frac *= 10
            if secs > MAX_TS_SECS:
                # ns past int64 (292 years): an error, never a wrapped time
                if err_field[i] < 0:
                    err_field[i] = H_TIMESTAMP
                    err_kind[i] = E_RANGE
                ts_ns[i] = 0
            else:
                ts_ns[i] = secs * 1000000000 + frac
        elif secs == INT64_MAX:  # the clamp above: past int64
            if err_field[i] < 0:
                err_field[i] = H_TIMESTAMP
                err_kind[i] = E_RANGE
            ts_ns[i] = 0
        else:
            ts_ns[i] = secs  # a counter clock: no unit, kept as is
        # Event name "name:".
        while x < e and _is_space(buf[x]):
            x += 1
        n0 = x
        while x < e and _is_keychar(buf[x]):
            x += 1
        if x >= e or buf[x] != 58 or x == n0:
            continue
        ev_s[i] = n0
        ev_e[i] = x
        x += 1
        while x < e and _is_space(buf[x]):
            x += 1
        pay_s[i] = x
        pay_e[i] = e
        kind[i] = K_EVENT
        ec = _match(buf, n0, ev_s[i] + (ev_e[i] - n0), ev_table, ev_lens)
        if ec < 0:
            ec = EV_OTHER
        code[i] = ec
        if ec < EV_ALLOC or ec > EV_EXTFRAG:
            continue
        # kmem page event: generic key=value pairs, never by position.
        n_untyped[i] = 0
        x = pay_s[i]
        while x < e:
            while x < e and (_is_space(buf[x]) or buf[x] == 44):
                x += 1
            ks = x
            while x < e and _is_keychar(buf[x]):
                x += 1
            if x < e and buf[x] == 61 and x > ks:  # '='
                ke = x
                x += 1
                # Old kernels pad %p: "page=          (null)".
                y = x
                while y < e and buf[y] == 32:
                    y += 1
                if y < e and buf[y] == 40:
                    x = y
                vs = x
                if x < e and buf[x] == 40:  # '(' ... ')'
                    while x < e and buf[x] != 41:
                        x += 1
                    if x < e:
                        x += 1
                else:
                    while x < e and not _is_space(buf[x]) and buf[x] != 44:
                        x += 1
                ve = x
                fi = _match(buf, ks, ke, key_table, key_lens)
                if fi < 0 or fi > F_MIGRATETYPE:
                    n_untyped[i] += 1  # goes to the aux args map
                if fi < 0:
                    continue  # unknown (vendor) field
                if fi == F_GFP:
                    gfp_s[i] = vs
                    gfp_e[i] = ve
                elif fi == F_PAGE:
                    fields[i, F_PAGE] = 1 if _page_is_null(buf, vs, ve) else 0
                else:
                    status, val, ishex = _parse_int(buf, vs, ve)
                    if status == INT_OVERFLOW and fi == F_PFN:
                        # Past every pfn: an error below unless the page is null
                        # (2.6-era kernels print page_to_pfn(NULL) for those).
                        status = INT_OK
                        val = INT64_MAX
                    if status != INT_OK:
                        if err_field[i] < 0:
                            err_field[i] = fi
                            err_kind[i] = E_NOT_INT if status == INT_BAD else E_RANGE
                        continue
                    fields[i, fi] = val
                    if fi == F_PFN:
                        pfn_hex[i] = 1 if ishex else 0
            else:
                while x < e and not _is_space(buf[x]):
                    x += 1
        if err_field[i] >= 0:
            continue
        # Required fields and ranges.
        if fields[i, F_PFN] == MISSING:
            err_field[i] = F_PFN
            err_kind[i] = E_MISSING
            continue
        o = fields[i, F_ORDER]
        if o == MISSING and ec != EV_FREE_BATCHED and ec != EV_EXTFRAG:
            err_field[i] = F_ORDER
            err_kind[i] = E_MISSING
            continue
        if o != MISSING and (o < 0 or o > MAX_ORDER):
            err_field[i] = F_ORDER
            err_kind[i] = E_RANGE
            continue
        mt = fields[i, F_MIGRATETYPE]
        if ec == EV_ALLOC and mt == MISSING:
            err_field[i] = F_MIGRATETYPE
            err_kind[i] = E_MISSING
            continue
        if mt != MISSING and (mt < -1 or mt > MAX_MIGRATETYPE):
            err_field[i] = F_MIGRATETYPE
            err_kind[i] = E_RANGE
            continue
        pf = fields[i, F_PFN]
        if pf > MAX_PFN and fields[i, F_PAGE] == 1:
            fields[i, F_PFN] = 0  # a failed allocation's meaningless pfn
        elif pf < 0 or pf > MAX_PFN:
            err_field[i] = F_PFN
            err_kind[i] = E_RANGE


@njit(cache=True, nogil=True)
def count_kv(buf, pay_s, pay_e, rows, typed, key_table, key_lens):  # type: ignore[no-untyped-def]
    """Number of key=value tokens in each selected payload (see fill_kv)."""
    out = np.zeros(rows.shape[0], dtype=np.int64)
    for j in range(rows.shape[0]):
        i = rows[j]
        out[j] = _scan_kv(
            buf, pay_s[i], pay_e[i], typed[j], key_table, key_lens, out, out, out, out, -1
        )
    return out


@njit(cache=True, nogil=True)
def fill_kv(buf, pay_s, pay_e, rows, typed, key_table, key_lens, offsets, ks, ke, vs, ve):  # type: ignore[no-untyped-def]
    """Fill key/value byte spans of the selected payloads at ``offsets``."""
    for j in range(rows.shape[0]):
        i = rows[j]
        _scan_kv(buf, pay_s[i], pay_e[i], typed[j], key_table, key_lens, ks, ke, vs, ve, offsets[j])


@njit(cache=True)
def _scan_kv(buf, s, e, typed, key_table, key_lens, ks, ke, vs, ve, at):  # type: ignore[no-untyped-def]
    """Tokenise ``key=value`` pairs (values may be ``(...)``, ending at ' ' or ',').

    With ``typed`` set (a kmem page event), the keys that have typed columns
    (page, pfn, order, migratetype) are left out. With ``at`` < 0 only counts.
    Returns the number of pairs.
    """
    x = s
    count = 0
    while x < e:
        while x < e and (_is_space(buf[x]) or buf[x] == 44):
            x += 1
        k0 = x
        while x < e and _is_keychar(buf[x]):
            x += 1
        if x < e and buf[x] == 61 and x > k0:
            k1 = x
            x += 1
            y = x
            while y < e and buf[y] == 32:
                y += 1
            if y < e and buf[y] == 40:
                x = y
            v0 = x
            if x < e and buf[x] == 40:
                while x < e and buf[x] != 41:
                    x += 1
                if x < e:
                    x += 1
            else:
                while x < e and not _is_space(buf[x]) and buf[x] != 44:
                    x += 1
            if typed:
                fi = _match(buf, k0, k1, key_table, key_lens)
                if fi >= 0 and fi <= F_MIGRATETYPE:
                    continue
            if at >= 0:
                ks[at + count] = k0
                ke[at + count] = k1
                vs[at + count] = v0
                ve[at + count] = x
            count += 1
        else:
            while x < e and not _is_space(buf[x]):
                x += 1
    return count


@njit(cache=True, nogil=True)
def gather_spans(buf, s, e):  # type: ignore[no-untyped-def]
    """Concatenate the byte spans [s[i], e[i]) into (data, int32 offsets) for Arrow."""
    n = s.shape[0]
    offsets = np.empty(n + 1, dtype=np.int32)
    total = 0
    offsets[0] = 0
    for i in range(n):
        total += e[i] - s[i]
        offsets[i + 1] = total
    data = np.empty(total, dtype=np.uint8)
    for i in range(n):
        o = offsets[i]
        for j in range(e[i] - s[i]):
            data[o + j] = buf[s[i] + j]
    return data, offsets


@njit(cache=True, inline="always")
def _json_value_len(buf, s, e):  # type: ignore[no-untyped-def]
    n = 0
    for j in range(s, e):
        c = buf[j]
        if c == 34 or c == 92:  # '"' '\\'
            n += 2
        elif c < 32:
            n += 6  # \u00XX
        else:
            n += 1
    return n


@njit(cache=True, nogil=True)
def json_objects(buf, offsets, ks, ke, vs, ve):  # type: ignore[no-untyped-def]
    """Each row's key=value spans as one JSON object text, for Arrow.

    Row r owns pairs offsets[r]..offsets[r + 1]; a row without pairs gets an
    empty string (the caller masks it to NULL). Keys are identifier bytes and
    need no escaping; values escape '"', '\\' and control bytes. Returns
    (data uint8, int32 offsets).
    """
    n = offsets.shape[0] - 1
    out_off = np.empty(n + 1, dtype=np.int32)
    total = 0
    out_off[0] = 0
    for r in range(n):
        a = offsets[r]
        b = offsets[r + 1]
        if b > a:
            total += 2 + (b - a - 1)  # braces and commas
            for k in range(a, b):
                total += (ke[k] - ks[k]) + 5 + _json_value_len(buf, vs[k], ve[k])
        out_off[r + 1] = total
    data = np.empty(total, dtype=np.uint8)
    for r in range(n):
        a = offsets[r]
        b = offsets[r + 1]
        if b == a:
            continue
        o = out_off[r]
        data[o] = 123  # '{'
        o += 1
        for k in range(a, b):
            if k > a:
                data[o] = 44  # ','
                o += 1
            data[o] = 34
            o += 1
            for j in range(ks[k], ke[k]):
                data[o] = buf[j]
                o += 1
            data[o] = 34
            data[o + 1] = 58  # ':'
            data[o + 2] = 34
            o += 3
            for j in range(vs[k], ve[k]):
                c = buf[j]
                if c == 34 or c == 92:
                    data[o] = 92
                    data[o + 1] = c
                    o += 2
                elif c < 32:
                    data[o] = 92
                    data[o + 1] = 117  # 'u'
                    data[o + 2] = 48
                    data[o + 3] = 48
                    data[o + 4] = 48 + (c >> 4)  # c < 32: high digit 0 or 1
                    lo = c & 15
                    data[o + 5] = 48 + lo if lo < 10 else 87 + lo
                    o += 6
                else:
                    data[o] = c
                    o += 1
            data[o] = 34
            o += 1
        data[o] = 125  # '}'
    return data, out_off


# ---------------------------------------------------------------------------
# Dictionary encoding of byte spans (comm, event names, gfp flags), with the
# dictionary kept across chunks: an open-addressing table of entry ids keyed by
# FNV-1a hashes of the bytes. The Python side (replay.trace.dictenc) grows the
# arrays when a call stops early.
# ---------------------------------------------------------------------------
FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)


@njit(cache=True, inline="always")
def _entry_is(ent, buf, a, b, data, offsets):  # type: ignore[no-untyped-def]
    """Whether dictionary entry ``ent`` holds exactly the bytes buf[a:b]."""
    o = offsets[ent]
    if offsets[ent + 1] - o != b - a:
        return False
    for k in range(b - a):
        if data[o + k] != buf[a + k]:
            return False
    return True


@njit(cache=True, nogil=True)
def dict_encode(  # type: ignore[no-untyped-def]
    buf, s, e, rows, first, slots, hashes, data, offsets, state, out
):
    """Encode spans [s[rows[j]], e[rows[j]]) for j >= ``first`` into entry ids in ``out[j]``.

    ``slots`` (int32, power-of-two size, -1 empty) maps hashes to entry ids;
    ``hashes`` (uint64) and ``offsets`` (int64, entries + 1) describe the
    entries, whose bytes are in ``data``. ``state`` = [entries, bytes used].
    Returns the first j not encoded: len(rows) when done, less when an array
    is full (the caller grows it and calls again from there).
    """
    mask = slots.shape[0] - 1
    nent = state[0]
    used = state[1]
    prev = -1  # the previous span's entry: runs of one task or event are common
    for j in range(first, rows.shape[0]):
        i = rows[j]
        a = s[i]
        b = e[i]
        if prev >= 0 and _entry_is(prev, buf, a, b, data, offsets):
            out[j] = prev
            continue
        h = FNV_OFFSET
        for k in range(a, b):
            h = (h ^ np.uint64(buf[k])) * FNV_PRIME
        slot = np.int64(h & np.uint64(mask))
        found = -1
        while True:
            ent = slots[slot]
            if ent < 0:
                break
            if hashes[ent] == h and _entry_is(ent, buf, a, b, data, offsets):
                found = ent
                break
            slot = (slot + 1) & mask
        if found < 0:
            # New entry: keep the table at most half full.
            if (
                2 * (nent + 1) > slots.shape[0]
                or nent + 2 > offsets.shape[0]
                or used + (b - a) > data.shape[0]
            ):
                state[0] = nent
                state[1] = used
                return j
            for k in range(b - a):
                data[used + k] = buf[a + k]
            used += b - a
            hashes[nent] = h
            offsets[nent + 1] = used
            slots[slot] = nent
            found = nent
            nent += 1
        out[j] = found
        prev = found
    state[0] = nent
    state[1] = used
    return rows.shape[0]


@njit(cache=True, nogil=True)
def rehash(hashes, nent, slots):  # type: ignore[no-untyped-def]
    """Fill a fresh (all -1) ``slots`` table with entries 0..nent-1."""
    mask = slots.shape[0] - 1
    for ent in range(nent):
        slot = np.int64(hashes[ent] & np.uint64(mask))
        while slots[slot] >= 0:
            slot = (slot + 1) & mask
        slots[slot] = ent


# ---------------------------------------------------------------------------
# Pairing: frees matched to allocations by pfn.
#
# The page map holds a row of PAGE_BLOCK pages (8 KiB) for each block an event
# touched, in a pool whose directory (block number -> pool row) the Python side
# keeps (replay.trace.ftrace._PairState): memory grows with the blocks a trace
# touches, never with the span of its pfns. Each event comes with the pool rows
# of its first and last page (an event of order <= MAX_ORDER spans at most two
# blocks), and every page the kernel reads or writes is one of its event's. Values:
#   >= 0         live page of object (v & OBJ_MASK); bit PENDING_BIT set when a
#                batched free with `cold=` (3.3-4.14 order) announced its free
#   -1           unknown: never seen, or nothing pending
#   -2           unknown page with a pending batched flag (3.3-4.14 order)
#   -3           freed by mm_page_free_direct / mm_pagevec_free (before 3.3),
#                or by an mm_page_free whose batched flag was already applied
#   <= -4        freed by the mm_page_free of canonical row g = -(v + 4), whose
#                batched flag is not applied yet (4.15+: the batched event
#                follows the free)
# ---------------------------------------------------------------------------
PAGE_SHIFT_BLOCK = MAX_ORDER  # a block of pages is a MAX_ORDER buddy block
PAGE_BLOCK = 1 << PAGE_SHIFT_BLOCK
PENDING_BIT = np.int64(1) << 62
OBJ_MASK = PENDING_BIT - 1
V_UNKNOWN = np.int64(-1)
V_PENDING_UNKNOWN = np.int64(-2)
V_FREED = np.int64(-3)

# Counter slots of pair_events.
C_ALLOCS = 0
C_FREES = 1
C_PARTIAL = 2
C_PREEXISTING = 3
C_FAILED = 4
C_BATCHED = 5
C_BATCHED_ORPHANS = 6
C_ALLOC_OVERLAPS = 7
C_FREE_MISMATCH = 8
C_LIVE_OBJECTS = 9
C_NOBJ = 10
C_FREE_OF_FREED = 11
N_COUNTERS = 12
COUNTER_NAMES = (
    "allocs",
    "frees",
    "partial_frees",
    "preexisting",
    "failed_allocs",
    "batched",
    "batched_orphans",
    "alloc_overlaps",
    "free_mismatches",
    "live_at_end",
    "objects",
    "frees_of_freed_pages",
)

# Output kinds of pair_events.
OUT_NONE = 0  # batched duplicate: no row
OUT_ALLOC = 1
OUT_FREE = 2
OUT_FAILED = 3  # an allocation the kernel failed: a canonical row with no pfn


@njit(cache=True, inline="always")
def _row(rows, i, p, q):  # type: ignore[no-untyped-def]
    """The pool row of page ``q`` of event ``i`` (first page ``p``)."""
    return rows[i, 0] if (q >> PAGE_SHIFT_BLOCK) == (p >> PAGE_SHIFT_BLOCK) else rows[i, 1]


@njit(cache=True, inline="always")
def _get(rows, pool, i, p, q):  # type: ignore[no-untyped-def]
    return pool[_row(rows, i, p, q), q & (PAGE_BLOCK - 1)]


@njit(cache=True, inline="always")
def _set(rows, pool, i, p, q, v):  # type: ignore[no-untyped-def]
    pool[_row(rows, i, p, q), q & (PAGE_BLOCK - 1)] = v


@njit(cache=True, nogil=True)
def pair_events(  # type: ignore[no-untyped-def]
    ecode,
    pfn,
    order,
    mt,
    page_null,
    cold,
    rows,
    pool,
    obj_start,
    obj_order,
    obj_mt,
    obj_live,
    counters,
    g_base,
    prev_base,
    prev_batched,
    out_kind,
    out_obj,
    out_offset,
    out_mt,
    out_batched,
    row_ev,
):
    """Pair one chunk of page events (in trace order) into canonical rows.

    Inputs per event: ecode (EV_ALLOC, EV_FREE, EV_FREE_BATCHED,
    EV_FREE_DIRECT, EV_PAGEVEC_FREE), pfn, order, migratetype, page_null,
    cold (1 when the batched event carries a ``cold=`` field), rows (the
    pool rows of its first and last page; unused for a failed allocation).
    State: the page map (pool), per-object arrays and counters, carried across
    chunks. g_base is the global index of this chunk's first canonical row;
    rows of the previous chunk (from prev_base) can still get their batched
    flag. Outputs per event: kind (OUT_*), obj, offset (pages), migratetype,
    batched; row_ev maps each canonical row of the chunk to its event index.
    Returns the number of canonical rows emitted.
    """
    g = g_base
    for i in range(ecode.shape[0]):
        c = ecode[i]
        p = pfn[i]
        out_batched[i] = False
        out_offset[i] = 0
        out_obj[i] = -1
        out_mt[i] = mt[i]
        if c == EV_ALLOC:
            if page_null[i] == 1 or p == 0:
                # The kernel failed the request: a canonical row of its own
                # object, with no pages (nothing frees it).
                x = counters[C_NOBJ]
                counters[C_NOBJ] += 1
                obj_start[x] = -1
                obj_order[x] = order[i]
                obj_mt[x] = mt[i]
                obj_live[x] = 0
                counters[C_FAILED] += 1
                out_kind[i] = OUT_FAILED
                out_obj[i] = x
                row_ev[g - g_base] = i
                g += 1
                continue
            k = order[i]
            x = counters[C_NOBJ]
            counters[C_NOBJ] += 1
            obj_start[x] = p
            obj_order[x] = k
            obj_mt[x] = mt[i]
            npages = np.int64(1) << np.int64(k)
            obj_live[x] = npages
            overlapped = False
            for j in range(npages):
                v = _get(rows, pool, i, p, p + j)
                keep = np.int64(0)
                if v >= 0:
                    # A page still live in another object: its free was lost.
                    overlapped = True
                    old = v & OBJ_MASK
                    obj_live[old] -= 1
                    if obj_live[old] == 0:
                        counters[C_LIVE_OBJECTS] -= 1
                    keep = v & PENDING_BIT
                elif v == V_PENDING_UNKNOWN:
                    keep = PENDING_BIT  # a pending batched flag waits for this pfn's free
                _set(rows, pool, i, p, p + j, x | keep)
            if overlapped:
                counters[C_ALLOC_OVERLAPS] += 1
            counters[C_LIVE_OBJECTS] += 1
            counters[C_ALLOCS] += 1
            out_kind[i] = OUT_ALLOC
            out_obj[i] = x
            row_ev[g - g_base] = i
            g += 1
        elif c == EV_FREE_BATCHED:
            out_kind[i] = OUT_NONE
            v = _get(rows, pool, i, p, p)
            if cold[i] == 1:
                # 3.3-4.14: free_hot_cold_page_list() traces the batched free
                # just before free_hot_cold_page() traces mm_page_free.
                if v >= 0 and (v & PENDING_BIT) == 0:
                    _set(rows, pool, i, p, p, v | PENDING_BIT)
                elif v == V_UNKNOWN or v <= V_FREED:
                    _set(rows, pool, i, p, p, V_PENDING_UNKNOWN)
                else:
                    counters[C_BATCHED_ORPHANS] += 1
            else:
                # 4.15+: free_unref_page_list()/free_unref_folios() prepare
                # (trace mm_page_free) every page first, then commit each
                # with trace_mm_page_free_batched.
                if v <= -4:
                    gi = -(v + 4)
                    if gi >= g_base:
                        out_batched[row_ev[gi - g_base]] = True
                        counters[C_BATCHED] += 1
                    elif gi >= prev_base and gi - prev_base < prev_batched.shape[0]:
                        prev_batched[gi - prev_base] = True
                        counters[C_BATCHED] += 1
                    else:
                        counters[C_BATCHED_ORPHANS] += 1
                    _set(rows, pool, i, p, p, V_FREED)
                elif v >= 0 and (v & PENDING_BIT) == 0:
                    # Its free has not been seen yet (lost or reordered): the
                    # next mm_page_free of the page takes the flag.
                    _set(rows, pool, i, p, p, v | PENDING_BIT)
                else:
                    counters[C_BATCHED_ORPHANS] += 1
        else:
            # A free: mm_page_free, mm_page_free_direct or mm_pagevec_free.
            k = order[i]
            npages = np.int64(1) << np.int64(k)
            v = _get(rows, pool, i, p, p)
            batched = c == EV_PAGEVEC_FREE
            # Only an mm_page_free can get its batched flag afterwards.
            freed_mark = -(g + 4) if c == EV_FREE else V_FREED
            if v >= 0:
                x = v & OBJ_MASK
                if (v & PENDING_BIT) != 0:
                    batched = True
                off = p - obj_start[x]
                ostart = obj_start[x]
                oend = ostart + (np.int64(1) << np.int64(obj_order[x]))
                mismatch = False
                for j in range(npages):
                    q = p + j
                    w = _get(rows, pool, i, p, q)
                    if w >= 0 and (w & OBJ_MASK) == x and q < oend:
                        obj_live[x] -= 1
                        # Another page's pending flag waits for a free of that pfn.
                        pend = j > 0 and (w & PENDING_BIT) != 0
                        _set(rows, pool, i, p, q, V_PENDING_UNKNOWN if pend else freed_mark)
                    else:
                        mismatch = True
                if mismatch:
                    counters[C_FREE_MISMATCH] += 1
                if obj_live[x] == 0:
                    counters[C_LIVE_OBJECTS] -= 1
                if not (off == 0 and k == obj_order[x]):
                    counters[C_PARTIAL] += 1
                out_obj[i] = x
                out_offset[i] = off
                out_mt[i] = obj_mt[x]
            else:
                # No live object holds the page: allocated before tracing began.
                if v == V_PENDING_UNKNOWN:
                    batched = True
                elif v <= V_FREED:
                    counters[C_FREE_OF_FREED] += 1
                x = counters[C_NOBJ]
                counters[C_NOBJ] += 1
                obj_start[x] = p
                obj_order[x] = k
                obj_mt[x] = -1
                obj_live[x] = 0
                for j in range(npages):
                    if j == 0 or _get(rows, pool, i, p, p + j) != V_PENDING_UNKNOWN:
                        _set(rows, pool, i, p, p + j, freed_mark)
                counters[C_PREEXISTING] += 1
                out_obj[i] = x
                out_mt[i] = -1
            if batched:
                counters[C_BATCHED] += 1
            out_batched[i] = batched
            counters[C_FREES] += 1
            out_kind[i] = OUT_FREE
            row_ev[g - g_base] = i
            g += 1
    return g - g_base


@njit(cache=True, nogil=True)
def count_pending(pool, nblocks):  # type: ignore[no-untyped-def]
    """Batched marks never consumed by a free (counted as orphans at the end)."""
    n = 0
    for b in range(nblocks):
        for j in range(pool.shape[1]):
            v = pool[b, j]
            if v == V_PENDING_UNKNOWN or (v >= 0 and (v & PENDING_BIT) != 0):
                n += 1
    return n
