"""Runs read their events in windows of seqs (``EVENT_WINDOW``, each sorted on its own)
and replay them in kernel calls of ``STEP_EVENTS``: tiny windows and steps store the
same rows as one window (replay/engine/whatif.py)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from conftest import run_cli

import replay.engine.whatif as engine


def _rows(db: Path, run_id: int) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(db), read_only=True)
    out: dict[str, list[tuple]] = {}
    try:
        for t in ("steps", "pageblocks"):
            sql = f"SELECT * EXCLUDE (run_id) FROM {t} WHERE run_id = $r ORDER BY ALL"
            out[t] = con.execute(sql, {"r": run_id}).fetchall()
        sql = "SELECT failures, free_pages, nr_free, below_low, fallbacks FROM runs "
        sql += "WHERE run_id = $r"
        out["runs"] = con.execute(sql, {"r": run_id}).fetchall()
    finally:
        con.close()
    return out


@pytest.mark.parametrize("model", ["buddy", "mobility"])
def test_windows_and_steps_do_not_change_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 model: str) -> None:  # fmt: skip
    db = tmp_path / "w.duckdb"
    res = run_cli("generate", "kernel-build", "--events", "12000", "--zone-pages", "4096",
                  "--name", "kb", "--db", db, "-q")  # fmt: skip
    assert res.code == 0, res.err
    args = ("run", "kb", "--model", model, "--every", "7", "--db", db, "-q", "-f", "json")
    whole = run_cli(*args)
    assert whole.code == 0, whole.err
    monkeypatch.setattr(engine, "EVENT_WINDOW", 701)
    monkeypatch.setattr(engine, "STEP_EVENTS", 53)
    split = run_cli(*args)
    assert split.code == 0, split.err
    a, b = _rows(db, whole.json()["run_id"]), _rows(db, split.json()["run_id"])
    assert len(a["steps"]) > 1000
    assert a == b
