"""The observed rebuild (``observe``) against its pure-Python reference on random streams.

Random events over a small zone: allocations, frees, pcp refills and
drains, failed requests, the free scanners' isolations (a range, and fast
isolations named only by min_pfn/free_pfn/pages) and migration ptes. Both
implementations must end with the same free blocks, pcp blocks,
inconsistency counts and inferences.
"""

from __future__ import annotations

import random

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ref_observed import RefObserved

from replay.engine.observed import (
    INCONSISTENCIES,
    INFERRED,
    N_INFERRED,
    NF,
    init_blocks,
    observe,
)

B = 0x100000  # a real Normal-zone start
N = 512  # pages in the zone


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[int], list[tuple[int, ...]]]:
    """A random free set of [B, B + N) and a random event stream over it."""
    # the free set from a seed (drawing its 512 pages one by one was most of the time)
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    density = draw(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.9]))
    free_pfns = [B + i for i in range(N) if rng.random() < density]
    n = draw(st.integers(1, 120))
    events = []
    for _ in range(n):
        kind = draw(st.sampled_from([0, 0, 1, 1, 1, 2, 3, 4, 5, 6, 6, 7]))
        k = draw(st.sampled_from([0, 0, 0, 1, 2, 3, 4, 9]))
        p = B + draw(st.integers(0, N - 1)) // (1 << k) * (1 << k)
        if kind == 4:  # isolate_freepages: [start, end), nr_scanned, nr_taken
            end = min(B + N, p + draw(st.integers(1, 64)))
            events.append((4, p, draw(st.integers(0, 64)), 0, end, draw(st.integers(1, 32))))
        elif kind == 6:  # fast isolation: min_pfn, free_pfn, pages (a power of two)
            lo = B + draw(st.integers(0, N - 1))
            events.append((6, lo, 0, 0, lo + draw(st.integers(0, N)), 1 << draw(st.integers(0, 4))))
        elif kind == 5:
            events.append((5, -1, k, 0, 0, 0))
        else:
            # refill: a pcp refill (zone_locked) or a possible compaction capture (alloc)
            events.append((kind, p, k, int(kind in (0, 2) and draw(st.booleans())), 0, 0))
    return free_pfns, events


def _kernel(free_pfns: list[int], events: list[tuple[int, ...]]) -> tuple[dict, dict, dict, dict]:
    free = np.zeros(N, np.bool_)
    for q in free_pfns:
        free[q - B] = True
    blk = np.full(N, -1, np.int8)
    zlo, zhi = np.array([B], np.int64), np.array([B + N], np.int64)
    init_blocks(free, B, zlo, zhi, blk)
    kind = np.array([e[0] for e in events], np.int8)
    pfn = np.array([e[1] for e in events], np.int64)
    order = np.array([e[2] for e in events], np.int64)
    refill = np.array([bool(e[3]) for e in events], np.bool_)
    arg = np.array([e[4] for e in events], np.int64)
    arg2 = np.array([e[5] for e in events], np.int64)
    inside = (pfn >= B) & (pfn < B + N)
    ev_lo = np.where(inside, B, -1).astype(np.int64)
    ev_hi = np.where(inside, B + N, -1).astype(np.int64)
    pcp = np.zeros(N, np.int8)
    incons = np.zeros(len(INCONSISTENCIES), np.int64)
    inferred = np.zeros(N_INFERRED, np.int64)
    observe(kind, pfn, order, refill, arg, arg2, ev_lo, ev_hi, B, blk, pcp, incons, inferred)
    blocks = {B + int(o): int(blk[o]) for o in np.flatnonzero(blk >= 0)}
    on_pcp = {B + int(o): int(pcp[o]) - 1 for o in np.flatnonzero(pcp > 0)}
    inc = {n: int(v) for n, v in zip(INCONSISTENCIES, incons, strict=True) if v}
    inf = {n: int(v) for n, v in zip(INFERRED, inferred, strict=True) if v}
    return blocks, on_pcp, inc, inf


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_observe_matches_reference(stream: tuple[list[int], list[tuple[int, ...]]]) -> None:
    free_pfns, events = stream
    blocks, on_pcp, inc, inf = _kernel(free_pfns, events)
    # the same initial blocks for the reference: the kernel's decomposition before events
    start_free = np.zeros(N, np.bool_)
    for q in free_pfns:
        start_free[q - B] = True
    blk0 = np.full(N, -1, np.int8)
    init_blocks(start_free, B, np.array([B], np.int64), np.array([B + N], np.int64), blk0)
    ref = RefObserved(B, B + N, {B + int(o): int(blk0[o]) for o in np.flatnonzero(blk0 >= 0)})
    ref.apply(events)
    assert blocks == ref.free
    assert on_pcp == ref.pcp
    assert inc == ref.incons
    assert inf == ref.inferred
    assert all(0 <= k < NF for k in blocks.values())
