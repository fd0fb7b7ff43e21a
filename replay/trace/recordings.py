"""Binary recordings by magic: trace-cmd's trace.dat and perf's perf.data.

:func:`sniff` names the container from its first bytes (never from the file
name); :func:`open_parser` opens it as a batch producer for the ingester.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from replay.errors import BadInputError
from replay.trace.binary import BinaryParser
from replay.trace.ftrace import FtraceParser
from replay.trace.perfdata import PERF_MAGIC, PerfData
from replay.trace.perfscript import PerfScriptParser
from replay.trace.tracedat import MAGIC as TRACEDAT_MAGIC
from replay.trace.tracedat import TraceDat

#: detect() kinds of binary recordings
RECORDING_KINDS = ("tracedat", "perfdata")


def sniff(path: Path) -> str | None:
    """``tracedat``, ``perfdata`` or None, from the file's magic bytes."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(TRACEDAT_MAGIC[:3]):
        if not head.startswith(TRACEDAT_MAGIC):
            raise BadInputError(
                f"byte offset 0: starts like a trace.dat (\\x17\\x08\\x44) but the magic is "
                f"{head[:10]!r}, not {TRACEDAT_MAGIC!r}",
                file=str(path),
            )
        return "tracedat"
    if head.startswith(PERF_MAGIC) or head.startswith(PERF_MAGIC[::-1]):
        return "perfdata"
    if head.startswith(b"PERFFILE") or head.startswith(b"PERFILE"):
        raise BadInputError(
            f"byte offset 0: perf.data magic {head[:8]!r} is not PERFILE2 (an old perf.data "
            "version is not read)",
            file=str(path),
        )
    return None


def open_parser(
    kind: str,
    path: Path,
    *,
    on_raw: Callable[[int], None] | None = None,
    **opts: Any,
) -> FtraceParser:
    """The batch producer for ``path`` of detect() kind ``kind``.

    ftrace text (a file or a capture folder's trace file), ``perf script``
    text, or a binary recording (from :func:`sniff`). ``opts`` are
    FtraceParser's options (skip_bad, max_bad_fraction, max_state_bytes,
    chunk_bytes: the last only for text).
    """
    if kind == "perfscript":
        return PerfScriptParser(path, on_raw=on_raw, **opts)
    # a capture folder's trace.dat is replay record's: its markers as trace_pipe prints them
    trace_pipe_print = kind == "capture"
    if kind not in RECORDING_KINDS:
        with open(path, "rb") as f:
            head = f.read(16)
        if not (head.startswith(TRACEDAT_MAGIC) or head.startswith(PERF_MAGIC)):
            return FtraceParser(path, on_raw=on_raw, **opts)
        kind = "tracedat" if head.startswith(TRACEDAT_MAGIC) else "perfdata"
    opts.pop("chunk_bytes", None)
    source: TraceDat | PerfData = TraceDat(path) if kind == "tracedat" else PerfData(path)
    parser = BinaryParser(
        source, on_raw=on_raw, display_name=str(path), trace_pipe_print=trace_pipe_print, **opts
    )
    parser.stats.recording = source.meta()
    parser.kernel = source.kernel()
    return parser
