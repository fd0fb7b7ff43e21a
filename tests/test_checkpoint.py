"""Model-state checkpoints (replay.engine.checkpoint): the codec, and that a state resumed
from a stored run's checkpoint is exactly the state the run replayed from its start."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from replay.analysis import explain as ex
from replay.engine import whatif as engine
from replay.engine.checkpoint import (
    ALIGN,
    MAGIC,
    PART_BYTES,
    VERSION,
    load_checkpoint,
    pack,
    store_checkpoint,
    unpack,
)
from replay.errors import CheckpointError
from replay.models.config import load_model
from replay.store import Store
from replay.trace.ingest import ingest

TRACES = Path(__file__).resolve().parent.parent / "traces"
NAME = "small-pressure-6.18"


def test_codec_round_trip_gives_writable_aligned_arrays() -> None:
    arrays = {
        "scalar": np.array(7, np.int64),
        "bytes": np.arange(13, dtype=np.int8),
        "matrix": np.arange(35, dtype=np.int64).reshape(5, 7),
        "empty": np.zeros((0, 4), np.int64),
        "strided": np.arange(20, dtype=np.int32)[::2],
        "flags": np.array([True, False, True]),
    }
    got = unpack(pack(arrays))
    assert list(got) == list(arrays)
    for name, a in arrays.items():
        b = got[name]
        assert b.dtype == a.dtype and b.shape == a.shape, name
        assert np.array_equal(a, b), name
        assert b.flags.writeable and b.flags.c_contiguous and b.ctypes.data % ALIGN == 0
    assert int(got["scalar"]) == 7
    got["matrix"][0, 0] = 99  # a view of its own buffer, not of the blob
    assert unpack(pack(arrays))["matrix"][0, 0] == 0


def test_codec_refuses_what_it_did_not_write() -> None:
    blob = pack({"a": np.arange(1000, dtype=np.int64)})
    with pytest.raises(CheckpointError, match="bad magic"):
        unpack(b"PAR1" + blob[4:])
    newer = blob.replace(f'"version": {VERSION}'.encode(), b'"version": 9')
    assert newer != blob
    with pytest.raises(CheckpointError, match="version 9"):
        unpack(newer)
    older = blob.replace(f'"version": {VERSION}'.encode(), b'"version": 1')
    with pytest.raises(CheckpointError, match=f"version 1 is not {VERSION}: replay the run again"):
        unpack(older)  # format 1 had no capture control
    with pytest.raises(CheckpointError):
        unpack(blob[: len(MAGIC) + 4 + 20])  # truncated in the header
    with pytest.raises((CheckpointError, OSError)):
        unpack(blob[:-10])  # truncated compressed payload


def _states_equal(a: engine.ModelState, b: engine.ModelState) -> None:
    sa = a.arrays
    sb = b.arrays
    assert sorted(sa) == sorted(sb)
    for k in sa:
        assert sa[k].shape == sb[k].shape, k
        assert np.array_equal(sa[k], sb[k]), k


@pytest.fixture(scope="module")
def kernel_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """The shipped pressure capture replayed by the kernel preset (recorded compaction
    passes, followed migrations, pcp tuning, kswapd windows) over seqs where the kernel
    compacted Normal (passes of dd and kcompactd0 from 58,772 on), with a checkpoint
    every 100 events of the zone."""
    db = tmp_path_factory.mktemp("ckpt") / "c.duckdb"
    with Store(db) as s:
        ingest(s, TRACES / NAME, name=NAME)
        k = engine.run(s, NAME, load_model("kernel"), start="observed", at=58700,
                       until=60700, every=1, pageblock_every=0,
                       checkpoint_every=100)  # fmt: skip
    return db, k.run_id


def test_resumed_state_is_the_replayed_state(kernel_run: tuple[Path, int]) -> None:
    """From its nearest checkpoint, the kernel preset's state just before N has every
    array the replay from the run's start has (free lists in order, pcp lists and
    tuning, objects, counters, the compaction passes in progress and the free-scanner
    isolations they have yet to replay)."""
    db, run_id = kernel_run
    with Store(db) as s:
        seqs = s.query("SELECT DISTINCT seq FROM checkpoints WHERE run_id = $r ORDER BY seq",
                       {"r": run_id}).column("seq").to_pylist()  # fmt: skip
        rows = [{"seq": q, "state": load_checkpoint(s, run_id, q + 1)} for q in seqs]
        assert len(rows) >= 5
        # the passes several tasks had in progress are part of some checkpoints
        assert any(unpack(r["state"])["passes.ids"].shape[0] > 0 for r in rows)
        assert all("passes.given" in unpack(r["state"]) for r in rows)
        info = ex.run_info(s, run_id)
        assert info.config is not None
        busy = next(r["seq"] for r in rows if unpack(r["state"])["passes.ids"].shape[0] > 0)
        for seq in (busy + 1, busy + 67, int(rows[-1]["seq"]) + 150, int(rows[1]["seq"]) + 9):
            kw = dict(start="observed", at=info.start_seq, until=int(info.end_seq) + 1)
            resumed = engine.model_state(s, NAME, info.config, seq, run_id=run_id, **kw)
            replayed = engine.model_state(s, NAME, info.config, seq, **kw)
            _states_equal(resumed, replayed)


def test_explain_from_a_checkpoint_is_the_stored_step(kernel_run: tuple[Path, int],
                                                      tmp_path: Path) -> None:  # fmt: skip
    """explain's state before N, resumed from a checkpoint, is the run's stored step
    before N; a damaged checkpoint is an error, not a silent replay."""
    db, run_id = kernel_run
    with Store(db) as s:
        seq = int(s.one(
            """SELECT min(s.seq) FROM steps s JOIN events e ON e.seq = s.seq AND e.op = 'alloc'
               WHERE s.run_id = $r AND s.seq > (SELECT max(seq) FROM checkpoints
                                                WHERE run_id = $r) + 20""",
            {"r": run_id})[0])  # fmt: skip
        out = ex.explain(s, run_id, seq, models=[], horizon=0)
        before = s.query(
            """SELECT * FROM steps WHERE run_id = $r AND seq < $s AND free_pages IS NOT NULL
               ORDER BY seq DESC LIMIT 1""",
            {"r": run_id, "s": seq},
        ).to_pylist()[0]
        assert out["state"]["nr_free"] == [before[f"nr_free_{o}"] for o in range(11)]
        assert out["state"]["pcp_pages"] == before["pcp_pages"]
    copy = tmp_path / "bad.duckdb"
    copy.write_bytes(db.read_bytes())
    with Store(copy) as s:
        s.run("UPDATE checkpoints SET state = 'not a checkpoint'::BLOB WHERE run_id = $r",
              {"r": run_id})  # fmt: skip
        with pytest.raises(CheckpointError):
            ex.explain(s, run_id, seq, models=[], horizon=0)


def test_cli_stores_checkpoints_and_replace_removes_them(tmp_path: Path) -> None:
    db = str(tmp_path / "g.duckdb")
    assert run_cli("generate", "fragmenter", "--zone-pages", "16384", "--db", db).code == 0
    r = run_cli("run", "fragmenter", "-m", "mobility+pcp", "--checkpoint-every", "5000",
                "--db", db, "-q")  # fmt: skip
    assert r.code == 0, r.err
    with Store(Path(db)) as s:
        n, total = s.one("SELECT count(DISTINCT seq), (SELECT events FROM traces) "
                         "FROM checkpoints")  # fmt: skip
        assert n >= 2 and n <= total // 5000
        seqs = s.query("SELECT seq FROM checkpoints WHERE part = 0 ORDER BY seq").column(
            "seq").to_pylist()  # fmt: skip
        assert all(b - a >= 4000 for a, b in itertools.pairwise(seqs))
        run_id = int(s.one("SELECT max(run_id) FROM runs")[0])
        info = ex.run_info(s, run_id)
        assert info.config is not None
        seq = seqs[-1] + 10
        kw = dict(until=int(info.end_seq) + 1, zone_pages=info.zone_pages)
        _states_equal(engine.model_state(s, "fragmenter", info.config, seq, run_id=run_id, **kw),
                      engine.model_state(s, "fragmenter", info.config, seq, **kw))  # fmt: skip
    r = run_cli("generate", "fragmenter", "--zone-pages", "16384", "--db", db, "--replace")
    assert r.code == 0, r.err
    with Store(Path(db)) as s:
        assert s.one("SELECT count(*) FROM checkpoints")[0] == 0
    bad = run_cli("run", "fragmenter", "--checkpoint-every", "-1", "--db", db)
    assert bad.code == 2


def test_checkpoint_parts_round_trip_and_old_layout(tmp_path: Path) -> None:
    """A BLOB is stored in PART_BYTES parts and read back whole; a file written before
    parts (one row, the column added as 0) still loads; a lost part is an error."""
    rng = np.random.default_rng(5)
    arrays = {"a": rng.integers(0, 1 << 40, 300_000), "b": np.arange(7, dtype=np.int16)}
    blob = pack(arrays)
    assert len(blob) > 2 * PART_BYTES
    with Store(tmp_path / "c.duckdb") as s:
        store_checkpoint(s, 1, 100, 50, blob)
        store_checkpoint(s, 1, 200, 150, pack({"a": np.zeros(3)}))
        assert s.one("SELECT count(*) FROM checkpoints WHERE seq = 100")[0] == -(
            -len(blob) // PART_BYTES
        )
        assert load_checkpoint(s, 1, 100) is None
        got = unpack(load_checkpoint(s, 1, 200))
        assert np.array_equal(got["a"], arrays["a"]) and np.array_equal(got["b"], arrays["b"])
        assert got["a"].flags.writeable
        # the layout before parts: one row holding the whole BLOB
        s.run("DELETE FROM checkpoints")
        s.run("INSERT INTO checkpoints (run_id, seq, events, state) VALUES (2, 9, 9, $b)",
              {"b": blob})  # fmt: skip
        assert load_checkpoint(s, 2, 10) == blob
        s.run("DELETE FROM checkpoints")
        store_checkpoint(s, 3, 5, 5, blob)
        s.run("DELETE FROM checkpoints WHERE part = 1")
        with pytest.raises(CheckpointError, match="parts"):
            load_checkpoint(s, 3, 6)
