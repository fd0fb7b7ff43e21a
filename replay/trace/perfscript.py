"""``perf script`` text of tracepoint samples, read by the ftrace text parser.

perf script prints a sample of ``perf record -e kmem:...`` as
``comm tid [cpu] secs.frac: [period] system:event: payload`` (``pid/tid``
with ``-F pid,tid``; ``--ns`` gives 9 fraction digits), and with
``--show-lost-events`` a loss as ``comm tid [cpu] secs.frac:
PERF_RECORD_LOST lost N``. The payload is libtraceevent's rendering of the
event's print format, as in ftrace text (hex pfn since about 5.14, decimal
before). Each chunk is rewritten into ftrace's ``comm-tid [cpu] secs.frac:
event: payload`` and ``CPU:N [N EVENTS DROPPED]`` lines by two C-level
regex substitutions, then parsed by :class:`replay.trace.ftrace.FtraceParser`
unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from replay.errors import BadInputError
from replay.trace.ftrace import FtraceParser, IngestStats, scan_chunks
from replay.trace.reader import ahead, iter_chunks

_HEAD = (
    rb"^[ \t]*(?P<comm>\S(?:.*?\S)?)[ \t]+(?:\d+/)?(?P<tid>-?\d+)[ \t]+\[(?P<cpu>\d+)\][ \t]+"
    rb"(?P<ts>\d+\.\d+):[ \t]+"
)
SAMPLE_RE = re.compile(_HEAD + rb"(?:\d+[ \t]+)?[\w-]+:(?P<ev>\w+):", re.M)
LOST_RE = re.compile(
    _HEAD + rb"PERF_RECORD_LOST(?:_SAMPLES)?:?[ \t]+lost:?[ \t]+(?P<n>\d+).*$", re.M
)


# A callchain frame (perf script of ``perf record -g``): "\t<ip> <sym>+0x.. (<dso>)".
# Kernel frames become ftrace's stack lines (" => sym+0x.."), the others blank
# lines (perf.data's callchains keep the kernel context's ips alone).
FRAME_RE = re.compile(rb"^[ \t]+[0-9a-f]+[ \t]+(?P<sym>\S+)[ \t]+\(\[kernel\.kallsyms\]\)[ \t]*$",
                      re.M)  # fmt: skip
OTHER_FRAME_RE = re.compile(rb"^[ \t]+[0-9a-f]+[ \t]+\S.*\([^)]*\)[ \t]*$", re.M)


def sniff(lines: list[bytes]) -> bool:
    """True when most of the first non-comment lines are perf script samples."""
    body = [ln for ln in lines if ln.strip() and not ln.lstrip().startswith(b"#")
            and not OTHER_FRAME_RE.match(ln)][:50]  # fmt: skip
    if not body:
        return False
    hits = sum(1 for ln in body if SAMPLE_RE.match(ln) or LOST_RE.match(ln))
    return hits * 2 > len(body)


def to_ftrace(chunk: bytes) -> bytes:
    """A chunk of perf script text as ftrace text (line for line)."""
    chunk = LOST_RE.sub(rb"CPU:\g<cpu> [\g<n> EVENTS DROPPED]", chunk)
    if b"\t" in chunk or b"  " in chunk:  # callchains (perf record -g)
        chunk = FRAME_RE.sub(rb" => \g<sym>", chunk)
        chunk = OTHER_FRAME_RE.sub(b"", chunk)
    return SAMPLE_RE.sub(rb"\g<comm>-\g<tid> [\g<cpu>] \g<ts>: \g<ev>:", chunk)


class PerfScriptStats(IngestStats):
    """IngestStats whose format line says perf script."""

    def format_description(self) -> str:
        rest = super().format_description().split(", ", 1)
        return "perf script" + (", " + rest[1] if len(rest) > 1 else "")


class PerfScriptParser(FtraceParser):
    """perf script text as (events, aux) batches (FtraceParser over rewritten lines)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stats = PerfScriptStats()

    def batches(self) -> Iterator[tuple[pa.RecordBatch | None, pa.RecordBatch | None]]:
        """Yield (events, aux) batches, as FtraceParser.batches does."""
        chunks = (
            to_ftrace(c) for c in iter_chunks(self.path, self.chunk_bytes, on_raw=self.on_raw)
        )
        yield from self.scanned_batches(ahead(scan_chunks(chunks)))
        if self.stats.event_lines == 0:
            raise BadInputError("no perf script samples found", file=self.name)
        self.finish()
