"""numba kernels of the canonical-file ingester: integer parsing and the object table.

The Python driver (replay.trace.canonical) reads a file batch by batch, checks
the columns and hands each chunk to ``pair_objects``, which keeps one entry
per object (allocation id) across chunks in an open-addressing hash table and
fills in each row's order and migratetype. No Python objects per row; the
driver grows the arrays when a call stops early, formats error messages and
builds the Arrow output.

Object table: an int64 array of shape (capacity, 2), capacity a power of two,
rows ``[obj, state]``; state 0 is an empty slot. State bits:

    0-1    kind: K_ALLOC (allocated in the trace) or K_PRE (freed, never
           allocated in the trace: allocated before tracing began)
    2-5    the object's order
    K_ALLOC objects:
    6-9    the migratetype of its rows + 1
    10-21  pages freed so far
    22-33  offset (pages) of its first free + 1, 0 before any free
    34-62  index + 1 in ``pool`` of a bitmap of the offsets freed (one bit per
           page of the object), made at its second free; 0 before that
    K_PRE objects:
    10-62  the input row of its free (for an error found at a later alloc)
"""

from __future__ import annotations

import numpy as np

from replay.jit import njit

K_ALLOC = np.int64(1)
K_PRE = np.int64(2)
KIND_MASK = np.int64(3)
ORDER_SHIFT = np.int64(2)
MT_SHIFT = np.int64(6)
FREED_SHIFT = np.int64(10)
FIRST_SHIFT = np.int64(22)
POOL_SHIFT = np.int64(34)
PRE_ROW_SHIFT = np.int64(10)
FIELD_MASK = np.int64(0xFFF)  # the freed-pages and first-offset fields
NIBBLE = np.int64(0xF)  # the order and migratetype fields
POOL_MASK = (np.int64(1) << np.int64(29)) - 1
MAX_POOL = int(POOL_MASK)  # pool words addressable from a state

OP_ALLOC = 0
OP_FREE = 1
ORDER_NULL = -1  # a free without an order (the whole object's order)
MT_NULL = -2  # a row without a migratetype
MIGRATE_MOVABLE = 1
MIGRATE_UNKNOWN = -1

# Slots of the ``st`` array (int64) shared with the driver.
ST_OBJECTS = 0  # entries in the table
ST_LIMIT = 1  # entries allowed before the table must grow
ST_POOL_USED = 2  # pool words handed out
ST_ALLOCS = 3
ST_FREES = 4
ST_PARTIAL = 5  # frees of less than the whole object
ST_PRE = 6  # frees of objects allocated before tracing
ST_FULL = 7  # allocated objects freed completely
ST_STOP = 8  # why a call stopped early: STOP_*
ST_ERR = 9  # E_* of the error
ST_ERR_ROW = 10  # input row of the error
ST_ERR_OBJ = 11
ST_ERR_ORDER = 12  # order of the freed part (pages = 2**order)
ST_ERR_OFFSET = 13  # offset of the freed part (pages)
ST_ERR_OORDER = 14  # order of the object
N_ST = 15

STOP_GROW_TABLE = 1
STOP_GROW_POOL = 2
STOP_ERROR = 3

E_ALLOC_TWICE = 1  # an object allocated twice
E_UNKNOWN = 2  # a free of an object with no earlier alloc, without a pfn
E_PRE_TWICE = 3  # an object allocated before tracing freed twice
E_PART = 4  # the freed part is not an aligned part of the object
E_FREED_TWICE = 5  # more than the object, or the same offset twice, freed
E_PRE_ORDER = 6  # a free with no earlier alloc and no order

_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
_GROUP_BITS = np.uint64(2)
_GROUP_MASK = np.uint64(3)


@njit(cache=True, inline="always")
def _slot(key, mask):  # type: ignore[no-untyped-def]
    """Home slot of an object id.

    Ids are arbitrary, but most traces number their objects in order: runs of
    4 consecutive ids share 4 consecutive slots (64 bytes, a cache line), and
    the runs are spread by murmur3's 64-bit finaliser. Ids that are all
    multiples of 4 use one slot in 4 and probe like a bucketed table, still
    in constant time. (Runs of 8 were no faster, of 64 twice as slow: a full
    run makes its neighbours' overflow probe past it.)
    """
    u = np.uint64(key)
    h = u >> _GROUP_BITS
    h ^= h >> _S33
    h *= _M1
    h ^= h >> _S33
    h *= _M2
    h ^= h >> _S33
    return np.int64(((h << _GROUP_BITS) | (u & _GROUP_MASK)) & np.uint64(mask))


@njit(cache=True, nogil=True)
def rehash_objects(old, new):  # type: ignore[no-untyped-def]
    """Insert every entry of table ``old`` into the empty (all 0) table ``new``."""
    mask = new.shape[0] - 1
    for j in range(old.shape[0]):
        if old[j, 1] == 0:
            continue
        s = _slot(old[j, 0], mask)
        while new[s, 1] != 0:
            s = (s + 1) & mask
        new[s, 0] = old[j, 0]
        new[s, 1] = old[j, 1]


@njit(cache=True, inline="always")
def _fail(st, kind, row, obj, order, offset, oorder):  # type: ignore[no-untyped-def]
    st[ST_STOP] = STOP_ERROR
    st[ST_ERR] = kind
    st[ST_ERR_ROW] = row
    st[ST_ERR_OBJ] = obj
    st[ST_ERR_ORDER] = order
    st[ST_ERR_OFFSET] = offset
    st[ST_ERR_OORDER] = oorder


@njit(cache=True, nogil=True)
def pair_objects(  # type: ignore[no-untyped-def]
    op, obj, order, offset, mt, has_pfn, rows, start, stop, tab, pool, st, out_order, out_mt
):
    """Check rows start..stop-1 of a chunk (in replay order) against their objects.

    Inputs per row: op (OP_ALLOC/OP_FREE), obj, order (0..10, or ORDER_NULL
    on a free), offset (pages, 0 when not given), mt (-1..5 or MT_NULL),
    has_pfn (the row records a pfn), rows (the input row, for messages).
    ``tab`` and ``pool`` hold the objects (see the module docstring), ``st``
    the counters (ST_*). Outputs per row: out_order (the freed part's order
    filled in) and out_mt (an alloc's migratetype, MOVABLE when not given; a
    free's is its object's, -1 for an object allocated before tracing).

    Returns the first row not done: ``stop`` when all are, less when the
    table or the pool is full (ST_STOP says which: the caller grows it and
    calls again from there, nothing of that row was applied) or at an error
    (ST_STOP = STOP_ERROR, ST_ERR* describe it).
    """
    mask = tab.shape[0] - 1
    one = np.int64(1)
    for i in range(start, stop):
        key = obj[i]
        s = _slot(key, mask)
        v = np.int64(0)
        while True:
            v = tab[s, 1]
            if v == 0 or tab[s, 0] == key:
                break
            s = (s + 1) & mask
        k = np.int64(order[i])
        if op[i] == OP_ALLOC:
            if v != 0:
                if (v & KIND_MASK) == K_ALLOC:
                    _fail(st, E_ALLOC_TWICE, rows[i], key, k, 0, 0)
                else:
                    # Its earlier free was of an object not yet allocated.
                    _fail(st, E_UNKNOWN, v >> PRE_ROW_SHIFT, key, 0, 0, 0)
                return i
            if st[ST_OBJECTS] >= st[ST_LIMIT]:
                st[ST_STOP] = STOP_GROW_TABLE
                return i
            m = np.int64(mt[i])
            if m == MT_NULL:
                m = MIGRATE_MOVABLE
            tab[s, 0] = key
            tab[s, 1] = K_ALLOC | (k << ORDER_SHIFT) | ((m + 1) << MT_SHIFT)
            st[ST_OBJECTS] += 1
            st[ST_ALLOCS] += 1
            out_order[i] = k
            out_mt[i] = m
            continue
        off = np.int64(offset[i])
        if v == 0:
            # No alloc so far: allocated before tracing began, when the row
            # names a recorded pfn (an ftrace-derived trace).
            if not has_pfn[i]:
                _fail(st, E_UNKNOWN, rows[i], key, k, off, 0)
                return i
            if k == ORDER_NULL:
                _fail(st, E_PRE_ORDER, rows[i], key, k, off, 0)
                return i
            if off != 0:
                _fail(st, E_PART, rows[i], key, k, off, k)
                return i
            if st[ST_OBJECTS] >= st[ST_LIMIT]:
                st[ST_STOP] = STOP_GROW_TABLE
                return i
            tab[s, 0] = key
            tab[s, 1] = K_PRE | (k << ORDER_SHIFT) | (np.int64(rows[i]) << PRE_ROW_SHIFT)
            st[ST_OBJECTS] += 1
            st[ST_PRE] += 1
            st[ST_FREES] += 1
            out_order[i] = k
            out_mt[i] = MIGRATE_UNKNOWN
            continue
        if (v & KIND_MASK) == K_PRE:
            _fail(st, E_UNKNOWN if not has_pfn[i] else E_PRE_TWICE, rows[i], key, k, off, 0)
            return i
        oorder = (v >> ORDER_SHIFT) & NIBBLE
        if k == ORDER_NULL:
            k = oorder
        opages = one << oorder
        if k > oorder:
            _fail(st, E_PART, rows[i], key, k, off, oorder)
            return i
        pages = one << k
        if off < 0 or off > opages - pages or (off & (pages - 1)) != 0:
            _fail(st, E_PART, rows[i], key, k, off, oorder)
            return i
        freed = (v >> FREED_SHIFT) & FIELD_MASK
        if freed + pages > opages:
            _fail(st, E_FREED_TWICE, rows[i], key, k, off, oorder)
            return i
        first = (v >> FIRST_SHIFT) & FIELD_MASK
        at = (v >> POOL_SHIFT) & POOL_MASK
        if first == 0:
            v |= (off + 1) << FIRST_SHIFT
        elif at == 0:
            if off == first - 1:
                _fail(st, E_FREED_TWICE, rows[i], key, k, off, oorder)
                return i
            # A second part freed: from now on a bitmap of the offsets freed.
            words = max(one, opages >> 6)
            base = st[ST_POOL_USED]
            if base + words > pool.shape[0]:
                st[ST_STOP] = STOP_GROW_POOL
                return i
            st[ST_POOL_USED] = base + words
            for w in range(words):
                pool[base + w] = 0
            pool[base + ((first - 1) >> 6)] |= one << ((first - 1) & 63)
            pool[base + (off >> 6)] |= one << (off & 63)
            v |= (base + 1) << POOL_SHIFT
        else:
            word = at - 1 + (off >> 6)
            bit = one << (off & 63)
            if pool[word] & bit:
                _fail(st, E_FREED_TWICE, rows[i], key, k, off, oorder)
                return i
            pool[word] |= bit
        freed += pages
        tab[s, 1] = (v & ~(FIELD_MASK << FREED_SHIFT)) | (freed << FREED_SHIFT)
        if freed == opages:
            st[ST_FULL] += 1
        if off != 0 or k != oorder:
            st[ST_PARTIAL] += 1
        st[ST_FREES] += 1
        out_order[i] = k
        out_mt[i] = ((v >> MT_SHIFT) & NIBBLE) - 1
    return stop


@njit(cache=True, nogil=True)
def parse_ints(data, offsets, valid, out, bad):  # type: ignore[no-untyped-def]
    """Parse the strings of an Arrow string array as int64.

    ``data`` (uint8) and ``offsets`` (n + 1 byte offsets into data) are the
    array's buffers; ``valid`` (bool, n, or empty when no value is null)
    marks the non-null values. Accepted: blanks around an optional sign and
    decimal digits or ``0x`` hex digits, within int64. Fills ``out`` (0 for
    null or bad values) and ``bad`` (True where a non-null value is not such
    an integer); returns the number of bad values.
    """
    nbad = 0
    has_valid = valid.shape[0] > 0
    for r in range(out.shape[0]):
        out[r] = 0
        bad[r] = False
        if has_valid and not valid[r]:
            continue
        p = np.int64(offsets[r])
        e = np.int64(offsets[r + 1])
        while p < e and (data[p] == 32 or data[p] == 9 or data[p] == 13):
            p += 1
        while e > p and (data[e - 1] == 32 or data[e - 1] == 9 or data[e - 1] == 13):
            e -= 1
        neg = False
        if p < e and (data[p] == 45 or data[p] == 43):  # '-' or '+'
            neg = data[p] == 45
            p += 1
        base = np.uint64(10)
        if p + 1 < e and data[p] == 48 and (data[p + 1] == 120 or data[p + 1] == 88):  # 0x
            base = np.uint64(16)
            p += 2
        # The magnitude may reach 2**63 for a negative value.
        lim = np.uint64(9223372036854775807) + np.uint64(1 if neg else 0)
        acc = np.uint64(0)
        ok = p < e
        while p < e:
            c = data[p]
            if 48 <= c <= 57:
                d = np.uint64(c - 48)
            elif base == 16 and 97 <= c <= 102:
                d = np.uint64(c - 87)
            elif base == 16 and 65 <= c <= 70:
                d = np.uint64(c - 55)
            else:
                ok = False
                break
            if acc > (lim - d) // base:
                ok = False
                break
            acc = acc * base + d
            p += 1
        if not ok:
            bad[r] = True
            nbad += 1
        elif neg:
            out[r] = -np.int64(acc - np.uint64(1)) - 1 if acc > 0 else 0
        else:
            out[r] = np.int64(acc)
    return nbad
