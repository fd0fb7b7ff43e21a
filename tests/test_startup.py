"""Start-up: ``replay --help`` and the light commands import no heavy library.

numba, pyarrow, polars and numpy take most of a second to import, pydantic (which typer
0.29 coerces every parameter through) 0.1-0.2 s; a command that needs none of them must
not pay for them (replay/cli/main.py imports a command's
module only when it runs). Checked in a fresh interpreter through sys.modules,
not by timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from replay.store import Store

HEAVY = ("numba", "pyarrow", "polars", "numpy", "pydantic")

SCRIPT = """
import json, sys
from contextlib import redirect_stdout
import io
from replay.cli.main import main
with redirect_stdout(io.StringIO()) as out:
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "out": out.getvalue(),
                  "heavy": sorted(m for m in HEAVY if m in sys.modules)}))
""".replace("HEAVY", repr(HEAVY))


def _fresh(*args: str) -> dict:
    res = subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True,
                         check=True)  # fmt: skip
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


def test_help_imports_no_heavy_library() -> None:
    res = _fresh("--help")
    assert res["code"] == 0
    assert "Example: replay ingest" in " ".join(res["out"].split())
    assert "traces" in res["out"] and "compare-kernel-compaction" in res["out"]
    assert res["heavy"] == []


@pytest.mark.parametrize("args", [["traces", "-f", "json"], ["runs"], ["sql", "SELECT 42 AS x"],
                                  ["query"]])  # fmt: skip
def test_light_commands_import_no_heavy_library(tmp_path: Path, args: list[str]) -> None:
    db = tmp_path / "t.duckdb"
    Store(db).close()
    res = _fresh(*args, "--db", str(db))
    assert res["code"] == 0, res
    assert res["heavy"] == []


def test_a_heavy_command_still_runs_its_module(tmp_path: Path) -> None:
    """The lazy registration runs the real command (not a stub): `run` on a missing trace
    fails as the real command does, having imported the kernels."""
    db = tmp_path / "t.duckdb"
    Store(db).close()
    res = _fresh("run", "nope", "--db", str(db))
    assert res["code"] == 1
    assert "numba" in res["heavy"]
