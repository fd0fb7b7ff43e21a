"""Shared copy-on-write arrays (replay.cow) and the zone images made of them
(replay.models.zone.ZoneImage): every view is its own, and a zone started from an image
is the zone that loaded and adopted the same state itself."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from replay.cow import SHARED, SharedArray
from replay.models.internal import (
    F_MOVABLE,
    F_RECLAIM,
    MIGRATE_MOVABLE,
    MIGRATE_UNMOVABLE,
    Zone,
)
from replay.models.zone import ZoneImage, ZoneState

MODES = [pytest.param(True, id="memfd"), pytest.param(False, id="copies")]


@pytest.mark.parametrize("shared", MODES)
def test_private_views_are_each_their_own(shared: bool) -> None:
    if shared and not SHARED:
        pytest.skip("no memfd_create here")
    a = np.arange(10_000, dtype=np.int32)
    sa = SharedArray.of(a, fill=-1, shared=shared)
    a[:] = 7  # the shared array is a copy: the source may change after
    v1, v2 = sa.private(), sa.private()
    assert v1.flags.writeable and v1.dtype == np.int32 and v1.shape == (10_000,)
    v1[::100] = -5  # a write to every page
    assert np.array_equal(v2, np.arange(10_000, dtype=np.int32))
    assert np.array_equal(sa.private(), np.arange(10_000, dtype=np.int32))
    assert np.count_nonzero(v1 == -5) == 100
    # more elements than given: the fill, also after a view of the first ones changed
    longer = sa.private(12_000)
    assert np.array_equal(longer[:10_000], np.arange(10_000)) and (longer[10_000:] == -1).all()
    longer[10_500] = 3
    assert sa.private(12_000)[10_500] == -1 and sa.private(5)[4] == 4
    assert sa.private(0).shape == (0,)


@pytest.mark.parametrize("shared", MODES)
def test_a_shared_view_builds_what_private_views_see(shared: bool) -> None:
    if shared and not SHARED:
        pytest.skip("no memfd_create here")
    sa = SharedArray(1000, np.int64, fill=-1, shared=shared)
    build = sa.shared_view()
    assert (build == -1).all() and build.flags.writeable
    build[10:20] = 7
    v = sa.private()
    assert (v[10:20] == 7).all() and (v[:10] == -1).all()
    v[:] = 0
    assert (sa.private()[10:20] == 7).all() and sa.private(1200)[1100] == -1


def _state(pages: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """A started zone's blocks and page types: the first half allocated (a pageblock
    movable, the next unmovable, ...), the second half free in aligned blocks."""
    blk = np.full(pages, -1, np.int8)
    half = pages // 2
    blk[half] = 10
    blk[half + 1024] = 9
    blk[half + 1536] = 9
    page_mt = np.full(pages, -1, np.int8)
    pb = np.arange(half) >> 9
    page_mt[:half] = np.where(pb % 2 == 0, MIGRATE_MOVABLE, MIGRATE_UNMOVABLE)
    return blk, page_mt


def _adopt(zone: ZoneState, page_mt: np.ndarray) -> list[np.ndarray]:
    """Adopt claimed objects (0..7: order-2 units at every 64th page, in a shuffled order)
    then background single pages from object 10 on; the ids adopted, in order."""
    claims = np.array([5, 2, 7, 0, 1, 6, 3, 4], np.int64)
    offs = claims * 64
    mts = page_mt[offs]
    flags = np.where(mts == MIGRATE_MOVABLE, F_MOVABLE | F_RECLAIM, 0).astype(np.int8)
    zone.adopt(claims, offs, np.full(8, 2, np.int64), mts, flags)
    taken = np.zeros(page_mt.shape[0], np.bool_)
    for o in offs:
        taken[o : o + 4] = True
    bg = np.flatnonzero((page_mt >= 0) & ~taken)
    bg_flags = np.where(page_mt[bg] == MIGRATE_MOVABLE, F_MOVABLE | F_RECLAIM, 0)
    zone.adopt(10, bg, np.zeros(bg.shape[0], np.int64), page_mt[bg], bg_flags.astype(np.int8))
    return [claims, np.arange(10, 10 + bg.shape[0], dtype=np.int64)]


def _arrays(zone: ZoneState) -> dict[str, Any]:
    ob = zone.objects
    out: dict[str, Any] = {f"zone.{f}": getattr(zone.arrays, f) for f in Zone._fields}
    out.update({f"objects.{f}": getattr(ob, f) for f in ob._fields})
    out.update(prm=zone.prm, cz=zone.cz, counters=zone.counters)
    return out


SETTINGS = [
    pytest.param({}, id="mobility"),
    pytest.param({"pcp": True, "ncpus": 2}, id="pcp"),
    pytest.param({"kswapd": "lru"}, id="kswapd"),
    pytest.param({"compaction": "direct", "split_room": 300}, id="compaction"),
]


@pytest.mark.parametrize("shared", MODES)
@pytest.mark.parametrize("settings", SETTINGS)
def test_a_zone_from_an_image_is_the_zone_that_started_itself(
    settings: dict[str, Any], shared: bool
) -> None:
    """Zones of different settings made from one image (built by a zone of default
    settings) hold what each would after loading and adopting the state itself, and
    what one of them changes reaches neither the image nor a zone made after it."""
    if shared and not SHARED:
        pytest.skip("no memfd_create here")
    blk, page_mt = _state()
    n_obj = 10 + int(np.count_nonzero(page_mt >= 0)) - 8 * 4
    ncpus = settings.get("ncpus", 1)

    def start(zone: ZoneState) -> None:
        zone.load(blk, page_mt)
        _adopt(zone, page_mt)

    image = ZoneImage(0, blk.shape[0], ncpus, n_obj, start, shared=shared)

    own = ZoneState(0, blk.shape[0], max_objects=n_obj, **settings)
    own.load(blk, page_mt)
    ids = _adopt(own, page_mt)
    expected = {k: np.array(v, copy=True) for k, v in _arrays(own).items()}

    def from_image() -> ZoneState:
        z = ZoneState(0, blk.shape[0], max_objects=n_obj, image=image, **settings)
        for x in ids:
            z.lru_add(x)
        return z

    first = from_image()
    got = _arrays(first)
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        assert np.array_equal(got[k], v), k
    # the first zone allocates, frees and moves objects: the image and later zones keep
    # the started state
    assert all(first.alloc(0, MIGRATE_MOVABLE) >= 0 for _ in range(40))
    pfn = first.alloc(9, MIGRATE_UNMOVABLE)
    assert pfn >= 0
    first.free(pfn, 9, MIGRATE_UNMOVABLE)
    first.objects.placed[:50] = -7
    first.objects.obj_flags[:] = 0
    first.arrays.pg_obj[:] = 3
    second = _arrays(from_image())
    for k, v in expected.items():
        assert np.array_equal(second[k], v), k
    assert not np.array_equal(_arrays(first)["zone.list_next"], expected["zone.list_next"])


def test_an_image_is_of_one_zone() -> None:
    blk, page_mt = _state()
    image = ZoneImage(0, blk.shape[0], 1, 4, lambda z: z.load(blk, page_mt))
    with pytest.raises(ValueError, match="another zone"):
        ZoneState(512, blk.shape[0], max_objects=4, image=image)
    with pytest.raises(ValueError, match="another zone"):
        ZoneState(0, blk.shape[0], ncpus=2, max_objects=4, image=image)
    with pytest.raises(ValueError, match="holds 4 objects"):
        ZoneState(0, blk.shape[0], max_objects=5, image=image)
