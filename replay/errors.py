"""Every error the core raises, in one place.

The CLI maps each class to an exit code (``EXIT_CODES``); core code never
prints and never exits.
"""

from __future__ import annotations


class ReplayError(Exception):
    """Base class: a runtime failure (exit code 1)."""

    exit_code = 1


class UsageError(ReplayError):
    """The command was called wrongly (exit code 2)."""

    exit_code = 2


class BadInputError(ReplayError):
    """Input data is malformed (exit code 65, EX_DATAERR).

    The message names the file, the line (1-based, when known) and the field.
    """

    exit_code = 65

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.field = field
        self.detail = message
        where = ""
        if file is not None:
            where = str(file)
            if line is not None:
                where += f":{line}"
            where += ": "
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}{what}{message}")


class UnknownFormatError(BadInputError):
    """The input is not in any format replay recognises."""


class TraceNotFoundError(ReplayError):
    """A trace name or id that is not in the store (exit code 1)."""


class RunNotFoundError(ReplayError):
    """A run id or batch name that is not in the store (exit code 1)."""


class NoEventInZoneError(UsageError):
    """A run's range holds no event of its zone: the kernel served every request in it
    from another zone (a model that takes the kernel's zone choice replays none)."""


class TraceExistsError(UsageError):
    """Ingest under a name that exists without ``--replace`` (exit code 2)."""


class QueryError(ReplayError):
    """A SQL statement or named query failed (exit code 1)."""


class QueryTimeoutError(QueryError):
    """A query ran past its time limit and was interrupted (replay serve)."""


class ResultTooLargeError(QueryError):
    """A query's first row alone is larger than the answer's byte limit (replay serve)."""


class JobQueueFullError(ReplayError):
    """replay serve has as many jobs waiting as it queues (HTTP 429): retry later."""


class UploadSpaceError(ReplayError):
    """Waiting uploads hold the disk replay serve may use for them (HTTP 507)."""


class DatabaseBusyError(ReplayError):
    """Another process (a ``replay serve``, another command) holds the database (exit code 1)."""


class CheckpointError(ReplayError):
    """A stored model-state checkpoint this version of replay cannot read (exit code 1)."""


EXIT_CODES: dict[type[ReplayError], int] = {
    ReplayError: 1,
    UsageError: 2,
    BadInputError: 65,
}
