"""Metrics: hand-computed kernel values, and Python / numpy / DuckDB agreement.

Notation in the comments: free = sum n[o] << o (pages), blocks = sum n[o],
suit(k) = sum_{o>=k} n[o] << (o-k) (order-k blocks); all divisions truncate.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replay.analysis import metrics as m

CAPTURE = Path(__file__).resolve().parent.parent / "traces" / "compact-6.18"
KS = (0, 3, 9, 10)
NCOLS = ", ".join(f"nr_free_{o}" for o in range(m.NR_PAGE_ORDERS))

# Compaction v1 era (Mel Gorman's 2010 series), /proc/buddyinfo Normal zone.
V1_BEFORE = [7901, 3005, 2205, 1511, 758, 245, 34, 3, 0, 1, 0]
V1_AFTER = [1900, 1187, 609, 325, 228, 178, 110, 32, 6, 4, 24]
# The real capture (traces/compact-6.18), Normal zone; asserted equal to the files below.
NORMAL_BEFORE = [363, 593, 2130, 1905, 1359, 985, 371, 143, 42, 1, 26]
NORMAL_AFTER = [900, 677, 425, 321, 216, 159, 69, 50, 45, 6, 37]
DMA = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 3]
DMA32 = [1, 1, 4, 2, 5, 4, 3, 3, 4, 2, 752]

# name -> (nr_free, free_pages, free_blocks, largest_free_order,
#          {k: (suitable_blocks, unusable_index, fragmentation_index, extfrag_for_order)})
HAND: dict[str, tuple[list[int], int, int, int, dict[int, tuple[int, int, int, int]]]] = {
    # free = 7901 + 3005*2 + 2205*4 + 1511*8 + 758*16 + 245*32 + 34*64 + 3*128 + 0*256
    #        + 1*512 + 0*1024
    #      = 7901 + 6010 + 8820 + 12088 + 12128 + 7840 + 2176 + 384 + 0 + 512 + 0 = 57859
    # blocks = 7901+3005+2205+1511+758+245+34+3+0+1+0 = 15663; largest order 9
    # k=0:  suit = free = 57859; unusable = (57859-57859)*1000//57859 = 0; frag -1000; ext 0
    # k=3:  suit = 1511 + 758*2 + 245*4 + 34*8 + 3*16 + 0*32 + 1*64 + 0*128
    #            = 1511 + 1516 + 980 + 272 + 48 + 0 + 64 + 0 = 4391
    #       free - (4391<<3) = 57859 - 35128 = 22731 (= 7901+6010+8820, orders 0..2)
    #       unusable = 22731000//57859 = 392 (392*57859 = 22680728 <= 22731000 < 22738587)
    #       ext = 2273100//57859 = 39 (39*57859 = 2256501 <= 2273100 < 2314360); frag -1000
    # k=9:  suit = 1 + 0*2 = 1; free - 512 = 57347
    #       unusable = 57347000//57859 = 991 (991*57859 = 57338269 <= 57347000 < 57396128)
    #       ext = 5734700//57859 = 99 (99*57859 = 5728041 <= 5734700 < 5785900); frag -1000
    # k=10: suit = 0; unusable = 57859000//57859 = 1000; ext = 100
    #       frag = 1000 - (1000 + 57859000//1024)//15663 = 1000 - (1000 + 56502)//15663
    #            = 1000 - 57502//15663 = 1000 - 3 = 997   (3*15663 = 46989 <= 57502 < 62652)
    "v1_before": (
        V1_BEFORE,
        57859,
        15663,
        9,
        {
            0: (57859, 0, -1000, 0),
            3: (4391, 392, -1000, 39),
            9: (1, 991, -1000, 99),
            10: (0, 1000, 997, 100),
        },
    ),
    # free = 1900 + 1187*2 + 609*4 + 325*8 + 228*16 + 178*32 + 110*64 + 32*128 + 6*256
    #        + 4*512 + 24*1024
    #      = 1900 + 2374 + 2436 + 2600 + 3648 + 5696 + 7040 + 4096 + 1536 + 2048 + 24576 = 57950
    # blocks = 1900+1187+609+325+228+178+110+32+6+4+24 = 4603; largest order 10
    # k=0:  suit = free = 57950; unusable 0; frag -1000; ext 0
    # k=3:  suit = 325 + 228*2 + 178*4 + 110*8 + 32*16 + 6*32 + 4*64 + 24*128
    #            = 325 + 456 + 712 + 880 + 512 + 192 + 256 + 3072 = 6405
    #       free - (6405<<3) = 57950 - 51240 = 6710 (= 1900+2374+2436)
    #       unusable = 6710000//57950 = 115 (115*57950 = 6664250 <= 6710000 < 6722200)
    #       ext = 671000//57950 = 11 (11*57950 = 637450 <= 671000 < 695400); frag -1000
    # k=9:  suit = 4 + 24*2 = 52; free - (52<<9) = 57950 - 26624 = 31326
    #       unusable = 31326000//57950 = 540 (540*57950 = 31293000 <= 31326000 < 31350950)
    #       ext = 3132600//57950 = 54 (54*57950 = 3129300 <= 3132600 < 3187250); frag -1000
    # k=10: suit = 24; free - (24<<10) = 57950 - 24576 = 33374
    #       unusable = 33374000//57950 = 575 (575*57950 = 33321250 <= 33374000 < 33379200)
    #       ext = 3337400//57950 = 57 (57*57950 = 3303150 <= 3337400 < 3361100); frag -1000
    "v1_after": (
        V1_AFTER,
        57950,
        4603,
        10,
        {
            0: (57950, 0, -1000, 0),
            3: (6405, 115, -1000, 11),
            9: (52, 540, -1000, 54),
            10: (24, 575, -1000, 57),
        },
    ),
    # free = 363 + 593*2 + 2130*4 + 1905*8 + 1359*16 + 985*32 + 371*64 + 143*128 + 42*256
    #        + 1*512 + 26*1024
    #      = 363 + 1186 + 8520 + 15240 + 21744 + 31520 + 23744 + 18304 + 10752 + 512 + 26624
    #      = 158509
    # blocks = 363+593+2130+1905+1359+985+371+143+42+1+26 = 7918
    # k=3:  suit = 1905 + 1359*2 + 985*4 + 371*8 + 143*16 + 42*32 + 1*64 + 26*128
    #            = 1905 + 2718 + 3940 + 2968 + 2288 + 1344 + 64 + 3328 = 18555
    #       free - 148440 = 10069; unusable = 10069000//158509 = 63; ext = 1006900//158509 = 6
    # k=9:  suit = 1 + 26*2 = 53; free - (53<<9) = 158509 - 27136 = 131373
    #       unusable = 131373000//158509 = 828 (828*158509 = 131245452 <= .. < 131403961)
    #       ext = 13137300//158509 = 82 (82*158509 = 12997738 <= .. < 13156247)
    # k=10: suit = 26; free - 26624 = 131885
    #       unusable = 131885000//158509 = 832; ext = 13188500//158509 = 83
    "normal_before": (
        NORMAL_BEFORE,
        158509,
        7918,
        10,
        {
            0: (158509, 0, -1000, 0),
            3: (18555, 63, -1000, 6),
            9: (53, 828, -1000, 82),
            10: (26, 832, -1000, 83),
        },
    ),
    # free = 900 + 677*2 + 425*4 + 321*8 + 216*16 + 159*32 + 69*64 + 50*128 + 45*256
    #        + 6*512 + 37*1024
    #      = 900 + 1354 + 1700 + 2568 + 3456 + 5088 + 4416 + 6400 + 11520 + 3072 + 37888
    #      = 78362
    # blocks = 900+677+425+321+216+159+69+50+45+6+37 = 2905
    # k=3:  suit = 321 + 216*2 + 159*4 + 69*8 + 50*16 + 45*32 + 6*64 + 37*128
    #            = 321 + 432 + 636 + 552 + 800 + 1440 + 384 + 4736 = 9301
    #       free - 74408 = 3954; unusable = 3954000//78362 = 50; ext = 395400//78362 = 5
    # k=9:  suit = 6 + 37*2 = 80; free - (80<<9) = 78362 - 40960 = 37402
    #       unusable = 37402000//78362 = 477 (477*78362 = 37378674 <= .. < 37457036)
    #       ext = 3740200//78362 = 47 (47*78362 = 3683014 <= .. < 3761376)
    # k=10: suit = 37; free - 37888 = 40474
    #       unusable = 40474000//78362 = 516; ext = 4047400//78362 = 51
    "normal_after": (
        NORMAL_AFTER,
        78362,
        2905,
        10,
        {
            0: (78362, 0, -1000, 0),
            3: (9301, 50, -1000, 5),
            9: (80, 477, -1000, 47),
            10: (37, 516, -1000, 51),
        },
    ),
    # Edge: nothing free. unusable is 1000 ("no free memory is all unusable"),
    # fragmentation index 0 (no free blocks), extfrag 0, largest order -1.
    "all_zero": ([0] * 11, 0, 0, -1, {k: (0, 1000, 0, 0) for k in KS}),
    # Edge: only order 0, n0 = 5: free = 5, blocks = 5
    # k=0:  suit 5, unusable 0, frag -1000, ext 0
    # k=3:  suit 0, unusable 5000//5 = 1000, ext 100
    #       frag = 1000 - (1000 + 5000//8)//5 = 1000 - (1000 + 625)//5 = 1000 - 325 = 675
    # k=9:  frag = 1000 - (1000 + 5000//512)//5 = 1000 - 1009//5 = 1000 - 201 = 799
    # k=10: frag = 1000 - (1000 + 5000//1024)//5 = 1000 - 1004//5 = 1000 - 200 = 800
    "only_order0": (
        [5] + [0] * 10,
        5,
        5,
        0,
        {
            0: (5, 0, -1000, 0),
            3: (0, 1000, 675, 100),
            9: (0, 1000, 799, 100),
            10: (0, 1000, 800, 100),
        },
    ),
    # Edge: only order 10, n10 = 2: free = 2048, blocks = 2; every k is satisfiable
    # suit(k) = 2 << (10-k): 2048, 256, 4, 2; unusable 0, frag -1000, ext 0
    "only_order10": (
        [0] * 10 + [2],
        2048,
        2,
        10,
        {
            0: (2048, 0, -1000, 0),
            3: (256, 0, -1000, 0),
            9: (4, 0, -1000, 0),
            10: (2, 0, -1000, 0),
        },
    ),
    # Kernel quirk: one free block of order 8, k = 9: suit 0, free 256, blocks 1
    # frag = 1000 - (1000 + 256000//512)//1 = 1000 - 1500 = -500 (C: u64 wrap, then int)
    # k=10: frag = 1000 - (1000 + 256000//1024)//1 = 1000 - 1250 = -250
    # k=3:  suit = 1 << 5 = 32, frag -1000; k=0: suit 256
    "one_order8": (
        [0] * 8 + [1, 0, 0],
        256,
        1,
        8,
        {
            0: (256, 0, -1000, 0),
            3: (32, 0, -1000, 0),
            9: (0, 1000, -500, 100),
            10: (0, 1000, -250, 100),
        },
    ),
}


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect(":memory:")
    m.install_macros(c)
    return c


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[object, ...]:
    """The single row of ``sql`` (fetchall: DuckDB 2.0 needs results drained)."""
    rows = con.execute(sql).fetchall()
    assert len(rows) == 1
    return tuple(rows[0])


def _sql_row(con: duckdb.DuckDBPyConnection, row: list[int], k: int) -> tuple[object, ...]:
    args = ", ".join(str(x) for x in row)
    return _one(
        con,
        f"SELECT suitable_blocks({k}, {args}), unusable_index({k}, {args}), "
        f"fragmentation_index({k}, {args}), extfrag_for_order({k}, {args})",
    )


@pytest.mark.parametrize("name", list(HAND))
def test_hand_computed(name: str, con: duckdb.DuckDBPyConnection) -> None:
    row, free, blocks, largest, per_k = HAND[name]
    arr = np.array([row, row], dtype=np.int64)
    assert m.free_pages(row) == free
    assert m.free_blocks(row) == blocks
    assert m.largest_free_order(row) == largest
    assert m.free_pages_np(arr).tolist() == [free, free]
    assert m.free_blocks_np(arr).tolist() == [blocks, blocks]
    assert m.largest_free_order_np(arr).tolist() == [largest, largest]
    args = ", ".join(str(x) for x in row)
    assert _one(
        con,
        f"SELECT free_pages({args}), free_blocks({args}), largest_free_order({args})",
    ) == (free, blocks, largest)
    for k, want in per_k.items():
        py = (
            m.suitable_blocks(row, k),
            m.unusable_index(row, k),
            m.fragmentation_index(row, k),
            m.extfrag_for_order(row, k),
        )
        assert py == want, (name, k)
        for f, w in zip(
            (
                m.suitable_blocks_np,
                m.unusable_index_np,
                m.fragmentation_index_np,
                m.extfrag_for_order_np,
            ),
            want,
            strict=True,
        ):
            out = f(arr, k)
            assert out.dtype == np.int64
            assert out.tolist() == [w, w], (name, k, f.__name__)
        assert _sql_row(con, row, k) == want, (name, k)


# -------------------------------------------------------------------- agreement

_COUNT = st.one_of(
    st.just(0),
    st.integers(0, 3),
    st.integers(0, 1 << 12),
    st.integers(0, 1 << 40),
)


@st.composite
def _rows(draw: st.DrawFn) -> list[int]:
    """11 counts; often with every order >= some cut empty, so that large k hit
    the ``suitable == 0`` branch of the fragmentation index."""
    row = draw(st.lists(_COUNT, min_size=11, max_size=11))
    cut = draw(st.integers(1, 11))
    return [n if o < cut else 0 for o, n in enumerate(row)]


_ROW = _rows()
_ROWS = st.lists(_ROW, min_size=1, max_size=25)


@settings(max_examples=60, deadline=None)
@given(rows=_ROWS)
def test_python_numpy_duckdb_agree(rows: list[list[int]], con: duckdb.DuckDBPyConnection) -> None:
    arr = np.array(rows, dtype=np.int64)
    expect: list[tuple[int, ...]] = []
    for i, r in enumerate(rows):
        for k in range(m.NR_PAGE_ORDERS):
            expect.append(
                (
                    i,
                    k,
                    m.free_pages(r),
                    m.free_blocks(r),
                    m.largest_free_order(r),
                    m.suitable_blocks(r, k),
                    m.unusable_index(r, k),
                    m.fragmentation_index(r, k),
                    m.extfrag_for_order(r, k),
                )
            )
    # numpy, per k over all rows at once
    got_np: list[tuple[int, ...]] = []
    fp, fb, lo = m.free_pages_np(arr), m.free_blocks_np(arr), m.largest_free_order_np(arr)
    per_k = {
        k: (
            m.suitable_blocks_np(arr, k),
            m.unusable_index_np(arr, k),
            m.fragmentation_index_np(arr, k),
            m.extfrag_for_order_np(arr, k),
        )
        for k in range(m.NR_PAGE_ORDERS)
    }
    for i in range(len(rows)):
        for k in range(m.NR_PAGE_ORDERS):
            cols = (fp, fb, lo, *per_k[k])
            got_np.append((i, k, *(int(c[i]) for c in cols)))
    assert got_np == expect
    # DuckDB, one query over a steps table crossed with every order
    table = pa.table(
        {"i": pa.array(range(len(rows)), pa.int64())}
        | {f"nr_free_{o}": pa.array(arr[:, o], pa.int64()) for o in range(m.NR_PAGE_ORDERS)}
    )
    con.register("steps_h", table)
    try:
        got_sql = con.execute(
            f"""SELECT i, k, free_pages({NCOLS}), free_blocks({NCOLS}),
                       largest_free_order({NCOLS}), suitable_blocks(k, {NCOLS}),
                       unusable_index(k, {NCOLS}), fragmentation_index(k, {NCOLS}),
                       extfrag_for_order(k, {NCOLS})
                FROM steps_h, range(0, 11) t(k) ORDER BY i, k"""
        ).fetchall()
    finally:
        con.unregister("steps_h")
    assert got_sql == expect


_ZONE = st.tuples(st.integers(0, 1 << 24), _ROW)


@settings(max_examples=40, deadline=None)
@given(zones=st.lists(_ZONE, min_size=1, max_size=4), steps=st.integers(1, 3))
def test_fragmentation_score_agrees(
    zones: list[tuple[int, list[int]]], steps: int, con: duckdb.DuckDBPyConnection
) -> None:
    want = m.fragmentation_score(zones)
    node = sum(p for p, _ in zones)
    np_zones = [(p, np.array([r] * steps, dtype=np.int64)) for p, r in zones]
    assert m.fragmentation_score_np(np_zones).tolist() == [want] * steps
    parts = " + ".join(
        f"fragmentation_score_zone_weighted({p}, {node}, {', '.join(map(str, r))})"
        for p, r in zones
    )
    assert _one(con, f"SELECT {parts}") == (want,)
    assert 0 <= want <= 100


# -------------------------------------------------------------------- details


def test_macros_cast_before_shift_on_int32_columns(con: duckdb.DuckDBPyConnection) -> None:
    # big = 2**31 - 1 in INTEGER columns: big << 8 and big << 10 overflow 32 bits,
    # so the macros must widen to BIGINT before shifting (DuckDB raises on overflow).
    big = (1 << 31) - 1
    row = [big, 0, 0, 0, 0, 0, 0, 0, big, 0, big]
    table = pa.table({f"nr_free_{o}": pa.array([row[o]], pa.int32()) for o in range(11)})
    con.register("steps_i32", table)
    try:
        got = _one(
            con,
            f"SELECT free_pages({NCOLS}), unusable_index(9, {NCOLS}), "
            f"fragmentation_index(10, {NCOLS}), extfrag_for_order(9, {NCOLS}) FROM steps_i32",
        )
    finally:
        con.unregister("steps_i32")
    # free = big + big*256 + big*1024 = big*1281; suitable(9) = big << 1 = 2*big,
    # and 2*big << 9 = big*1024; free - big*1024 = big*257
    # unusable(9) = big*257*1000 // (big*1281) = 257000//1281 = 200 (200*1281 = 256200)
    # extfrag(9) = 25700//1281 = 20 (20*1281 = 25620); frag(10): suitable = big > 0 -> -1000
    assert got == (big * 1281, 200, -1000, 20)
    assert got == (
        m.free_pages(row),
        m.unusable_index(row, 9),
        m.fragmentation_index(row, 10),
        m.extfrag_for_order(row, 9),
    )


def test_macros_script_and_install(con: duckdb.DuckDBPyConnection) -> None:
    assert m.METRIC_MACROS_SQL.count("CREATE OR REPLACE TEMP MACRO") == len(m.METRIC_MACROS)
    names = {
        r[0]
        for r in con.execute(
            "SELECT DISTINCT function_name FROM duckdb_functions() WHERE function_type = 'macro'"
        ).fetchall()
    }
    assert set(m.METRIC_MACROS) <= names
    m.install_macros(con)  # idempotent (CREATE OR REPLACE)


@pytest.mark.parametrize("k", [-1, 11])
def test_order_out_of_range(k: int, con: duckdb.DuckDBPyConnection) -> None:
    row = V1_BEFORE
    for f in (m.suitable_blocks, m.unusable_index, m.fragmentation_index, m.extfrag_for_order):
        with pytest.raises(ValueError):
            f(row, k)
    with pytest.raises(ValueError):
        m.unusable_index_np(np.array([row]), k)
    args = ", ".join(map(str, row))
    with pytest.raises(duckdb.Error, match="out of range"):
        con.execute(f"SELECT unusable_index({k}, {args})").fetchall()


def test_bad_counts() -> None:
    with pytest.raises(ValueError):
        m.free_pages([1, -1, 0])
    with pytest.raises(ValueError):
        m.free_pages_np(np.array([[1, -1, 0]]))
    with pytest.raises(TypeError):
        m.free_pages_np(np.array([[1.0, 2.0]]))
    with pytest.raises(TypeError):
        m.free_pages([1.5, 2])  # type: ignore[list-item]
    with pytest.raises(OverflowError):
        m.free_pages_np(np.array([[0] * 10 + [1 << 50]]))


def test_numpy_shapes() -> None:
    # The last axis is the order; other axes are kept (1-D -> scalar array, 3-D -> 2-D).
    one = np.array(V1_AFTER)
    assert m.unusable_index_np(one, 9).shape == ()
    assert int(m.unusable_index_np(one, 9)) == 540
    cube = np.array([[V1_BEFORE, V1_AFTER]] * 3, dtype=np.int32)  # int32 input, cast first
    assert m.extfrag_for_order_np(cube, 9).tolist() == [[99, 54]] * 3
    assert m.free_pages_np(np.zeros((0, 11), dtype=np.int64)).shape == (0,)


@pytest.mark.parametrize(
    ("proactiveness", "low", "high"),
    [(0, 100, 100), (20, 80, 90), (50, 50, 60), (91, 9, 19), (95, 5, 15), (100, 5, 15)],
)
def test_wmark(proactiveness: int, low: int, high: int, con: duckdb.DuckDBPyConnection) -> None:
    # wmark_low = max(100 - p, 5); wmark_high = min(wmark_low + 10, 100)
    assert m.fragmentation_score_wmark(proactiveness, low=True) == low
    assert m.fragmentation_score_wmark(proactiveness, low=False) == high
    assert _one(
        con,
        f"SELECT fragmentation_score_wmark({proactiveness}, true), "
        f"fragmentation_score_wmark({proactiveness}, false)",
    ) == (low, high)


def test_wmark_default_and_trigger() -> None:
    assert m.COMPACTION_PROACTIVENESS_DEFAULT == 20
    assert m.fragmentation_score_wmark(low=True) == 80
    assert m.fragmentation_score_wmark(low=False) == 90
    assert not m.should_proactive_compact(90)  # strictly greater than wmark_high
    assert m.should_proactive_compact(91)
    assert not m.should_proactive_compact(100, proactiveness=0)
    with pytest.raises(ValueError):
        m.fragmentation_score_wmark(101, low=True)


def test_score_single_zone_never_reaches_100() -> None:
    # present * 100 // (node_present + 1): 1000 * 100 // 1001 = 99
    only_small = [7] + [0] * 10  # extfrag(9) = 100
    assert m.fragmentation_score([(1000, only_small)]) == 99
    # an unpopulated zone is skipped and does not change the node total
    assert m.fragmentation_score([(1000, only_small), (0, [0] * 11)]) == 99


# -------------------------------------------------------------------- real capture


def _buddyinfo(path: Path) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for line in path.read_text().splitlines():
        mo = re.match(r"Node\s+0,\s+zone\s+(\S+)\s+(.*)$", line)
        if mo:
            out[mo.group(1)] = [int(x) for x in mo.group(2).split()]
    return out


def _present(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    zone = None
    for line in path.read_text().splitlines():
        mo = re.match(r"Node\s+0,\s+zone\s+(\S+)", line)
        if mo:
            zone = mo.group(1)
            continue
        mo = re.match(r"\s+present\s+(\d+)$", line)
        if mo and zone is not None:
            out[zone] = int(mo.group(1))
    return out


@pytest.mark.skipif(not CAPTURE.exists(), reason="capture not present")
def test_real_capture_compaction(con: duckdb.DuckDBPyConnection) -> None:
    before = _buddyinfo(CAPTURE / "before.buddyinfo")
    after = _buddyinfo(CAPTURE / "after.buddyinfo")
    present = _present(CAPTURE / "before.zoneinfo")
    assert present == _present(CAPTURE / "after.zoneinfo")
    assert before["Normal"] == NORMAL_BEFORE
    assert after["Normal"] == NORMAL_AFTER
    assert before["DMA"] == after["DMA"] == DMA
    assert before["DMA32"] == after["DMA32"] == DMA32
    # present pages: DMA 3998, DMA32 782336, Normal 5505024, Movable 0, Device 0
    # node_present_pages = 3998 + 782336 + 5505024 = 6291358; divisor 6291359
    assert present == {"DMA": 3998, "DMA32": 782336, "Normal": 5505024, "Movable": 0, "Device": 0}

    # extfrag_for_order(9), Normal: before 13137300//158509 = 82, after 3740200//78362 = 47
    assert m.extfrag_for_order(before["Normal"], 9) == 82
    assert m.extfrag_for_order(after["Normal"], 9) == 47
    # unusable_index(9): before 828, after 477 -> compaction made more of the free
    # memory usable for an order-9 allocation, even though free pages fell from
    # 158509 to 78362 between the snapshots.
    assert m.unusable_index(before["Normal"], 9) == 828
    assert m.unusable_index(after["Normal"], 9) == 477
    assert m.free_pages(after["Normal"]) < m.free_pages(before["Normal"])
    # Order-9 blocks were free both times, so the fragmentation index is -1000.
    assert m.fragmentation_index(before["Normal"], 9) == -1000
    assert m.fragmentation_index(after["Normal"], 9) == -1000

    # Fragmentation score (node 0 = all zones):
    # DMA:   free 3840, suit(9) = 1 + 3*2 = 7, 3840 - 3584 = 256, ext = 25600//3840 = 6,
    #        weighted = 3998*6 // 6291359 = 23988 // 6291359 = 0
    # DMA32: free 772915, suit(9) = 2 + 752*2 = 1506, 772915 - 771072 = 1843,
    #        ext = 184300//772915 = 0, weighted 0
    # Normal before: 5505024*82 // 6291359 = 451411968 // 6291359 = 71
    #        (71*6291359 = 446686489 <= 451411968 < 452977848)
    # Normal after:  5505024*47 // 6291359 = 258736128 // 6291359 = 41
    #        (41*6291359 = 257945719 <= 258736128 < 264237078)
    order = ("DMA", "DMA32", "Normal", "Movable", "Device")
    zb = [(present[z], before.get(z, [0] * 11)) for z in order]
    za = [(present[z], after.get(z, [0] * 11)) for z in order]
    assert m.fragmentation_score_zone_weighted(3998, 6291358, DMA) == 0
    assert m.fragmentation_score_zone_weighted(782336, 6291358, DMA32) == 0
    assert m.fragmentation_score(zb) == 71
    assert m.fragmentation_score(za) == 41
    stacked = [(p, np.array([b, a])) for (p, b), (_, a) in zip(zb, za, strict=True)]
    assert m.fragmentation_score_np(stacked).tolist() == [71, 41]
    # Both below wmark_high 90 (proactiveness 20): kcompactd would not have started
    # proactive compaction; this capture ran echo 1 > /proc/sys/vm/compact_memory.
    assert not m.should_proactive_compact(71)
    # DuckDB: sum of weighted zone scores over the node.
    for rows, want in ((before, 71), (after, 41)):
        parts = " + ".join(
            f"fragmentation_score_zone_weighted({present[z]}, 6291358, "
            f"{', '.join(map(str, rows[z]))})"
            for z in ("DMA", "DMA32", "Normal")
        )
        assert _one(con, f"SELECT {parts}") == (want,)
