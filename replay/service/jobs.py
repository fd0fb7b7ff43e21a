"""Jobs: one writer thread runs ingests and replays, one at a time, from a queue.

A job is queued, then running, then done (with a result) or failed (with an
error). The cores it calls (replay.trace.ingest.ingest, replay.engine.whatif.run) write one
transaction each, so a failed job leaves the database as it was. Readers are
not blocked: they use their own cursors (replay.service.db).

The queue is bounded: at most ``max_queued`` jobs wait (JobQueueFullError,
HTTP 429, past that), and uploads waiting to be ingested, with those still
being received (:meth:`JobRunner.reserve`), hold at most ``max_upload_bytes``
bytes of disk (UploadSpaceError, HTTP 507).
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import secrets
import shutil
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from replay.errors import (
    BadInputError,
    JobQueueFullError,
    ReplayError,
    UploadSpaceError,
    UsageError,
)
from replay.progress import Progress

KEEP_JOBS = 500  # finished jobs remembered (oldest forgotten first)
MAX_QUEUED = 8  # jobs waiting for the writer thread
MAX_UPLOAD_BYTES = 1 << 30  # disk held by uploads waiting to be ingested, bytes
STATUSES = ("queued", "running", "done", "failed")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class Job:
    """One unit of work for the writer thread, and what a client sees of it."""

    id: str
    kind: str  # ingest | run
    params: dict[str, Any]
    work: Callable[[Progress], dict[str, Any]]
    cleanup: Callable[[], None] | None = None
    status: str = "queued"
    created: str = field(default_factory=_now)
    started: str | None = None
    finished: str | None = None
    description: str | None = None
    done: int = 0  # progress units: bytes (ingest) or events (run)
    total: int | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    seconds: float | None = None  # wall time of the work itself, s
    disk_bytes: int = 0  # disk its input holds until it ends (an upload), bytes

    def view(self) -> dict[str, Any]:
        """The JSON a client gets (no callables)."""
        fraction = None
        if self.status == "done":
            fraction = 1.0
        elif self.total:
            fraction = min(1.0, max(0.0, self.done / self.total))
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "params": self.params,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "seconds": self.seconds,
            "progress": {
                "description": self.description,
                "done": self.done,
                "total": self.total,
                "fraction": fraction,
            },
            "result": self.result,
            "error": self.error,
        }


def error_body(exc: BaseException) -> dict[str, Any]:
    """A failure as JSON: message, class and the CLI's exit code for it."""
    if isinstance(exc, ReplayError):
        kind = (
            "bad_input"
            if isinstance(exc, BadInputError)
            else "usage"
            if isinstance(exc, UsageError)
            else "runtime"
        )
        return {
            "error": str(exc),
            "type": type(exc).__name__,
            "kind": kind,
            "exit_code": exc.exit_code,
        }
    return {
        "error": f"{type(exc).__name__}: {exc}",
        "type": type(exc).__name__,
        "kind": "internal",
        "exit_code": 1,
        "traceback": traceback.format_exception_only(exc)[-1].strip(),
    }


class Reservation:
    """Disk set aside for an upload being received (bytes), until released or given to
    its job (:meth:`JobRunner.submit`)."""

    __slots__ = ("nbytes",)

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes


class JobRunner:
    """The writer thread and the table of jobs; at most ``max_queued`` jobs wait, and
    waiting uploads hold at most ``max_upload_bytes`` bytes of the disk of ``upload_dir``."""

    def __init__(
        self,
        keep: int = KEEP_JOBS,
        on_change: Callable[[], None] | None = None,
        *,
        max_queued: int = MAX_QUEUED,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
        upload_dir: Path | None = None,
    ) -> None:
        self._on_change = on_change  # called when a job's write has ended, before its status
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._keep = keep
        self.max_queued = max_queued
        self.max_upload_bytes = max_upload_bytes
        self.upload_dir = upload_dir
        self._reserved: set[Reservation] = set()
        self._seq = itertools.count(1)
        self._accepting = True
        self._thread = threading.Thread(target=self._loop, name="replay-writer", daemon=True)
        self._thread.start()

    def submit(
        self,
        kind: str,
        params: dict[str, Any],
        work: Callable[[Progress], dict[str, Any]],
        cleanup: Callable[[], None] | None = None,
        *,
        disk_bytes: int = 0,
        reservation: Reservation | None = None,
    ) -> Job:
        """Queue ``work`` (called in the writer thread with a Progress); returns the job.

        ``disk_bytes``: disk its input holds until it ends (an upload), bytes; the
        upload's ``reservation`` becomes the job's. JobQueueFullError when
        ``max_queued`` jobs wait, UploadSpaceError when the disk would pass
        ``max_upload_bytes`` (``cleanup`` is then the caller's to run).
        """
        if not self._accepting:
            raise ReplayError("the server is shutting down: no new jobs")
        job = Job(
            id=f"{next(self._seq)}-{secrets.token_hex(4)}",
            kind=kind,
            params=params,
            work=work,
            cleanup=cleanup,
            disk_bytes=disk_bytes,
        )
        with self._lock:
            self._reserved.discard(reservation)  # type: ignore[arg-type]
            self._admit(disk_bytes)
            self._jobs[job.id] = job
            self._forget_old()
        self._queue.put(job)
        return job

    @contextlib.contextmanager
    def reserve(self, nbytes: int) -> Iterator[Reservation]:
        """Set ``nbytes`` bytes of disk aside for an upload being received, until the block
        ends (or its job is submitted); refused as :meth:`submit` would refuse the job."""
        r = Reservation(nbytes)
        with self._lock:
            self._admit(nbytes)
            self._reserved.add(r)
        try:
            yield r
        finally:
            with self._lock:
                self._reserved.discard(r)

    def _admit(self, nbytes: int) -> None:
        """Raise unless a job holding ``nbytes`` bytes of disk may be queued (under the lock)."""
        waiting = sum(1 for j in self._jobs.values() if j.status == "queued")
        if waiting >= self.max_queued:
            raise JobQueueFullError(
                f"the job queue is full: {waiting} jobs are waiting (at most "
                f"{self.max_queued}); retry when one has started (GET /api/jobs)"
            )
        if nbytes <= 0:
            return
        held = self._upload_bytes()
        if held + nbytes > self.max_upload_bytes:
            raise UploadSpaceError(
                f"uploads waiting to be ingested hold {held} bytes of disk and this one has "
                f"{nbytes}: over the limit of {self.max_upload_bytes} bytes; retry when an "
                "ingest has finished (GET /api/jobs)"
            )
        if self.upload_dir is not None:
            free = shutil.disk_usage(self.upload_dir).free
            if free < nbytes:
                raise UploadSpaceError(
                    f"the server's disk has {free} bytes free, less than the {nbytes} bytes "
                    "of this upload"
                )

    def _upload_bytes(self) -> int:
        return sum(r.nbytes for r in self._reserved) + sum(
            j.disk_bytes for j in self._jobs.values() if j.status in ("queued", "running")
        )

    def queue_stats(self) -> dict[str, int]:
        """Jobs waiting and their bound; disk held by waiting uploads and its bound, bytes."""
        with self._lock:
            return {
                "waiting": sum(1 for j in self._jobs.values() if j.status == "queued"),
                "max_waiting": self.max_queued,
                "upload_bytes": self._upload_bytes(),
                "max_upload_bytes": self.max_upload_bytes,
            }

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.status in ("done", "failed")]
        for j in finished[: max(0, len(finished) - self._keep)]:
            del self._jobs[j.id]

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def all(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        for j in self.all():
            out[j.status] += 1
        return out

    def _loop(self) -> None:
        while (job := self._queue.get()) is not None:
            self._execute(job)

    def _execute(self, job: Job) -> None:
        def start(desc: str, total: int) -> None:
            job.description, job.total, job.done = desc, int(total), 0

        def advance_to(done: int) -> None:
            job.done = int(done)

        job.status, job.started = "running", _now()
        t0 = time.perf_counter()
        status = "failed"
        try:
            try:
                result = job.work(Progress(start=start, advance_to=advance_to))
            finally:
                # Committed or rolled back: before any client can see the new status,
                # results computed from the old data must go (replay.service.cache).
                if self._on_change is not None:
                    self._on_change()
        except BaseException as exc:  # a job's failure must not stop the writer thread
            job.error = error_body(exc)
        else:
            job.result = result
            status = "done"
        finally:
            job.seconds = round(time.perf_counter() - t0, 6)
            # Its upload is removed before the status says it ended (and frees its disk).
            if job.cleanup is not None:
                with contextlib.suppress(Exception):
                    job.cleanup()
            job.finished = _now()
            job.status = status

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Stop accepting jobs, fail the queued ones, let the running one finish."""
        self._accepting = False
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.status, job.finished = "failed", _now()
                job.error = {
                    "error": "the server shut down before the job started",
                    "type": "Shutdown",
                    "kind": "runtime",
                    "exit_code": 1,
                }
                if job.cleanup is not None:
                    with contextlib.suppress(Exception):
                        job.cleanup()
        self._queue.put(None)
        self._thread.join(timeout=timeout_s)
