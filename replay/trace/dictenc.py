"""Dictionary-encode byte spans of a text chunk into Arrow dictionary arrays.

Per-line strings of a trace repeat: a few hundred task names, a few dozen
event names and GFP flag sets over millions of lines. Copying each span and
hashing the copies (pyarrow's ``dictionary_encode``) cost the ingest more than
parsing the lines; this keeps one dictionary per column across chunks, hashes
each span in place (numba) and hands Arrow int32 indices plus the dictionary
so far. DuckDB turns them into ordinary VARCHAR values.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from replay.trace import _kernels as K


class SpanDictionary:
    """A growing dictionary of byte strings; ``encode`` maps spans to entries.

    ``max_entries`` bounds it: a trace with more distinct values than that
    (garbage, or an unusual column) starts a fresh dictionary, which is correct
    because every Arrow batch carries its own dictionary.
    """

    def __init__(self, max_entries: int = 1 << 20) -> None:
        self.max_entries = max_entries
        self._reset(256, 1 << 12)

    def _reset(self, entries: int, nbytes: int) -> None:
        self.slots = np.full(2 * entries, -1, dtype=np.int32)
        self.hashes = np.zeros(entries, dtype=np.uint64)
        self.offsets = np.zeros(entries + 1, dtype=np.int64)
        self.data = np.zeros(nbytes, dtype=np.uint8)
        self.state = np.zeros(2, dtype=np.int64)  # entries, bytes used
        self._dictionary: pa.Array | None = None
        self._dictionary_entries = -1

    @property
    def entries(self) -> int:
        return int(self.state[0])

    def _grow(self, need_bytes: int) -> None:
        nent, used = self.entries, int(self.state[1])
        if 2 * (nent + 1) > self.slots.shape[0] or nent + 2 > self.offsets.shape[0]:
            cap = 2 * self.hashes.shape[0]
            hashes = np.zeros(cap, dtype=np.uint64)
            hashes[:nent] = self.hashes[:nent]
            offsets = np.zeros(cap + 1, dtype=np.int64)
            offsets[: nent + 1] = self.offsets[: nent + 1]
            self.hashes, self.offsets = hashes, offsets
            self.slots = np.full(2 * cap, -1, dtype=np.int32)
            K.rehash(self.hashes, nent, self.slots)
        if used + need_bytes > self.data.shape[0]:
            data = np.zeros(max(2 * self.data.shape[0], used + need_bytes), dtype=np.uint8)
            data[:used] = self.data[:used]
            self.data = data

    def encode(
        self, buf: np.ndarray, s: np.ndarray, e: np.ndarray, rows: np.ndarray,
        valid: np.ndarray | None = None,
    ) -> pa.DictionaryArray:  # fmt: skip
        """The spans ``[s[r], e[r])`` for each r in ``rows`` as a dictionary array.

        ``valid`` (bool per row of ``rows``) marks the non-null values; the
        spans of null rows are not looked at.
        """
        if valid is not None and not bool(valid.all()):
            idx = np.zeros(rows.shape[0], dtype=np.int32)
            keep = np.flatnonzero(valid)
            idx[keep] = self._indices(buf, s, e, rows[keep])
            mask = ~valid
        else:
            idx = self._indices(buf, s, e, rows)
            mask = None
        return pa.DictionaryArray.from_arrays(pa.array(idx, mask=mask), self.dictionary())

    def _indices(
        self, buf: np.ndarray, s: np.ndarray, e: np.ndarray, rows: np.ndarray
    ) -> np.ndarray:
        if self.entries >= self.max_entries:
            self._reset(256, 1 << 12)
        out = np.empty(rows.shape[0], dtype=np.int32)
        j = 0
        while True:
            j = K.dict_encode(
                buf, s, e, rows, j, self.slots, self.hashes, self.data, self.offsets,
                self.state, out,
            )  # fmt: skip
            if j >= rows.shape[0]:
                return out
            self._grow(int(e[rows[j]] - s[rows[j]]))

    def dictionary(self) -> pa.Array:
        """The entries so far as an Arrow string array (invalid UTF-8 replaced)."""
        nent = self.entries
        if self._dictionary is not None and self._dictionary_entries == nent:
            return self._dictionary
        used = int(self.offsets[nent])
        offsets = self.offsets[: nent + 1].astype(np.int32)
        data = self.data[:used].copy()
        arr = pa.StringArray.from_buffers(nent, pa.py_buffer(offsets), pa.py_buffer(data))
        try:
            arr.validate(full=True)
        except pa.ArrowInvalid:
            raw = data.tobytes()
            arr = pa.array(
                [raw[offsets[i] : offsets[i + 1]].decode("utf-8", "replace") for i in range(nent)],
                type=pa.string(),
            )
        self._dictionary, self._dictionary_entries = arr, nent
        return arr
