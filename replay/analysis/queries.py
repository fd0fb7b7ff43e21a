"""Named SQL queries: ``queries/NAME.sql`` files with declared parameters.

A query file starts with comment lines: the first is its description, and each
``-- param: NAME [TYPE] [= DEFAULT]  description`` declares a named parameter
that the SQL uses as ``$NAME``. A parameter without a default is required.
TYPE is VARCHAR (the default; also TEXT), BIGINT (also INTEGER) or DOUBLE:
the value given (a string, from the command line or a URL) is bound as that
type, so a trace named ``1`` is the string '1', never the number 1.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from replay.errors import RunNotFoundError, UsageError
from replay.store import Store

if TYPE_CHECKING:  # replay query prints rows without pyarrow (Store.query_rows)
    import pyarrow as pa

PARAM_RE = re.compile(
    r"^--\s*param:\s*(?P<name>[A-Za-z_]\w*)"
    r"(?:\s+(?P<type>VARCHAR|TEXT|BIGINT|INTEGER|DOUBLE)\b)?"
    r"\s*(?:=\s*(?P<default>\S+))?\s*(?P<doc>.*)$"
)
# Declared type -> the type a value is bound as (DuckDB's name for it).
PARAM_TYPES = {
    "VARCHAR": "VARCHAR",
    "TEXT": "VARCHAR",
    "BIGINT": "BIGINT",
    "INTEGER": "BIGINT",
    "DOUBLE": "DOUBLE",
}
ENV_QUERIES = "REPLAY_QUERIES"


def queries_dir() -> Path:
    """``$REPLAY_QUERIES``, else the ``queries/`` folder beside the package."""
    env = os.environ.get(ENV_QUERIES)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "queries"


def cli_param(name: str) -> str:
    """A named query's parameter as ``replay query`` takes it."""
    return f"--param {name}=VALUE"


def api_param(name: str) -> str:
    """A named query's parameter as ``GET /api/queries/NAME`` takes it."""
    return f"the query parameter {name} (?{name}=VALUE)"


@dataclass
class NamedQuery:
    name: str
    path: Path
    description: str
    sql: str
    params: dict[str, str | None] = field(default_factory=dict)  # name -> default
    param_docs: dict[str, str] = field(default_factory=dict)
    param_types: dict[str, str] = field(default_factory=dict)  # name -> VARCHAR/BIGINT/DOUBLE

    def bind(
        self, given: dict[str, str], spell: Callable[[str], str] = cli_param
    ) -> dict[str, Any]:
        """The parameters' values as their declared types (UsageError when one is unknown,
        missing or not of its type). ``spell`` names a parameter as the caller's user
        passes it: ``--param run=VALUE`` on the command line (:func:`cli_param`), a
        query-string parameter over HTTP (:func:`api_param`)."""
        unknown = sorted(set(given) - set(self.params))
        if unknown:
            raise UsageError(
                f"query {self.name!r} has no parameter {unknown[0]!r} "
                f"(parameters: {', '.join(self.params) or 'none'})"
            )
        out: dict[str, Any] = {}
        for p, default in self.params.items():
            v = given.get(p, default)
            if v is None:
                raise UsageError(
                    f"query {self.name!r} needs {spell(p)} ({self.param_docs.get(p, '')})"
                )
            out[p] = self._convert(p, v)
        return out

    def _convert(self, param: str, value: str) -> Any:
        """``value`` as the parameter's declared type (UsageError when it is not one)."""
        typ = self.param_types.get(param, "VARCHAR")
        try:
            if typ == "BIGINT":
                n = int(value.strip(), 10)
                if not -(2**63) <= n < 2**63:
                    raise ValueError(value)
                return n
            if typ == "DOUBLE":
                return float(value)
        except ValueError:
            kind = "an integer" if typ == "BIGINT" else "a number"
            raise UsageError(
                f"query {self.name!r}: parameter {param!r} takes {kind} ({typ}), got {value!r}"
            ) from None
        return str(value)


def load(name: str) -> NamedQuery:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise UsageError(f"invalid query name {name!r}")
    path = queries_dir() / f"{name}.sql"
    if not path.is_file():
        names = ", ".join(q.name for q in list_queries())
        raise UsageError(f"no query named {name!r} (available: {names})")
    return parse(path)


def parse(path: Path) -> NamedQuery:
    text = path.read_text()
    desc = ""
    params: dict[str, str | None] = {}
    docs: dict[str, str] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        s = line.strip()
        if not s.startswith("--"):
            if s:
                break
            continue
        m = PARAM_RE.match(s)
        if m:
            params[m["name"]] = m["default"]
            docs[m["name"]] = m["doc"].strip()
            types[m["name"]] = PARAM_TYPES[m["type"] or "VARCHAR"]
        elif not desc:
            desc = s.lstrip("-").strip()
    return NamedQuery(path.stem, path, desc, text, params, docs, types)


def list_queries() -> list[NamedQuery]:
    d = queries_dir()
    return [parse(p) for p in sorted(d.glob("*.sql"))] if d.is_dir() else []


def run(store: Store, name: str, given: dict[str, str]) -> pa.Table:
    """The named query's result; RunNotFoundError when its ``run`` parameter names no run
    (an empty table would read as "nothing happened")."""
    sql, bound = _bound(store, name, given)
    return store.query(sql, bound)


def run_rows(
    store: Store, name: str, given: dict[str, str]
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """:func:`run` as column names and Python rows (no pyarrow: ``replay query``)."""
    sql, bound = _bound(store, name, given)
    return store.query_rows(sql, bound)


def _bound(store: Store, name: str, given: dict[str, str]) -> tuple[str, dict[str, Any]]:
    q = load(name)
    bound = q.bind(given)
    if (
        "run" in bound
        and store.one("SELECT 1 FROM runs WHERE run_id = $r", {"r": bound["run"]}) is None
    ):
        raise RunNotFoundError(f"no run {bound['run']} (replay runs lists them)")
    return q.sql, bound
