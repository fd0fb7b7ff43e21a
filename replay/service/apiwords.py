"""Errors in the API's words.

The core's messages are written for the command line: they name options
(``--every must be at least 1``, ``--start observed``) and commands (``replay
runs lists them``). Over HTTP the same request is a JSON body or a query string,
so :func:`api_words` renames each option the API also takes to its field name
(``every``, ``start``) and each command to the endpoint that does its work.
Options the API has no field for stay as they are.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from replay.errors import ReplayError

# Request fields and query parameters of the API (RunRequest, ValidateRequest,
# ExplainRequest, the ingest form, the reads' query strings), as a CLI option spells them.
API_FIELDS = frozenset({
    "trace", "model", "every", "zone-pages", "pageblock-every", "fill-from-snapshot", "start",
    "at", "until", "run", "seq", "models", "horizon", "top", "name", "replace", "skip-bad",
    "order", "points", "runs", "title",
})  # fmt: skip

# commands named in core messages -> the request that does the same over HTTP
API_COMMANDS = {
    "replay runs": "GET /api/runs",
    "replay traces": "GET /api/traces",
    "replay query": "GET /api/queries",
    "replay ingest": "POST /api/jobs/ingest",
}

# ``--zone-pages N``, ``--every``: the option and an upper-case placeholder after it
_OPTION = re.compile(r"(?<![\w-])--([a-z][a-z0-9-]*)(?: [A-Z][A-Z_]*\b(?![a-z]))?")
_COMMAND = re.compile(r"\b(" + "|".join(re.escape(c) for c in API_COMMANDS) + r")\b")


def api_words(message: str) -> str:
    """``message`` with the command line's option and command names replaced by the
    API's: ``--zone-pages N`` -> ``zone_pages``, ``replay runs`` -> ``GET /api/runs``."""

    def option(m: re.Match[str]) -> str:
        name = m.group(1)
        return name.replace("-", "_") if name in API_FIELDS else m.group(0)

    return _COMMAND.sub(lambda m: API_COMMANDS[m.group(1)], _OPTION.sub(option, message))


def reword(exc: ReplayError) -> ReplayError:
    """``exc`` with its message in the API's words (the same object: its type and any
    fields, such as a BadInputError's, stay)."""
    exc.args = (api_words(str(exc)),)
    return exc


def api_worded(work: Callable[[Any], dict[str, Any]]) -> Callable[[Any], dict[str, Any]]:
    """A job's work whose core errors speak the API's words (the job's ``error``)."""

    def worded(progress: Any) -> dict[str, Any]:
        try:
            return work(progress)
        except ReplayError as exc:
            reword(exc)
            raise

    return worded
