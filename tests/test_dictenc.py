"""SpanDictionary: byte spans to Arrow dictionary arrays, one dictionary across chunks."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from replay.trace.dictenc import SpanDictionary


def _spans(words: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    buf = b" ".join(words)
    s, e, at = [], [], 0
    for w in words:
        s.append(at)
        e.append(at + len(w))
        at += len(w) + 1
    return np.frombuffer(buf, np.uint8), np.array(s, np.int64), np.array(e, np.int64)


@settings(max_examples=60, deadline=None)
@given(
    chunks=st.lists(
        st.lists(st.binary(min_size=0, max_size=12).filter(lambda b: b" " not in b), max_size=40),
        min_size=1,
        max_size=5,
    ),
    max_entries=st.sampled_from([4, 1 << 20]),
)
def test_values_match_the_spans(chunks: list[list[bytes]], max_entries: int) -> None:
    """Every chunk decodes to its spans (invalid UTF-8 replaced), whatever the growth or resets."""
    d = SpanDictionary(max_entries=max_entries)
    seen: set[bytes] = set()
    for words in chunks:
        seen.update(words)
        buf, s, e = _spans(words)
        rows = np.arange(len(words), dtype=np.int64)
        arr = d.encode(buf, s, e, rows)
        assert arr.type == pa.dictionary(pa.int32(), pa.string())
        assert arr.to_pylist() == [w.decode("utf-8", "replace") for w in words]
        if max_entries > 1000:  # never reset: one entry per distinct byte string
            assert d.entries == len(seen)


def test_rows_subset_and_nulls() -> None:
    d = SpanDictionary()
    buf, s, e = _spans([b"kswapd0", b"cc1", b"kswapd0", b"make", b"cc1"])
    rows = np.array([4, 0, 2, 3], np.int64)
    valid = np.array([True, False, True, True])
    arr = d.encode(buf, s, e, rows, valid=valid)
    assert arr.to_pylist() == ["cc1", None, "kswapd0", "make"]
    assert arr.null_count == 1
    # The dictionary is kept: the next chunk reuses the same ids.
    buf2, s2, e2 = _spans([b"make", b"gcc"])
    arr2 = d.encode(buf2, s2, e2, np.arange(2, dtype=np.int64))
    assert arr2.to_pylist() == ["make", "gcc"]
    assert arr2.indices.to_pylist()[0] == arr.indices.to_pylist()[3]


def test_grows_past_initial_capacity() -> None:
    words = [f"task-{i:05d}".encode() * (1 + i % 7) for i in range(5000)]
    d = SpanDictionary()
    buf, s, e = _spans(words + words[::-1])
    arr = d.encode(buf, s, e, np.arange(2 * len(words), dtype=np.int64))
    assert d.entries == len(words)
    assert arr.to_pylist() == [w.decode() for w in words + words[::-1]]
