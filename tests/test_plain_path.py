"""The engine's plain-buddy path (replay/models/plain_buddy.py ``replay_chunk_plain``)
gives what the general kernel (replay/models/events.py ``replay_chunk``) gives for the
``buddy`` model: the same output rows (pfn, outcome, nr_free, failures), statistics
(below the watermarks, ignored frees, requests the recorded kernel failed) and, after
``resync``, the same zone arrays, on random streams with failures, partial frees of
non-compound blocks, orders above pageblock_order and kernel-failed requests.
"""

from __future__ import annotations

import numpy as np
import pytest

from replay.engine.results import outputs
from replay.engine.whatif import event_arrays
from replay.models.events import replay_chunk
from replay.models.internal import (
    F_KERNEL_FAILED,
    NR_STATS,
    P_UNITS,
    S_BELOW_LOW,
    S_FAILURES,
    S_SERVED_KERNEL_FAILED,
)
from replay.models.plain_buddy import plain_eligible, replay_chunk_plain, resync
from replay.models.zone import ZoneState


def _engine_zone(start_pfn: int, pages: int, **kw: object) -> ZoneState:
    """A zone as the engine sets one up: no units kept unless a model needs them."""
    z = ZoneState(start_pfn, pages, **kw)  # type: ignore[arg-type]
    z.prm[P_UNITS] = 0
    return z


def _events(seed: int, n: int, pages: int) -> tuple[tuple[np.ndarray, ...], int]:
    rng = np.random.default_rng(seed)
    ev = event_arrays(n)
    live: list[tuple[int, int, int]] = []  # (obj, offset, order)
    nxt = 0
    for i in range(n):
        ev[0][i] = i
        if live and rng.random() < 0.45:
            x, off, k = live.pop(int(rng.integers(len(live))))
            if k > 0 and rng.random() < 0.3:  # one half now, the other later
                k -= 1
                live.append((x, off + (1 << k), k))
            ev[1][i], ev[2][i], ev[3][i], ev[4][i] = False, x, off, k
        else:
            k = int(rng.choice([0, 0, 0, 1, 2, 3, 5, 9, 10]))
            ev[1][i], ev[2][i], ev[4][i] = True, nxt, k
            ev[5][i] = rng.integers(0, 4)  # 3: not a pcp type (counted as MOVABLE)
            if rng.random() < 0.05:
                ev[8][i] = F_KERNEL_FAILED
            else:
                live.append((nxt, 0, k))
            nxt += 1
    return ev, nxt


@pytest.mark.parametrize(("seed", "start_pfn"), [(1, 0), (2, 512 + 64), (3, 1 << 20)])
def test_plain_path_is_the_general_kernel(seed: int, start_pfn: int) -> None:
    pages = 6000  # not a multiple of a pageblock: a partial last pageblock
    ev, n_obj = _events(seed, 3000, pages)
    n = ev[0].shape[0]
    keep = np.ones(n, np.bool_)
    counters_every = np.arange(n) % 3 != 0  # some rows without counters
    zones, outs, stats = [], [], []
    for plain in (False, True):
        z = _engine_zone(start_pfn, pages, grouping=False, wmark=(300, 900, 1200),
                         max_objects=n_obj)  # fmt: skip
        assert plain_eligible(z.prm)
        out = outputs(n)
        st = np.zeros(NR_STATS, np.int64)
        if plain:
            i, r = replay_chunk_plain(0, n, ev, keep, counters_every, z.objects, z.arrays,
                                      z.prm, st, 0, out)  # fmt: skip
            resync(z.arrays, z.prm)
        else:
            i, r = replay_chunk(0, n, ev, keep, counters_every, z.objects, z.arrays, z.prm,
                                z.counters, z.ef, z.me, z.cz, z.mode, z.vc, st, 0, out,
                                z.pools)  # fmt: skip
        assert (i, r) == (n, n)
        zones.append(z)
        outs.append(out)
        stats.append(st)
    general, fast = outs
    for a, b in zip(general[:7], fast[:7], strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(stats[0], stats[1])
    assert stats[0][S_FAILURES] > 0, "the stream should fail allocations"
    assert stats[0][S_BELOW_LOW] > 0, "the stream should go below the low watermark"
    assert stats[0][S_SERVED_KERNEL_FAILED] > 0, "it should serve requests the kernel failed"
    for name in zones[0].arrays._fields:
        np.testing.assert_array_equal(getattr(zones[0].arrays, name),
                                      getattr(zones[1].arrays, name), err_msg=name)  # fmt: skip
    for name in ("placed", "obj_mt", "obj_order", "obj_flags"):
        np.testing.assert_array_equal(getattr(zones[0].objects, name),
                                      getattr(zones[1].objects, name), err_msg=name)  # fmt: skip


def test_only_the_plain_buddy_takes_the_plain_path() -> None:
    assert plain_eligible(_engine_zone(0, 2048, grouping=False).prm)
    assert not plain_eligible(ZoneState(0, 2048, grouping=False).prm)  # units kept
    assert not plain_eligible(_engine_zone(0, 2048, grouping=True).prm)
    assert not plain_eligible(_engine_zone(0, 2048, grouping=False, pcp=True).prm)
    assert not plain_eligible(_engine_zone(0, 2048, grouping=False, compaction="direct").prm)


def test_prefetch_is_only_a_hint() -> None:
    """The kernels' prefetch (internal.prefetch, 16 events ahead) reads nothing into a
    value and never faults: any index, a strided column, the arrays unchanged."""
    from replay.jit import njit
    from replay.models.internal import new_objects, prefetch, prefetch_object

    @njit(_nrt=False)
    def touch(a, ob, idx):  # type: ignore[no-untyped-def]
        for i in idx:
            prefetch(a, i)
            prefetch_object(i, ob)
        return a[0]

    a = np.arange(100, dtype=np.int64)
    ob = new_objects(50)
    placed, info = ob.placed.copy(), ob.obj_mt.copy()
    idx = np.array([0, 99, 100, -1, 1 << 40, -(1 << 40)], np.int64)
    assert touch(a, ob, idx) == 0
    np.testing.assert_array_equal(a, np.arange(100))
    np.testing.assert_array_equal(ob.placed, placed)
    np.testing.assert_array_equal(ob.obj_mt, info)


@pytest.mark.parametrize(("start_pfn", "pages"), [(0, 6000), (3, 4099), (512 + 5, 1027), (7, 5)])
def test_resync_counts_every_free_block(start_pfn: int, pages: int) -> None:
    """``resync`` (which skips eight pages at a time where no free block starts) gives
    the per-pageblock free pages and per-list counts a page-by-page count gives, at boot
    and after a stream, on zones whose pages are not a multiple of eight and which start
    at an unaligned pfn."""
    ev, n_obj = _events(7, 2000, pages)
    n = ev[0].shape[0]
    keep = np.ones(n, np.bool_)
    z = _engine_zone(start_pfn, pages, grouping=False, max_objects=n_obj)
    pb0 = start_pfn >> 9
    for replayed in (False, True):
        if replayed:
            replay_chunk_plain(0, n, ev, keep, keep, z.objects, z.arrays, z.prm,
                               np.zeros(NR_STATS, np.int64), 0, outputs(n))  # fmt: skip
        z.arrays.pageblock_free[:] = -1
        z.arrays.nr_free_mt[:] = -1
        resync(z.arrays, z.prm)
        want = np.zeros_like(z.arrays.pageblock_free)
        for o, k in enumerate(z.arrays.buddy_order.tolist()):
            for p in range(o, o + (1 << k) if k >= 0 else o):
                want[((p + start_pfn) >> 9) - pb0] += 1
        if not replayed:
            assert want.sum() == pages
        np.testing.assert_array_equal(z.arrays.pageblock_free, want)
        mt = z.arrays.nr_free_mt.reshape(-1, 3)
        np.testing.assert_array_equal(mt[:, 1], z.arrays.nr_free)
        assert not mt[:, [0, 2]].any()
