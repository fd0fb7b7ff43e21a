"""Fragmentation metrics with the kernel's exact integer arithmetic.

Every metric here is computed from ``nr_free``: the number of free buddy
blocks per order, index = order (0..MAX_PAGE_ORDER, 11 entries on x86-64),
exactly as ``/proc/buddyinfo`` prints them; pages on the per-CPU (pcp) lists
are not in ``nr_free`` and are not counted.

Units:

- orders: ``k``/``order`` is a buddy order, a block of order ``o`` is
  ``1 << o`` base pages;
- pages: ``free_pages`` counts base pages (4 KiB on x86-64);
- blocks: ``free_blocks`` and ``suitable_blocks`` count free blocks
  (``suitable_blocks(k)`` counts them in units of order-``k`` blocks);
- indices: ``unusable_index`` and ``fragmentation_index`` are in thousandths
  (the kernel prints them as ``index / 1000`` with three decimals),
  ``extfrag_for_order`` and the fragmentation score are percentages.

Three implementations agree exactly on every input:

- scalar Python functions over a sequence of counts (arbitrary precision);
- ``*_np`` functions over an integer array whose last axis is the order
  (e.g. a 2-D array: rows = steps, columns = orders), computed in int64;
- DuckDB macros (:data:`METRIC_MACROS_SQL`, :func:`install_macros`) taking
  the 11 counts as arguments, computed in BIGINT.

Integer widths: cast before shifting. ``nr_free[o] << o`` overflows a 32-bit
column for large counts, so the numpy code casts to int64 and the SQL casts to
BIGINT *before* every shift (DuckDB raises on a left-shift overflow rather
than wrapping).

Division: the kernel divides unsigned 64-bit values (``div_u64``), which
truncates. Every dividend and divisor below is non-negative (``suitable(k) <<
k`` never exceeds ``free``), so Python's and numpy's floor division ``//`` and
DuckDB's ``//`` (which truncates toward zero) all give the C result. The only
place a negative number appears is the final ``1000 - quotient`` of the
fragmentation index (see :func:`fragmentation_index`).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported by the vectorised functions that use it: the light
    import numpy as np  # commands open a store (these macros) without it
    import numpy.typing as npt

__all__ = [
    "COMPACTION_HPAGE_ORDER",
    "COMPACTION_PROACTIVENESS_DEFAULT",
    "MAX_PAGE_ORDER",
    "METRIC_MACROS",
    "METRIC_MACROS_SQL",
    "NR_PAGE_ORDERS",
    "extfrag_for_order",
    "extfrag_for_order_np",
    "fragmentation_index",
    "fragmentation_index_np",
    "fragmentation_score",
    "fragmentation_score_np",
    "fragmentation_score_wmark",
    "fragmentation_score_zone",
    "fragmentation_score_zone_weighted",
    "free_blocks",
    "free_blocks_np",
    "free_pages",
    "free_pages_np",
    "install_macros",
    "largest_free_order",
    "largest_free_order_np",
    "metric_macros_sql",
    "percent",
    "should_proactive_compact",
    "suitable_blocks",
    "suitable_blocks_np",
    "unusable_index",
    "unusable_index_np",
]

MAX_PAGE_ORDER = 10
"""Largest buddy order (x86-64 default, ``MAX_PAGE_ORDER`` in include/linux/mmzone.h)."""

NR_PAGE_ORDERS = MAX_PAGE_ORDER + 1
"""Number of orders in ``/proc/buddyinfo`` and in the SQL macros (11)."""

COMPACTION_HPAGE_ORDER = 9
"""Order of a PMD huge page on x86-64 (``HPAGE_PMD_ORDER``), the order the
proactive-compaction fragmentation score is computed for."""

COMPACTION_PROACTIVENESS_DEFAULT = 20
"""Default of ``vm.compaction_proactiveness`` (``sysctl_compaction_proactiveness
= 20`` in mm/compaction.c); the sysctl accepts 0..100."""

_PERMILLE = 1000
_PERCENT = 100


# --------------------------------------------------------------------------
# Scalar Python versions
# --------------------------------------------------------------------------


def _counts(nr_free: Iterable[Any]) -> list[int]:
    """``nr_free`` as a list of Python ints (free blocks per order, >= 0)."""
    out = [operator.index(x) for x in nr_free]
    if not out:
        raise ValueError("nr_free needs at least one order")
    if any(x < 0 for x in out):
        raise ValueError(f"negative free block count in nr_free: {out}")
    return out


def _check_order(k: int, n_orders: int) -> int:
    """Validate a requested order against the number of orders in ``nr_free``.

    The kernel only evaluates these metrics for ``0 <= order <=
    MAX_PAGE_ORDER`` (``__fragmentation_index`` WARNs and returns 0 above it);
    here an order outside the counts' range is an error.
    """
    k = operator.index(k)
    if not 0 <= k < n_orders:
        raise ValueError(f"order {k} out of range 0..{n_orders - 1}")
    return k


def _contig_page_info(counts: Sequence[int], k: int) -> tuple[int, int, int]:
    """(free_pages, free_blocks_total, free_blocks_suitable) for order ``k``.

    Follows mm/vmstat.c fill_contig_page_info(): for each order ``o``,
    ``blocks = nr_free[o]``; ``free_blocks_total += blocks``;
    ``free_pages += blocks << o``; if ``o >= k``:
    ``free_blocks_suitable += blocks << (o - k)``.
    """
    free = 0
    total = 0
    suitable = 0
    for o, blocks in enumerate(counts):
        total += blocks
        free += blocks << o
        if o >= k:
            suitable += blocks << (o - k)
    return free, total, suitable


def percent(part: float, whole: float) -> float | None:
    """``part`` as a percentage of ``whole``, rounded to 2 decimals; None when ``whole``
    is 0 (a difference relative to a reference that has nothing)."""
    return round(100.0 * part / whole, 2) if whole else None


def free_pages(nr_free: Sequence[int]) -> int:
    """Free base pages (pages): ``sum nr_free[o] << o``.

    mm/vmstat.c fill_contig_page_info(): ``info->free_pages += blocks << order``.
    """
    return sum(n << o for o, n in enumerate(_counts(nr_free)))


def free_blocks(nr_free: Sequence[int]) -> int:
    """Free blocks of any order (blocks): ``sum nr_free[o]``.

    mm/vmstat.c fill_contig_page_info(): ``info->free_blocks_total += blocks``.
    """
    return sum(_counts(nr_free))


def suitable_blocks(nr_free: Sequence[int], k: int) -> int:
    """Free order-``k`` blocks obtainable without compaction (blocks of order k).

    ``sum_{o >= k} nr_free[o] << (o - k)``: a free block of order ``o >= k``
    splits into ``1 << (o - k)`` blocks of order ``k``.
    mm/vmstat.c fill_contig_page_info(): ``info->free_blocks_suitable +=
    blocks << (order - suitable_order)``.
    """
    counts = _counts(nr_free)
    k = _check_order(k, len(counts))
    return sum(n << (o - k) for o, n in enumerate(counts) if o >= k)


def unusable_index(nr_free: Sequence[int], k: int) -> int:
    """Unusable free space index for order ``k``, in thousandths (0..1000).

    The share of free pages that sit in blocks smaller than order ``k``
    (``/sys/kernel/debug/extfrag/unusable_index``). 1000 when nothing is free.

    mm/vmstat.c unusable_free_index()::

        if (info->free_pages == 0) return 1000;
        return div_u64((info->free_pages - (info->free_blocks_suitable << order))
                       * 1000ULL, info->free_pages);

    ``suitable << k <= free`` always, so the subtraction never wraps.
    """
    counts = _counts(nr_free)
    k = _check_order(k, len(counts))
    free, _total, suitable = _contig_page_info(counts, k)
    if free == 0:
        return _PERMILLE
    return (free - (suitable << k)) * _PERMILLE // free


def fragmentation_index(nr_free: Sequence[int], k: int) -> int:
    """Fragmentation index for order ``k``, in thousandths.

    ``/sys/kernel/debug/extfrag/extfrag_index``; the kernel compares it with
    ``vm.extfrag_threshold`` (500) to choose compaction over reclaim. 0 when
    nothing is free, -1000 when an order-``k`` block is free (an allocation
    would succeed), otherwise ``1000 - (1000 + free*1000 / 2^k) / blocks``:
    towards 1000 means failure from fragmentation, towards 0 from lack of
    memory.

    mm/vmstat.c __fragmentation_index()::

        unsigned long requested = 1UL << order;
        if (WARN_ON_ONCE(order > MAX_PAGE_ORDER)) return 0;
        if (!info->free_blocks_total) return 0;
        if (info->free_blocks_suitable) return -1000;
        return 1000 - div_u64((1000 + (div_u64(info->free_pages * 1000ULL,
                               requested))), info->free_blocks_total);

    The spec's paraphrase ``1000 - (1000 + free * 1000 // (1 << k)) // blocks``
    has the same order of operations (``free*1000`` first, then ``/ 2^k``,
    then ``+ 1000``, then ``/ blocks``). One point the paraphrase does not
    show: in C, ``1000 - <u64 quotient>`` is computed unsigned and converted
    to the ``int`` return value, so when the quotient exceeds 1000 the kernel
    returns a *negative* index (down to -500: a single free block of order
    ``k - 1`` gives ``1000 - (1000 + 500) / 1 = -500``). Python's signed
    arithmetic yields the same value, so it is reproduced, not clamped. The
    quotient is at most 1500, so the 32-bit conversion never wraps.
    """
    counts = _counts(nr_free)
    k = _check_order(k, len(counts))
    free, total, suitable = _contig_page_info(counts, k)
    if total == 0:
        return 0
    if suitable:
        return -_PERMILLE
    requested = 1 << k
    return _PERMILLE - (_PERMILLE + free * _PERMILLE // requested) // total


def extfrag_for_order(nr_free: Sequence[int], k: int) -> int:
    """External fragmentation for order ``k``, in percent (0..100).

    The share of free pages in blocks smaller than order ``k``; 0 (not 100)
    when nothing is free.

    mm/vmstat.c extfrag_for_order()::

        if (info.free_pages == 0) return 0;
        return div_u64((info.free_pages - (info.free_blocks_suitable << order))
                       * 100, info.free_pages);
    """
    counts = _counts(nr_free)
    k = _check_order(k, len(counts))
    free, _total, suitable = _contig_page_info(counts, k)
    if free == 0:
        return 0
    return (free - (suitable << k)) * _PERCENT // free


def largest_free_order(nr_free: Sequence[int]) -> int:
    """Largest order with a free block (order), -1 when nothing is free."""
    counts = _counts(nr_free)
    for o in range(len(counts) - 1, -1, -1):
        if counts[o] > 0:
            return o
    return -1


def fragmentation_score_zone(nr_free: Sequence[int], order: int = COMPACTION_HPAGE_ORDER) -> int:
    """A zone's fragmentation score, in percent (0..100).

    mm/compaction.c fragmentation_score_zone():
    ``return extfrag_for_order(zone, COMPACTION_HPAGE_ORDER);``
    """
    return extfrag_for_order(nr_free, order)


def fragmentation_score_zone_weighted(
    present_pages: int,
    node_present_pages: int,
    nr_free: Sequence[int],
    order: int = COMPACTION_HPAGE_ORDER,
) -> int:
    """A zone's score scaled by its share of the node (percent points).

    ``present_pages`` and ``node_present_pages`` are pages (zone->present_pages,
    pgdat->node_present_pages: present, not managed, pages).

    mm/compaction.c fragmentation_score_zone_weighted()::

        score = zone->present_pages * fragmentation_score_zone(zone);
        return div64_ul(score, zone->zone_pgdat->node_present_pages + 1);

    Note the ``+ 1``: a node made of one zone scoring 100 gets 99 (for more
    than 99 present pages), so the node score never reaches 100.
    """
    present_pages = operator.index(present_pages)
    node_present_pages = operator.index(node_present_pages)
    if present_pages < 0 or node_present_pages < 0:
        raise ValueError("present page counts must be non-negative")
    return present_pages * fragmentation_score_zone(nr_free, order) // (node_present_pages + 1)


def fragmentation_score(
    zones: Iterable[tuple[int, Sequence[int]]],
    order: int = COMPACTION_HPAGE_ORDER,
    node_present_pages: int | None = None,
) -> int:
    """A node's proactive-compaction fragmentation score, in percent (0..100).

    ``zones`` are the node's zones as ``(present_pages, nr_free)`` pairs
    (pages, free blocks per order). ``node_present_pages`` (pages) defaults to
    the sum of the zones' present pages, which is what the kernel's
    ``pgdat->node_present_pages`` is; pass it explicitly when only some zones
    are given.

    mm/compaction.c fragmentation_score_node(): the sum, over populated zones,
    of fragmentation_score_zone_weighted() (each term truncated separately).
    Zones with 0 present pages are skipped (they would contribute 0 anyway).
    """
    zs = [(operator.index(p), _counts(nf)) for p, nf in zones]
    node = sum(p for p, _ in zs) if node_present_pages is None else node_present_pages
    score = 0
    for present, counts in zs:
        if present == 0:  # !populated_zone(zone)
            continue
        score += fragmentation_score_zone_weighted(present, node, counts, order)
    return score


def fragmentation_score_wmark(
    proactiveness: int = COMPACTION_PROACTIVENESS_DEFAULT, *, low: bool
) -> int:
    """Proactive-compaction watermark on the fragmentation score (percent).

    mm/compaction.c fragmentation_score_wmark()::

        wmark_low = max(100U - sysctl_compaction_proactiveness, 5U);
        return low ? wmark_low : min(wmark_low + 10, 100U);

    With the default proactiveness 20: low = 80, high = 90. kcompactd starts
    proactive compaction when the node score exceeds ``high`` and stops once
    it is at or below ``low``.
    """
    proactiveness = operator.index(proactiveness)
    if not 0 <= proactiveness <= 100:
        raise ValueError(f"proactiveness {proactiveness} out of range 0..100")
    wmark_low = max(100 - proactiveness, 5)
    return wmark_low if low else min(wmark_low + 10, 100)


def should_proactive_compact(
    node_score: int, proactiveness: int = COMPACTION_PROACTIVENESS_DEFAULT
) -> bool:
    """Whether kcompactd would start proactive compaction for this node score.

    mm/compaction.c should_proactive_compact_node(): false when proactiveness
    is 0 (the kswapd-running check is not modelled), else
    ``fragmentation_score_node(pgdat) > fragmentation_score_wmark(false)``.
    """
    if not proactiveness:
        return False
    return node_score > fragmentation_score_wmark(proactiveness, low=False)


# --------------------------------------------------------------------------
# Vectorised numpy versions: last axis = order, result has the other axes
# --------------------------------------------------------------------------

_INT64_MAX = 2**63 - 1  # np.iinfo(np.int64).max


def _counts_np(nr_free: npt.ArrayLike) -> np.ndarray:
    """``nr_free`` as an int64 array (last axis = order), validated.

    Counts must be non-negative integers, small enough that ``free_pages *
    1000`` fits in int64 (so every result is exact); the bound is far above
    any real machine (about 2**42 blocks per order for 11 orders).
    """
    import numpy as np

    arr = np.asarray(nr_free)
    if arr.ndim < 1 or arr.shape[-1] < 1:
        raise ValueError("nr_free needs a last axis of at least one order")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"nr_free must be an integer array, got dtype {arr.dtype}")
    n = arr.shape[-1]
    bound = _INT64_MAX // (_PERMILLE * ((1 << n) - 1))
    if arr.size:
        if arr.dtype.kind == "i" and int(arr.min()) < 0:
            raise ValueError("negative free block count in nr_free")
        if int(arr.max()) > bound:
            raise OverflowError(f"free block count above {bound}: int64 results would overflow")
    return arr.astype(np.int64, copy=False)  # cast before shifting


def _shifts(n: int) -> np.ndarray:
    import numpy as np

    return np.arange(n, dtype=np.int64)


def free_pages_np(nr_free: npt.ArrayLike) -> np.ndarray:
    """Vectorised :func:`free_pages` (pages, int64)."""
    import numpy as np

    arr = _counts_np(nr_free)
    return (arr << _shifts(arr.shape[-1])).sum(axis=-1, dtype=np.int64)


def free_blocks_np(nr_free: npt.ArrayLike) -> np.ndarray:
    """Vectorised :func:`free_blocks` (blocks, int64)."""
    import numpy as np

    return _counts_np(nr_free).sum(axis=-1, dtype=np.int64)


def _suitable_np(arr: np.ndarray, k: int) -> np.ndarray:
    import numpy as np

    return (arr[..., k:] << _shifts(arr.shape[-1] - k)).sum(axis=-1, dtype=np.int64)


def suitable_blocks_np(nr_free: npt.ArrayLike, k: int) -> np.ndarray:
    """Vectorised :func:`suitable_blocks` (order-``k`` blocks, int64)."""
    arr = _counts_np(nr_free)
    k = _check_order(k, arr.shape[-1])
    return _suitable_np(arr, k)


def unusable_index_np(nr_free: npt.ArrayLike, k: int) -> np.ndarray:
    """Vectorised :func:`unusable_index` (thousandths, int64); mm/vmstat.c
    unusable_free_index(). All operands are non-negative, so ``//`` is C's
    truncating division."""
    import numpy as np

    arr = _counts_np(nr_free)
    k = _check_order(k, arr.shape[-1])
    free = (arr << _shifts(arr.shape[-1])).sum(axis=-1, dtype=np.int64)
    unusable = free - (_suitable_np(arr, k) << np.int64(k))
    idx = unusable * _PERMILLE // np.maximum(free, 1)
    return np.where(free == 0, np.int64(_PERMILLE), idx).astype(np.int64, copy=False)


def fragmentation_index_np(nr_free: npt.ArrayLike, k: int) -> np.ndarray:
    """Vectorised :func:`fragmentation_index` (thousandths, int64);
    mm/vmstat.c __fragmentation_index(). The dividends and divisors are
    non-negative; only the final ``1000 - quotient`` can be negative, as in the
    kernel's conversion of the unsigned result to ``int``."""
    import numpy as np

    arr = _counts_np(nr_free)
    k = _check_order(k, arr.shape[-1])
    free = (arr << _shifts(arr.shape[-1])).sum(axis=-1, dtype=np.int64)
    total = arr.sum(axis=-1, dtype=np.int64)
    suitable = _suitable_np(arr, k)
    requested = np.int64(1) << np.int64(k)
    quotient = (_PERMILLE + free * _PERMILLE // requested) // np.maximum(total, 1)
    idx = np.where(suitable > 0, np.int64(-_PERMILLE), _PERMILLE - quotient)
    return np.where(total == 0, np.int64(0), idx).astype(np.int64, copy=False)


def extfrag_for_order_np(nr_free: npt.ArrayLike, k: int) -> np.ndarray:
    """Vectorised :func:`extfrag_for_order` (percent, int64); mm/vmstat.c
    extfrag_for_order()."""
    import numpy as np

    arr = _counts_np(nr_free)
    k = _check_order(k, arr.shape[-1])
    free = (arr << _shifts(arr.shape[-1])).sum(axis=-1, dtype=np.int64)
    unusable = free - (_suitable_np(arr, k) << np.int64(k))
    pct = unusable * _PERCENT // np.maximum(free, 1)
    return np.where(free == 0, np.int64(0), pct).astype(np.int64, copy=False)


def largest_free_order_np(nr_free: npt.ArrayLike) -> np.ndarray:
    """Vectorised :func:`largest_free_order` (order, int64; -1 when none)."""
    import numpy as np

    arr = _counts_np(nr_free)
    n = arr.shape[-1]
    nonzero = arr > 0
    top = (n - 1) - np.argmax(nonzero[..., ::-1], axis=-1)
    return np.where(nonzero.any(axis=-1), top, -1).astype(np.int64, copy=False)


def fragmentation_score_np(
    zones: Sequence[tuple[int, npt.ArrayLike]],
    order: int = COMPACTION_HPAGE_ORDER,
    node_present_pages: int | None = None,
) -> np.ndarray:
    """Vectorised :func:`fragmentation_score` (percent, int64).

    ``zones`` are ``(present_pages, nr_free_array)`` pairs whose arrays share a
    shape (e.g. rows = steps); mm/compaction.c fragmentation_score_node() over
    fragmentation_score_zone_weighted().
    """
    import numpy as np

    zs = [(operator.index(p), _counts_np(a)) for p, a in zones]
    if not zs:
        raise ValueError("a node needs at least one zone")
    node = sum(p for p, _ in zs) if node_present_pages is None else node_present_pages
    node = operator.index(node)
    score = np.zeros(zs[0][1].shape[:-1], dtype=np.int64)
    for present, arr in zs:
        if present < 0:
            raise ValueError("present page counts must be non-negative")
        if present == 0:  # !populated_zone(zone)
            continue
        score += np.int64(present) * extfrag_for_order_np(arr, order) // np.int64(node + 1)
    return score


# --------------------------------------------------------------------------
# DuckDB macros
# --------------------------------------------------------------------------

_N = [f"n{o}" for o in range(NR_PAGE_ORDERS)]
_NARGS = ", ".join(_N)


def _sql_free_pages() -> str:
    # mm/vmstat.c fill_contig_page_info(): free_pages += blocks << order
    return " + ".join(f"({n}::BIGINT << {o})" for o, n in enumerate(_N))


def _sql_free_blocks() -> str:
    # mm/vmstat.c fill_contig_page_info(): free_blocks_total += blocks
    return " + ".join(f"{n}::BIGINT" for n in _N)


def _sql_suitable_blocks() -> str:
    # mm/vmstat.c fill_contig_page_info(): if (order >= suitable_order)
    # free_blocks_suitable += blocks << (order - suitable_order)
    return " + ".join(
        f"(CASE WHEN k <= {o} THEN {n}::BIGINT << ({o} - k)::BIGINT ELSE 0::BIGINT END)"
        for o, n in enumerate(_N)
    )


def _sql_check_k(body: str) -> str:
    return (
        f"CASE WHEN k < 0 OR k > {MAX_PAGE_ORDER} "
        f"THEN error('order k out of range 0..{MAX_PAGE_ORDER}') ELSE ({body}) END"
    )


def _sql_largest_free_order() -> str:
    whens = " ".join(f"WHEN {_N[o]} > 0 THEN {o}" for o in range(MAX_PAGE_ORDER, -1, -1))
    return f"(CASE {whens} ELSE -1 END)::BIGINT"


_FREE = f"free_pages({_NARGS})"
_BLOCKS = f"free_blocks({_NARGS})"
_SUITABLE = f"suitable_blocks(k, {_NARGS})"

# name -> (parameters, body). All results are BIGINT.
METRIC_MACROS: dict[str, tuple[str, str]] = {
    "free_pages": (_NARGS, _sql_free_pages()),
    "free_blocks": (_NARGS, _sql_free_blocks()),
    "suitable_blocks": (f"k, {_NARGS}", _sql_check_k(_sql_suitable_blocks())),
    # mm/vmstat.c unusable_free_index()
    "unusable_index": (
        f"k, {_NARGS}",
        _sql_check_k(
            f"CASE WHEN {_FREE} = 0 THEN 1000::BIGINT "
            f"ELSE ({_FREE} - ({_SUITABLE} << k::BIGINT)) * 1000 // {_FREE} END"
        ),
    ),
    # mm/vmstat.c __fragmentation_index(); operands of // are non-negative
    "fragmentation_index": (
        f"k, {_NARGS}",
        _sql_check_k(
            f"CASE WHEN {_BLOCKS} = 0 THEN 0::BIGINT "
            f"WHEN {_SUITABLE} > 0 THEN -1000::BIGINT "
            f"ELSE 1000 - (1000 + {_FREE} * 1000 // (1::BIGINT << k::BIGINT)) // {_BLOCKS} END"
        ),
    ),
    # mm/vmstat.c extfrag_for_order()
    "extfrag_for_order": (
        f"k, {_NARGS}",
        _sql_check_k(
            f"CASE WHEN {_FREE} = 0 THEN 0::BIGINT "
            f"ELSE ({_FREE} - ({_SUITABLE} << k::BIGINT)) * 100 // {_FREE} END"
        ),
    ),
    "largest_free_order": (_NARGS, _sql_largest_free_order()),
    # mm/compaction.c fragmentation_score_zone_weighted() with
    # fragmentation_score_zone() = extfrag_for_order(zone, COMPACTION_HPAGE_ORDER);
    # a node's score is the SUM of this over its zones.
    "fragmentation_score_zone_weighted": (
        f"present_pages, node_present_pages, {_NARGS}",
        f"present_pages::BIGINT * extfrag_for_order({COMPACTION_HPAGE_ORDER}, {_NARGS}) "
        f"// (node_present_pages::BIGINT + 1)",
    ),
    # mm/compaction.c fragmentation_score_wmark()
    "fragmentation_score_wmark": (
        "proactiveness, low",
        "(CASE WHEN low THEN greatest(100 - proactiveness::BIGINT, 5) "
        "ELSE least(greatest(100 - proactiveness::BIGINT, 5) + 10, 100) END)::BIGINT",
    ),
}


def metric_macros_sql(*, temporary: bool = True) -> str:
    """SQL creating the metric macros: ``temporary`` ones live as long as the
    connection; the others are stored in the database file (its main schema),
    where any DuckDB client finds them."""
    kind = "TEMP MACRO" if temporary else "MACRO"
    return "\n".join(
        f"CREATE OR REPLACE {kind} {name}({params}) AS ({body});"
        for name, (params, body) in METRIC_MACROS.items()
    )


METRIC_MACROS_SQL: str = metric_macros_sql()
"""SQL creating the metric macros (temporary, per connection).

Argument order: the optional order ``k`` first, then the 11 counts
``n0 .. n10`` (free blocks of order 0 .. 10), e.g.
``unusable_index(9, nr_free_0, ..., nr_free_10)``;
``fragmentation_score_zone_weighted(present_pages, node_present_pages, n0 .. n10)``
and ``fragmentation_score_wmark(proactiveness, low)``. ``k`` outside 0..10
raises an error. Integer widths: every count is cast to BIGINT before it is
shifted.
"""


def install_macros(con: Any) -> None:
    """Create the metric macros (:data:`METRIC_MACROS_SQL`) on a DuckDB connection."""
    # DuckDB 2.0 requires draining a result before the connection is reused.
    con.execute(METRIC_MACROS_SQL).fetchall()
