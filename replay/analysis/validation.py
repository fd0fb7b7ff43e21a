"""Controlled experiments behind docs/validation.md that no trace scenario isolates.

``python -m replay.analysis.validation kswapd`` prints the lumpy-reclaim table: a zone
full of reclaimable page-cache pages whose LRU age is unrelated to their pfn
(random churn), then order-9 requests that wake kswapd below the low
watermark. It runs the models through ``ZoneState``'s object API, which is
the engine's own event path (replay.models.events.apply_event). Units: pages,
pfn, order.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

from replay.models.internal import C_EVICTED, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE
from replay.models.zone import ZoneState


def kswapd_lumpy(
    policy: str, *, pages: int = 32768, churn_rounds: int = 4, requests: int = 16, seed: int = 0
) -> dict[str, Any]:
    """Evicted pages per order-9 block that kswapd produced, for ``policy`` lru|targeted.

    1. Fill the zone with order-0 RECLAIMABLE pages (page cache), leaving the
       min watermark free.
    2. ``churn_rounds`` times: free a random half of the cached pages and
       allocate as many again (re-reads): the new pages land on the freed
       pfns in free-list order, so LRU age loses its link to pfn.
    3. ``requests`` order-9 MOVABLE requests (THP faults), none freed; each
       below the low watermark wakes kswapd for order 9 (budget 4096 pages).

    Returns the evictions, the order-9 requests served, and evicted pages
    per served request (each needs one whole free order-9 block).
    """
    wm = (pages // 64, pages // 64 + pages // 256, pages // 64 + pages // 128)
    z = ZoneState(0, pages, kswapd=policy, wmark=wm, max_objects=pages * 4)
    rng = np.random.default_rng(seed)
    nxt = 0
    live: list[int] = []
    for _ in range(pages - wm[0]):
        if z.alloc_obj(nxt, 0, MIGRATE_RECLAIMABLE, reclaimable=True) >= 0:
            live.append(nxt)
        nxt += 1
    evicted_fill = int(z.counters[C_EVICTED])
    for _ in range(churn_rounds):
        arr = np.array(live)
        drop = rng.random(arr.shape[0]) < 0.5
        for x in arr[drop]:
            z.free_obj(int(x))
        live = [int(x) for x in arr[~drop]]
        for _ in range(int(drop.sum())):
            if z.alloc_obj(nxt, 0, MIGRATE_RECLAIMABLE, reclaimable=True) >= 0:
                live.append(nxt)
            nxt += 1
    before = int(z.counters[C_EVICTED])
    served = 0
    for _ in range(requests):
        if z.alloc_obj(nxt, 9, MIGRATE_MOVABLE, movable=True, reclaimable=False) >= 0:
            served += 1
        nxt += 1
    evicted = int(z.counters[C_EVICTED]) - before
    wakes = [e for e in z.model_events if e[0] == "kswapd" and e[2] == 9]
    return {
        "policy": policy,
        "zone_pages": pages,
        "churn_rounds": churn_rounds,
        "evicted_during_fill": evicted_fill,
        "order9_requests": requests,
        "order9_served": served,
        "kswapd_wakes_order9": len(wakes),
        "evicted": evicted,
        "evicted_per_served": round(evicted / served, 1) if served else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m replay.analysis.validation", description=__doc__)
    ap.add_argument("experiment", choices=["kswapd"])
    ap.add_argument("--pages", type=int, default=32768)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    for policy in ("lru", "targeted"):
        r = kswapd_lumpy(policy, pages=a.pages, churn_rounds=a.rounds, requests=a.requests,
                         seed=a.seed)  # fmt: skip
        sys.stdout.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
