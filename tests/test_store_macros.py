"""The store's macros live in the database file (issue 19, item 17): a plain DuckDB
client, with none of replay's code, calls every metric macro, and opening the file
writable with replay stores this version's definitions."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from conftest import ERAS, run_cli

from replay.analysis import metrics as m
from replay.store import Store

# free blocks per order 0..10 (buddyinfo counts), as a zone could have them
NR_FREE = [
    [0] * 11,
    [833, 640, 390, 305, 209, 159, 69, 49, 45, 6, 3],
    [5000, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
    [7, 0, 3, 0, 1, 0, 0, 0, 0, 1, 0],
]


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with one small real trace, written by replay and closed."""
    path = tmp_path_factory.mktemp("macros") / "m.duckdb"
    res = run_cli("ingest", ERAS / "v5.15.txt", "--name", "t", "--db", path, "-q")
    assert res.code == 0, res.err
    return path


def _args(nr_free: list[int]) -> str:
    return ", ".join(str(n) for n in nr_free)


def test_every_metric_macro_from_a_bare_duckdb_client(stored: Path) -> None:
    con = duckdb.connect(str(stored), read_only=True)
    try:
        for nr_free in NR_FREE:
            a = _args(nr_free)
            for k in (0, 3, 9, 10):
                got = con.execute(
                    f"SELECT unusable_index({k}, {a}), fragmentation_index({k}, {a}), "
                    f"extfrag_for_order({k}, {a}), suitable_blocks({k}, {a})"
                ).fetchone()
                assert got == (
                    m.unusable_index(nr_free, k),
                    m.fragmentation_index(nr_free, k),
                    m.extfrag_for_order(nr_free, k),
                    m.suitable_blocks(nr_free, k),
                ), (nr_free, k)
            got = con.execute(
                f"SELECT free_pages({a}), free_blocks({a}), largest_free_order({a}), "
                f"fragmentation_score_zone_weighted(1048576, 2097152, {a})"
            ).fetchone()
            assert got == (
                m.free_pages(nr_free),
                m.free_blocks(nr_free),
                m.largest_free_order(nr_free),
                m.fragmentation_score_zone_weighted(1048576, 2097152, nr_free),
            )
        for proactiveness in (0, 20, 100):
            for low in (True, False):
                (got,) = con.execute(
                    f"SELECT fragmentation_score_wmark({proactiveness}, {low})"
                ).fetchone()
                assert got == m.fragmentation_score_wmark(proactiveness, low=low)
        # the store's own helpers too, over the file's rows
        got = con.execute(
            "SELECT mt_name(1), hexint('0x10'), gfp_direct_reclaim('GFP_KERNEL'), "
            "gfp_direct_reclaim('GFP_ATOMIC'), "
            "(SELECT count(*) FILTER (mt_name(migratetype) = 'Movable') = count(*) FILTER "
            "(migratetype = 1) AND count(*) FILTER (migratetype = 1) > 0 FROM events)"
        ).fetchone()
        assert got == ("Movable", 16, True, False, True)
        # every macro replay defines is in the file
        names = {
            r[0]
            for r in con.execute(
                "SELECT function_name FROM duckdb_functions() "
                "WHERE function_type = 'macro' AND database_name = current_database()"
            ).fetchall()
        }
        assert set(m.METRIC_MACROS) | {"mt_name", "hexint", "gfp_direct_reclaim"} <= names
    finally:
        con.close()


@pytest.mark.parametrize("written_by", ["older version", "before stored macros"])
def test_a_writable_open_stores_this_versions_macros(
    stored: Path, tmp_path: Path, written_by: str
) -> None:
    """A file another version wrote (other definitions, its own replay_macros_sha) or one
    from before macros were stored (none at all) gets this version's on a writable open."""
    path = tmp_path / "copy.duckdb"
    path.write_bytes(stored.read_bytes())
    con = duckdb.connect(str(path))
    if written_by == "older version":
        con.execute(
            "CREATE OR REPLACE MACRO unusable_index(k, n0, n1, n2, n3, n4, n5, n6, n7, n8, n9,"
            " n10) AS 0::BIGINT; CREATE OR REPLACE MACRO replay_macros_sha() AS 'older'"
        ).fetchall()
    else:
        for name in (*m.METRIC_MACROS, "mt_name", "hexint", "gfp_direct_reclaim",
                     "replay_macros_sha"):  # fmt: skip
            con.execute(f"DROP MACRO {name}").fetchall()
    con.close()
    nr_free = NR_FREE[1]
    probe = f"SELECT unusable_index(9, {_args(nr_free)}), mt_name(2)"
    # read-only, replay computes with its own definitions and leaves the file alone
    with Store(path, read_only=True) as store:
        assert store.one(probe) == (m.unusable_index(nr_free, 9), "Reclaimable")
    con = duckdb.connect(str(path), read_only=True)
    try:
        if written_by == "older version":
            assert con.execute(probe).fetchone() == (0, "Reclaimable")
        else:
            with pytest.raises(duckdb.CatalogException):
                con.execute(probe).fetchall()
    finally:
        con.close()
    with Store(path):
        pass
    con = duckdb.connect(str(path), read_only=True)
    try:
        assert con.execute(probe).fetchone() == (m.unusable_index(nr_free, 9), "Reclaimable")
    finally:
        con.close()


def test_fragmentation_over_time_is_each_buckets_last_step(stored: Path, tmp_path: Path) -> None:
    """queries/fragmentation_over_time: per bucket of steps, the last step's free pages,
    largest free order and indices (computed here with replay.analysis.metrics) and the
    bucket's most failures."""
    db = tmp_path / "f.duckdb"
    db.write_bytes(stored.read_bytes())
    res = run_cli("run", "t", "-m", "mobility", "--zone-pages", "4096", "--db", db, "-q")
    assert res.code == 0, res.err
    res = run_cli("query", "fragmentation_over_time", "-p", "run=1", "-p", "buckets=7",
                  "-p", "order=3", "--db", db, "-f", "json")  # fmt: skip
    assert res.code == 0, res.err
    got = res.json()
    con = duckdb.connect(str(db), read_only=True)
    cols = ", ".join(f"nr_free_{k}" for k in range(11))
    steps = con.execute(
        f"SELECT seq, free_pages, largest_free_order, failures, {cols} FROM steps "
        "WHERE run_id = 1 AND free_pages IS NOT NULL ORDER BY seq"
    ).fetchall()
    con.close()
    n = steps[-1][0] + 1
    want: dict[int, dict[str, object]] = {}
    for seq, free, largest, failures, *nr_free in steps:
        b = seq * 7 // n
        w = want.setdefault(b, {"failures": failures})
        w.update(bucket=b, last_seq=seq, free_pages=free, largest_free_order=largest,
                 unusable_index=m.unusable_index(nr_free, 3),
                 fragmentation_index=m.fragmentation_index(nr_free, 3),
                 extfrag_for_order=m.extfrag_for_order(nr_free, 3),
                 failures=max(int(w["failures"]), failures))  # type: ignore[call-overload]  # fmt: skip
    assert len(steps) >= 14 and len(got) == len(want) == 7  # two steps a bucket at least
    assert got == [want[b] for b in sorted(want)]
