"""Pure-Python reference of zsmalloc's zspages and ``zs_compact`` (Linux 6.12 mm/zsmalloc.c).

Written from the kernel, apart from the numba kernel
(replay.models.zsmalloc.zs_simulate), with Python lists: a fullness list is a
list whose index 0 is its head (``insert_zspage`` = insert at 0), a zspage's
free slots a stack whose last item is ``zspage->freeobj`` (``obj_free``
pushes, ``obj_malloc`` pops). Same inputs, same outputs: the zspages freed
(zspage, seq, 1 when zs_compact freed it) in order, and one row per check
(seq, ran, objects moved, bytes copied, pages freed, pages held, objects,
slots).
"""

from __future__ import annotations

from typing import Any

FULL = 11  # ZS_INUSE_RATIO_100


def fullness(inuse: int, objs: int) -> int:
    """``get_fullness_group``."""
    if inuse == 0:
        return 0
    if inuse == objs:
        return FULL
    return (100 * inuse // objs) // 10 + 1


def simulate(cls: list[int], created: list[int], slot0: list[int], npages: list[int],
             c_size: list[int], c_pages: list[int], c_objs: list[int], free_seq: list[int],
             checks: list[int], compact: bool, fill_pct: int
             ) -> tuple[list[tuple[int, int, int]], list[list[int]]]:  # fmt: skip
    lists: dict[tuple[int, int], list[int]] = {}
    slots: dict[int, list[int | None]] = {}
    free: dict[int, list[int]] = {}
    where: dict[int, tuple[int, int]] = {}  # object -> (zspage, slot)
    fg: dict[int, int] = {}
    alloc = [0] * len(c_objs)  # ZS_OBJS_ALLOCATED per class
    used = [0] * len(c_objs)  # ZS_OBJS_INUSE per class
    pool = 0
    freed: list[tuple[int, int, int]] = []
    rows: list[list[int]] = []

    def insert(z: int, g: int) -> None:
        fg[z] = g
        lists.setdefault((cls[z], g), []).insert(0, z)

    def remove(z: int) -> None:
        lists[(cls[z], fg[z])].remove(z)

    def inuse(z: int) -> int:
        return sum(o is not None for o in slots[z])

    def free_zspage(z: int, seq: int, by: int) -> None:
        nonlocal pool
        remove(z)
        alloc[cls[z]] -= c_objs[cls[z]]
        pool -= npages[z]
        freed.append((z, seq, by))

    # creations (after event created: before created + 1), frees (before their seq),
    # checks (before their seq, after the frees and creations up to it)
    evs: list[tuple[Any, ...]] = [(created[z] + 1, 0, z) for z in range(len(cls))]
    evs += [(t, 1, o) for o, t in enumerate(free_seq) if t >= 0]
    evs += [(s, 2, k) for k, s in enumerate(checks)]
    evs.sort()
    for t, kind, x in evs:
        if kind == 0:
            z = x
            n = c_objs[cls[z]]
            slots[z] = [slot0[z] + s for s in range(n)]
            for s in range(n):
                where[slot0[z] + s] = (z, s)
            free[z] = []
            insert(z, FULL)
            alloc[cls[z]] += n
            used[cls[z]] += n
            pool += npages[z]
        elif kind == 1:
            z, s = where.pop(x)
            c = cls[z]
            slots[z][s] = None
            free[z].append(s)
            used[c] -= 1
            g = fullness(inuse(z), c_objs[c])
            if g != fg[z]:
                remove(z)
                insert(z, g)
            if g == 0:
                free_zspage(z, t, 0)
        else:
            count = sum(
                (alloc[c] - used[c]) // c_objs[c] * c_pages[c]
                for c in range(len(c_objs))
                if c_objs[c] and alloc[c] > used[c]
            )
            ran = compact and count > 0 and 100 * sum(used) < fill_pct * sum(alloc)
            moved = copied = pages_freed = 0
            if ran:
                for c in reversed(range(len(c_objs))):
                    n = c_objs[c]
                    if not n:
                        continue
                    dst = None
                    while (alloc[c] - used[c]) // n * c_pages[c] > 0:
                        if dst is None:
                            dst = next((lists[(c, g)][0] for g in range(10, 0, -1)
                                        if lists.get((c, g))), None)  # fmt: skip
                            if dst is None:
                                break
                            remove(dst)
                        src = next((lists[(c, g)][0] for g in range(1, 11) if lists.get((c, g))),
                                   None)  # fmt: skip
                        if src is None:
                            break
                        remove(src)
                        for s in range(n):
                            o = slots[src][s]
                            if o is None:
                                continue
                            d = free[dst].pop()
                            slots[dst][d] = o
                            where[o] = (dst, d)
                            slots[src][s] = None
                            free[src].append(s)
                            moved += 1
                            copied += c_size[c]
                            if inuse(dst) == n or inuse(src) == 0:
                                break
                        insert(src, fullness(inuse(src), n))
                        if fg[src] == 0:
                            free_zspage(src, t, 1)
                            pages_freed += npages[src]
                        if inuse(dst) == n:
                            insert(dst, FULL)
                            dst = None
                    if dst is not None:
                        insert(dst, fullness(inuse(dst), n))
            rows.append([t, int(ran), moved, copied, pages_freed, pool, sum(used), sum(alloc)])
    return freed, rows
