"""How steps are stored (replay.store, seventeenth session): steps_narrow for runs of
models with no pcp lists and no units (buddy, mobility), steps_wide for the others,
INTEGER counters, read through the steps view with one steps table's columns and types;
files with the old steps table migrate."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest
from conftest import CAPTURE, run_cli

from replay.engine.results import INT32_MAX, outputs, steps_batch
from replay.errors import ReplayError
from replay.store import Store

# steps as one table had them (before 2026-12-07): the view must give the same
STEPS_TYPES = (
    [("run_id", "INTEGER"), ("seq", "BIGINT"), ("pfn", "BIGINT"), ("outcome", "VARCHAR"),
     ("free_pages", "BIGINT")]
    + [(f"nr_free_{k}", "BIGINT") for k in range(11)]
    + [("largest_free_order", "TINYINT"), ("failures", "BIGINT"), ("pcp_pages", "BIGINT"),
       ("fallbacks", "BIGINT")]
    + [(c, "BIGINT") for c in ("migrated", "scanned", "evicted", "degraded", "exchanged")]
)  # fmt: skip

OLD_STEPS = (
    "CREATE TABLE steps (run_id INTEGER NOT NULL, seq BIGINT NOT NULL, pfn BIGINT, "
    "outcome VARCHAR NOT NULL, free_pages BIGINT, "
    + ", ".join(f"nr_free_{k} BIGINT" for k in range(11))
    + ", largest_free_order TINYINT, failures BIGINT, pcp_pages BIGINT, fallbacks BIGINT, "
    "migrated BIGINT, scanned BIGINT, evicted BIGINT, degraded BIGINT, exchanged BIGINT)"
)


def _types(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in con.execute(f"DESCRIBE {table}").fetchall()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with a real trace and a buddy run (every 3rd step's counters), a
    mobility+pcp run and a mobility run, closed."""
    db = tmp_path_factory.mktemp("steps") / "s.duckdb"
    assert run_cli("ingest", CAPTURE, "--name", "t", "--db", db, "-q").code == 0
    for model in ("buddy", "mobility+pcp", "mobility"):
        res = run_cli("run", "t", "--model", model, "--every", "3", "--db", db, "-q")
        assert res.code == 0, res.err
    return db


def test_buddy_steps_narrow_others_wide_one_view(runs: Path) -> None:
    con = duckdb.connect(str(runs), read_only=True)
    try:
        assert _types(con, "steps") == STEPS_TYPES
        per = dict(con.execute(
            "SELECT 'narrow', count(*) FROM steps_narrow WHERE run_id = 1 UNION ALL "
            "SELECT 'wide', count(*) FROM steps_wide WHERE run_id = 2 UNION ALL "
            "SELECT 'mobility', count(*) FROM steps_narrow WHERE run_id = 3 UNION ALL "
            "SELECT 'other', count(*) FROM (SELECT run_id FROM steps_narrow WHERE run_id = 2 "
            "UNION ALL SELECT run_id FROM steps_wide WHERE run_id IN (1, 3))"
        ).fetchall())  # fmt: skip
        assert per["narrow"] > 100 and per["wide"] > 100 and per["other"] == 0
        assert per["mobility"] == per["narrow"]
        # mobility's fallbacks are stored in steps_narrow and show through the view
        assert con.execute("SELECT max(fallbacks) FROM steps WHERE run_id = 3").fetchone()[0] > 0
        # the narrow run's columns the view supplies: pcp_pages 0 where the counters were
        # kept and NULL where not (as a wide row has it), fallbacks and costs 0
        kept, unkept, bad = con.execute(
            "SELECT count(*) FILTER (free_pages IS NOT NULL AND pcp_pages = 0), "
            "count(*) FILTER (free_pages IS NULL AND pcp_pages IS NULL), "
            "count(*) FILTER (migrated <> 0 OR scanned <> 0 OR evicted <> 0 OR degraded <> 0 "
            "OR exchanged <> 0 OR fallbacks <> 0 OR fallbacks IS NULL) FROM steps WHERE run_id = 1"
        ).fetchone()  # fmt: skip
        assert kept > 0 and unkept > 0 and kept + unkept == per["narrow"] and bad == 0
        # the wide run's pcp lists show through the view as BIGINT
        assert con.execute("SELECT max(pcp_pages) FROM steps WHERE run_id = 2").fetchone()[0] > 0
        # the counters as the run left them: the last step's nr_free is the runs row's
        last = con.execute(
            "SELECT [" + ", ".join(f"nr_free_{k}" for k in range(11)) + "] FROM steps "
            "WHERE run_id = 1 AND free_pages IS NOT NULL ORDER BY seq DESC LIMIT 1"
        ).fetchone()[0]  # fmt: skip
        assert last == con.execute("SELECT nr_free FROM runs WHERE run_id = 1").fetchone()[0]
    finally:
        con.close()


def test_a_file_with_the_old_steps_table_migrates(tmp_path: Path) -> None:
    db = tmp_path / "old.duckdb"
    with Store(db):
        pass
    con = duckdb.connect(str(db))
    con.execute("DROP VIEW steps")
    con.execute("DROP TABLE steps_wide")
    con.execute("DROP TABLE steps_narrow")
    con.execute(OLD_STEPS)
    big = 3_000_000_000  # more than an INTEGER: the old table's BIGINT keeps it
    con.execute(
        "INSERT INTO steps VALUES (7, 0, 12, 'ok', 1, 1" + ", 0" * 10 + ", 0, 0, 0, 0, 0, 0, "
        "0, 0, 0), (7, 1, NULL, 'ok', NULL" + ", NULL" * 11 + f", NULL, 0, NULL, {big}, 0, "
        "0, 0, 0, 0)"
    )  # fmt: skip
    con.close()
    with Store(db, read_only=True) as s:  # read-only: the old table as it is
        assert s.one("SELECT count(*) FROM steps")[0] == 2
    with Store(db) as s:
        assert _types(s.con, "steps") == STEPS_TYPES
        rows = s.con.execute("SELECT * FROM steps ORDER BY seq").fetchall()
        assert rows[0][:6] == (7, 0, 12, "ok", 1, 1) and rows[1][19] == big
        assert s.one("SELECT count(*) FROM steps_wide")[0] == 2
    with Store(db) as s:  # a second open changes nothing
        assert s.one("SELECT count(*) FROM steps")[0] == 2


def test_narrow_batches_refuse_what_the_view_would_hide() -> None:
    out = outputs(4)
    out[0][:] = 5
    out[1][:] = 0
    out[2][:] = 1
    out[3][:] = True
    for a in out[4:]:
        a[:] = 0
    seq, is_alloc = np.arange(4), np.ones(4, np.bool_)
    b = steps_batch(seq, is_alloc, out, narrow=True)
    assert "pcp_pages" not in b.schema.names and b.column("nr_free_3").to_pylist() == [1] * 4
    out[6][2] = 5  # fallbacks are stored
    assert steps_batch(seq, is_alloc, out, narrow=True).column("fallbacks")[2].as_py() == 5
    out[8][3] = 1  # pages scanned by compaction are not
    with pytest.raises(ReplayError, match="steps_narrow"):
        steps_batch(seq, is_alloc, out, narrow=True)
    out[8][3] = 0
    out[3][1] = False  # pcp pages on a row without counters are not stored
    out[5][1] = 9
    assert steps_batch(seq, is_alloc, out, narrow=True).column("free_pages").null_count == 1
    out[5][2] = 9
    with pytest.raises(ReplayError, match="steps_narrow"):
        steps_batch(seq, is_alloc, out, narrow=True)
    assert steps_batch(seq, is_alloc, out).column("pcp_pages").to_pylist() == [0, None, 9, 0]
    out[2][0, 0] = INT32_MAX + 1  # an INTEGER column cannot hold it
    with pytest.raises(ReplayError, match="INTEGER"):
        steps_batch(seq, is_alloc, out)
