"""The pages a snapshot's kpageflags runs cover (replay.engine.observed.covered_pages),
against the per-page count it replaced (a difference array over every page)."""

from __future__ import annotations

import numpy as np
import pytest

from replay.engine.observed import covered_pages


def _counted(lo: np.ndarray, hi: np.ndarray, n: int, sel: np.ndarray) -> np.ndarray:
    delta = np.zeros(n + 1, np.int64)
    np.add.at(delta, lo[sel], 1)
    np.add.at(delta, hi[sel], -1)
    return np.cumsum(delta[:n]) > 0


@pytest.mark.parametrize("seed", range(5))
def test_covered_pages_are_the_selected_runs_union(seed: int) -> None:
    """Runs in any order, overlapping, touching, empty, clipped at either end, some not
    selected: the pages covered are the selected runs' union."""
    rng = np.random.default_rng(seed)
    for _ in range(500):
        n = int(rng.integers(0, 80))
        k = int(rng.integers(0, 15))
        lo = rng.integers(0, n + 1, k)
        hi = np.minimum(lo + rng.integers(0, 12, k), n)
        sel = rng.random(k) < 0.7
        got = covered_pages(lo, hi, n, sel)
        assert got.dtype == np.bool_ and got.shape == (n,)
        assert np.array_equal(got, _counted(lo, hi, n, sel)), (lo, hi, sel, n)


def test_covered_pages_edges() -> None:
    none = np.zeros(0, np.int64)
    assert covered_pages(none, none, 4, np.zeros(0, np.bool_)).tolist() == [False] * 4
    lo, hi = np.array([0, 2, 2]), np.array([1, 4, 3])
    assert covered_pages(lo, hi, 4, np.ones(3, np.bool_)).tolist() == [True, False, True, True]
    assert covered_pages(lo, hi, 4, np.array([False, False, True])).tolist() == [
        False, False, True, False]  # fmt: skip
