"""The C reference of ``make bench`` (bench/buddy_ref.c) places what the ``buddy`` model places.

The benchmark's ratios mean something only while the C allocator follows the
same placement rules: a small random stream (allocations of orders 0..10,
failures when the zone runs out, partial frees of non-compound blocks, frees
of failed allocations) through the reference and through the engine's zone
(``ZoneState`` with grouping off, the ``buddy`` model): the same pfn at every
step and the same nr_free after every step.
"""

from __future__ import annotations

import importlib.util
import random
import shutil
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from replay.models.zone import ZoneState

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _cref() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cref", BENCH / "cref.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _stream(seed: int, n: int, pages: int) -> tuple[np.ndarray, ...]:
    """is_alloc, order, offset, obj of a random stream that overfills a ``pages`` zone."""
    rng = random.Random(seed)
    live: list[tuple[int, int, int]] = []  # (obj, offset, order) still allocated
    rows: list[tuple[int, int, int, int]] = []
    nxt = 0
    for _ in range(n):
        if live and rng.random() < 0.45:
            x, off, k = live.pop(rng.randrange(len(live)))
            if k > 0 and rng.random() < 0.3:  # free one half now, the other later
                k -= 1
                live.append((x, off + (1 << k), k))
            rows.append((0, k, off, x))
        else:
            k = rng.choice([0, 0, 0, 1, 2, 3, 4, 5, 9, 10])
            rows.append((1, k, 0, nxt))
            live.append((nxt, 0, k))
            nxt += 1
    cols = np.array(rows, np.int64).T
    return cols[0], cols[1], cols[2], cols[3]


@pytest.mark.skipif(shutil.which("cc") is None, reason="no system C compiler")
@pytest.mark.parametrize(("seed", "start_pfn"), [(1, 0), (2, 300), (3, 1 << 20)])
def test_c_reference_places_what_the_buddy_model_places(tmp_path: Path, seed: int,
                                                        start_pfn: int) -> None:  # fmt: skip
    cref = _cref()
    pages = 8192
    is_alloc, order, offset, obj = _stream(seed, 3000, pages)
    events = tmp_path / "events.bin"
    cref.write_events(events, is_alloc, order, offset, obj, start_pfn, pages)
    exe = cref.build(tmp_path / "buddy_ref")
    summary = cref.run(exe, events, tmp_path / "steps.bin")
    c_pfn, c_nr = cref.read_steps(tmp_path / "steps.bin")

    z = ZoneState(start_pfn, pages, grouping=False, max_objects=int(obj.max()) + 1)
    placed: dict[int, int] = {}
    failures = 0
    for i in range(len(is_alloc)):
        x, k = int(obj[i]), int(order[i])
        if is_alloc[i]:
            pfn = z.alloc_obj(x, k, 1)
            placed[x] = pfn
            failures += pfn < 0
            assert c_pfn[i] == pfn, f"event {i}: alloc order {k}"
        else:
            z.free_obj(x, int(offset[i]), k)
            assert c_pfn[i] == -1
        assert c_nr[i].tolist() == [int(v) for v in z.nr_free], f"event {i}"
    assert failures > 0, "the stream should overfill the zone"
    assert summary["failures"] == failures
    assert summary["events"] == len(is_alloc)
