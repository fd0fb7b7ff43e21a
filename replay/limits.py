"""How much memory replay lets one state take before refusing, before allocating it.

Pairing at ingest (a page map of the blocks a trace touches), the observed rebuild
and the models (arrays per page of their zone) all keep per-page state; a trace
whose pfns span terabytes must get a clear error, not a MemoryError or the OOM
killer. The limit is a quarter of the machine's physical memory by default.
"""

from __future__ import annotations

import os

from replay.errors import UsageError


def default_max_state_bytes() -> int:
    """The most bytes one per-page state may take by default: ``REPLAY_MAX_STATE_BYTES``
    when set, else a quarter of the machine's physical memory (bytes), at least 64 MiB."""
    env = os.environ.get("REPLAY_MAX_STATE_BYTES")
    if env:
        try:
            return int(env)
        except ValueError:
            raise UsageError(f"REPLAY_MAX_STATE_BYTES={env!r} is not a number of bytes") from None
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        total = 16 << 30
    return max(64 << 20, total // 4)


def check_zone_fits(pages: int, bytes_per_page: int, what: str, hint: str,
                    limit: int | None = None) -> None:  # fmt: skip
    """Refuse (UsageError) a zone of ``pages`` pages whose state at ``bytes_per_page``
    would pass ``limit`` bytes (default :func:`default_max_state_bytes`). ``what`` names
    the zone and its pfns; ``hint`` says what to do instead."""
    cap = default_max_state_bytes() if limit is None else limit
    need = int(pages) * int(bytes_per_page)
    if need > cap:
        raise UsageError(
            f"{what} is {pages:,} pages: its state would take about {need / (1 << 30):,.1f} "
            f"GiB, more than the {cap / (1 << 30):,.1f} GiB replay allows (a quarter of this "
            f"machine's memory, or REPLAY_MAX_STATE_BYTES); {hint}"
        )
