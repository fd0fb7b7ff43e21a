"""``watermarks``: zone watermarks, pcp batch/high and the watermark check of Linux 6.18.

Reproduces, with the kernel's integer arithmetic (unsigned C division is Python ``//`` on the
non-negative values involved), these pieces of ``mm/page_alloc.c``:

* :func:`calculate_min_free_kbytes` -- ``calculate_min_free_kbytes`` (run by
  ``init_per_zone_wmark_min``): the boot-time default of ``vm.min_free_kbytes``.
* :func:`setup_per_zone_wmarks` -- ``__setup_per_zone_wmarks``: per-zone min/low/high/promo.
* :func:`zone_batchsize` / :func:`zone_highsize` -- the pcp ``batch`` and ``high_min`` set by
  ``zone_set_pageset_high_and_batch``.
* :func:`zone_watermark_ok` -- ``__zone_watermark_ok`` (numba, callable from model kernels).

Assumes x86-64 defaults: ``PAGE_SHIFT`` 12 (4 KiB pages), ``CONFIG_MMU``, 11 page orders, no
CMA. Units: watermarks, ``managed`` and free counts are in pages; ``min_free_kbytes`` is in
kbytes (KiB).

The ``ALLOC_*`` values are those of ``mm/internal.h`` from 6.3 on (when ``ALLOC_HARDER`` became
``ALLOC_NON_BLOCK`` and ``ALLOC_HIGH`` became ``ALLOC_MIN_RESERVE``). They were checked against
``mm/internal.h`` text that already has ``ALLOC_TRYLOCK`` (added in 6.15), and v6.19's
``__zone_watermark_ok`` still uses ``ALLOC_MIN_RESERVE``/``ALLOC_NON_BLOCK``. They were not
checked against a tagged v6.18 tree. Note that ``ALLOC_MIN_RESERVE`` is 0x20, equal to
``__GFP_HIGH``, so ``gfp_to_alloc_flags`` can copy that bit over. 0x08 is ``ALLOC_OOM``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from replay.jit import njit

__all__ = [
    "ALLOC_HIGHATOMIC",
    "ALLOC_MIN_RESERVE",
    "ALLOC_NON_BLOCK",
    "ALLOC_NO_WATERMARKS",
    "ALLOC_OOM",
    "ALLOC_RESERVES",
    "ALLOC_WMARK_HIGH",
    "ALLOC_WMARK_LOW",
    "ALLOC_WMARK_MASK",
    "ALLOC_WMARK_MIN",
    "MIGRATE_PCPTYPES",
    "MIN_PERCPU_PAGELIST_HIGH_FRACTION",
    "PAGE_SHIFT",
    "PAGE_SIZE",
    "SWAP_CLUSTER_MAX",
    "WMARK_HIGH",
    "WMARK_LOW",
    "WMARK_MIN",
    "WMARK_PROMO",
    "Watermarks",
    "calculate_min_free_kbytes",
    "mult_frac",
    "rounddown_pow_of_two",
    "setup_per_zone_wmarks",
    "zone_batchsize",
    "zone_highsize",
    "zone_watermark_ok",
]

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
SZ_1M = 1 << 20
SWAP_CLUSTER_MAX = 32  # include/linux/swap.h
MIN_PERCPU_PAGELIST_HIGH_FRACTION = 8  # mm/page_alloc.c: high_max uses managed / 8
MIGRATE_PCPTYPES = 3  # MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE

# enum zone_watermarks (include/linux/mmzone.h)
WMARK_MIN = 0
WMARK_LOW = 1
WMARK_HIGH = 2
WMARK_PROMO = 3

# mm/internal.h alloc_flags. The ALLOC_WMARK bits index zone->_watermark.
ALLOC_WMARK_MIN = WMARK_MIN
ALLOC_WMARK_LOW = WMARK_LOW
ALLOC_WMARK_HIGH = WMARK_HIGH
ALLOC_NO_WATERMARKS = 0x04  # don't check watermarks at all
ALLOC_WMARK_MASK = ALLOC_NO_WATERMARKS - 1
ALLOC_OOM = 0x08  # CONFIG_MMU value (with !MMU it is ALLOC_NO_WATERMARKS)
ALLOC_NON_BLOCK = 0x10  # caller cannot block: with ALLOC_MIN_RESERVE, min -= min / 4
ALLOC_MIN_RESERVE = 0x20  # __GFP_HIGH: min -= min / 2
ALLOC_HIGHATOMIC = 0x200  # may use MIGRATE_HIGHATOMIC
# Flags that allow allocations below the min watermark.
ALLOC_RESERVES = ALLOC_NON_BLOCK | ALLOC_MIN_RESERVE | ALLOC_HIGHATOMIC | ALLOC_OOM

_U64_MASK = (1 << 64) - 1
_INT_MIN_FREE_KBYTES_MIN = 128
_INT_MIN_FREE_KBYTES_MAX = 262144


@dataclass(frozen=True)
class Watermarks:
    """One zone's ``_watermark[]`` (``WMARK_MIN``..``WMARK_PROMO``), in pages, boost excluded."""

    min: int
    low: int
    high: int
    promo: int


def mult_frac(x: int, n: int, d: int) -> int:
    """``mult_frac(x, n, d)`` of include/linux/math.h: ``x * n / d`` without overflowing.

    The kernel macro computes ``q = x / d; r = x % d; q * n + r * n / d``. For the non-negative
    values used here this equals ``x * n // d``; the quotient/remainder form is kept as written.
    """
    if x < 0 or n < 0 or d <= 0:
        raise ValueError(f"mult_frac expects x, n >= 0 and d > 0, got {x}, {n}, {d}")
    q = x // d
    r = x % d
    return q * n + r * n // d


def rounddown_pow_of_two(n: int) -> int:
    """``rounddown_pow_of_two(n)`` of include/linux/log2.h: the largest power of 2 <= ``n``."""
    if n < 1:
        raise ValueError(f"rounddown_pow_of_two is undefined for {n}")
    return 1 << (n.bit_length() - 1)


def calculate_min_free_kbytes(lowmem_pages: int) -> int:
    """Boot-time ``vm.min_free_kbytes`` (kbytes), as ``calculate_min_free_kbytes`` computes it.

    mm/page_alloc.c ``calculate_min_free_kbytes`` (called by ``init_per_zone_wmark_min``)::

        lowmem_kbytes = nr_free_buffer_pages() * (PAGE_SIZE >> 10);
        new_min_free_kbytes = int_sqrt(lowmem_kbytes * 16);
        min_free_kbytes = clamp(new_min_free_kbytes, 128, 262144);

    ``lowmem_pages`` is ``nr_free_buffer_pages()`` in pages: the sum, over zones up to
    ZONE_NORMAL, of ``managed - high_wmark`` (zones whose high watermark is at least their
    managed count add nothing). ``int_sqrt`` is the exact floor square root (``math.isqrt``);
    ``lowmem_kbytes * 16`` wraps modulo 2**64 as the kernel's ``unsigned long`` does, and the
    result is stored in an ``int`` before the clamp, also as in the kernel. This models the
    default path only: a value written to the sysctl (``user_min_free_kbytes``) takes precedence
    in the kernel, and with THP enabled khugepaged's ``set_recommended_min_free_kbytes`` may
    raise the live value afterwards.
    """
    if lowmem_pages < 0:
        raise ValueError(f"lowmem_pages must be >= 0, got {lowmem_pages}")
    lowmem_kbytes = (lowmem_pages * (PAGE_SIZE >> 10)) & _U64_MASK
    root = math.isqrt((lowmem_kbytes * 16) & _U64_MASK)
    # unsigned long -> int conversion (two's complement truncation to 32 bits)
    new_min_free_kbytes = ((root + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
    return max(_INT_MIN_FREE_KBYTES_MIN, min(new_min_free_kbytes, _INT_MIN_FREE_KBYTES_MAX))


def setup_per_zone_wmarks(
    managed: list[int],
    min_free_kbytes: int,
    watermark_scale_factor: int = 10,
    highmem: list[bool] | None = None,
) -> list[Watermarks]:
    """Per-zone watermarks (pages) as mm/page_alloc.c ``__setup_per_zone_wmarks`` sets them.

    ``managed`` is ``zone_managed_pages()`` (pages) for every zone of every node, in any order;
    ``min_free_kbytes`` is ``vm.min_free_kbytes`` (kbytes); ``watermark_scale_factor`` is
    ``vm.watermark_scale_factor`` (units of 1/10000 of the zone). ``highmem[i]`` marks a zone
    for which the kernel's ``is_highmem(zone) || zone_idx(zone) == ZONE_MOVABLE`` holds (zones
    named HighMem or Movable); default: none. The kernel does::

        pages_min = min_free_kbytes >> (PAGE_SHIFT - 10);
        lowmem_pages = sum of managed over the zones that are not highmem-like;
        for each zone:
            tmp = (u64)pages_min * managed / lowmem_pages;
            if highmem-like: min = clamp(managed / 1024, SWAP_CLUSTER_MAX, 128);
            else:            min = tmp;
            tmp = max(tmp >> 2, mult_frac(managed, watermark_scale_factor, 10000));
            low = min + tmp; high = low + tmp; promo = high + tmp;

    Note that for a highmem-like zone the ``tmp`` of the second step is still the proportional
    share, not the clamped ``min`` (an empty Movable zone gets 32/32/32/32). Empty zones are
    included by ``for_each_zone`` and contribute nothing to ``lowmem_pages``. The result omits
    ``watermark_boost``, which ``__setup_per_zone_wmarks`` resets to 0 and which
    ``/proc/zoneinfo`` adds to every printed watermark.
    """
    if highmem is None:
        highmem = [False] * len(managed)
    if len(highmem) != len(managed):
        raise ValueError(f"highmem has {len(highmem)} entries, managed has {len(managed)}")
    if min_free_kbytes < 0 or watermark_scale_factor < 0:
        raise ValueError("min_free_kbytes and watermark_scale_factor must be >= 0")
    if any(m < 0 for m in managed):
        raise ValueError("managed page counts must be >= 0")
    pages_min = min_free_kbytes >> (PAGE_SHIFT - 10)
    lowmem_pages = sum(m for m, hm in zip(managed, highmem, strict=True) if not hm)
    if lowmem_pages == 0:
        # the kernel would divide by zero; a booted system always has lowmem
        raise ValueError("no managed pages in any lowmem zone")
    out: list[Watermarks] = []
    for m, hm in zip(managed, highmem, strict=True):
        tmp = pages_min * m // lowmem_pages
        if hm:
            wmark_min = max(SWAP_CLUSTER_MAX, min(m // 1024, 128))
        else:
            wmark_min = tmp
        tmp = max(tmp >> 2, mult_frac(m, watermark_scale_factor, 10000))
        low = wmark_min + tmp
        high = low + tmp
        out.append(Watermarks(min=wmark_min, low=low, high=high, promo=high + tmp))
    return out


def zone_batchsize(managed: int) -> int:
    """The pcp batch (pages) of a zone, as mm/page_alloc.c ``zone_batchsize`` (CONFIG_MMU).

    ::

        batch = min(managed >> 10, SZ_1M / PAGE_SIZE);
        batch /= 4;
        if (batch < 1) batch = 1;
        batch = rounddown_pow_of_two(batch + batch / 2) - 1;

    Returns 0 for zones under 8192 pages and 63 from 176128 pages up; the kernel's
    ``zone_set_pageset_high_and_batch`` uses ``max(1, zone_batchsize(zone))``, which is the
    ``batch:`` that ``/proc/zoneinfo`` prints.
    """
    if managed < 0:
        raise ValueError(f"managed must be >= 0, got {managed}")
    batch = min(managed >> 10, SZ_1M // PAGE_SIZE)
    batch //= 4
    if batch < 1:
        batch = 1
    return rounddown_pow_of_two(batch + batch // 2) - 1


def zone_highsize(low_wmark: int, batch: int, nr_cpus: int) -> int:
    """The pcp ``high_min`` (pages) from mm/page_alloc.c ``zone_highsize``, high_fraction 0.

    With the default ``vm.percpu_pagelist_high_fraction`` = 0::

        total_pages = low_wmark_pages(zone);
        high = total_pages / nr_split_cpus;
        high = max(high, batch << 2);

    ``low_wmark`` is the zone's low watermark in pages (``low_wmark_pages`` includes any
    boost), ``batch`` the pageset batch (``max(1, zone_batchsize())``), and ``nr_cpus`` is
    ``nr_split_cpus``: the CPUs of the zone's node (``cpumask_of_node``) plus ``cpu_online``
    (1 only while a CPU is being onlined), or ``num_online_cpus()`` if that is 0. The same
    function with ``low_wmark = managed // high_fraction`` gives the fraction path, e.g.
    ``high_max`` with ``MIN_PERCPU_PAGELIST_HIGH_FRACTION``.
    """
    if nr_cpus < 1:
        raise ValueError(f"nr_cpus must be >= 1, got {nr_cpus}")
    if low_wmark < 0 or batch < 0:
        raise ValueError("low_wmark and batch must be >= 0")
    high = low_wmark // nr_cpus
    return max(high, batch << 2)


@njit(cache=True)
def zone_watermark_ok(
    order: int,
    mark: int,
    free_pages: int,
    nr_free_mt: npt.NDArray[np.int64],
    alloc_flags: int = 0,
) -> bool:
    """mm/page_alloc.c ``__zone_watermark_ok`` for a zone without lowmem_reserve, highatomic
    reserve, CMA or unaccepted memory.

    ``mark`` is the watermark in pages (e.g. ``Watermarks.min``), ``free_pages`` the zone's
    NR_FREE_PAGES (pages), ``nr_free_mt[o, mt]`` the number of free blocks of order ``o`` on the
    free list of migratetype ``mt`` (an ``(NR_PAGE_ORDERS, MIGRATE_PCPTYPES)`` int64 array),
    ``alloc_flags`` the ``ALLOC_*`` bits. The kernel logic::

        free_pages -= (1 << order) - 1;           /* __zone_watermark_unusable_free */
        if (alloc_flags & ALLOC_RESERVES) {
            if (alloc_flags & ALLOC_MIN_RESERVE) {
                min -= min / 2;
                if (alloc_flags & ALLOC_NON_BLOCK)   /* only together with MIN_RESERVE */
                    min -= min / 4;
            }
            if (alloc_flags & ALLOC_OOM)
                min -= min / 2;
        }
        if (free_pages <= min + lowmem_reserve) return false;
        if (!order) return true;
        for (o = order; o < NR_PAGE_ORDERS; o++)
            for (mt = 0; mt < MIGRATE_PCPTYPES; mt++)
                if (!free_area_empty(area, mt)) return true;
        return false;

    ``ALLOC_NO_WATERMARKS`` is not looked at here (``get_page_from_freelist`` skips the check
    altogether for it); an order past the array's last row finds no free block.
    """
    free = free_pages - ((1 << order) - 1)
    wmin = mark
    if alloc_flags & ALLOC_RESERVES:
        if alloc_flags & ALLOC_MIN_RESERVE:
            wmin -= wmin // 2
            if alloc_flags & ALLOC_NON_BLOCK:
                wmin -= wmin // 4
        if alloc_flags & ALLOC_OOM:
            wmin -= wmin // 2
    if free <= wmin:
        return False
    if order == 0:
        return True
    n_mt = min(MIGRATE_PCPTYPES, nr_free_mt.shape[1])
    for o in range(order, nr_free_mt.shape[0]):
        for mt in range(n_mt):
            if nr_free_mt[o, mt] > 0:
                return True
    return False
