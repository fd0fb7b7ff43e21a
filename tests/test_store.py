"""The DuckDB store: what an ingest writes, --replace, and that failures leave no trace."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import duckdb
import pytest
from conftest import CAPTURE, ERAS, run_cli

from replay.errors import BadInputError, TraceExistsError, UsageError
from replay.store import TRACE_TABLES, Store
from replay.trace.ingest import ingest


def dump(db: Path) -> str:
    """A digest of every table's full content, to compare stores."""
    con = duckdb.connect(str(db), read_only=True)
    h = hashlib.sha256()
    for t in TRACE_TABLES:
        for row in con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall():
            h.update(repr(row).encode())
    con.close()
    return h.hexdigest()


def test_capture_ingest_writes_every_table(capture_db: Path) -> None:
    con = duckdb.connect(str(capture_db), read_only=True)
    tid = con.execute("SELECT trace_id FROM traces WHERE name = 'compact'").fetchall()[0][0]
    counts = {t: con.execute(f"SELECT count(*) FROM {t} WHERE trace_id = ?", [tid]).fetchall()[0][0]
              for t in TRACE_TABLES}  # fmt: skip
    assert counts["events"] == 160577
    assert counts["aux_events"] == 148947 + 8556  # + the mm_page_free_batched lines
    for t in ("snap_buddyinfo", "snap_pagetypeinfo", "snap_pageblocks", "snap_zoneinfo",
              "snap_vmstat", "snap_meminfo", "snap_kpageflags"):  # fmt: skip
        assert counts[t] > 0, t
    # Snapshot values read off the files by eye.
    nr = con.execute(
        "SELECT nr_free FROM snap_buddyinfo WHERE snapshot = 'before' AND zone = 'Normal' "
        'AND "order" = 10'
    ).fetchall()
    assert nr == [(26,)]
    assert con.execute(
        "SELECT start_pfn, spanned FROM snap_zoneinfo WHERE snapshot='before' AND zone='Normal'"
    ).fetchall() == [(1048576, 5505024)]
    # kpageflags runs cover the whole pfn range of the file (52428800 bytes / 8).
    assert con.execute(
        "SELECT sum(nr_pages) FROM snap_kpageflags WHERE snapshot='before'"
    ).fetchall() == [(6553600,)]
    # The default what-if zone: Normal's start, sized by its managed pages (it
    # spans 5.5M pages but manages 1M), and it covers every pfn the trace uses.
    start, pages, pfn_max = con.execute(
        "SELECT zone_start_pfn, zone_pages, pfn_max FROM traces WHERE trace_id = ?", [tid]
    ).fetchall()[0]
    assert (start, pages) == (0x100000, 0x100000) and pfn_max < start + pages
    # The events are in seq order 0..n-1 with no gaps.
    assert con.execute(
        "SELECT min(seq), max(seq), count(DISTINCT seq) FROM events WHERE trace_id = ?", [tid]
    ).fetchall() == [(0, 160576, 160577)]
    con.close()


def test_replace_and_refuse(db: Path) -> None:
    with Store(db) as s:
        ingest(s, ERAS / "v6.18.txt", name="x")
        with pytest.raises(TraceExistsError):
            ingest(s, ERAS / "v5.15.txt", name="x")
        row = ingest(s, ERAS / "v5.15.txt", name="x", replace=True)
        assert row["format"].count("4-char") == 1
        n = s.query("SELECT count(*) AS n FROM traces").column("n")[0].as_py()
        assert n == 1
        left = s.query(
            "SELECT count(*) AS n FROM events WHERE trace_id <> $id", {"id": row["trace_id"]}
        )
        assert left.column("n")[0].as_py() == 0


def test_failed_ingest_leaves_store_exactly_as_it_was(db: Path, tmp_path: Path) -> None:
    with Store(db) as s:
        ingest(s, ERAS / "v6.18.txt", name="a")
        ingest(s, CAPTURE, name="cap")
    before = dump(db)
    # A bad line far into a file: chunks before it were already appended.
    bad = tmp_path / "late-bad.txt"
    good = (ERAS / "v6.18.txt").read_text()
    bad.write_text(good * 400 + "this is not a trace line\n")
    with Store(db) as s:
        with pytest.raises(BadInputError) as ei:
            ingest(s, bad, name="late", chunk_bytes=4096)
        assert ei.value.line == good.count("\n") * 400 + 1
        # --replace of an existing trace that fails keeps the old one.
        with pytest.raises(BadInputError):
            ingest(s, bad, name="a", replace=True, chunk_bytes=4096)
    assert dump(db) == before


def test_failed_first_ingest_removes_the_new_file(tmp_path: Path) -> None:
    db = tmp_path / "new.duckdb"
    with Store(db) as s, pytest.raises(BadInputError):
        ingest(s, ERAS / "bad_order.txt")
    assert not db.exists()
    res = run_cli("ingest", ERAS / "bad_order.txt", "--db", db, "--quiet")
    assert res.code == 65 and not db.exists()


def test_truncated_capture_leaves_nothing(tmp_path: Path, db: Path) -> None:
    cap = tmp_path / "cap"
    shutil.copytree(CAPTURE, cap)
    data = (cap / "trace.txt.zst").read_bytes()
    (cap / "trace.txt.zst").write_bytes(data[: len(data) // 2])
    with Store(db) as s:
        ingest(s, ERAS / "v6.18.txt", name="keep")
    before = dump(db)
    with Store(db) as s, pytest.raises(BadInputError, match="truncated"):
        ingest(s, cap, name="cut")
    assert dump(db) == before


@pytest.mark.parametrize("name", ["../etc", "a b", "", "x" * 200, "-lead"])
def test_invalid_names(db: Path, name: str) -> None:
    with Store(db) as s, pytest.raises(UsageError):
        ingest(s, ERAS / "v6.18.txt", name=name)


def test_read_only_store_missing(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such database"):
        Store(tmp_path / "missing.duckdb", read_only=True)


def test_old_map_args_are_migrated_to_json(tmp_path: Path) -> None:
    """Files from before 2026-11-22 kept aux_events.args as a MAP; opening one converts it."""
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        """CREATE TABLE aux_events (trace_id INTEGER NOT NULL, seq BIGINT NOT NULL, line BIGINT,
             ts_ns BIGINT, cpu SMALLINT, pid INTEGER, comm VARCHAR, event VARCHAR NOT NULL,
             pfn BIGINT, "order" TINYINT, migratetype TINYINT, args MAP(VARCHAR, VARCHAR),
             text VARCHAR)"""
    )
    con.execute(
        """INSERT INTO aux_events VALUES
             (1, 0, 1, 0, 0, 1, 'k', 'mm_compaction_begin', NULL, NULL, NULL,
              MAP {'zone_start': '0x1', 'mode': 'a"b'}, NULL),
             (1, 0, 2, 0, 0, 1, 'k', 'mm_page_pcpu_drain', 5, 0, 1, NULL, NULL)"""
    )
    con.close()
    with Store(path) as store:
        rows = store.query(
            "SELECT typeof(args), args->>'zone_start', args->>'mode' FROM aux_events ORDER BY line"
        ).to_pylist()
    assert [list(r.values()) for r in rows] == [["JSON", "0x1", 'a"b'], ["JSON", None, None]]


def test_a_runs_steps_stream_in_with_bounded_memory_and_the_settings_come_back(
    tmp_path: Path,
) -> None:
    """Store.bulk_write (around the transaction) holds DuckDB to 256 MB until the commit
    and checkpoint, Store.unordered (around the INSERT) lets it keep the rows' order
    where it likes; the connection's own settings come back after each, and after a
    failed INSERT once its transaction has rolled back (the INSERT's error is the one
    raised). On a locked configuration (replay serve's) neither touches anything: a
    refused SET would abort the job's transaction."""
    import pyarrow as pa

    def settings(s: Store) -> tuple[str, bool]:
        row = s.one(
            "SELECT current_setting('memory_limit'), current_setting('preserve_insertion_order')"
        )
        assert row is not None
        return str(row[0]), bool(row[1])

    with Store(tmp_path / "b.duckdb") as s:
        s.run("SET memory_limit = '1GB'")
        assert settings(s)[0][:3] == "953" and settings(s)[1] is True
        with s.bulk_write(), s.transaction():
            assert settings(s)[0][:3] == "244" and settings(s)[1] is True
            with s.unordered():
                assert settings(s)[0][:3] == "244" and settings(s)[1] is False
            assert settings(s)[0][:3] == "244" and settings(s)[1] is True
        # (the limit comes back as DuckDB prints it: within 0.1 MiB)
        assert settings(s)[0][:3] == "953" and settings(s)[1] is True
        bad = pa.table({"seq": pa.array([1], pa.int64()), "nope": pa.array([1], pa.int64())})
        with (
            pytest.raises(duckdb.Error, match="nope"),
            s.bulk_write(),
            s.transaction(),
            s.unordered(),
        ):
            s.append_stream("steps_wide", bad.to_reader(), 1, key="run_id")
        assert settings(s)[0][:3] == "953" and settings(s)[1] is True
        s.run("SET lock_configuration = true")
        with s.bulk_write(), s.transaction(), s.unordered():
            assert settings(s)[1] is True and settings(s)[0][:3] == "953"
