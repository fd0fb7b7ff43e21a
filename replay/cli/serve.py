"""``replay serve``: the HTTP API and web page over the store (FastAPI on uvicorn)."""

from __future__ import annotations

import ipaddress
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from replay.cli.common import DbOpt, QuietOpt
from replay.errors import UsageError
from replay.store import default_db_path

ENV_TOKEN = "REPLAY_TOKEN"
# Idle keep-alive connections are closed after this (s). uvicorn's 5 s default races
# with busy clients reusing a connection just as the server closes it.
KEEP_ALIVE_S = 75


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free port)."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UsageError(f"--host {host}: cannot resolve ({exc})") from exc
    family, kind, proto, _, addr = infos[0]
    # proto IPPROTO_TCP (not 0): asyncio then sets TCP_NODELAY on every accepted
    # connection; without it Nagle and delayed ACKs add 40 ms to each response.
    sock = socket.socket(family, kind, proto or socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(
    db: DbOpt = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (a token is needed off loopback).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port (0: any free port).")] = 8765,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar=ENV_TOKEN,
            help="Require 'Authorization: Bearer TOKEN' on /api (or $REPLAY_TOKEN).",
            show_default=False,
        ),
    ] = None,
    max_upload_mb: Annotated[
        float, typer.Option("--max-upload-mb", help="Largest trace upload, MiB.", min=0.001)
    ] = 256.0,
    sql_timeout: Annotated[
        float, typer.Option("--sql-timeout", help="Time limit per query, seconds.", min=0.01)
    ] = 10.0,
    max_rows: Annotated[
        int, typer.Option("--max-rows", help="Row cap per query result.", min=1)
    ] = 10_000,
    max_result_mb: Annotated[
        float,
        typer.Option(
            "--max-result-mb",
            help="Largest JSON answer to a query, MiB: rows past it are cut (truncated).",
            min=0.001,
        ),
    ] = 16.0,
    cache: Annotated[
        int,
        typer.Option(
            "--cache", help="Query results kept until the next job ends (0: no cache).", min=0
        ),
    ] = 256,
    cache_mb: Annotated[
        float, typer.Option("--cache-mb", help="Memory the kept results may hold, MiB.", min=0)
    ] = 128.0,
    max_queued_jobs: Annotated[
        int,
        typer.Option(
            "--max-queued-jobs", help="Jobs waiting for the writer; more are refused (429).", min=1
        ),
    ] = 8,
    max_queued_upload_mb: Annotated[
        float,
        typer.Option(
            "--max-queued-upload-mb",
            help="Disk that uploads waiting to be ingested may hold, MiB; more are refused (507).",
            min=0.001,
        ),
    ] = 1024.0,
    quiet: QuietOpt = False,
) -> None:
    """Serve a read-only HTTP API and a web page over the store, with ingest/run jobs.

    The page at / lists traces and runs, compares runs with the report's
    charts and runs SQL. The API (/api/..., OpenAPI schema at /openapi.json,
    docs at /docs) serves traces, runs, steps, metrics over time, named
    queries, one-SELECT SQL (time limit, row and byte caps), reports, and jobs
    that ingest an uploaded trace or replay a trace (one writer thread, a
    bounded queue). The
    server holds the database file: stop other replay commands on it first.
    Listens on loopback by default; any other address needs --token.

    Example: replay serve --db replay.duckdb --port 8765
    """
    if token is not None and not token.strip():
        raise UsageError("--token must not be empty")
    if not is_loopback(host) and not token:
        raise UsageError(
            f"--host {host} is not a loopback address: pass --token T (or set ${ENV_TOKEN}) "
            "so that only clients with the token can use the API"
        )
    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be 0..65535, not {port}")
    import uvicorn

    from replay.service import ServiceConfig, create_app

    path = Path(db) if db is not None else default_db_path()
    sock = bind_socket(host, port)
    config = ServiceConfig(
        db=path,
        token=token,
        max_upload_bytes=int(max_upload_mb * (1 << 20)),
        sql_timeout_s=sql_timeout,
        result_cache=cache,
        cache_bytes=int(cache_mb * (1 << 20)),
        max_rows=max_rows,
        max_result_bytes=int(max_result_mb * (1 << 20)),
        max_queued_jobs=max_queued_jobs,
        max_queued_upload_bytes=int(max_queued_upload_mb * (1 << 20)),
    )
    try:
        app = create_app(config)
    except BaseException:
        sock.close()
        raise
    bound = sock.getsockname()
    shown = f"[{bound[0]}]" if sock.family == socket.AF_INET6 else bound[0]
    url = f"http://{shown}:{bound[1]}/"
    # The address on stderr (scripts read it when --port 0), even with --quiet.
    sys.stderr.write(
        f"replay serve: {path} at {url}" + (" (token required)" if token else "") + "\n"
    )
    sys.stderr.flush()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning" if quiet else "info",
            access_log=not quiet,
            timeout_graceful_shutdown=30,
            timeout_keep_alive=KEEP_ALIVE_S,
            lifespan="on",
        )
    )
    # Ctrl-C is how a server stops: uvicorn shuts down cleanly, then raises SIGINT again
    # once our handler is back. Python's own handler takes it here, not replay's (which
    # would report the command as interrupted, exit 130).
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler) if main_thread else None
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        sock.close()
