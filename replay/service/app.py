"""``replay serve``: a read-only HTTP API and a web page over the store (FastAPI).

Reads (traces, runs, steps, metrics, named queries, client SQL, reports) run
on pooled reader cursors of the server's one DuckDB instance, with a time
limit and a row cap; writes (ingesting an uploaded trace, replaying a trace)
are jobs that one writer thread runs in turn (replay.service.jobs). Every
error is a JSON body ``{"error": "...", "detail": ...}``.

Units: times in seconds (``*_s``) or milliseconds (``elapsed_ms``), sizes in
bytes unless a name says pages; seq is the 0-based event number of a trace.
"""

from __future__ import annotations

import contextlib
import enum
import hmac
import json
import os
import re
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

import duckdb
from fastapi import APIRouter, Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from replay import __version__
from replay.analysis import queries
from replay.errors import (
    BadInputError,
    JobQueueFullError,
    QueryError,
    QueryTimeoutError,
    ReplayError,
    RunNotFoundError,
    TraceExistsError,
    TraceNotFoundError,
    UploadSpaceError,
    UsageError,
)
from replay.service.apidocs import add_docs_route
from replay.service.apiwords import api_worded, reword
from replay.service.cache import CACHE_BYTES, ResultCache
from replay.service.db import Database, Lease
from replay.service.jobs import STATUSES, JobRunner
from replay.service.sqlguard import (
    MAX_SQL_CHARS,
    QueryResult,
    Watchdog,
    check_select,
    jsonable,
    run_limited,
)
from replay.spool import Spool
from replay.store import NAME_RE, check_name

STATIC_DIR = Path(__file__).resolve().parent / "static"
ASSETS = {"charts.js": "text/javascript", "report.css": "text/css"}  # replay/report/assets
NAME_PATTERN = NAME_RE.pattern
QUERY_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
FILENAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
MAX_INT = 2**62  # bound for seq/pfn parameters (DuckDB BIGINT)
MAX_REPORT_RUNS = 16
UPLOAD_PATH = "/api/jobs/ingest"
RETRY_AFTER_S = 5  # Retry-After of a refused job (429, 507), s


@dataclass
class ServiceConfig:
    """How ``replay serve`` runs: the database, the token, the limits."""

    db: Path
    token: str | None = None
    max_upload_bytes: int = 256 << 20  # an uploaded trace file, bytes
    max_body_bytes: int = 1 << 20  # any other request body, bytes
    sql_timeout_s: float = 10.0  # per query (client SQL, named queries, reports), s
    max_rows: int = 10_000  # rows per result; more are cut and flagged truncated
    max_result_bytes: int = 16 << 20  # bytes of a query's JSON answer; rows past it are cut
    result_cache: int = 256  # results kept until the next write (0: none)
    cache_bytes: int = CACHE_BYTES  # bytes the kept results may hold
    max_queued_jobs: int = 8  # jobs waiting for the writer thread; more are refused (429)
    max_queued_upload_bytes: int = 1 << 30  # disk held by uploads not yet ingested (507)


# -- response models (the OpenAPI schema) -----------------------------------------------


class ErrorBody(BaseModel):
    """Every error: a message, and details where there are any."""

    error: str
    detail: Any = None


class TableResult(BaseModel):
    """A query result: column names and DuckDB types, rows as lists (at most max_rows,
    and no more than fit in an answer of max_result_bytes bytes)."""

    columns: list[str]
    types: list[str]
    rows: list[list[Any]]
    row_count: int
    truncated: bool = Field(
        description="more rows were there than returned (the row cap or the answer's byte cap)"
    )
    elapsed_ms: float = Field(description="time the query took when it ran, ms")
    cached: bool = Field(description="served from the result cache (valid until a job ends)")


class Health(BaseModel):
    status: str
    version: str
    db: str
    jobs: dict[str, int]
    queue: dict[str, int]
    cache: dict[str, int]
    limits: dict[str, float | int]
    presets: list[str]


class TraceList(BaseModel):
    traces: list[dict[str, Any]]


class TraceDetail(BaseModel):
    trace: dict[str, Any]
    event_types: list[dict[str, Any]]
    orders: list[dict[str, Any]]
    migratetypes: list[dict[str, Any]]
    runs: list[dict[str, Any]]


class RunList(BaseModel):
    runs: list[dict[str, Any]]


class RunDetail(BaseModel):
    run: dict[str, Any]


class QueryParamInfo(BaseModel):
    name: str
    default: str | None
    doc: str
    required: bool
    type: str = Field(description="the DuckDB type it is bound as (VARCHAR, BIGINT, DOUBLE)")


class QueryInfo(BaseModel):
    name: str
    description: str
    params: list[QueryParamInfo]
    sql: str = Field(description="the query's text; POST /api/sql runs an edited copy")


class QueryList(BaseModel):
    queries: list[QueryInfo]


class SqlRequest(BaseModel):
    """One SELECT statement (DuckDB dialect)."""

    sql: str = Field(max_length=MAX_SQL_CHARS, examples=["SELECT name, events FROM traces"])
    max_rows: int | None = Field(
        default=None, ge=1, description="row cap (default and upper bound: the server's)"
    )
    params: dict[str, str | int | float | bool | None] | None = Field(
        default=None, max_length=64, description="values of $name parameters in the SQL"
    )


def _presets() -> tuple[str, ...]:
    from replay.models.config import PRESETS

    return tuple(PRESETS)


Preset = enum.StrEnum("Preset", {p: p for p in _presets()})  # type: ignore[misc]


class RunRequest(BaseModel):
    """A replay of a stored trace through a preset model (replay run)."""

    trace: str = Field(pattern=NAME_PATTERN, description="trace name or id")
    model: Preset = Field(default=Preset("buddy"), description="a preset model name")
    every: int = Field(default=1, ge=1, le=2**31 - 1, description="keep counters every K steps")
    zone_pages: int | None = Field(default=None, ge=1, le=1 << 26, description="pages")
    pageblock_every: int | None = Field(default=None, ge=0, le=2**31 - 1)
    fill_from_snapshot: bool = False
    start: Literal["empty", "observed"] = "empty"
    at: int | None = Field(
        default=None, ge=0, le=2**62, description="with start observed: fork before event SEQ"
    )
    until: int | None = Field(
        default=None, ge=0, le=2**62, description="stop before the event of this seq"
    )


class ValidateRequest(BaseModel):
    """How closely a model reproduces a recorded capture (replay validate --model)."""

    trace: str = Field(pattern=NAME_PATTERN, description="a capture's trace name or id")
    model: Preset = Field(default=Preset("kernel"), description="a preset model name")
    every: int = Field(default=100, ge=1, le=2**31 - 1, description="compare every K-th step")


class ExplainRequest(BaseModel):
    """One allocation of a run explained, or the run's allocations ranked (replay explain)."""

    run: int = Field(ge=1, le=2**31 - 1, description="a run id")
    seq: int | None = Field(default=None, ge=0, le=2**62,
                            description="the allocation's seq; none: rank the run's")  # fmt: skip
    models: list[Preset] | None = Field(default=None, max_length=16,
                                        description="presets to fork (default: six)")  # fmt: skip
    horizon: int = Field(default=1000, ge=0, le=1 << 24, description="events each fork replays")
    top: int = Field(default=5, ge=1, le=1000, description="candidates (or ranked rows)")


class JobProgress(BaseModel):
    description: str | None
    done: int
    total: int | None
    fraction: float | None


class JobView(BaseModel):
    id: str
    kind: Literal["ingest", "run", "validate", "explain"]
    status: Literal["queued", "running", "done", "failed"]
    params: dict[str, Any]
    created: str
    started: str | None
    finished: str | None
    seconds: float | None
    progress: JobProgress
    result: dict[str, Any] | None
    error: dict[str, Any] | None


class JobList(BaseModel):
    jobs: list[JobView]


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Bad request (bad SQL, missing parameter, ...)"},
    401: {"model": ErrorBody, "description": "Missing or wrong bearer token"},
    404: {"model": ErrorBody, "description": "No such trace, run, query or job"},
    413: {"model": ErrorBody, "description": "Request body too large"},
    422: {"model": ErrorBody, "description": "Invalid parameters or input data"},
    429: {"model": ErrorBody, "description": "The job queue is full: retry later"},
    500: {"model": ErrorBody, "description": "Internal error"},
    507: {"model": ErrorBody, "description": "Waiting uploads hold the disk they may: retry later"},
}


# -- errors -------------------------------------------------------------------------------


def status_of(exc: ReplayError) -> int:
    """The HTTP status of a core error."""
    if isinstance(exc, TraceNotFoundError | RunNotFoundError):
        return 404
    if isinstance(exc, TraceExistsError):
        return 409
    if isinstance(exc, JobQueueFullError):
        return 429
    if isinstance(exc, UploadSpaceError):
        return 507
    if isinstance(exc, BadInputError):
        return 422
    if isinstance(exc, UsageError | QueryError):
        return 400
    return 500


def error_response(
    status: int, message: str, detail: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The JSON error body every failure gets: ``{"error": message, "detail": ...}``."""
    return JSONResponse(
        {"error": message, "detail": jsonable(detail)}, status_code=status, headers=headers or None
    )


def _validation_detail(errors: Any) -> list[dict[str, Any]]:
    out = []
    for e in errors:
        out.append(
            {
                "loc": [str(x) for x in e.get("loc", ())],
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
        )
    return out


def _validation_message(detail: list[dict[str, Any]]) -> str:
    parts = [f"{'.'.join(d['loc'][1:] or d['loc'])}: {d['msg']}" for d in detail[:5]]
    return "invalid request: " + "; ".join(parts) if parts else "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 404 and exc.detail == "Not Found":
            msg = f"not found: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            msg = f"method {request.method} not allowed on {request.url.path}"
        else:
            msg = str(exc.detail)
        return error_response(exc.status_code, msg, headers=getattr(exc, "headers", None) or {})

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        detail = _validation_detail(exc.errors())
        return error_response(422, _validation_message(detail), detail)

    @app.exception_handler(ReplayError)
    async def replay_error(request: Request, exc: ReplayError) -> Response:
        status = status_of(exc)
        headers = {"Retry-After": str(RETRY_AFTER_S)} if status in (429, 507) else None
        return error_response(status, str(reword(exc)), {"type": type(exc).__name__}, headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        return error_response(500, f"internal error: {type(exc).__name__}: {exc}")


# -- the gate: token and body size, before anything reads the body ------------------------


class Gate:
    """ASGI middleware: bearer token on /api, a cap on request body sizes (bytes), and
    room in the job queue for an upload (429, 507) before its body is read."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        upload_limit: int,
        body_limit: int,
        jobs: JobRunner | None = None,
    ):
        self.app = app
        self.expected = f"Bearer {token}".encode() if token else None
        self.upload_limit = upload_limit
        self.body_limit = body_limit
        self.jobs = jobs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        headers = dict(scope.get("headers") or [])
        if self.expected is not None and (path == "/api" or path.startswith("/api/")):
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                why = "missing" if not given else "wrong"
                resp = error_response(
                    401,
                    f"{why} bearer token: send 'Authorization: Bearer TOKEN' "
                    "(the token replay serve was started with)",
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await resp(scope, receive, send)
                return
        limit = self.upload_limit if path == UPLOAD_PATH else self.body_limit
        try:
            declared = int(headers.get(b"content-length", b"-1"))
        except ValueError:
            declared = -1
        if declared > limit:
            await _too_large(limit, declared)(scope, receive, send)
            return
        if path == UPLOAD_PATH and scope.get("method") == "POST" and self.jobs is not None:
            # The upload will wait on disk as a queued job: room for it (its declared
            # size, else the largest allowed) is set aside before its body is read.
            try:
                with self.jobs.reserve(declared if declared >= 0 else limit) as reservation:
                    scope.setdefault("state", {})["upload_reservation"] = reservation
                    await self._limited(scope, receive, send, limit)
            except (JobQueueFullError, UploadSpaceError) as exc:
                await error_response(
                    status_of(exc), str(exc), {"type": type(exc).__name__},
                    {"Retry-After": str(RETRY_AFTER_S), "Connection": "close"},
                )(scope, receive, send)  # fmt: skip
            return
        await self._limited(scope, receive, send, limit)

    async def _limited(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """The app, with the request body cut (413) past ``limit`` bytes."""
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, _too_large_message(limit, seen))
            return message

        await self.app(scope, limited, send)


def _too_large_message(limit: int, size: int) -> str:
    return f"request body too large: {size} bytes, the limit is {limit} bytes"


def _too_large(limit: int, size: int) -> JSONResponse:
    return error_response(
        413, _too_large_message(limit, size), {"limit_bytes": limit}, {"Connection": "close"}
    )


# -- the service ------------------------------------------------------------------------------


class Service:
    """The state behind the app: the database, the watchdog, the jobs."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        # Clients hold the token, or are anyone on loopback: only the former see where
        # files are on the server (trace sources, the database's path).
        self.show_paths = config.token is not None
        self.db = Database(config.db)
        self.watchdog = Watchdog()
        self.cache = ResultCache(config.result_cache, config.cache_bytes)
        self.jobs = JobRunner(
            on_change=self.cache.invalidate,
            max_queued=config.max_queued_jobs,
            max_upload_bytes=config.max_queued_upload_bytes,
            upload_dir=config.db.resolve().parent,
        )

    def close(self) -> None:
        self.jobs.shutdown()
        self.watchdog.close()
        self.db.close()

    @contextlib.contextmanager
    def cursor(self) -> Iterator[Lease]:
        with self.db.cursor() as lease:
            yield lease

    def table(
        self, sql: str, params: dict[str, Any] | None = None, max_rows: int | None = None
    ) -> tuple[QueryResult, bool]:
        """A capped, time-limited result (cached until the next write) and whether cached."""
        cap = min(max_rows or self.config.max_rows, self.config.max_rows)

        def compute() -> QueryResult:
            with self.cursor() as lease:
                res, fired = run_limited(
                    lease.cur,
                    sql,
                    params,
                    watchdog=self.watchdog,
                    timeout_s=self.config.sql_timeout_s,
                    max_rows=cap,
                    max_bytes=self.config.max_result_bytes,
                )
                if fired:
                    lease.discard()
                return res

        key = (sql, json.dumps(params, sort_keys=True, default=str), cap)
        return self.cache.get(key, compute)

    def records(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        res, _ = self.table(sql, params)
        return [dict(zip(res.columns, r, strict=True)) for r in res.rows]

    @contextlib.contextmanager
    def reader_store(self) -> Iterator[Any]:
        """A Store over a reader cursor in a READ ONLY transaction (rolled back at the end),
        interrupted past the time limit (reports)."""
        with self.cursor() as lease, self.watchdog.guard(lease.cur, self.config.sql_timeout_s) as g:
            lease.cur.execute("BEGIN TRANSACTION READ ONLY")
            store = self.db.reader_store(lease.cur)
            if not self.show_paths:
                store.path = Path(self.config.db.name)  # what its messages name
            try:
                yield store
            except Exception as exc:
                if g.fired:
                    raise QueryTimeoutError(
                        f"the report ran longer than the time limit of "
                        f"{self.config.sql_timeout_s:g} s and was interrupted"
                    ) from exc
                raise
            finally:
                with contextlib.suppress(duckdb.Error):
                    lease.cur.execute("ROLLBACK")
                if g.fired:
                    lease.discard()

    def public(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Trace rows with their ``source`` as this server's clients may see it."""
        if self.show_paths:
            return rows
        base = self.config.db.resolve().parent
        return [{**r, "source": shown_source(r.get("source"), base)} for r in rows]

    def trace_id(self, trace: str) -> int:
        with self.reader_store() as store:
            return store.trace_id(trace)

    def check_runs(self, run_ids: list[int]) -> None:
        """RunNotFoundError (404) unless every run id is stored."""
        found = {
            r["run_id"]
            for r in self.records(
                "SELECT run_id FROM runs WHERE list_contains($ids, run_id)", {"ids": run_ids}
            )
        }
        missing = [r for r in run_ids if r not in found]
        if missing:
            what = "run" if len(missing) == 1 else "runs"
            raise RunNotFoundError(
                f"no {what} {', '.join(map(str, missing))} in {self.config.db.name} "
                "(GET /api/runs lists them)"
            )


def table_response(result: tuple[QueryResult, bool]) -> Response:
    res, cached = result
    return Response(res.body(cached), media_type="application/json")


def parse_run_ids(runs: str) -> list[int]:
    """``1,2,5`` -> [1, 2, 5] (400 on anything else)."""
    parts = [p.strip() for p in runs.split(",") if p.strip()]
    if not parts or not all(re.fullmatch(r"\d{1,9}", p) for p in parts):
        raise HTTPException(400, f"runs must be comma-separated run ids, e.g. 1,2 (got {runs!r})")
    ids = list(dict.fromkeys(int(p) for p in parts))
    if len(ids) > MAX_REPORT_RUNS:
        raise HTTPException(400, f"at most {MAX_REPORT_RUNS} runs at once (got {len(ids)})")
    return ids


def shown_source(source: Any, base: Path) -> Any:
    """A trace's ``source`` as a client without the token sees it: an absolute path on
    the server becomes relative to ``base`` (the database's folder), or just its last
    component outside it; ``upload:NAME`` and descriptions (``<scenario ...>``) stay."""
    if not isinstance(source, str) or not source.startswith("/"):
        return source
    path = PurePosixPath(source)
    try:
        return str(path.relative_to(base))
    except ValueError:
        return path.name


def safe_filename(name: str | None) -> str:
    """The base name of an uploaded file if it is a plain name, else ``upload``."""
    base = PurePosixPath((name or "").replace("\\", "/")).name
    return base if FILENAME_RE.match(base) else "upload"


TRACES_SQL = """
SELECT t.trace_id, t.name, t.kind, t.kernel, t.source, t.events, t.allocs, t.frees,
       t.failed_allocs, t.live_at_end, t.zone_start_pfn, t.zone_pages,
       round((t.ts_last - t.ts_first) / 1e9, 3) AS seconds, t.created,
       (SELECT count(*) FROM runs r WHERE r.trace_id = t.trace_id) AS runs
FROM traces t ORDER BY t.trace_id
"""
RUNS_SQL = """
SELECT r.run_id, t.name AS trace, r.trace_id,
       coalesce(json_extract_string(r.config, '$.preset'), r.model) AS model,
       r.events, round(r.events_per_s) AS events_per_s, r.wall_s, r.allocs, r.failures,
       r.fallbacks, r.migrated, r.evicted, r.zone_pages, r.free_pages, r.every, r.start,
       r.started
FROM runs r JOIN traces t USING (trace_id)
WHERE $trace_id IS NULL OR r.trace_id = $trace_id
ORDER BY r.run_id
"""
NR = ", ".join(f"nr_free_{k}" for k in range(11))
METRICS_SQL = f"""
WITH s AS (SELECT * FROM steps WHERE run_id = $run AND free_pages IS NOT NULL),
n AS (SELECT max(seq) + 1 AS n FROM s),
pick AS (SELECT max(seq) AS seq FROM s, n GROUP BY (seq * $points) // n)
SELECT s.seq, s.free_pages, s.largest_free_order,
       unusable_index($order, {NR}) AS unusable_index,
       fragmentation_index($order, {NR}) AS fragmentation_index,
       extfrag_for_order($order, {NR}) AS extfrag_for_order,
       s.failures, s.fallbacks, s.pcp_pages, s.migrated, s.scanned, s.evicted, s.degraded
FROM s JOIN pick USING (seq)
ORDER BY s.seq
"""
STEPS_SQL = """
SELECT * EXCLUDE (run_id) FROM steps
WHERE run_id = $run AND seq >= $seq_from AND ($seq_to IS NULL OR seq <= $seq_to)
  AND ($pfn_from IS NULL OR pfn >= $pfn_from) AND ($pfn_to IS NULL OR pfn <= $pfn_to)
  AND (seq - $seq_from) % $every = 0
ORDER BY seq
"""


def create_app(config: ServiceConfig) -> FastAPI:
    """The FastAPI app over ``config.db`` (opened now; closed when the app shuts down)."""
    svc = Service(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            svc.close()

    app = FastAPI(
        title="replay",
        version=__version__,
        summary="Trace-replay analysis of Linux physical-memory fragmentation: "
        "traces, runs, metrics, queries, reports and jobs over one store.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = svc
    install_error_handlers(app)
    bearer = HTTPBearer(auto_error=False, description="replay serve --token / $REPLAY_TOKEN")
    api = APIRouter(prefix="/api", responses=ERRORS, dependencies=[Depends(bearer)])
    add_read_routes(api, svc)
    add_job_routes(api, svc)
    app.include_router(api)
    add_page_routes(app)
    install_openapi(app)
    add_docs_route(app)
    app.add_middleware(
        Gate,
        token=config.token,
        upload_limit=config.max_upload_bytes,
        body_limit=config.max_body_bytes,
        jobs=svc.jobs,
    )
    return app


def install_openapi(app: FastAPI) -> None:
    """The schema, with every error documented as JSON (HTML routes included)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            for ops in schema.get("paths", {}).values():
                for op in ops.values():
                    for code, resp in op.get("responses", {}).items():
                        content = resp.get("content", {})
                        if code[0] in "45" and "text/html" in content:
                            content["application/json"] = content.pop("text/html")
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def add_read_routes(api: APIRouter, svc: Service) -> None:
    cfg = svc.config

    @api.get("/health", response_model=Health, summary="Server status")
    def health() -> dict[str, Any]:
        """The database file, the version, job counts, the limits (s, rows, bytes), the presets."""
        return {
            "status": "ok",
            "version": __version__,
            "db": str(cfg.db) if svc.show_paths else cfg.db.name,
            "jobs": svc.jobs.counts(),
            "queue": svc.jobs.queue_stats(),
            "cache": svc.cache.stats(),
            "limits": {
                "sql_timeout_s": cfg.sql_timeout_s,
                "max_rows": cfg.max_rows,
                "max_result_bytes": cfg.max_result_bytes,
                "max_upload_bytes": cfg.max_upload_bytes,
                "max_body_bytes": cfg.max_body_bytes,
            },
            "presets": [p.value for p in Preset],
        }

    @api.get("/traces", response_model=TraceList, summary="Stored traces")
    def traces() -> dict[str, Any]:
        """Every stored trace: sizes (events), zone (pages), span (seconds), run count."""
        return {"traces": svc.public(svc.records(TRACES_SQL))}

    @api.get("/traces/{trace}", response_model=TraceDetail, summary="A trace's summary")
    def trace_summary(
        trace: Annotated[str, PathParam(pattern=NAME_PATTERN, description="name or id")],
    ) -> dict[str, Any]:
        """Counts, event types, orders (allocs/frees/pages), migratetypes and runs of a trace."""
        from replay.analysis.traces import (
            EVENT_TYPES_SQL,
            MIGRATETYPES_SQL,
            ORDERS_SQL,
            SUMMARY_SQL,
        )

        tid = svc.trace_id(trace)
        p = {"id": tid}
        return {
            "trace": svc.public(svc.records(SUMMARY_SQL, p))[0],
            "event_types": svc.records(EVENT_TYPES_SQL, p),
            "orders": svc.records(ORDERS_SQL, p),
            "migratetypes": svc.records(MIGRATETYPES_SQL, p),
            "runs": svc.records(RUNS_SQL, {"trace_id": tid}),
        }

    @api.get("/runs", response_model=RunList, summary="Stored runs")
    def runs(
        trace: Annotated[
            str | None, Query(pattern=NAME_PATTERN, description="only runs of this trace")
        ] = None,
    ) -> dict[str, Any]:
        """Runs with their model, speed (events/s), failures and final free pages."""
        tid = svc.trace_id(trace) if trace is not None else None
        return {"runs": svc.records(RUNS_SQL, {"trace_id": tid})}

    @api.get("/runs/{run_id}", response_model=RunDetail, summary="One run")
    def run_detail(run_id: Annotated[int, PathParam(ge=0, le=2**31 - 1)]) -> dict[str, Any]:
        """The run's whole ``runs`` row, its configuration as JSON and its trace's name."""
        rows = svc.records(
            "SELECT t.name AS trace, r.* FROM runs r JOIN traces t USING (trace_id) "
            "WHERE r.run_id = $run",
            {"run": run_id},
        )
        if not rows:
            raise HTTPException(404, f"no run with id {run_id} in {cfg.db.name}")
        row = rows[0]
        if isinstance(row.get("config"), str):
            with contextlib.suppress(ValueError):
                row["config"] = json.loads(row["config"])
        return {"run": row}

    @api.get("/runs/{run_id}/steps", response_model=TableResult, summary="A run's steps")
    def run_steps(
        run_id: Annotated[int, PathParam(ge=0, le=2**31 - 1)],
        seq_from: Annotated[int, Query(ge=0, le=MAX_INT, description="first seq")] = 0,
        seq_to: Annotated[int | None, Query(ge=0, le=MAX_INT, description="last seq")] = None,
        pfn_from: Annotated[int | None, Query(ge=-1, le=MAX_INT, description="lowest pfn")] = None,
        pfn_to: Annotated[int | None, Query(ge=-1, le=MAX_INT, description="highest pfn")] = None,
        every: Annotated[int, Query(ge=1, le=MAX_INT, description="every K-th seq")] = 1,
        limit: Annotated[int | None, Query(ge=1, description="row cap")] = None,
    ) -> Response:
        """Steps in a seq window and a placement pfn window, downsampled to every K-th seq.

        A pfn bound keeps only allocations placed in [pfn_from, pfn_to] (frees
        have no pfn; -1 is a failed allocation). ``truncated`` is set when more
        than ``limit`` (at most the server's row cap) rows matched.
        """
        svc.check_runs([run_id])
        p = {
            "run": run_id,
            "seq_from": seq_from,
            "seq_to": seq_to,
            "pfn_from": pfn_from,
            "pfn_to": pfn_to,
            "every": every,
        }
        return table_response(svc.table(STEPS_SQL, p, limit))

    @api.get("/runs/{run_id}/metrics", response_model=TableResult, summary="Metrics over time")
    def run_metrics(
        run_id: Annotated[int, PathParam(ge=0, le=2**31 - 1)],
        order: Annotated[int, Query(ge=0, le=10, description="order of the indices")] = 9,
        points: Annotated[int, Query(ge=1, le=10_000, description="at most this many")] = 200,
    ) -> Response:
        """Fragmentation over the run at up to ``points`` steps (the last of each bucket).

        free_pages (pages), largest_free_order, unusable_index and
        fragmentation_index (thousandths), extfrag_for_order (percent) for
        ``order``, and the cumulative failures, fallbacks and compaction/kswapd
        page counts (pages).
        """
        svc.check_runs([run_id])
        return table_response(
            svc.table(METRICS_SQL, {"run": run_id, "order": order, "points": points})
        )

    @api.get("/queries", response_model=QueryList, summary="Named queries")
    def list_named() -> dict[str, Any]:
        """The named queries of queries/ with their parameters (name, default, doc)."""
        return {"queries": [_query_info(q) for q in queries.list_queries()]}

    @api.get("/queries/{name}", response_model=TableResult, summary="Run a named query")
    def run_named(
        request: Request,
        name: Annotated[str, PathParam(pattern=QUERY_NAME_PATTERN)],
    ) -> Response:
        """Run ``queries/NAME.sql``; its parameters come from the query string (?run=1).

        A parameter without a default is required (400 when missing); a ``run``
        that names no run is a 404.
        """
        try:
            q = queries.load(name)
        except UsageError as exc:
            raise HTTPException(404, str(exc)) from exc
        bound = q.bind(dict(request.query_params), queries.api_param)
        if "run" in bound:
            svc.check_runs([bound["run"]])  # 404, not an empty table
        return table_response(svc.table(q.sql, bound))

    @api.post("/sql", response_model=TableResult, summary="Run one SELECT")
    def sql(body: SqlRequest) -> Response:
        """Run one SELECT statement: read-only, with a time limit and a row cap.

        Anything but exactly one SELECT is refused (400); files, ATTACH, COPY,
        INSTALL/LOAD and settings are off for the whole server.
        """
        return table_response(svc.table(check_select(body.sql), body.params, body.max_rows))

    @api.get(
        "/report",
        response_class=HTMLResponse,
        summary="A report (HTML)",
        responses={200: {"content": {"text/html": {}}}},
    )
    def report_html(
        runs: Annotated[str, Query(max_length=200, description="run ids: 1,2")],
        order: Annotated[int, Query(ge=0, le=10)] = 9,
        title: Annotated[str | None, Query(max_length=200)] = None,
    ) -> HTMLResponse:
        """The self-contained HTML report comparing the given runs (replay.report.html)."""
        from replay.report import html as report

        ids = parse_run_ids(runs)
        svc.check_runs(ids)

        def compute() -> str:
            with svc.reader_store() as store:
                return report.render_report(store, ids, order=order, title=title)

        html, _ = svc.cache.get(("report_html", tuple(ids), order, title), compute)
        return HTMLResponse(html)

    @api.get("/report/data", summary="A report's chart data (JSON)")
    def report_data(
        runs: Annotated[str, Query(max_length=200, description="run ids: 1,2")],
        order: Annotated[int, Query(ge=0, le=10)] = 9,
        points: Annotated[int, Query(ge=2, le=5000)] = 400,
    ) -> dict[str, Any]:
        """The chart data of the report for the given runs (what charts.js draws)."""
        from replay.report import html as report

        ids = parse_run_ids(runs)
        svc.check_runs(ids)

        def compute() -> dict[str, Any]:
            with svc.reader_store() as store:
                return jsonable(
                    report.report_data(store, ids, order=order, points=points, failure_maps=False)
                )

        data, _ = svc.cache.get(("report_data", tuple(ids), order, points), compute)
        return data

    @api.get("/report/summary", response_model=TableResult, summary="A report's summary table")
    def report_summary(
        runs: Annotated[str, Query(max_length=200, description="run ids: 1,2")],
        order: Annotated[int, Query(ge=0, le=10)] = 9,
    ) -> Response:
        """The report's summary table for the given runs, one row per run."""
        from replay.report import html as report

        ids = parse_run_ids(runs)
        svc.check_runs(ids)

        def compute() -> QueryResult:
            t0 = time.perf_counter()
            with svc.reader_store() as store:
                table = report.summary_table(store, ids, order=order)
            return QueryResult.from_rows(
                columns=list(table.column_names),
                types=[str(t) for t in table.schema.types],
                rows=[[jsonable(v) for v in r.values()] for r in table.to_pylist()],
                elapsed_ms=(time.perf_counter() - t0) * 1e3,
            )

        return table_response(svc.cache.get(("report_summary", tuple(ids), order), compute))

    @api.get("/batches/{name}/runs", response_model=RunList, summary="A batch's runs")
    def batch_runs(name: Annotated[str, PathParam(pattern=NAME_PATTERN)]) -> dict[str, Any]:
        """The finished runs of a named batch (replay batch), as in /api/runs."""
        from replay.report import html as report

        with svc.reader_store() as store:
            ids = report.runs_of_batch(store, name)
        rows = svc.records(RUNS_SQL, {"trace_id": None})
        return {"runs": [r for r in rows if r["run_id"] in set(ids)]}


def _query_info(q: queries.NamedQuery) -> dict[str, Any]:
    return {
        "name": q.name,
        "description": q.description,
        "params": [
            {
                "name": k,
                "default": v,
                "doc": q.param_docs.get(k, ""),
                "required": v is None,
                "type": q.param_types.get(k, "VARCHAR"),
            }
            for k, v in q.params.items()
        ],
        "sql": q.sql,
    }


def add_job_routes(api: APIRouter, svc: Service) -> None:
    cfg = svc.config

    @api.post(
        "/jobs/ingest",
        status_code=202,
        response_model=JobView,
        summary="Ingest a file",
        responses={409: {"model": ErrorBody, "description": "Name taken"}},
    )
    def post_ingest(
        request: Request,
        file: Annotated[
            UploadFile,
            File(description="ftrace text (maybe compressed) or canonical Parquet/Arrow/CSV"),
        ],
        name: Annotated[str | None, Form(description="trace name (default: from the file)")] = None,
        replace: Annotated[bool, Form(description="overwrite a trace of that name")] = False,
        skip_bad: Annotated[bool, Form(description="skip malformed lines")] = False,
    ) -> dict[str, Any]:
        """Upload a trace file and queue its ingest (as ``replay ingest``); poll the job.

        The file's kind is detected now (422 if unknown); parsing happens in
        the job, which fails without changing the database on bad input.
        """
        from replay.trace.ingest import default_name, detect

        filename = safe_filename(file.filename)
        trace_name = check_name(name if name else default_name(Path(filename)))
        # Locked while it exists: a killed server's uploads are leftovers (replay.spool).
        spool = Spool(cfg.db.resolve().parent, ".replay-upload-")
        tmp = spool.path
        dest = tmp / filename
        try:
            with open(dest, "wb") as out:
                shutil.copyfileobj(file.file, out, 1 << 20)
            kind = detect(dest)
            if kind == "capture":
                raise UsageError("upload a single trace file, not a folder")
            with svc.reader_store() as store:
                if store.exists(trace_name) and not replace:
                    raise TraceExistsError(
                        f"a trace named {trace_name!r} exists; send replace=true to overwrite it"
                    )
        except BaseException as exc:
            spool.remove()
            if isinstance(exc, ReplayError):
                exc.args = (str(exc).replace(str(tmp) + os.sep, ""),)
            raise
        params = {
            "file": filename,
            "name": trace_name,
            "kind": kind,
            "replace": replace,
            "skip_bad": skip_bad,
            "bytes": dest.stat().st_size,
        }
        try:
            job = svc.jobs.submit(
                "ingest",
                params,
                api_worded(_ingest_work(svc, dest, params)),
                cleanup=spool.remove,
                disk_bytes=params["bytes"],
                reservation=getattr(request.state, "upload_reservation", None),
            )
        except BaseException:
            spool.remove()
            raise
        return job.view()

    @api.post("/jobs/run", status_code=202, response_model=JobView, summary="Replay a trace")
    def post_run(body: RunRequest) -> dict[str, Any]:
        """Queue a replay of a stored trace through a preset model (as ``replay run``)."""
        svc.trace_id(body.trace)  # 404 now rather than a failed job
        params = body.model_dump(mode="json")
        job = svc.jobs.submit("run", params, api_worded(_run_work(svc, body)))
        return job.view()

    @api.post(
        "/jobs/validate", status_code=202, response_model=JobView,
        summary="Measure a model against the recorded kernel",
    )  # fmt: skip
    def post_validate(body: ValidateRequest) -> dict[str, Any]:
        """Queue ``replay validate TRACE --model MODEL`` (default ``kernel``): the observed
        run and the model from the kernel's real state are stored, and the job's result
        is the comparison (docs/fidelity.md): failures against the kernel's, order >= 3
        and >= 9 and end-state differences, pageblock counts, same pfn/pageblock."""
        svc.trace_id(body.trace)  # 404 now rather than a failed job
        params = body.model_dump(mode="json")
        job = svc.jobs.submit("validate", params, api_worded(_validate_work(svc, body)))
        return job.view()

    @api.post(
        "/jobs/explain", status_code=202, response_model=JobView,
        summary="Explain an allocation of a run",
    )  # fmt: skip
    def post_explain(body: ExplainRequest) -> dict[str, Any]:
        """Queue ``replay explain RUN --seq SEQ`` (docs/explain.md): the request, the
        state just before it, the blocks nearest to free, and the models forked from
        that state (stored as runs); without ``seq`` the run's failed and most at-risk
        allocations, ranked. The job's result is the CLI's JSON."""
        params = body.model_dump(mode="json")
        job = svc.jobs.submit("explain", params, api_worded(_explain_work(svc, body)))
        return job.view()

    @api.get("/jobs", response_model=JobList, summary="Jobs")
    def list_jobs(
        status: Annotated[Literal["queued", "running", "done", "failed"] | None, Query()] = None,
    ) -> dict[str, Any]:
        """Jobs of this server process, oldest first (finished ones are kept for a while)."""
        assert status is None or status in STATUSES
        return {"jobs": [j.view() for j in svc.jobs.all() if status in (None, j.status)]}

    @api.get("/jobs/{job_id}", response_model=JobView, summary="A job's status")
    def get_job(job_id: Annotated[str, PathParam(pattern=r"^[0-9]{1,9}-[0-9a-f]{8}$")]) -> Any:
        """Status (queued, running, done, failed), progress, result or error of a job."""
        job = svc.jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job with id {job_id!r}")
        return job.view()


def _ingest_work(svc: Service, path: Path, params: dict[str, Any]) -> Callable[[Any], dict]:
    def work(progress: Any) -> dict[str, Any]:
        from replay.trace.ingest import ingest

        store = svc.db.writer
        prefix = str(path.parent) + os.sep
        try:
            row = ingest(
                store,
                path,
                name=params["name"],
                replace=params["replace"],
                skip_bad=params["skip_bad"],
                progress=progress,
            )
        except ReplayError as exc:
            exc.args = (str(exc).replace(prefix, ""),)  # name the upload, not the temp file
            raise
        store.run(
            "UPDATE traces SET source = $s WHERE trace_id = $id",
            {"s": f"upload:{params['file']}", "id": row["trace_id"]},
        )
        keep = (
            "trace_id",
            "name",
            "kind",
            "format",
            "events",
            "aux_events",
            "allocs",
            "frees",
            "failed_allocs",
            "skipped_bad",
            "lost_events",
            "zone_start_pfn",
            "zone_pages",
        )
        return {k: jsonable(row.get(k)) for k in keep}

    return work


def _run_work(svc: Service, body: RunRequest) -> Callable[[Any], dict]:
    def work(progress: Any) -> dict[str, Any]:
        from replay.engine.whatif import run
        from replay.models.config import load_model

        result = run(
            svc.db.writer,
            body.trace,
            load_model(str(body.model)),
            zone_pages=body.zone_pages,
            every=body.every,
            pageblock_every=body.pageblock_every,
            fill_from_snapshot=body.fill_from_snapshot,
            start=body.start,
            at=body.at,
            until=body.until,
            progress=progress,
        )
        return jsonable(result.summary())

    return work


def _validate_work(svc: Service, body: ValidateRequest) -> Callable[[Any], dict]:
    def work(progress: Any) -> dict[str, Any]:
        from replay.analysis.fidelity import model_fidelity
        from replay.models.config import load_model

        config = load_model(str(body.model))
        fid = model_fidelity(svc.db.writer, body.trace, config, every=body.every, progress=progress)
        return jsonable(fid)

    return work


def _explain_work(svc: Service, body: ExplainRequest) -> Callable[[Any], dict]:
    def work(progress: Any) -> dict[str, Any]:
        from replay.analysis.explain import explain, rank

        del progress  # forks are short
        if body.seq is None:
            return jsonable({"ranked": rank(svc.db.writer, body.run, top=body.top)})
        models = None if body.models is None else [str(m) for m in body.models]
        return jsonable(explain(svc.db.writer, body.run, body.seq, models=models,
                                horizon=body.horizon, top=body.top))  # fmt: skip

    return work


def add_page_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/assets/{name}", include_in_schema=False)
    def report_asset(name: str) -> Response:
        """The report's chart layer and style (replay/report/assets), for the page."""
        from replay.report import html as report

        media = ASSETS.get(name)
        if media is None:
            raise HTTPException(404, f"no asset named {name!r}")
        return Response(report.asset(name), media_type=media, headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
